//! Validation: a JSON record (its bytes) becomes a row of the table, or a
//! rejection that names the field, the value and what was expected.
//!
//! Rules: the record is an object; every required column is present and not
//! null; each value has the column's type (numbers for numeric columns, RFC
//! 3339 strings or epoch numbers in the column's unit for timestamps,
//! `YYYY-MM-DD` for dates, base64 for binary); decimals keep their exact
//! digits and are refused rather than rounded; timestamps fall inside the
//! table's range; the event-time column, if configured, must be present.
//! Keys the table does not know are ignored, but no key may repeat among
//! the table's columns or inside a column's value: which copy would win is a
//! guess, so the record goes to quarantine. A leading UTF-8 byte-order mark
//! is skipped.
//!
//! The rules are written twice, on purpose:
//! - [`columnar`] is the path every record takes: one pass from the JSON
//!   bytes into the table's column buffers, with no row in between. It only
//!   decides *whether* a record is valid.
//! - [`reference`] states the rules plainly, value by value, and says *why*
//!   a record is not: the columnar path hands it every record it refuses, so
//!   a rejection's kind, field path and message come from one place. A
//!   property test holds the two in agreement, record by record.

#[cfg(test)]
mod agreement;
pub mod columnar;
pub mod reference;

use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use serde::de::{DeserializeSeed, Deserializer, Visitor};
use tributary_core::schema::{Field, TimestampRange};

pub use reference::{Cell, validate_json};

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
    pub(crate) fn at(kind: &'static str, field: &str, message: String) -> Self {
        Self { kind, field: Some(field.to_owned()), message }
    }
}

/// A UTF-8 byte-order mark, which some Windows tools put before a record.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// What a record is checked against, resolved once per table schema.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The user columns (lineage columns are filled by the caller).
    pub fields: &'a [Field],
    /// Index within `fields` of the event-time column, which must be present.
    pub event_time: Option<usize>,
    /// Timestamps accepted in any timestamp column.
    pub timestamps: TimestampRange,
}

/// A key, resolved to the index of the field it names, without allocating
/// (escapes in the key are undone first, like a parsed object's).
pub(crate) struct Key<'f>(pub &'f [Field]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|f| f.name == key))
    }
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_date(s: &str) -> Option<i32> {
    let days = (NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()? - NaiveDate::default()).num_days();
    i32::try_from(days).ok()
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
    // At most 38 digits: the unscaled value always fits an i128.
    let mut v: i128 = 0;
    let frac_digits = frac.bytes().chain(std::iter::repeat(b'0')).take(usize::from(scale));
    for b in int.bytes().chain(frac_digits) {
        v = v.checked_mul(10).and_then(|v| v.checked_add(i128::from(b - b'0'))).ok_or("is out of range")?;
    }
    Ok(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn dates_are_days_since_the_epoch() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("1969-12-31"), Some(-1));
        assert_eq!(parse_date("2026-02-30"), None);
    }
}
