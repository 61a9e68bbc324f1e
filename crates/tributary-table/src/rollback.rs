//! Rollback: moves a table back to one of its older snapshots, as a new
//! commit on the same fenced path.
//!
//! The rollback's snapshot is the child of the current one (history stays
//! one line, and nothing is lost from time travel), holding the target's
//! files again: the files added since are `DELETED` from it, and files the
//! target had that compaction replaced since come back. Its summary carries
//! every pipeline's state *as of the target* (`tributary.carried`), so
//! recovery stops there, and names the target (`tributary.rollback-to`).
//!
//! What that means for sources:
//! - a replayable source (Kafka) resumes from the target's positions and
//!   reads again what followed. A running one notices on its next landing:
//!   the table stands behind where its batch began, which the zombie rule
//!   treats like a batch another writer overtook (re-seek from the table);
//! - the dedup index forgets the keys of the rows the rollback removed
//!   (`changes::changed_since` reports them), so those rows are not taken for
//!   duplicates when they come again: exactly once, as before;
//! - HTTP requests answered after the target are forgotten by the request
//!   log (its walk goes on from the target), so a client that retries one
//!   with its `Idempotency-Key` has it ingested again; one that does not
//!   retry has lost it, as the operator asked.

use std::collections::HashSet;

use iceberg::spec::DataFile;
use tributary_core::positions::SUMMARY_ROLLBACK_TO;

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};
use crate::maintain::{MAX_ATTEMPTS, backoff};
use crate::recovery::{all_pipeline_states, carried_summary};
use crate::snapshot::live_files;

/// What rolling a table back changes, planned on one base.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Paths of the live files the target did not have.
    pub removed: HashSet<String>,
    /// The target's files that are no longer live.
    pub restored: Vec<DataFile>,
    /// Summary properties: the target and the pipeline states it carries.
    pub summary: Vec<(String, String)>,
}

/// Plans rolling `base` back to snapshot `to`, which must be an older
/// snapshot in the history of its current one.
pub(crate) async fn plan(lake: &Lake, base: &LoadedTable, to: i64) -> Result<Plan> {
    let meta = &base.metadata;
    let refuse = |reason: &str| TableError::UnknownSnapshot {
        table: base.name.clone(),
        snapshot_id: to,
        reason: format!(
            "{reason}; `SELECT snapshot_id, committed_at FROM {}.\"{}$snapshots\"` lists the snapshots it can go to",
            base.name.namespace, base.name.name
        ),
    };
    let Some(current) = meta.current_snapshot() else { return Err(refuse("the table has no snapshots yet")) };
    if current.snapshot_id() == to {
        return Err(refuse("it is the current snapshot already"));
    }
    let mut ancestor = current.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p));
    let target = loop {
        match ancestor {
            Some(s) if s.snapshot_id() == to => break s.clone(),
            Some(s) => ancestor = s.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p)),
            None if meta.snapshot_by_id(to).is_some() => {
                return Err(refuse("it is not in the history of the current snapshot"));
            }
            None => return Err(refuse("no such snapshot (it may have expired)")),
        }
    };
    let now: HashSet<String> =
        live_files(lake, base, current).await?.into_iter().map(|(_, f)| f.file_path().to_owned()).collect();
    let then = live_files(lake, base, &target).await?;
    let then_paths: HashSet<&str> = then.iter().map(|(_, f)| f.file_path()).collect();
    let removed = now.iter().filter(|p| !then_paths.contains(p.as_str())).cloned().collect();
    let spec = meta.default_partition_spec_id();
    let restored: Vec<(i32, DataFile)> = then.into_iter().filter(|(_, f)| !now.contains(f.file_path())).collect();
    if restored.iter().any(|(s, _)| *s != spec) {
        return Err(refuse("the table's partitioning changed since"));
    }
    let restored = restored.into_iter().map(|(_, f)| f).collect();
    let summary = vec![carried_summary(base, Some(to))?, (SUMMARY_ROLLBACK_TO.to_owned(), to.to_string())];
    Ok(Plan { removed, restored, summary })
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    /// The rollback's snapshot.
    pub snapshot_id: i64,
    /// Files removed: added after the target.
    pub files_removed: usize,
    /// Files restored: the target's, replaced by compaction since.
    pub files_restored: usize,
    /// Rows before and after.
    pub rows_before: u64,
    /// Rows after: the target's.
    pub rows_after: u64,
    /// Each pipeline's positions now, as of the target.
    pub pipelines: Vec<(String, tributary_core::Positions)>,
}

/// Rolls `name` back to snapshot `to` as a new commit, holding this
/// process's commit gate for the table; a race lost to another process is
/// planned again on the new state (whose later commits are rolled back too).
pub async fn rollback(lake: &Lake, name: &tributary_core::TableName, to: i64) -> Result<RolledBack> {
    for attempt in 1..=MAX_ATTEMPTS {
        let gate = lake.gate(name);
        let turn = gate.lock().await;
        let base = lake.load(name).await?;
        let published = crate::commit::publish(lake, &base, crate::commit::Change::Rollback { to }).await;
        drop(turn);
        match published {
            Ok(after) => {
                let count = |k: &str| {
                    let summary = after.metadata.current_snapshot().map(|s| &s.summary().additional_properties);
                    summary.and_then(|p| p.get(k)?.parse().ok()).unwrap_or(0)
                };
                let (files_removed, files_restored) = (count("deleted-data-files"), count("added-data-files"));
                let pipelines = all_pipeline_states(&after, after.current_snapshot_id())?
                    .into_iter()
                    .map(|(p, c)| (p, c.positions))
                    .collect();
                let done = RolledBack {
                    snapshot_id: after.current_snapshot_id().unwrap_or_default(),
                    files_removed,
                    files_restored,
                    rows_before: base.total_records(),
                    rows_after: after.total_records(),
                    pipelines,
                };
                tracing::info!(table = %name, to, snapshot_id = done.snapshot_id, removed = files_removed, restored = files_restored, "rolled back");
                return Ok(done);
            }
            Err(TableError::CommitConflict { .. }) if attempt < MAX_ATTEMPTS => {
                tokio::time::sleep(backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
    unreachable!("the last attempt returns")
}
