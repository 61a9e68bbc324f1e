//! Event-time arithmetic: windows, days and the ranges a run recomputes.
//!
//! Times are microseconds since the epoch (Iceberg's timestamp unit). A
//! window is named by its start, a multiple of the hop; the windows holding
//! time `t` start in `(t - size, t]`. Output tables are partitioned by day,
//! and a day is the unit a run replaces: its files are removed and written
//! again, in one commit.

use std::collections::BTreeSet;

/// One day in microseconds: the unit a run replaces.
pub const DAY_US: i64 = 86_400_000_000;

/// `v` rounded down to a multiple of `step` (also for negative `v`).
pub fn floor(v: i64, step: i64) -> i64 {
    v - v.rem_euclid(step)
}

/// Window geometry in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Window length.
    pub size: i64,
    /// Distance between starts.
    pub hop: i64,
}

impl Windows {
    /// The starts of the windows holding `t`, newest first.
    pub fn of(self, t: i64) -> impl Iterator<Item = i64> {
        let last = floor(t, self.hop);
        (0..self.size / self.hop).map(move |k| last - k * self.hop)
    }

    /// The starts of the windows whose end passes from `<= from` to
    /// `<= to` when the watermark moves from `from` to `to`: the windows
    /// this move emits. `from = None` (no watermark yet) starts at the
    /// first window holding `first_event`.
    pub fn emitted(self, from: Option<i64>, to: i64, first_event: i64) -> Option<(i64, i64)> {
        let lo = match from {
            Some(from) => floor(from - self.size, self.hop) + self.hop,
            None => floor(first_event, self.hop) - (self.size - self.hop),
        };
        let hi = floor(to - self.size, self.hop);
        (lo <= hi).then_some((lo, hi))
    }
}

/// A set of window starts (multiples of one hop), kept as inclusive runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Starts {
    runs: Vec<(i64, i64)>,
}

impl Starts {
    /// The set of `singles` and the runs `ranges`, merged.
    pub fn new(hop: i64, singles: &BTreeSet<i64>, ranges: &[(i64, i64)]) -> Self {
        let mut all: Vec<(i64, i64)> = singles.iter().map(|s| (*s, *s)).chain(ranges.iter().copied()).collect();
        all.sort_unstable();
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for (a, b) in all {
            match runs.last_mut() {
                Some(last) if a <= last.1 + hop => last.1 = last.1.max(b),
                _ => runs.push((a, b)),
            }
        }
        Self { runs }
    }

    /// Whether there is no start.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The runs, inclusive.
    pub fn runs(&self) -> &[(i64, i64)] {
        &self.runs
    }

    /// The days holding a start, each a day's first microsecond.
    pub fn days(&self) -> BTreeSet<i64> {
        let mut days = BTreeSet::new();
        for (a, b) in &self.runs {
            let mut d = floor(*a, DAY_US);
            while d <= *b {
                days.insert(d);
                d += DAY_US;
            }
        }
        days
    }

    /// Keeps only the starts whose day satisfies `keep`.
    pub fn retain_days(&mut self, keep: impl Fn(i64) -> bool, hop: i64) {
        let mut runs = Vec::new();
        for (a, b) in std::mem::take(&mut self.runs) {
            let mut start = a;
            while start <= b {
                let day = floor(start, DAY_US);
                // The last start of this run within the day.
                let end = b.min(floor(day + DAY_US - 1 - start, hop) + start);
                if keep(day) {
                    runs.push((start, end));
                }
                start = end + hop;
            }
        }
        *self = Self::new(hop, &BTreeSet::new(), &runs);
    }
}

/// `days` (day starts) as time ranges `[from, to)`, adjacent days merged.
pub fn day_ranges(days: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    Starts::new(DAY_US, days, &[]).runs().iter().map(|(first, last)| (*first, last + DAY_US)).collect()
}

/// The days (day starts) that times in `[from, to)` fall in.
pub fn days_between(from: i64, to: i64) -> BTreeSet<i64> {
    (floor(from, DAY_US)..to).step_by(usize::try_from(DAY_US).unwrap_or(usize::MAX)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000_000;

    #[test]
    fn a_time_falls_in_size_over_hop_windows() {
        let hopping = Windows { size: 24 * H, hop: H };
        let t = 10 * DAY_US + 5 * H + 17;
        let starts: Vec<i64> = hopping.of(t).collect();
        assert_eq!(starts.len(), 24);
        assert!(starts.iter().all(|s| *s <= t && t < s + 24 * H && s % H == 0));
        let tumbling = Windows { size: H, hop: H };
        assert_eq!(tumbling.of(-1).collect::<Vec<_>>(), vec![-H], "before the epoch");
    }

    #[test]
    fn a_watermark_move_emits_the_windows_whose_end_it_passes() {
        let w = Windows { size: 2 * H, hop: H };
        // Windows end at start + 2h: from wm 5h to 8h the windows ending
        // at 6h, 7h and 8h are emitted: starts 4h, 5h, 6h.
        assert_eq!(w.emitted(Some(5 * H), 8 * H, 0), Some((4 * H, 6 * H)));
        assert_eq!(w.emitted(Some(5 * H), 5 * H + 10, 0), None);
        // No watermark yet: from the first window holding the first event.
        assert_eq!(w.emitted(None, 8 * H, 3 * H + 5), Some((2 * H, 6 * H)));
    }

    #[test]
    fn starts_merge_into_runs_and_split_by_day() {
        let singles: BTreeSet<i64> = [H, 2 * H, 5 * H].into();
        let s = Starts::new(H, &singles, &[(3 * H, 4 * H)]);
        assert_eq!(s.runs(), &[(H, 5 * H)]);
        let mut across = Starts::new(H, &BTreeSet::new(), &[(DAY_US - 2 * H, DAY_US + H)]);
        assert_eq!(across.days(), [0, DAY_US].into());
        across.retain_days(|d| d == DAY_US, H);
        assert_eq!(across.runs(), &[(DAY_US, DAY_US + H)]);
        assert_eq!(day_ranges(&[0, DAY_US, 3 * DAY_US].into()), vec![(0, 2 * DAY_US), (3 * DAY_US, 4 * DAY_US)]);
        assert_eq!(days_between(DAY_US + 5, 3 * DAY_US), [DAY_US, 2 * DAY_US].into());
    }
}
