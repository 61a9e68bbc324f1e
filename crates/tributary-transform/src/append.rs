//! The `sql` and `enrich` kinds: a query over the input's new rows,
//! appended to the output.
//!
//! The query is row-wise over the input: filters, projections, joins with
//! other tables (aggregates over time belong to window jobs). Within it the
//! input's name means the input's new rows only, so each run appends the
//! query's rows for what the input gained, exactly once. Other tables it
//! joins are read as they are when the run starts.
//!
//! When the input lost rows (it is a cleansed or curated table rewritten by
//! its own job, or it was rolled back), appending cannot follow: an `enrich`
//! job recomputes the days whose input changed, from the input as it is,
//! and replaces them; a `sql` job, whose output need not keep the event
//! time, is refused with the fix.

use std::collections::BTreeSet;

use tributary_core::config::JobKind;

use crate::error::{Result, TransformError};
use crate::plan;
use crate::run::{Ctx, Replace, Scope, Step};
use crate::units::{day_ranges, days_between};

pub(crate) async fn step(ctx: &Ctx<'_>) -> Result<Step> {
    let columns = ctx.input_columns();
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let by_day = matches!(ctx.job.kind, JobKind::Enrich { .. }) && ctx.job.time_column.is_some();
    match ctx.scope {
        Scope::Backfill { from, to } => {
            if !by_day {
                return Err(TransformError::definition(
                    &ctx.job.name,
                    "backfill replaces days of event time; this job's output has none (an enrich job with an event time has)",
                ));
            }
            recompute(ctx, Some(days_between(from, to)), "backfill").await
        }
        Scope::Incremental if ctx.since == 0 || ctx.output.is_none() => recompute(ctx, None, "recompute").await,
        Scope::Incremental => match ctx.changes(&refs).await? {
            None => recompute(ctx, None, "recompute").await,
            Some(c) if !c.removed.is_empty() => {
                if !by_day {
                    return Err(TransformError::definition(
                        &ctx.job.name,
                        format!(
                            "'{}' replaced rows (an overwrite or a rollback), which a job appending its rows cannot follow; \
                             read an append-only table (a raw one), or use kind = \"enrich\" with an event time",
                            ctx.job.input
                        ),
                    ));
                }
                recompute(ctx, Some(ctx.days_of(c.added.iter().chain(&c.removed))?), "recompute").await
            }
            Some(c) => {
                let rows_read = c.added.iter().map(|b| b.num_rows() as u64).sum();
                ctx.session.pin(&ctx.job.input, ctx.delta(c.added)?);
                let query = query(ctx).await?;
                Ok(Step {
                    query,
                    more: Vec::new(),
                    replace: Replace::Nothing,
                    rejects: Vec::new(),
                    watermark: None,
                    rows_read,
                    late: 0,
                    mode: "incremental",
                })
            }
        },
    }
}

/// The query over the input's rows of `days` (all without), replacing them.
async fn recompute(ctx: &Ctx<'_>, days: Option<BTreeSet<i64>>, mode: &'static str) -> Result<Step> {
    let ranges = days.as_ref().map(day_ranges);
    ctx.session.pin(&ctx.job.input, ctx.input_at(ranges.as_deref()).await?);
    let query = query(ctx).await?;
    let rows_read = if days.is_none() { ctx.input.total_records() } else { 0 };
    let replace = days.map_or(Replace::All, Replace::Days);
    Ok(Step { query, more: Vec::new(), replace, rejects: Vec::new(), watermark: None, rows_read, late: 0, mode })
}

async fn query(ctx: &Ctx<'_>) -> Result<datafusion::prelude::DataFrame> {
    match &ctx.job.kind {
        JobKind::Sql { sql, .. } => ctx.session.user_sql(sql).await,
        JobKind::Enrich { dimension, .. } => {
            let input = format!("{}.{}", plan::q(&ctx.job.input.namespace), plan::q(&ctx.job.input.name));
            let dim = ctx.lake.load(dimension).await?;
            let ingested = dim.metadata.current_schema().field_by_name("_ingested_at").is_some();
            ctx.session.sql(&plan::enrich_query(ctx.job, &input, ingested)).await
        }
        _ => unreachable!("an append job"),
    }
}
