//! `tributary backfill`: a range of a job's output days computed again
//! from its input, replaced in one commit.
//!
//! A backfill reads the input as it is, so events the incremental runs
//! quarantined as late are counted again. It records no new input
//! position (the next incremental run reads on from where the job stood),
//! and it changes nothing until its single commit: interrupting it leaves
//! the output as it was, and running it again computes the same days.

use tributary_core::config::JobDef;
use tributary_table::Lake;

use crate::error::{Result, TransformError};
pub use crate::run::Scope;
use crate::run::{RunOptions, RunReport};

/// Recomputes `job`'s output days in `[from, to)` (microseconds) in one commit.
pub async fn backfill(lake: &Lake, job: &JobDef, from: i64, to: i64, opts: &RunOptions) -> Result<RunReport> {
    match crate::schedule::run_scope(lake, job, opts, Scope::Backfill { from, to }).await? {
        Some(report) => Ok(report),
        None => Err(TransformError::definition(
            &job.name,
            format!("its input '{}' has no rows yet; there is nothing to backfill", job.input),
        )),
    }
}
