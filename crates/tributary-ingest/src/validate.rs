//! Validation: a JSON value becomes a typed row of the table, or a rejection
//! that names the field, the value and what was expected.
//!
//! Rules: the record is an object; every required column is present and not
//! null; each value has the column's type (numbers for numeric columns, RFC
//! 3339 strings or epoch milliseconds for timestamps, `YYYY-MM-DD` for dates,
//! base64 for binary); decimals keep their exact digits and are refused
//! rather than rounded; the event-time column, if configured, must be
//! present. Keys the table does not know are ignored.

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde_json::{Map, Value};
use tributary_core::schema::{Field, FieldType};

/// A typed value of one column.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Absent or null.
    Null,
    /// boolean
    Bool(bool),
    /// int
    Int(i32),
    /// long
    Long(i64),
    /// float
    Float(f32),
    /// double
    Double(f64),
    /// decimal, as the unscaled integer
    Decimal(i128),
    /// string
    Str(String),
    /// binary
    Bytes(Vec<u8>),
    /// date, days since the epoch
    Date(i32),
    /// timestamp(tz), microseconds since the epoch
    Ts(i64),
    /// list
    List(Vec<Cell>),
    /// struct, one cell per child field
    Struct(Vec<Cell>),
}

/// Why a record was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Stable machine-readable reason, used as a metric label.
    pub kind: &'static str,
    /// The column path concerned, if any.
    pub field: Option<String>,
    /// Human explanation naming the field and the value.
    pub message: String,
}

impl Rejection {
    fn at(kind: &'static str, field: &str, message: String) -> Self {
        Self { kind, field: Some(field.to_owned()), message }
    }
}

/// Validates `value` against the user columns `fields` (lineage columns are
/// skipped and filled by the caller). `event_time` must be present if set.
pub fn validate_record(value: &Value, fields: &[Field], event_time: Option<&str>) -> Result<Vec<Cell>, Rejection> {
    let Value::Object(obj) = value else {
        return Err(Rejection {
            kind: "not_an_object",
            field: None,
            message: format!("record must be a JSON object, got {}", type_name(value)),
        });
    };
    if let Some(et) = event_time
        && obj.get(et).is_none_or(Value::is_null)
    {
        return Err(Rejection::at("missing_event_time", et, format!("event-time field '{et}' is missing or null")));
    }
    struct_cells(obj, fields, "")
}

fn struct_cells(obj: &Map<String, Value>, fields: &[Field], prefix: &str) -> Result<Vec<Cell>, Rejection> {
    fields
        .iter()
        .map(|f| {
            let path = format!("{prefix}{}", f.name);
            match obj.get(&f.name) {
                None | Some(Value::Null) if f.required => {
                    Err(Rejection::at("missing_field", &path, format!("required field '{path}' is missing or null")))
                }
                None | Some(Value::Null) => Ok(Cell::Null),
                Some(v) => cell(v, &f.ty, &path),
            }
        })
        .collect()
}

fn mismatch(path: &str, want: &FieldType, v: &Value) -> Rejection {
    let shown: String = v.to_string().chars().take(64).collect();
    Rejection::at("type_mismatch", path, format!("field '{path}' expects {want}, got {} {shown}", type_name(v)))
}

fn cell(v: &Value, ty: &FieldType, path: &str) -> Result<Cell, Rejection> {
    let bad = || mismatch(path, ty, v);
    Ok(match ty {
        FieldType::String => Cell::Str(v.as_str().ok_or_else(bad)?.to_owned()),
        FieldType::Boolean => Cell::Bool(v.as_bool().ok_or_else(bad)?),
        FieldType::Long => Cell::Long(v.as_i64().ok_or_else(bad)?),
        FieldType::Int => Cell::Int(v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(bad)?),
        FieldType::Double => Cell::Double(v.as_f64().ok_or_else(bad)?),
        #[allow(clippy::cast_possible_truncation)]
        FieldType::Float => Cell::Float(v.as_f64().ok_or_else(bad)? as f32),
        FieldType::Decimal { precision, scale } => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.clone(),
                _ => return Err(bad()),
            };
            Cell::Decimal(parse_decimal(&text, *precision, *scale).map_err(|why| {
                Rejection::at("type_mismatch", path, format!("field '{path}' expects {ty}: '{text}' {why}"))
            })?)
        }
        FieldType::Date => match v {
            Value::String(s) => Cell::Date(
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map(|d| (d - NaiveDate::default()).num_days())
                    .ok()
                    .and_then(|d| i32::try_from(d).ok())
                    .ok_or_else(|| time_error(path, s, "a date like 2026-11-25"))?,
            ),
            _ => return Err(bad()),
        },
        FieldType::Timestamp | FieldType::Timestamptz => match v {
            Value::String(s) => Cell::Ts(
                parse_timestamp(s)
                    .ok_or_else(|| time_error(path, s, "an RFC 3339 timestamp like 2026-11-25T08:00:00Z"))?,
            ),
            Value::Number(n) => Cell::Ts(n.as_i64().and_then(|ms| ms.checked_mul(1000)).ok_or_else(bad)?),
            _ => return Err(bad()),
        },
        FieldType::Binary => Cell::Bytes(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().ok_or_else(bad)?)
                .map_err(|e| Rejection::at("type_mismatch", path, format!("field '{path}' expects base64: {e}")))?,
        ),
        FieldType::Struct(children) => {
            Cell::Struct(struct_cells(v.as_object().ok_or_else(bad)?, children, &format!("{path}."))?)
        }
        FieldType::List(elem) => {
            let items = v.as_array().ok_or_else(bad)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(match item {
                    Value::Null if elem.required => {
                        return Err(Rejection::at("missing_field", &p, format!("list element '{p}' must not be null")));
                    }
                    Value::Null => Cell::Null,
                    _ => cell(item, &elem.ty, &p)?,
                });
            }
            Cell::List(out)
        }
    })
}

fn time_error(path: &str, s: &str, want: &str) -> Rejection {
    let kind = "invalid_timestamp";
    Rejection::at(kind, path, format!("field '{path}' expects {want}, got '{s}'"))
}

/// Parses RFC 3339, or a naive `YYYY-MM-DD[T ]HH:MM:SS[.f]` taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc().timestamp_micros())
}

/// Parses decimal text exactly into an unscaled integer; refuses anything
/// that would need rounding or exceed the precision.
pub fn parse_decimal(text: &str, precision: u8, scale: u8) -> Result<i128, String> {
    let t = text.trim();
    if t.contains(['e', 'E']) {
        return Err("uses an exponent; send plain digits".to_owned());
    }
    let (neg, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if int.is_empty() && frac.is_empty() || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
        return Err("is not a number".to_owned());
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > usize::from(scale) {
        return Err(format!("has more than {scale} decimal places"));
    }
    let int = int.trim_start_matches('0');
    if int.len() + usize::from(scale) > usize::from(precision) {
        return Err(format!("does not fit {precision} digits"));
    }
    let padded = format!("{int}{frac:0<width$}", width = usize::from(scale));
    let v: i128 = if padded.is_empty() { 0 } else { padded.parse().map_err(|_| "is out of range".to_owned())? };
    Ok(if neg { -v } else { v })
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fields() -> Vec<Field> {
        vec![
            Field::new("id", FieldType::String, true),
            Field::new("n", FieldType::Int, false),
            Field::new("amount", FieldType::Decimal { precision: 10, scale: 2 }, false),
            Field::new("ts", FieldType::Timestamptz, false),
            Field::new("geo", FieldType::Struct(vec![Field::new("lat", FieldType::Double, true)]), false),
            Field::new("tags", FieldType::List(Box::new(Field::new("element", FieldType::String, false))), false),
        ]
    }

    #[test]
    fn valid_record_becomes_typed_cells() {
        let v = json!({"id":"a","n":3,"amount":"12.5","ts":"2026-01-01T00:00:00Z","geo":{"lat":1.5},"tags":["x",null],"extra":1});
        let row = validate_record(&v, &fields(), Some("ts")).unwrap();
        assert_eq!(row[0], Cell::Str("a".into()));
        assert_eq!(row[2], Cell::Decimal(1250));
        assert_eq!(row[3], Cell::Ts(1_767_225_600_000_000));
        assert_eq!(row[4], Cell::Struct(vec![Cell::Double(1.5)]));
        assert_eq!(row[5], Cell::List(vec![Cell::Str("x".into()), Cell::Null]));
    }

    #[test]
    fn rejections_name_the_field_and_the_problem() {
        let r = validate_record(&json!({"n":1}), &fields(), None).unwrap_err();
        assert_eq!((r.kind, r.field.as_deref()), ("missing_field", Some("id")));
        let r = validate_record(&json!({"id":"a","n":"three"}), &fields(), None).unwrap_err();
        assert_eq!(r.kind, "type_mismatch");
        assert!(r.message.contains("field 'n' expects int"), "{}", r.message);
        let r = validate_record(&json!({"id":"a","geo":{}}), &fields(), None).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("geo.lat"));
        let r = validate_record(&json!({"id":"a","ts":"yesterday"}), &fields(), None).unwrap_err();
        assert_eq!(r.kind, "invalid_timestamp");
        let r = validate_record(&json!({"id":"a"}), &fields(), Some("ts")).unwrap_err();
        assert_eq!(r.kind, "missing_event_time");
        let r = validate_record(&json!([1]), &fields(), None).unwrap_err();
        assert_eq!(r.kind, "not_an_object");
        let r = validate_record(&json!({"id":"a","n":3_000_000_000i64}), &fields(), None).unwrap_err();
        assert_eq!(r.kind, "type_mismatch");
    }

    #[test]
    fn decimals_are_exact_or_refused() {
        assert_eq!(parse_decimal("12.50", 10, 2), Ok(1250));
        assert_eq!(parse_decimal("-0.5", 10, 2), Ok(-50));
        assert_eq!(parse_decimal("7", 10, 2), Ok(700));
        assert!(parse_decimal("1.234", 10, 2).unwrap_err().contains("decimal places"));
        assert!(parse_decimal("123456789", 10, 2).unwrap_err().contains("10 digits"));
        assert!(parse_decimal("1e3", 10, 2).is_err());
        assert!(parse_decimal("abc", 10, 2).is_err());
    }

    #[test]
    fn timestamps_accept_offsets_naive_and_epoch_millis() {
        assert_eq!(parse_timestamp("2026-01-01T01:00:00+01:00"), Some(1_767_225_600_000_000));
        assert_eq!(parse_timestamp("2026-01-01 00:00:00"), Some(1_767_225_600_000_000));
        let row = validate_record(&json!({"id":"a","ts":1_767_225_600_000i64}), &fields(), None).unwrap();
        assert_eq!(row[3], Cell::Ts(1_767_225_600_000_000));
    }
}
