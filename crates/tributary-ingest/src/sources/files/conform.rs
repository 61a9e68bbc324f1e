//! A file's columns matched to the table's by name and converted without
//! losing anything: the columnar path of Parquet files (already typed
//! columns) and CSV files (columns of text). No row is ever built.
//!
//! - Text becomes a typed value by the same rules as a JSON string does
//!   (`crate::validate`: RFC 3339 timestamps, `YYYY-MM-DD` dates, exact
//!   decimals, base64 binary), plus numbers and booleans parsed from text,
//!   and an all-digit timestamp read as epoch time in the column's unit.
//! - A typed value is cast to the column's type only where the cast is
//!   lossless *for that value*: every value is cast back and compared, so a
//!   long that overflows an int, a fraction cast to an integer or a
//!   nanosecond cut to microseconds is refused with the row's position,
//!   not rounded.
//! - What cannot be cast at all (a struct for a number column) refuses the
//!   whole file when it is opened, with the column named.

use std::sync::Arc;

use arrow_array::builder::{Date32Builder, Decimal128Builder, LargeBinaryBuilder, TimestampMicrosecondBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{
    Array, ArrayRef, BooleanArray, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_cast::{CastOptions, can_cast_types, cast_with_options};
use arrow_schema::{DataType, SchemaRef};
use base64::Engine;
use tributary_core::schema::{Field, FieldType, TimestampRange};

use crate::error::IngestError;
use crate::prepare::IngestSchema;
use crate::rows::LineageColumn;
use crate::validate::{Rejection, parse_date, parse_decimal, parse_timestamp};

/// Where a table column's values come from.
#[derive(Debug)]
enum Source {
    /// The file's column at this index.
    Column(usize),
    /// A `key=value` path segment, already in the column's type (one value).
    Constant(ArrayRef),
    /// Nowhere: NULL.
    Missing,
}

/// The file's columns matched to one table's, checked once per file.
#[derive(Debug)]
pub(crate) struct Conform {
    from: Vec<Source>,
}

/// Where a file's rows came from, for the lineage columns.
pub(crate) struct Origin<'a> {
    /// `_source_file`.
    pub location: &'a str,
    /// The row number of each of the batch's rows, when they are not
    /// consecutive (CSV records refused before conversion).
    pub rows: Option<&'a [u64]>,
    /// The row number of the batch's first row.
    pub first_row: u64,
    /// `_ingested_at`.
    pub ingested_at_us: i64,
}

/// A batch of a file's rows, made the table's.
pub(crate) struct Conformed {
    /// The good rows, in the table's schema.
    pub batch: RecordBatch,
    /// Refused rows: the index within the batch, why, and the row as JSON.
    pub rejects: Vec<(usize, Rejection, Vec<u8>)>,
}

impl Conform {
    /// Matches the file's columns (`file`) to the table's user columns by
    /// name, exactly or else ignoring case; a column the file lacks takes
    /// its value from a `key=value` path segment of the same name, if any.
    /// Errors name the column and what is wrong with the file as a whole.
    pub fn new(schema: &IngestSchema, file: &SchemaRef, hive: &[(String, String)]) -> Result<Self, String> {
        let names: Vec<&str> = file.fields().iter().map(|f| f.name().as_str()).collect();
        if let Some(dup) = names.iter().enumerate().find(|(i, n)| names[..*i].contains(n)).map(|(_, n)| n) {
            return Err(format!("the file has two columns named '{dup}'"));
        }
        let mut from = Vec::with_capacity(schema.user_fields.len());
        for (k, field) in schema.user_fields.iter().enumerate() {
            let target = schema.arrow.field(schema.user[k]).data_type();
            let found = names.iter().position(|n| *n == field.name).or_else(|| {
                let mut same = names.iter().enumerate().filter(|(_, n)| n.eq_ignore_ascii_case(&field.name));
                match (same.next(), same.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            });
            let source = match found {
                Some(i) => {
                    let ty = file.field(i).data_type();
                    if !convertible(ty, target) {
                        return Err(format!(
                            "column '{}' is {ty} in the file but {} in the table, and cannot be converted",
                            field.name, field.ty
                        ));
                    }
                    Source::Column(i)
                }
                None => match hive.iter().rev().find(|(key, _)| *key == field.name) {
                    Some((key, value)) => {
                        let text = StringArray::from(vec![value.as_str()]);
                        let (array, bad) = from_text(field, target, &text, &schema.timestamps);
                        if bad[0] {
                            return Err(format!("path segment '{key}={value}' is not a valid {}", field.ty));
                        }
                        Source::Constant(array)
                    }
                    None if field.required || schema.event_time == Some(k) => {
                        return Err(format!(
                            "the file has no column '{}', which the table requires (its columns: {})",
                            field.name,
                            names.join(", ")
                        ));
                    }
                    None => Source::Missing,
                },
            };
            from.push(source);
        }
        if !from.iter().any(|s| matches!(s, Source::Column(_))) {
            return Err(format!("none of the file's columns ({}) is a column of the table", names.join(", ")));
        }
        Ok(Self { from })
    }

    /// Converts `batch`, a part of the file, into the table's rows and
    /// rejects.
    pub fn apply(
        &self,
        schema: &IngestSchema,
        batch: &RecordBatch,
        origin: &Origin<'_>,
    ) -> Result<Conformed, IngestError> {
        let n = batch.num_rows();
        let mut why: Vec<Option<Rejection>> = vec![None; n];
        let mut columns: Vec<Option<ArrayRef>> = vec![None; schema.arrow.fields().len()];
        for (k, (field, source)) in schema.user_fields.iter().zip(&self.from).enumerate() {
            let target = schema.arrow.field(schema.user[k]).data_type();
            let array = match source {
                Source::Column(i) => {
                    let src = batch.column(*i);
                    let (array, bad) = convert(field, target, src, &schema.timestamps)?;
                    if let Some(bad) = bad {
                        let text = ArrayFormatter::try_new(src.as_ref(), &FormatOptions::default())
                            .map_err(|e| IngestError::Internal(format!("formatting '{}': {e}", field.name)))?;
                        for (row, w) in why.iter_mut().enumerate().filter(|(r, w)| bad[*r] && w.is_none()) {
                            *w = Some(refusal(field, &text.value(row).to_string()));
                        }
                    }
                    array
                }
                Source::Constant(one) => {
                    let zeros = Int32Array::from(vec![0; n]);
                    arrow_select::take::take(one.as_ref(), &zeros, None)
                        .map_err(|e| IngestError::Internal(format!("path value of '{}': {e}", field.name)))?
                }
                Source::Missing => new_null_array(target, n),
            };
            if field.required || schema.event_time == Some(k) {
                for (_, w) in why.iter_mut().enumerate().filter(|(r, w)| array.is_null(*r) && w.is_none()) {
                    *w = Some(missing(field, schema.event_time == Some(k)));
                }
            }
            columns[schema.user[k]] = Some(array);
        }
        for (i, kind) in &schema.lineage {
            columns[*i] = Some(lineage(*kind, schema, n, origin));
        }
        let mut columns: Vec<ArrayRef> = columns.into_iter().map(|c| c.expect("every column is built")).collect();
        let fail = |e: arrow_schema::ArrowError| IngestError::Internal(format!("building rows from a file: {e}"));
        if why.iter().all(Option::is_none) {
            let batch = RecordBatch::try_new(schema.arrow.clone(), columns).map_err(fail)?;
            return Ok(Conformed { batch, rejects: Vec::new() });
        }
        // Refused rows hold NULLs where the table allows none: cut them out
        // column by column before the batch is built.
        let keep: BooleanArray = why.iter().map(|w| Some(w.is_none())).collect();
        for c in &mut columns {
            *c = arrow_select::filter::filter(c.as_ref(), &keep).map_err(fail)?;
        }
        let good = RecordBatch::try_new(schema.arrow.clone(), columns).map_err(fail)?;
        let refused: BooleanArray = why.iter().map(|w| Some(w.is_some())).collect();
        let refused = arrow_select::filter::filter_record_batch(batch, &refused).map_err(fail)?;
        let raws = json_lines(&refused)?;
        let rejects = why.into_iter().enumerate().filter_map(|(i, w)| Some((i, w?)));
        let rejects = rejects.zip(raws).map(|((i, w), raw)| (i, w, raw)).collect();
        Ok(Conformed { batch: good, rejects })
    }
}

/// Each row of `batch` as one JSON object, for the quarantine table's `raw`.
fn json_lines(batch: &RecordBatch) -> Result<Vec<Vec<u8>>, IngestError> {
    let mut out = Vec::new();
    let mut writer = arrow_json::LineDelimitedWriter::new(&mut out);
    writer.write(batch).and_then(|()| writer.finish()).map_err(|e| IngestError::Internal(format!("raw rows: {e}")))?;
    Ok(out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect())
}

/// A lineage column of `n` rows of a file.
fn lineage(kind: LineageColumn, schema: &IngestSchema, n: usize, origin: &Origin<'_>) -> ArrayRef {
    match kind {
        LineageColumn::Source => Arc::new(StringArray::from(vec!["file"; n])),
        LineageColumn::SourceFile => Arc::new(StringArray::from(vec![origin.location; n])),
        LineageColumn::SourceOffset => {
            let row = |i: usize| origin.rows.map_or(origin.first_row + i as u64, |rows| rows[i]);
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| i64::try_from(row(i)).unwrap_or(i64::MAX))))
        }
        LineageColumn::IngestedAt => {
            let tz = match schema.arrow.field_with_name("_ingested_at").map(|f| f.data_type().clone()) {
                Ok(DataType::Timestamp(_, tz)) => tz,
                _ => None,
            };
            Arc::new(TimestampMicrosecondArray::from(vec![origin.ingested_at_us; n]).with_timezone_opt(tz))
        }
        LineageColumn::SchemaId => Arc::new(Int32Array::from(vec![schema.schema_id; n])),
        LineageColumn::SourcePartition => Arc::new(Int32Array::new_null(n)),
    }
}

fn is_text(ty: &DataType) -> bool {
    matches!(ty, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// Whether values of `from` can become `to` at all (each value is still
/// checked).
fn convertible(from: &DataType, to: &DataType) -> bool {
    if from.equals_datatype(to) || matches!(from, DataType::Null) {
        return true;
    }
    if from.is_nested() || to.is_nested() {
        return false;
    }
    is_text(from) || (from.is_integer() && matches!(to, DataType::Timestamp(..))) || can_cast_types(from, to)
}

/// `src` in the column's type, and which rows could not be converted.
fn convert(
    field: &Field,
    target: &DataType,
    src: &ArrayRef,
    range: &TimestampRange,
) -> Result<(ArrayRef, Option<Vec<bool>>), IngestError> {
    let fail = |e: arrow_schema::ArrowError| IngestError::Internal(format!("converting '{}': {e}", field.name));
    if src.data_type().equals_datatype(target) {
        // The same type: taken as it is; only nested types, whose field
        // names or ids may differ, are relabelled (and checked again).
        let array = if src.data_type() == target {
            src.clone()
        } else {
            arrow_array::make_array(src.to_data().into_builder().data_type(target.clone()).build().map_err(fail)?)
        };
        return Ok(match &field.ty {
            FieldType::Timestamp | FieldType::Timestamptz => {
                let bad = out_of_range(&array, range);
                (array, Some(bad))
            }
            _ => (array, None),
        });
    }
    if matches!(src.data_type(), DataType::Null) {
        return Ok((new_null_array(target, src.len()), None));
    }
    if is_text(src.data_type()) {
        let text = cast_with_options(src, &DataType::Utf8, &CastOptions::default()).map_err(fail)?;
        if matches!(field.ty, FieldType::String) {
            // Any text is a string: nothing to check, nothing to copy.
            return Ok((text, None));
        }
        let (array, bad) = from_text(field, target, text.as_string::<i32>(), range);
        return Ok((array, Some(bad)));
    }
    let safe = CastOptions { safe: true, ..CastOptions::default() };
    if src.data_type().is_integer() && matches!(target, DataType::Timestamp(..)) {
        let longs = cast_with_options(src, &DataType::Int64, &safe).map_err(fail)?;
        let us: TimestampMicrosecondArray = longs
            .as_primitive::<Int64Type>()
            .iter()
            .map(|v| v.and_then(|v| field.epoch_unit.to_micros(v)).filter(|us| range.contains(*us)))
            .collect();
        let array: ArrayRef = Arc::new(us.with_data_type(target.clone()));
        let bad = (0..src.len()).map(|i| src.is_valid(i) && array.is_null(i)).collect();
        return Ok((array, Some(bad)));
    }
    let array = cast_with_options(src, target, &safe).map_err(fail)?;
    let back = cast_with_options(&array, src.data_type(), &safe).map_err(fail)?;
    let differs = arrow_ord::cmp::distinct(&back, src).map_err(fail)?;
    let mut bad: Vec<bool> =
        (0..src.len()).map(|i| src.is_valid(i) && (array.is_null(i) || differs.value(i))).collect();
    if matches!(field.ty, FieldType::Timestamp | FieldType::Timestamptz) {
        bad.iter_mut().zip(out_of_range(&array, range)).for_each(|(b, o)| *b |= o);
    }
    Ok((array, Some(bad)))
}

/// Rows of a microsecond timestamp array outside the table's range.
fn out_of_range(array: &ArrayRef, range: &TimestampRange) -> Vec<bool> {
    match array.as_primitive_opt::<arrow_array::types::TimestampMicrosecondType>() {
        Some(ts) => ts.iter().map(|v| v.is_some_and(|us| !range.contains(us))).collect(),
        None => vec![false; array.len()],
    }
}

/// Texts in the column's type by the JSON rules, and which were not valid.
fn from_text(field: &Field, target: &DataType, text: &StringArray, range: &TimestampRange) -> (ArrayRef, Vec<bool>) {
    let n = text.len();
    let mut bad = vec![false; n];
    let mut check = |i: usize, ok: bool| bad[i] = !ok && text.is_valid(i);
    let array: ArrayRef = match &field.ty {
        FieldType::Decimal { precision, scale } => {
            let mut b = Decimal128Builder::with_capacity(n);
            for (i, t) in text.iter().enumerate() {
                let v = t.and_then(|t| parse_decimal(t, *precision, *scale).ok());
                check(i, v.is_some());
                b.append_option(v);
            }
            Arc::new(b.finish().with_data_type(target.clone()))
        }
        FieldType::Date => {
            let mut b = Date32Builder::with_capacity(n);
            for (i, t) in text.iter().enumerate() {
                let v = t.and_then(parse_date);
                check(i, v.is_some());
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
        FieldType::Timestamp | FieldType::Timestamptz => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(n);
            for (i, t) in text.iter().enumerate() {
                let v = t.and_then(|t| text_timestamp(field, t)).filter(|us| range.contains(*us));
                check(i, v.is_some());
                b.append_option(v);
            }
            Arc::new(b.finish().with_data_type(target.clone()))
        }
        FieldType::Binary => {
            let mut b = LargeBinaryBuilder::with_capacity(n, 0);
            for (i, t) in text.iter().enumerate() {
                let v = t.and_then(|t| base64::engine::general_purpose::STANDARD.decode(t).ok());
                check(i, v.is_some());
                b.append_option(v);
            }
            Arc::new(b.finish())
        }
        FieldType::String => Arc::new(text.clone()),
        _ => {
            let safe = CastOptions { safe: true, ..CastOptions::default() };
            let trimmed: StringArray = text.iter().map(|t| t.map(str::trim)).collect();
            match cast_with_options(&trimmed, target, &safe) {
                Ok(array) => {
                    (0..n).for_each(|i| check(i, array.is_valid(i)));
                    array
                }
                Err(_) => {
                    (0..n).for_each(|i| check(i, false));
                    new_null_array(target, n)
                }
            }
        }
    };
    (array, bad)
}

/// A timestamp's text: RFC 3339 (or naive, taken as UTC), or all digits
/// as epoch time in the column's unit.
fn text_timestamp(field: &Field, t: &str) -> Option<i64> {
    let t = t.trim();
    if !t.is_empty() && t.bytes().enumerate().all(|(i, b)| b.is_ascii_digit() || (i == 0 && b == b'-')) {
        return field.epoch_unit.to_micros(t.parse().ok()?);
    }
    parse_timestamp(t)
}

fn refusal(field: &Field, value: &str) -> Rejection {
    let name = &field.name;
    match field.ty {
        FieldType::Timestamp | FieldType::Timestamptz => Rejection::at(
            "invalid_timestamp",
            name,
            format!(
                "field '{name}' expects an RFC 3339 timestamp or epoch {} within the table's range, got '{value}'",
                field.epoch_unit
            ),
        ),
        _ => Rejection::at(
            "type_mismatch",
            name,
            format!("field '{name}' expects {} (converted without loss), got '{value}'", field.ty),
        ),
    }
}

fn missing(field: &Field, event_time: bool) -> Rejection {
    let name = &field.name;
    if event_time {
        Rejection::at("missing_event_time", name, format!("event-time field '{name}' is missing or null"))
    } else {
        Rejection::at("missing_field", name, format!("required field '{name}' is missing or null"))
    }
}

#[cfg(test)]
mod tests;
