//! Metadata tables, named with a suffix like Iceberg's own:
//! - `t$snapshots`: every snapshot kept, newest first, with Tributary's
//!   pipeline and positions from its summary;
//! - `t$history`: when each snapshot became current, and whether it is an
//!   ancestor of the current one (a rollback leaves others behind);
//! - `t$manifests`: the manifests of the current snapshot, with their file
//!   and row counts;
//! - `t$files`: the live data files of the current snapshot, with their
//!   partition, rows and bytes.
//!
//! Each is built in memory from the table's metadata when the query plans:
//! they are as large as the table's history and file count, not its rows.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::builder::{BooleanBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use tributary_table::LoadedTable;
use tributary_table::history::snapshot_log;
use tributary_table::iceberg::spec::{Literal, PartitionField, PrimitiveLiteral, Struct};
use tributary_table::iceberg::table::Table;

use crate::catalog::iceberg_err;

/// Which metadata table a suffix names.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MetadataTable {
    Snapshots,
    History,
    Manifests,
    Files,
}

impl MetadataTable {
    /// The table `suffix` (after `$`) names.
    pub fn of(suffix: &str) -> Option<Self> {
        Some(match suffix {
            "snapshots" => Self::Snapshots,
            "history" => Self::History,
            "manifests" => Self::Manifests,
            "files" => Self::Files,
            _ => return None,
        })
    }

    /// Its rows for the table state `loaded` (`table` reads its manifests).
    pub async fn read(self, loaded: &LoadedTable, table: &Table) -> Result<MemTable> {
        let (schema, columns) = match self {
            Self::Snapshots => snapshots(loaded),
            Self::History => history(loaded),
            Self::Manifests => manifests(table).await?,
            Self::Files => files(table).await?,
        };
        let schema = Arc::new(Schema::new(schema));
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        MemTable::try_new(schema, vec![vec![batch]])
    }
}

type Columns = (Vec<Field>, Vec<ArrayRef>);

fn utc_ms(name: &str) -> Field {
    Field::new(name, DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())), false)
}

/// The snapshot log of a table, newest first, with Tributary's summary keys.
fn snapshots(loaded: &LoadedTable) -> Columns {
    let fields = vec![
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        utc_ms("committed_at"),
        Field::new("operation", DataType::Utf8, false),
        Field::new("added_records", DataType::Int64, true),
        Field::new("total_records", DataType::Int64, true),
        Field::new("pipeline", DataType::Utf8, true),
        Field::new("positions", DataType::Utf8, true),
    ];
    let (mut id, mut parent, mut at) = (Int64Builder::new(), Int64Builder::new(), TimestampMillisecondBuilder::new());
    let (mut op, mut added, mut total) = (StringBuilder::new(), Int64Builder::new(), Int64Builder::new());
    let (mut pipeline, mut positions) = (StringBuilder::new(), StringBuilder::new());
    for s in snapshot_log(loaded) {
        id.append_value(s.snapshot_id);
        parent.append_option(s.parent_id);
        at.append_value(s.committed_at_ms);
        op.append_value(&s.operation);
        added.append_option(s.added_records);
        total.append_option(s.total_records);
        pipeline.append_option(s.pipeline);
        positions.append_option(s.positions);
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(id.finish()),
        Arc::new(parent.finish()),
        Arc::new(at.finish().with_timezone("+00:00")),
        Arc::new(op.finish()),
        Arc::new(added.finish()),
        Arc::new(total.finish()),
        Arc::new(pipeline.finish()),
        Arc::new(positions.finish()),
    ];
    (fields, columns)
}

/// When each snapshot became current, oldest first.
fn history(loaded: &LoadedTable) -> Columns {
    let meta = &loaded.metadata;
    let mut ancestors = HashSet::new();
    let mut at = meta.current_snapshot();
    while let Some(s) = at {
        ancestors.insert(s.snapshot_id());
        at = s.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p));
    }
    let fields = vec![
        utc_ms("made_current_at"),
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("is_current_ancestor", DataType::Boolean, false),
    ];
    let (mut when, mut id, mut parent) = (TimestampMillisecondBuilder::new(), Int64Builder::new(), Int64Builder::new());
    let mut ancestor = BooleanBuilder::new();
    for log in meta.history() {
        when.append_value(log.timestamp_ms);
        id.append_value(log.snapshot_id);
        parent.append_option(meta.snapshot_by_id(log.snapshot_id).and_then(|s| s.parent_snapshot_id()));
        ancestor.append_value(ancestors.contains(&log.snapshot_id));
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(when.finish().with_timezone("+00:00")),
        Arc::new(id.finish()),
        Arc::new(parent.finish()),
        Arc::new(ancestor.finish()),
    ];
    (fields, columns)
}

/// The current snapshot's manifest list.
async fn manifest_list(table: &Table) -> Result<Vec<tributary_table::iceberg::spec::ManifestFile>> {
    let Some(snapshot) = table.metadata().current_snapshot() else { return Ok(Vec::new()) };
    let list = table.manifest_list_reader(snapshot).load().await.map_err(iceberg_err)?;
    Ok(list.entries().to_vec())
}

/// The manifests of the current snapshot.
async fn manifests(table: &Table) -> Result<Columns> {
    let fields = vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("length", DataType::Int64, false),
        Field::new("partition_spec_id", DataType::Int32, false),
        Field::new("content", DataType::Utf8, false),
        Field::new("added_snapshot_id", DataType::Int64, false),
        Field::new("added_files_count", DataType::Int64, true),
        Field::new("existing_files_count", DataType::Int64, true),
        Field::new("deleted_files_count", DataType::Int64, true),
        Field::new("added_rows_count", DataType::Int64, true),
        Field::new("existing_rows_count", DataType::Int64, true),
    ];
    let (mut path, mut length, mut spec) = (StringBuilder::new(), Int64Builder::new(), Int32Builder::new());
    let (mut content, mut snapshot) = (StringBuilder::new(), Int64Builder::new());
    let mut counts: Vec<Int64Builder> = (0..5).map(|_| Int64Builder::new()).collect();
    for m in manifest_list(table).await? {
        path.append_value(&m.manifest_path);
        length.append_value(m.manifest_length);
        spec.append_value(m.partition_spec_id);
        content.append_value(format!("{:?}", m.content).to_lowercase());
        snapshot.append_value(m.added_snapshot_id);
        let values = [
            m.added_files_count.map(i64::from),
            m.existing_files_count.map(i64::from),
            m.deleted_files_count.map(i64::from),
            m.added_rows_count.and_then(|n| i64::try_from(n).ok()),
            m.existing_rows_count.and_then(|n| i64::try_from(n).ok()),
        ];
        counts.iter_mut().zip(values).for_each(|(b, v)| b.append_option(v));
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(path.finish()),
        Arc::new(length.finish()),
        Arc::new(spec.finish()),
        Arc::new(content.finish()),
        Arc::new(snapshot.finish()),
    ];
    columns.extend(counts.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
    Ok((fields, columns))
}

/// The live data files of the current snapshot.
async fn files(table: &Table) -> Result<Columns> {
    let fields = vec![
        Field::new("file_path", DataType::Utf8, false),
        Field::new("file_format", DataType::Utf8, false),
        Field::new("partition", DataType::Utf8, false),
        Field::new("record_count", DataType::Int64, false),
        Field::new("file_size_in_bytes", DataType::Int64, false),
        Field::new("partition_spec_id", DataType::Int32, false),
    ];
    let (mut path, mut format, mut partition) = (StringBuilder::new(), StringBuilder::new(), StringBuilder::new());
    let (mut records, mut bytes, mut spec_ids) = (Int64Builder::new(), Int64Builder::new(), Int32Builder::new());
    for m in manifest_list(table).await? {
        let manifest = m.load_manifest(table.file_io()).await.map_err(iceberg_err)?;
        for entry in manifest.entries().iter().filter(|e| e.is_alive()) {
            let file = entry.data_file();
            path.append_value(file.file_path());
            format.append_value(format!("{:?}", file.file_format()).to_lowercase());
            let spec = table.metadata().partition_spec_by_id(m.partition_spec_id);
            partition.append_value(partition_text(spec.map(|s| s.fields()), file.partition()));
            records.append_value(i64::try_from(file.record_count()).unwrap_or(i64::MAX));
            bytes.append_value(i64::try_from(file.file_size_in_bytes()).unwrap_or(i64::MAX));
            spec_ids.append_value(m.partition_spec_id);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(path.finish()),
        Arc::new(format.finish()),
        Arc::new(partition.finish()),
        Arc::new(records.finish()),
        Arc::new(bytes.finish()),
        Arc::new(spec_ids.finish()),
    ];
    Ok((fields, columns))
}

/// A file's partition as `name=value, …` (`{}` when unpartitioned), values
/// as Iceberg stores them (a `day` transform counts days since 1970-01-01).
fn partition_text(spec: Option<&[PartitionField]>, values: &Struct) -> String {
    let names = spec.unwrap_or_default().iter().map(|f| f.name.as_str());
    let values = values.fields().iter().map(|v| match v {
        None => "null".to_owned(),
        Some(Literal::Primitive(p)) => match p {
            PrimitiveLiteral::Boolean(b) => b.to_string(),
            PrimitiveLiteral::Int(n) => n.to_string(),
            PrimitiveLiteral::Long(n) => n.to_string(),
            PrimitiveLiteral::Float(x) => x.to_string(),
            PrimitiveLiteral::Double(x) => x.to_string(),
            PrimitiveLiteral::String(s) => s.clone(),
            PrimitiveLiteral::Int128(n) => n.to_string(),
            other => format!("{other:?}"),
        },
        Some(other) => format!("{other:?}"),
    });
    let pairs: Vec<String> = names.zip(values).map(|(n, v)| format!("{n}={v}")).collect();
    if pairs.is_empty() { "{}".to_owned() } else { pairs.join(", ") }
}
