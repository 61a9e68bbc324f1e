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
    /// How a JSON number is read in a timestamp column. It is an input rule,
    /// not part of the Iceberg schema, so it comes from the config.
    pub epoch_unit: EpochUnit,
}

impl Field {
    /// A field with the given name, type and requiredness.
    pub fn new(name: impl Into<String>, ty: FieldType, required: bool) -> Self {
        Self { name: name.into(), ty, required, epoch_unit: EpochUnit::default() }
    }
}

/// Copies each field's input rules (the epoch unit) from `config`, matched
/// by name at every depth, onto `fields` read back from the table.
pub fn apply_input_rules(fields: &mut [Field], config: &[Field]) {
    for f in fields {
        let Some(c) = config.iter().find(|c| c.name == f.name) else { continue };
        f.epoch_unit = c.epoch_unit;
        match (&mut f.ty, &c.ty) {
            (FieldType::Struct(children), FieldType::Struct(cfg)) => apply_input_rules(children, cfg),
            (FieldType::List(elem), FieldType::List(cfg)) => {
                apply_input_rules(std::slice::from_mut(elem.as_mut()), std::slice::from_ref(cfg.as_ref()));
            }
            _ => {}
        }
    }
}

/// The unit of a timestamp sent as a JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EpochUnit {
    /// Seconds since the epoch.
    Seconds,
    /// Milliseconds since the epoch (the default: what JavaScript sends).
    #[default]
    Millis,
    /// Microseconds since the epoch.
    Micros,
}

impl EpochUnit {
    /// Parses `s`, `ms` or `us`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim() {
            "s" => Ok(Self::Seconds),
            "ms" => Ok(Self::Millis),
            "us" => Ok(Self::Micros),
            other => Err(format!("unit '{other}' is not an epoch unit; use \"s\", \"ms\" or \"us\"")),
        }
    }

    /// `n` of this unit in microseconds, `None` on overflow.
    pub fn to_micros(self, n: i64) -> Option<i64> {
        match self {
            Self::Seconds => n.checked_mul(1_000_000),
            Self::Millis => n.checked_mul(1_000),
            Self::Micros => Some(n),
        }
    }
}

impl fmt::Display for EpochUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Seconds => "s",
            Self::Millis => "ms",
            Self::Micros => "us",
        })
    }
}

/// The timestamps a table accepts, in microseconds since the epoch; a value
/// outside is a misread (a wrong unit, a sign error), never stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampRange {
    /// Earliest accepted value, inclusive.
    pub min_us: i64,
    /// Latest accepted value, exclusive.
    pub max_us: i64,
}

impl Default for TimestampRange {
    /// 1970-01-01 to 2200-01-01.
    fn default() -> Self {
        Self { min_us: 0, max_us: 7_258_118_400_000_000 }
    }
}

impl TimestampRange {
    /// Whether `us` is accepted.
    pub fn contains(&self, us: i64) -> bool {
        (self.min_us..self.max_us).contains(&us)
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
                let (p, sc) = inner.split_once(',').ok_or_else(|| decimal_hint(s))?;
                let precision: u8 = p.trim().parse().map_err(|_| decimal_hint(s))?;
                let scale: u8 = sc.trim().parse().map_err(|_| decimal_hint(s))?;
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
            Self::Struct(fields) => {
                f.write_str("struct<")?;
                for (i, c) in fields.iter().enumerate() {
                    let sep = if i == 0 { "" } else { ", " };
                    write!(f, "{sep}{}: {}", c.name, c.ty)?;
                }
                f.write_str(">")
            }
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
        let err = FieldType::parse_primitive("decimal(40,2)").unwrap_err();
        assert!(err.starts_with("type 'decimal(40,2)': precision must be 1..=38"), "{err}");
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
