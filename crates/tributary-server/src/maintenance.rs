//! Scheduled table maintenance in `serve`: every configured table, every
//! job output (with `[maintenance]`'s settings), their quarantine tables
//! and the job run history are compacted and their snapshots expired, one
//! table at a time, each at its `[maintenance] interval`; orphan files are
//! swept once an hour (it reads every manifest of the table).
//!
//! One table at a time bounds the work to one task's CPU and to what one
//! compaction holds (it streams rows; see `tributary_table::maintain`).
//! Maintenance commits race ingest commits on the same compare-and-swap;
//! either side that loses re-plans from the new state, so ingest never waits
//! for maintenance. A failed run is logged and counted, and the next run
//! tries again. On shutdown a run in progress is dropped: what it wrote and
//! did not publish is an orphan, and the table is as it was.

use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::TableName;
use tributary_core::config::{MaintenancePolicy, ValidConfig};
use tributary_core::metrics as m;
use tributary_table::Lake;
use tributary_table::maintain::{Report, maintain_table};

/// Starts the schedule on `tasks`, if any table has maintenance enabled.
pub fn spawn(lake: &Lake, config: &ValidConfig, shutdown: &CancellationToken, tasks: &TaskTracker) {
    // Job outputs and the run history are written all day too: they get
    // the `[maintenance]` defaults.
    let defaults = &config.maintenance_defaults;
    let derived = config
        .jobs
        .iter()
        .flat_map(|j| [(j.output.clone(), defaults.clone()), (j.quarantine(), defaults.for_quarantine())]);
    let runs = TableName::parse(tributary_transform::schedule::JOB_RUNS_TABLE).ok();
    let tables: Vec<(TableName, MaintenancePolicy)> = config
        .tables
        .iter()
        .zip(&config.maintenance)
        .flat_map(|(t, p)| [(t.name.clone(), p.clone()), (t.name.quarantine(), p.for_quarantine())])
        .chain(derived)
        .chain(runs.filter(|_| !config.jobs.is_empty()).map(|t| (t, defaults.clone())))
        .filter(|(_, p)| p.enabled)
        .collect();
    if tables.is_empty() {
        return;
    }
    let (lake, shutdown) = (lake.clone(), shutdown.clone());
    tasks.spawn(async move {
        // The first run waits one interval: start-up is busy enough.
        let mut due: Vec<Instant> = tables.iter().map(|(_, p)| Instant::now() + p.interval).collect();
        let mut swept: Vec<Option<Instant>> = vec![None; tables.len()];
        loop {
            let Some((next, at)) = due.iter().enumerate().min_by_key(|(_, at)| **at).map(|(i, at)| (i, *at)) else {
                return;
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = sleep_until(at) => {}
            }
            let (name, policy) = &tables[next];
            let sweep = swept[next].is_none_or(|at| at.elapsed() >= ORPHAN_SWEEP_EVERY);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = run(&lake, name, policy, sweep) => {}
            }
            if sweep {
                swept[next] = Some(Instant::now());
            }
            due[next] = Instant::now() + policy.interval;
        }
    });
}

/// How often a table's orphan files are swept.
const ORPHAN_SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Maintains one table and reports it in the log and the metrics.
async fn run(lake: &Lake, name: &TableName, policy: &MaintenancePolicy, orphans: bool) {
    let label = name.to_string();
    let now_ms = chrono::Utc::now().timestamp_millis();
    match maintain_table(lake, name, policy, orphans, false, now_ms).await {
        Ok(report) => record(&label, &report),
        // A table that does not exist yet has nothing to maintain.
        Err(tributary_table::TableError::NotFound(_)) => {}
        Err(e) => {
            metrics::counter!(m::MAINTENANCE_ERRORS, "table" => label.clone()).increment(1);
            tracing::warn!(table = %label, error = %e, "maintenance failed; the next run tries again");
        }
    }
}

fn record(label: &str, r: &Report) {
    let table = label.to_owned();
    #[allow(clippy::cast_precision_loss)]
    {
        metrics::gauge!(m::TABLE_DATA_FILES, "table" => table.clone()).set(r.after.data_files as f64);
        let avg = if r.after.data_files == 0 { 0.0 } else { r.after.data_bytes as f64 / r.after.data_files as f64 };
        metrics::gauge!(m::TABLE_DATA_FILE_AVG_BYTES, "table" => table.clone()).set(avg);
        metrics::gauge!(m::TABLE_SNAPSHOTS, "table" => table.clone()).set(r.after.snapshots as f64);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or(Duration::ZERO);
        metrics::gauge!(m::MAINTENANCE_LAST_RUN, "table" => table.clone()).set(now.as_secs_f64());
    }
    metrics::gauge!(m::MAINTENANCE_DURATION, "table" => table.clone()).set(r.took.as_secs_f64());
    metrics::counter!(m::MAINTENANCE_FILES_COMPACTED, "table" => table.clone())
        .increment(r.compacted.files_rewritten as u64);
    metrics::counter!(m::MAINTENANCE_SNAPSHOTS_EXPIRED, "table" => table.clone()).increment(r.expired.snapshots as u64);
    metrics::counter!(m::MAINTENANCE_ORPHANS, "table" => table.clone()).increment(r.orphans.files as u64);
    metrics::counter!(m::MAINTENANCE_BYTES_RECLAIMED, "table" => table)
        .increment(r.expired.bytes_deleted + r.orphans.bytes);
    if r.compacted.files_rewritten > 0 || r.expired.snapshots > 0 || r.orphans.files > 0 {
        tracing::info!(
            table = label,
            compacted = r.compacted.files_rewritten,
            written = r.compacted.files_written,
            expired = r.expired.snapshots,
            files_deleted = r.expired.files_deleted,
            bytes_deleted = r.expired.bytes_deleted,
            orphans = r.orphans.files,
            data_files = r.after.data_files,
            snapshots = r.after.snapshots,
            took_ms = r.took.as_millis(),
            "maintained"
        );
    }
}
