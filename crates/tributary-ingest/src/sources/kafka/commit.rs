//! Landing one sealed Kafka batch: rejects to the quarantine table, then rows
//! to the data table, both stamped with the batch's positions.
//!
//! With a dedup key, the data commit is checked like the HTTP committer's:
//! the shared index first learns what other workers and sources committed
//! (their keys make our rows with the same keys duplicates), and the commit
//! is pinned to the table state it checked; if anyone commits first, the
//! check is redone from the new state. So two workers never both land one key.
//!
//! This runs as its own task so that the pipeline keeps reading the next
//! batch while this one is encoded to Parquet and committed: on two cores
//! that overlap is most of the difference between stalling on every commit
//! and not. The pipeline keeps at most one batch in flight and waits for it
//! before sealing the next, so commits stay in offset order and each one
//! builds on the table state the previous one produced.

use std::sync::Arc;

use tributary_core::{Clock, Positions};
use tributary_table::{Lake, LoadedTable, Outcome, PipelineStamp, stamp_unless_zombie};

use crate::columns::rows_to_batch;
use crate::dedup::{TableDedup, cell_key};
use crate::error::IngestError;
use crate::outcomes::Outcomes;
use crate::prepare::{IngestSchema, Reject, quarantine_batch};
use crate::sink::{MAX_PINNED_ATTEMPTS, kept_changing, write_and_commit};
use crate::validate::Cell;

/// What every landing of one pipeline shares.
pub(super) struct Target {
    pub lake: Lake,
    pub schema: Arc<IngestSchema>,
    pub pipeline: String,
    pub clock: Arc<dyn Clock>,
    pub target_file_size: usize,
    /// The table's shared dedup index, if it has a key.
    pub dedup: Option<TableDedup>,
    pub outcomes: Outcomes,
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
    if !batch.rejects.is_empty() {
        let at = target.clock.now().timestamp_micros();
        let q = quarantine_batch(&target.schema.quarantine_arrow, &batch.rejects, "kafka", at)?;
        let stamp = stamp_from(&target.pipeline, &batch.rejects_from, &batch.ends_at);
        match write_and_commit(&target.lake, quarantine, &[q], target.target_file_size, stamp).await? {
            Outcome::Committed(t) => quarantine = t,
            Outcome::Zombie(_) => return Ok(Landed::Zombie { keys: batch.keys }),
        }
        target.outcomes.quarantined(&batch.rejects);
    }
    let (table, written) = match land_rows(&target, table, &batch).await? {
        Some(landed) => landed,
        None => return Ok(Landed::Zombie { keys: batch.keys }),
    };
    target.outcomes.written(written);
    target.outcomes.fresh(batch.max_event_us, target.clock.now().timestamp_micros());
    Ok(Landed::Committed { table, quarantine })
}

/// Commits the batch's rows; the new table state and the rows written, or
/// `None` if the batch is a zombie.
async fn land_rows(
    target: &Target,
    table: LoadedTable,
    batch: &Sealed,
) -> Result<Option<(LoadedTable, usize)>, IngestError> {
    let (Some(index), Some((col, _))) = (&target.dedup, target.schema.dedup) else {
        let rows = rows_to_batch(&target.schema.arrow, &batch.rows)?;
        let stamp = stamp_from(&target.pipeline, &batch.started_at, &batch.ends_at);
        return Ok(match write_and_commit(&target.lake, table, &[rows], target.target_file_size, stamp).await? {
            Outcome::Committed(t) => Some((t, batch.rows.len())),
            Outcome::Zombie(_) => None,
        });
    };
    let mut base = table;
    for _ in 0..MAX_PINNED_ATTEMPTS {
        let theirs = index.refresh(&target.lake, &base).await?;
        // Only rows with a claimed key can clash: no key is built per row
        // unless one of the claimed keys was committed by someone else.
        let rows = if batch.keys.iter().any(|k| theirs.contains(k)) {
            let keep: Vec<Vec<Cell>> =
                batch.rows.iter().filter(|r| cell_key(&r[col]).is_none_or(|k| !theirs.contains(&k))).cloned().collect();
            rows_to_batch(&target.schema.arrow, &keep)?
        } else {
            rows_to_batch(&target.schema.arrow, &batch.rows)?
        };
        let written = rows.num_rows();
        let dropped = batch.rows.len() - written;
        let (pinned, before) = (base.location.clone(), base.metadata.last_sequence_number());
        let mut zombie = stamp_from(&target.pipeline, &batch.started_at, &batch.ends_at);
        let stamp = |b: &LoadedTable| if b.location == pinned { zombie(b) } else { Ok(None) };
        match write_and_commit(&target.lake, base, &[rows], target.target_file_size, stamp).await? {
            Outcome::Committed(t) => {
                index.committed(before, t.metadata.last_sequence_number());
                target.outcomes.deduplicated(dropped);
                return Ok(Some((t, written)));
            }
            // Another writer committed since we checked: a zombie if it
            // took our input, otherwise check the keys again from there.
            Outcome::Zombie(fresh) => {
                if stamp_unless_zombie(&fresh, &target.pipeline, &batch.started_at, &batch.ends_at, 0)?.is_none() {
                    return Ok(None);
                }
                base = fresh;
            }
        }
    }
    Err(kept_changing(&target.schema.table))
}

/// The zombie rule for a commit of input read from `from` up to `ends_at`.
fn stamp_from<'a>(
    pipeline: &'a str,
    from: &'a Positions,
    ends_at: &'a Positions,
) -> impl FnMut(&LoadedTable) -> tributary_table::Result<Option<PipelineStamp>> + 'a {
    move |b| stamp_unless_zombie(b, pipeline, from, ends_at, 0)
}
