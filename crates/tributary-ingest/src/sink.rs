//! The last stage every source shares: Arrow batches → Parquet data files →
//! one snapshot through the commit protocol, with the commit's log line and
//! metrics emitted together. A commit whose outcome is unknown (the
//! connection broke around the swap) is resolved here, for every source, by
//! reading the table back.

use std::time::Instant;

use arrow_array::RecordBatch;
use tributary_core::metrics as m;
use tributary_table::{Lake, LoadedTable, Outcome, PipelineStamp, TableError, commit_with_retry, write_data_files};

use crate::error::IngestError;

const MAX_COMMIT_ATTEMPTS: u32 = 10;

/// Attempts at a commit pinned to the table state its checks ran against
/// (dedup keys, idempotency keys), while other writers keep committing.
pub const MAX_PINNED_ATTEMPTS: usize = 10;

/// The error when `table` moved under every pinned attempt.
pub fn kept_changing(table: &impl std::fmt::Display) -> IngestError {
    IngestError::Unavailable(format!(
        "'{table}' changed under each of {MAX_PINNED_ATTEMPTS} commit attempts; other writers are busy"
    ))
}

/// Writes `batches` on top of `base` and commits them; `stamp_for` decides,
/// for each base an attempt builds on, the stamp or that the batch is a zombie.
/// Empty `batches` still commit, so that positions can advance.
pub async fn write_and_commit(
    lake: &Lake,
    base: LoadedTable,
    batches: &[RecordBatch],
    target_file_size: usize,
    stamp_for: impl FnMut(&LoadedTable) -> tributary_table::Result<Option<PipelineStamp>>,
) -> Result<Outcome, IngestError> {
    let label = base.name.to_string();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let started = Instant::now();
    let files = write_data_files(lake, &base, batches, target_file_size).await?;
    let bytes: u64 = files.iter().map(|f| f.file_size_in_bytes()).sum();
    let name = base.name.clone();
    let (outcome, conflicts) = match commit_with_retry(lake, base, &files, stamp_for, MAX_COMMIT_ATTEMPTS).await {
        Ok(done) => done,
        Err(TableError::CommitUnknown { snapshot_id, reason, .. }) => match lake.landed(&name, snapshot_id).await {
            Ok(Some(new)) => {
                tracing::warn!(table = %name, snapshot_id, %reason, "commit outcome was unknown; it landed");
                (Outcome::Committed(new), 0)
            }
            Ok(None) => return Err(IngestError::Unavailable(format!("commit to '{name}' did not land ({reason})"))),
            // Still unknown: the caller gives back what it claimed, so a
            // retry may duplicate but never lose.
            Err(e) => return Err(IngestError::Commit(e)),
        },
        Err(e) => return Err(e.into()),
    };
    if conflicts > 0 {
        metrics::counter!(m::COMMIT_CONFLICTS, "table" => label.clone(), "outcome" => "retried")
            .increment(u64::from(conflicts));
    }
    match &outcome {
        Outcome::Committed(new) => {
            let secs = started.elapsed().as_secs_f64();
            metrics::histogram!(m::COMMIT_LATENCY, "table" => label.clone()).record(secs);
            metrics::counter!(m::COMMITS, "table" => label.clone()).increment(1);
            metrics::counter!(m::BYTES_WRITTEN, "table" => label.clone()).increment(bytes);
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(m::CURRENT_SNAPSHOT, "table" => label.clone())
                .set(new.current_snapshot_id().unwrap_or(0) as f64);
            tracing::info!(table = %label, rows, files = files.len(), bytes, conflicts, latency_ms = secs * 1e3,
                snapshot_id = new.current_snapshot_id(), "committed");
        }
        Outcome::Zombie(_) => {
            metrics::counter!(m::COMMIT_CONFLICTS, "table" => label.clone(), "outcome" => "zombie").increment(1);
            tracing::warn!(table = %label, rows, "batch superseded by another writer; dropped");
        }
    }
    Ok(outcome)
}
