//! The columnar validator: one pass from a record's JSON bytes into the
//! table's column buffers. Each value is checked and appended as the parser
//! reaches it — a string borrowed from the input goes straight into its
//! column — so a valid record costs no row, no `serde_json::Value` and no
//! allocation of its own.
//!
//! It answers only *whether* a record is valid. On the first problem it
//! stops; the caller cuts the columns back and asks the reference validator
//! why, so rejections read exactly as they always have.

use std::fmt;

use base64::Engine;
use serde::de::value::StrDeserializer;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Number;
use tributary_core::schema::{Field, FieldType, TimestampRange};

use super::{BOM, Key, Rules, parse_date, parse_decimal, parse_timestamp};
use crate::columns::Column;

/// What a field of an object held once the object was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Its key was not there.
    Absent,
    /// It was `null`; nothing was appended.
    Null,
    /// Its value was appended.
    Set,
}

/// Appends one record to `cols`, which follow `rules.fields`; false if the
/// record is not valid, in which case some columns may hold a part of it
/// and must be cut back. `slots` is scratch space kept by the caller.
pub fn append(
    bytes: &[u8],
    rules: &Rules<'_>,
    fill: &[(usize, &str)],
    cols: &mut [Column],
    slots: &mut Vec<Slot>,
) -> bool {
    let bytes = bytes.strip_prefix(BOM).unwrap_or(bytes);
    slots.clear();
    slots.resize(rules.fields.len(), Slot::Absent);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let object = Object { fields: rules.fields, cols, slots, range: &rules.timestamps, top: true };
    if de.deserialize_map(object).is_err() || de.end().is_err() {
        return false;
    }
    for (i, field) in rules.fields.iter().enumerate() {
        if slots[i] == Slot::Set {
            continue;
        }
        match fill.iter().find(|(at, _)| *at == i) {
            Some((_, value)) => {
                let text: StrDeserializer<'_, serde::de::value::Error> = value.into_deserializer();
                let value = Value { field, col: &mut cols[i], range: &rules.timestamps };
                if value.deserialize(text) != Ok(Slot::Set) {
                    return false;
                }
            }
            _ if field.required || rules.event_time == Some(i) => return false,
            _ => cols[i].push_null(),
        }
    }
    true
}

/// Whether `col` is the column buffer for a value of type `ty`: checked
/// once per schema, so that appends can rely on it.
pub fn fits(ty: &FieldType, col: &Column) -> bool {
    match (ty, col) {
        (FieldType::Struct(fields), Column::Struct { children, .. }) => {
            fields.len() == children.len() && fields.iter().zip(children).all(|(f, c)| fits(&f.ty, c))
        }
        (FieldType::List(elem), Column::List { child, .. }) => fits(&elem.ty, child),
        (FieldType::Boolean, Column::Bool { .. })
        | (FieldType::Int, Column::Int(_))
        | (FieldType::Long, Column::Long(_))
        | (FieldType::Float, Column::Float(_))
        | (FieldType::Double, Column::Double(_))
        | (FieldType::Decimal { .. }, Column::Decimal(..))
        | (FieldType::String, Column::Str(_))
        | (FieldType::Binary, Column::Bytes(_))
        | (FieldType::Date, Column::Date(_))
        | (FieldType::Timestamp | FieldType::Timestamptz, Column::Ts(..)) => true,
        _ => false,
    }
}

/// The refusal: its text is never read (the reference explains).
fn refuse<E: serde::de::Error, T>() -> Result<T, E> {
    Err(E::custom("refused"))
}

/// An object whose keys name `fields`, appended to `cols`. At the top level
/// other keys are skipped unread; inside a value they must not repeat.
struct Object<'a> {
    fields: &'a [Field],
    cols: &'a mut [Column],
    slots: &'a mut [Slot],
    range: &'a TimestampRange,
    top: bool,
}

impl<'de> Visitor<'de> for Object<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key(self.fields))? {
            match key {
                Some(i) if self.slots[i] != Slot::Absent => return refuse(),
                Some(i) => {
                    let (field, col) = (&self.fields[i], &mut self.cols[i]);
                    self.slots[i] = map.next_value_seed(Value { field, col, range: self.range })?;
                }
                None if self.top => map.next_value::<IgnoredAny>().map(drop)?,
                None => map.next_value_seed(Strict)?,
            }
        }
        Ok(())
    }
}

/// One value of `field`, appended to `col`; a null is left to the caller.
struct Value<'a> {
    field: &'a Field,
    col: &'a mut Column,
    range: &'a TimestampRange,
}

impl<'de> DeserializeSeed<'de> for Value<'_> {
    type Value = Slot;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Slot, D::Error> {
        d.deserialize_any(self)
    }
}

/// A JSON number as the parser read it.
#[derive(Clone, Copy)]
enum Num {
    Neg(i64),
    Pos(u64),
    Float(f64),
}

impl Num {
    fn as_i64(self) -> Option<i64> {
        match self {
            Self::Neg(v) => Some(v),
            Self::Pos(v) => i64::try_from(v).ok(),
            Self::Float(_) => None,
        }
    }

    #[allow(clippy::cast_precision_loss)]
    fn as_f64(self) -> f64 {
        match self {
            Self::Neg(v) => v as f64,
            Self::Pos(v) => v as f64,
            Self::Float(v) => v,
        }
    }

    /// The number's text, as `serde_json` prints it.
    fn text(self) -> Option<String> {
        Some(match self {
            Self::Neg(v) => Number::from(v).to_string(),
            Self::Pos(v) => Number::from(v).to_string(),
            Self::Float(v) => Number::from_f64(v)?.to_string(),
        })
    }
}

impl Value<'_> {
    fn number<E: serde::de::Error>(self, n: Num) -> Result<Slot, E> {
        let ok = match (&self.field.ty, self.col) {
            (FieldType::Long, Column::Long(c)) => n.as_i64().map(|v| c.push(v)).is_some(),
            (FieldType::Int, Column::Int(c)) => {
                n.as_i64().and_then(|v| i32::try_from(v).ok()).map(|v| c.push(v)).is_some()
            }
            (FieldType::Double, Column::Double(c)) => {
                c.push(n.as_f64());
                true
            }
            #[allow(clippy::cast_possible_truncation)]
            (FieldType::Float, Column::Float(c)) => {
                c.push(n.as_f64() as f32);
                true
            }
            (FieldType::Decimal { precision, scale }, Column::Decimal(c, ..)) => {
                n.text().and_then(|t| parse_decimal(&t, *precision, *scale).ok()).map(|v| c.push(v)).is_some()
            }
            (FieldType::Timestamp | FieldType::Timestamptz, Column::Ts(c, _)) => n
                .as_i64()
                .and_then(|v| self.field.epoch_unit.to_micros(v))
                .filter(|us| self.range.contains(*us))
                .map(|us| c.push(us))
                .is_some(),
            _ => false,
        };
        if ok { Ok(Slot::Set) } else { refuse() }
    }
}

impl<'de> Visitor<'de> for Value<'_> {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a value of type {}", self.field.ty)
    }

    fn visit_unit<E>(self) -> Result<Slot, E> {
        Ok(Slot::Null)
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Slot, E> {
        if matches!(self.field.ty, FieldType::Boolean) && self.col.push_bool(v) { Ok(Slot::Set) } else { refuse() }
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Slot, E> {
        self.number(Num::Neg(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Slot, E> {
        self.number(Num::Pos(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Slot, E> {
        self.number(Num::Float(v))
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Slot, E> {
        let ok = match (&self.field.ty, self.col) {
            (FieldType::String, Column::Str(c)) => {
                c.push(s.as_bytes());
                true
            }
            (FieldType::Decimal { precision, scale }, Column::Decimal(c, ..)) => {
                parse_decimal(s, *precision, *scale).map(|v| c.push(v)).is_ok()
            }
            (FieldType::Date, Column::Date(c)) => parse_date(s).map(|v| c.push(v)).is_some(),
            (FieldType::Timestamp | FieldType::Timestamptz, Column::Ts(c, _)) => {
                parse_timestamp(s).filter(|us| self.range.contains(*us)).map(|us| c.push(us)).is_some()
            }
            (FieldType::Binary, Column::Bytes(c)) => {
                base64::engine::general_purpose::STANDARD.decode(s).map(|v| c.push(&v)).is_ok()
            }
            _ => false,
        };
        if ok { Ok(Slot::Set) } else { refuse() }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Slot, A::Error> {
        let (FieldType::List(elem), Column::List { child, .. }) = (&self.field.ty, &mut *self.col) else {
            return refuse();
        };
        loop {
            let value = Value { field: elem, col: child, range: self.range };
            match seq.next_element_seed(value)? {
                None => break,
                Some(Slot::Null) if elem.required => return refuse(),
                Some(Slot::Null | Slot::Absent) => child.push_null(),
                Some(Slot::Set) => {}
            }
        }
        self.col.close_list();
        Ok(Slot::Set)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Slot, A::Error> {
        let (FieldType::Struct(fields), Column::Struct { children, .. }) = (&self.field.ty, &mut *self.col) else {
            return refuse();
        };
        let mut slots = vec![Slot::Absent; fields.len()];
        Object { fields, cols: children, slots: &mut slots, range: self.range, top: false }.visit_map(map)?;
        for ((field, col), slot) in fields.iter().zip(children.iter_mut()).zip(slots) {
            match slot {
                Slot::Set => {}
                _ if field.required => return refuse(),
                _ => col.push_null(),
            }
        }
        self.col.close_struct();
        Ok(Slot::Set)
    }
}

/// A value skipped but checked like any in a column's value: no object in
/// it may repeat a key.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Strict)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !keys.insert(key) {
                return refuse();
            }
            map.next_value_seed(Strict)?;
        }
        Ok(())
    }
}
