//! What a table gained and lost since a point in its history: the rows of
//! the data files that snapshots newer than a sequence number added, and of
//! those that overwrites, deletes and rollbacks removed.
//!
//! A writer that keeps state derived from the table (the dedup index) must
//! learn what *other* writers committed, without rescanning the table. Each
//! snapshot's own manifest lists the files it added, so only those files are
//! read, and only the requested columns of them. Sequence numbers, not
//! snapshot ids, mark the point: ids are random, sequence numbers grow.

use arrow_array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataContentType, DataFile, ManifestContentType, ManifestStatus, Operation};

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};

/// The rows snapshots added to a table and removed from it.
#[derive(Debug, Default)]
pub struct Changes {
    /// Rows of the files added (compaction's rewrites excluded: their rows
    /// were in the table already).
    pub added: Vec<RecordBatch>,
    /// Rows of the files removed by overwrites, deletes and rollbacks (a
    /// rollback may also add back rows an earlier snapshot had).
    pub removed: Vec<RecordBatch>,
}

/// The `columns` of every row added to or removed from `table` by
/// snapshots of its current history with a sequence number above `since`;
/// `None` if snapshot expiry removed some of those snapshots (the caller
/// must read the table itself).
pub async fn changed_since(lake: &Lake, table: &LoadedTable, since: i64, columns: &[&str]) -> Result<Option<Changes>> {
    match table.current_snapshot_id() {
        Some(upto) => changed_between(lake, table, since, upto, columns).await,
        None => Ok(Some(Changes::default())),
    }
}

/// [`changed_since`] up to snapshot `upto` of the current history instead
/// of the current snapshot: what a reader pinned to `upto` has not seen.
pub async fn changed_between(
    lake: &Lake,
    table: &LoadedTable,
    since: i64,
    upto: i64,
    columns: &[&str],
) -> Result<Option<Changes>> {
    let meta = &table.metadata;
    let schema = meta.current_schema().clone();
    let field_ids = columns
        .iter()
        .map(|c| {
            schema
                .field_id_by_name(c)
                .ok_or_else(|| TableError::Config(format!("table '{}' has no column '{c}'", table.name)))
        })
        .collect::<Result<Vec<i32>>>()?;
    let iceberg = lake.iceberg_table(table)?;
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let mut next = meta.snapshot_by_id(upto);
    while let Some(snapshot) = next.filter(|s| s.sequence_number() > since) {
        next = snapshot.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p));
        // Sequence numbers grow by one per commit along the history: a
        // missing parent above `since` is a snapshot that expiry removed.
        if next.is_none() && snapshot.parent_snapshot_id().is_some() && snapshot.sequence_number() > since + 1 {
            return Ok(None);
        }
        // A rewrite (compaction) adds files of rows the table already had.
        if snapshot.summary().operation == Operation::Replace {
            continue;
        }
        let list = iceberg
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(TableError::iceberg("reading manifest list"))?;
        let written = list
            .entries()
            .iter()
            .filter(|m| m.added_snapshot_id == snapshot.snapshot_id() && m.content == ManifestContentType::Data);
        for manifest in written {
            let manifest =
                manifest.load_manifest(lake.file_io()).await.map_err(TableError::iceberg("reading manifest"))?;
            let ours = manifest.entries().iter().filter(|e| {
                e.content_type() == DataContentType::Data && e.snapshot_id() == Some(snapshot.snapshot_id())
            });
            for e in ours {
                match e.status() {
                    ManifestStatus::Added => added.push(e.data_file().clone()),
                    ManifestStatus::Deleted => removed.push(e.data_file().clone()),
                    ManifestStatus::Existing => {}
                }
            }
        }
    }
    Ok(Some(Changes {
        added: read_all(lake, table, &added, &field_ids).await?,
        removed: read_all(lake, table, &removed, &field_ids).await?,
    }))
}

async fn read_all(lake: &Lake, table: &LoadedTable, files: &[DataFile], field_ids: &[i32]) -> Result<Vec<RecordBatch>> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    read_files(lake, table, files, field_ids)?.try_collect().await
}

/// The columns `field_ids` of every row of `files`, read whole, as a stream
/// (what compaction rewrites, what the dedup refresh reads).
pub(crate) fn read_files(
    lake: &Lake,
    table: &LoadedTable,
    files: &[DataFile],
    field_ids: &[i32],
) -> Result<impl futures::Stream<Item = Result<RecordBatch>> + Unpin + use<>> {
    let schema = table.metadata.current_schema().clone();
    let tasks: Vec<_> = files
        .iter()
        .map(|f| {
            Ok(FileScanTask::builder()
                .with_file_size_in_bytes(f.file_size_in_bytes())
                .with_start(0)
                .with_length(f.file_size_in_bytes())
                .with_record_count(Some(f.record_count()))
                .with_data_file_path(f.file_path().to_owned())
                .with_data_file_format(f.file_format())
                .with_schema(schema.clone())
                .with_project_field_ids(field_ids.to_vec())
                .with_case_sensitive(true)
                .build())
        })
        .collect();
    let reader = lake.iceberg_table(table)?.reader_builder().build();
    let batches =
        reader.read(futures::stream::iter(tasks).boxed()).map_err(TableError::iceberg("reading data files"))?;
    Ok(batches.stream().map_err(|e| TableError::iceberg("reading data files")(e)))
}
