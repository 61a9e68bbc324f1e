//! Compaction: bin-packs the small data files of each partition into files
//! of the target size, published as one rewrite commit.
//!
//! Files are small because ingest commits often (freshness and file size are
//! separate knobs). A file is small below three quarters of the target; the
//! small files of one partition (of one partition spec) are packed, in order
//! of age, into bins of at most the target size, and each bin of two or more
//! files is rewritten. Rows are streamed from the old files into the new
//! ones, so memory holds one batch and the open files' buffers, not a bin —
//! unless the table sorts on compaction (`sort_by`): then a bin's rows are
//! held and sorted together (ascending, nulls first), at most a target
//! file's worth of Parquet (several times that in memory) at a time.
//!
//! The rewrite is validated on the table it lands on: every replaced file
//! must still be live, else it is refused and nothing changes (the new files
//! are deleted; after an error that leaves the outcome unknown they are
//! kept, since the table may reference them). Appends committed meanwhile are kept: a lost race rebuilds
//! the commit on the new state with the same files.

use std::collections::{BTreeMap, HashSet};

use arrow_array::RecordBatch;
use futures::TryStreamExt;
use iceberg::spec::{DataFile, DataFileFormat, Struct};
use tributary_core::TableName;

use super::{MAX_ATTEMPTS, backoff};
use crate::changes::read_files;
use crate::commit::{Change, publish};
use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};
use crate::writer::write_stream;

/// How compaction packs files.
#[derive(Debug, Clone)]
pub struct Compaction {
    /// Size of the files it writes.
    pub target_file_size: u64,
    /// Fewest small files in a partition worth a rewrite.
    pub min_files: usize,
    /// Columns to sort each written file by; empty: arrival order.
    pub sort_by: Vec<String>,
}

impl Compaction {
    /// Unsorted compaction into files of `target_file_size` bytes.
    pub fn new(target_file_size: u64, min_files: usize) -> Self {
        Self { target_file_size, min_files, sort_by: Vec::new() }
    }
}

/// What one compaction did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Live data files before and after.
    pub files_before: usize,
    /// Live data files after.
    pub files_after: usize,
    /// Files replaced.
    pub files_rewritten: usize,
    /// Bytes of the files replaced.
    pub bytes_rewritten: u64,
    /// Files written in their place.
    pub files_written: usize,
}

/// Compacts the small files of `name`; with `dry_run`, reports the plan
/// (one file written per bin) and changes nothing.
pub async fn compact(lake: &Lake, name: &TableName, policy: &Compaction, dry_run: bool) -> Result<Compacted> {
    let mut base = lake.load(name).await?;
    let live = lake.live_files(&base).await?;
    let bins = plan(&live, policy);
    let inputs: Vec<&DataFile> = bins.iter().flatten().copied().collect();
    let planned = Compacted {
        files_before: live.len(),
        files_after: live.len() - inputs.len() + bins.len(),
        files_rewritten: inputs.len(),
        bytes_rewritten: inputs.iter().map(|f| f.file_size_in_bytes()).sum(),
        files_written: bins.len(),
    };
    if bins.is_empty() || dry_run {
        return Ok(planned);
    }
    let removed: HashSet<String> = inputs.iter().map(|f| f.file_path().to_owned()).collect();
    let target = usize::try_from(policy.target_file_size).unwrap_or(usize::MAX);
    let mut added = Vec::new();
    for bin in &bins {
        added.extend(rewrite(lake, &base, bin, target, &policy.sort_by).await?);
    }
    for attempt in 1..=MAX_ATTEMPTS {
        let gate = lake.gate(name);
        let turn = gate.lock().await;
        let held = std::time::Instant::now();
        // The rewrite lands on the newest state, which appends cannot move
        // while this process's gate is held.
        base = lake.load(name).await?;
        let published = publish(lake, &base, Change::Rewrite { removed: &removed, added: &added }).await;
        drop(turn);
        tracing::debug!(table = %name, held_ms = held.elapsed().as_secs_f64() * 1e3, "compaction held the commit gate");
        match published {
            Ok(_) => {
                let done = Compacted {
                    files_after: live.len() - inputs.len() + added.len(),
                    files_written: added.len(),
                    ..planned
                };
                tracing::info!(table = %name, rewritten = done.files_rewritten, written = done.files_written, bytes = done.bytes_rewritten, "compacted");
                return Ok(done);
            }
            Err(TableError::CommitConflict { .. }) if attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => {
                // Refused: nothing references the new files, so they go. Any
                // other error may have come after the swap landed (the
                // connection broke): the files stay, as orphans at worst.
                if matches!(e, TableError::ChangeConflict { .. } | TableError::CommitConflict { .. }) {
                    for f in &added {
                        let _ = lake.file_io().delete(f.file_path()).await;
                    }
                }
                return Err(e);
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Bins of small files to rewrite: per partition, oldest first, each bin at
/// most the target size and of at least `min_files` files.
fn plan<'a>(live: &'a [(i32, DataFile)], policy: &Compaction) -> Vec<Vec<&'a DataFile>> {
    let small = policy.target_file_size / 4 * 3;
    let mut by_partition: BTreeMap<(i32, String), Vec<&DataFile>> = BTreeMap::new();
    for (spec, f) in live {
        if f.file_size_in_bytes() < small && f.file_format() == DataFileFormat::Parquet {
            by_partition.entry((*spec, partition_key(f.partition()))).or_default().push(f);
        }
    }
    let mut bins = Vec::new();
    for files in by_partition.into_values() {
        let mut bin: Vec<&DataFile> = Vec::new();
        let mut size = 0;
        for f in files {
            if size + f.file_size_in_bytes() > policy.target_file_size && !bin.is_empty() {
                bins.push(std::mem::take(&mut bin));
                size = 0;
            }
            size += f.file_size_in_bytes();
            bin.push(f);
        }
        bins.push(bin);
    }
    bins.retain(|b| b.len() >= policy.min_files.max(2));
    bins
}

/// A partition value as a map key.
fn partition_key(partition: &Struct) -> String {
    format!("{partition:?}")
}

/// Streams the rows of `files` into new files of the current spec; with
/// `sort_by`, reads them all and writes them sorted.
async fn rewrite(
    lake: &Lake,
    table: &LoadedTable,
    files: &[&DataFile],
    target: usize,
    sort_by: &[String],
) -> Result<Vec<DataFile>> {
    let field_ids: Vec<i32> = table.metadata.current_schema().as_struct().fields().iter().map(|f| f.id).collect();
    let files: Vec<DataFile> = files.iter().map(|f| (*f).clone()).collect();
    let rows = read_files(lake, table, &files, &field_ids)?;
    if sort_by.is_empty() {
        return write_stream(lake, table, rows, target).await;
    }
    let batches: Vec<RecordBatch> = rows.try_collect().await?;
    let sorted = sort(table, &batches, sort_by)?;
    let chunks: Vec<Result<RecordBatch>> =
        (0..sorted.num_rows()).step_by(8192).map(|at| Ok(sorted.slice(at, 8192.min(sorted.num_rows() - at)))).collect();
    write_stream(lake, table, futures::stream::iter(chunks), target).await
}

/// The rows of `batches` as one batch, sorted by the columns `sort_by`.
fn sort(table: &LoadedTable, batches: &[RecordBatch], sort_by: &[String]) -> Result<RecordBatch> {
    let failed = |e: arrow_schema::ArrowError| TableError::InvalidData {
        table: table.name.clone(),
        reason: format!("sorting rows for compaction: {e}"),
    };
    let Some(first) = batches.first() else {
        return Err(TableError::InvalidData { table: table.name.clone(), reason: "no rows to compact".to_owned() });
    };
    let all = arrow_select::concat::concat_batches(&first.schema(), batches).map_err(failed)?;
    let columns = sort_by
        .iter()
        .map(|c| {
            let values = all.column_by_name(c).ok_or_else(|| {
                TableError::Config(format!(
                    "table '{}' sorts on compaction by '{c}', which it does not have",
                    table.name
                ))
            })?;
            Ok(arrow_ord::sort::SortColumn { values: values.clone(), options: None })
        })
        .collect::<Result<Vec<_>>>()?;
    let order = arrow_ord::sort::lexsort_to_indices(&columns, None).map_err(failed)?;
    arrow_select::take::take_record_batch(&all, &order).map_err(failed)
}

#[cfg(test)]
mod tests {
    use iceberg::spec::{DataContentType, DataFileBuilder, Literal};

    use super::*;

    fn file(path: &str, size: u64, partition: i32) -> (i32, DataFile) {
        let f = DataFileBuilder::default()
            .content(DataContentType::Data)
            .file_path(path.to_owned())
            .file_format(DataFileFormat::Parquet)
            .partition(Struct::from_iter([Some(Literal::int(partition))]))
            .record_count(1)
            .file_size_in_bytes(size)
            .partition_spec_id(0)
            .build()
            .unwrap();
        (0, f)
    }

    #[test]
    fn small_files_are_packed_per_partition_up_to_the_target() {
        let policy = Compaction::new(100, 2);
        let live = vec![
            file("a1", 40, 1),
            file("a2", 40, 1),
            file("a3", 40, 1),
            file("big", 90, 1),
            file("b1", 10, 2),
            file("c1", 10, 3),
            file("c2", 10, 3),
        ];
        let bins: Vec<Vec<&str>> =
            plan(&live, &policy).iter().map(|b| b.iter().map(|f| f.file_path()).collect()).collect();
        // a3 alone in its bin and b1 alone in its partition are not worth a rewrite;
        // `big` is not small.
        assert_eq!(bins, vec![vec!["a1", "a2"], vec!["c1", "c2"]]);
    }
}
