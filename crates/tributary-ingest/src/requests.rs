//! Idempotent HTTP requests: a client's `Idempotency-Key` is committed, with
//! the request's receipt, in the same snapshot as the request's rows, so a
//! retry with the same key — to any worker, after any crash — gets the
//! original receipt and writes nothing.
//!
//! Where the keys live: in the summary of the snapshot that answered them
//! (`tributary.requests`), each snapshot holding only its own requests. A
//! table column was the alternative; summaries were chosen because:
//! - a request with no valid row (all rejected, or all duplicates) still has
//!   a receipt to give back, and a column would have no row to hold it;
//! - the receipt's counts (quarantined, duplicates) are not derivable from
//!   rows;
//! - the log is rebuilt and refreshed from metadata alone, without opening a
//!   data file, and user tables keep their schema.
//!
//! The cost is about 100 bytes per request in every later metadata file
//! until snapshot expiry removes the snapshot, which must therefore keep at
//! least the idempotency window.
//!
//! A rollback's snapshot names its target (`tributary.rollback-to`): the
//! walk goes on from the target, so the requests answered by the snapshots
//! rolled back are forgotten, and a retry of one is ingested again.
//!
//! The quarantine table carries the same summary on the snapshot that holds a
//! request's rejects: rejects land first, so after a crash between the two
//! commits the retry finds its rejects already quarantined and only writes
//! its rows.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tributary_core::positions::{SUMMARY_REQUESTS, SUMMARY_ROLLBACK_TO};
use tributary_table::{LoadedTable, TableError};

use crate::error::IngestError;
use crate::pipeline::Receipt;

/// Longest accepted `Idempotency-Key`.
pub const MAX_KEY_LEN: usize = 255;

/// A request's idempotency key and the fingerprint of its body, which tells
/// a retry from a different request that reused the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The client's key.
    pub key: String,
    /// The decoded body's length and CRC-32 ([`fingerprint`]).
    pub fingerprint: u64,
}

impl Idempotency {
    /// Checks a header value: 1 to 255 visible ASCII characters.
    pub fn parse(key: &str, body: &[u8]) -> Result<Self, IngestError> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(IngestError::InvalidIdempotencyKey(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters (a UUID is a good choice)"
            )));
        }
        Ok(Self { key: key.to_owned(), fingerprint: fingerprint(body) })
    }
}

/// A body's fingerprint: its length and CRC-32. Stable across versions and
/// machines (it is stored), and fast enough to cost nothing beside
/// validation (SIMD CRC, many GB/s); it only has to tell a retry from a
/// different request under the same key.
fn fingerprint(body: &[u8]) -> u64 {
    ((body.len() as u64) << 32) | u64::from(crc32fast::hash(body))
}

/// One request as recorded in a snapshot summary; short field names keep
/// the summary small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The original request id.
    #[serde(rename = "r")]
    pub request_id: String,
    /// Rows committed.
    #[serde(rename = "a")]
    pub accepted: usize,
    /// Records quarantined.
    #[serde(rename = "q")]
    pub quarantined: usize,
    /// Records dropped as duplicates.
    #[serde(rename = "d")]
    pub duplicates: usize,
    /// Body fingerprint, hex.
    #[serde(rename = "h")]
    pub fingerprint: String,
}

impl Entry {
    /// The entry for a request about to be committed.
    pub fn new(request_id: &str, idem: &Idempotency, accepted: usize, quarantined: usize, duplicates: usize) -> Self {
        Self {
            request_id: request_id.to_owned(),
            accepted,
            quarantined,
            duplicates,
            fingerprint: format!("{:016x}", idem.fingerprint),
        }
    }

    /// The receipt a retry gets, or the refusal of a different body sent
    /// under the same key.
    pub fn replay(&self, idem: &Idempotency, snapshot_id: i64) -> Result<Receipt, IngestError> {
        if self.fingerprint != format!("{:016x}", idem.fingerprint) {
            return Err(IngestError::KeyReused(idem.key.clone()));
        }
        Ok(Receipt {
            request_id: self.request_id.clone(),
            accepted: self.accepted,
            quarantined: self.quarantined,
            duplicates: self.duplicates,
            snapshot_id: Some(snapshot_id),
        })
    }
}

/// The summary value recording `entries`, by key.
pub fn summary(entries: &[(String, Entry)]) -> (String, String) {
    let map: HashMap<&str, &Entry> = entries.iter().map(|(k, e)| (k.as_str(), e)).collect();
    (SUMMARY_REQUESTS.to_owned(), serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned()))
}

/// The requests one table recorded within the window, kept in step with the
/// table by reading the summaries of snapshots added since the last look.
#[derive(Debug)]
pub struct RequestLog {
    window_ms: i64,
    /// Key → entry and the snapshot that recorded it.
    entries: HashMap<String, (Entry, i64)>,
    /// Keys in the order they were committed, with the commit time.
    order: VecDeque<(i64, String)>,
    seen_sequence: i64,
}

impl RequestLog {
    /// The log of `table`'s requests committed within `window` before `now_ms`.
    pub fn rebuild(table: &LoadedTable, window: Duration, now_ms: i64) -> Result<Self, IngestError> {
        let window_ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        let mut log = Self { window_ms, entries: HashMap::new(), order: VecDeque::new(), seen_sequence: 0 };
        let since = now_ms.saturating_sub(window_ms);
        log.read(table, |ts_ms, _| ts_ms >= since)?;
        Ok(log)
    }

    /// Adds what snapshots of `table` newer than the last look recorded;
    /// after a rollback among them, reads the log again from the table.
    pub fn refresh(&mut self, table: &LoadedTable) -> Result<(), IngestError> {
        let seen = self.seen_sequence;
        let meta = &table.metadata;
        let mut newer = meta.current_snapshot();
        let mut rolled_back = false;
        while let Some(snap) = newer.filter(|s| s.sequence_number() > seen) {
            rolled_back |= snap.summary().additional_properties.contains_key(SUMMARY_ROLLBACK_TO);
            newer = snap.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p));
        }
        if rolled_back {
            let now_ms = meta.current_snapshot().map_or(0, |s| s.timestamp_ms());
            let window = Duration::from_millis(u64::try_from(self.window_ms).unwrap_or(u64::MAX));
            *self = Self::rebuild(table, window, now_ms)?;
            return Ok(());
        }
        self.read(table, |_, seq| seq > seen)?;
        if let Some(newest) = self.order.back().map(|(ts, _)| *ts) {
            self.evict(newest.saturating_sub(self.window_ms));
        }
        Ok(())
    }

    /// The entry recorded for `key` and the snapshot that holds it.
    pub fn get(&self, key: &str) -> Option<&(Entry, i64)> {
        self.entries.get(key)
    }

    /// Walks the ancestry of the current snapshot while `wanted(timestamp,
    /// sequence)` holds, oldest entries last read first kept; from a
    /// rollback's snapshot it goes on from the rollback's target.
    fn read(&mut self, table: &LoadedTable, wanted: impl Fn(i64, i64) -> bool) -> Result<(), IngestError> {
        let meta = &table.metadata;
        let mut found = Vec::new();
        let mut next = meta.current_snapshot_id();
        while let Some(snap) = next.and_then(|id| meta.snapshot_by_id(id)) {
            if !wanted(snap.timestamp_ms(), snap.sequence_number()) {
                break;
            }
            if let Some(text) = snap.summary().additional_properties.get(SUMMARY_REQUESTS) {
                let entries: HashMap<String, Entry> = serde_json::from_str(text).map_err(|e| {
                    IngestError::Table(TableError::Corrupt {
                        table: table.name.clone(),
                        reason: format!(
                            "snapshot {} has unreadable {SUMMARY_REQUESTS} ({e}); idempotent requests cannot be checked",
                            snap.snapshot_id()
                        ),
                    })
                })?;
                found.push((snap.timestamp_ms(), snap.snapshot_id(), entries));
            }
            let props = &snap.summary().additional_properties;
            next = match props.get(SUMMARY_ROLLBACK_TO) {
                Some(to) => to.parse().ok(),
                None => snap.parent_snapshot_id(),
            };
        }
        for (ts, snapshot_id, entries) in found.into_iter().rev() {
            for (key, entry) in entries {
                self.order.push_back((ts, key.clone()));
                self.entries.insert(key, (entry, snapshot_id));
            }
        }
        self.seen_sequence = self.seen_sequence.max(meta.last_sequence_number());
        Ok(())
    }

    /// Forgets keys committed before `before_ms`.
    fn evict(&mut self, before_ms: i64) {
        while self.order.front().is_some_and(|(ts, _)| *ts < before_ms) {
            if let Some((_, key)) = self.order.pop_front() {
                self.entries.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_must_be_short_visible_ascii() {
        assert!(Idempotency::parse("3f2b-17", b"x").is_ok());
        for bad in ["", "has space", "tab\t", "ünïcode", &"k".repeat(MAX_KEY_LEN + 1)] {
            let err = Idempotency::parse(bad, b"x").unwrap_err().to_string();
            assert!(err.contains("Idempotency-Key"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn a_replay_with_another_body_is_refused() {
        let idem = Idempotency::parse("k", b"{\"a\":1}").unwrap();
        let entry = Entry::new("req", &idem, 1, 0, 0);
        let receipt = entry.replay(&idem, 7).unwrap();
        assert_eq!((receipt.request_id.as_str(), receipt.accepted, receipt.snapshot_id), ("req", 1, Some(7)));
        let other = Idempotency::parse("k", b"{\"a\":2}").unwrap();
        assert!(matches!(entry.replay(&other, 7), Err(IngestError::KeyReused(_))));
    }

    #[test]
    fn the_summary_round_trips() {
        let idem = Idempotency::parse("k1", b"body").unwrap();
        let (key, value) = summary(&[("k1".to_owned(), Entry::new("r1", &idem, 3, 1, 2))]);
        assert_eq!(key, SUMMARY_REQUESTS);
        let back: HashMap<String, Entry> = serde_json::from_str(&value).unwrap();
        assert_eq!(back["k1"], Entry::new("r1", &idem, 3, 1, 2));
        assert!(value.len() < 80, "{value}");
    }
}
