//! The batch a Kafka pipeline is reading, and how it is sealed into the
//! positions its commits are stamped and checked with. No broker involved,
//! so the rules are unit-tested.

use std::collections::HashMap;

use tributary_core::Positions;

use super::Tp;
use super::commit::Sealed;
use crate::prepare::Reject;
use crate::validate::Cell;

/// Rows, rejects and the offsets they came from, since the last seal.
#[derive(Default)]
pub(super) struct Batch {
    pub rows: Vec<Vec<Cell>>,
    pub rejects: Vec<Reject>,
    /// Dedup keys the rows claimed.
    pub keys: Vec<String>,
    /// First offset and next offset read per partition.
    pub ranges: HashMap<Tp, (i64, i64)>,
    pub bytes: usize,
    pub messages: usize,
    pub max_event_us: Option<i64>,
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

    /// Whether nothing was read since the last seal (every reject and row
    /// is a message read).
    pub fn is_empty(&self) -> bool {
        self.messages == 0
    }

    /// Seals the batch. `key` names a partition's position; `quarantined_to`
    /// holds the quarantine table's positions, which may be ahead of the data
    /// table's after a crash between the two commits: the rejects past them
    /// are this batch's, and the quarantine commit's zombie rule starts there.
    pub fn seal(self, key: impl Fn(&Tp) -> String, quarantined_to: &HashMap<Tp, i64>) -> Sealed {
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
            keys: self.keys,
            started_at,
            rejects_from,
            ends_at,
            max_event_us: self.max_event_us,
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
        let sealed = b.seal(|tp| format!("p{}", tp.1), &HashMap::new());
        assert_eq!((sealed.started_at.get("p0"), sealed.ends_at.get("p0")), (Some(10), Some(20)));
        assert_eq!((sealed.started_at.get("p1"), sealed.ends_at.get("p1")), (Some(3), Some(4)));
        assert_eq!(sealed.rejects_from, sealed.started_at);
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
        let sealed = b.seal(|tp| format!("p{}", tp.1), &HashMap::from([(tp(0), 15), (tp(9), 99)]));
        assert_eq!(sealed.started_at.get("p0"), Some(10));
        assert_eq!(sealed.rejects_from.get("p0"), Some(15));
        assert_eq!(sealed.rejects_from.get("p9"), None, "only partitions the batch read");
        let mut quarantine = Positions::default();
        quarantine.advance("p0", 15);
        assert!(!quarantine.overtakes(&sealed.rejects_from));
        assert!(quarantine.overtakes(&sealed.started_at));
    }
}
