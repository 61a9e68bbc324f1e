//! Arrow record batches → Parquet data files under the table's location.
//!
//! Writing data files is the first half of a commit and has no visible
//! effect: until a snapshot references them, the files are orphans that any
//! reader ignores and maintenance deletes. So a crash here loses nothing that
//! was acknowledged. Rows are routed to one file set per partition.

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;
use uuid::Uuid;

use crate::conform::conform;
use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};

/// Values of each column sampled to judge whether a dictionary pays.
const DICTIONARY_SAMPLE: usize = 1024;

/// Parquet settings. iceberg-rust does not derive these from table
/// properties, so we set them:
/// - zstd level 1 compresses event JSON well at low CPU cost;
/// - no dictionary for a top-level string or fixed-width column (numbers,
///   decimals, dates, timestamps) whose sample (the first batch written, up
///   to [`DICTIONARY_SAMPLE`] values) is mostly distinct values: ids, keys,
///   amounts, event times. The encoder would intern each value until the
///   dictionary passes its size limit and then fall back to plain encoding
///   anyway; that interning was 7% of a Kafka drain's CPU for the string
///   columns, and 19% of a CSV file load's with the numbers and times too.
fn writer_properties(sample: &RecordBatch) -> WriterProperties {
    let mut props =
        WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()));
    for (field, column) in sample.schema().fields().iter().zip(sample.columns()) {
        if mostly_distinct(column.as_ref()) {
            props = props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), false);
        }
    }
    props.build()
}

/// Whether more than half of the first [`DICTIONARY_SAMPLE`] values of a
/// string or fixed-width column (at least 64 of them, nulls aside) are
/// distinct. Other columns (booleans, nested) keep their dictionary.
fn mostly_distinct(column: &dyn Array) -> bool {
    let rows = (0..column.len().min(DICTIONARY_SAMPLE)).filter(|i| column.is_valid(*i));
    let data = column.to_data();
    let sample: Vec<&[u8]> = if let Some(strings) = column.as_string_opt::<i32>() {
        rows.map(|i| strings.value(i).as_bytes()).collect()
    } else if let Some(width) = column.data_type().primitive_width() {
        let Some(values) = data.buffers().first() else { return false };
        let values = &values.as_slice()[data.offset() * width..];
        rows.map(|i| &values[i * width..(i + 1) * width]).collect()
    } else {
        return false;
    };
    let distinct: std::collections::HashSet<&[u8]> = sample.iter().copied().collect();
    sample.len() >= 64 && distinct.len() * 2 > sample.len()
}

/// Writes `batches` (already in the table's Arrow schema) as data files.
///
/// Nothing becomes visible: the caller commits the returned files.
pub async fn write_data_files(
    lake: &Lake,
    table: &LoadedTable,
    batches: &[RecordBatch],
    target_file_size: usize,
) -> Result<Vec<DataFile>> {
    fail::fail_point!("table::before_data_write", |_| Err(TableError::Injected("table::before_data_write")));
    let files = write(lake, table, batches, target_file_size).await?;
    fail::fail_point!("table::after_data_write", |_| Err(TableError::Injected("table::after_data_write")));
    Ok(files)
}

/// Rows each encoder gets at least when a landing is split across cores:
/// below this, a second file costs more (to write, and to read until
/// compaction) than the core saves.
const MIN_ROWS_PER_ENCODER: usize = 65_536;

async fn write(
    lake: &Lake,
    table: &LoadedTable,
    batches: &[RecordBatch],
    target_file_size: usize,
) -> Result<Vec<DataFile>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Ok(Vec::new());
    }
    // Encoding is CPU work: a large landing is cut into contiguous parts
    // encoded at once, each into its own files, on the runtime's workers.
    let parts = tributary_core::cores::parts(rows, MIN_ROWS_PER_ENCODER);
    if parts == 1 {
        let stream = futures::stream::iter(batches.iter().cloned().map(Ok));
        return write_stream(lake, table, stream, target_file_size).await;
    }
    let encoders: Vec<_> = split_rows(batches, rows.div_ceil(parts))
        .into_iter()
        .map(|part| {
            let (lake, table) = (lake.clone(), table.clone());
            tokio::spawn(async move {
                let stream = futures::stream::iter(part.into_iter().map(Ok));
                write_stream(&lake, &table, stream, target_file_size).await
            })
        })
        .collect();
    let mut files = Vec::new();
    for encoder in encoders {
        let written = encoder.await.map_err(|e| TableError::Internal(format!("a Parquet encoder failed: {e}")))?;
        files.extend(written?);
    }
    Ok(files)
}

/// `batches` regrouped into parts of `size` rows (the last may be short),
/// in order, by zero-copy slices.
fn split_rows(batches: &[RecordBatch], size: usize) -> Vec<Vec<RecordBatch>> {
    let (mut parts, mut part, mut room) = (Vec::new(), Vec::new(), size);
    for batch in batches {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = room.min(batch.num_rows() - offset);
            part.push(batch.slice(offset, take));
            (offset, room) = (offset + take, room - take);
            if room == 0 {
                parts.push(std::mem::take(&mut part));
                room = size;
            }
        }
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// Writes a stream of batches as data files, one batch in memory at a time
/// (plus what each open file buffers): how compaction rewrites files larger
/// than it could hold.
pub async fn write_stream(
    lake: &Lake,
    table: &LoadedTable,
    mut batches: impl futures::Stream<Item = Result<RecordBatch>> + Unpin,
    target_file_size: usize,
) -> Result<Vec<DataFile>> {
    use futures::StreamExt;
    let Some(first) = batches.next().await.transpose()? else {
        return Ok(Vec::new());
    };
    let properties = writer_properties(&first);
    let mut batches = futures::stream::iter([Ok(first)]).chain(batches);
    let meta = &table.metadata;
    let schema = meta.current_schema().clone();
    // Batches may come from a writer that validated under an earlier schema.
    let arrow = table.arrow_schema()?;
    let locations = DefaultLocationGenerator::new(meta).map_err(TableError::iceberg("locating data files"))?;
    let names = DefaultFileNameGenerator::new(Uuid::now_v7().to_string(), None, DataFileFormat::Parquet);
    let rolling = RollingFileWriterBuilder::new(
        ParquetWriterBuilder::new(properties, schema.clone()),
        target_file_size,
        lake.file_io().clone(),
        locations,
        names,
    );
    let builder = DataFileWriterBuilder::new(rolling);
    let spec = meta.default_partition_spec().clone();
    let invalid = |e: iceberg::Error| TableError::InvalidData { table: table.name.clone(), reason: e.to_string() };
    if spec.is_unpartitioned() {
        let mut writer = builder.build(None).await.map_err(TableError::iceberg("opening data file"))?;
        while let Some(b) = batches.next().await {
            writer.write(conform(&b?, &arrow)?).await.map_err(invalid)?;
        }
        return writer.close().await.map_err(TableError::iceberg("closing data file"));
    }
    let splitter = RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)
        .map_err(TableError::iceberg("partitioning rows"))?;
    let mut writer = FanoutWriter::new(builder);
    while let Some(b) = batches.next().await {
        for (key, part) in splitter.split(&conform(&b?, &arrow)?).map_err(invalid)? {
            writer.write(key, part).await.map_err(invalid)?;
        }
    }
    writer.close().await.map_err(TableError::iceberg("closing data files"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::Int32Array;

    use super::*;

    #[test]
    fn rows_are_regrouped_in_order_into_parts_of_a_size() {
        let batch = |from: i32, to: i32| {
            RecordBatch::try_from_iter([("v", Arc::new(Int32Array::from_iter_values(from..to)) as _)]).unwrap()
        };
        let parts = split_rows(&[batch(0, 5), batch(5, 12), batch(12, 13)], 4);
        let values: Vec<Vec<i32>> = parts
            .iter()
            .map(|p| {
                p.iter()
                    .flat_map(|b| b.column(0).as_any().downcast_ref::<Int32Array>().unwrap().values().to_vec())
                    .collect()
            })
            .collect();
        assert_eq!(values, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9, 10, 11], vec![12]]);
    }

    #[test]
    fn only_mostly_distinct_columns_lose_their_dictionary() {
        let strings =
            |f: fn(usize) -> String| Arc::new(arrow_array::StringArray::from_iter_values((0..2000).map(f))) as _;
        let batch = RecordBatch::try_from_iter([
            ("id", strings(|i| format!("evt-{i}"))),
            ("currency", strings(|i| ["EUR", "USD", "GBP"][i % 3].to_owned())),
            ("half", strings(|i| format!("v{}", i / 2))),
            ("n", Arc::new(Int32Array::from_iter_values(0..2000)) as _),
            ("level", Arc::new(Int32Array::from_iter_values((0..2000).map(|i| i % 5))) as _),
            (
                "late",
                Arc::new(
                    Int32Array::from_iter_values((0..4000).map(|i| if i < 2000 { 0 } else { i })).slice(2000, 2000),
                ) as _,
            ),
            ("flag", Arc::new(arrow_array::BooleanArray::from_iter((0..2000).map(|i| Some(i % 2 == 0)))) as _),
        ])
        .unwrap();
        let props = writer_properties(&batch);
        let dictionary = |c: &str| props.dictionary_enabled(&ColumnPath::from(c));
        assert!(!dictionary("id"), "unique ids");
        assert!(dictionary("currency"), "three values");
        assert!(dictionary("half"), "each value twice: exactly half distinct");
        assert!(!dictionary("n"), "distinct numbers");
        assert!(dictionary("level"), "five numbers");
        assert!(!dictionary("late"), "a sliced column is read from its offset, past the zeros");
        assert!(dictionary("flag"), "not a string or fixed-width column");
        // Too few values to judge: keep the dictionary.
        let small = batch.slice(0, 10);
        assert!(writer_properties(&small).dictionary_enabled(&ColumnPath::from("id")));
    }
}
