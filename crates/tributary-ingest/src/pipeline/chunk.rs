//! What every source hands its table's pipeline: a chunk of validated
//! records, the typed position delta they cover, and where the outcome goes.
//!
//! A source decodes and validates on its own task (so sources and requests
//! validate in parallel); everything after that — dedup, batching, landing,
//! outcome metrics — is the pipeline's, the same for every source.

use arrow_array::{Array, BooleanArray, RecordBatch, TimestampMicrosecondArray};
use arrow_select::filter::filter_record_batch;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tributary_core::Positions;

use crate::error::IngestError;
use crate::prepare::Reject;
use crate::requests::{Entry, Idempotency};

/// The answer to one HTTP request, sent once its rows are durable.
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

/// How a chunk ended.
#[derive(Debug)]
pub enum Landed {
    /// Its rows and rejects are durable.
    Committed(Receipt),
    /// Another writer had already committed (part of) its input, or an
    /// earlier chunk of the same source did not land: nothing of it was
    /// written, and the source reads it again from the table's positions.
    Zombie,
}

/// Where a chunk's outcome goes.
pub type Reply = oneshot::Sender<Result<Landed, IngestError>>;

/// The position a chunk moves its source to, typed by what the source can
/// do with it.
#[derive(Debug)]
pub enum Delta {
    /// One HTTP request: never replayed by position; a retry is recognised
    /// by its `Idempotency-Key`, committed in the same snapshot.
    Request {
        /// Named by the request's quarantine rows.
        request_id: String,
        /// The client's key, if it sent one.
        idempotency: Option<Idempotency>,
    },
    /// Input that can be read again (Kafka offsets; file rows next).
    Range(Range),
}

/// Replayable input read per partition from `from` up to `to`.
#[derive(Debug, Clone, Default)]
pub struct Range {
    /// The source's read generation. When a chunk does not land, the
    /// pipeline drops every later chunk of that generation (they follow a
    /// gap) until the source has re-read from the table and moved on.
    pub epoch: u64,
    /// First position read per partition: the zombie rule's input.
    pub from: Positions,
    /// Where the chunk's rejects start per partition: past the quarantine
    /// table's own positions, which run ahead of the data table's after a
    /// crash between the two commits (those rejects were skipped).
    pub rejects_from: Positions,
    /// Next position per partition, stamped into the snapshot.
    pub to: Positions,
}

/// Validated records from one source, with their position delta.
#[derive(Debug)]
pub struct Chunk {
    /// Good rows in the table's Arrow schema.
    pub batch: RecordBatch,
    /// Rejected records, for the quarantine table.
    pub rejects: Vec<Reject>,
    /// Records read.
    pub received: usize,
    /// Bytes read, for the byte trigger.
    pub bytes: usize,
    /// When the records arrived, microseconds since the epoch.
    pub ingested_at_us: i64,
    /// The position delta.
    pub delta: Delta,
    /// Land the source's buffered chunks now, not at the next trigger (a
    /// rebalance, a recorded start, a stop).
    pub urgent: bool,
    /// When its first record arrived: the age trigger counts from here, so
    /// records that queued while a landing ran do not wait a whole interval
    /// more.
    pub since: tokio::time::Instant,
    /// Records this chunk quarantines, whether by this landing or earlier.
    pub(crate) quarantined: usize,
    pub(crate) duplicates: usize,
    /// Dedup keys its rows claimed and have not committed.
    pub(crate) keys: Vec<crate::dedup::Fp>,
    /// The source, and retries of the same request that arrived meanwhile.
    pub(crate) replies: Vec<Reply>,
    /// The answer a snapshot already gave this request's key: the chunk
    /// writes nothing.
    pub(crate) replayed: Option<Result<Receipt, IngestError>>,
}

impl Chunk {
    /// A chunk and the receiver of its outcome.
    pub fn new(
        batch: RecordBatch,
        rejects: Vec<Reject>,
        received: usize,
        bytes: usize,
        ingested_at_us: i64,
        delta: Delta,
    ) -> (Self, oneshot::Receiver<Result<Landed, IngestError>>) {
        let (reply, rx) = oneshot::channel();
        let quarantined = rejects.len();
        let chunk = Self {
            batch,
            rejects,
            received,
            bytes,
            ingested_at_us,
            delta,
            urgent: false,
            since: tokio::time::Instant::now(),
            quarantined,
            duplicates: 0,
            keys: Vec::new(),
            replies: vec![reply],
            replayed: None,
        };
        (chunk, rx)
    }

    /// The idempotency key of an HTTP request, if it has one.
    pub(crate) fn idempotency(&self) -> Option<&Idempotency> {
        match &self.delta {
            Delta::Request { idempotency, .. } => idempotency.as_ref(),
            Delta::Range(_) => None,
        }
    }

    /// The receipt of this chunk once its landing committed.
    pub(crate) fn receipt(&self, snapshot_id: Option<i64>) -> Receipt {
        let request_id = match &self.delta {
            Delta::Request { request_id, .. } => request_id.clone(),
            Delta::Range(_) => String::new(),
        };
        Receipt {
            request_id,
            accepted: self.batch.num_rows(),
            quarantined: self.quarantined,
            duplicates: self.duplicates,
            snapshot_id,
        }
    }

    /// What a snapshot records for this request, if it has a key.
    pub(crate) fn entry(&self) -> Option<(String, Entry)> {
        let Delta::Request { request_id, idempotency: Some(idem) } = &self.delta else { return None };
        let entry = Entry::new(request_id, idem, self.batch.num_rows(), self.quarantined, self.duplicates);
        Some((idem.key.clone(), entry))
    }

    /// Sends `result` to the source and to every retry waiting on it.
    pub(crate) fn answer(self, result: &Result<Landed, IngestError>) {
        for reply in self.replies {
            let _ = reply.send(match result {
                Ok(Landed::Committed(r)) => Ok(Landed::Committed(r.clone())),
                Ok(Landed::Zombie) => Ok(Landed::Zombie),
                Err(e) => Err(e.for_another_client()),
            });
        }
    }

    /// Keeps only the rows marked in `keep`; the others are duplicates.
    pub(crate) fn drop_rows(&mut self, keep: &BooleanArray) -> Result<(), IngestError> {
        let dropped = keep.false_count();
        if dropped > 0 {
            self.duplicates += dropped;
            self.batch = filter_record_batch(&self.batch, keep)
                .map_err(|e| IngestError::Internal(format!("dedup filter: {e}")))?;
        }
        Ok(())
    }

    /// Drops the rows whose key (column `col`) another writer committed.
    pub(crate) fn drop_keys(&mut self, col: usize, theirs: &crate::dedup::FpSet) -> Result<(), IngestError> {
        if !self.keys.iter().any(|k| theirs.contains(k)) {
            return Ok(());
        }
        let keep: BooleanArray = crate::dedup::key_fps(self.batch.column(col))
            .map(|fp| Some(fp.is_none_or(|k| !theirs.contains(&k))))
            .collect();
        self.keys.retain(|k| !theirs.contains(k));
        self.drop_rows(&keep)
    }

    /// The newest event time among its rows, if the table has one (column `col`).
    pub(crate) fn max_event_us(&self, col: Option<usize>) -> Option<i64> {
        let times = self.batch.column(col?).as_any().downcast_ref::<TimestampMicrosecondArray>()?;
        times.iter().flatten().max()
    }
}

/// The read generation of a replayable delta.
pub(crate) fn epoch(delta: &Delta) -> Option<u64> {
    match delta {
        Delta::Range(r) => Some(r.epoch),
        Delta::Request { .. } => None,
    }
}
