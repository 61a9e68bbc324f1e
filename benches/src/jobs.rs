//! Zone jobs: what an incremental run costs after a small append to a large
//! table, against a full recomputation of the same state in the same run.
//!
//! `jobs-bench [DIR] [ROWS]` (default a temporary directory, 10,000,000):
//! raw.orders gets ROWS rows over 30 days, committed in time order in
//! commits of 1,000,000 rows (as an ingest pipeline would, written directly,
//! not over HTTP); a cleanse job (`key = ["id"]`, `amount >= 0`) and an
//! hourly window job (count and sum per user, 5 min grace, 30 d retention)
//! read it. Then, each timed in a child process of its own (so its CPU
//! time, bytes read and peak RSS are its own): both jobs' first run; their
//! incremental run after 1,000 rows in the latest hour, then after 1,000
//! late rows spread over 3 days 7 to 10 days back; a backfill of every
//! day (a full recomputation, one commit); then ROWS/2 more rows over 15
//! new days, the catch-up run, and the 1,000-row append, incremental run and
//! full recomputation again, to show what grows with the table and what
//! does not. The promise of zone jobs is that an incremental run costs what
//! the days it touches hold, not what the table holds; this measures it.
//!
//! "MiB read" is the bytes the phase's process read from files (`rchar` of
//! `/proc/self/io`; the warehouse is local disk): unlike `rows read` (the
//! new input rows a run counts), it includes the output days a run merges
//! into and the input a window recomputation scans. Nothing here asserts
//! on time.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use serde_json::{Value, json};
use tributary_benches::lake::{COMMIT_ROWS, DAY, DAY0, H, ORDERS_TABLE, orders};
use tributary_benches::{child, count_arg, cpu_seconds, dir_bytes, mib_read, num, peak_rss_mib, thousands};
use tributary_core::config::{Config, ValidConfig};
use tributary_table::Lake;
use tributary_transform::RunOptions;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SMALL: usize = 1_000;

/// The jobs over raw.orders ([`ORDERS_TABLE`]).
const JOBS_CONFIG: &str = r#"
[[jobs]]
name = "clean"
kind = "cleanse"
input = "raw.orders"
output = "cleansed.orders"
key = ["id"]
rules = ["amount >= 0"]

[[jobs]]
name = "hourly"
kind = "window"
input = "raw.orders"
output = "curated.hourly"
window = "1h"
group_by = ["user_id"]
aggregates = { orders = "count(*)", revenue = "sum(amount)" }
grace = "5m"
retention = "30d"
"#;

const JOBS: [&str; 2] = ["clean", "hourly"];

fn config(dir: &Path) -> anyhow::Result<ValidConfig> {
    Config::from_toml(&format!("{ORDERS_TABLE}{JOBS_CONFIG}")).and_then(|c| c.validate(dir)).map_err(anyhow::Error::msg)
}

/// Appends `n` orders `{tag}-{i}` over `span` to raw.orders, a commit per 1,000,000.
async fn append(lake: &Lake, cfg: &ValidConfig, tag: &str, n: usize, span: (i64, i64)) -> anyhow::Result<Value> {
    tributary_benches::lake::append(lake, cfg, "raw.orders", n, COMMIT_ROWS, |schema, first, len| {
        orders(schema, tag, first, len, n, span)
    })
    .await
}

/// One incremental run of `job`, or with `full` a backfill of `[from, to)`.
async fn run(lake: &Lake, cfg: &ValidConfig, job: &str, full: Option<(i64, i64)>) -> anyhow::Result<Value> {
    let def = cfg.jobs.iter().find(|j| j.name == job).context("no such job")?;
    let opts = RunOptions::new(cfg.commit.target_file_size_bytes);
    let input_rows = lake.try_load(&def.input).await?.map_or(0, |t| t.total_records());
    let report = match full {
        None => tributary_transform::schedule::run_job(lake, def, &opts).await,
        Some((from, to)) => tributary_transform::backfill::backfill(lake, def, from, to, &opts).await.map(Some),
    };
    // A failed run is a figure too: how long it took to fail, and why.
    let report = match report {
        Ok(r) => r.unwrap_or_default(),
        Err(e) => {
            let error: String = e.to_string().lines().next().unwrap_or_default().chars().take(150).collect();
            return Ok(json!({ "mode": "FAILED", "error": error, "input_rows": input_rows }));
        }
    };
    Ok(json!({
        "mode": report.mode, "rows_read": report.rows_read, "rows_written": report.rows_written,
        "days": report.days, "quarantined": report.quarantined, "input_rows": input_rows,
    }))
}

/// The child's side: one phase on the lake in `dir`, its measurements as JSON.
fn phase(dir: &Path, args: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cfg = config(dir)?;
    let lake = rt.block_on(Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse))?;
    let num = |i: usize| -> anyhow::Result<i64> { Ok(args.get(i).context("missing argument")?.parse()?) };
    let (cpu0, read0, t0) = (cpu_seconds(), mib_read(), Instant::now());
    let mut v = match args.first().map(String::as_str) {
        Some("append") => rt.block_on(append(&lake, &cfg, &args[1], num(2)? as usize, (num(3)?, num(4)?)))?,
        Some("run") => rt.block_on(run(&lake, &cfg, &args[1], None))?,
        Some("full") => rt.block_on(run(&lake, &cfg, &args[1], Some((num(2)?, num(3)?))))?,
        other => anyhow::bail!("unknown phase {other:?}"),
    };
    v["secs"] = json!(t0.elapsed().as_secs_f64());
    v["cpu_s"] = json!(cpu_seconds() - cpu0);
    v["mib_read"] = json!(mib_read() - read0);
    v["peak_rss_mib"] = json!(peak_rss_mib());
    println!("{v}");
    Ok(())
}

/// One measured job phase.
struct Row {
    job: &'static str,
    op: String,
    v: Value,
    /// The rows its CPU time is divided by: those appended, or the input's.
    per: u64,
    /// The stage whose full recomputation it is compared with.
    stage: usize,
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("phase") {
        return phase(Path::new(args.get(2).context("phase DIR")?), &args[3..]);
    }
    let temp = tempfile::tempdir()?;
    let dir = args.get(1).map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    let rows = count_arg(&args, 2, 10_000_000)?;
    let lake = dir.join("lake");
    let _ = std::fs::remove_dir_all(&lake);
    std::fs::create_dir_all(&lake)?;
    let end = DAY0 + 30 * DAY;
    let s = |v: i64| v.to_string();
    let mut table: Vec<Row> = Vec::new();
    let mut measure = |job: &'static str, op: String, phase: &[&str], per: u64, stage: usize| -> anyhow::Result<()> {
        let v = child(&lake, phase)?;
        let per = if per == 0 { u(&v, "input_rows") } else { per };
        eprintln!("  {job} {op}: {v}");
        table.push(Row { job, op, v, per, stage });
        Ok(())
    };

    let t0 = Instant::now();
    let base = child(&lake, &["append", "b", &rows.to_string(), &s(DAY0), &s(end - 2 * H)])?;
    println!(
        "raw.orders: {} rows over 30 days in {} commits, {:.0} MiB of Parquet, written in {:.0} s",
        thousands(u(&base, "input_rows")),
        u(&base, "commits"),
        dir_bytes(&lake.join("warehouse")) as f64 / 1048576.0,
        t0.elapsed().as_secs_f64()
    );
    let small = SMALL.to_string();
    let latest = format!("incremental, {} rows in the latest hour", thousands(SMALL as u64));
    let late = format!("incremental, {} late rows (3 days)", thousands(SMALL as u64));
    let more = rows / 2;
    let catch_up = format!("catch-up, {} rows over 15 new days", thousands(more as u64));
    for job in JOBS {
        measure(job, "initial build".into(), &["run", job], 0, 0)?;
    }
    child(&lake, &["append", "l1", &small, &s(end - 2 * H), &s(end - H)])?;
    for job in JOBS {
        measure(job, latest.clone(), &["run", job], SMALL as u64, 0)?;
    }
    child(&lake, &["append", "late", &small, &s(end - 10 * DAY), &s(end - 7 * DAY)])?;
    for job in JOBS {
        measure(job, late.clone(), &["run", job], SMALL as u64, 0)?;
    }
    for job in JOBS {
        measure(job, "full recompute (backfill, all days)".into(), &["full", job, &s(DAY0), &s(end + DAY)], 0, 0)?;
    }
    let grown = end + 15 * DAY;
    child(&lake, &["append", "g", &more.to_string(), &s(end), &s(grown - 2 * H)])?;
    for job in JOBS {
        measure(job, catch_up.clone(), &["run", job], more as u64, 1)?;
    }
    child(&lake, &["append", "l2", &small, &s(grown - 2 * H), &s(grown - H)])?;
    for job in JOBS {
        measure(job, latest.clone(), &["run", job], SMALL as u64, 1)?;
    }
    for job in JOBS {
        measure(job, "full recompute (backfill, all days)".into(), &["full", job, &s(DAY0), &s(grown + DAY)], 0, 1)?;
    }

    let full = |job: &str, stage: usize| {
        table
            .iter()
            .find(|r| r.job == job && r.stage == stage && r.op.starts_with("full") && r.v.get("error").is_none())
            .map(|r| num(&r.v, "secs"))
    };
    println!(
        "\n{:<7} {:>11} {:<45} {:>7} {:>7} {:>10} {:>10} {:>10} {:>5} {:>9} {:>9} {:<11} {:>9}",
        "job",
        "input rows",
        "operation",
        "wall s",
        "CPU s",
        "CPU µs/row",
        "rows read",
        "written",
        "days",
        "MiB read",
        "peak MiB",
        "mode",
        "full/this"
    );
    for r in &table {
        let ratio = match (r.op.as_str(), full(r.job, r.stage)) {
            (_, _) if r.v.get("error").is_some() => String::new(),
            (o, Some(full)) if o.starts_with("incremental") || o.starts_with("catch-up") => {
                format!("{:.1}×", full / num(&r.v, "secs"))
            }
            (o, None) if o.starts_with("incremental") || o.starts_with("catch-up") => "n/a".into(),
            _ => String::new(),
        };
        println!(
            "{:<7} {:>11} {:<45} {:>7.2} {:>7.2} {:>10.2} {:>10} {:>10} {:>5} {:>9.0} {:>9.0} {:<11} {:>9}",
            r.job,
            thousands(u(&r.v, "input_rows")),
            r.op,
            num(&r.v, "secs"),
            num(&r.v, "cpu_s"),
            num(&r.v, "cpu_s") * 1e6 / r.per.max(1) as f64,
            thousands(u(&r.v, "rows_read")),
            thousands(u(&r.v, "rows_written")),
            u(&r.v, "days"),
            num(&r.v, "mib_read"),
            num(&r.v, "peak_rss_mib"),
            r.v["mode"].as_str().unwrap_or(""),
            ratio
        );
    }
    for r in table.iter().filter(|r| r.v.get("error").is_some()) {
        println!(
            "FAILED: {} {} after {:.1} s: {}",
            r.job,
            r.op,
            num(&r.v, "secs"),
            r.v["error"].as_str().unwrap_or("")
        );
    }
    println!("\nCPU µs/row: per appended row for incremental runs, per input row for builds and recomputes.");
    println!("rows read: the new input rows a run counts (a backfill counts none); MiB read: every file byte read.");
    println!("full/this: wall time of the full recompute of the same job at the same table size over this run's.");
    println!("\nThe same {}-row latest-hour append as the table grows:", thousands(SMALL as u64));
    for job in JOBS {
        let line: Vec<String> = table
            .iter()
            .filter(|r| r.job == job && r.op == latest)
            .map(|r| match r.v.get("error") {
                Some(_) => format!("{} rows: FAILED", thousands(u(&r.v, "input_rows"))),
                None => format!(
                    "{} rows: {:.2} s, {:.2} CPU s, {:.1} MiB read",
                    thousands(u(&r.v, "input_rows")),
                    num(&r.v, "secs"),
                    num(&r.v, "cpu_s"),
                    num(&r.v, "mib_read")
                ),
            })
            .collect();
        println!("  {job:<7} {}", line.join(" | "));
    }
    Ok(())
}
