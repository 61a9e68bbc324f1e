//! `tributary jobs` (where each zone job stands) and `tributary backfill`
//! (a range of a job's output days computed again in one commit).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::NaiveDate;
use tributary_transform::RunOptions;

use crate::commands::{load_config, open_lake};

/// Prints every job's state: input read to, lag, watermark, output size.
pub async fn jobs(config: &Path, data_dir: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config, data_dir)?;
    let lake = open_lake(data_dir, Some(config)).await?;
    let mut all = Vec::with_capacity(cfg.jobs.len());
    for job in &cfg.jobs {
        all.push(tributary_transform::status::status(&lake, job).await?);
    }
    if json {
        println!("{}", serde_json::json!({ "jobs": all }));
        return Ok(ExitCode::SUCCESS);
    }
    if all.is_empty() {
        println!("{} declares no [[jobs]]", config.display());
    }
    for s in &all {
        println!(
            "{:<24} {:<8} {} → {}  read to sequence {} of {}  lag {:.1} s  output {} rows{}",
            s.name,
            s.kind,
            s.input,
            s.output,
            s.processed_sequence,
            s.input_sequence,
            s.lag_seconds,
            s.output_rows,
            s.watermark.as_deref().map(|w| format!("  watermark {w}")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Recomputes `job`'s output days `from..=to` and replaces them in one
/// commit, with a progress line on stderr.
pub async fn backfill(config: &Path, data_dir: &Path, job: &str, from: &str, to: &str) -> anyhow::Result<ExitCode> {
    let cfg = load_config(config, data_dir)?;
    let def = cfg.jobs.iter().find(|j| j.name == job).with_context(|| {
        let names: Vec<&str> = cfg.jobs.iter().map(|j| j.name.as_str()).collect();
        format!("{} has no job '{job}'; its jobs are: {}", config.display(), names.join(", "))
    })?;
    let day = |s: &str, what: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .with_context(|| format!("--{what} '{s}' is not a date; write YYYY-MM-DD"))
            .map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc().timestamp_micros())
    };
    let (first, last) = (day(from, "from")?, day(to, "to")?);
    anyhow::ensure!(first <= last, "--from {from} is after --to {to}");
    let end = last + 86_400_000_000;
    let days = (end - first) / 86_400_000_000;
    let lake = open_lake(data_dir, Some(config)).await?;
    let written = Arc::new(AtomicU64::new(0));
    let opts = RunOptions { progress: Some(written.clone()), ..RunOptions::new(cfg.commit.target_file_size_bytes) };
    let started = Instant::now();
    eprintln!(
        "backfill of {job}: {days} day(s) {from}..={to} from {}; nothing changes until the final commit",
        def.input
    );
    let work = tributary_transform::backfill::backfill(&lake, def, first, end, &opts);
    tokio::pin!(work);
    let mut tick = tokio::time::interval(if std::io::stderr().is_terminal() {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    });
    let report = loop {
        tokio::select! {
            r = &mut work => break r?,
            _ = tick.tick() => progress(&written, days, started),
        }
    };
    progress(&written, days, started);
    eprintln!();
    println!(
        "backfilled {job}: {} day(s) replaced in snapshot {} with {} rows in {:.1} s",
        report.days,
        report.output_snapshot.map_or("-".to_owned(), |s| s.to_string()),
        report.rows_written,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

fn progress(written: &AtomicU64, days: i64, started: Instant) {
    const FRAMES: [&str; 4] = ["|", "/", "-", "\\"];
    let secs = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let frame = FRAMES[(secs * 4.0) as usize % FRAMES.len()];
    let mut err = std::io::stderr();
    let _ = write!(err, "\r[{frame}] {days} day(s): {} rows written, {secs:.1} s", written.load(Ordering::Relaxed));
    let _ = err.flush();
}
