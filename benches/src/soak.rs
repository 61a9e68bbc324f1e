//! Soak: `soak-bench [MINUTES] [EVENTS_PER_SEC]` runs a server in this
//! process with the default maintenance, and sends it a steady stream of
//! events over HTTP, open loop (bodies of 100 events start on schedule
//! whether or not earlier ones were answered, up to 256 in flight). Every
//! minute it prints one row of the series that must stay flat: RSS, request
//! latency p50/p99 over the minute (a request is answered after its group
//! commit), commit p99 (the server's histogram bucket it falls in), live
//! data files, snapshots, and the table's metadata and data bytes.
//! Nothing here asserts on time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tributary_benches::{cpu_seconds, dir_bytes, quantile, rss_mib, sorted_ms};
use tributary_core::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 10485760
[[tables]]
name = "raw.events"
partition = ["day(event_time)"]
event_time = "event_time"
fields = [
  { name = "event_id",   type = "string",        required = true },
  { name = "user_id",    type = "long",          required = true },
  { name = "amount",     type = "decimal(12,2)", required = true },
  { name = "currency",   type = "string" },
  { name = "event_time", type = "timestamptz",   required = true },
]
"#;

const PER_BODY: u64 = 100;

/// Cumulative bucket counts of the commit latency histogram of `raw.events`.
fn commit_buckets(text: &str) -> Vec<(f64, f64)> {
    text.lines()
        .filter(|l| l.starts_with("tributary_commit_latency_seconds_bucket") && l.contains("table=\"raw.events\""))
        .filter_map(|l| {
            // `le="` also ends `table="`: take the label itself.
            let at = l.find(",le=\"").or_else(|| l.find("{le=\""))? + 5;
            let le = l[at..].split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which 99% of the commits between two readings fell.
fn p99_bound(before: &[(f64, f64)], after: &[(f64, f64)]) -> f64 {
    let delta: Vec<(f64, f64)> =
        after.iter().map(|(le, n)| (*le, n - before.iter().find(|(b, _)| b == le).map_or(0.0, |(_, m)| *m))).collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    delta.iter().find(|(_, n)| *n >= total * 0.99).map_or(f64::NAN, |(le, _)| *le)
}

fn body(seq: u64) -> String {
    (0..PER_BODY)
        .map(|i| {
            let n = seq * PER_BODY + i;
            format!(
                r#"{{"event_id":"e{n}","user_id":{},"amount":"{}.{:02}","currency":"EUR","event_time":"2026-11-30T10:00:00Z"}}"#,
                n % 9973,
                n % 500,
                n % 100
            ) + "\n"
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let minutes: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(60);
    let rate: f64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(20_000.0);
    let dir = tempfile::tempdir()?;
    let cfg = Config::from_toml(CONFIG).and_then(|c| c.validate(dir.path())).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let server = tributary_server::start(&cfg, shutdown.clone()).await?;
    let url = format!("http://{}/v1/tables/raw.events/events", server.addr);
    let metrics_url = format!("http://{}/metrics", server.addr);
    let client = reqwest::Client::new();
    let lake = tributary_table::Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse).await?;
    let name = tributary_core::TableName::new("raw", "events");
    let table_dir = cfg.warehouse.local_dir().expect("a local warehouse").join("raw/events");

    println!("soak: {minutes} min at {rate} events/s over HTTP (bodies of {PER_BODY}), default maintenance");
    println!(
        "{:>4} {:>10} {:>8} {:>8} {:>9} {:>9} {:>11} {:>7} {:>9} {:>10} {:>9} {:>6}",
        "min",
        "events",
        "ev/s",
        "RSS MiB",
        "req p50",
        "req p99",
        "commit p99",
        "files",
        "snapshots",
        "meta MiB",
        "data MiB",
        "fails"
    );
    let acked = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let in_flight = Arc::new(Semaphore::new(256));
    let period = Duration::from_secs_f64(PER_BODY as f64 / rate);
    let started = Instant::now();
    let end = started + Duration::from_secs(minutes * 60);
    let sender = {
        let (acked, failed, latencies, client, url) =
            (acked.clone(), failed.clone(), latencies.clone(), client.clone(), url.clone());
        tokio::spawn(async move {
            let mut seq = 0u64;
            let mut next = Instant::now();
            while next < end {
                tokio::time::sleep_until(next.into()).await;
                let Ok(permit) = in_flight.clone().acquire_owned().await else { break };
                let req = client.post(&url).body(body(seq));
                let (acked, failed, latencies) = (acked.clone(), failed.clone(), latencies.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
                    let took = t.elapsed();
                    drop(permit);
                    if ok {
                        acked.fetch_add(PER_BODY, Ordering::Relaxed);
                        latencies.lock().await.push(took);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                });
                seq += 1;
                next += period;
            }
        })
    };
    let mut buckets = commit_buckets(&client.get(&metrics_url).send().await?.text().await?);
    let (mut last_acked, mut last_at) = (0u64, Instant::now());
    let cpu = cpu_seconds();
    for minute in 1..=minutes {
        tokio::time::sleep_until((started + Duration::from_secs(minute * 60)).into()).await;
        let now_acked = acked.load(Ordering::Relaxed);
        let lat = sorted_ms(std::mem::take(&mut *latencies.lock().await));
        let text = client.get(&metrics_url).send().await?.text().await?;
        let now_buckets = commit_buckets(&text);
        let stats = tributary_table::maintain::TableStats::of(&lake.load(&name).await?);
        println!(
            "{:>4} {:>10} {:>8.0} {:>8.0} {:>7.1}ms {:>7.1}ms {:>9.3}s {:>7} {:>9} {:>10.1} {:>9.1} {:>6}",
            minute,
            now_acked,
            (now_acked - last_acked) as f64 / last_at.elapsed().as_secs_f64(),
            rss_mib(),
            quantile(&lat, 0.5),
            quantile(&lat, 0.99),
            p99_bound(&buckets, &now_buckets),
            stats.data_files,
            stats.snapshots,
            dir_bytes(&table_dir.join("metadata")) as f64 / 1048576.0,
            dir_bytes(&table_dir.join("data")) as f64 / 1048576.0,
            failed.load(Ordering::Relaxed),
        );
        (last_acked, last_at, buckets) = (now_acked, Instant::now(), now_buckets);
    }
    sender.await?;
    let cpu = cpu_seconds() - cpu;
    let total = acked.load(Ordering::Relaxed);
    println!(
        "acknowledged {total} events, {} failed requests; CPU {:.2} µs/event (server and client together)",
        failed.load(Ordering::Relaxed),
        cpu * 1e6 / total.max(1) as f64
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rows = lake.load(&name).await?.total_records();
    println!("table rows: {rows} (acknowledged: {total})");
    shutdown.cancel();
    server.wait().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_comes_from_bucket_deltas() {
        let text = r#"tributary_commit_latency_seconds_bucket{table="raw.events",le="0.025"} 90
tributary_commit_latency_seconds_bucket{table="raw.events",le="0.05"} 99
tributary_commit_latency_seconds_bucket{table="raw.events",le="0.1"} 100
tributary_commit_latency_seconds_bucket{table="raw.events",le="+Inf"} 100
tributary_commit_latency_seconds_bucket{table="quarantine.events",le="+Inf"} 7"#;
        let after = commit_buckets(text);
        assert_eq!(after.len(), 4);
        assert_eq!(p99_bound(&[], &after), 0.05);
        let before = vec![(0.025, 90.0), (0.05, 90.0), (0.1, 90.0), (f64::INFINITY, 90.0)];
        assert_eq!(p99_bound(&before, &after), 0.1, "of the 10 new commits, one took over 50 ms");
    }
}
