//! The exactly-once commit path: every change to a table — an ingest append,
//! a compaction's rewrite, a delete or overwrite, a rollback, snapshot
//! expiry — is built from an explicit base and published by one
//! compare-and-swap of the catalog pointer (`publish_snapshot`, `swap`).
//! The append path:
//!
//! ```text
//!  writer                              storage                 catalog row
//!  ──────                              ───────                 ───────────
//!  base = load()  ─────────────────────────────────────────────► metadata_location = M0
//!  write data files  ─────────────────► data/*.parquet  (orphans until referenced)
//!  write manifests + manifest list ───► metadata/*.avro (carried manifests merged, `snapshot`)
//!     (M0's list or manifests gone, and M0 no longer current: another
//!      writer expired them → CommitConflict)
//!  fsync everything written so far, and its directories
//!  build metadata M1 from M0:
//!     snapshot.parent  = M0.current
//!     summary          = tributary.pipeline / .positions / .epoch
//!  write M1  ─────────────────────────► metadata/000NN-uuid.metadata.json
//!  CAS(expected = M0, new = M1) ───────────────────────────────► won  → M1 is current, data visible;
//!                                                                       old metadata files beyond the log deleted
//!                                                              ├─► lost → CommitConflict (M1 and the
//!                                                              │          manifests + list deleted)
//!                                                              └─► error → read back: our snapshot in
//!                                                                  the table? committed : the error
//!                                                                  (unreadable → CommitUnknown)
//!  on CommitConflict (commit_with_retry):
//!     fresh = load()
//!     if fresh's positions for our partitions moved past where the batch
//!        began, or a newer epoch committed → ZOMBIE: drop batch, re-seek
//!     else rebuild on fresh (same data files) and try again, with backoff
//! ```
//!
//! Invariants: (1) nothing is visible before the CAS succeeds, so a crash at
//! any earlier point leaves only orphan files; (2) a commit never succeeds on
//! a base other than the one it names, so a stale writer cannot silently
//! rebase (iceberg-rust's `Transaction::commit` would); (3) positions travel
//! in the same snapshot as the rows they produced.

use std::collections::HashSet;
use std::time::Duration;

use iceberg::spec::{DataFile, MetadataLog, Operation, TableMetadataBuildResult};
use tributary_core::Positions;
use tributary_core::positions::{SUMMARY_EPOCH, SUMMARY_PIPELINE, SUMMARY_POSITIONS};

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable, next_version};
use crate::snapshot;

/// What a commit records about the pipeline that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStamp {
    /// Stable pipeline id, e.g. `http:raw.transactions`.
    pub pipeline: String,
    /// Next position per source partition after this commit.
    pub positions: Positions,
    /// Fencing epoch of the writer; 0 means the pipeline is not fenced.
    pub epoch: u64,
    /// Further summary properties that must land with these positions, e.g.
    /// the HTTP requests this snapshot answers (`tributary.requests`).
    pub extra: Vec<(String, String)>,
}

impl PipelineStamp {
    /// A stamp carrying positions only.
    pub fn new(pipeline: impl Into<String>, positions: Positions, epoch: u64) -> Self {
        Self { pipeline: pipeline.into(), positions, epoch, extra: Vec::new() }
    }
}

/// How a commit attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The snapshot is published; this is the new table state.
    Committed(LoadedTable),
    /// Another writer already committed this input: the batch was dropped.
    /// Holds the fresh table state to re-seek from.
    Zombie(LoadedTable),
}

/// Publishes one append snapshot of `data_files` on top of `base`.
///
/// Fails with [`TableError::CommitConflict`] if `base` is no longer current.
pub async fn commit(
    lake: &Lake,
    base: &LoadedTable,
    data_files: &[DataFile],
    stamp: &PipelineStamp,
) -> Result<LoadedTable> {
    publish(lake, base, Change::Append { files: data_files, stamp }).await
}

/// A change to a table, by kind. Every kind is built from an explicit base
/// and published by the same compare-and-swap of the catalog pointer; each
/// has its own validation rule.
#[derive(Debug, Clone, Copy)]
pub enum Change<'a> {
    /// Ingest: `files` join the table, in the same snapshot as the positions
    /// of `stamp`. Rule: the caller's zombie rule, on every base it tries.
    Append {
        /// The new data files.
        files: &'a [DataFile],
        /// The pipeline's positions after them.
        stamp: &'a PipelineStamp,
    },
    /// Compaction: `added` replaces the live files whose paths are in
    /// `removed`, holding the same rows. Rule: every removed file is still
    /// live in the base, else [`TableError::ChangeConflict`]; files other
    /// writers appended meanwhile are kept.
    Rewrite {
        /// Paths of the files replaced.
        removed: &'a HashSet<String>,
        /// The files that replace them.
        added: &'a [DataFile],
    },
    /// Delete files, or overwrite them (replace partitions, overwrite by a
    /// filter: the caller picks the files from the base it planned on): the
    /// live files whose paths are in `removed` leave the table and `added`
    /// join it, with other rows. Rule: every removed file is still live in
    /// the base, else [`TableError::ChangeConflict`]. A caller that must
    /// also refuse files added meanwhile to what it replaces pins its base
    /// (publishes only on the base it planned on, see `commit_with_retry`).
    Overwrite {
        /// Paths of the files removed.
        removed: &'a HashSet<String>,
        /// The files added.
        added: &'a [DataFile],
        /// The positions of the pipeline that computed `added`, when they
        /// must land with it (a zone job's upstream sequence numbers).
        stamp: Option<&'a PipelineStamp>,
    },
    /// Rollback (set the current state to an older snapshot's, as a new
    /// snapshot): the table holds snapshot `to`'s files again, and every
    /// pipeline's state as of `to` (`rollback`). Rule: `to` is in the history
    /// of the base's current snapshot, else [`TableError::UnknownSnapshot`].
    Rollback {
        /// The snapshot to go back to.
        to: i64,
    },
}

/// Publishes `change` on top of `base`.
///
/// Fails with [`TableError::CommitConflict`] if `base` is no longer current.
pub async fn publish(lake: &Lake, base: &LoadedTable, change: Change<'_>) -> Result<LoadedTable> {
    let empty = HashSet::new();
    let rollback;
    let (added, removed, operation, summary) = match change {
        Change::Append { files, stamp } => (files, &empty, Operation::Append, stamp_summary(stamp)),
        Change::Rewrite { removed, added } => (added, removed, Operation::Replace, Vec::new()),
        Change::Overwrite { removed, added, stamp } => {
            let operation = match (added.is_empty(), removed.is_empty()) {
                (true, false) => Operation::Delete,
                (false, true) => Operation::Append,
                _ => Operation::Overwrite,
            };
            (added, removed, operation, stamp.map(stamp_summary).unwrap_or_default())
        }
        Change::Rollback { to } => {
            rollback = crate::rollback::plan(lake, base, to).await?;
            (&rollback.restored[..], &rollback.removed, Operation::Overwrite, rollback.summary.clone())
        }
    };
    publish_snapshot(lake, base, SnapshotChange { added, removed, operation, summary, expire: &[] }).await
}

/// `e`, an error building on `base`, or a [`TableError::CommitConflict`]
/// if `base` is no longer current. A stale base's manifest list and
/// manifests may be gone: another writer's snapshot expiry deleted the
/// snapshots that only it still pointed at. That is a lost race, retried
/// from the current table like any other, not damage that stops a source.
async fn stale_or(lake: &Lake, base: &LoadedTable, e: TableError) -> TableError {
    match lake.store().load(&base.name).await {
        Ok(Some(now)) if now != base.location => {
            tracing::debug!(table = %base.name, error = %e, "base went stale while the commit read it");
            TableError::CommitConflict { table: base.name.clone(), expected: base.location.clone() }
        }
        _ => e,
    }
}

/// What [`publish_snapshot`] adds: a snapshot of `operation` adding `added`
/// and removing `removed`, with `summary`; `expire` lists older snapshots
/// removed in the same swap (snapshot expiry's).
pub(crate) struct SnapshotChange<'a> {
    pub added: &'a [DataFile],
    pub removed: &'a HashSet<String>,
    pub operation: Operation,
    pub summary: Vec<(String, String)>,
    pub expire: &'a [i64],
}

/// Builds the snapshot on `base`, makes its files durable and swaps it in:
/// the steps every commit kind shares.
pub(crate) async fn publish_snapshot(lake: &Lake, base: &LoadedTable, s: SnapshotChange<'_>) -> Result<LoadedTable> {
    let started = std::time::Instant::now();
    let next = match snapshot::build(lake, base, s.added, s.removed, s.operation.clone()).await {
        Ok(next) => next,
        Err(e) => return Err(stale_or(lake, base, e).await),
    };
    let built_at = started.elapsed();
    crate::durable::sync(next.written.clone()).await?;
    let synced_at = started.elapsed();
    let (id, own) = (next.id, next.own.clone());
    let built = next
        .into_metadata(base, s.summary)?
        .remove_snapshots(s.expire)
        .build()
        .map_err(TableError::iceberg("building snapshot metadata"))?;
    let metadata_at = started.elapsed();
    let swapped = swap(lake, base, built, Some(id), &own).await;
    // Where a commit's time goes, for a slow one: manifests, fsync, the
    // metadata (it grows with the snapshots kept), the swap.
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    tracing::debug!(
        table = %base.name, operation = ?s.operation, ok = swapped.is_ok(),
        manifests_ms = ms(built_at), fsync_ms = ms(synced_at - built_at),
        metadata_ms = ms(metadata_at - synced_at), swap_ms = ms(started.elapsed() - metadata_at),
        snapshots = base.metadata.snapshots().len(),
        "published"
    );
    swapped
}

/// The summary properties of a pipeline's commit.
fn stamp_summary(s: &PipelineStamp) -> Vec<(String, String)> {
    let mut props = vec![
        (SUMMARY_PIPELINE.to_owned(), s.pipeline.clone()),
        (SUMMARY_POSITIONS.to_owned(), s.positions.to_json()),
        (SUMMARY_EPOCH.to_owned(), s.epoch.to_string()),
    ];
    props.extend(s.extra.iter().cloned());
    props
}

/// Writes `built` as the next metadata file and swaps the catalog pointer
/// from `base` to it. After
/// the swap, the metadata files that fell off the metadata log are deleted;
/// after a refused swap, the metadata file and `own` (the manifests and
/// list the attempt wrote), which nothing references: a writer that keeps
/// losing races to maintenance must not leave megabytes behind each time.
/// `snapshot_id` is the snapshot the change adds, which tells whether an
/// interrupted swap landed.
async fn swap(
    lake: &Lake,
    base: &LoadedTable,
    built: TableMetadataBuildResult,
    snapshot_id: Option<i64>,
    own: &[String],
) -> Result<LoadedTable> {
    let new_meta = built.metadata;
    let path = lake.write_metadata(base.metadata.location(), next_version(&base.location), &new_meta).await?;
    fail::fail_point!("table::before_catalog_swap", |_| Err(TableError::Injected("table::before_catalog_swap")));
    stall("table::stall_before_catalog_swap").await;
    let unknown = |reason: String| TableError::CommitUnknown {
        table: base.name.clone(),
        snapshot_id: snapshot_id.unwrap_or(0),
        reason,
    };
    let swapped = match lake.store().swap(&base.name, &base.location, &path).await {
        Ok(swapped) => swapped,
        // The connection may have broken after the database committed: the
        // table itself says whether our change landed.
        Err(e) => match lake.try_load(&base.name).await {
            Ok(Some(now))
                if snapshot_id.map_or(now.location == path, |id| now.metadata.snapshot_by_id(id).is_some()) =>
            {
                true
            }
            Ok(_) => return Err(e),
            Err(_) => return Err(unknown(e.to_string())),
        },
    };
    if !swapped {
        for file in own.iter().chain([&path]) {
            if let Err(e) = lake.file_io().delete(file).await {
                tracing::debug!(table = %base.name, %file, error = %e, "cannot delete a refused commit's file; orphan cleanup will");
            }
        }
        return Err(TableError::CommitConflict { table: base.name.clone(), expected: base.location.clone() });
    }
    // The connection broke after the database committed: the caller cannot
    // tell whether the swap happened.
    fail::fail_point!("table::after_catalog_swap", |_| Err(unknown("failpoint table::after_catalog_swap".to_owned())));
    // The process died right after the swap: nothing after it runs.
    fail::fail_point!("table::crash_after_catalog_swap", |_| Err(TableError::Injected(
        "table::crash_after_catalog_swap"
    )));
    delete_expired_metadata(lake, &base.name, &built.expired_metadata_logs).await;
    Ok(LoadedTable { name: base.name.clone(), location: path, metadata: new_meta.into() })
}

/// Deletes metadata files that no longer appear in the metadata log (it
/// keeps the last `write.metadata.previous-versions-max`, 10 for our tables).
/// Best effort: a file left behind is an orphan that orphan cleanup removes.
pub(crate) async fn delete_expired_metadata(lake: &Lake, table: &tributary_core::TableName, expired: &[MetadataLog]) {
    for log in expired {
        if let Err(e) = lake.file_io().delete(&log.metadata_file).await {
            tracing::debug!(%table, file = %log.metadata_file, error = %e, "cannot delete an old metadata file; orphan cleanup will");
        }
    }
}

/// With the `failpoints` feature, `return(MS)` on `name` holds this commit
/// for MS milliseconds without blocking the runtime (a thread sleep would
/// stall every task): a writer that is slow at the worst moment.
async fn stall(name: &str) {
    if let Some(ms) = stall_ms(name) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// The milliseconds failpoint `name` asks to hold for, if it is set.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
fn stall_ms(name: &str) -> Option<u64> {
    fail::fail_point!(name, |ms: Option<String>| ms.and_then(|m| m.parse::<u64>().ok()));
    None
}

/// Commits with the protocol's conflict rule.
///
/// `stamp_for` is asked for the stamp on every attempt, with the base the
/// attempt builds on; it returns `None` when that base proves this batch a
/// zombie. Data files are immutable, so every retry reuses them.
pub async fn commit_with_retry(
    lake: &Lake,
    mut base: LoadedTable,
    data_files: &[DataFile],
    mut stamp_for: impl FnMut(&LoadedTable) -> Result<Option<PipelineStamp>>,
    max_attempts: u32,
) -> Result<(Outcome, u32)> {
    let mut conflicts = 0;
    loop {
        let Some(stamp) = stamp_for(&base)? else {
            return Ok((Outcome::Zombie(base), conflicts));
        };
        let committed = {
            let gate = lake.gate(&base.name);
            let waited = std::time::Instant::now();
            let _turn = gate.lock().await;
            tracing::debug!(table = %base.name, gate_ms = waited.elapsed().as_secs_f64() * 1e3, "commit gate taken");
            commit(lake, &base, data_files, &stamp).await
        };
        match committed {
            Ok(new) => return Ok((Outcome::Committed(new), conflicts)),
            Err(TableError::CommitConflict { .. }) if conflicts + 1 < max_attempts => {
                conflicts += 1;
                tracing::debug!(table = %base.name, conflicts, "commit conflict; reloading base");
                let backoff = Duration::from_millis(5u64 << conflicts.min(7));
                tokio::time::sleep(backoff).await;
                base = lake.load(&base.name).await?;
            }
            Err(e) => return Err(e),
        }
    }
}
