//! File-load benchmark: generated Parquet and CSV files on local disk loaded
//! into an unpartitioned table without a dedup key (`tributary load`'s
//! path, in process), beside DuckDB copying the same files to zstd Parquet.
//! Each load runs in a child process of its own, so its CPU time and peak
//! RSS are its own.
//!
//! `files-bench DIR [MIB_PER_FORMAT] [PYTHON]`: DIR holds the generated
//! files (kept between runs, regenerated if the size differs) and the
//! lakes; PYTHON is an interpreter with `duckdb` (default `.dev/venv/bin/python`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow_array::builder::{Decimal128Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tributary_benches::{cpu_seconds, peak_rss_mib};
use tributary_core::config::Config;
use tributary_core::files::{CsvOptions, FileFormat, FilesDef};

const TABLE: &str = r#"
[[tables]]
name = "raw.transactions"
fields = [
  { name = "event_id",   type = "string",        required = true },
  { name = "user_id",    type = "long",          required = true },
  { name = "order_id",   type = "string",        required = true },
  { name = "amount",     type = "decimal(12,2)", required = true },
  { name = "currency",   type = "string",        required = true },
  { name = "event_type", type = "string",        required = true },
  { name = "event_time", type = "timestamptz",   required = true },
]
"#;

/// Rows per generated batch, and batches per file.
const BATCH: usize = 65_536;
const FILES: usize = 16;

/// One batch of generated events, starting at row `first`.
fn events(first: usize) -> RecordBatch {
    let mut event_id = StringBuilder::new();
    let mut order_id = StringBuilder::new();
    let mut currency = StringBuilder::new();
    let mut event_type = StringBuilder::new();
    let mut amount = Decimal128Builder::new();
    let mut time = TimestampMicrosecondBuilder::new();
    let mut user = Vec::with_capacity(BATCH);
    let mut x = (first as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in first..first + BATCH {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        event_id.append_value(format!("evt-{i:012}-{:08x}", x as u32));
        order_id.append_value(format!("ord-{:010}", x % 50_000_000));
        currency.append_value(["EUR", "USD", "GBP", "JPY"][(x % 4) as usize]);
        event_type.append_value(["purchase", "refund", "view", "cart"][((x >> 8) % 4) as usize]);
        amount.append_value(i128::from(x % 1_000_000));
        time.append_value(1_795_000_000_000_000 + (i as i64) * 1000);
        user.push((x % 1_000_000) as i64);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("event_id", Arc::new(event_id.finish())),
        ("user_id", Arc::new(Int64Array::from(user))),
        ("order_id", Arc::new(order_id.finish())),
        ("amount", Arc::new(amount.finish().with_precision_and_scale(12, 2).expect("valid decimal"))),
        ("currency", Arc::new(currency.finish())),
        ("event_type", Arc::new(event_type.finish())),
        ("event_time", Arc::new(time.finish().with_timezone("UTC"))),
    ];
    RecordBatch::try_from_iter(columns).expect("a batch")
}

/// Writes CSV text of `batch` (with a header if `header`) to `out`.
fn csv(batch: &RecordBatch, header: bool, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let mut w = arrow_csv::WriterBuilder::new()
        .with_header(header)
        .with_timestamp_tz_format("%Y-%m-%dT%H:%M:%S%.6fZ".into())
        .build(out);
    w.write(batch)?;
    Ok(())
}

/// Generates FILES files of each format, about `mib` MiB per format.
fn generate(dir: &Path, mib: u64) -> anyhow::Result<(u64, u64)> {
    let (pq, cs) = (dir.join("parquet"), dir.join("csv"));
    let stamp = dir.join("generated");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(&mib.to_string()) {
        return Ok((tributary_benches::dir_bytes(&pq), tributary_benches::dir_bytes(&cs)));
    }
    for d in [&pq, &cs] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d)?;
    }
    let per_file = mib * 1024 * 1024 / FILES as u64;
    let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
    let mut row = 0;
    for f in 0..FILES {
        let mut writer = ArrowWriter::try_new(
            std::fs::File::create(pq.join(format!("part-{f:02}.parquet")))?,
            events(0).schema(),
            Some(props.clone()),
        )?;
        // Row groups of 262,144 rows, as Spark or DuckDB would write them.
        while (writer.bytes_written() as u64) < per_file {
            for _ in 0..4 {
                writer.write(&events(row))?;
                row += BATCH;
            }
            writer.flush()?;
        }
        writer.close()?;
    }
    row = 0;
    for f in 0..FILES {
        let mut out = std::io::BufWriter::new(std::fs::File::create(cs.join(format!("part-{f:02}.csv")))?);
        let mut written = 0;
        let mut header = true;
        while written < per_file {
            let mut text = Vec::new();
            csv(&events(row), header, &mut text)?;
            header = false;
            std::io::Write::write_all(&mut out, &text)?;
            written += text.len() as u64;
            row += BATCH;
        }
    }
    std::fs::write(&stamp, mib.to_string())?;
    Ok((tributary_benches::dir_bytes(&pq), tributary_benches::dir_bytes(&cs)))
}

/// The child's phase: loads `files` into a fresh lake under `lake`.
async fn load_phase(files: &Path, lake: &Path) -> anyhow::Result<serde_json::Value> {
    let _ = std::fs::remove_dir_all(lake);
    let config = Config::from_toml(TABLE).and_then(|c| c.validate(lake)).map_err(anyhow::Error::msg)?;
    let lake_handle = tributary_table::Lake::open(&config.catalog_url, &config.catalog_name, &config.warehouse).await?;
    let table = config.tables[0].clone();
    let inputs = [files.display().to_string()];
    let s3 = tributary_core::config::S3Config::default();
    let list = tributary_ingest::sources::files::listing::list_inputs(&inputs, &table.name, &s3)
        .await
        .map_err(anyhow::Error::msg)?;
    let source = FilesDef::one_off(table.name.clone(), FileFormat::Auto, CsvOptions::default(), config.commit, s3);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let clock = Arc::new(tributary_core::SystemClock);
    let tally =
        tributary_ingest::load(&lake_handle, &config, &table, true, source, list, clock, &shutdown, |_| {}).await?;
    let secs = t0.elapsed().as_secs_f64();
    anyhow::ensure!(tally.all_good() && tally.rows_written == tally.rows_read, "the load did not reconcile: {tally:?}");
    Ok(serde_json::json!({
        "secs": secs, "cpu_s": cpu_seconds() - cpu0, "rows": tally.rows_written, "peak_rss_mib": peak_rss_mib(),
    }))
}

/// DuckDB copying the same files to one zstd Parquet file, timed inside the
/// interpreter (CPU and peak RSS of its process, which is DuckDB's).
fn duckdb(python: &str, files: &Path, format: &str, out: &Path) -> anyhow::Result<serde_json::Value> {
    let read = match format {
        "parquet" => format!("read_parquet('{}/*.parquet')", files.display()),
        _ => format!("read_csv('{}/*.csv', header = true)", files.display()),
    };
    let script = format!(
        r#"
import duckdb, json, resource, time
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
t0 = time.time()
rows = con.execute("COPY (SELECT * FROM {read}) TO '{out}' (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
secs = time.time() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"secs": secs, "cpu_s": ru.ru_utime + ru.ru_stime, "rows": rows, "peak_rss_mib": ru.ru_maxrss / 1024}}))
"#,
        out = out.display()
    );
    let output = std::process::Command::new(python).args(["-c", &script]).output()?;
    anyhow::ensure!(output.status.success(), "duckdb failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn child(exe: &Path, args: &[&str]) -> anyhow::Result<serde_json::Value> {
    let out = std::process::Command::new(exe).args(args).output()?;
    anyhow::ensure!(out.status.success(), "phase {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("phase") {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
        let v = rt.block_on(load_phase(Path::new(&args[2]), Path::new(&args[3])))?;
        println!("{v}");
        return Ok(());
    }
    let dir = PathBuf::from(args.get(1).map_or("/tmp/files-bench", String::as_str));
    let mib: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(2048);
    let python = args.get(3).cloned().unwrap_or_else(|| ".dev/venv/bin/python".to_owned());
    std::fs::create_dir_all(&dir)?;
    let t0 = Instant::now();
    let (pq_bytes, csv_bytes) = generate(&dir, mib)?;
    println!(
        "files benchmark: {FILES} files per format, {:.0} MiB of Parquet (snappy), {:.0} MiB of CSV (generated in {:.0} s)",
        pq_bytes as f64 / 1048576.0,
        csv_bytes as f64 / 1048576.0,
        t0.elapsed().as_secs_f64()
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "{:<22} {:>10} {:>10} {:>8} {:>12} {:>10} {:>13} {:>14}",
        "load", "seconds", "MiB/s", "MiB/s/core", "rows/s", "CPU µs/row", "peak RSS MiB", "× DuckDB time"
    );
    let exe = std::env::current_exe()?;
    for (format, bytes) in [("parquet", pq_bytes), ("csv", csv_bytes)] {
        let files = dir.join(format);
        let ours = child(&exe, &["phase", &files.display().to_string(), &dir.join("lake").display().to_string()])?;
        let out = dir.join("duckdb-out.parquet");
        let theirs = duckdb(&python, &files, format, &out)?;
        let _ = std::fs::remove_file(out);
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        for (name, v) in [(format!("tributary {format}"), &ours), (format!("duckdb {format}"), &theirs)] {
            let mibs = bytes as f64 / 1048576.0 / f(v, "secs");
            println!(
                "{:<22} {:>10.1} {:>10.1} {:>8.1} {:>12.0} {:>10.3} {:>13.0} {:>14.2}",
                name,
                f(v, "secs"),
                mibs,
                mibs / cores as f64,
                f(v, "rows") / f(v, "secs"),
                f(v, "cpu_s") * 1e6 / f(v, "rows").max(1.0),
                f(v, "peak_rss_mib"),
                f(v, "secs") / f(&theirs, "secs"),
            );
        }
    }
    Ok(())
}
