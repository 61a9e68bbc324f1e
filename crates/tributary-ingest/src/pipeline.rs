//! The table pipeline: one task per table owns every stage after its
//! sources' validation — dedup, batching, landing, outcome metrics — for
//! every source of the table.
//!
//! ```text
//!  HTTP requests ──► Chunk ─┐ (a bounded channel per source)
//!  Kafka source  ──► Chunk ─┼─► TablePipeline ─ accept: fence, idempotency replay, dedup claim
//!  (file drops)  ──► Chunk ─┘        │            lane per source: rows / bytes / age / urgent triggers
//!                                    └─► land: rejects → quarantine, then rows → table (`land`)
//!                                        answer every chunk; emit its outcome metrics
//! ```
//!
//! A chunk is validated records plus a typed position delta (`chunk`).
//! Each source has its own lane (`lane`) because a snapshot carries one
//! pipeline's positions; lanes land one at a time from this one task, so the
//! dedup index has a single writer per process and a table's sources never
//! race each other's commits. Nothing is acknowledged before its commit.
//!
//! On shutdown the request lanes stop taking new chunks; sources that stop
//! themselves (Kafka) send their last chunk and close their channel; the
//! pipeline lands what it holds as soon as it arrives, and stops once every
//! channel is closed.

mod chunk;
mod land;
mod lane;

use std::sync::Arc;
use std::task::Poll;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tributary_core::Clock;
use tributary_core::config::{CommitPolicy, ValidConfig};
use tributary_table::{Lake, LoadedTable};

pub use chunk::{Chunk, Delta, Landed, Range, Receipt};
use land::Flushed;
use lane::Lane;

use crate::dedup::TableDedup;
use crate::error::IngestError;
use crate::outcomes::Outcomes;
use crate::prepare::{IngestSchema, PreparedTable};
use crate::requests::RequestLog;

/// Position key of the HTTP endpoint: the running count of rows it committed.
pub const HTTP_POSITION: &str = "http";

/// One source's way into the pipeline.
struct Input {
    rx: Option<mpsc::Receiver<Chunk>>,
    /// Closed by the pipeline on shutdown (request sources); otherwise the
    /// source closes it when it has sent its last chunk.
    closed_on_stop: bool,
}

/// The pipeline task of one table.
pub struct TablePipeline {
    lake: Lake,
    schema: Arc<IngestSchema>,
    clock: Arc<dyn Clock>,
    table: LoadedTable,
    quarantine: LoadedTable,
    dedup: Option<TableDedup>,
    outcomes: Outcomes,
    /// Idempotency keys the data table answered, with their receipts.
    requests: RequestLog,
    /// Idempotency keys whose rejects the quarantine table holds.
    quarantined_requests: RequestLog,
    lanes: Vec<Lane>,
    inputs: Vec<Input>,
    /// The input polled first next time, so that no source starves another.
    next_input: usize,
}

impl TablePipeline {
    /// A pipeline starting from a prepared table; it reads the idempotency
    /// keys both tables answered within the window from their summaries.
    pub fn new(
        lake: Lake,
        prepared: PreparedTable,
        config: &ValidConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, IngestError> {
        let PreparedTable { schema, table, quarantine, dedup, outcomes } = prepared;
        let (window, now_ms) = (config.idempotency_window, clock.now().timestamp_millis());
        Ok(Self {
            requests: RequestLog::rebuild(&table, window, now_ms)?,
            quarantined_requests: RequestLog::rebuild(&quarantine, window, now_ms)?,
            lake,
            schema,
            clock,
            table,
            quarantine,
            dedup,
            outcomes,
            lanes: Vec::new(),
            inputs: Vec::new(),
            next_input: 0,
        })
    }

    /// Registers a source whose snapshots are stamped `pipeline` and land by
    /// `policy`; its chunks come through the returned sender, `depth` of
    /// them queued at most. With `closed_on_stop`, shutdown refuses its
    /// later chunks; otherwise the pipeline waits for the source to drop
    /// the sender.
    pub fn add_source(
        &mut self,
        pipeline: String,
        policy: CommitPolicy,
        depth: usize,
        closed_on_stop: bool,
    ) -> mpsc::Sender<Chunk> {
        let (tx, rx) = mpsc::channel(depth);
        self.lanes.push(Lane::new(pipeline, policy));
        self.inputs.push(Input { rx: Some(rx), closed_on_stop });
        tx
    }

    /// Runs until `shutdown` and every source has stopped, landing what
    /// they sent.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut stopping = false;
        loop {
            let wake = if stopping {
                self.lanes.iter().any(|l| l.deadline().is_some()).then(Instant::now)
            } else {
                self.lanes.iter().filter_map(Lane::deadline).min()
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled(), if !stopping => {
                    stopping = true;
                    for input in self.inputs.iter_mut().filter(|i| i.closed_on_stop) {
                        if let Some(rx) = &mut input.rx {
                            rx.close();
                        }
                    }
                }
                input = self.recv() => match input {
                    // A full lane lands at once; an aged one only when no more
                    // input is ready (the branch below), so chunks that queued
                    // during a landing join the next one instead of each
                    // landing alone.
                    Some((lane, chunk)) => {
                        self.accept(lane, chunk);
                        if self.lanes[lane].full() {
                            self.flush(lane).await;
                        }
                    }
                    None => break,
                },
                // Queued chunks are taken first (`biased`), so a stop lands
                // what was queued together.
                () = async { sleep_until(wake.unwrap_or_else(Instant::now)).await }, if wake.is_some() => {
                    let now = Instant::now();
                    for lane in 0..self.lanes.len() {
                        if stopping || self.lanes[lane].due(now) {
                            self.flush(lane).await;
                        }
                    }
                }
            }
        }
        for lane in 0..self.lanes.len() {
            self.flush(lane).await;
        }
        if let Some(index) = &self.dedup {
            // The next start reads only snapshots newer than this.
            index.checkpoint(self.clock.now().timestamp_micros());
        }
        tracing::info!(table = %self.schema.table, "table pipeline stopped");
    }

    /// The next chunk of any source, taking the sources in turn; `None`
    /// once every source's channel is closed and drained.
    async fn recv(&mut self) -> Option<(usize, Chunk)> {
        let start = self.next_input;
        let inputs = &mut self.inputs;
        let received = std::future::poll_fn(|cx| {
            let n = inputs.len();
            let mut open = false;
            for i in (0..n).map(|k| (start + k) % n) {
                let Some(rx) = &mut inputs[i].rx else { continue };
                match rx.poll_recv(cx) {
                    Poll::Ready(Some(chunk)) => return Poll::Ready(Some((i, chunk))),
                    Poll::Ready(None) => inputs[i].rx = None,
                    Poll::Pending => open = true,
                }
            }
            if open { Poll::Pending } else { Poll::Ready(None) }
        })
        .await;
        if let Some((i, _)) = &received {
            self.next_input = i + 1;
        }
        received
    }

    /// Buffers a chunk in its source's lane, claiming its dedup keys now
    /// (spread over the interval, not on the commit's critical path); the
    /// landing checks them again against what other writers committed. A
    /// retry of an answered or buffered request is answered without a
    /// landing of its own.
    fn accept(&mut self, lane: usize, mut chunk: Chunk) {
        if self.lanes[lane].fenced(&chunk) {
            chunk.answer(&Ok(Landed::Zombie));
            return;
        }
        if let Some(idem) = chunk.idempotency().cloned() {
            if let Some((entry, snapshot_id)) = self.requests.get(&idem.key) {
                chunk.answer(&entry.replay(&idem, *snapshot_id).map(Landed::Committed));
                return;
            }
            if let Some(pending) = self.lanes[lane].pending_request(&idem.key) {
                if pending.idempotency() == Some(&idem) {
                    pending.replies.append(&mut chunk.replies);
                } else {
                    chunk.answer(&Err(IngestError::KeyReused(idem.key)));
                }
                return;
            }
        }
        if let (Some(index), Some((col, _))) = (&self.dedup, self.schema.dedup) {
            let (keep, keys) = match index.claim(&chunk.batch, col, chunk.ingested_at_us) {
                Ok(claimed) => claimed,
                Err(e) => {
                    chunk.answer(&Err(e));
                    return;
                }
            };
            chunk.keys = keys;
            if let Err(e) = chunk.drop_rows(&keep) {
                index.remove(&chunk.keys);
                chunk.answer(&Err(e));
                return;
            }
        }
        self.lanes[lane].push(chunk);
    }

    /// Lands every chunk buffered in `lane` and answers each.
    async fn flush(&mut self, lane: usize) {
        let mut chunks = self.lanes[lane].take();
        if chunks.is_empty() {
            return;
        }
        let pipeline = self.lanes[lane].pipeline.clone();
        let file_size = self.lanes[lane].policy.target_file_size_bytes;
        let outcome = self.land(&pipeline, file_size, &mut chunks).await;
        if !matches!(outcome, Ok(Flushed::Committed(_)))
            && let Some(epoch) = chunks.iter().filter_map(|c| chunk::epoch(&c.delta)).max()
        {
            // Later chunks of this read generation follow a gap.
            self.lanes[lane].fence(epoch);
        }
        if let Err(failed) = &outcome {
            tracing::error!(table = %self.schema.table, %pipeline, error = %failed.error, rejects_committed = failed.rejects_committed, "landing failed");
            self.reload().await;
        }
        let now_us = self.clock.now().timestamp_micros();
        let event_time = self.schema.event_time_column();
        // The newest event time landed, set once per landing.
        let mut newest: Option<i64> = None;
        for mut c in chunks {
            // A replayed answer is durable whatever became of the rest.
            if let Some(replayed) = c.replayed.take() {
                c.answer(&replayed.map(Landed::Committed));
                continue;
            }
            let result = match &outcome {
                Ok(Flushed::Committed(snapshot_id)) => {
                    let receipt = c.receipt(*snapshot_id);
                    let counted = &self.outcomes;
                    counted.received(c.received);
                    counted.written(receipt.accepted);
                    counted.deduplicated(receipt.duplicates);
                    counted.quarantined(&c.rejects);
                    newest = newest.max(c.max_event_us(event_time));
                    Ok(Landed::Committed(receipt))
                }
                // Input that is read again is counted when it lands.
                Ok(Flushed::Zombie) => Ok(Landed::Zombie),
                Err(failed) => {
                    let request = matches!(c.delta, Delta::Request { .. });
                    if request {
                        self.outcomes.received(c.received);
                        if failed.rejects_committed {
                            self.outcomes.quarantined(&c.rejects);
                        }
                    }
                    Err(failed.answer(request))
                }
            };
            c.answer(&result);
        }
        self.outcomes.fresh(newest, now_us);
    }

    /// Reloads both tables after a failed landing; if that fails too, the
    /// next landing finds out through its compare-and-swap.
    async fn reload(&mut self) {
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
}
