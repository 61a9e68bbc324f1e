//! Dedup at scale: `dedup-bench [KEYS] [RESTART_KEYS]`.
//!
//! Each phase runs in a child process of its own, so peak RSS is its own:
//! - `index`: the table's dedup index (default 256 MiB bound, 24 h window)
//!   claims KEYS distinct keys of 36 bytes in batches of 4,096, then a
//!   tenth of them again (every one must be refused); the slowest batch
//!   shows what a spill to disk costs the batch that triggers it;
//! - `strings`: the baseline, the same keys in what the index was before
//!   (a `HashMap<String, i64>` and a `VecDeque` of `(expiry, String)`);
//! - `restart`: RESTART_KEYS rows ingested through the pipeline, a clean
//!   stop, then the time to open the index resumed from its runs, and
//!   rebuilt from the table (as every start did before).
//!
//! Nothing here asserts on time.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::{RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tributary_benches::{cpu_seconds, peak_rss_mib};
use tributary_core::config::Config;
use tributary_core::{Clock, TableName};
use tributary_ingest::dedup::{DedupSettings, TableDedup};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BATCH: usize = 4096;
const WINDOW: Duration = Duration::from_secs(24 * 3600);

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
[commit]
max_latency = "200ms"
[maintenance]
enabled = false
[[tables]]
name = "raw.events"
dedup_key = "event_id"
fields = [
  { name = "event_id", type = "string", required = true },
  { name = "n",        type = "long",   required = true },
]
"#;

/// Key `i`: 36 bytes, like a UUID.
fn key(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{:012x}", i.wrapping_mul(2_654_435_761))
}

fn batch(from: usize, to: usize) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![Field::new("event_id", DataType::Utf8, false)]));
    let keys: StringArray = (from..to).map(|i| Some(key(i))).collect();
    RecordBatch::try_new(schema, vec![Arc::new(keys)]).unwrap_or_else(|e| panic!("batch: {e}"))
}

async fn lake_and_table(
    dir: &std::path::Path,
) -> anyhow::Result<(tributary_table::Lake, tributary_core::config::ValidConfig)> {
    let cfg = Config::from_toml(CONFIG).and_then(|c| c.validate(dir)).map_err(anyhow::Error::msg)?;
    let lake = tributary_table::Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse).await?;
    Ok((lake, cfg))
}

fn settings(cfg: &tributary_core::config::ValidConfig, persist: bool) -> DedupSettings {
    DedupSettings {
        key: "event_id".to_owned(),
        window: WINDOW,
        memory: cfg.tables[0].dedup_memory,
        dir: persist.then(|| cfg.dedup_dir.clone()),
    }
}

async fn index_phase(keys: usize) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let (lake, cfg) = lake_and_table(dir.path()).await?;
    let table = lake.ensure_table(&cfg.tables[0]).await?;
    let now = now_us();
    let dedup = TableDedup::open(&lake, &table, &settings(&cfg, true), now).await?;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut slowest = Duration::ZERO;
    for from in (0..keys).step_by(BATCH) {
        let b = batch(from, (from + BATCH).min(keys));
        let t = Instant::now();
        let (keep, claimed) = dedup.claim(&b, 0, now + from as i64)?;
        slowest = slowest.max(t.elapsed());
        anyhow::ensure!(keep.true_count() == b.num_rows(), "a new key was refused");
        dedup.committed(0, 0, &claimed);
    }
    let (new_s, new_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let dups = keys / 10;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    for from in (0..dups).step_by(BATCH) {
        let b = batch(from * 10 % keys, (from * 10 % keys + BATCH).min(keys));
        let (keep, _) = dedup.claim(&b, 0, now + keys as i64)?;
        anyhow::ensure!(keep.true_count() == 0, "a duplicate was kept");
    }
    let (dup_s, dup_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let s = dedup.stats();
    Ok(serde_json::json!({
        "new_per_s": keys as f64 / new_s, "new_cpu_us": new_cpu * 1e6 / keys as f64,
        "dup_per_s": dups as f64 / dup_s, "dup_cpu_us": dup_cpu * 1e6 / dups as f64,
        "memory_mib": s.memory_bytes as f64 / 1048576.0, "disk_mib": s.disk_bytes as f64 / 1048576.0,
        "runs": s.runs, "peak_rss_mib": peak_rss_mib(), "slowest_batch_ms": slowest.as_secs_f64() * 1e3,
    }))
}

fn strings_phase(keys: usize) -> serde_json::Value {
    let mut expiry: HashMap<String, i64> = HashMap::new();
    let mut order: VecDeque<(i64, String)> = VecDeque::new();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    for from in (0..keys).step_by(BATCH) {
        let b = batch(from, (from + BATCH).min(keys));
        let col = b.column(0).as_any().downcast_ref::<StringArray>().map(|a| a.iter().flatten().map(str::to_owned));
        for k in col.into_iter().flatten() {
            if !expiry.contains_key(&k) {
                expiry.insert(k.clone(), from as i64);
                order.push_back((from as i64, k));
            }
        }
    }
    let (new_s, new_cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    serde_json::json!({
        "new_per_s": keys as f64 / new_s, "new_cpu_us": new_cpu * 1e6 / keys as f64,
        "keys": expiry.len(), "queued": order.len(), "peak_rss_mib": peak_rss_mib(),
    })
}

async fn restart_phase(keys: usize) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let (lake, cfg) = lake_and_table(dir.path()).await?;
    let shutdown = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    let clock = Arc::new(tributary_core::SystemClock);
    let svc = tributary_ingest::IngestService::start(&lake, &cfg, clock, &shutdown, &tasks).await?;
    let ingest = svc.table(&TableName::new("raw", "events"))?.clone();
    let bodies = (0..keys).step_by(5000).map(|from| {
        let lines: Vec<String> =
            (from..(from + 5000).min(keys)).map(|i| format!(r#"{{"event_id":"{}","n":{i}}}"#, key(i))).collect();
        bytes::Bytes::from(lines.join("\n"))
    });
    let started = Instant::now();
    let mut s = futures::stream::iter(bodies.map(|b| {
        let ingest = ingest.clone();
        async move { ingest.ingest(b.into(), "bench").await.context("ingest") }
    }))
    .buffer_unordered(8);
    while let Some(r) = s.next().await {
        r?;
    }
    let ingest_s = started.elapsed().as_secs_f64();
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    let table = lake.load(&cfg.tables[0].name).await?;
    let open = |persist: bool| {
        let (lake, table, settings) = (lake.clone(), table.clone(), settings(&cfg, persist));
        async move {
            let started = Instant::now();
            let d = TableDedup::open(&lake, &table, &settings, now_us()).await?;
            anyhow::ensure!(d.stats().keys >= keys as u64, "the index lost keys: {:?}", d.stats());
            Ok::<_, anyhow::Error>(started.elapsed().as_secs_f64() * 1e3)
        }
    };
    let resumed_ms = open(true).await?;
    let rebuilt_ms = open(false).await?;
    Ok(serde_json::json!({ "ingest_s": ingest_s, "resumed_ms": resumed_ms, "rebuilt_ms": rebuilt_ms }))
}

fn now_us() -> i64 {
    tributary_core::SystemClock.now().timestamp_micros()
}

fn child(exe: &std::path::Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(exe).args(args).output()?;
    anyhow::ensure!(out.status.success(), "phase {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let n = |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    if args.get(1).map(String::as_str) == Some("phase") {
        let keys = n(3, 10_000_000);
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let v = match args.get(2).map(String::as_str) {
            Some("index") => rt.block_on(index_phase(keys))?,
            Some("strings") => strings_phase(keys),
            Some("restart") => rt.block_on(restart_phase(keys))?,
            other => anyhow::bail!("unknown phase {other:?}"),
        };
        println!("{v}");
        return Ok(());
    }
    let (keys, restart_keys) = (n(1, 10_000_000), n(2, 1_000_000));
    let exe = std::env::current_exe()?;
    println!("dedup benchmark: {keys} distinct keys of 36 bytes, 24 h window, default 256 MiB bound");
    let index = child(&exe, &["phase", "index", &keys.to_string()])?;
    let strings = child(&exe, &["phase", "strings", &keys.to_string()])?;
    println!(
        "{:<24} {:>12} {:>10} {:>12} {:>10} {:>11} {:>10} {:>6} {:>13} {:>12}",
        "index",
        "new keys/s",
        "CPU µs",
        "dup keys/s",
        "CPU µs",
        "memory MiB",
        "disk MiB",
        "runs",
        "peak RSS MiB",
        "slowest ms"
    );
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    println!(
        "{:<24} {:>12.0} {:>10.2} {:>12.0} {:>10.2} {:>11.1} {:>10.1} {:>6} {:>13.0} {:>12.1}",
        "fingerprints + runs",
        f(&index, "new_per_s"),
        f(&index, "new_cpu_us"),
        f(&index, "dup_per_s"),
        f(&index, "dup_cpu_us"),
        f(&index, "memory_mib"),
        f(&index, "disk_mib"),
        index["runs"],
        f(&index, "peak_rss_mib"),
        f(&index, "slowest_batch_ms")
    );
    println!(
        "{:<24} {:>12.0} {:>10.2} {:>12} {:>10} {:>11} {:>10} {:>6} {:>13.0}",
        "baseline: String map",
        f(&strings, "new_per_s"),
        f(&strings, "new_cpu_us"),
        "-",
        "-",
        "-",
        "-",
        "-",
        f(&strings, "peak_rss_mib")
    );
    for k in [restart_keys / 4, restart_keys] {
        let r = child(&exe, &["phase", "restart", &k.to_string()])?;
        println!(
            "restart with {k:>9} keys: resumed from runs {:>8.1} ms, rebuilt from the table {:>8.1} ms (ingest took {:.1} s)",
            f(&r, "resumed_ms"),
            f(&r, "rebuilt_ms"),
            f(&r, "ingest_s")
        );
    }
    Ok(())
}
