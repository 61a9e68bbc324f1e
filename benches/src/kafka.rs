//! Kafka benchmark: drain a prefilled topic into a committed table, beside a
//! plain rdkafka consumer that only reads it (the broker-side upper bound),
//! then measure freshness at a steady produce rate.
//!
//! `kafka-bench BROKERS [EVENTS] [RATE]` (defaults 2,000,000 events, 50,000
//! events/s). Each phase runs in a child process so peak RSS is per phase.
//! Nothing here asserts on time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tokio_util::sync::CancellationToken;
use tributary_benches::{cpu_seconds, peak_rss_mib, quantile};
use tributary_core::TableName;
use tributary_core::config::Config;
use tributary_table::{Lake, last_pipeline_state};

/// The allocator the `tributary` binary uses, so the figures match it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PARTITIONS: i32 = 4;

/// When the table's committed positions changed: (time µs, next offset per partition).
type Observations = Arc<Mutex<Vec<(i64, HashMap<i32, i64>)>>>;

fn config(brokers: &str, topic: &str) -> String {
    format!(
        r#"
[commit]
max_latency = "{latency}"
[[tables]]
name = "raw.events"
partition = ["day(event_time)"]
event_time = "event_time"
fields = [
  {{ name = "event_id",   type = "string",        required = true }},
  {{ name = "user_id",    type = "long",          required = true }},
  {{ name = "amount",     type = "decimal(12,2)", required = true }},
  {{ name = "currency",   type = "string",        required = true }},
  {{ name = "event_time", type = "timestamptz",   required = true }},
  {{ name = "user_agent", type = "string" }},
]
[[kafka]]
name = "bench"
brokers = "{brokers}"
topics = ["{topic}"]
group_id = "bench-{topic}"
table = "raw.events"
properties = {{ "receive.message.max.bytes" = "2147483647", "fetch.wait.max.ms" = "10" }}
"#,
        latency = std::env::var("BENCH_MAX_LATENCY").unwrap_or_else(|_| "200ms".to_owned())
    )
}

fn payload(i: u64) -> String {
    format!(
        r#"{{"event_id":"evt-{i:012}","user_id":{},"amount":"{}.{:02}","currency":"EUR","event_time":"2026-11-25T{:02}:{:02}:{:02}Z","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/140.0.0.0 Safari/537.36 Tributary-Benchmark/1.0 (+https://example.invalid/bench; steady synthetic load)"}}"#,
        i % 100_000,
        i % 997,
        i % 100,
        (i / 3600) % 24,
        (i / 60) % 60,
        i % 60
    )
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(0))
}

async fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", brokers).create()?;
    for r in admin
        .create_topics([&NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("creating {t}: {e}"))?;
    }
    Ok(())
}

fn producer(brokers: &str) -> anyhow::Result<FutureProducer> {
    Ok(ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?)
}

/// Produces `events` as fast as the broker takes them; with `rate`, paced,
/// returning (partition, offset, send time µs) per message.
async fn produce(brokers: &str, topic: &str, events: u64, rate: Option<u64>) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let p = producer(brokers)?;
    let started = Instant::now();
    let mut pending = futures::stream::FuturesUnordered::new();
    let mut sent = Vec::with_capacity(usize::try_from(events).unwrap_or(0));
    use futures::StreamExt;
    for i in 0..events {
        if let Some(r) = rate {
            #[allow(clippy::cast_precision_loss)]
            let due = Duration::from_secs_f64(i as f64 / r as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let partition = i32::try_from(i % 4).unwrap_or(0);
        let t = now_us();
        let body = payload(i);
        let fut = p.send_result(FutureRecord::<(), _>::to(topic).payload(&body).partition(partition));
        match fut {
            Ok(f) => pending.push(async move { (f.await, t) }),
            Err((e, _)) => anyhow::bail!("produce: {e}"),
        }
        while pending.len() > 100_000 {
            if let Some((r, t)) = pending.next().await {
                let d = r?.map_err(|(e, _)| e)?;
                sent.push((d.partition, d.offset, t));
            }
        }
    }
    while let Some((r, t)) = pending.next().await {
        let d = r?.map_err(|(e, _)| e)?;
        sent.push((d.partition, d.offset, t));
    }
    p.flush(Duration::from_secs(60))?;
    Ok(sent)
}

fn print_phase(name: &str, events: u64, bytes: u64, secs: f64, extra: &str) {
    #[allow(clippy::cast_precision_loss)]
    let (eps, mib) = (events as f64 / secs, bytes as f64 / secs / 1_048_576.0);
    println!(
        "{}",
        serde_json::json!({"phase": name, "events_per_s": eps, "mib_per_s": mib, "seconds": secs, "cpu_us_per_event": cpu_seconds() * 1e6 / events as f64, "peak_rss_mib": peak_rss_mib(), "extra": extra})
    );
}

async fn baseline(brokers: &str, topic: &str, events: u64) -> anyhow::Result<()> {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("baseline-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("receive.message.max.bytes", "2147483647")
        .create()?;
    c.subscribe(&[topic])?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while n < events {
        let m = c.recv().await?;
        bytes += m.payload().map_or(0, |p| p.len() as u64);
        n += 1;
    }
    print_phase("rdkafka-only", n, bytes, started.elapsed().as_secs_f64(), "");
    Ok(())
}

/// Starts the Kafka pipeline in process and returns (lake, shutdown, tasks).
async fn start_pipeline(
    brokers: &str,
    topic: &str,
    dir: &std::path::Path,
) -> anyhow::Result<(Lake, CancellationToken, tokio_util::task::TaskTracker)> {
    tributary_server::metrics::handle();
    let cfg = Config::from_toml(&config(brokers, topic)).and_then(|c| c.validate(dir)).map_err(anyhow::Error::msg)?;
    let lake = Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse).await?;
    let shutdown = CancellationToken::new();
    let tasks = tokio_util::task::TaskTracker::new();
    tributary_ingest::IngestService::start(&lake, &cfg, Arc::new(tributary_core::SystemClock), &shutdown, &tasks)
        .await?;
    Ok((lake, shutdown, tasks))
}

/// Committed next offset per partition, read from the table.
async fn committed(lake: &Lake) -> anyhow::Result<HashMap<i32, i64>> {
    let t = lake.load(&TableName::new("raw", "events")).await?;
    let positions = last_pipeline_state(&t, "kafka:bench")?.map(|s| s.positions).unwrap_or_default();
    Ok(positions
        .0
        .iter()
        .filter_map(|(k, v)| Some((k.rsplit('/').next()?.parse().ok()?, i64::try_from(*v).ok()?)))
        .collect())
}

fn commit_latency_quantiles() -> String {
    let text = tributary_server::metrics::handle().map(|h| h.render()).unwrap_or_default();
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!("{text}");
    }
    let mut buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("tributary_commit_latency_seconds_bucket") && l.contains("table=\"raw.events\""))
        .filter_map(|l| {
            // `le` is the last label; `table="…"` also contains `le="`.
            let le = l.rsplit("le=\"").next()?.split('"').next()?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last().map_or(0.0, |b| b.1);
    let q = |p: f64| buckets.iter().find(|b| b.1 >= p * total).map_or(f64::NAN, |b| b.0 * 1e3);
    // A hold keeps librdkafka's prefetch; a pause drops it, and the test
    // broker sends it again.
    let sum = |name: &str| -> f64 {
        text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
    };
    let (holds, pauses) =
        (sum("tributary_kafka_backpressure_holds_total"), sum("tributary_kafka_backpressure_pauses_total"));
    format!(
        "commits {total}, commit latency p50 <= {} ms, p99 <= {} ms (histogram buckets), backpressure holds {holds}, partition pauses {pauses}",
        q(0.5),
        q(0.99)
    )
}

async fn drain(brokers: &str, topic: &str, events: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let (lake, shutdown, tasks) = start_pipeline(brokers, topic, dir.path()).await?;
    let per = i64::try_from(events).unwrap_or(0) / i64::from(PARTITIONS);
    loop {
        let c = committed(&lake).await?;
        if c.len() == 4 && c.values().all(|v| *v >= per) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    let bytes = events * payload(0).len() as u64;
    print_phase("tributary", events, bytes, secs, &commit_latency_quantiles());
    Ok(())
}

async fn freshness(brokers: &str, topic: &str, events: u64, rate: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (lake, shutdown, tasks) = start_pipeline(brokers, topic, dir.path()).await?;
    tokio::time::sleep(Duration::from_secs(3)).await; // group join
    let seen: Observations = Arc::default();
    let stop = CancellationToken::new();
    let poller = {
        let (lake, seen, stop) = (lake.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut last = HashMap::new();
            while !stop.is_cancelled() {
                if let Ok(c) = committed(&lake).await
                    && c != last
                {
                    seen.lock().map(|mut s| s.push((now_us(), c.clone()))).ok();
                    last = c;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let sent = produce(brokers, topic, events, Some(rate)).await?;
    let last = sent.iter().map(|s| (s.0, s.1)).fold(HashMap::new(), |mut m, (p, o)| {
        let e = m.entry(p).or_insert(0);
        *e = (*e).max(o + 1);
        m
    });
    loop {
        let done = seen
            .lock()
            .ok()
            .and_then(|s| s.last().map(|(_, c)| last.iter().all(|(p, o)| c.get(p).is_some_and(|v| v >= o))));
        if done == Some(true) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    poller.await?;
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let mut delays: Vec<f64> = sent
        .iter()
        .filter_map(|(p, o, t)| {
            let (vis, _) = seen.iter().find(|(_, c)| c.get(p).is_some_and(|v| v > o))?;
            #[allow(clippy::cast_precision_loss)]
            Some((vis - t) as f64 / 1e3)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"phase": "freshness", "rate": rate, "events": delays.len(), "p50_ms": quantile(&delays, 0.5), "p99_ms": quantile(&delays, 0.99), "max_ms": quantile(&delays, 1.0), "peak_rss_mib": peak_rss_mib(), "extra": commit_latency_quantiles()})
    );
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.get(1).map(String::as_str) == Some("phase") {
        let (phase, brokers, topic) = (args[2].as_str(), args[3].as_str(), args[4].as_str());
        let events: u64 = args[5].parse()?;
        return rt.block_on(async {
            match phase {
                "baseline" => baseline(brokers, topic, events).await,
                "drain" => drain(brokers, topic, events).await,
                "freshness" => freshness(brokers, topic, events, args[6].parse()?).await,
                other => anyhow::bail!("unknown phase {other}"),
            }
        });
    }
    let brokers = args.get(1).context("usage: kafka-bench BROKERS [EVENTS] [RATE]")?.clone();
    let events: u64 = args.get(2).and_then(|e| e.parse().ok()).unwrap_or(2_000_000);
    let rate: u64 = args.get(3).and_then(|e| e.parse().ok()).unwrap_or(50_000);
    let exe = std::env::current_exe()?;
    let topic = format!("bench-{}", now_us());
    let t = Instant::now();
    rt.block_on(async {
        create_topic(&brokers, &topic).await?;
        produce(&brokers, &topic, events, None).await
    })?;
    println!("prefilled {topic}: {events} events of {} bytes in {:.1} s", payload(0).len(), t.elapsed().as_secs_f64());
    let run = |args: &[&str]| -> anyhow::Result<serde_json::Value> {
        let out = std::process::Command::new(&exe).args(args).output()?;
        anyhow::ensure!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        Ok(serde_json::from_slice(&out.stdout)?)
    };
    let ev = events.to_string();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    #[allow(clippy::cast_precision_loss)]
    for phase in ["baseline", "drain"] {
        let v = run(&["phase", phase, &brokers, &topic, &ev])?;
        let eps = v["events_per_s"].as_f64().unwrap_or(0.0);
        println!(
            "{:<13} {:>10.0} events/s {:>7.1} MiB/s {:>10.0} events/s/core {:>5.2} CPU µs/event  peak RSS {:>6.0} MiB  {}",
            v["phase"].as_str().unwrap_or(""),
            eps,
            v["mib_per_s"].as_f64().unwrap_or(0.0),
            eps / cores as f64,
            v["cpu_us_per_event"].as_f64().unwrap_or(0.0),
            v["peak_rss_mib"].as_f64().unwrap_or(0.0),
            v["extra"].as_str().unwrap_or("")
        );
    }
    let ftopic = format!("{topic}-fresh");
    rt.block_on(create_topic(&brokers, &ftopic))?;
    let n = (rate * 20).to_string();
    let v = run(&["phase", "freshness", &brokers, &ftopic, &n, &rate.to_string()])?;
    println!(
        "freshness at {rate} events/s for 20 s: produce → visible to SELECT p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms (peak RSS {:.0} MiB); {}",
        v["p50_ms"].as_f64().unwrap_or(0.0),
        v["p99_ms"].as_f64().unwrap_or(0.0),
        v["max_ms"].as_f64().unwrap_or(0.0),
        v["peak_rss_mib"].as_f64().unwrap_or(0.0),
        v["extra"].as_str().unwrap_or("")
    );
    Ok(())
}
