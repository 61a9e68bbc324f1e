//! One source's chunks waiting in its table's pipeline, and the one set of
//! triggers that turns them into a landing: rows, bytes, age, or a chunk
//! marked urgent. Each source has its own lane because each snapshot carries
//! one pipeline's positions; the lanes of a table land one at a time, from
//! one task, so a table's sources never race each other's commits.
//!
//! A lane also fences its source: once a chunk of read generation `e` did
//! not land, later chunks of generation `e` follow a gap and are refused;
//! the source re-reads from the table's positions under a newer generation.

use tokio::time::Instant;
use tributary_core::config::CommitPolicy;

use super::chunk::{Chunk, Delta};

/// The chunks of one source since its last landing.
pub(super) struct Lane {
    /// The pipeline id stamped into this source's snapshots.
    pub pipeline: String,
    pub policy: CommitPolicy,
    chunks: Vec<Chunk>,
    /// Rows plus rejects buffered.
    records: usize,
    bytes: usize,
    /// When the age trigger fires; set by the first chunk buffered.
    deadline: Option<Instant>,
    urgent: bool,
    /// Chunks of an older read generation are refused.
    fence: u64,
}

impl Lane {
    pub fn new(pipeline: String, policy: CommitPolicy) -> Self {
        Self { pipeline, policy, chunks: Vec::new(), records: 0, bytes: 0, deadline: None, urgent: false, fence: 0 }
    }

    /// Whether `chunk` comes from a read generation that was fenced off.
    pub fn fenced(&self, chunk: &Chunk) -> bool {
        matches!(&chunk.delta, Delta::Range(r) if r.epoch < self.fence)
    }

    /// Buffers `chunk`; the age trigger fires `max_latency` after the first
    /// record of the oldest chunk buffered arrived.
    pub fn push(&mut self, chunk: Chunk) {
        self.records += chunk.batch.num_rows() + chunk.rejects.len();
        self.bytes += chunk.bytes;
        self.urgent |= chunk.urgent;
        let due = chunk.since + self.policy.max_latency;
        self.deadline = Some(self.deadline.map_or(due, |d| d.min(due)));
        self.chunks.push(chunk);
    }

    /// The buffered chunk of the HTTP request with idempotency key `key`.
    pub fn pending_request(&mut self, key: &str) -> Option<&mut Chunk> {
        self.chunks.iter_mut().find(|c| c.idempotency().is_some_and(|i| i.key == key))
    }

    /// When the age trigger fires, if anything is buffered.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Whether a size trigger fired (rows, bytes) or a chunk is urgent.
    pub fn full(&self) -> bool {
        !self.chunks.is_empty()
            && (self.urgent || self.records >= self.policy.max_rows || self.bytes >= self.policy.max_bytes)
    }

    /// Whether any trigger fired by `now`, the age trigger included.
    pub fn due(&self, now: Instant) -> bool {
        self.full() || (!self.chunks.is_empty() && self.deadline.is_some_and(|d| d <= now))
    }

    /// Takes every buffered chunk, in arrival order.
    pub fn take(&mut self) -> Vec<Chunk> {
        (self.records, self.bytes, self.deadline, self.urgent) = (0, 0, None, false);
        std::mem::take(&mut self.chunks)
    }

    /// Refuses every later chunk of a read generation up to `epoch`.
    pub fn fence(&mut self, epoch: u64) {
        self.fence = self.fence.max(epoch + 1);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use arrow_array::RecordBatch;
    use arrow_schema::Schema;

    use super::*;
    use crate::pipeline::chunk::Range;

    fn policy() -> CommitPolicy {
        CommitPolicy {
            max_rows: 10,
            max_bytes: 1000,
            max_latency: Duration::from_millis(200),
            target_file_size_bytes: 1 << 20,
        }
    }

    fn chunk_at(records: usize, bytes: usize, epoch: u64, since: Instant) -> Chunk {
        let mut c = chunk(records, bytes, epoch);
        c.since = since;
        c
    }

    fn chunk(records: usize, bytes: usize, epoch: u64) -> Chunk {
        let batch = RecordBatch::new_empty(Arc::new(Schema::empty()));
        let rejects = (0..records)
            .map(|i| crate::prepare::Reject {
                raw: vec![],
                rejection: crate::validate::Rejection { kind: "invalid_json", message: String::new(), field: None },
                position: i.to_string(),
            })
            .collect();
        let delta = Delta::Range(Range { epoch, ..Range::default() });
        Chunk::new(batch, rejects, records, bytes, 0, delta).0
    }

    #[test]
    fn each_trigger_fires_and_taking_resets_them() {
        let now = Instant::now();
        let mut lane = Lane::new("kafka:k".into(), policy());
        assert!(!lane.due(now) && lane.deadline().is_none(), "an empty lane is never due");
        lane.push(chunk_at(4, 10, 0, now));
        assert!(!lane.due(now) && !lane.full());
        assert_eq!(lane.deadline(), Some(now + Duration::from_millis(200)), "age counts from the first record");
        lane.push(chunk_at(4, 10, 0, now + Duration::from_millis(150)));
        assert_eq!(lane.deadline(), Some(now + Duration::from_millis(200)));
        assert!(lane.due(now + Duration::from_millis(200)), "age trigger");
        assert!(!lane.full(), "age is not size");
        lane.push(chunk_at(2, 10, 0, now));
        assert!(lane.full(), "row trigger: rows and rejects count");
        assert_eq!(lane.take().len(), 3);
        assert!(!lane.due(now + Duration::from_secs(9)) && lane.deadline().is_none());
        // A chunk that queued while a landing ran is due from when it was read.
        lane.push(chunk_at(1, 1, 0, now - Duration::from_millis(150)));
        assert_eq!(lane.deadline(), Some(now + Duration::from_millis(50)));
        lane.take();
        lane.push(chunk_at(1, 1000, 0, now));
        assert!(lane.full(), "byte trigger");
        lane.take();
        let mut urgent = chunk_at(1, 1, 0, now);
        urgent.urgent = true;
        lane.push(urgent);
        assert!(lane.full(), "an urgent chunk lands at once");
    }

    #[test]
    fn a_fenced_generation_is_refused_and_a_newer_one_is_not() {
        let mut lane = Lane::new("kafka:k".into(), policy());
        assert!(!lane.fenced(&chunk(1, 1, 0)));
        lane.fence(3);
        assert!(lane.fenced(&chunk(1, 1, 3)));
        assert!(lane.fenced(&chunk(1, 1, 0)));
        assert!(!lane.fenced(&chunk(1, 1, 4)));
        lane.fence(1);
        assert!(lane.fenced(&chunk(1, 1, 3)), "a fence never moves back");
    }
}
