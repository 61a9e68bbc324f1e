//! One run of a job, exactly once.
//!
//! A run reads the job's state from its output table alone: the input
//! sequence number the last run read to (`upstream:<input>` in the
//! `job:<name>` pipeline's positions) and, for windows, the watermark (the
//! `watermark` position: it only grows, and expiry carries it along). It
//! pins the input at one snapshot, computes what changes, writes new files,
//! and publishes one overwrite of the output that removes the files of the
//! days it replaced, adds the new ones and records the input's sequence
//! number, all on the output state it planned on (a compare-and-swap). A
//! run that crashes anywhere leaves orphan files and the output as it was;
//! the next run computes the same thing again. A run that loses the swap
//! ([`TransformError::Raced`]) runs again from the new state.
//!
//! Rows a cleanse job refuses and events too late for a window go to
//! `quarantine.<output namespace>_<output name>`, committed first with the same positions, so
//! a run that crashed between the two commits does not quarantine them
//! twice: it reads only up to where the quarantine stands.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::prelude::{DataFrame, Expr, ident, lit};
use datafusion::scalar::ScalarValue;
use iceberg::spec::SnapshotRef;
use tributary_core::Positions;
use tributary_core::config::{JobDef, JobKind};
use tributary_ingest::prepare::{Reject, quarantine_batch};
use tributary_query::scan::ScanCache;
use tributary_table::changes::{Changes, changed_between};
use tributary_table::{Change, Lake, LoadedTable, PipelineStamp, TableError, last_pipeline_state};

use crate::error::{Result, TransformError};
use crate::output;
use crate::session::JobSession;

/// The position key holding a window job's watermark (microseconds; see
/// `tributary_core::positions`).
pub const WATERMARK: &str = "watermark";

/// What part of the output a run computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// What the input gained since the last run.
    Incremental,
    /// The output days in `[from, to)` (microseconds), from the input as it
    /// is, whatever was read before.
    Backfill {
        /// First microsecond.
        from: i64,
        /// First microsecond after.
        to: i64,
    },
}

/// How a run writes.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Target size of each data file.
    pub target_file_size: usize,
    /// Counts the output rows written as they are (a progress display).
    pub progress: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// The table metadata and manifests read so far: the scheduler keeps
    /// one set of options, so a run re-reads only what the commits since
    /// the last one wrote.
    pub cache: Arc<ScanCache>,
}

impl RunOptions {
    /// Writing files of `target_file_size`, without progress display.
    pub fn new(target_file_size: usize) -> Self {
        Self { target_file_size, progress: None, cache: Arc::default() }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunReport {
    /// The job.
    pub job: String,
    /// `incremental` (new input rows merged), `recompute` (days computed
    /// again from the input) or `backfill`.
    pub mode: &'static str,
    /// The input snapshot read.
    pub input_snapshot: i64,
    /// Its sequence number.
    pub input_sequence: i64,
    /// The sequence number read before.
    pub from_sequence: i64,
    /// The output snapshot published.
    pub output_snapshot: Option<i64>,
    /// Input rows read (new rows; every row read for a recomputation).
    pub rows_read: u64,
    /// Output rows written (of the days replaced, or appended).
    pub rows_written: u64,
    /// Rows sent to quarantine.
    pub quarantined: u64,
    /// Of those, events too late for their windows.
    pub late: u64,
    /// Output days replaced.
    pub days: usize,
    /// The watermark after the run, microseconds.
    pub watermark: Option<i64>,
}

/// Which output files a step replaces.
pub(crate) enum Replace {
    /// None: the rows are appended.
    Nothing,
    /// The files of these days (day starts, microseconds).
    Days(BTreeSet<i64>),
    /// All of them.
    All,
}

/// What a kind's step decided.
pub(crate) struct Step {
    /// The rows to write; then `more`, written in turn into the same
    /// commit (a recomputation cut into days, so that memory follows a
    /// day's rows, not the table's).
    pub query: DataFrame,
    pub more: Vec<DataFrame>,
    pub replace: Replace,
    pub rejects: Vec<Reject>,
    pub watermark: Option<i64>,
    pub rows_read: u64,
    pub late: u64,
    pub mode: &'static str,
}

/// Everything a kind's step reads.
pub(crate) struct Ctx<'a> {
    pub lake: &'a Lake,
    pub job: &'a JobDef,
    pub session: JobSession,
    pub input: LoadedTable,
    /// The input snapshot read to, and its sequence number.
    pub upto: SnapshotRef,
    /// The sequence number read before (0: never).
    pub since: i64,
    pub output: Option<LoadedTable>,
    pub watermark: Option<i64>,
    pub scope: Scope,
}

impl Ctx<'_> {
    /// The input's event-time column.
    pub fn time(&self) -> &str {
        self.job.time_column.as_deref().unwrap_or("event_time")
    }

    /// The input as of the run's snapshot, only rows whose event time is in
    /// one of `ranges` (`[from, to)`, microseconds) when given.
    pub async fn input_at(&self, ranges: Option<&[(i64, i64)]>) -> Result<Arc<dyn TableProvider>> {
        let provider = self.session.snapshot_at(self.lake, &self.input, self.upto.snapshot_id()).await?;
        let filter = ranges.map(|r| time_filter(&self.job.name, &provider.schema(), self.time(), r)).transpose()?;
        self.session.filtered(provider, filter)
    }

    /// The output's rows in the days `days`, or `None` before its first run.
    pub async fn current_in(&self, column: &str, days: &BTreeSet<i64>) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(output) = &self.output else { return Ok(None) };
        let provider = self.session.snapshot(self.lake, output).await?;
        let filter = time_filter(&self.job.name, &provider.schema(), column, &crate::units::day_ranges(days))?;
        Ok(Some(self.session.filtered(provider, Some(filter))?))
    }

    /// The input rows (of `columns`) added and removed after `since` up to
    /// the run's snapshot; `None` when expiry removed that history.
    pub async fn changes(&self, columns: &[&str]) -> Result<Option<Changes>> {
        Ok(changed_between(self.lake, &self.input, self.since, self.upto.snapshot_id(), columns).await?)
    }

    /// The input's new rows `added` as a table (in the input's schema when
    /// there are none).
    pub fn delta(&self, added: Vec<arrow_array::RecordBatch>) -> Result<Arc<dyn TableProvider>> {
        let schema = match added.first() {
            Some(b) => b.schema(),
            None => self.input.arrow_schema()?,
        };
        self.session.memory(schema, added)
    }

    /// The days (day starts) of the input event times in `batches`.
    pub fn days_of<'b>(
        &self,
        batches: impl IntoIterator<Item = &'b arrow_array::RecordBatch>,
    ) -> Result<BTreeSet<i64>> {
        let times = crate::net::times(&self.job.name, batches, self.time())?;
        Ok(times.into_iter().map(|t| crate::units::floor(t, crate::units::DAY_US)).collect())
    }

    /// Every input column, in order.
    pub fn input_columns(&self) -> Vec<String> {
        self.input.metadata.current_schema().as_struct().fields().iter().map(|f| f.name.clone()).collect()
    }

    /// Where in the input a rejected row was read.
    pub fn position(&self) -> String {
        format!("{} sequence {}", self.job.input, self.upto.sequence_number())
    }
}

/// `column` (a microsecond timestamp) in one of `ranges`, as a filter the
/// Iceberg scan can prune files with.
pub(crate) fn time_filter(
    job: &str,
    schema: &arrow_schema::Schema,
    column: &str,
    ranges: &[(i64, i64)],
) -> Result<Expr> {
    let tz = match schema.field_with_name(column).map(|f| f.data_type().clone()) {
        Ok(arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, tz)) => tz,
        Ok(other) => {
            return Err(TransformError::definition(job, format!("column '{column}' is {other}, not a timestamp")));
        }
        Err(_) => return Err(TransformError::definition(job, format!("there is no column '{column}'"))),
    };
    let at = |v: i64| lit(ScalarValue::TimestampMicrosecond(Some(v), tz.clone()));
    Ok(ranges
        .iter()
        .map(|(from, to)| ident(column).gt_eq(at(*from)).and(ident(column).lt(at(*to))))
        .reduce(Expr::or)
        .unwrap_or_else(|| lit(false)))
}

/// The position key of the job's input.
pub fn position_key(job: &JobDef) -> String {
    format!("upstream:{}", job.input)
}

/// The watermark recorded in a job's positions.
pub fn watermark_of(positions: &Positions) -> Option<i64> {
    positions.get(WATERMARK).and_then(|w| i64::try_from(w).ok())
}

/// Runs `job` once over `scope`. `None` when there is nothing to do (no
/// input yet, or nothing new in it).
pub async fn run_once(lake: &Lake, job: &JobDef, opts: &RunOptions, scope: Scope) -> Result<Option<RunReport>> {
    let Some(input) = lake.try_load(&job.input).await? else { return Ok(None) };
    let Some(current) = input.metadata.current_snapshot().cloned() else { return Ok(None) };
    let output = lake.try_load(&job.output).await?;
    let (pipeline, key) = (job.pipeline(), position_key(job));
    let state = match &output {
        Some(o) => last_pipeline_state(o, &pipeline)?,
        None => None,
    };
    let since = state.as_ref().and_then(|s| s.positions.get(&key)).map_or(0, |p| i64::try_from(p).unwrap_or(i64::MAX));
    let watermark = state.as_ref().and_then(|s| watermark_of(&s.positions));
    // A run that crashed after its quarantine commit: read up to where the
    // quarantine stands, and do not quarantine those rows again.
    let quarantined = quarantined_to(lake, job, &pipeline, &key).await?;
    let (upto, write_rejects) = match quarantined {
        Some(q) if q > since => (at_sequence(&input, &current, q).unwrap_or(current), false),
        _ => (current, true),
    };
    if scope == Scope::Incremental && upto.sequence_number() <= since {
        return Ok(None);
    }
    let session = JobSession::new(Some(lake), &job.name, opts.cache.clone()).await?;
    let ctx = Ctx { lake, job, session, input, upto, since, output, watermark, scope };
    let step = match &job.kind {
        JobKind::Cleanse { .. } => crate::cleanse::step(&ctx).await?,
        JobKind::Window { .. } => crate::window::step(&ctx).await?,
        JobKind::Sql { .. } | JobKind::Enrich { .. } => crate::append::step(&ctx).await?,
    };
    let mut positions = state.map(|s| s.positions).unwrap_or_default();
    if scope == Scope::Incremental {
        positions.advance(key.clone(), u64::try_from(ctx.upto.sequence_number()).unwrap_or(0));
    }
    finish(ctx, step, opts, Stamped { pipeline, key, positions, write_rejects }).await
}

struct Stamped {
    pipeline: String,
    key: String,
    positions: Positions,
    write_rejects: bool,
}

async fn finish(ctx: Ctx<'_>, step: Step, opts: &RunOptions, s: Stamped) -> Result<Option<RunReport>> {
    let (lake, job) = (ctx.lake, ctx.job);
    let planned = ctx.output.as_ref().and_then(LoadedTable::current_snapshot_id);
    let output = output::ensure(lake, job, step.query.schema().as_arrow()).await?;
    if output.current_snapshot_id() != planned {
        return Err(TransformError::Raced(job.name.clone()));
    }
    let (mut files, mut rows_written) = output::write(lake, &job.name, &output, step.query, opts).await?;
    for query in step.more {
        let (more, rows) = output::write(lake, &job.name, &output, query, opts).await?;
        files.extend(more);
        rows_written += rows;
    }
    let removed = match &step.replace {
        Replace::Nothing => Default::default(),
        Replace::Days(days) => output::files_in_days(lake, &output, days).await?,
        Replace::All => output::all_files(lake, &output).await?,
    };
    let mut quarantined = 0;
    if s.write_rejects && !step.rejects.is_empty() {
        let started = Positions([(s.key.clone(), u64::try_from(ctx.since).unwrap_or(0))].into());
        quarantined = quarantine(lake, job, &step.rejects, &s.pipeline, &started, &s.positions, opts).await?;
    }
    fail::fail_point!("transform::before_output_commit", |_| Err(TableError::Injected(
        "transform::before_output_commit"
    )
    .into()));
    let mut positions = s.positions;
    if let Some(w) = step.watermark {
        // Event times before 1970 hold no watermark (it starts at 0).
        positions.advance(WATERMARK, u64::try_from(w).unwrap_or(0));
    }
    let stamp = PipelineStamp::new(s.pipeline, positions, 0);
    let committed = {
        let gate = lake.gate(&job.output);
        let _turn = gate.lock().await;
        tributary_table::publish(
            lake,
            &output,
            Change::Overwrite { removed: &removed, added: &files, stamp: Some(&stamp) },
        )
        .await
    };
    let published = match committed {
        Ok(t) => t,
        Err(TableError::CommitConflict { .. }) => return Err(TransformError::Raced(job.name.clone())),
        Err(e) => return Err(e.into()),
    };
    let days = match &step.replace {
        Replace::Days(d) => d.len(),
        _ => 0,
    };
    Ok(Some(RunReport {
        job: job.name.clone(),
        mode: step.mode,
        input_snapshot: ctx.upto.snapshot_id(),
        input_sequence: ctx.upto.sequence_number(),
        from_sequence: ctx.since,
        output_snapshot: published.current_snapshot_id(),
        rows_read: step.rows_read,
        rows_written,
        quarantined,
        late: step.late,
        days,
        watermark: step.watermark.or(ctx.watermark),
    }))
}

/// Commits `rejects` to the output's quarantine table with the run's
/// positions, unless a crashed run of the same input committed them.
async fn quarantine(
    lake: &Lake,
    job: &JobDef,
    rejects: &[Reject],
    pipeline: &str,
    started: &Positions,
    ends: &Positions,
    opts: &RunOptions,
) -> Result<u64> {
    let table = lake.ensure_quarantine_table(&job.quarantine()).await?;
    let schema = table.arrow_schema()?;
    let now = chrono::Utc::now().timestamp_micros();
    let batch = quarantine_batch(&schema, rejects, &format!("job:{}", job.name), now)
        .map_err(|e| TableError::Internal(e.to_string()))?;
    let files = tributary_table::write_data_files(lake, &table, &[batch], opts.target_file_size).await?;
    let (outcome, _) = tributary_table::commit_with_retry(
        lake,
        table,
        &files,
        |fresh| tributary_table::stamp_unless_zombie(fresh, pipeline, started, ends, 0, false),
        8,
    )
    .await?;
    Ok(match outcome {
        tributary_table::Outcome::Committed(_) => rejects.len() as u64,
        tributary_table::Outcome::Zombie(_) => 0,
    })
}

/// The input sequence number the job's quarantine holds rejects up to.
async fn quarantined_to(lake: &Lake, job: &JobDef, pipeline: &str, key: &str) -> Result<Option<i64>> {
    if !matches!(job.kind, JobKind::Cleanse { .. } | JobKind::Window { .. }) {
        return Ok(None);
    }
    let Some(q) = lake.try_load(&job.quarantine()).await? else { return Ok(None) };
    Ok(last_pipeline_state(&q, pipeline)?.and_then(|s| s.positions.get(key)).and_then(|p| i64::try_from(p).ok()))
}

/// The snapshot of `table`'s history from `current` with sequence number `seq`.
fn at_sequence(table: &LoadedTable, current: &SnapshotRef, seq: i64) -> Option<SnapshotRef> {
    let mut s = Some(current.clone());
    while let Some(snap) = s {
        match snap.sequence_number() {
            n if n == seq => return Some(snap),
            n if n < seq => return None,
            _ => s = snap.parent_snapshot_id().and_then(|p| table.metadata.snapshot_by_id(p).cloned()),
        }
    }
    None
}
