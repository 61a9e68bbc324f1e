//! The reference validator: the rules of [`super`], stated value by value
//! over a parsed `serde_json::Value`, with a typed [`Cell`] per column. It is
//! the one place a rejection's kind, field path and message are written; the
//! columnar path asks it *why* whenever it refuses a record, and tests hold
//! the two in agreement.

use std::fmt;

use base64::Engine;
use chrono::DateTime;
use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;
use serde_json::{Map, Number, Value};
use tributary_core::schema::{Field, FieldType, TimestampRange};

use super::{BOM, Key, Rejection, Rules, parse_date, parse_decimal, parse_timestamp};

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

/// Validates one JSON record, given as its bytes, against `rules`. `fill`
/// gives a field index and a value used when the record has no value for it
/// (a Kafka message key). Indices are resolved once, when the schema is
/// built.
///
/// Only the values of the table's top-level columns are materialised; other
/// keys are skipped without allocating. A record that is not a plain object
/// is re-parsed whole, so that the rejection says exactly what is wrong.
pub fn validate_json(bytes: &[u8], rules: &Rules<'_>, fill: &[(usize, &str)]) -> Result<Vec<Cell>, Rejection> {
    let Rules { fields, event_time, timestamps } = *rules;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    let mut slots = match top_level(bytes, fields) {
        Ok(slots) => slots,
        Err(_) => slots_of(bytes, fields)?,
    };
    for (i, value) in fill {
        if slots[*i].as_ref().is_none_or(Value::is_null) {
            slots[*i] = Some(Value::String((*value).to_owned()));
        }
    }
    if let Some(i) = event_time
        && slots[i].as_ref().is_none_or(Value::is_null)
    {
        let et = &fields[i].name;
        return Err(Rejection::at("missing_event_time", et, format!("event-time field '{et}' is missing or null")));
    }
    let mut slots = slots.into_iter();
    fields_cells(fields, &Path::Root, &timestamps, |_| slots.next().flatten())
}

/// The slow path: the whole record as a `Value`, for an exact rejection.
fn slots_of(bytes: &[u8], fields: &[Field]) -> Result<Vec<Option<Value>>, Rejection> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict.deserialize(&mut de).and_then(|v| de.end().map(|()| v)).map_err(|e| {
        // The only data error `Strict` raises is a repeated key.
        if e.classify() == Category::Data {
            Rejection {
                kind: "duplicate_field",
                field: None,
                message: format!("record repeats a key ({e}); send each key once"),
            }
        } else {
            Rejection { kind: "malformed_json", field: None, message: format!("record is not valid JSON: {e}") }
        }
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
        while let Some(column) = map.next_key_seed(Key(self.0))? {
            match column {
                Some(i) if slots[i].is_some() => return Err(A::Error::custom("a column repeats")),
                Some(i) => slots[i] = Some(map.next_value_seed(Strict)?),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(slots)
    }
}

/// A JSON value whose objects never repeat a key; otherwise the same value
/// `serde_json` builds.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(Strict)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) {
                return Err(A::Error::custom(format!("key '{key}' appears twice")));
            }
            let value = map.next_value_seed(Strict)?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
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
    range: &TimestampRange,
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
                Some(v) => cell(v, f, &path, range),
            }
        })
        .collect()
}

fn mismatch(path: &Path<'_>, want: &FieldType, v: &Value) -> Rejection {
    let shown: String = v.to_string().chars().take(64).collect();
    let message = format!("field '{path}' expects {want}, got {} {shown}", type_name(v));
    Rejection::at("type_mismatch", &path.to_string(), message)
}

fn cell(v: Value, field: &Field, path: &Path<'_>, range: &TimestampRange) -> Result<Cell, Rejection> {
    let ty = &field.ty;
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
        (FieldType::Date, Value::String(s)) => {
            Cell::Date(parse_date(&s).ok_or_else(|| time_error(path, &s, "a date like 2026-11-25"))?)
        }
        (FieldType::Timestamp | FieldType::Timestamptz, Value::String(s)) => {
            let us = parse_timestamp(&s)
                .ok_or_else(|| time_error(path, &s, "an RFC 3339 timestamp like 2026-11-25T08:00:00Z"))?;
            Cell::Ts(in_range(us, range, path, || format!("'{s}'"))?)
        }
        (FieldType::Timestamp | FieldType::Timestamptz, Value::Number(n)) => {
            let unit = field.epoch_unit;
            let us = n.as_i64().and_then(|v| unit.to_micros(v));
            let us = us.ok_or_else(|| {
                let why = format!("an epoch number in {unit} that fits 64 bits, got {n}");
                Rejection::at("invalid_timestamp", &path.to_string(), format!("field '{path}' expects {why}"))
            })?;
            Cell::Ts(in_range(us, range, path, || format!("{n} (epoch {unit})"))?)
        }
        (FieldType::Binary, Value::String(s)) => {
            Cell::Bytes(base64::engine::general_purpose::STANDARD.decode(&s).map_err(|e| {
                Rejection::at("type_mismatch", &path.to_string(), format!("field '{path}' expects base64: {e}"))
            })?)
        }
        (FieldType::Struct(children), Value::Object(mut obj)) => {
            Cell::Struct(fields_cells(children, path, range, |f| obj.remove(&f.name))?)
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
                    item => cell(item, elem, &p, range)?,
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

/// `us` if the table accepts it; otherwise a rejection that shows how the
/// value was read, since a wrong unit is the usual cause.
fn in_range(us: i64, range: &TimestampRange, path: &Path<'_>, shown: impl Fn() -> String) -> Result<i64, Rejection> {
    if range.contains(us) {
        return Ok(us);
    }
    let at = |us: i64| DateTime::from_timestamp_micros(us).map_or_else(|| format!("{us} µs"), |t| t.to_rfc3339());
    let message = format!(
        "field '{path}' = {} reads as {}, outside the accepted range {} to {}; set the column's unit \
         (s, ms or us) or the table's min_timestamp/max_timestamp",
        shown(),
        at(us),
        at(range.min_us),
        at(range.max_us),
    );
    Err(Rejection::at("invalid_timestamp", &path.to_string(), message))
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
        let f = fields();
        validate_json(v.to_string().as_bytes(), &rules(&f, event_time.map(index)), &[])
    }

    fn rules(fields: &[Field], event_time: Option<usize>) -> Rules<'_> {
        Rules { fields, event_time, timestamps: TimestampRange::default() }
    }

    fn plain(bytes: &[u8], fields: &[Field]) -> Result<Vec<Cell>, Rejection> {
        validate_json(bytes, &rules(fields, None), &[])
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
        let r = plain(b"{\"id\":\"a\",", &f).unwrap_err();
        assert_eq!(r.kind, "malformed_json");
        assert!(r.message.starts_with("record is not valid JSON: "), "{}", r.message);
        let r = plain(b"{\"id\":\"a\"} {\"id\":\"b\"}", &f).unwrap_err();
        assert_eq!(r.kind, "malformed_json", "trailing data is not silently dropped");
        let r = plain(b"\"text\"", &f).unwrap_err();
        assert_eq!((r.kind, r.message.as_str()), ("not_an_object", "record must be a JSON object, got string"));
    }

    #[test]
    fn keys_match_like_a_parsed_object() {
        let f = fields();
        // An escaped key and an unknown nested key.
        let row = plain(br#"{"i\u0064":"a","x":{"deep":[1,{"y":2}]},"n":2}"#, &f).unwrap();
        assert_eq!(row[0], Cell::Str("a".into()));
        assert_eq!(row[1], Cell::Int(2));
    }

    #[test]
    fn a_repeated_key_is_quarantined_not_last_wins() {
        let f = fields();
        for record in [
            &br#"{"id":"a","n":1,"n":2}"#[..],
            br#"{"id":"a","i\u0064":"b"}"#,
            br#"{"id":"a","geo":{"lat":1.0,"lat":2.0}}"#,
            br#"{"id":"a","tags":[{"k":1,"k":2}]}"#,
        ] {
            let r = plain(record, &f).unwrap_err();
            assert_eq!(r.kind, "duplicate_field", "{}", String::from_utf8_lossy(record));
            assert!(r.message.contains("appears twice"), "{}", r.message);
        }
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let row = plain(b"\xEF\xBB\xBF{\"id\":\"a\"}", &fields()).unwrap();
        assert_eq!(row[0], Cell::Str("a".into()));
    }

    #[test]
    fn fill_supplies_a_missing_or_null_column_only() {
        let f = fields();
        let row = validate_json(br#"{"n":1}"#, &rules(&f, None), &[(index("id"), "from-key")]).unwrap();
        assert_eq!(row[0], Cell::Str("from-key".into()));
        let row = validate_json(br#"{"id":null}"#, &rules(&f, None), &[(index("id"), "k")]).unwrap();
        assert_eq!(row[0], Cell::Str("k".into()));
        let row = validate_json(br#"{"id":"own"}"#, &rules(&f, None), &[(index("id"), "k")]).unwrap();
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
        let r = plain(br#"{"items":[{"qty":1},{"qty":"x"}]}"#, &f).unwrap_err();
        assert_eq!(r.field.as_deref(), Some("items[1].qty"));
        assert!(r.message.contains("field 'items[1].qty' expects int, got string \"x\""), "{}", r.message);
    }

    #[test]
    fn epoch_numbers_are_read_in_the_columns_unit_and_range_checked() {
        let mut f = fields();
        let ts = |f: &[Field], n: i64| plain(format!(r#"{{"id":"a","ts":{n}}}"#).as_bytes(), f);
        f[3].epoch_unit = tributary_core::schema::EpochUnit::Seconds;
        assert_eq!(ts(&f, 1_795_000_000).unwrap()[3], Cell::Ts(1_795_000_000_000_000));
        f[3].epoch_unit = tributary_core::schema::EpochUnit::Micros;
        assert_eq!(ts(&f, 1_795_000_000_000_000).unwrap()[3], Cell::Ts(1_795_000_000_000_000));
        // Negative milliseconds used to land as year 0; seconds overflow.
        let f = fields();
        let r = ts(&f, -62_000_000_000_000).unwrap_err();
        assert_eq!((r.kind, r.field.as_deref()), ("invalid_timestamp", Some("ts")));
        assert!(r.message.contains("outside the accepted range") && r.message.contains("epoch ms"), "{}", r.message);
        let r = plain(br#"{"id":"a","ts":"2301-01-01T00:00:00Z"}"#, &f).unwrap_err();
        assert_eq!(r.kind, "invalid_timestamp");
        let narrow = Rules {
            fields: &f,
            event_time: None,
            timestamps: TimestampRange { min_us: 946_684_800_000_000, max_us: i64::MAX },
        };
        let r = validate_json(br#"{"id":"a","ts":1795000000}"#, &narrow, &[]).unwrap_err();
        assert!(r.message.contains("1970-01-21"), "seconds read as milliseconds are caught: {}", r.message);
    }

    #[test]
    fn timestamps_accept_offsets_naive_and_epoch_millis() {
        assert_eq!(parse_timestamp("2026-01-01T01:00:00+01:00"), Some(1_767_225_600_000_000));
        assert_eq!(parse_timestamp("2026-01-01 00:00:00"), Some(1_767_225_600_000_000));
        let row = check(json!({"id":"a","ts":1_767_225_600_000i64}), None).unwrap();
        assert_eq!(row[3], Cell::Ts(1_767_225_600_000_000));
    }
}
