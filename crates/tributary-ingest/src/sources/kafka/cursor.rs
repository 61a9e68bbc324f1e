//! Which offsets a Kafka pipeline takes: the part of reading that decides
//! exactly-once, kept free of the consumer so it is tested without a broker.

use std::collections::{HashMap, HashSet};

use super::Tp;

/// Per partition: the next offset to take, whether the consumer is known to
/// stand there, and where this worker began when the table holds nothing.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    /// Next offset to take per partition (committed position or beyond).
    pub next: HashMap<Tp, i64>,
    /// Partitions whose seek to `next` has not succeeded yet: the consumer
    /// may deliver from anywhere, so nothing of them is taken.
    pub unsought: HashSet<Tp>,
    /// For partitions the table holds no position for: the first offset this
    /// worker read or pinned there, so a dropped batch is re-read from it.
    pub origin: HashMap<Tp, i64>,
}

impl Cursor {
    /// Whether the message at `offset` of `tp` is taken; if so, the
    /// partition moves past it. Messages below the position are replays of
    /// committed input; messages of a partition whose seek is pending could
    /// lie past a gap.
    pub fn admit(&mut self, tp: &Tp, offset: i64) -> bool {
        if !self.unsought.is_empty() && self.unsought.contains(tp) {
            return false;
        }
        match self.next.get_mut(tp) {
            Some(next) if offset < *next => false,
            Some(next) => {
                *next = offset + 1;
                true
            }
            None => {
                self.next.insert(tp.clone(), offset + 1);
                self.origin.entry(tp.clone()).or_insert(offset);
                true
            }
        }
    }

    /// Starts again from the positions the table holds: a partition without
    /// one starts where this worker first began reading it, so that what it
    /// read and dropped is read again rather than skipped.
    pub fn reset(&mut self, committed: &HashMap<Tp, i64>) {
        self.next = committed.clone();
        self.origin.retain(|tp, _| !committed.contains_key(tp));
        for (tp, first) in &self.origin {
            self.next.insert(tp.clone(), *first);
        }
    }

    /// Holds every partition of `assigned` that has a position until its
    /// seek succeeds ([`Self::sought`]).
    pub fn hold(&mut self, assigned: impl IntoIterator<Item = Tp>) {
        self.unsought.clear();
        for tp in assigned {
            if self.next.contains_key(&tp) {
                self.unsought.insert(tp);
            }
        }
    }

    /// The seek of `tp` succeeded: its messages are taken again.
    pub fn sought(&mut self, tp: &Tp) {
        self.unsought.remove(tp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> Tp {
        ("t".to_owned(), p)
    }

    #[test]
    fn a_partition_whose_seek_failed_takes_nothing_until_it_succeeds() {
        let mut c = Cursor::default();
        c.reset(&HashMap::from([(tp(0), 100)]));
        c.hold([tp(0), tp(1)]);
        // The consumer still stands past the gap: taking 250 would skip 100..250.
        assert!(!c.admit(&tp(0), 250));
        assert!(!c.admit(&tp(0), 100));
        assert!(c.admit(&tp(1), 7), "a partition without a position is not held");
        c.sought(&tp(0));
        assert!(c.admit(&tp(0), 100));
        assert_eq!(c.next[&tp(0)], 101);
    }

    #[test]
    fn committed_input_is_skipped_and_new_input_advances() {
        let mut c = Cursor::default();
        c.reset(&HashMap::from([(tp(0), 10)]));
        assert!(!c.admit(&tp(0), 9));
        assert!(c.admit(&tp(0), 10));
        assert!(c.admit(&tp(0), 12));
        assert!(!c.admit(&tp(0), 11), "never backwards");
        assert_eq!(c.next[&tp(0)], 13);
    }

    #[test]
    fn dropped_input_without_a_position_is_read_again_from_where_it_began() {
        let mut c = Cursor::default();
        assert!(c.admit(&tp(3), 40));
        assert!(c.admit(&tp(3), 41));
        // The batch was dropped (a zombie) and the table still has no position.
        c.reset(&HashMap::new());
        assert_eq!(c.next[&tp(3)], 40);
        assert!(c.admit(&tp(3), 40));
        // Once the table holds one, the origin is forgotten.
        c.reset(&HashMap::from([(tp(3), 42)]));
        assert!(c.origin.is_empty());
        assert_eq!(c.next[&tp(3)], 42);
    }
}
