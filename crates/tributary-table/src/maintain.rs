//! Table maintenance on the fenced commit path: compaction and snapshot
//! expiry, safe beside live ingest.
//!
//! A table that ingests continuously gains a snapshot, a manifest and small
//! data files with every commit. Appends merge their manifests as they go
//! (`snapshot`), and the metadata log keeps the last 100 metadata files
//! (`commit::swap` deletes the older ones). What is left is done here:
//! - **compaction** (`compact`) bin-packs small files per partition into
//!   files of the target size, as a rewrite commit: the rows are unchanged,
//!   files appended meanwhile are kept, and it is refused if a file it
//!   replaces is no longer live;
//! - **snapshot expiry** (`expire`) removes snapshots beyond the retention
//!   (by age, keeping a minimum count), then the manifest lists, manifests
//!   and replaced data files only they referenced. It first adds a snapshot
//!   carrying every pipeline's positions, so recovery never walks into the
//!   removed history.
//!
//! Every change is built from an explicit base and published by the same
//! compare-and-swap as ingest commits; on a lost race it is planned again
//! from the new state, so ingest is never blocked and never loses a commit.

mod compact;
mod expire;

use std::time::Duration;

pub use compact::{Compacted, Compaction, compact};
pub use expire::{Expired, Retention, expire_snapshots};

/// Attempts at a maintenance commit while ingest keeps committing.
const MAX_ATTEMPTS: u32 = 20;

/// The wait before attempt `n` (1-based) of a commit that lost a race.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(10u64 << n.min(6))
}
