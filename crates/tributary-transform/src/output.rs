//! A job's output table: its schema, derived from the query the job runs,
//! and how query results become its data files.
//!
//! The job creates its output, so the output's columns are whatever its
//! query returns, mapped to Iceberg types. A later run whose query returns
//! a new column adds it (additive evolution); one whose types changed is
//! refused by the table layer with the column named.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use arrow_array::{RecordBatch, new_null_array};
use arrow_schema::{DataType, Schema, SchemaRef};
use datafusion::prelude::DataFrame;
use futures::{StreamExt, TryStreamExt};
use iceberg::spec::{Literal, PrimitiveLiteral};
use tributary_core::config::{JobDef, JobKind};
use tributary_core::schema::{Field, FieldType, PartitionField, PartitionTransform};
use tributary_table::{Lake, LoadedTable, TableError};

use crate::error::{Result, TransformError};
use crate::units::DAY_US;

/// The Iceberg columns for a query's Arrow schema, all optional (a query
/// says little about nullability).
pub fn fields_of(job: &str, schema: &Schema) -> Result<Vec<Field>> {
    schema
        .fields()
        .iter()
        .map(|f| {
            let ty = field_type(f.name(), f.data_type())
                .ok_or_else(|| TransformError::definition(job, format!(
                    "column '{}' is of type {}, which an Iceberg table cannot hold; CAST it, e.g. to BIGINT, DOUBLE or VARCHAR",
                    f.name(),
                    f.data_type()
                )))?;
            Ok(Field::new(f.name().clone(), ty, false))
        })
        .collect()
}

fn field_type(name: &str, ty: &DataType) -> Option<FieldType> {
    Some(match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => FieldType::String,
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::UInt8 | DataType::UInt16 => FieldType::Int,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 if matches!(name, "window_start" | "window_end") => {
            FieldType::Timestamptz
        }
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => FieldType::Long,
        DataType::Float16 | DataType::Float32 => FieldType::Float,
        DataType::Float64 => FieldType::Double,
        DataType::Decimal128(p, s) if *s >= 0 => {
            FieldType::Decimal { precision: (*p).min(38), scale: u8::try_from(*s).ok()? }
        }
        DataType::Boolean => FieldType::Boolean,
        DataType::Date32 | DataType::Date64 => FieldType::Date,
        DataType::Timestamp(_, Some(_)) => FieldType::Timestamptz,
        DataType::Timestamp(_, None) => FieldType::Timestamp,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => FieldType::Binary,
        DataType::List(f) | DataType::LargeList(f) => {
            FieldType::List(Box::new(Field::new("element", field_type(f.name(), f.data_type())?, false)))
        }
        DataType::Struct(children) => FieldType::Struct(
            children
                .iter()
                .map(|c| Some(Field::new(c.name().clone(), field_type(c.name(), c.data_type())?, false)))
                .collect::<Option<Vec<_>>>()?,
        ),
        _ => return None,
    })
}

/// The output's partition fields: by day of the column each day unit is
/// cut by, or as a `sql` job configures.
pub fn partition_of(job: &JobDef) -> Vec<PartitionField> {
    let day = |c: &str| vec![PartitionField { column: c.to_owned(), transform: PartitionTransform::Day }];
    match &job.kind {
        JobKind::Window { .. } => day("window_start"),
        JobKind::Cleanse { .. } | JobKind::Enrich { .. } => job.time_column.as_deref().map(day).unwrap_or_default(),
        JobKind::Sql { partition, .. } => partition.clone(),
    }
}

/// Creates or evolves the output to hold `schema`'s columns.
pub async fn ensure(lake: &Lake, job: &JobDef, schema: &Schema) -> Result<LoadedTable> {
    let fields = fields_of(&job.name, schema)?;
    Ok(lake.ensure_derived(&job.output, &fields, &partition_of(job)).await?)
}

/// `batch` in the output's Arrow schema: columns by name, cast where the
/// query's type differs (window bounds from microseconds), NULL where the
/// query has no such column.
fn conform(batch: &RecordBatch, target: &SchemaRef) -> std::result::Result<RecordBatch, TableError> {
    let columns = target
        .fields()
        .iter()
        .map(|want| match batch.column_by_name(want.name()) {
            Some(have) if have.data_type() == want.data_type() => Ok(have.clone()),
            Some(have) => arrow_cast::cast(have, want.data_type()).map_err(|e| cast_error(want.name(), &e)),
            None => Ok(new_null_array(want.data_type(), batch.num_rows())),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    RecordBatch::try_new(target.clone(), columns).map_err(|e| TableError::Internal(format!("job output batch: {e}")))
}

fn cast_error(column: &str, e: &dyn std::fmt::Display) -> TableError {
    TableError::Internal(format!("job output column '{column}': {e}"))
}

/// Runs `df` and writes its rows as data files of `output`, a batch at a
/// time; returns the files and the rows written.
pub async fn write(
    lake: &Lake,
    job: &str,
    output: &LoadedTable,
    df: DataFrame,
    opts: &crate::run::RunOptions,
) -> Result<(Vec<iceberg::spec::DataFile>, u64)> {
    let target: SchemaRef = output.arrow_schema()?;
    let stream = df.execute_stream().await.map_err(TransformError::query(job))?;
    let rows = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (counted, progress) = (rows.clone(), opts.progress.clone());
    let batches = stream
        .map_err(|e| TableError::Internal(format!("job '{job}' query: {e}")))
        .and_then(move |b| {
            counted.fetch_add(b.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
            if let Some(p) = &progress {
                p.fetch_add(b.num_rows() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            let conformed = conform(&b, &target);
            async move { conformed }
        })
        .boxed();
    let files = tributary_table::writer::write_stream(lake, output, batches, opts.target_file_size).await?;
    Ok((files, rows.load(std::sync::atomic::Ordering::Relaxed)))
}

/// The live files of `output` in the day partitions `days` (day starts in
/// microseconds): what replacing those days removes.
pub async fn files_in_days(lake: &Lake, output: &LoadedTable, days: &BTreeSet<i64>) -> Result<HashSet<String>> {
    let wanted: HashSet<i32> = days.iter().filter_map(|d| i32::try_from(d.div_euclid(DAY_US)).ok()).collect();
    let live = lake.live_files(output).await?;
    Ok(live
        .into_iter()
        .filter(|(_, f)| match f.partition().fields().first() {
            Some(Some(Literal::Primitive(PrimitiveLiteral::Int(day)))) => wanted.contains(day),
            _ => false,
        })
        .map(|(_, f)| f.file_path().to_owned())
        .collect())
}

/// Every live file of `output`: what a full recomputation removes.
pub async fn all_files(lake: &Lake, output: &LoadedTable) -> Result<HashSet<String>> {
    Ok(lake.live_files(output).await?.into_iter().map(|(_, f)| f.file_path().to_owned()).collect())
}
