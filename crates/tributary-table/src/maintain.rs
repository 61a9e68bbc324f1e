//! Table maintenance on the fenced commit path: compaction and snapshot
//! expiry, safe beside live ingest.
//!
//! A table that ingests continuously gains a snapshot, a manifest and small
//! data files with every commit. Appends merge their manifests as they go
//! (`snapshot`), and the metadata log keeps the last 10 metadata files
//! (`commit::swap` deletes the older ones). What is left is done here:
//! - **compaction** (`compact`) bin-packs small files per partition into
//!   files of the target size, optionally sorted by configured columns, as
//!   a rewrite commit: the rows are unchanged,
//!   files appended meanwhile are kept, and it is refused if a file it
//!   replaces is no longer live;
//! - **snapshot expiry** (`expire`) removes snapshots beyond the retention
//!   (by age, keeping a minimum count), then the manifest lists, manifests
//!   and replaced data files only they referenced. It first adds a snapshot
//!   carrying every pipeline's positions, so recovery never walks into the
//!   removed history;
//! - **orphan cleanup** (`orphans`) deletes files nothing references and
//!   older than an age guard: what crashed commits left behind.
//!
//! Every change is built from an explicit base and published by the same
//! compare-and-swap as ingest commits, holding this process's commit gate
//! for the table ([`Lake::gate`]) from reading its base to its swap; against
//! other processes, a lost race is planned again from the new state.

mod compact;
mod expire;
mod orphans;

use std::time::{Duration, Instant};

pub use compact::{Compacted, Compaction, compact};
pub use expire::{Expired, Retention, expire_snapshots};
pub use orphans::{Orphans, remove_orphans};
use tributary_core::TableName;
use tributary_core::config::MaintenancePolicy;

use crate::error::Result;
use crate::lake::{Lake, LoadedTable};

/// What maintaining one table did (or, dry, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The table.
    pub table: TableName,
    /// Compaction's part.
    pub compacted: Compacted,
    /// Expiry's part.
    pub expired: Expired,
    /// Orphan cleanup's part, if it ran.
    pub orphans: Orphans,
    /// The table afterwards.
    pub after: TableStats,
    /// How long it took.
    pub took: Duration,
}

/// Size figures of a table's current snapshot, from its summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Live data files.
    pub data_files: u64,
    /// Their bytes.
    pub data_bytes: u64,
    /// Snapshots in the metadata.
    pub snapshots: usize,
}

impl TableStats {
    /// The figures of `table`.
    pub fn of(table: &LoadedTable) -> Self {
        let total = |k: &str| {
            table.metadata.current_snapshot().and_then(|s| s.summary().additional_properties.get(k)?.parse().ok())
        };
        Self {
            data_files: total("total-data-files").unwrap_or(0),
            data_bytes: total("total-files-size").unwrap_or(0),
            snapshots: table.metadata.snapshots().count(),
        }
    }
}

/// Compacts `name`, then expires its snapshots, then (with `orphans`)
/// removes its orphan files, by `policy`; with `dry_run`, only plans them and
/// reports what they would do.
pub async fn maintain_table(
    lake: &Lake,
    name: &TableName,
    policy: &MaintenancePolicy,
    orphans: bool,
    dry_run: bool,
    now_ms: i64,
) -> Result<Report> {
    let started = Instant::now();
    let target_file_size = u64::try_from(policy.target_file_size_bytes).unwrap_or(u64::MAX);
    let compaction =
        Compaction { target_file_size, min_files: policy.compact_min_files, sort_by: policy.sort_by.clone() };
    let compacted = compact(lake, name, &compaction, dry_run).await?;
    let retention = Retention { max_age: policy.snapshot_max_age, min_snapshots: policy.min_snapshots };
    let expired = expire_snapshots(lake, name, retention, now_ms, dry_run).await?;
    let orphans =
        if orphans { remove_orphans(lake, name, policy.orphan_min_age, dry_run).await? } else { Orphans::default() };
    let after = TableStats::of(&lake.load(name).await?);
    Ok(Report { table: name.clone(), compacted, expired, orphans, after, took: started.elapsed() })
}

/// Attempts at a maintenance or rollback commit while ingest keeps committing.
pub(crate) const MAX_ATTEMPTS: u32 = 20;

/// The wait before attempt `n` (1-based) of a commit that lost a race.
pub(crate) fn backoff(n: u32) -> Duration {
    Duration::from_millis(10u64 << n.min(6))
}
