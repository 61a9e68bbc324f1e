//! Group commit: one task per table turns many concurrent submissions into
//! one snapshot per commit interval.
//!
//! Submissions arrive over a bounded channel (backpressure: a full channel
//! makes the HTTP handler wait). The task deduplicates, buffers, and flushes
//! when the row, byte or age trigger fires, then answers every submission in
//! the flush with the snapshot that made it durable. Nothing is acknowledged
//! before its commit. A commit whose outcome is unknown (the connection broke
//! around the swap) is resolved by reading the table back. A flush that
//! failed before its rows landed takes its dedup keys back, so a retry is not
//! mistaken for a duplicate; one whose rows landed keeps them, so a retry is.

use std::collections::HashSet;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tributary_core::Classify;
use tributary_core::Clock;
use tributary_core::config::CommitPolicy;
use tributary_core::metrics as m;
use tributary_table::{Lake, LoadedTable, Outcome, PipelineStamp, TableError, last_pipeline_state};

use crate::dedup::{TableDedup, key_at};
use crate::error::IngestError;
use crate::prepare::{IngestSchema, Prepared, PreparedTable, Reject, quarantine_batch};
use crate::sink::write_and_commit;

/// Position key of the HTTP endpoint: the running count of rows it committed.
pub const HTTP_POSITION: &str = "http";

/// The answer to one submission, sent once its rows are durable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The request's id; its rejects are in quarantine with
    /// `position = 'request <id> record <n>'`.
    #[serde(default)]
    pub request_id: String,
    /// Rows committed to the table.
    pub accepted: usize,
    /// Records committed to the quarantine table.
    pub quarantined: usize,
    /// Records dropped as duplicates.
    pub duplicates: usize,
    /// The snapshot of the target table that holds the accepted rows.
    pub snapshot_id: Option<i64>,
}

/// A prepared request waiting for its commit.
#[derive(Debug)]
pub struct Submission {
    /// Validated rows and rejects.
    pub prepared: Prepared,
    /// Where the receipt goes.
    pub reply: oneshot::Sender<Result<Receipt, IngestError>>,
}

struct Pending {
    batch: RecordBatch,
    rejects: Vec<Reject>,
    duplicates: usize,
    /// Dedup keys this submission's rows claimed and have not committed.
    keys: Vec<String>,
    reply: oneshot::Sender<Result<Receipt, IngestError>>,
}

/// The committer task of one table.
pub struct Committer {
    lake: Lake,
    schema: std::sync::Arc<IngestSchema>,
    policy: CommitPolicy,
    clock: std::sync::Arc<dyn Clock>,
    table: LoadedTable,
    quarantine: LoadedTable,
    dedup: Option<TableDedup>,
    pipeline: String,
    pending: Vec<Pending>,
    pending_rows: usize,
    pending_bytes: usize,
}

impl Committer {
    /// A committer starting from a prepared table.
    pub fn new(lake: Lake, prepared: PreparedTable, policy: CommitPolicy, clock: std::sync::Arc<dyn Clock>) -> Self {
        let PreparedTable { schema, table, quarantine, dedup } = prepared;
        let pipeline = format!("http:{}", schema.table);
        Self {
            lake,
            schema,
            policy,
            clock,
            table,
            quarantine,
            dedup,
            pipeline,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
        }
    }

    /// Runs until `shutdown`, then drains queued submissions and flushes them.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Submission>, shutdown: CancellationToken) {
        let mut deadline = None;
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                sub = rx.recv() => match sub {
                    Some(sub) => {
                        self.accept(sub);
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.policy.max_latency);
                        if self.pending_rows >= self.policy.max_rows || self.pending_bytes >= self.policy.max_bytes {
                            self.flush().await;
                            deadline = None;
                        }
                    }
                    None => break,
                },
                () = async { sleep_until(deadline.unwrap_or_else(tokio::time::Instant::now)).await }, if deadline.is_some() => {
                    self.flush().await;
                    deadline = None;
                }
            }
        }
        rx.close();
        while let Some(sub) = rx.recv().await {
            self.accept(sub);
        }
        self.flush().await;
        tracing::info!(table = %self.schema.table, "committer stopped");
    }

    /// Queues a submission for the next flush, claiming its dedup keys now
    /// (spread over the interval, not on the commit's critical path); the
    /// flush checks them again against what other writers committed.
    fn accept(&mut self, sub: Submission) {
        let Submission { prepared, reply } = sub;
        let table = self.schema.table.to_string();
        metrics::counter!(m::RECORDS_RECEIVED, "table" => table.clone()).increment(prepared.received as u64);
        let mut pending =
            Pending { batch: prepared.batch, rejects: prepared.rejects, duplicates: 0, keys: Vec::new(), reply };
        if let (Some(index), Some((col, _))) = (&self.dedup, self.schema.dedup) {
            let (keep, keys) = index.claim(&pending.batch, col, prepared.ingested_at_us);
            pending.keys = keys;
            if let Err(e) = pending.drop_rows(&keep) {
                index.remove(&pending.keys);
                let _ = pending.reply.send(Err(e));
                return;
            }
        }
        self.pending_rows += pending.batch.num_rows() + pending.rejects.len();
        self.pending_bytes += prepared.bytes;
        self.pending.push(pending);
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending);
        self.pending_rows = 0;
        self.pending_bytes = 0;
        match self.commit_pending(&mut pending).await {
            Ok(snapshot_id) => {
                let label = self.schema.table.to_string();
                for p in pending {
                    let receipt = Receipt {
                        request_id: String::new(),
                        accepted: p.batch.num_rows(),
                        quarantined: p.rejects.len(),
                        duplicates: p.duplicates,
                        snapshot_id,
                    };
                    metrics::counter!(m::RECORDS_WRITTEN, "table" => label.clone()).increment(receipt.accepted as u64);
                    metrics::counter!(m::RECORDS_DEDUPLICATED, "table" => label.clone())
                        .increment(receipt.duplicates as u64);
                    for r in &p.rejects {
                        metrics::counter!(m::RECORDS_QUARANTINED, "table" => label.clone(), "reason" => r.rejection.kind).increment(1);
                    }
                    let _ = p.reply.send(Ok(receipt));
                }
            }
            Err(Failed { error: e, rows_committed }) => {
                tracing::error!(table = %self.schema.table, error = %e, rows_committed, "flush failed");
                let reload = async {
                    Ok::<_, IngestError>((
                        self.lake.load(&self.table.name).await?,
                        self.lake.load(&self.quarantine.name).await?,
                    ))
                };
                if let Ok((t, q)) = reload.await {
                    self.table = t;
                    self.quarantine = q;
                }
                let reply = |e: &IngestError| match e {
                    IngestError::Superseded(t) => IngestError::Superseded(t.clone()),
                    e if rows_committed => IngestError::RejectsNotQuarantined(e.to_string()),
                    e if e.is_retryable() => IngestError::Unavailable(e.to_string()),
                    e => IngestError::Internal(e.to_string()),
                };
                for p in pending {
                    let _ = p.reply.send(Err(reply(&e)));
                }
            }
        }
    }

    /// Writes and commits the data rows, then the rejects; returns the data
    /// table's snapshot id.
    async fn commit_pending(&mut self, pending: &mut [Pending]) -> Result<Option<i64>, Failed> {
        let rows = self.commit_data(pending).await.map_err(Failed::before_rows)?;
        let rejects: Vec<Reject> = pending.iter().flat_map(|p| p.rejects.iter().cloned()).collect();
        if !rejects.is_empty() {
            let after_rows = |error| Failed { error, rows_committed: rows > 0 };
            let at = self.clock.now().timestamp_micros();
            let batch = quarantine_batch(&self.schema.quarantine_arrow, &rejects, "http", at).map_err(after_rows)?;
            self.quarantine =
                self.commit_rows(self.quarantine.clone(), &[batch], rejects.len(), None).await.map_err(after_rows)?;
        }
        Ok(self.table.current_snapshot_id())
    }

    /// Commits the rows of `pending` to the data table; returns how many.
    ///
    /// With a dedup key, the commit is pinned to the table state the keys
    /// were checked against: the index first learns what other sources and
    /// workers committed (rows whose claimed key they committed become
    /// duplicates), and if anyone commits before our swap, the check is
    /// redone from the new state. A failure gives the claimed keys back;
    /// keys of rows that landed stay claimed.
    async fn commit_data(&mut self, pending: &mut [Pending]) -> Result<usize, IngestError> {
        let Some(index) = self.dedup.clone() else {
            let batches = non_empty(pending);
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows > 0 {
                self.table = self.commit_rows(self.table.clone(), &batches, rows, None).await?;
            }
            return Ok(rows);
        };
        let result = self.commit_deduplicated(pending, &index).await;
        if result.is_err() {
            for p in pending.iter() {
                index.remove(&p.keys);
            }
        }
        result
    }

    async fn commit_deduplicated(&mut self, pending: &mut [Pending], index: &TableDedup) -> Result<usize, IngestError> {
        let col = self.schema.dedup.map_or(0, |(col, _)| col);
        // The first attempt trusts the state this committer last saw: the
        // pinned swap fails if anyone committed since, and only then is the
        // table reloaded (one catalog read fewer per flush).
        let mut base = self.table.clone();
        for attempt in 0..MAX_DEDUP_ATTEMPTS {
            if attempt > 0 {
                base = self.lake.load(&self.table.name).await?;
            }
            let theirs = index.refresh(&self.lake, &base).await?;
            if !theirs.is_empty() {
                for p in pending.iter_mut() {
                    p.drop_keys(col, &theirs)?;
                }
            }
            let batches = non_empty(pending);
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            if rows == 0 {
                self.table = base;
                return Ok(0);
            }
            let (pinned, before) = (base.location.clone(), base.metadata.last_sequence_number());
            match self.commit_rows(base.clone(), &batches, rows, Some(&pinned)).await {
                Ok(table) => {
                    index.committed(before, table.metadata.last_sequence_number());
                    self.table = table;
                    return Ok(rows);
                }
                // Someone committed since we checked: again, from there.
                Err(IngestError::Superseded(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Err(IngestError::Unavailable(format!(
            "'{}' changed under every one of {MAX_DEDUP_ATTEMPTS} deduplicated commits",
            self.schema.table
        )))
    }

    /// Commits `batches` on `base`. With `pinned`, a base other than that
    /// location is refused (`Superseded`) instead of rebased onto.
    async fn commit_rows(
        &self,
        base: LoadedTable,
        batches: &[RecordBatch],
        rows: usize,
        pinned: Option<&str>,
    ) -> Result<LoadedTable, IngestError> {
        let pipeline = self.pipeline.clone();
        let stamp_for = |b: &LoadedTable| {
            if pinned.is_some_and(|p| p != b.location) {
                return Ok(None);
            }
            let committed = last_pipeline_state(b, &pipeline)?.map(|s| s.positions).unwrap_or_default();
            let mut positions = committed.clone();
            positions.advance(HTTP_POSITION, committed.get(HTTP_POSITION).unwrap_or(0) + rows as u64);
            Ok(Some(PipelineStamp { pipeline: pipeline.clone(), positions, epoch: 0 }))
        };
        let name = base.name.clone();
        match write_and_commit(&self.lake, base, batches, self.policy.target_file_size_bytes, stamp_for).await {
            Ok(Outcome::Committed(new)) => Ok(new),
            Ok(Outcome::Zombie(_)) => Err(IngestError::Superseded(self.schema.table.clone())),
            // The connection broke around the swap: read the table back.
            Err(IngestError::Commit(TableError::CommitUnknown { snapshot_id, reason, .. })) => {
                match self.lake.landed(&name, snapshot_id).await {
                    Ok(Some(new)) => {
                        tracing::warn!(table = %name, snapshot_id, %reason, "commit outcome was unknown; it landed");
                        Ok(new)
                    }
                    Ok(None) => Err(IngestError::Unavailable(format!("commit to '{name}' did not land ({reason})"))),
                    // Still unknown: the caller keeps nothing claimed, so a
                    // retry may duplicate but never lose.
                    Err(e) => Err(IngestError::Commit(e)),
                }
            }
            Err(e) => Err(e),
        }
    }
}

/// Attempts at a deduplicated commit while other writers keep committing.
const MAX_DEDUP_ATTEMPTS: usize = 10;

impl Pending {
    /// Keeps only the rows marked in `keep`; the others are duplicates.
    fn drop_rows(&mut self, keep: &BooleanArray) -> Result<(), IngestError> {
        let dropped = keep.false_count();
        if dropped > 0 {
            self.duplicates += dropped;
            self.batch = filter_record_batch(&self.batch, keep)
                .map_err(|e| IngestError::Internal(format!("dedup filter: {e}")))?;
        }
        Ok(())
    }

    /// Drops the rows whose key (column `col`) another writer committed.
    fn drop_keys(&mut self, col: usize, theirs: &HashSet<String>) -> Result<(), IngestError> {
        if !self.keys.iter().any(|k| theirs.contains(k)) {
            return Ok(());
        }
        let keys = self.batch.column(col).clone();
        let keep: BooleanArray =
            (0..self.batch.num_rows()).map(|i| Some(key_at(&keys, i).is_none_or(|k| !theirs.contains(&k)))).collect();
        self.keys.retain(|k| !theirs.contains(k));
        self.drop_rows(&keep)
    }
}

/// The batches of `pending` that hold rows.
fn non_empty(pending: &[Pending]) -> Vec<RecordBatch> {
    pending.iter().map(|p| p.batch.clone()).filter(|b| b.num_rows() > 0).collect()
}

/// A failed flush, and whether its rows reached the table before it failed.
struct Failed {
    error: IngestError,
    rows_committed: bool,
}

impl Failed {
    fn before_rows(error: IngestError) -> Self {
        Self { error, rows_committed: false }
    }
}
