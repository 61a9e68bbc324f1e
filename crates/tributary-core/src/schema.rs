//! The logical schema model users write in the config: Iceberg types named the
//! way people say them (`long`, `decimal(10,2)`, `timestamptz`), with nesting.
//!
//! It is independent of iceberg-rust so that config validation and record
//! validation are fast, pure and testable; the table crate converts it to an
//! Iceberg schema with stable field ids.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A primitive or nested field type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// UTF-8 text.
    String,
    /// 32-bit signed integer.
    Int,
    /// 64-bit signed integer.
    Long,
    /// 32-bit IEEE float.
    Float,
    /// 64-bit IEEE float.
    Double,
    /// Fixed-point decimal.
    Decimal {
        /// Total digits, 1..=38.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: u8,
    },
    /// true / false.
    Boolean,
    /// Calendar date.
    Date,
    /// Timestamp without zone, microseconds.
    Timestamp,
    /// Timestamp with zone, stored as UTC microseconds.
    Timestamptz,
    /// Arbitrary bytes (base64 in JSON).
    Binary,
    /// A nested record.
    Struct(Vec<Field>),
    /// A list of one element type.
    List(Box<Field>),
}

/// A named, possibly required field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Column name.
    pub name: String,
    /// Column type.
    pub ty: FieldType,
    /// Whether a record without it is rejected.
    pub required: bool,
}

impl Field {
    /// A field with the given name, type and requiredness.
    pub fn new(name: impl Into<String>, ty: FieldType, required: bool) -> Self {
        Self { name: name.into(), ty, required }
    }
}

impl FieldType {
    /// Parses a primitive type name; nested types are built from config tables.
    pub fn parse_primitive(s: &str) -> Result<Self, String> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "string" => Self::String,
            "int" | "integer" => Self::Int,
            "long" | "bigint" => Self::Long,
            "float" => Self::Float,
            "double" => Self::Double,
            "boolean" | "bool" => Self::Boolean,
            "date" => Self::Date,
            "timestamp" => Self::Timestamp,
            "timestamptz" => Self::Timestamptz,
            "binary" => Self::Binary,
            _ if t.starts_with("decimal(") && t.ends_with(')') => {
                let inner = &t["decimal(".len()..t.len() - 1];
                let (p, s) = inner.split_once(',').ok_or_else(|| decimal_hint(s))?;
                let precision: u8 = p.trim().parse().map_err(|_| decimal_hint(s))?;
                let scale: u8 = s.trim().parse().map_err(|_| decimal_hint(s))?;
                if precision == 0 || precision > 38 || scale > precision {
                    return Err(format!("type '{s}': precision must be 1..=38 and scale at most the precision"));
                }
                Self::Decimal { precision, scale }
            }
            _ => {
                return Err(format!(
                    "unknown type '{s}'; use one of string, int, long, float, double, \
                     decimal(p,s), boolean, date, timestamp, timestamptz, binary, struct, list"
                ));
            }
        })
    }

    /// Whether values of `self` can be read as `to` without loss: the
    /// promotions Iceberg allows, plus identity.
    pub fn widens_to(&self, to: &FieldType) -> bool {
        use FieldType::*;
        match (self, to) {
            (Int, Long) | (Float, Double) => true,
            (Decimal { precision: p1, scale: s1 }, Decimal { precision: p2, scale: s2 }) => s1 == s2 && p2 >= p1,
            (a, b) => a == b,
        }
    }
}

fn decimal_hint(s: &str) -> String {
    format!("type '{s}' must look like decimal(10,2)")
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String => f.write_str("string"),
            Self::Int => f.write_str("int"),
            Self::Long => f.write_str("long"),
            Self::Float => f.write_str("float"),
            Self::Double => f.write_str("double"),
            Self::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Self::Boolean => f.write_str("boolean"),
            Self::Date => f.write_str("date"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::Timestamptz => f.write_str("timestamptz"),
            Self::Binary => f.write_str("binary"),
            Self::Struct(_) => f.write_str("struct"),
            Self::List(e) => write!(f, "list<{}>", e.ty),
        }
    }
}

/// How a column participates in the partition spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PartitionTransform {
    /// The value itself.
    Identity,
    /// Day of a date or timestamp.
    Day,
    /// Hour of a timestamp.
    Hour,
    /// Murmur3 hash modulo N.
    Bucket(u32),
}

/// One partition field: a transform of a source column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionField {
    /// The source column.
    pub column: String,
    /// The transform applied to it.
    pub transform: PartitionTransform,
}

impl PartitionField {
    /// Parses `day(event_time)`, `hour(ts)`, `bucket(16, user_id)` or a bare
    /// column name (identity).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let Some((func, rest)) = s.split_once('(') else {
            return Ok(Self { column: s.to_owned(), transform: PartitionTransform::Identity });
        };
        let args = rest.strip_suffix(')').ok_or_else(|| partition_hint(s))?;
        let func = func.trim().to_ascii_lowercase();
        let (transform, column) = match func.as_str() {
            "day" => (PartitionTransform::Day, args.trim()),
            "hour" => (PartitionTransform::Hour, args.trim()),
            "identity" => (PartitionTransform::Identity, args.trim()),
            "bucket" => {
                let (n, col) = args.split_once(',').ok_or_else(|| partition_hint(s))?;
                let n: u32 = n.trim().parse().map_err(|_| partition_hint(s))?;
                if n == 0 {
                    return Err(format!("partition '{s}': bucket count must be at least 1"));
                }
                (PartitionTransform::Bucket(n), col.trim())
            }
            _ => return Err(partition_hint(s)),
        };
        Ok(Self { column: column.to_owned(), transform })
    }
}

fn partition_hint(s: &str) -> String {
    format!(
        "partition '{s}' is not understood; use 'col', 'identity(col)', 'day(col)', \
         'hour(col)' or 'bucket(N, col)'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_primitive_types_including_decimal() {
        assert_eq!(FieldType::parse_primitive("long").unwrap(), FieldType::Long);
        assert_eq!(
            FieldType::parse_primitive("decimal(10, 2)").unwrap(),
            FieldType::Decimal { precision: 10, scale: 2 }
        );
        assert!(FieldType::parse_primitive("decimal(2,5)").is_err());
        assert!(FieldType::parse_primitive("varchar").unwrap_err().contains("unknown type"));
    }

    #[test]
    fn widening_allows_only_safe_promotions() {
        assert!(FieldType::Int.widens_to(&FieldType::Long));
        assert!(!FieldType::Long.widens_to(&FieldType::Int));
        assert!(!FieldType::String.widens_to(&FieldType::Long));
        let d = |p, s| FieldType::Decimal { precision: p, scale: s };
        assert!(d(10, 2).widens_to(&d(12, 2)));
        assert!(!d(12, 2).widens_to(&d(10, 2)));
    }

    #[test]
    fn parses_partition_transforms() {
        assert_eq!(PartitionField::parse("day(event_time)").unwrap().transform, PartitionTransform::Day);
        let b = PartitionField::parse("bucket(16, user_id)").unwrap();
        assert_eq!((b.column.as_str(), b.transform), ("user_id", PartitionTransform::Bucket(16)));
        assert_eq!(PartitionField::parse("currency").unwrap().transform, PartitionTransform::Identity);
        assert!(PartitionField::parse("month(ts)").is_err());
    }
}
