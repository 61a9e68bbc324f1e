//! End-to-end ingest benchmark.
//!
//! `ingest-bench [EVENTS]` runs five phases, each in a child process of its
//! own so that peak RSS is measured per phase:
//!
//! * `parquet-1`: the physical floor — NDJSON decoded by arrow-json and
//!   encoded to zstd Parquet by arrow-rs alone (no Iceberg, no HTTP), on one
//!   thread;
//! * `parquet-all`: the same on every core, each thread its own file;
//! * `direct`: Tributary's ingest pipeline called in process (validate,
//!   dedup, write, commit; the engine replay), bodies of 5,000 events, 32 in
//!   flight (open loop: enough that the engine is the limit);
//! * `http`: the same bodies POSTed to a running server over loopback;
//! * `http-keyed`: the same, each request with its own `Idempotency-Key`.
//!
//! It prints events/s, MiB/s, CPU µs per event (the phase's process, timed
//! part only), request→durable latency p50/p99 and peak RSS for each, side
//! by side. Nothing here asserts on time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tributary_benches::{cpu_seconds, peak_rss_mib, quantile, sorted_ms};
use tributary_core::TableName;
use tributary_core::config::Config;

/// The allocator the `tributary` binary uses, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const BODY_EVENTS: usize = 5_000;
/// Requests in flight: enough that the engine, not the round trips, is
/// the limit (each is answered only after its group commit).
const IN_FLIGHT: usize = 32;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 67108864
[commit]
max_latency = "200ms"
[[tables]]
name = "raw.events"
partition = ["day(event_time)"]
dedup_key = "event_id"
event_time = "event_time"
fields = [
  { name = "event_id",   type = "string",        required = true },
  { name = "user_id",    type = "long",          required = true },
  { name = "order_id",   type = "string",        required = true },
  { name = "amount",     type = "decimal(12,2)", required = true },
  { name = "currency",   type = "string",        required = true },
  { name = "event_type", type = "string",        required = true },
  { name = "event_time", type = "timestamptz",   required = true },
  { name = "user_agent", type = "string" },
]
"#;

fn bodies(events: usize) -> Vec<Bytes> {
    let agents = [
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0 Safari/537.36",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
    ];
    let mut out = Vec::new();
    let mut body = String::with_capacity(BODY_EVENTS * 320);
    for i in 0..events {
        body.push_str(&format!(
            r#"{{"event_id":"evt-{i:012}","user_id":{},"order_id":"ord-{:09}","amount":"{}.{:02}","currency":"EUR","event_type":"purchase","event_time":"2026-11-{:02}T{:02}:{:02}:{:02}.000Z","user_agent":"{}"}}"#,
            i % 100_000,
            i / 3,
            i % 997,
            i % 100,
            20 + i % 5,
            i % 24,
            i % 60,
            (i / 60) % 60,
            agents[i % 2]
        ));
        body.push('\n');
        if (i + 1) % BODY_EVENTS == 0 {
            out.push(Bytes::from(std::mem::take(&mut body)));
        }
    }
    if !body.is_empty() {
        out.push(Bytes::from(body));
    }
    out
}

/// One phase's figures, printed as a JSON line by the child.
fn report(phase: &str, events: usize, bytes: usize, elapsed: Duration, cpu_s: f64, lat: Vec<Duration>) {
    let lat = sorted_ms(lat);
    let secs = elapsed.as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let v = serde_json::json!({
        "phase": phase,
        "events": events,
        "seconds": secs,
        "events_per_s": events as f64 / secs,
        "mib_per_s": bytes as f64 / secs / 1_048_576.0,
        "cpu_us_per_event": cpu_s * 1e6 / events as f64,
        "p50_ms": quantile(&lat, 0.5),
        "p99_ms": quantile(&lat, 0.99),
        "peak_rss_mib": peak_rss_mib(),
    });
    println!("{v}");
}

/// The floor: arrow-json decoding and zstd Parquet encoding alone, on
/// `threads` threads, each with its own share of the bodies and its own file.
fn parquet_phase(events: usize, threads: usize) -> anyhow::Result<()> {
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    let bodies = bodies(events);
    let bytes: usize = bodies.iter().map(Bytes::len).sum();
    let schema = Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Int64, false),
        Field::new("order_id", DataType::Utf8, false),
        Field::new("amount", DataType::Decimal128(12, 2), false),
        Field::new("currency", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("event_time", DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())), false),
        Field::new("user_agent", DataType::Utf8, true),
    ]));
    let dir = tempfile::tempdir()?;
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(parquet::basic::ZstdLevel::try_new(1)?))
        .build();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let lat = std::thread::scope(|s| {
        let shares: Vec<_> = (0..threads)
            .map(|t| {
                let (schema, props, bodies) = (schema.clone(), props.clone(), &bodies);
                let path = dir.path().join(format!("baseline-{t}.parquet"));
                s.spawn(move || -> anyhow::Result<Vec<Duration>> {
                    let file = std::fs::File::create(path)?;
                    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
                    let mut lat = Vec::new();
                    for body in bodies.iter().skip(t).step_by(threads) {
                        let t = Instant::now();
                        let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
                            .with_batch_size(BODY_EVENTS)
                            .build_decoder()?;
                        decoder.decode(body)?;
                        if let Some(batch) = decoder.flush()? {
                            writer.write(&batch)?;
                        }
                        lat.push(t.elapsed());
                    }
                    writer.close()?;
                    Ok(lat)
                })
            })
            .collect();
        shares
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow::anyhow!("a baseline thread panicked"))?)
            .collect::<anyhow::Result<Vec<_>>>()
    })?;
    let name = if threads == 1 { "parquet-1".to_owned() } else { format!("parquet-{threads}") };
    report(&name, events, bytes, started.elapsed(), cpu_seconds() - cpu, lat.concat());
    Ok(())
}

/// How the pipeline phase reaches the pipeline.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    Direct,
    Http,
    /// HTTP with an `Idempotency-Key` per request.
    HttpKeyed,
}

async fn pipeline_phase(events: usize, via: Via) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = Config::from_toml(CONFIG).and_then(|c| c.validate(dir.path())).map_err(anyhow::Error::msg)?;
    let shutdown = CancellationToken::new();
    let bodies = bodies(events);
    let bytes: usize = bodies.iter().map(Bytes::len).sum();
    let table = TableName::new("raw", "events");
    let mut lat = Vec::with_capacity(bodies.len());
    let started;
    if via != Via::Direct {
        let server = tributary_server::start(&cfg, shutdown.clone()).await?;
        let url = format!("http://{}/v1/tables/raw.events/events", server.addr);
        let client = reqwest::Client::new();
        started = Instant::now();
        let cpu = cpu_seconds();
        let mut s = futures::stream::iter(bodies.into_iter().enumerate().map(|(i, b)| {
            let mut req = client.post(&url).body(b);
            if via == Via::HttpKeyed {
                req = req.header("Idempotency-Key", format!("bench-{i}"));
            }
            async move {
                let t = Instant::now();
                let r = req.send().await?.error_for_status()?;
                let _ = r.bytes().await?;
                Ok::<_, anyhow::Error>(t.elapsed())
            }
        }))
        .buffer_unordered(IN_FLIGHT);
        while let Some(r) = s.next().await {
            lat.push(r?);
        }
        let (elapsed, cpu) = (started.elapsed(), cpu_seconds() - cpu);
        shutdown.cancel();
        server.wait().await?;
        report(if via == Via::Http { "http" } else { "http-keyed" }, events, bytes, elapsed, cpu, lat);
    } else {
        let lake = tributary_table::Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse).await?;
        let tasks = tokio_util::task::TaskTracker::new();
        let svc = tributary_ingest::IngestService::start(
            &lake,
            &cfg,
            Arc::new(tributary_core::SystemClock),
            &shutdown,
            &tasks,
        )
        .await?;
        let ingest = svc.table(&table)?.clone();
        started = Instant::now();
        let cpu = cpu_seconds();
        let mut s = futures::stream::iter(bodies.into_iter().map(|b| {
            let ingest = ingest.clone();
            async move {
                let t = Instant::now();
                ingest.ingest(b.into(), "bench").await.context("ingest")?;
                Ok::<_, anyhow::Error>(t.elapsed())
            }
        }))
        .buffer_unordered(IN_FLIGHT);
        while let Some(r) = s.next().await {
            lat.push(r?);
        }
        let (elapsed, cpu) = (started.elapsed(), cpu_seconds() - cpu);
        shutdown.cancel();
        tasks.close();
        tasks.wait().await;
        report("direct", events, bytes, elapsed, cpu, lat);
    }
    Ok(())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("phase") {
        let events: usize = args.get(3).and_then(|e| e.parse().ok()).unwrap_or(1_000_000);
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        return match args.get(2).map(String::as_str) {
            Some("parquet-1") => parquet_phase(events, 1),
            Some("parquet-all") => parquet_phase(events, cores()),
            Some("direct") => rt.block_on(pipeline_phase(events, Via::Direct)),
            Some("http") => rt.block_on(pipeline_phase(events, Via::Http)),
            Some("http-keyed") => rt.block_on(pipeline_phase(events, Via::HttpKeyed)),
            other => anyhow::bail!("unknown phase {other:?}"),
        };
    }
    let events: usize = args.get(1).and_then(|e| e.parse().ok()).unwrap_or(1_000_000);
    let exe = std::env::current_exe()?;
    println!(
        "ingest benchmark: {events} events of ~300 bytes, bodies of {BODY_EVENTS}, {IN_FLIGHT} in flight, {} cores",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    println!(
        "{:<10} {:>12} {:>9} {:>12} {:>10} {:>10} {:>13}",
        "phase", "events/s", "MiB/s", "CPU µs/ev", "p50 ms", "p99 ms", "peak RSS MiB"
    );
    let mut floor = None;
    for phase in ["parquet-1", "parquet-all", "direct", "http", "http-keyed"] {
        let out = std::process::Command::new(&exe).args(["phase", phase, &events.to_string()]).output()?;
        anyhow::ensure!(out.status.success(), "phase {phase} failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).with_context(|| format!("phase {phase} output"))?;
        let eps = v["events_per_s"].as_f64().unwrap_or(0.0);
        let vs = floor.map_or(String::from("(baseline)"), |f: f64| format!("({:.0}% of parquet-1)", eps / f * 100.0));
        floor.get_or_insert(eps);
        println!(
            "{:<10} {:>12.0} {:>9.1} {:>12.2} {:>10.1} {:>10.1} {:>13.0}  {vs}",
            phase,
            eps,
            v["mib_per_s"].as_f64().unwrap_or(0.0),
            v["cpu_us_per_event"].as_f64().unwrap_or(0.0),
            v["p50_ms"].as_f64().unwrap_or(0.0),
            v["p99_ms"].as_f64().unwrap_or(0.0),
            v["peak_rss_mib"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}
