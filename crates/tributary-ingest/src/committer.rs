//! Group commit: one task per table turns many concurrent submissions into
//! one snapshot per commit interval.
//!
//! Submissions arrive over a bounded channel (backpressure: a full channel
//! makes the HTTP handler wait). The task deduplicates, buffers, and flushes
//! when the row, byte or age trigger fires, then answers every submission in
//! the flush with the snapshot that made it durable. Nothing is acknowledged
//! before its commit.
//!
//! A request with an `Idempotency-Key` that a snapshot already answered gets
//! that answer back (`requests`); one whose key is still pending shares the
//! pending request's answer. How a flush lands is in `land`.

mod land;

use arrow_array::{BooleanArray, RecordBatch};
use arrow_select::filter::filter_record_batch;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tributary_core::Classify;
use tributary_core::Clock;
use tributary_core::config::{CommitPolicy, ValidConfig};
use tributary_table::{Lake, LoadedTable};

use crate::dedup::TableDedup;
use crate::error::IngestError;
use crate::outcomes::Outcomes;
use crate::prepare::{IngestSchema, Prepared, PreparedTable, Reject};
use crate::requests::{Entry, Idempotency, RequestLog};

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

type Reply = oneshot::Sender<Result<Receipt, IngestError>>;

/// A prepared request waiting for its commit.
#[derive(Debug)]
pub struct Submission {
    /// The request's id, named by its quarantine rows.
    pub request_id: String,
    /// The client's idempotency key, if it sent one.
    pub idempotency: Option<Idempotency>,
    /// Validated rows and rejects.
    pub prepared: Prepared,
    /// Where the receipt goes.
    pub reply: Reply,
}

/// A request in the next flush.
struct Pending {
    request_id: String,
    idempotency: Option<Idempotency>,
    batch: RecordBatch,
    /// Rejects still to quarantine (emptied when a snapshot of the
    /// quarantine table already holds this request's).
    rejects: Vec<Reject>,
    /// Records the request quarantines, whether by this flush or earlier.
    quarantined: usize,
    duplicates: usize,
    received: usize,
    /// Dedup keys this submission's rows claimed and have not committed.
    keys: Vec<String>,
    /// The request, and retries of it (same key) that arrived meanwhile.
    replies: Vec<Reply>,
    /// The answer a snapshot already gave this request's key, if the flush
    /// found one: the request itself writes nothing.
    replayed: Option<Result<Receipt, IngestError>>,
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
    outcomes: Outcomes,
    /// Idempotency keys the data table answered, with their receipts.
    requests: RequestLog,
    /// Idempotency keys whose rejects the quarantine table holds.
    quarantined_requests: RequestLog,
    pipeline: String,
    pending: Vec<Pending>,
    pending_rows: usize,
    pending_bytes: usize,
}

impl Committer {
    /// A committer starting from a prepared table; it reads the idempotency
    /// keys both tables answered within the window from their summaries.
    pub fn new(
        lake: Lake,
        prepared: PreparedTable,
        config: &ValidConfig,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Result<Self, IngestError> {
        let PreparedTable { schema, table, quarantine, dedup, outcomes } = prepared;
        let (window, now_ms) = (config.idempotency_window, clock.now().timestamp_millis());
        Ok(Self {
            requests: RequestLog::rebuild(&table, window, now_ms)?,
            quarantined_requests: RequestLog::rebuild(&quarantine, window, now_ms)?,
            pipeline: format!("http:{}", schema.table),
            lake,
            schema,
            policy: config.commit,
            clock,
            table,
            quarantine,
            dedup,
            outcomes,
            pending: Vec::new(),
            pending_rows: 0,
            pending_bytes: 0,
        })
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
                        if !self.pending.is_empty() {
                            deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.policy.max_latency);
                        }
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
    /// flush checks them again against what other writers committed. A
    /// retry of an answered or pending request is answered without a flush
    /// of its own.
    fn accept(&mut self, sub: Submission) {
        let Submission { request_id, idempotency, prepared, reply } = sub;
        if let Some(idem) = &idempotency {
            if let Some((entry, snapshot_id)) = self.requests.get(&idem.key) {
                let _ = reply.send(entry.replay(idem, *snapshot_id));
                return;
            }
            if let Some(p) = self.pending.iter_mut().find(|p| p.idempotency.as_ref().is_some_and(|i| i.key == idem.key))
            {
                if p.idempotency.as_ref() == Some(idem) {
                    p.replies.push(reply);
                } else {
                    let _ = reply.send(Err(IngestError::KeyReused(idem.key.clone())));
                }
                return;
            }
        }
        let mut pending = Pending {
            request_id,
            idempotency,
            batch: prepared.batch,
            quarantined: prepared.rejects.len(),
            rejects: prepared.rejects,
            duplicates: 0,
            received: prepared.received,
            keys: Vec::new(),
            replies: vec![reply],
            replayed: None,
        };
        if let (Some(index), Some((col, _))) = (&self.dedup, self.schema.dedup) {
            let (keep, keys) = index.claim(&pending.batch, col, prepared.ingested_at_us);
            pending.keys = keys;
            if let Err(e) = pending.drop_rows(&keep) {
                index.remove(&pending.keys);
                pending.answer(&Err(e));
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
        let outcome = self.land(&mut pending).await;
        if let Err(failed) = &outcome {
            tracing::error!(table = %self.schema.table, error = %failed.error, rejects_committed = failed.rejects_committed, "flush failed");
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
        }
        let counted = &self.outcomes;
        for mut p in pending {
            // A replayed answer is durable whatever became of the rest.
            if let Some(replayed) = p.replayed.take() {
                p.answer(&replayed);
                continue;
            }
            let result = match &outcome {
                Ok(snapshot_id) => {
                    let receipt = p.receipt(*snapshot_id);
                    counted.received(p.received);
                    counted.written(receipt.accepted);
                    counted.deduplicated(receipt.duplicates);
                    counted.quarantined(&p.rejects);
                    Ok(receipt)
                }
                Err(failed) => {
                    counted.received(p.received);
                    if failed.rejects_committed {
                        counted.quarantined(&p.rejects);
                    }
                    Err(failed.for_client())
                }
            };
            p.answer(&result);
        }
    }
}

impl Pending {
    /// The receipt of this request once its flush committed.
    fn receipt(&self, snapshot_id: Option<i64>) -> Receipt {
        Receipt {
            request_id: self.request_id.clone(),
            accepted: self.batch.num_rows(),
            quarantined: self.quarantined,
            duplicates: self.duplicates,
            snapshot_id,
        }
    }

    /// What a snapshot records for this request, if it has a key.
    fn entry(&self) -> Option<(String, Entry)> {
        let idem = self.idempotency.as_ref()?;
        let entry = Entry::new(&self.request_id, idem, self.batch.num_rows(), self.quarantined, self.duplicates);
        Some((idem.key.clone(), entry))
    }

    /// Sends `result` to the request and to every retry waiting on it.
    fn answer(self, result: &Result<Receipt, IngestError>) {
        for reply in self.replies {
            let _ = reply.send(match result {
                Ok(r) => Ok(r.clone()),
                Err(e) => Err(e.for_another_client()),
            });
        }
    }

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
}

/// The batches of `pending` that hold rows.
fn non_empty<'a>(pending: impl IntoIterator<Item = &'a Pending>) -> Vec<RecordBatch> {
    pending.into_iter().map(|p| p.batch.clone()).filter(|b| b.num_rows() > 0).collect()
}

/// A failed flush, and whether its rejects reached the quarantine table
/// before it failed.
struct Failed {
    error: IngestError,
    rejects_committed: bool,
}

impl Failed {
    /// What each request of the flush is answered.
    fn for_client(&self) -> IngestError {
        match &self.error {
            IngestError::Superseded(t) => IngestError::Superseded(t.clone()),
            e if self.rejects_committed => IngestError::OnlyRejectsCommitted(e.to_string()),
            e if e.is_retryable() => IngestError::Unavailable(e.to_string()),
            e => IngestError::Internal(e.to_string()),
        }
    }
}
