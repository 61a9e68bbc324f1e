//! Source positions: for each source partition, the next position to read.
//!
//! Positions are what makes ingestion exactly-once: they are stored in the
//! summary of the same Iceberg snapshot as the data they produced, so the table
//! is the only authority on how far a pipeline has read. The invariant kept
//! here is monotonicity: merging never moves a partition backwards.
//!
//! Every position is a number that only grows, but what it counts depends on
//! the source, and so does what makes a batch a zombie ([`PositionKind`]):
//!
//! | key | kind | merge | zombie when the table's value |
//! |---|---|---|---|
//! | `kafka:<cluster>/<topic>/<partition>` | next offset | max | is past the batch's first offset (or, for a data table, before it: rolled back) |
//! | `file:<path>` | next row of the file | max | is past the batch's first row (or before it) |
//! | `upstream:<table>` | upstream sequence number read to | max | is past the batch's first sequence number (or before it) |
//! | `watermark` | a window job's watermark, microseconds since the epoch | max | never: it is state, not input |
//! | `http` | rows committed (a count) | sum, by the table pipeline | never: HTTP input is not replayed |
//!
//! Snapshot ids are random, so they are never positions (a zone job records
//! the upstream's sequence number instead). HTTP requests are made
//! idempotent by their `Idempotency-Key`, a set rather than a number, kept in
//! [`SUMMARY_REQUESTS`] (see `tributary-ingest::requests`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Snapshot-summary key holding the pipeline id.
pub const SUMMARY_PIPELINE: &str = "tributary.pipeline";
/// Snapshot-summary key holding the JSON positions.
pub const SUMMARY_POSITIONS: &str = "tributary.positions";
/// Snapshot-summary key holding the writer's fencing epoch.
pub const SUMMARY_EPOCH: &str = "tributary.epoch";
/// Snapshot-summary key holding the idempotency keys of the HTTP requests
/// this snapshot answered, with their receipts.
pub const SUMMARY_REQUESTS: &str = "tributary.requests";
/// Snapshot-summary key of a snapshot that snapshot expiry adds: every
/// pipeline's state at that point (`{pipeline: {positions, epoch}}`), so
/// recovery stops there instead of walking into expired history.
pub const SUMMARY_CARRIED: &str = "tributary.carried";
/// Snapshot-summary key of a rollback's snapshot: the id of the snapshot
/// whose files and pipeline states it restored. Walks over the history that
/// want what the table holds (the HTTP request log) go on from there
/// instead of from its parent.
pub const SUMMARY_ROLLBACK_TO: &str = "tributary.rollback-to";

/// What a position counts, read from its key (the format tables hold today).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionKind {
    /// A Kafka partition's next offset.
    KafkaOffset,
    /// A landing file's next row.
    FileRow,
    /// An upstream table's sequence number, for zone jobs.
    UpstreamSequence,
    /// The HTTP endpoint's running count of committed rows.
    HttpCount,
    /// A window job's watermark (event time, microseconds): it only grows,
    /// and riding with the positions it survives snapshot expiry.
    Watermark,
}

impl PositionKind {
    /// The kind of position `key` names. A key of a kind this version does
    /// not know is treated as an offset: merged by max, which keeps it
    /// monotone, and compared like one.
    pub fn of(key: &str) -> Self {
        match key.split_once(':').map_or(key, |(prefix, _)| prefix) {
            "http" => Self::HttpCount,
            "file" => Self::FileRow,
            "upstream" => Self::UpstreamSequence,
            "watermark" => Self::Watermark,
            _ => Self::KafkaOffset,
        }
    }

    /// The zombie rule: whether a batch that began at `started` is stale
    /// because the table already holds `committed` for the same key.
    pub fn overtaken(self, committed: u64, started: u64) -> bool {
        match self {
            // Input that can be read again: someone committed past the
            // batch's first record, so it landed (part of) this input.
            Self::KafkaOffset | Self::FileRow | Self::UpstreamSequence => committed > started,
            // Every HTTP request is new input; retries are recognised by
            // their idempotency key, not by a position. A watermark is no
            // input at all.
            Self::HttpCount | Self::Watermark => false,
        }
    }
}

/// Next position to read, per source partition.
///
/// Keys name the partition: `http` for the HTTP endpoint's running record
/// count, `kafka:<cluster>/<topic>/<partition>` for Kafka, `file:<path>` for
/// landing files, `upstream:<table>` for zone jobs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Positions(pub BTreeMap<String, u64>);

impl Positions {
    /// The position recorded for `key`, if any.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.0.get(key).copied()
    }

    /// Sets `key` to `next`, never moving it backwards.
    pub fn advance(&mut self, key: impl Into<String>, next: u64) {
        let slot = self.0.entry(key.into()).or_insert(next);
        *slot = (*slot).max(next);
    }

    /// Merges `other` into `self`, partition by partition, keeping the maximum.
    pub fn merge(&mut self, other: &Positions) {
        for (k, v) in &other.0 {
            self.advance(k.clone(), *v);
        }
    }

    /// Whether any partition of `started_at` has been committed past where it
    /// started, by the rule of its kind: the sign that another writer
    /// consumed the same input, so a batch that began at `started_at` is a
    /// zombie.
    pub fn overtakes(&self, started_at: &Positions) -> bool {
        started_at.0.iter().any(|(k, start)| self.get(k).is_some_and(|now| PositionKind::of(k).overtaken(now, *start)))
    }

    /// Whether, for some position of `started_at` of a replayable kind,
    /// these positions stand before it: the input in between was never
    /// committed here, so a batch beginning at `started_at` would skip it.
    /// A table's positions go back only when it is rolled back.
    pub fn falls_behind(&self, started_at: &Positions) -> bool {
        started_at.0.iter().any(|(k, start)| {
            !matches!(PositionKind::of(k), PositionKind::HttpCount | PositionKind::Watermark)
                && self.get(k).is_some_and(|now| now < *start)
        })
    }

    /// The JSON text stored in the snapshot summary.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Parses the JSON text stored in a snapshot summary.
    pub fn from_json(s: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_never_moves_backwards() {
        let mut p = Positions::default();
        p.advance("a", 10);
        p.advance("a", 5);
        assert_eq!(p.get("a"), Some(10));
        p.advance("a", 11);
        assert_eq!(p.get("a"), Some(11));
    }

    #[test]
    fn merge_is_monotone_for_every_interleaving() {
        // Exhaustive over small sequences: whatever order updates arrive in,
        // the merged position equals the maximum ever seen.
        let updates = [3u64, 1, 7, 7, 2, 9, 0];
        for split in 0..updates.len() {
            let (a, b) = updates.split_at(split);
            let mut left = Positions::default();
            a.iter().for_each(|v| left.advance("p", *v));
            let mut right = Positions::default();
            b.iter().for_each(|v| right.advance("p", *v));
            let mut merged = left.clone();
            merged.merge(&right);
            assert_eq!(merged.get("p"), Some(9));
            assert!(merged.get("p") >= left.get("p"));
        }
    }

    #[test]
    fn overtakes_detects_a_zombie_batch() {
        let mut committed = Positions::default();
        committed.advance("kafka:c/t/0", 100);
        let mut started = Positions::default();
        started.advance("kafka:c/t/0", 100);
        assert!(!committed.overtakes(&started));
        committed.advance("kafka:c/t/0", 150);
        assert!(committed.overtakes(&started));
        let mut other = Positions::default();
        other.advance("kafka:c/t/1", 0);
        assert!(!committed.overtakes(&other));
    }

    #[test]
    fn a_table_behind_the_batch_is_noticed_except_for_counts() {
        let mut committed = Positions::default();
        committed.advance("kafka:c/t/0", 100);
        committed.advance("http", 10);
        let mut started = Positions::default();
        started.advance("kafka:c/t/0", 100);
        started.advance("kafka:c/t/1", 5);
        started.advance("http", 50);
        assert!(!committed.falls_behind(&started), "level, unknown partition, or a count");
        started.advance("kafka:c/t/0", 150);
        assert!(committed.falls_behind(&started));
    }

    #[test]
    fn each_kind_has_its_zombie_rule() {
        assert_eq!(PositionKind::of("kafka:c/t/0"), PositionKind::KafkaOffset);
        assert_eq!(PositionKind::of("file:landing/a.csv"), PositionKind::FileRow);
        assert_eq!(PositionKind::of("upstream:raw.t"), PositionKind::UpstreamSequence);
        assert_eq!(PositionKind::of("http"), PositionKind::HttpCount);
        assert_eq!(PositionKind::of("watermark"), PositionKind::Watermark);
        let mut committed = Positions::default();
        committed.advance("http", 500);
        committed.advance("file:a.csv", 10);
        let mut started = Positions::default();
        started.advance("http", 100);
        assert!(!committed.overtakes(&started), "an HTTP count is never a zombie sign");
        started.advance("file:a.csv", 9);
        assert!(committed.overtakes(&started));
    }

    #[test]
    fn json_round_trips() {
        let mut p = Positions::default();
        p.advance("http", 42);
        assert_eq!(Positions::from_json(&p.to_json()).unwrap(), p);
    }
}
