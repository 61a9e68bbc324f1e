//! Commit cost against history: `history-bench [COMMITS] [RATE]` makes
//! COMMITS one-event commits to one table through a running server, at RATE
//! commits per second (open loop: requests start on schedule whether or not
//! earlier ones finished), once with maintenance off and once with the
//! default maintenance, each in a child process of its own.
//!
//! The default retention is 10 minutes at an interval of 1 minute; at the
//! issue's 5 commits/s that keeps about 3,000 snapshots. To reach the same
//! steady state in minutes rather than hours, both are scaled by 5/RATE, so
//! the same number of snapshots is kept at any rate. It prints commit
//! latency p50/p99 over the first and the last 100 commits, the size of the
//! table's `metadata/` directory, and the snapshot and data-file counts.
//! With maintenance off it then times a query over the table of small
//! files, compacts it once, and times the query again.
//! Nothing here asserts on time.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tributary_benches::{cpu_seconds, dir_bytes, peak_rss_mib, quantile, sorted_ms};
use tributary_core::config::Config;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
idempotency_window = "{age}"
[commit]
max_latency = "1ms"
[maintenance]
enabled = {enabled}
interval = "{interval}"
snapshot_max_age = "{age}"
[[tables]]
name = "raw.events"
partition = ["day(event_time)"]
event_time = "event_time"
fields = [
  { name = "event_id",   type = "string",      required = true },
  { name = "event_time", type = "timestamptz", required = true },
]
"#;

async fn phase(commits: usize, rate: f64, maintenance: bool) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let scale = 5.0 / rate;
    let toml = CONFIG
        .replace("{enabled}", if maintenance { "true" } else { "false" })
        .replace("{interval}", &format!("{}ms", (60_000.0 * scale).max(100.0) as u64))
        .replace("{age}", &format!("{}ms", (600_000.0 * scale).max(1000.0) as u64));
    let cfg = Config::from_toml(&toml).and_then(|c| c.validate(dir.path())).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let server = tributary_server::start(&cfg, shutdown.clone()).await?;
    let url = format!("http://{}/v1/tables/raw.events/events", server.addr);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let cpu = cpu_seconds();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut lat: Vec<Duration> = Vec::with_capacity(commits);
    let mut s = futures::stream::iter((0..commits).map(|i| {
        let req = client.post(&url).body(format!(r#"{{"event_id":"e{i}","event_time":"2026-11-30T10:00:00Z"}}"#));
        let at = started + period * u32::try_from(i).unwrap_or(u32::MAX);
        async move {
            tokio::time::sleep_until(at.into()).await;
            let t = Instant::now();
            req.send().await?.error_for_status()?.bytes().await?;
            Ok::<_, anyhow::Error>((i, t.elapsed()))
        }
    }))
    .buffer_unordered(64);
    let mut by_index = vec![Duration::ZERO; commits];
    while let Some(r) = s.next().await {
        let (i, d) = r?;
        by_index[i] = d;
    }
    lat.extend(by_index);
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    let lake = tributary_table::Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse).await?;
    let table = lake.load(&tributary_core::TableName::new("raw", "events")).await?;
    let stats = tributary_table::maintain::TableStats::of(&table);
    let metadata = dir_bytes(&cfg.warehouse.local_dir().expect("a local warehouse").join("raw/events/metadata"));
    shutdown.cancel();
    server.wait().await?;
    let reads = if maintenance { None } else { Some(reads_before_and_after_compaction(&lake, &table).await?) };
    let first = sorted_ms(lat[..100.min(commits)].to_vec());
    let last = sorted_ms(lat[commits.saturating_sub(100)..].to_vec());
    let v = serde_json::json!({
        "maintenance": maintenance,
        "commits": commits,
        "seconds": elapsed.as_secs_f64(),
        "cpu_ms_per_commit": cpu * 1e3 / commits as f64,
        "first_p50_ms": quantile(&first, 0.5), "first_p99_ms": quantile(&first, 0.99),
        "last_p50_ms": quantile(&last, 0.5), "last_p99_ms": quantile(&last, 0.99),
        "metadata_mib": metadata as f64 / 1048576.0,
        "snapshots": stats.snapshots,
        "data_files": stats.data_files,
        "rows": table.total_records(),
        "peak_rss_mib": peak_rss_mib(),
        "read_ms_before": reads.map(|r| r.0),
        "read_ms_after": reads.map(|r| r.1),
    });
    println!("{v}");
    Ok(())
}

/// The best of three runs of a query over the table, before and after one
/// compaction.
async fn reads_before_and_after_compaction(
    lake: &tributary_table::Lake,
    table: &tributary_table::LoadedTable,
) -> anyhow::Result<(f64, f64)> {
    let engine = tributary_query::QueryEngine::new(lake.clone(), 2)?;
    let sql = "SELECT count(*), count(DISTINCT event_id), max(event_time) FROM raw.events";
    let time = || async {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            engine.sql(sql).await?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok::<_, anyhow::Error>(best)
    };
    let before = time().await?;
    let policy = tributary_table::maintain::Compaction::new(128 << 20, 2);
    tributary_table::maintain::compact(lake, &table.name, &policy, false).await?;
    Ok((before, time().await?))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("phase") {
        // `TRIBUTARY_BENCH_LOG=tributary_table=debug` logs where each
        // commit's time went (JSON on stderr).
        if let Ok(filter) = std::env::var("TRIBUTARY_BENCH_LOG") {
            tracing_subscriber::fmt()
                .json()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .init();
        }
        let commits: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(10_000);
        let rate: f64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(5.0);
        let on = args.get(4).map(String::as_str) == Some("on");
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return rt.block_on(phase(commits, rate, on));
    }
    let commits: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let rate: f64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(5.0);
    println!(
        "history benchmark: {commits} one-event commits at {rate}/s, maintenance off then on (scaled by {:.2})",
        5.0 / rate
    );
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>13} {:>10} {:>10} {:>10} {:>11}",
        "maintenance",
        "first p50",
        "first p99",
        "last p50",
        "last p99",
        "metadata MiB",
        "snapshots",
        "files",
        "rows",
        "CPU ms/cmt"
    );
    let exe = std::env::current_exe()?;
    for mode in ["off", "on"] {
        let out =
            std::process::Command::new(&exe).args(["phase", &commits.to_string(), &rate.to_string(), mode]).output()?;
        anyhow::ensure!(out.status.success(), "phase {mode} failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        println!(
            "{:<12} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>13.1} {:>10} {:>10} {:>10} {:>11.2}",
            mode,
            f("first_p50_ms"),
            f("first_p99_ms"),
            f("last_p50_ms"),
            f("last_p99_ms"),
            f("metadata_mib"),
            v["snapshots"].as_u64().unwrap_or(0),
            v["data_files"].as_u64().unwrap_or(0),
            v["rows"].as_u64().unwrap_or(0),
            f("cpu_ms_per_commit")
        );
        if let (Some(before), Some(after)) = (v["read_ms_before"].as_f64(), v["read_ms_after"].as_f64()) {
            println!(
                "             query over the {commits} small commits: {before:.0} ms; after one compaction: {after:.0} ms"
            );
        }
    }
    Ok(())
}
