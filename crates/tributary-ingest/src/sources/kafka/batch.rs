//! The chunk a Kafka source is reading, and how it is sealed into the
//! position delta the pipeline stamps and checks its commits with. No
//! broker involved, so the rules are unit-tested.

use std::collections::HashMap;

use tributary_core::Positions;

use super::Tp;
use crate::pipeline::Range;
use crate::prepare::Reject;

/// Rejects, a count of rows (the source holds them, as columns) and the
/// offsets they came from, since the last seal.
pub(super) struct Batch {
    pub rows: usize,
    pub rejects: Vec<Reject>,
    /// First offset and next offset read per partition.
    pub ranges: HashMap<Tp, (i64, i64)>,
    pub bytes: usize,
    pub messages: usize,
    /// When the first message was taken.
    pub first_read: tokio::time::Instant,
    /// The batch's `_ingested_at`, read from the clock with its first
    /// message (as an HTTP body's rows share one): a clock read per message
    /// cost 4% of a drain.
    pub ingested_at_us: i64,
}

impl Default for Batch {
    fn default() -> Self {
        Self {
            rows: 0,
            rejects: Vec::new(),
            ranges: HashMap::new(),
            bytes: 0,
            messages: 0,
            first_read: tokio::time::Instant::now(),
            ingested_at_us: 0,
        }
    }
}

/// A sealed batch: its rejects, counts and the delta they cover.
pub(super) struct Sealed {
    pub rows: usize,
    pub rejects: Vec<Reject>,
    pub messages: usize,
    pub bytes: usize,
    pub range: Range,
}

impl Batch {
    /// Records that `tp` was read from `first` up to (excluding) `end`.
    pub fn read(&mut self, tp: &Tp, first: i64, end: i64) {
        match self.ranges.get_mut(tp) {
            Some(range) => range.1 = range.1.max(end),
            None => {
                self.ranges.insert(tp.clone(), (first, end));
            }
        }
    }

    /// Whether nothing was read since the last seal (every row and reject,
    /// an offset gap's too, lies in a range read).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Records and rejects held.
    pub fn records(&self) -> usize {
        self.rows + self.rejects.len()
    }

    /// Seals the batch as read generation `epoch`. `key` names a partition's
    /// position; `quarantined_to` holds the quarantine table's positions,
    /// which may be ahead of the data table's after a crash between the two
    /// commits: the rejects past them are this batch's, and the quarantine
    /// commit's zombie rule starts there.
    pub fn seal(self, key: impl Fn(&Tp) -> String, quarantined_to: &HashMap<Tp, i64>, epoch: u64) -> Sealed {
        let (mut started_at, mut ends_at) = (Positions::default(), Positions::default());
        let mut rejects_from = Positions::default();
        let offset = |o: i64| u64::try_from(o).unwrap_or(0);
        // Position keys are built once per batch, not per message.
        for (tp, (first, end)) in &self.ranges {
            let key = key(tp);
            let quarantined = quarantined_to.get(tp).copied().unwrap_or(0);
            started_at.advance(key.clone(), offset(*first));
            rejects_from.advance(key.clone(), offset((*first).max(quarantined)));
            ends_at.advance(key, offset(*end));
        }
        Sealed {
            rows: self.rows,
            rejects: self.rejects,
            messages: self.messages,
            bytes: self.bytes,
            range: Range { epoch, from: started_at, rejects_from, to: ends_at },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_batch_covers_from_its_first_offset_to_past_its_last() {
        let mut b = Batch::default();
        for o in 10..20 {
            b.read(&tp(0), o, o + 1);
        }
        b.read(&tp(1), 3, 4);
        let Range { epoch, from, rejects_from, to } = b.seal(|tp| format!("p{}", tp.1), &HashMap::new(), 7).range;
        assert_eq!((from.get("p0"), to.get("p0")), (Some(10), Some(20)));
        assert_eq!((from.get("p1"), to.get("p1")), (Some(3), Some(4)));
        assert_eq!(rejects_from, from);
        assert_eq!(epoch, 7);
    }

    /// The quarantine table got ahead (a crash between the two swaps): the
    /// quarantine commit must be checked from where its own input starts,
    /// or it would see itself overtaken and drop good batches forever.
    #[test]
    fn rejects_start_past_the_quarantine_tables_position() {
        let mut b = Batch::default();
        for o in 10..20 {
            b.read(&tp(0), o, o + 1);
        }
        let sealed = b.seal(|tp| format!("p{}", tp.1), &HashMap::from([(tp(0), 15), (tp(9), 99)]), 0).range;
        assert_eq!(sealed.from.get("p0"), Some(10));
        assert_eq!(sealed.rejects_from.get("p0"), Some(15));
        assert_eq!(sealed.rejects_from.get("p9"), None, "only partitions the batch read");
        let mut quarantine = Positions::default();
        quarantine.advance("p0", 15);
        assert!(!quarantine.overtakes(&sealed.rejects_from));
        assert!(quarantine.overtakes(&sealed.from));
    }
}
