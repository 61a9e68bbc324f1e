//! The job scheduler inside `tributary serve`.
//!
//! Jobs run one at a time, in dependency order, on a runtime of their own:
//! a job's query is CPU work that must not starve the runtime serving
//! ingest requests and commits. A job triggered by commits is polled every
//! second (a run with nothing new to read returns before planning
//! anything); a job with `every` runs at that interval. A failed run is
//! retried with exponential backoff (1 s doubling to 5 min) and leaves the
//! output as it was. Every run that changed the output or failed is
//! appended to `_tributary.job_runs`.
//!
//! Several `serve` processes may schedule the same jobs on one lake: runs
//! race on the output's compare-and-swap, the loser runs again from the
//! winner's state, and the output is what one process alone would produce.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::config::{JobDef, Trigger, ValidConfig};
use tributary_core::metrics as m;
use tributary_query::CpuRuntime;
use tributary_table::Lake;

use crate::error::{Result, TransformError};
use crate::run::{RunOptions, RunReport, Scope, run_once};
use crate::status::{JobStatus, status};

mod runs;

pub use runs::JOB_RUNS_TABLE;

/// How often a commit-triggered job looks for new input.
const POLL: Duration = Duration::from_secs(1);
/// The longest wait between retries of a failing job.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Runs in a row that may lose the output's swap before one counts as failed.
const MAX_RACES: u32 = 8;

/// What only the scheduler knows about a job.
#[derive(Debug, Clone, Default)]
struct Live {
    running: bool,
    last_error: Option<String>,
    failures: u32,
}

/// The running scheduler: the jobs and their live state.
#[derive(Debug, Clone)]
pub struct Scheduler {
    lake: Lake,
    jobs: Arc<Vec<JobDef>>,
    live: Arc<Mutex<HashMap<String, Live>>>,
    _runtime: Option<Arc<CpuRuntime>>,
}

impl Scheduler {
    /// Starts the jobs of `config`, if it has any.
    pub fn spawn(
        lake: &Lake,
        config: &ValidConfig,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> std::io::Result<Option<Self>> {
        if config.jobs.is_empty() {
            return Ok(None);
        }
        let threads = std::thread::available_parallelism().map_or(1, usize::from).min(2);
        let runtime = CpuRuntime::new(threads, "tributary-jobs")?;
        let handle = runtime.handle().cloned().ok_or_else(|| std::io::Error::other("job runtime is gone"))?;
        let scheduler =
            Self { lake: lake.clone(), jobs: Arc::new(config.jobs.clone()), live: Arc::default(), _runtime: None };
        let opts = RunOptions::new(config.commit.target_file_size_bytes);
        tasks.spawn_on(scheduler.clone().run(opts, shutdown.clone()), &handle);
        Ok(Some(Self { _runtime: Some(Arc::new(runtime)), ..scheduler }))
    }

    /// Every job's state, in dependency order.
    pub async fn statuses(&self) -> Result<Vec<JobStatus>> {
        let mut out = Vec::with_capacity(self.jobs.len());
        for job in self.jobs.iter() {
            let mut s = status(&self.lake, job).await?;
            let live = self.live(&job.name);
            s.state = if live.running {
                "running"
            } else if live.failures > 0 {
                "failing"
            } else {
                "idle"
            };
            s.last_error = live.last_error;
            s.failures = live.failures;
            out.push(s);
        }
        Ok(out)
    }

    fn live(&self, job: &str) -> Live {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).get(job).cloned().unwrap_or_default()
    }

    fn update(&self, job: &str, f: impl FnOnce(&mut Live)) {
        f(self.live.lock().unwrap_or_else(PoisonError::into_inner).entry(job.to_owned()).or_default());
    }

    async fn run(self, opts: RunOptions, shutdown: CancellationToken) {
        let mut due: Vec<Instant> = vec![Instant::now(); self.jobs.len()];
        // The input's metadata location when the job last had nothing left
        // to read: while it stays the same, a poll is one catalog lookup.
        let mut read_at: Vec<Option<String>> = vec![None; self.jobs.len()];
        loop {
            for (i, job) in self.jobs.iter().enumerate() {
                if due[i] > Instant::now() {
                    continue;
                }
                let input_at = self.lake.store().load(&job.input).await.ok().flatten();
                if input_at.is_some() && input_at == read_at[i] {
                    due[i] = Instant::now() + interval(job);
                    continue;
                }
                let started = (Instant::now(), chrono::Utc::now());
                self.update(&job.name, |l| l.running = true);
                let result = tokio::select! {
                    () = shutdown.cancelled() => return,
                    r = run_job(&self.lake, job, &opts) => r,
                };
                let took = started.0.elapsed();
                let mut failures = 0;
                self.update(&job.name, |l| {
                    l.running = false;
                    (l.failures, l.last_error) = match &result {
                        Ok(_) => (0, None),
                        Err(e) => (l.failures + 1, Some(e.to_string())),
                    };
                    failures = l.failures;
                });
                // Caught up with what it saw (a run reads to the newest
                // snapshot, or stops early and runs again at once).
                read_at[i] = match &result {
                    Ok(None) => input_at,
                    _ => None,
                };
                // A failure waits 1 s, doubling up to MAX_BACKOFF.
                let wait = if failures == 0 {
                    interval(job)
                } else {
                    Duration::from_secs(1u64 << failures.min(9)).min(MAX_BACKOFF)
                };
                due[i] = Instant::now() + wait;
                self.report(job, &result, took);
                if let Err(e) = runs::record(&self.lake, job, started.1, &result, &opts).await {
                    tracing::warn!(job = %job.name, error = %e, "cannot record the run in {JOB_RUNS_TABLE}");
                }
                if let Ok(s) = status(&self.lake, job).await {
                    metrics::gauge!(m::JOB_LAG, "job" => job.name.clone()).set(s.lag_seconds);
                }
            }
            let next = due.iter().min().copied().unwrap_or_else(|| Instant::now() + POLL);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(next.max(Instant::now() + Duration::from_millis(50))) => {}
            }
        }
    }

    fn report(&self, job: &JobDef, result: &Result<Option<RunReport>>, took: Duration) {
        let name = job.name.clone();
        match result {
            Ok(Some(r)) => {
                metrics::counter!(m::JOB_RUNS, "job" => name.clone(), "outcome" => "ok").increment(1);
                metrics::gauge!(m::JOB_DURATION, "job" => name.clone()).set(took.as_secs_f64());
                metrics::counter!(m::JOB_ROWS, "job" => name.clone(), "direction" => "read").increment(r.rows_read);
                metrics::counter!(m::JOB_ROWS, "job" => name.clone(), "direction" => "written")
                    .increment(r.rows_written);
                metrics::counter!(m::JOB_LATE, "job" => name.clone()).increment(r.late);
                tracing::info!(
                    job = %name, mode = r.mode, input_sequence = r.input_sequence, rows_read = r.rows_read,
                    rows_written = r.rows_written, days = r.days, quarantined = r.quarantined, late = r.late,
                    ms = took.as_millis() as u64, "job ran"
                );
            }
            Ok(None) => {}
            Err(e) => {
                metrics::counter!(m::JOB_RUNS, "job" => name.clone(), "outcome" => "failed").increment(1);
                let failures = self.live(&name).failures;
                tracing::warn!(job = %name, error = %e, failures, "job run failed; the output is as it was, retrying with backoff");
            }
        }
    }
}

/// How often `job` looks for work while it succeeds.
fn interval(job: &JobDef) -> Duration {
    match job.trigger {
        Trigger::OnCommit => POLL,
        Trigger::Every(d) => d,
    }
}

/// One run, run again while it loses the output's swap to another writer.
pub async fn run_job(lake: &Lake, job: &JobDef, opts: &RunOptions) -> Result<Option<RunReport>> {
    run_scope(lake, job, opts, Scope::Incremental).await
}

/// [`run_once`] over `scope`, run again while it loses the output's swap.
pub async fn run_scope(lake: &Lake, job: &JobDef, opts: &RunOptions, scope: Scope) -> Result<Option<RunReport>> {
    let mut races = 0;
    loop {
        match run_once(lake, job, opts, scope).await {
            Err(TransformError::Raced(_)) if races + 1 < MAX_RACES => {
                races += 1;
                tokio::time::sleep(Duration::from_millis(20 << races.min(5))).await;
            }
            other => return other,
        }
    }
}
