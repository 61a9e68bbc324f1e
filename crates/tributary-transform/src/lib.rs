//! Zone jobs: cleansed and curated tables kept up to date from the tables
//! they read, incrementally and exactly once.
//!
//! A job's state lives in its output table, like an ingest pipeline's: the
//! input sequence number it read to and, for windows, the watermark, in the
//! summary of the snapshot that holds the rows computed from them
//! ([`run`]). So the output is always exactly what the recorded input
//! produced, a crash at any point is undone by running again, and several
//! `serve` processes may run the same job: one wins each commit, the others
//! run again from it. [`schedule`] runs the jobs of a config in dependency
//! order inside `serve`; [`backfill`] recomputes a range of days.

mod append;
pub mod backfill;
mod check;
mod cleanse;
pub mod error;
mod json;
mod net;
mod output;
mod plan;
pub mod run;
pub mod schedule;
mod session;
pub mod status;
mod units;
mod window;

pub use check::check;
pub use error::TransformError;
pub use run::{RunOptions, RunReport, Scope, run_once};
