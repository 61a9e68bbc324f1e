//! Source positions: for each source partition, the next position to read.
//!
//! Positions are what makes ingestion exactly-once: they are stored in the
//! summary of the same Iceberg snapshot as the data they produced, so the table
//! is the only authority on how far a pipeline has read. The invariant kept
//! here is monotonicity: merging never moves a partition backwards.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Snapshot-summary key holding the pipeline id.
pub const SUMMARY_PIPELINE: &str = "tributary.pipeline";
/// Snapshot-summary key holding the JSON positions.
pub const SUMMARY_POSITIONS: &str = "tributary.positions";
/// Snapshot-summary key holding the writer's fencing epoch.
pub const SUMMARY_EPOCH: &str = "tributary.epoch";

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
    /// started: the sign that another writer consumed the same input, so a
    /// batch that began at `started_at` is a zombie.
    pub fn overtakes(&self, started_at: &Positions) -> bool {
        started_at.0.iter().any(|(k, start)| self.get(k).is_some_and(|now| now > *start))
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
    fn json_round_trips() {
        let mut p = Positions::default();
        p.advance("http", 42);
        assert_eq!(Positions::from_json(&p.to_json()).unwrap(), p);
    }
}
