//! Reading one file in bounded parts, from a given row on: its format from
//! the extension (or the source's setting), gzip or zstd from the first
//! bytes, then NDJSON lines through the JSON validator, CSV records as
//! columns of text and Parquet record batches through [`Conform`].
//!
//! Memory is bounded by one part (`rows` rows; for Parquet, one row group's
//! projected columns), whatever the file's size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::sync::Arc;

use arrow_array::builder::StringBuilder;
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field as ArrowField, Schema};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use tributary_core::files::{CsvOptions, FileFormat};

use super::conform::{Conform, Origin};
use super::listing::FileRef;
use crate::error::IngestError;
use crate::prepare::{IngestSchema, Lineage, Reject};
use crate::rows::Rows;
use crate::validate::Rejection;

/// Rows per part: one Parquet record batch, or as many CSV/NDJSON records.
pub(crate) const PART_ROWS: usize = 8192;

/// The longest NDJSON line accepted; a longer one is refused on its own.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// Why a file cannot be read.
#[derive(Debug)]
pub(crate) enum FileError {
    /// Its content is not what it claims (corrupt, truncated, a header
    /// that does not match): one quarantine entry for the whole file.
    Bad(String),
    /// It cannot be read now (gone, no permission): tried again later.
    Unreadable(std::io::Error),
    /// Tributary itself failed.
    Internal(IngestError),
}

impl From<IngestError> for FileError {
    fn from(e: IngestError) -> Self {
        Self::Internal(e)
    }
}

/// Some of a file's rows, made the table's.
pub(crate) struct Part {
    /// Good rows.
    pub batch: RecordBatch,
    /// Refused rows.
    pub rejects: Vec<Reject>,
    /// The row after the part's last: where the next part starts.
    pub next_row: u64,
    /// Records read (blank NDJSON lines are rows but not records).
    pub records: u64,
    /// Bytes of input the part covers, for the byte trigger and progress.
    pub bytes: u64,
}

/// A file open for reading from some row on.
pub(crate) struct FileReader {
    inner: Inner,
    schema: Arc<IngestSchema>,
    location: String,
    next_row: u64,
    /// Rejects of rows before this one are in the quarantine table already
    /// (a crash between its commit and the data table's).
    quarantined_to: u64,
    ingested_at_us: i64,
}

enum Inner {
    Ndjson { lines: Box<dyn BufRead + Send>, rows: Rows, fill: Vec<(usize, String)> },
    Csv { records: csv::Reader<Box<dyn Read + Send>>, names: Arc<Schema>, conform: Conform, nulls: Vec<Vec<u8>> },
    Parquet { batches: ParquetRecordBatchReader, conform: Conform, bytes_per_row: f64 },
}

/// The format of `file`, from the setting or its name.
fn format_of(file: &FileRef, setting: FileFormat) -> Result<FileFormat, FileError> {
    if setting != FileFormat::Auto {
        return Ok(setting);
    }
    let name = file.relative.rsplit('/').next().unwrap_or_default().to_ascii_lowercase();
    let name = [".gz", ".zst", ".zstd"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(&name);
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("parquet" | "pq") => Ok(FileFormat::Parquet),
        Some("csv" | "tsv") => Ok(FileFormat::Csv),
        Some("ndjson" | "jsonl" | "json") => Ok(FileFormat::Ndjson),
        _ => Err(FileError::Bad(format!(
            "cannot tell the format of '{}' from its extension: name it .parquet, .csv, .ndjson or .jsonl \
             (optionally .gz or .zst), or set format in the source",
            file.relative
        ))),
    }
}

/// `file`'s bytes, decompressed if they start like gzip or zstd.
fn decompressed(file: &File) -> Result<Box<dyn BufRead + Send>, FileError> {
    let mut raw = BufReader::with_capacity(1 << 20, file.try_clone().map_err(FileError::Unreadable)?);
    let head = raw.fill_buf().map_err(FileError::Unreadable)?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(BufReader::with_capacity(1 << 20, flate2::bufread::MultiGzDecoder::new(raw)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let z = zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| FileError::Bad(format!("zstd: {e}")))?;
        Box::new(BufReader::with_capacity(1 << 20, z))
    } else {
        Box::new(raw)
    })
}

/// A read error in the middle of a file: the content is at fault (a
/// truncated or corrupt compressed stream), not the disk.
fn broken(e: &std::io::Error) -> FileError {
    FileError::Bad(format!("cannot read past a point in the file: {e}"))
}

impl FileReader {
    /// Opens `file`, whose bytes are at `path`, to read from row `start` on.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        file: &FileRef,
        path: &std::path::Path,
        setting: FileFormat,
        csv: &CsvOptions,
        schema: Arc<IngestSchema>,
        start: u64,
        quarantined_to: u64,
        ingested_at_us: i64,
    ) -> Result<Self, FileError> {
        let format = format_of(file, setting)?;
        let handle = File::open(path).map_err(FileError::Unreadable)?;
        let inner = match format {
            FileFormat::Parquet => open_parquet(handle, file, &schema, start)?,
            FileFormat::Csv => open_csv(&handle, file, csv, &schema, start)?,
            FileFormat::Ndjson | FileFormat::Auto => {
                let mut lines = decompressed(&handle)?;
                let mut skipped = Vec::new();
                for _ in 0..start {
                    skipped.clear();
                    if read_line(&mut lines, &mut skipped).map_err(|e| broken(&e))? == 0 {
                        break;
                    }
                }
                let fill = file.hive.iter().filter_map(|(k, v)| Some((schema.user_field(k)?, v.clone()))).collect();
                Inner::Ndjson { lines, rows: Rows::new(&schema)?, fill }
            }
        };
        Ok(Self { inner, schema, location: file.location.clone(), next_row: start, quarantined_to, ingested_at_us })
    }

    /// The next part of at most [`PART_ROWS`] rows, or `None` at the end.
    pub fn next_part(&mut self) -> Result<Option<Part>, FileError> {
        let first = self.next_row;
        let location = self.location.as_str();
        let quarantined_to = self.quarantined_to;
        let mut rejects = Vec::new();
        // Rows before `quarantined_to` were quarantined before a crash.
        let mut reject = |row: u64, raw: Vec<u8>, rejection: Rejection| {
            if row >= quarantined_to {
                rejects.push(Reject { raw, rejection, position: format!("file {location} row {row}") });
            }
        };
        let (batch, bytes, records) = match &mut self.inner {
            Inner::Ndjson { lines, rows, fill } => {
                let fill: Vec<(usize, &str)> = fill.iter().map(|(i, v)| (*i, v.as_str())).collect();
                let mut line = Vec::new();
                let (mut bytes, mut taken, mut records) = (0, 0, 0);
                while taken < PART_ROWS {
                    line.clear();
                    let n = read_line(lines, &mut line).map_err(|e| broken(&e))?;
                    if n == 0 {
                        break;
                    }
                    let row = self.next_row;
                    self.next_row += 1;
                    taken += 1;
                    bytes += n as u64;
                    let record = line.trim_ascii();
                    if record.is_empty() {
                        continue;
                    }
                    records += 1;
                    let offset = i64::try_from(row).ok();
                    let lineage = Lineage {
                        source: "file",
                        partition: None,
                        offset,
                        ingested_at_us: self.ingested_at_us,
                        file: Some(location),
                    };
                    let rejection = if n > MAX_LINE {
                        Err(Rejection { kind: "malformed_json", field: None, message: too_long() })
                    } else {
                        rows.push_json(&self.schema, record, &fill, &lineage)
                    };
                    if let Err(rejection) = rejection {
                        reject(row, record[..record.len().min(MAX_LINE)].to_vec(), rejection);
                    }
                }
                if taken == 0 {
                    return Ok(None);
                }
                (rows.finish(&self.schema)?, bytes, records)
            }
            Inner::Csv { records, names, conform, nulls } => {
                let mut columns: Vec<StringBuilder> = names.fields().iter().map(|_| StringBuilder::new()).collect();
                let mut record = csv::ByteRecord::new();
                let mut row_numbers = Vec::new();
                let mut bytes = 0;
                let mut taken = 0;
                while taken < PART_ROWS {
                    let more = records.read_byte_record(&mut record).map_err(|e| csv_error(&e))?;
                    if !more {
                        break;
                    }
                    let row = self.next_row;
                    self.next_row += 1;
                    taken += 1;
                    bytes += record.as_slice().len() as u64 + record.len() as u64;
                    match csv_row(&record, columns.len()) {
                        Ok(fields) => {
                            for (builder, value) in columns.iter_mut().zip(fields) {
                                if nulls.iter().any(|n| n.as_slice() == value.as_bytes()) {
                                    builder.append_null();
                                } else {
                                    builder.append_value(value);
                                }
                            }
                            row_numbers.push(row);
                        }
                        Err(rejection) => reject(row, record.iter().collect::<Vec<_>>().join(&b","[..]), rejection),
                    }
                }
                if taken == 0 {
                    return Ok(None);
                }
                let arrays: Vec<ArrayRef> = columns.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef).collect();
                let texts = RecordBatch::try_new(names.clone(), arrays)
                    .map_err(|e| IngestError::Internal(format!("csv columns: {e}")))?;
                let origin = Origin {
                    location,
                    rows: Some(&row_numbers),
                    first_row: first,
                    ingested_at_us: self.ingested_at_us,
                };
                let done = conform.apply(&self.schema, &texts, &origin)?;
                for (i, rejection, raw) in done.rejects {
                    reject(row_numbers[i], raw, rejection);
                }
                (done.batch, bytes, taken as u64)
            }
            Inner::Parquet { batches, conform, bytes_per_row } => {
                let Some(batch) = batches.next() else { return Ok(None) };
                let batch =
                    batch.map_err(|e| FileError::Bad(format!("corrupt Parquet data after row {first}: {e}")))?;
                self.next_row += batch.num_rows() as u64;
                let origin = Origin { location, rows: None, first_row: first, ingested_at_us: self.ingested_at_us };
                let done = conform.apply(&self.schema, &batch, &origin)?;
                for (i, rejection, raw) in done.rejects {
                    reject(first + i as u64, raw, rejection);
                }
                let rows = batch.num_rows() as u64;
                (done.batch, (*bytes_per_row * rows as f64) as u64, rows)
            }
        };
        Ok(Some(Part { batch, rejects, next_row: self.next_row, records, bytes }))
    }
}

fn too_long() -> String {
    format!("the line is longer than {} MiB; split it into one record per line", MAX_LINE >> 20)
}

/// Reads one line (with its `\n`) into `buf`, at most [`MAX_LINE`] + 1
/// bytes of it: the rest of a longer line is read and dropped. Returns the
/// line's full length, 0 at the end.
fn read_line(input: &mut dyn BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut n = input.take(MAX_LINE as u64 + 1).read_until(b'\n', buf)?;
    if n > MAX_LINE && buf.last() != Some(&b'\n') {
        let mut rest = Vec::new();
        loop {
            rest.clear();
            let more = input.take(1 << 20).read_until(b'\n', &mut rest)?;
            n += more;
            if more == 0 || rest.last() == Some(&b'\n') {
                break;
            }
        }
    }
    Ok(n)
}

/// A CSV record's fields as text, if it can be a row: as many fields as
/// the header, all UTF-8. The record's bytes are validated once, and each
/// field is then sliced from them (no second check when it is appended).
fn csv_row(record: &csv::ByteRecord, width: usize) -> Result<Vec<&str>, Rejection> {
    let refuse = |message: String| Rejection { kind: "malformed_csv", field: None, message };
    if record.len() != width {
        return Err(refuse(format!("the row has {} fields; the header has {width}", record.len())));
    }
    let not_utf8 = |i: usize| refuse(format!("field {} is not UTF-8 text; save the file as UTF-8", i + 1));
    let text = std::str::from_utf8(record.as_slice()).map_err(|e| {
        let field = (0..record.len()).find(|i| record.range(*i).is_some_and(|r| r.end > e.valid_up_to()));
        not_utf8(field.unwrap_or(0))
    })?;
    // Each field must be text on its own too: two fields' bytes may form a
    // character only together.
    (0..record.len()).map(|i| record.range(i).and_then(|r| text.get(r)).ok_or_else(|| not_utf8(i))).collect()
}

fn csv_error(e: &csv::Error) -> FileError {
    match e.kind() {
        csv::ErrorKind::Io(io) => broken(io),
        _ => FileError::Bad(format!("cannot parse the CSV: {e}")),
    }
}

fn open_csv(
    handle: &File,
    file: &FileRef,
    options: &CsvOptions,
    schema: &IngestSchema,
    start: u64,
) -> Result<Inner, FileError> {
    let (mut delimiter, quote) = options.bytes().map_err(FileError::Bad)?;
    if delimiter == b',' && file.relative.to_ascii_lowercase().contains(".tsv") {
        delimiter = b'\t';
    }
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .quote(quote)
        .from_reader(Box::new(decompressed(handle)?) as Box<dyn Read + Send>);
    let mut first = csv::ByteRecord::new();
    let names: Vec<String> = if options.header {
        if !records.read_byte_record(&mut first).map_err(|e| csv_error(&e))? {
            return Err(FileError::Bad("the file is empty: it has no header line".to_owned()));
        }
        let header = first.iter().map(|f| String::from_utf8_lossy(f).trim().trim_start_matches('\u{feff}').to_owned());
        header.collect()
    } else {
        schema.user_fields.iter().map(|f| f.name.clone()).collect()
    };
    let names =
        Arc::new(Schema::new(names.iter().map(|n| ArrowField::new(n, DataType::Utf8, true)).collect::<Vec<_>>()));
    let conform = Conform::new(schema, &names, &file.hive).map_err(|e| FileError::Bad(format!("header: {e}")))?;
    let mut skip = csv::ByteRecord::new();
    for _ in 0..start {
        if !records.read_byte_record(&mut skip).map_err(|e| csv_error(&e))? {
            break;
        }
    }
    let nulls = options.nulls.iter().map(|n| n.as_bytes().to_vec()).collect();
    Ok(Inner::Csv { records, names, conform, nulls })
}

fn open_parquet(handle: File, file: &FileRef, schema: &IngestSchema, start: u64) -> Result<Inner, FileError> {
    let bad = |e: parquet::errors::ParquetError| FileError::Bad(format!("not a readable Parquet file: {e}"));
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle).map_err(bad)?;
    let full = builder.schema().clone();
    // Read only the columns the table has.
    let used: Vec<usize> = full
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| schema.user_fields.iter().any(|u| u.name.eq_ignore_ascii_case(f.name())))
        .map(|(i, _)| i)
        .collect();
    let projected = Arc::new(full.project(&used).map_err(|e| FileError::Bad(format!("Parquet schema: {e}")))?);
    let conform = Conform::new(schema, &projected, &file.hive).map_err(FileError::Bad)?;
    let total = builder.metadata().file_metadata().num_rows().max(1) as f64;
    let mask = ProjectionMask::roots(builder.parquet_schema(), used);
    let batches = builder
        .with_projection(mask)
        .with_batch_size(PART_ROWS)
        .with_offset(usize::try_from(start).unwrap_or(usize::MAX))
        .build()
        .map_err(bad)?;
    Ok(Inner::Parquet { batches, conform, bytes_per_row: file.size as f64 / total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_record_is_text_field_by_field() {
        let record = |fields: &[&[u8]]| csv::ByteRecord::from(fields.to_vec());
        assert_eq!(csv_row(&record(&[b"a", "\u{e9}t\u{e9}".as_bytes(), b""]), 3).unwrap(), ["a", "\u{e9}t\u{e9}", ""]);
        let short = csv_row(&record(&[b"a"]), 3).unwrap_err();
        assert_eq!(short.message, "the row has 1 fields; the header has 3");
        let bad = csv_row(&record(&[b"a", b"b\xff", b"c"]), 3).unwrap_err();
        assert!(bad.message.starts_with("field 2 is not UTF-8"), "{}", bad.message);
        // 'é' is C3 A9: split across two fields, each is invalid alone.
        let split = csv_row(&record(&[b"a\xc3", b"\xa9b"]), 2).unwrap_err();
        assert!(split.message.starts_with("field 1 is not UTF-8"), "{}", split.message);
    }
}
