//! `tributary load`: files into a table once, through the same pipeline,
//! positions and quarantine as a `[[files]]` source, with a progress bar
//! and a reconciliation of files and rows.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use tributary_core::config::{Config, DEFAULT_DEDUP_MEMORY, LINEAGE_COLUMNS, S3Config, TableDef, Warehouse};
use tributary_core::files::{CsvOptions, FileFormat, FilesDef};
use tributary_core::schema::TimestampRange;
use tributary_core::{SystemClock, TableName};
use tributary_ingest::sources::files::listing::list_inputs;
use tributary_ingest::sources::files::{Progress, Tally};
use tributary_table::schema::from_iceberg_schema;

use crate::commands::{load_config, open_lake};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// From each file's extension.
    Auto,
    /// Apache Parquet.
    Parquet,
    /// CSV.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// What `tributary load` was asked.
pub struct Options {
    pub data_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub table: String,
    pub format: Format,
    pub csv: CsvOptions,
    pub paths: Vec<String>,
}

pub async fn run(o: Options) -> anyhow::Result<ExitCode> {
    let table = TableName::parse(&o.table).map_err(anyhow::Error::msg)?;
    let lake = open_lake(&o.data_dir, o.config.as_deref()).await?;
    let config = match &o.config {
        Some(p) => load_config(p, &o.data_dir)?,
        None => Config::default().validate(&o.data_dir).map_err(anyhow::Error::msg)?,
    };
    // A declared table is created or evolved as declared; otherwise it
    // must exist, and is loaded as it is (no dedup key, no event time).
    let (def, ensure) = match config.tables.iter().find(|t| t.name == table) {
        Some(def) => (def.clone(), true),
        None => {
            let existing = lake.try_load(&table).await?.with_context(|| {
                format!("table {table} does not exist and the config does not declare it; declare it under [[tables]] and pass --config")
            })?;
            let mut fields = from_iceberg_schema(existing.metadata.current_schema());
            fields.retain(|f| !LINEAGE_COLUMNS.contains(&f.name.as_str()));
            let def = TableDef {
                name: table.clone(),
                fields,
                partition: Vec::new(),
                dedup: None,
                dedup_memory: DEFAULT_DEDUP_MEMORY,
                event_time: None,
                timestamp_range: TimestampRange::default(),
            };
            (def, false)
        }
    };
    o.csv.bytes().map_err(anyhow::Error::msg)?;
    let format = match o.format {
        Format::Auto => FileFormat::Auto,
        Format::Parquet => FileFormat::Parquet,
        Format::Csv => FileFormat::Csv,
        Format::Ndjson => FileFormat::Ndjson,
    };
    // s3:// inputs use the S3 warehouse's endpoint and credentials, else the
    // AWS environment.
    let s3 = match &config.warehouse {
        Warehouse::S3 { settings, .. } => settings.clone(),
        Warehouse::Local(_) => S3Config::default(),
    };
    let files = list_inputs(&o.paths, &table, &s3).await.map_err(anyhow::Error::msg)?;
    let count = files.len();
    let source = FilesDef::one_off(table.clone(), format, o.csv.clone(), config.commit, s3);
    let shutdown = crate::shutdown_on_signal();
    let started = Instant::now();
    let mut bar = None;
    let watch = |progress: Arc<Progress>| bar = Some(tokio::spawn(show(progress, shutdown.clone())));
    let clock = Arc::new(SystemClock);
    let result = tributary_ingest::load(&lake, &config, &def, ensure, source, files, clock, &shutdown, watch).await;
    if let Some(bar) = bar {
        bar.abort();
        let _ = bar.await;
    }
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K");
    }
    let tally = result.with_context(|| format!("loading into {table}"))?;
    print!("{}", summary(&table, count, &tally, started.elapsed()));
    if shutdown.is_cancelled() {
        println!("stopped before the end: run the same command again to load the rest");
        return Ok(ExitCode::FAILURE);
    }
    Ok(if tally.all_good() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The reconciliation printed at the end.
fn summary(table: &TableName, count: usize, t: &Tally, took: Duration) -> String {
    let reconciles = t.rows_read == t.rows_written + t.rows_quarantined + t.duplicates;
    let mut out = format!("loaded into {table}: {count} files in {:.1} s\n", took.as_secs_f64());
    out += &format!(
        "  files  {} loaded, {} already loaded (skipped), {} failed (one quarantine entry each), {} changed since loaded (refused), {} unreadable\n",
        t.loaded, t.skipped, t.failed, t.changed, t.unreadable
    );
    out += &format!(
        "  rows   {} read = {} written + {} quarantined + {} duplicates{}\n",
        t.rows_read,
        t.rows_written,
        t.rows_quarantined,
        t.duplicates,
        if reconciles { "" } else { "  (does not add up: some chunks did not land; run again)" }
    );
    if t.failed > 0 || t.rows_quarantined > 0 {
        out += &format!(
            "  why    tributary sql \"SELECT position, error_kind, error_message FROM {} WHERE source = 'file'\"\n",
            table.quarantine()
        );
    }
    out
}

/// A progress bar on a terminal, a line every ten seconds otherwise.
async fn show(p: Arc<Progress>, stop: tokio_util::sync::CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let started = Instant::now();
    let every = if terminal { Duration::from_millis(200) } else { Duration::from_secs(10) };
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    while !stop.is_cancelled() {
        tick.tick().await;
        let (bytes, total) = (p.bytes.load(Ordering::Relaxed), p.bytes_total.load(Ordering::Relaxed).max(1));
        let rows = p.rows.load(Ordering::Relaxed);
        let mib = |b: u64| b as f64 / f64::from(1 << 20);
        let rate = mib(bytes) / started.elapsed().as_secs_f64().max(1e-3);
        let done = (bytes.min(total) * 30 / total) as usize;
        let line = format!(
            "[{}{}] {:5.1}% {:.0}/{:.0} MiB  {rows} rows  {rate:.0} MiB/s",
            "#".repeat(done),
            "-".repeat(30 - done),
            100.0 * bytes.min(total) as f64 / total as f64,
            mib(bytes),
            mib(total)
        );
        if terminal {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else {
            eprintln!("{line}");
        }
    }
}
