//! Landing one sealed Kafka batch: rejects to the quarantine table, then rows
//! to the data table, both stamped with the batch's positions.
//!
//! This runs as its own task so that the pipeline keeps reading the next
//! batch while this one is encoded to Parquet and committed: on two cores
//! that overlap is most of the difference between stalling on every commit
//! and not. The pipeline keeps at most one batch in flight and waits for it
//! before sealing the next, so commits stay in offset order and each one
//! builds on the table state the previous one produced.

use std::sync::Arc;

use tributary_core::metrics as m;
use tributary_core::{Clock, Positions};
use tributary_table::{Lake, LoadedTable, Outcome, PipelineStamp, stamp_unless_zombie};

use crate::columns::rows_to_batch;
use crate::error::IngestError;
use crate::prepare::{IngestSchema, Reject, quarantine_batch};
use crate::sink::write_and_commit;
use crate::validate::Cell;

/// What every landing of one pipeline shares.
pub(super) struct Target {
    pub lake: Lake,
    pub schema: Arc<IngestSchema>,
    pub pipeline: String,
    pub clock: Arc<dyn Clock>,
    pub target_file_size: usize,
}

/// A batch taken off the pipeline, with the positions it covers.
pub(super) struct Sealed {
    pub rows: Vec<Vec<Cell>>,
    pub rejects: Vec<Reject>,
    /// Dedup keys the batch claimed; given back if it is dropped.
    pub keys: Vec<String>,
    /// First offset read per partition: the zombie rule compares it with
    /// the data table's positions.
    pub started_at: Positions,
    /// Where this batch's rejects start per partition: past the quarantine
    /// table's own positions, which may be ahead of the data table's (a
    /// crash between the two swaps), and whose rejects were skipped.
    pub rejects_from: Positions,
    /// Next offset per partition, stamped into the snapshot.
    pub ends_at: Positions,
    pub max_event_us: Option<i64>,
}

/// How a landing ended.
pub(super) enum Landed {
    /// Both tables hold the batch; their new states.
    Committed { table: LoadedTable, quarantine: LoadedTable },
    /// Another worker already landed part of this input; nothing of the
    /// data was committed and the claimed keys are handed back.
    Zombie { keys: Vec<String> },
}

/// Commits `batch` on top of `table` and `quarantine`.
pub(super) async fn land(
    target: Arc<Target>,
    table: LoadedTable,
    mut quarantine: LoadedTable,
    batch: Sealed,
) -> Result<Landed, IngestError> {
    let label = target.schema.table.to_string();
    if !batch.rejects.is_empty() {
        let at = target.clock.now().timestamp_micros();
        let q = quarantine_batch(&target.schema.quarantine_arrow, &batch.rejects, "kafka", at)?;
        let stamp = stamp_from(&target.pipeline, &batch.rejects_from, &batch.ends_at);
        match write_and_commit(&target.lake, quarantine, &[q], target.target_file_size, stamp).await? {
            Outcome::Committed(t) => quarantine = t,
            Outcome::Zombie(_) => return Ok(Landed::Zombie { keys: batch.keys }),
        }
        for r in &batch.rejects {
            metrics::counter!(m::RECORDS_QUARANTINED, "table" => label.clone(), "reason" => r.rejection.kind)
                .increment(1);
        }
    }
    let rows = rows_to_batch(&target.schema.arrow, &batch.rows)?;
    let stamp = stamp_from(&target.pipeline, &batch.started_at, &batch.ends_at);
    let table = match write_and_commit(&target.lake, table, &[rows], target.target_file_size, stamp).await? {
        Outcome::Committed(t) => t,
        Outcome::Zombie(_) => return Ok(Landed::Zombie { keys: batch.keys }),
    };
    metrics::counter!(m::RECORDS_WRITTEN, "table" => label.clone()).increment(batch.rows.len() as u64);
    if let Some(t) = batch.max_event_us {
        #[allow(clippy::cast_precision_loss)]
        let lag = (target.clock.now().timestamp_micros() - t) as f64 / 1e6;
        metrics::gauge!(m::FRESHNESS, "table" => label).set(lag);
    }
    Ok(Landed::Committed { table, quarantine })
}

/// The zombie rule for a commit of input read from `from` up to `ends_at`.
fn stamp_from<'a>(
    pipeline: &'a str,
    from: &'a Positions,
    ends_at: &'a Positions,
) -> impl FnMut(&LoadedTable) -> tributary_table::Result<Option<PipelineStamp>> + 'a {
    move |b| stamp_unless_zombie(b, pipeline, from, ends_at, 0)
}
