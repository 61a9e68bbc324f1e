//! Where each job stands, read from the lake: what `GET /v1/jobs` and
//! `tributary jobs` show.
//!
//! The state is the tables' own (the input's newest snapshot, the output's
//! recorded input position and watermark), so it is the same whichever
//! process asks and survives restarts. The scheduler adds what only it
//! knows: a run in progress, the last error and the failures in a row.

use serde::Serialize;
use tributary_core::config::{JobDef, JobKind, Trigger};
use tributary_table::{Lake, last_pipeline_state};

use crate::error::Result;
use crate::run::{position_key, watermark_of};

/// One job's state.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The job.
    pub name: String,
    /// `cleanse`, `window`, `sql` or `enrich`.
    pub kind: &'static str,
    /// The table it reads incrementally.
    pub input: String,
    /// The table it writes.
    pub output: String,
    /// `on_commit` or `every <duration>`.
    pub trigger: String,
    /// Jobs that run before it.
    pub depends_on: Vec<String>,
    /// Sequence number of the input's newest snapshot (0: no commit yet).
    pub input_sequence: i64,
    /// Sequence number the output holds the input up to.
    pub processed_sequence: i64,
    /// Commit time of the input's newest snapshot minus that of the one
    /// processed, in seconds.
    pub lag_seconds: f64,
    /// The window watermark, RFC 3339.
    pub watermark: Option<String>,
    /// The output's current snapshot.
    pub output_snapshot: Option<i64>,
    /// Rows in the output.
    pub output_rows: u64,
    /// `running`, `failing` or `idle` (set by the scheduler; `idle` here).
    pub state: &'static str,
    /// The last error of a failing job.
    pub last_error: Option<String>,
    /// Failed runs in a row.
    pub failures: u32,
}

/// The kind's name.
pub fn kind_name(job: &JobDef) -> &'static str {
    match job.kind {
        JobKind::Cleanse { .. } => "cleanse",
        JobKind::Window { .. } => "window",
        JobKind::Sql { .. } => "sql",
        JobKind::Enrich { .. } => "enrich",
    }
}

/// The state of `job` as the lake records it.
pub async fn status(lake: &Lake, job: &JobDef) -> Result<JobStatus> {
    let input = lake.try_load(&job.input).await?;
    let output = lake.try_load(&job.output).await?;
    let newest = input.as_ref().and_then(|t| t.metadata.current_snapshot().cloned());
    let state = match &output {
        Some(o) => last_pipeline_state(o, &job.pipeline())?,
        None => None,
    };
    let processed =
        state.as_ref().and_then(|s| s.positions.get(&position_key(job))).map_or(0, |p| i64::try_from(p).unwrap_or(0));
    let input_sequence = newest.as_ref().map_or(0, |s| s.sequence_number());
    // The processed snapshot's commit time: the newest snapshot of the
    // input's history at or below the processed sequence number.
    let processed_ms = input.as_ref().and_then(|t| {
        let mut s = t.metadata.current_snapshot().cloned();
        while let Some(snap) = s {
            if snap.sequence_number() <= processed {
                return Some(snap.timestamp_ms());
            }
            s = snap.parent_snapshot_id().and_then(|p| t.metadata.snapshot_by_id(p).cloned());
        }
        None
    });
    let lag_ms = match (&newest, processed_ms) {
        (Some(n), _) if n.sequence_number() <= processed => 0,
        (Some(n), Some(p)) => n.timestamp_ms() - p,
        // Nothing processed yet: since the input's first commit.
        (Some(n), None) => n.timestamp_ms() - first_commit_ms(input.as_ref()).unwrap_or(n.timestamp_ms()),
        (None, _) => 0,
    };
    let watermark = state
        .as_ref()
        .and_then(|s| watermark_of(&s.positions))
        .and_then(chrono::DateTime::from_timestamp_micros)
        .map(|d| d.to_rfc3339());
    #[allow(clippy::cast_precision_loss)]
    let lag_seconds = lag_ms.max(0) as f64 / 1e3;
    Ok(JobStatus {
        name: job.name.clone(),
        kind: kind_name(job),
        input: job.input.to_string(),
        output: job.output.to_string(),
        trigger: match job.trigger {
            Trigger::OnCommit => "on_commit".to_owned(),
            Trigger::Every(d) => format!("every {}s", d.as_secs_f64()),
        },
        depends_on: job.depends_on.clone(),
        input_sequence,
        processed_sequence: processed,
        lag_seconds,
        watermark,
        output_snapshot: output.as_ref().and_then(tributary_table::LoadedTable::current_snapshot_id),
        output_rows: output.as_ref().map_or(0, tributary_table::LoadedTable::total_records),
        state: "idle",
        last_error: None,
        failures: 0,
    })
}

fn first_commit_ms(table: Option<&tributary_table::LoadedTable>) -> Option<i64> {
    table?.metadata.snapshots().map(|s| s.timestamp_ms()).min()
}
