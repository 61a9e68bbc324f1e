//! Measurement helpers shared by the benchmark programs.

use std::time::Duration;

pub mod lake;

/// Peak resident set size of this process (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM:")
}

/// Resident set size of this process now (VmRSS), in MiB.
pub fn rss_mib() -> f64 {
    status_mib("VmRSS:")
}

/// A kB field of `/proc/self/status`, in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Bytes of the files under `dir`, recursively.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// CPU time (user + system) this process has used so far, in seconds. On a
/// shared two-core machine it separates our cost from the broker's, which
/// wall-clock rates cannot. Reads `/proc/self/stat` (Linux clock ticks are
/// 1/100 s).
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Bytes this process has read through read(2) and friends (`rchar` of
/// `/proc/self/io`), in MiB.
pub fn mib_read() -> f64 {
    std::fs::read_to_string("/proc/self/io")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0.0, |b| b / 1048576.0)
}

/// `1234567` as `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Tiny deterministic generator (xorshift), so that every run generates
/// the same rows.
pub struct Rng(pub u64);

impl Rng {
    /// The next value below `n` (below 1 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Runs this program again as `phase LAKE_DIR ARGS…` and parses the JSON
/// it prints: each benchmark phase in a process of its own, so that its
/// CPU time and peak RSS are its own.
pub fn child(lake_dir: &std::path::Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(std::env::current_exe()?).arg("phase").arg(lake_dir).args(args).output()?;
    anyhow::ensure!(out.status.success(), "phase {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Argument `i` as a count (`10_000_000` allowed), `default` if absent.
pub fn count_arg(args: &[String], i: usize, default: usize) -> anyhow::Result<usize> {
    Ok(args.get(i).map(|r| r.replace('_', "").parse()).transpose()?.unwrap_or(default))
}

/// A number field of a phase's JSON, 0 if absent.
pub fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// The `p` quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
    sorted[((sorted.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize]
}

/// Durations as sorted milliseconds.
pub fn sorted_ms(mut d: Vec<Duration>) -> Vec<f64> {
    d.sort();
    d.iter().map(|d| d.as_secs_f64() * 1e3).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 51.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&[], 0.5), 0.0);
    }

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(10_000_000), "10,000,000");
    }

    #[test]
    fn cpu_time_grows_with_work() {
        let before = cpu_seconds();
        let mut x = 0u64;
        let until = std::time::Instant::now() + Duration::from_millis(300);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let used = cpu_seconds() - before;
        assert!(used > 0.1, "300 ms of spinning counted as {used} s");
    }
}
