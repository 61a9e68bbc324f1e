//! Synthetic e-commerce events for the quickstart and the benchmarks: mostly
//! good records, plus a known share of malformed records, exact duplicates
//! and late events, so the report can be checked against what was sent.

use chrono::{DateTime, Duration, Utc};

/// What the generator meant a line to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A valid, new event.
    Good,
    /// A valid, new event whose event time is days old.
    Late,
    /// A record that must be quarantined.
    Malformed,
    /// An exact re-send of an earlier good event.
    Duplicate,
}

/// Deterministic event source (SplitMix64), unique per run id.
#[derive(Debug)]
pub struct Generator {
    run: String,
    seq: u64,
    state: u64,
    recent: Vec<String>,
}

const CURRENCIES: [&str; 4] = ["EUR", "USD", "GBP", "JPY"];
const TYPES: [&str; 3] = ["purchase", "refund", "chargeback"];

impl Generator {
    /// A generator whose event ids start with `run`.
    pub fn new(run: &str, seed: u64) -> Self {
        Self { run: run.to_owned(), seq: 0, state: seed, recent: Vec::new() }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The next NDJSON line and what it is.
    pub fn next_line(&mut self, now: DateTime<Utc>) -> (String, Kind) {
        let roll = self.next_u64() % 1000;
        if roll < 10 {
            return (self.malformed(roll), Kind::Malformed);
        }
        if roll < 20 && !self.recent.is_empty() {
            let i = usize::try_from(self.next_u64() % self.recent.len() as u64).unwrap_or(0);
            return (self.recent[i].clone(), Kind::Duplicate);
        }
        let late = roll < 50;
        let age = if late {
            Duration::hours(24 + i64::try_from(self.next_u64() % 48).unwrap_or(0))
        } else {
            Duration::milliseconds(i64::try_from(self.next_u64() % 60_000).unwrap_or(0))
        };
        let line = self.event(now - age);
        if self.recent.len() < 4096 {
            self.recent.push(line.clone());
        } else {
            let i = usize::try_from(self.seq % 4096).unwrap_or(0);
            self.recent[i] = line.clone();
        }
        (line, if late { Kind::Late } else { Kind::Good })
    }

    fn event(&mut self, at: DateTime<Utc>) -> String {
        self.seq += 1;
        let r = self.next_u64();
        let cents = r % 50_000 + 100;
        format!(
            r#"{{"event_id":"{}-{}","user_id":{},"order_id":"o-{}","amount":"{}.{:02}","currency":"{}","event_type":"{}","event_time":"{}"}}"#,
            self.run,
            self.seq,
            r % 10_000,
            r % 1_000_000,
            cents / 100,
            cents % 100,
            CURRENCIES[usize::try_from(r % 4).unwrap_or(0)],
            TYPES[usize::try_from((r >> 8) % 3).unwrap_or(0)],
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        )
    }

    fn malformed(&mut self, roll: u64) -> String {
        self.seq += 1;
        let id = format!("{}-bad-{}", self.run, self.seq);
        match roll % 4 {
            0 => format!(r#"{{"event_id":"{id}","user_id":1,"amount":"#),
            1 => format!(
                r#"{{"event_id":"{id}","user_id":1,"amount":"9.99","currency":"EUR","event_type":"purchase","event_time":"2026-01-01T00:00:00Z"}}"#
            ),
            2 => format!(
                r#"{{"event_id":"{id}","user_id":"one","order_id":"o","amount":"9.99","currency":"EUR","event_type":"purchase","event_time":"2026-01-01T00:00:00Z"}}"#
            ),
            _ => format!(
                r#"{{"event_id":"{id}","user_id":1,"order_id":"o","amount":"9.99","currency":"EUR","event_type":"purchase","event_time":"last tuesday"}}"#
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_of_bad_duplicate_and_late_records_are_about_right() {
        let mut g = Generator::new("t", 7);
        let now = Utc::now();
        let mut counts = [0usize; 4];
        for _ in 0..100_000 {
            let (line, kind) = g.next_line(now);
            let parsed = serde_json::from_str::<serde_json::Value>(&line);
            match kind {
                Kind::Good => counts[0] += 1,
                Kind::Late => counts[1] += 1,
                Kind::Malformed => counts[2] += 1,
                Kind::Duplicate => {
                    assert!(parsed.is_ok());
                    counts[3] += 1;
                }
            }
        }
        assert!((800..1200).contains(&counts[2]), "{counts:?}");
        assert!((800..1200).contains(&counts[3]), "{counts:?}");
        assert!(counts[1] > 2000, "{counts:?}");
    }
}
