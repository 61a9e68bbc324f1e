//! The window kind: aggregates over event-time windows, with a watermark.
//!
//! The watermark is the newest event time the job has seen minus `grace`;
//! it never goes back. A window is emitted (written to the output) once the
//! watermark passes its end, and not before, so an event up to `grace` late
//! is simply counted in its window's first emission. An event for a window
//! already emitted recomputes exactly that window from the input and
//! replaces it: the output day holding the window is rewritten with every
//! other window of the day kept as it was. A day whose windows all ended
//! more than `retention` before the watermark is final: its events are
//! quarantined as `late` and counted, and only a backfill changes it.
//!
//! Each emitted window is therefore its aggregate over every input row of
//! its time range that arrived before the day became final, whatever the
//! order the rows arrived in: what a computation from scratch over the same
//! rows gives.

use std::collections::BTreeSet;

use tributary_core::config::JobKind;
use tributary_ingest::prepare::Reject;
use tributary_ingest::validate::Rejection;

use crate::error::{Result, TransformError};
use crate::net::{net_times, times};
use crate::plan;
use crate::run::{Ctx, Replace, Scope, Step};
use crate::units::{DAY_US, Starts, Windows, floor};

pub(crate) async fn step(ctx: &Ctx<'_>) -> Result<Step> {
    let JobKind::Window { grace, retention, .. } = &ctx.job.kind else { unreachable!("a window job") };
    let w = plan::windows(ctx.job).unwrap_or(Windows { size: 1, hop: 1 });
    let micros = |d: &std::time::Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
    let (grace, retention) = (micros(grace), micros(retention));
    if let Scope::Backfill { from, to } = ctx.scope {
        // The emitted windows starting in [from, to).
        let Some(wm) = ctx.watermark else { return compute(ctx, w, Starts::default(), None, Vec::new(), 0, 0).await };
        let last = floor(wm - w.size, w.hop).min(floor(to - 1, w.hop));
        let first = floor(from - 1, w.hop) + w.hop;
        let starts = Starts::new(
            w.hop,
            &BTreeSet::new(),
            &[(first, last)].into_iter().filter(|(a, b)| a <= b).collect::<Vec<_>>(),
        );
        return compute(ctx, w, starts, Some(wm), Vec::new(), 0, 0).await;
    }
    let columns = ctx.input_columns();
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let (added, removed) = match ctx.changes(&refs).await? {
        Some(c) => net_times(&ctx.job.name, &c, ctx.time())?,
        // History expired: every row counts as new (the windows already
        // emitted are recomputed to the same values).
        None => (all_times(ctx).await?, Vec::new()),
    };
    let rows_read = added.len() as u64;
    let old = ctx.watermark;
    let newest = added.iter().max().copied();
    let wm = match (old, newest) {
        (Some(o), Some(n)) => Some(o.max(n - grace)),
        (o, n) => o.or(n.map(|n| n - grace)),
    };
    // A day is final once its last window ended `retention` before the
    // watermark this run started from.
    let fin = |day: i64| old.is_some_and(|o| day + DAY_US + w.size <= o - retention);
    let mut late = Vec::new();
    let mut singles = BTreeSet::new();
    for (t, is_added) in added.iter().map(|t| (*t, true)).chain(removed.iter().map(|t| (*t, false))) {
        if fin(floor(floor(t, w.hop), DAY_US)) {
            if is_added {
                late.push(t);
            }
            continue;
        }
        if let Some(wm) = wm {
            singles.extend(w.of(t).filter(|s| s + w.size <= wm));
        }
    }
    let first_event = added.iter().min().copied().unwrap_or(0);
    let emitted: Vec<(i64, i64)> = wm.and_then(|wm| w.emitted(old, wm, first_event)).into_iter().collect();
    let mut starts = Starts::new(w.hop, &singles, &emitted);
    starts.retain_days(|d| !fin(d), w.hop);
    let late_count = late.len() as u64;
    let rejects = late.into_iter().map(|t| late_reject(ctx, t, old.unwrap_or(0), retention)).collect();
    compute(ctx, w, starts, wm, rejects, rows_read, late_count).await
}

/// The step that writes the windows starting in `starts` again.
async fn compute(
    ctx: &Ctx<'_>,
    w: Windows,
    starts: Starts,
    watermark: Option<i64>,
    rejects: Vec<Reject>,
    rows_read: u64,
    late: u64,
) -> Result<Step> {
    let cover: Vec<(i64, i64)> = starts.runs().iter().map(|(a, b)| (*a, b + w.size)).collect();
    ctx.session.register("_input", ctx.input_at(Some(&cover)).await?)?;
    let days = starts.days();
    let current = if starts.is_empty() { None } else { ctx.current_in("window_start", &days).await? };
    let with_current = current.is_some();
    if let Some(c) = current {
        ctx.session.register("_current", c)?;
    }
    let query = ctx.session.sql(&plan::window_query(ctx.job, starts.runs(), with_current)).await?;
    let replace = if starts.is_empty() { Replace::Nothing } else { Replace::Days(days) };
    let mode = if matches!(ctx.scope, Scope::Backfill { .. }) { "backfill" } else { "incremental" };
    Ok(Step { query, more: Vec::new(), replace, rejects, watermark, rows_read, late, mode })
}

/// Every event time of the input as of the run's snapshot.
async fn all_times(ctx: &Ctx<'_>) -> Result<Vec<i64>> {
    ctx.session.register("_all", ctx.input_at(None).await?)?;
    let df = ctx.session.sql(&format!("SELECT {} FROM _all", plan::q(ctx.time()))).await?;
    let batches = df.collect().await.map_err(TransformError::query(&ctx.job.name))?;
    ctx.session.deregister("_all")?;
    times(&ctx.job.name, &batches, ctx.time())
}

fn late_reject(ctx: &Ctx<'_>, t: i64, watermark: i64, retention: i64) -> Reject {
    let at = |us: i64| chrono::DateTime::from_timestamp_micros(us).map(|d| d.to_rfc3339()).unwrap_or_default();
    let time = ctx.time();
    Reject {
        raw: serde_json::json!({ time: at(t) }).to_string().into_bytes(),
        rejection: Rejection {
            kind: "late",
            field: Some(time.to_owned()),
            message: format!(
                "event time {} is more than the retention ({} s) behind the watermark {} of job '{}': its windows are final; `tributary backfill --job {}` recomputes them",
                at(t),
                retention / 1_000_000,
                at(watermark),
                ctx.job.name,
                ctx.job.name
            ),
        },
        position: ctx.position(),
    }
}
