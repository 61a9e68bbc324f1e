//! Validation: a JSON record (its bytes) becomes a typed row of the table,
//! or a rejection that names the field, the value and what was expected.
//!
//! Rules: the record is an object; every required column is present and not
//! null; each value has the column's type (numbers for numeric columns, RFC
//! 3339 strings or epoch milliseconds for timestamps, `YYYY-MM-DD` for dates,
//! base64 for binary); decimals keep their exact digits and are refused
//! rather than rounded; the event-time column, if configured, must be
//! present. Keys the table does not know are ignored.

use std::fmt;

use base64::Engine;
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
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

/// Validates one JSON record, given as its bytes, against the user columns
/// `fields` (lineage columns are skipped and filled by the caller). The
/// field at index `event_time` must be present if set. `fill` gives a field
/// index and a value used when the record has no value for it (a Kafka
/// message key). Indices are resolved once, when the schema is built.
///
/// Only the values of the table's top-level columns are materialised; other
/// keys are skipped without allocating. A record that is not a plain object
/// is re-parsed whole, so that the rejection says exactly what is wrong.
pub fn validate_json(
    bytes: &[u8],
    fields: &[Field],
    event_time: Option<usize>,
    fill: Option<(usize, &str)>,
) -> Result<Vec<Cell>, Rejection> {
    let mut slots = match top_level(bytes, fields) {
        Ok(slots) => slots,
        Err(_) => slots_of(bytes, fields)?,
    };
    if let Some((i, value)) = fill
        && slots[i].as_ref().is_none_or(Value::is_null)
    {
        slots[i] = Some(Value::String(value.to_owned()));
    }
    if let Some(i) = event_time
        && slots[i].as_ref().is_none_or(Value::is_null)
    {
        let et = &fields[i].name;
        return Err(Rejection::at("missing_event_time", et, format!("event-time field '{et}' is missing or null")));
    }
    let mut slots = slots.into_iter();
    fields_cells(fields, &Path::Root, |_| slots.next().flatten())
}

/// The slow path: the whole record as a `Value`, for an exact rejection.
fn slots_of(bytes: &[u8], fields: &[Field]) -> Result<Vec<Option<Value>>, Rejection> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| Rejection {
        kind: "malformed_json",
        field: None,
        message: format!("record is not valid JSON: {e}"),
    })?;
    let Value::Object(mut obj) = value else {
        return Err(Rejection {
            kind: "not_an_object",
            field: None,
            message: format!("record must be a JSON object, got {}", type_name(&value)),
        });
    };
    Ok(fields.iter().map(|f| obj.remove(&f.name)).collect())
}

/// The fast path: a top-level object's values for `fields`, in their order.
fn top_level(bytes: &[u8], fields: &[Field]) -> Result<Vec<Option<Value>>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let slots = de.deserialize_map(TopLevel(fields))?;
    de.end()?;
    Ok(slots)
}

struct TopLevel<'f>(&'f [Field]);

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Vec<Option<Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut slots = vec![None; self.0.len()];
        while let Some(column) = map.next_key_seed(Column(self.0))? {
            match column {
                Some(i) => slots[i] = Some(map.next_value()?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(slots)
    }
}

/// A key, resolved to the index of the column it names (without allocating).
struct Column<'f>(&'f [Field]);

impl<'de> DeserializeSeed<'de> for Column<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Column<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|f| f.name == key))
    }
}

/// Where a value sits in the record, rendered only for a rejection.
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Field(Path::Root, name) => f.write_str(name),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// One cell per field; `take` hands over each field's value, if any.
fn fields_cells(
    fields: &[Field],
    parent: &Path<'_>,
    mut take: impl FnMut(&Field) -> Option<Value>,
) -> Result<Vec<Cell>, Rejection> {
    fields
        .iter()
        .map(|f| {
            let path = Path::Field(parent, &f.name);
            match take(f) {
                None | Some(Value::Null) if f.required => Err(Rejection::at(
                    "missing_field",
                    &path.to_string(),
                    format!("required field '{path}' is missing or null"),
                )),
                None | Some(Value::Null) => Ok(Cell::Null),
                Some(v) => cell(v, &f.ty, &path),
            }
        })
        .collect()
}

fn mismatch(path: &Path<'_>, want: &FieldType, v: &Value) -> Rejection {
    let shown: String = v.to_string().chars().take(64).collect();
    let message = format!("field '{path}' expects {want}, got {} {shown}", type_name(v));
    Rejection::at("type_mismatch", &path.to_string(), message)
}

fn cell(v: Value, ty: &FieldType, path: &Path<'_>) -> Result<Cell, Rejection> {
    let bad = |v: &Value| mismatch(path, ty, v);
    Ok(match (ty, v) {
        (FieldType::String, Value::String(s)) => Cell::Str(s),
        (FieldType::Boolean, Value::Bool(b)) => Cell::Bool(b),
        (FieldType::Long, v) => Cell::Long(v.as_i64().ok_or_else(|| bad(&v))?),
        (FieldType::Int, v) => Cell::Int(v.as_i64().and_then(|n| i32::try_from(n).ok()).ok_or_else(|| bad(&v))?),
        (FieldType::Double, v) => Cell::Double(v.as_f64().ok_or_else(|| bad(&v))?),
        #[allow(clippy::cast_possible_truncation)]
        (FieldType::Float, v) => Cell::Float(v.as_f64().ok_or_else(|| bad(&v))? as f32),
        (FieldType::Decimal { precision, scale }, v) => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s,
                v => return Err(bad(&v)),
            };
            Cell::Decimal(parse_decimal(&text, *precision, *scale).map_err(|why| {
                Rejection::at(
                    "type_mismatch",
                    &path.to_string(),
                    format!("field '{path}' expects {ty}: '{text}' {why}"),
                )
            })?)
        }
        (FieldType::Date, Value::String(s)) => Cell::Date(
            NaiveDate::parse_from_str(&s, "%Y-%m-%d")
                .map(|d| (d - NaiveDate::default()).num_days())
                .ok()
                .and_then(|d| i32::try_from(d).ok())
                .ok_or_else(|| time_error(path, &s, "a date like 2026-11-25"))?,
        ),
        (FieldType::Timestamp | FieldType::Timestamptz, Value::String(s)) => Cell::Ts(
            parse_timestamp(&s)
                .ok_or_else(|| time_error(path, &s, "an RFC 3339 timestamp like 2026-11-25T08:00:00Z"))?,
        ),
        (FieldType::Timestamp | FieldType::Timestamptz, Value::Number(n)) => {
            Cell::Ts(n.as_i64().and_then(|ms| ms.checked_mul(1000)).ok_or_else(|| bad(&Value::Number(n.clone())))?)
        }
        (FieldType::Binary, Value::String(s)) => {
            Cell::Bytes(base64::engine::general_purpose::STANDARD.decode(&s).map_err(|e| {
                Rejection::at("type_mismatch", &path.to_string(), format!("field '{path}' expects base64: {e}"))
            })?)
        }
        (FieldType::Struct(children), Value::Object(mut obj)) => {
            Cell::Struct(fields_cells(children, path, |f| obj.remove(&f.name))?)
        }
        (FieldType::List(elem), Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let p = Path::Index(path, i);
                out.push(match item {
                    Value::Null if elem.required => {
                        return Err(Rejection::at(
                            "missing_field",
                            &p.to_string(),
                            format!("list element '{p}' must not be null"),
                        ));
                    }
                    Value::Null => Cell::Null,
                    item => cell(item, &elem.ty, &p)?,
                });
            }
            Cell::List(out)
        }
        (_, v) => return Err(bad(&v)),
    })
}

fn time_error(path: &Path<'_>, s: &str, want: &str) -> Rejection {
    let kind = "invalid_timestamp";
    Rejection::at(kind, &path.to_string(), format!("field '{path}' expects {want}, got '{s}'"))
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

    fn index(name: &str) -> usize {
        fields().iter().position(|f| f.name == name).unwrap()
    }

    fn check(v: Value, event_time: Option<&str>) -> Result<Vec<Cell>, Rejection> {
        validate_json(v.to_string().as_bytes(), &fields(), event_time.map(index), None)
    }

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
        let row = check(v, Some("ts")).unwrap();
        assert_eq!(row[0], Cell::Str("a".into()));
        assert_eq!(row[2], Cell::Decimal(1250));
        assert_eq!(row[3], Cell::Ts(1_767_225_600_000_000));
        assert_eq!(row[4], Cell::Struct(vec![Cell::Double(1.5)]));
        assert_eq!(row[5], Cell::List(vec![Cell::Str("x".into()), Cell::Null]));
    }

    #[test]
    fn rejections_name_the_field_and_the_problem() {
        let r = check(json!({"n":1}), None).unwrap_err();
        assert_eq!((r.kind, r.field.as_deref()), ("missing_field", Some("id")));
        let r = check(json!({"id":"a","n":"three"}), None).unwrap_err();
        assert_eq!(r.kind, "type_mismatch");
        assert!(r.message.contains("field 'n' expects int"), "{}", r.message);
        let r = check(json!({"id":"a","geo":{}}), None).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("geo.lat"));
        let r = check(json!({"id":"a","ts":"yesterday"}), None).unwrap_err();
        assert_eq!(r.kind, "invalid_timestamp");
        let r = check(json!({"id":"a"}), Some("ts")).unwrap_err();
        assert_eq!(r.kind, "missing_event_time");
        let r = check(json!([1]), None).unwrap_err();
        assert_eq!(r.kind, "not_an_object");
        let r = check(json!({"id":"a","n":3_000_000_000i64}), None).unwrap_err();
        assert_eq!(r.kind, "type_mismatch");
    }

    #[test]
    fn bytes_that_are_not_one_object_are_named() {
        let f = fields();
        let r = validate_json(b"{\"id\":\"a\",", &f, None, None).unwrap_err();
        assert_eq!(r.kind, "malformed_json");
        assert!(r.message.starts_with("record is not valid JSON: "), "{}", r.message);
        let r = validate_json(b"{\"id\":\"a\"} {\"id\":\"b\"}", &f, None, None).unwrap_err();
        assert_eq!(r.kind, "malformed_json", "trailing data is not silently dropped");
        let r = validate_json(b"\"text\"", &f, None, None).unwrap_err();
        assert_eq!((r.kind, r.message.as_str()), ("not_an_object", "record must be a JSON object, got string"));
    }

    #[test]
    fn keys_match_like_a_parsed_object() {
        let f = fields();
        // An escaped key, an unknown nested key, and a repeated key (the
        // last one wins, as in a parsed object).
        let row = validate_json(br#"{"i\u0064":"a","x":{"deep":[1,{"y":2}]},"n":1,"n":2}"#, &f, None, None).unwrap();
        assert_eq!(row[0], Cell::Str("a".into()));
        assert_eq!(row[1], Cell::Int(2));
    }

    #[test]
    fn fill_supplies_a_missing_or_null_column_only() {
        let f = fields();
        let row = validate_json(br#"{"n":1}"#, &f, None, Some((index("id"), "from-key"))).unwrap();
        assert_eq!(row[0], Cell::Str("from-key".into()));
        let row = validate_json(br#"{"id":null}"#, &f, None, Some((index("id"), "k"))).unwrap();
        assert_eq!(row[0], Cell::Str("k".into()));
        let row = validate_json(br#"{"id":"own"}"#, &f, None, Some((index("id"), "k"))).unwrap();
        assert_eq!(row[0], Cell::Str("own".into()));
    }

    #[test]
    fn nested_paths_are_named_in_rejections() {
        let f = vec![Field::new(
            "items",
            FieldType::List(Box::new(Field::new(
                "element",
                FieldType::Struct(vec![Field::new("qty", FieldType::Int, true)]),
                true,
            ))),
            false,
        )];
        let r = validate_json(br#"{"items":[{"qty":1},{"qty":"x"}]}"#, &f, None, None).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("items[1].qty"));
        assert!(r.message.contains("field 'items[1].qty' expects int, got string \"x\""), "{}", r.message);
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
        let row = check(json!({"id":"a","ts":1_767_225_600_000i64}), None).unwrap();
        assert_eq!(row[3], Cell::Ts(1_767_225_600_000_000));
    }
}
