//! Arrow results as Postgres rows: each Arrow type answered as the
//! Postgres type a client expects, in the text or binary format it asked
//! for.
//!
//! Exactness is the rule: decimals are `numeric` (text and binary both
//! exact, never through a float), timestamps carry microseconds (nanosecond
//! values are cut, as Postgres stores no finer), a timestamp with a time
//! zone is `timestamptz` shown in UTC (`+00`, the session's `TimeZone`), and
//! nested values (lists, structs, maps) are `json` text. What Postgres has
//! no type for (intervals, durations) is `text` in Arrow's display form.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal128Type, Decimal256Type, DurationMicrosecondType, Float16Type, Float32Type,
    Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, Time32MillisecondType, Time32SecondType,
    Time64MicrosecondType, Time64NanosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, TimeUnit};
use bytes::{BufMut, BytesMut};
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::messages::data::DataRow;

/// Microseconds from the Unix epoch to Postgres's (2000-01-01).
pub(super) const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to Postgres's.
pub(super) const PG_EPOCH_DAYS: i32 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Whether a column of `dt` is answered as JSON text (lists, structs, maps).
fn as_json(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(..)
            | DataType::Struct(_)
            | DataType::Map(..)
    )
}

/// The Postgres type an Arrow column is answered as.
pub fn pg_type(dt: &DataType) -> Type {
    match dt {
        DataType::Boolean => Type::BOOL,
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => Type::INT2,
        DataType::Int32 | DataType::UInt16 => Type::INT4,
        DataType::Int64 | DataType::UInt32 => Type::INT8,
        DataType::UInt64 | DataType::Decimal32(..) | DataType::Decimal64(..) => Type::NUMERIC,
        DataType::Decimal128(..) | DataType::Decimal256(..) => Type::NUMERIC,
        DataType::Float16 | DataType::Float32 => Type::FLOAT4,
        DataType::Float64 => Type::FLOAT8,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView | DataType::FixedSizeBinary(_) => Type::BYTEA,
        DataType::Date32 | DataType::Date64 => Type::DATE,
        DataType::Timestamp(_, None) => Type::TIMESTAMP,
        DataType::Timestamp(_, Some(_)) => Type::TIMESTAMPTZ,
        DataType::Time32(_) | DataType::Time64(_) => Type::TIME,
        t if as_json(t) => Type::JSON,
        DataType::Dictionary(_, value) => pg_type(value),
        _ => Type::TEXT,
    }
}

/// The type as `psql`'s `\d` and `format_type` name it.
pub fn type_name(dt: &DataType) -> String {
    match (dt, pg_type(dt)) {
        (DataType::Decimal128(p, s) | DataType::Decimal256(p, s), _) => format!("numeric({p},{s})"),
        (_, t) if t == Type::INT2 => "smallint".to_owned(),
        (_, t) if t == Type::INT4 => "integer".to_owned(),
        (_, t) if t == Type::INT8 => "bigint".to_owned(),
        (_, t) if t == Type::FLOAT4 => "real".to_owned(),
        (_, t) if t == Type::FLOAT8 => "double precision".to_owned(),
        (_, t) if t == Type::BOOL => "boolean".to_owned(),
        (_, t) if t == Type::TIMESTAMP => "timestamp without time zone".to_owned(),
        (_, t) if t == Type::TIMESTAMPTZ => "timestamp with time zone".to_owned(),
        (_, t) if t == Type::TIME => "time without time zone".to_owned(),
        (_, t) => t.name().to_owned(),
    }
}

/// The row description of `fields` in `format` (none: text).
pub fn fields(fields: &[Arc<Field>], format: Option<&Format>) -> Vec<FieldInfo> {
    fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let format = format.map_or(FieldFormat::Text, |fmt| fmt.format_for(i));
            let info = FieldInfo::new(f.name().clone(), None, None, pg_type(f.data_type()), format);
            match f.data_type() {
                DataType::Decimal128(p, s) | DataType::Decimal256(p, s) if *s >= 0 => {
                    info.with_type_modifier(((i32::from(*p) << 16) | i32::from(*s)) + 4)
                }
                _ => info,
            }
        })
        .collect()
}

/// Every row of `batches`, each column as `fields` describe it.
pub fn rows(batches: &[RecordBatch], fields: &[FieldInfo]) -> Result<Vec<DataRow>, ArrowError> {
    let mut out = Vec::with_capacity(batches.iter().map(RecordBatch::num_rows).sum());
    for batch in batches {
        let mut rows: Vec<BytesMut> = (0..batch.num_rows()).map(|_| BytesMut::new()).collect();
        for (column, field) in batch.columns().iter().zip(fields) {
            encode_column(column, field.format() == FieldFormat::Binary, &mut rows)?;
        }
        let count = i16::try_from(batch.num_columns()).unwrap_or(i16::MAX);
        out.extend(rows.into_iter().map(|data| DataRow::new(data, count)));
    }
    Ok(out)
}

/// Appends each row's value of `column`: its length, then its bytes
/// (`-1` for NULL).
fn each(column: &dyn Array, rows: &mut [BytesMut], mut value: impl FnMut(usize, &mut BytesMut)) {
    for (r, out) in rows.iter_mut().enumerate() {
        if column.is_null(r) {
            out.put_i32(-1);
            continue;
        }
        let at = out.len();
        out.put_i32(0);
        value(r, out);
        let len = i32::try_from(out.len() - at - 4).unwrap_or(i32::MAX);
        out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    }
}

macro_rules! int {
    ($col:expr, $rows:expr, $bin:expr, $arrow:ty, $pg:ty) => {{
        let a = $col.as_primitive::<$arrow>();
        each(a, $rows, |r, out| {
            let v = <$pg>::from(a.value(r));
            if $bin { out.put_slice(&v.to_be_bytes()) } else { out.put_slice(v.to_string().as_bytes()) }
        })
    }};
}

fn encode_column(column: &ArrayRef, bin: bool, rows: &mut [BytesMut]) -> Result<(), ArrowError> {
    let col = column.as_ref();
    match col.data_type() {
        DataType::Boolean => {
            let a = col.as_boolean();
            each(a, rows, |r, out| match (bin, a.value(r)) {
                (true, v) => out.put_u8(u8::from(v)),
                (false, v) => out.put_u8(if v { b't' } else { b'f' }),
            });
        }
        DataType::Int8 => int!(col, rows, bin, Int8Type, i16),
        DataType::Int16 => int!(col, rows, bin, Int16Type, i16),
        DataType::UInt8 => int!(col, rows, bin, UInt8Type, i16),
        DataType::Int32 => int!(col, rows, bin, Int32Type, i32),
        DataType::UInt16 => int!(col, rows, bin, UInt16Type, i32),
        DataType::Int64 => int!(col, rows, bin, Int64Type, i64),
        DataType::UInt32 => int!(col, rows, bin, UInt32Type, i64),
        DataType::UInt64 => {
            let a = col.as_primitive::<UInt64Type>();
            each(a, rows, |r, out| numeric(&a.value(r).to_string(), bin, out));
        }
        DataType::Float16 => {
            let a = col.as_primitive::<Float16Type>();
            each(a, rows, |r, out| float4(a.value(r).to_f32(), bin, out));
        }
        DataType::Float32 => {
            let a = col.as_primitive::<Float32Type>();
            each(a, rows, |r, out| float4(a.value(r), bin, out));
        }
        DataType::Float64 => {
            let a = col.as_primitive::<Float64Type>();
            each(a, rows, |r, out| match (bin, a.value(r)) {
                (true, v) => out.put_f64(v),
                (false, v) => out.put_slice(float_text(v, v.to_string()).as_bytes()),
            });
        }
        DataType::Decimal128(_, scale) => {
            let (a, scale) = (col.as_primitive::<Decimal128Type>(), *scale);
            each(a, rows, |r, out| numeric(&decimal_text(&a.value(r).to_string(), scale), bin, out));
        }
        DataType::Decimal256(_, scale) => {
            let (a, scale) = (col.as_primitive::<Decimal256Type>(), *scale);
            each(a, rows, |r, out| numeric(&decimal_text(&a.value(r).to_string(), scale), bin, out));
        }
        DataType::Utf8 => {
            let a = col.as_string::<i32>();
            each(a, rows, |r, out| out.put_slice(a.value(r).as_bytes()));
        }
        DataType::LargeUtf8 => {
            let a = col.as_string::<i64>();
            each(a, rows, |r, out| out.put_slice(a.value(r).as_bytes()));
        }
        DataType::Utf8View => {
            let a = col.as_string_view();
            each(a, rows, |r, out| out.put_slice(a.value(r).as_bytes()));
        }
        DataType::Binary => {
            let a = col.as_binary::<i32>();
            each(a, rows, |r, out| bytea(a.value(r), bin, out));
        }
        DataType::LargeBinary => {
            let a = col.as_binary::<i64>();
            each(a, rows, |r, out| bytea(a.value(r), bin, out));
        }
        DataType::BinaryView => {
            let a = col.as_binary_view();
            each(a, rows, |r, out| bytea(a.value(r), bin, out));
        }
        DataType::FixedSizeBinary(_) => {
            let a = col.as_fixed_size_binary();
            each(a, rows, |r, out| bytea(a.value(r), bin, out));
        }
        DataType::Date32 => {
            let a = col.as_primitive::<Date32Type>();
            each(a, rows, |r, out| date(a.value(r), bin, out));
        }
        DataType::Date64 => {
            let a = col.as_primitive::<Date64Type>();
            let days = |ms: i64| i32::try_from(ms.div_euclid(86_400_000)).unwrap_or(i32::MAX);
            each(a, rows, |r, out| date(days(a.value(r)), bin, out));
        }
        DataType::Timestamp(_, tz) => {
            let micros = arrow_cast::cast(col, &DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?;
            let a = micros.as_primitive::<arrow_array::types::TimestampMicrosecondType>();
            let tz = tz.is_some();
            each(a, rows, |r, out| timestamp(a.value(r), tz, bin, out));
        }
        DataType::Time32(_) | DataType::Time64(_) => {
            let micros = time_micros(col)?;
            let a = micros.as_primitive::<DurationMicrosecondType>();
            each(a, rows, |r, out| time(a.value(r), bin, out));
        }
        DataType::Dictionary(_, value) => {
            let plain = arrow_cast::cast(col, value)?;
            encode_column(&plain, bin, rows)?;
        }
        t if as_json(t) => {
            let field = Arc::new(Field::new("v", col.data_type().clone(), true));
            let options = arrow_json::writer::EncoderOptions::default().with_explicit_nulls(true);
            let mut encoder = arrow_json::writer::make_encoder(&field, col, &options)?;
            let mut buf = Vec::new();
            each(col, rows, |r, out| {
                buf.clear();
                encoder.encode(r, &mut buf);
                out.put_slice(&buf);
            });
        }
        _ => {
            let format = arrow_cast::display::ArrayFormatter::try_new(col, &Default::default())?;
            each(col, rows, |r, out| out.put_slice(format.value(r).to_string().as_bytes()));
        }
    }
    Ok(())
}

fn float4(v: f32, bin: bool, out: &mut BytesMut) {
    if bin { out.put_f32(v) } else { out.put_slice(float_text(f64::from(v), v.to_string()).as_bytes()) }
}

/// Postgres's spelling of the non-finite floats; Rust's shortest
/// round-trip form otherwise, as Postgres 12+ prints.
fn float_text(v: f64, shortest: String) -> String {
    match v {
        v if v.is_nan() => "NaN".to_owned(),
        v if v == f64::INFINITY => "Infinity".to_owned(),
        v if v == f64::NEG_INFINITY => "-Infinity".to_owned(),
        _ => shortest,
    }
}

fn bytea(v: &[u8], bin: bool, out: &mut BytesMut) {
    if bin {
        out.put_slice(v);
        return;
    }
    out.put_slice(b"\\x");
    for b in v {
        out.put_slice(format!("{b:02x}").as_bytes());
    }
}

fn date(days: i32, bin: bool, out: &mut BytesMut) {
    if bin {
        out.put_i32(days.saturating_sub(PG_EPOCH_DAYS));
        return;
    }
    let text = chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
        .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string());
    out.put_slice(text.as_bytes());
}

fn timestamp(micros: i64, tz: bool, bin: bool, out: &mut BytesMut) {
    if bin {
        out.put_i64(micros.saturating_sub(PG_EPOCH_MICROS));
        return;
    }
    let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else {
        out.put_slice(micros.to_string().as_bytes());
        return;
    };
    out.put_slice(t.format("%Y-%m-%d %H:%M:%S").to_string().as_bytes());
    fraction(micros.rem_euclid(1_000_000), out);
    if tz {
        out.put_slice(b"+00");
    }
}

fn time(micros: i64, bin: bool, out: &mut BytesMut) {
    if bin {
        out.put_i64(micros);
        return;
    }
    let secs = micros.rem_euclid(MICROS_PER_DAY) / 1_000_000;
    out.put_slice(format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60).as_bytes());
    fraction(micros.rem_euclid(1_000_000), out);
}

/// `.ffffff` without trailing zeros; nothing for whole seconds.
fn fraction(micros: i64, out: &mut BytesMut) {
    if micros != 0 {
        let digits = format!("{micros:06}");
        out.put_u8(b'.');
        out.put_slice(digits.trim_end_matches('0').as_bytes());
    }
}

/// A time column as microseconds since midnight.
fn time_micros(col: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let micros: Vec<Option<i64>> = match col.data_type() {
        DataType::Time32(TimeUnit::Second) => {
            col.as_primitive::<Time32SecondType>().iter().map(|v| v.map(|s| i64::from(s) * 1_000_000)).collect()
        }
        DataType::Time32(_) => {
            col.as_primitive::<Time32MillisecondType>().iter().map(|v| v.map(|ms| i64::from(ms) * 1_000)).collect()
        }
        DataType::Time64(TimeUnit::Nanosecond) => {
            col.as_primitive::<Time64NanosecondType>().iter().map(|v| v.map(|ns| ns / 1_000)).collect()
        }
        _ => col.as_primitive::<Time64MicrosecondType>().iter().collect(),
    };
    Ok(Arc::new(arrow_array::DurationMicrosecondArray::from(micros)))
}

/// The exact decimal text of an unscaled integer (`"-12345"`, scale 2:
/// `"-123.45"`).
pub fn decimal_text(unscaled: &str, scale: i8) -> String {
    let (sign, digits) = unscaled.strip_prefix('-').map_or(("", unscaled), |d| ("-", d));
    if scale <= 0 {
        let zeros = "0".repeat(usize::from(scale.unsigned_abs()));
        return if digits == "0" { "0".to_owned() } else { format!("{sign}{digits}{zeros}") };
    }
    let scale = usize::from(scale.unsigned_abs());
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// A decimal text as `numeric`: itself, or Postgres's binary form (base
/// 10,000 digits, a weight, a sign and the display scale).
fn numeric(text: &str, bin: bool, out: &mut BytesMut) {
    if !bin {
        out.put_slice(text.as_bytes());
        return;
    }
    let (negative, unsigned) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
    let (int, frac) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let int = int.trim_start_matches('0');
    let scale = u16::try_from(frac.len()).unwrap_or(u16::MAX);
    // Integer digits grouped from the decimal point leftwards, fraction
    // digits rightwards, each side padded to whole groups.
    let int_padded = format!("{}{int}", "0".repeat((4 - int.len() % 4) % 4));
    let frac_padded = format!("{frac}{}", "0".repeat((4 - frac.len() % 4) % 4));
    let mut digits: Vec<i16> = [&int_padded, &frac_padded]
        .iter()
        .flat_map(|s| s.as_bytes().chunks(4))
        .map(|c| c.iter().fold(0i16, |n, d| n * 10 + i16::from(d - b'0')))
        .collect();
    let mut weight = i16::try_from(int_padded.len() / 4).unwrap_or(i16::MAX) - 1;
    while digits.first() == Some(&0) {
        digits.remove(0);
        weight -= 1;
    }
    while digits.last() == Some(&0) {
        digits.pop();
    }
    if digits.is_empty() {
        weight = 0;
    }
    out.put_i16(i16::try_from(digits.len()).unwrap_or(i16::MAX));
    out.put_i16(weight);
    out.put_u16(if negative && !digits.is_empty() { 0x4000 } else { 0 });
    out.put_u16(scale);
    for d in digits {
        out.put_i16(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(f: impl FnOnce(&mut BytesMut)) -> Vec<u8> {
        let mut out = BytesMut::new();
        f(&mut out);
        out.to_vec()
    }

    fn text(f: impl FnOnce(&mut BytesMut)) -> String {
        String::from_utf8(bin(f)).unwrap()
    }

    #[test]
    fn decimals_are_exact_text() {
        assert_eq!(decimal_text("12345", 2), "123.45");
        assert_eq!(decimal_text("-5", 2), "-0.05");
        assert_eq!(decimal_text("0", 2), "0.00");
        assert_eq!(decimal_text("12", -2), "1200");
        assert_eq!(
            decimal_text("99999999999999999999999999999999999999", 10),
            "9999999999999999999999999999.9999999999"
        );
    }

    #[test]
    fn numeric_binary_matches_postgres() {
        // SELECT numeric_send(123.45): ndigits 2, weight 0, sign +, dscale 2, digits 123 4500.
        assert_eq!(bin(|o| numeric("123.45", true, o)), [0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 17, 148]);
        // -0.0005: one digit 5 at weight -1, dscale 4.
        assert_eq!(bin(|o| numeric("-0.0005", true, o)), [0, 1, 255, 255, 0x40, 0, 0, 4, 0, 5]);
        // 10000: digit 1 at weight 1.
        assert_eq!(bin(|o| numeric("10000", true, o)), [0, 1, 0, 1, 0, 0, 0, 0, 0, 1]);
        assert_eq!(bin(|o| numeric("0.00", true, o)), [0, 0, 0, 0, 0, 0, 0, 2]);
    }

    #[test]
    fn times_print_as_postgres_does() {
        let micros = 1_795_168_800_000_000; // 2026-11-20 10:00:00 UTC
        assert_eq!(text(|o| timestamp(micros, true, false, o)), "2026-11-20 10:00:00+00");
        assert_eq!(text(|o| timestamp(micros + 120_000, false, false, o)), "2026-11-20 10:00:00.12");
        assert_eq!(bin(|o| timestamp(PG_EPOCH_MICROS, true, true, o)), [0; 8]);
        assert_eq!(text(|o| date(20_412, false, o)), "2025-11-20");
        assert_eq!(bin(|o| date(PG_EPOCH_DAYS + 1, true, o)), [0, 0, 0, 1]);
        assert_eq!(text(|o| time(3_723_000_500, false, o)), "01:02:03.0005");
    }

    #[test]
    fn types_map_to_postgres() {
        assert_eq!(pg_type(&DataType::Decimal128(12, 2)), Type::NUMERIC);
        assert_eq!(type_name(&DataType::Decimal128(12, 2)), "numeric(12,2)");
        assert_eq!(
            type_name(&DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))),
            "timestamp with time zone"
        );
        assert_eq!(pg_type(&DataType::new_list(DataType::Utf8, true)), Type::JSON);
        assert_eq!(type_name(&DataType::Int64), "bigint");
        assert_eq!(text(|o| bytea(&[0xde, 0xad], false, o)), "\\xdead");
        assert_eq!(text(|o| float4(f32::NAN, false, o)), "NaN");
    }
}
