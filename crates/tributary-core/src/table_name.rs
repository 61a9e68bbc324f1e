//! `namespace.table` names, validated once at the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A two-level table name such as `raw.transactions`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The namespace, e.g. `raw`.
    pub namespace: String,
    /// The table within the namespace, e.g. `transactions`.
    pub name: String,
}

impl TableName {
    /// Builds a name from parts that are already validated.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// Parses `namespace.table`; both parts must be identifiers.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (ns, name) = s
            .split_once('.')
            .ok_or_else(|| format!("table name '{s}' must be 'namespace.table', for example 'raw.{s}'"))?;
        for part in [ns, name] {
            if !is_identifier(part) {
                return Err(format!(
                    "table name '{s}': '{part}' must start with a letter or '_' and hold only \
                     lowercase letters, digits and '_'"
                ));
            }
        }
        Ok(Self::new(ns, name))
    }

    /// The quarantine table that receives this table's rejected records:
    /// `raw.transactions` → `quarantine.transactions`.
    pub fn quarantine(&self) -> Self {
        Self::new("quarantine", self.name.clone())
    }
}

/// Whether `s` is a lowercase SQL identifier that needs no quoting.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

impl Serialize for TableName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TableName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_two_part_names_and_derives_quarantine() {
        let t = TableName::parse("raw.transactions").unwrap();
        assert_eq!(t.to_string(), "raw.transactions");
        assert_eq!(t.quarantine().to_string(), "quarantine.transactions");
    }

    #[test]
    fn rejects_names_without_namespace_or_with_bad_characters() {
        assert!(TableName::parse("transactions").unwrap_err().contains("namespace.table"));
        assert!(TableName::parse("raw.Tx").is_err());
        assert!(TableName::parse("raw.tx-1").is_err());
        assert!(TableName::parse("a.b.c").is_err());
    }
}
