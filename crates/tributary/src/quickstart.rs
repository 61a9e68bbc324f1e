//! `tributary quickstart`: a demo lake in one command, exercised through the
//! real HTTP path, with a report whose counts must reconcile exactly.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tributary_core::config::{Config, ValidConfig};
use tributary_ingest::Receipt;
use tributary_query::{QueryEngine, output};

use crate::generator::{Generator, Kind};

const EXAMPLE: &str = include_str!("../../../examples/ecommerce.toml");
const BATCH: usize = 1000;
const CONCURRENCY: usize = 4;

/// Quickstart flags.
#[derive(Debug)]
pub struct Options {
    pub data_dir: PathBuf,
    pub events: usize,
    pub http: String,
    pub exit: bool,
}

#[derive(Debug, Default)]
struct Tally {
    accepted: usize,
    quarantined: usize,
    duplicates: usize,
}

pub async fn run(opts: Options) -> anyhow::Result<ExitCode> {
    let mut config = Config::from_toml(EXAMPLE)
        .and_then(|c| c.validate(&opts.data_dir))
        .map_err(|e| anyhow::anyhow!("examples/ecommerce.toml: {e}"))?;
    config.listen = opts.http.clone();
    let shutdown = if opts.exit { CancellationToken::new() } else { crate::shutdown_on_signal() };
    // A busy port (HTTP's 8080, the Postgres protocol's 5433) is replaced by
    // a free one: the demo must run beside whatever else is running.
    let mut tries = 0;
    let server = loop {
        match tributary_server::start(&config, shutdown.clone()).await {
            Err(tributary_server::ServerError::Bind { addr, .. }) if tries < 2 => {
                note(format_args!("{addr} is busy; using a free port instead"));
                if config.pg_listen.as_ref() == Some(&addr) {
                    config.pg_listen = Some("127.0.0.1:0".to_owned());
                } else {
                    config.listen = "127.0.0.1:0".to_owned();
                }
                tries += 1;
            }
            other => break other?,
        }
    };
    let base = format!("http://{}", server.addr);
    let engine = QueryEngine::new(server.lake.clone(), 2)?;
    let rows_before = count(&engine, "raw.transactions").await?;
    let q_before = count(&engine, "quarantine.transactions").await?;

    // Generate everything first so the expected outcome is known exactly.
    let run_id = uuid::Uuid::now_v7().simple().to_string()[..12].to_owned();
    let mut generator = Generator::new(&run_id, u64::from_str_radix(&run_id[4..12], 16).unwrap_or(1));
    let now = chrono::Utc::now();
    let mut expected = Tally::default();
    let mut bodies = Vec::new();
    let mut body = String::new();
    for i in 0..opts.events {
        let (line, kind) = generator.next_line(now);
        match kind {
            Kind::Good | Kind::Late => expected.accepted += 1,
            Kind::Malformed => expected.quarantined += 1,
            Kind::Duplicate => expected.duplicates += 1,
        }
        body.push_str(&line);
        body.push('\n');
        if (i + 1) % BATCH == 0 {
            bodies.push(std::mem::take(&mut body));
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }

    note(format_args!("posting {} events to {base}/v1/tables/raw.transactions/events", opts.events));
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/tables/raw.transactions/events");
    let started = Instant::now();
    let mut got = Tally::default();
    let mut snapshots = std::collections::BTreeSet::new();
    let mut sent = 0usize;
    let mut posts = futures::stream::iter(bodies.into_iter().map(|b| {
        let n = b.lines().count();
        let req = client.post(&url).header("content-type", "application/x-ndjson").body(b);
        async move {
            let resp = req.send().await.context("posting events")?;
            let status = resp.status();
            if !status.is_success() {
                bail!("server answered {status}: {}", resp.text().await.unwrap_or_default());
            }
            Ok::<_, anyhow::Error>((n, resp.json::<Receipt>().await.context("reading receipt")?))
        }
    }))
    .buffer_unordered(CONCURRENCY);
    while let Some(r) = posts.next().await {
        let (n, receipt) = r?;
        sent += n;
        got.accepted += receipt.accepted;
        got.quarantined += receipt.quarantined;
        got.duplicates += receipt.duplicates;
        snapshots.extend(receipt.snapshot_id);
        progress(sent, opts.events, started);
    }
    note(format_args!(""));
    let secs = started.elapsed().as_secs_f64();

    let rows_after = count(&engine, "raw.transactions").await?;
    let q_after = count(&engine, "quarantine.transactions").await?;
    let zones = zones(&engine, &server.lake, &config).await?;
    let reconciled = zones.ok
        && got.accepted + got.quarantined + got.duplicates == opts.events
        && got.accepted == expected.accepted
        && got.quarantined == expected.quarantined
        && got.duplicates == expected.duplicates
        && rows_after - rows_before == got.accepted
        && q_after - q_before == got.quarantined;

    println!("\n=== Tributary quickstart report ===");
    println!("lake:       {}", opts.data_dir.display());
    #[allow(clippy::cast_precision_loss)]
    let rate = opts.events as f64 / secs.max(1e-9);
    println!("posted:     {} events in {secs:.2} s ({rate:.0} events/s) over HTTP", opts.events);
    println!(
        "this run:   accepted {}  quarantined {}  duplicates dropped {}",
        got.accepted, got.quarantined, got.duplicates
    );
    println!(
        "expected:   accepted {}  quarantined {}  duplicates dropped {}",
        expected.accepted, expected.quarantined, expected.duplicates
    );
    println!(
        "reconciled: posted {} = accepted + quarantined + duplicates, and the zones with raw (below) -> {}",
        opts.events,
        if reconciled { "OK" } else { "MISMATCH" }
    );
    println!("\nrows per table (whole lake):");
    for (t, n) in [("raw.transactions", rows_after), ("quarantine.transactions", q_after)] {
        println!("  {t:<26} {n}");
    }
    println!("\nzones (kept up to date by the jobs while events arrived):");
    for line in &zones.lines {
        println!("  {line}");
    }
    section(
        &engine,
        "quarantine by reason",
        "SELECT error_kind, count(*) AS records FROM quarantine.transactions GROUP BY error_kind ORDER BY records DESC",
    )
    .await?;
    section(&engine, "snapshots of raw.transactions (newest 5)", "SELECT snapshot_id, committed_at, added_records, total_records, positions FROM raw.\"transactions$snapshots\" LIMIT 5").await?;
    println!("  ({} snapshots this run for {} requests: group commit)", snapshots.len(), opts.events.div_ceil(BATCH));
    section(&engine, "example: revenue by currency and day", "SELECT currency, date_trunc('day', event_time) AS day, count(*) AS orders, sum(amount) AS revenue FROM raw.transactions GROUP BY 1, 2 ORDER BY day DESC, revenue DESC LIMIT 8").await?;
    let dir = opts.data_dir.display();
    println!("\nconnect:");
    println!("  tributary sql --data-dir {dir} \"SELECT count(*) FROM raw.transactions\"");
    println!(
        "  python -c \"from pyiceberg.catalog.sql import SqlCatalog; c = SqlCatalog('tributary', uri='sqlite:///{dir}/catalog.db', warehouse='file://{dir}/warehouse'); print(c.load_table('raw.transactions').scan().to_arrow().num_rows)\""
    );
    if opts.exit {
        println!(
            "  (the server has stopped; `tributary serve --config examples/ecommerce.toml --data-dir {dir}` serves this lake \
             again, over HTTP and the postgres protocol)"
        );
    } else {
        if let Some(pg) = server.pg_addr {
            println!(
                "  psql \"host={} port={} dbname=tributary\" -c \"SELECT count(*) FROM raw.transactions\"",
                pg.ip(),
                pg.port()
            );
        }
        println!("  curl -s {base}/v1/sql -d '{{\"sql\":\"SELECT count(*) FROM raw.transactions\"}}'");
        println!(
            "  curl -s {base}/v1/tables/raw.transactions/events -H 'Content-Type: application/x-ndjson' --data-binary \
             '{{\"event_id\":\"my-1\",\"user_id\":1,\"amount\":\"9.99\",\"currency\":\"EUR\",\"event_time\":\"{}\"}}'",
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        );
        println!("\nserving on {base}; press Ctrl-C to stop");
    }
    if opts.exit {
        shutdown.cancel();
    }
    server.wait().await?;
    Ok(if reconciled { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The zone tables checked against raw.
struct Zones {
    ok: bool,
    lines: Vec<String>,
}

/// Waits until every job has read all of its input, then reconciles
/// cleansed.transactions with raw (one row per event id, minus the rule
/// breakers) and curated.revenue_hourly with cleansed (every order before
/// the first window the watermark has not passed).
async fn zones(engine: &QueryEngine, lake: &tributary_table::Lake, config: &ValidConfig) -> anyhow::Result<Zones> {
    let started = Instant::now();
    for job in &config.jobs {
        loop {
            let s = tributary_transform::status::status(lake, job).await?;
            if s.processed_sequence >= s.input_sequence {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < JOBS_TIMEOUT,
                "job {} did not catch up with {} in {JOBS_TIMEOUT:?}",
                job.name,
                job.input
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let distinct = number(engine, "SELECT count(DISTINCT event_id) FROM raw.transactions").await?;
    let cleansed = number(engine, "SELECT count(*) FROM cleansed.transactions").await?;
    let refused = number(engine, "SELECT count(*) FROM quarantine.cleansed_transactions").await.unwrap_or(0);
    let cleansed_ok = cleansed + refused == distinct;
    let revenue =
        config.jobs.iter().find(|j| j.name == "revenue_hourly").context("the example's revenue_hourly job")?;
    let watermark = tributary_transform::status::status(lake, revenue).await?.watermark;
    let hour = |w: &str| w.get(..13).map(|h| format!("{h}:00:00Z"));
    let boundary = watermark.as_deref().and_then(hour).unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
    let curated = sums(engine, "SELECT count(*), sum(orders), sum(revenue) FROM curated.revenue_hourly").await?;
    let expected = sums(
        engine,
        &format!("SELECT count(*) AS n, count(*) AS orders, sum(amount) FROM cleansed.transactions WHERE event_time < TIMESTAMP '{boundary}'"),
    )
    .await?;
    let curated_ok = curated.1 == expected.1 && curated.2 == expected.2;
    let verdict = |ok: bool| if ok { "OK" } else { "MISMATCH" };
    Ok(Zones {
        ok: cleansed_ok && curated_ok,
        lines: vec![
            format!(
                "cleansed.transactions   {cleansed} rows + {refused} refused by a rule = {distinct} distinct event ids in raw -> {}",
                verdict(cleansed_ok)
            ),
            format!(
                "curated.revenue_hourly  {} windows up to the watermark {}: {} orders, revenue {} = cleansed before {boundary} ({} orders, {}) -> {}",
                curated.0,
                watermark.as_deref().unwrap_or("(none yet)"),
                curated.1,
                curated.2,
                expected.1,
                expected.2,
                verdict(curated_ok)
            ),
        ],
    })
}

/// How long the quickstart waits for the jobs to read everything posted.
const JOBS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

async fn number(engine: &QueryEngine, sql: &str) -> anyhow::Result<usize> {
    let r = engine.sql(sql).await?;
    let text = r.batches.first().map(|b| output::cell_text(b, 0, 0)).unwrap_or_default();
    text.parse().with_context(|| format!("reading the answer of {sql}"))
}

/// The three cells of a one-row answer, as text (sums compared exactly).
async fn sums(engine: &QueryEngine, sql: &str) -> anyhow::Result<(String, String, String)> {
    let r = engine.sql(sql).await?;
    let b = r.batches.iter().find(|b| b.num_rows() > 0).with_context(|| format!("no answer to {sql}"))?;
    let cell = |c: usize| {
        let t = output::cell_text(b, c, 0);
        if t.is_empty() { "0".to_owned() } else { t }
    };
    Ok((cell(0), cell(1), cell(2)))
}

async fn count(engine: &QueryEngine, table: &str) -> anyhow::Result<usize> {
    number(engine, &format!("SELECT count(*) FROM {table}")).await
}

async fn section(engine: &QueryEngine, title: &str, sql: &str) -> anyhow::Result<()> {
    println!("\n{title}:");
    let table = output::to_table(&engine.sql(sql).await?)?;
    for line in table.lines() {
        println!("  {line}");
    }
    Ok(())
}

fn progress(done: usize, total: usize, started: Instant) {
    const WIDTH: usize = 40;
    let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
    #[allow(clippy::cast_precision_loss)]
    let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut err = std::io::stderr();
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} events  {rate:.0} events/s",
        "#".repeat(filled),
        ".".repeat(WIDTH - filled)
    );
    let _ = err.flush();
}

/// A line on stderr, in order with the progress bar; a closed stderr is
/// ignored rather than panicking like `eprintln!`.
fn note(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{line}");
}
