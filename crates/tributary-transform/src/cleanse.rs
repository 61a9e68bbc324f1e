//! The cleanse kind: the latest row per key, conformed, rules enforced.
//!
//! Incrementally, a run merges the input's new rows into the output days
//! they fall in: the output rows of those days and the new rows are
//! reduced to the latest row per key, and the days are replaced. Latest is
//! a total order (event time, then ingestion time, then source position),
//! so merging in any order of arrival gives what one pass over all rows
//! gives, and a key that arrives again days later (beyond the ingest dedup
//! window) still ends up once. A key is unique per day of its event time:
//! duplicates of one event carry its event time; rows of one key with
//! event times on different days are different events.
//!
//! When the input lost rows (an overwrite or a rollback upstream) or its
//! history was expired, the affected days (or all) are computed again from
//! the input itself.

use std::collections::BTreeSet;

use arrow_array::RecordBatch;
use arrow_array::cast::AsArray;
use tributary_core::config::JobKind;
use tributary_ingest::prepare::Reject;
use tributary_ingest::validate::Rejection;

use crate::error::{Result, TransformError};
use crate::plan;
use crate::run::{Ctx, Replace, Scope, Step};
use crate::units::{DAY_US, days_between};

pub(crate) async fn step(ctx: &Ctx<'_>) -> Result<Step> {
    let columns = ctx.input_columns();
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    match ctx.scope {
        Scope::Backfill { from, to } => recompute(ctx, Some(days_between(from, to)), false, "backfill").await,
        Scope::Incremental if ctx.since == 0 || ctx.output.is_none() => recompute(ctx, None, true, "recompute").await,
        Scope::Incremental => match ctx.changes(&refs).await? {
            None => recompute(ctx, None, false, "recompute").await,
            Some(c) if !c.removed.is_empty() => {
                let days = ctx.days_of(c.added.iter().chain(&c.removed))?;
                recompute(ctx, Some(days), false, "recompute").await
            }
            Some(c) => merge(ctx, c.added).await,
        },
    }
}

/// The output columns: the input's, then the new ones `columns` computes.
fn output_columns(ctx: &Ctx<'_>) -> Vec<String> {
    let mut out = ctx.input_columns();
    if let JobKind::Cleanse { columns, .. } = &ctx.job.kind {
        out.extend(columns.iter().map(|(c, _)| c.clone()).filter(|c| !out.contains(c)).collect::<Vec<_>>());
    }
    out
}

/// Computes the `days` (all without) again from the input, one day at a
/// time: a key is unique within a day, so each day's query is exact on its
/// own, and the sort behind "latest per key" holds one day's rows, not the
/// table's (a whole 10-million-row table exhausted the job's memory).
async fn recompute(ctx: &Ctx<'_>, days: Option<BTreeSet<i64>>, rejects: bool, mode: &'static str) -> Result<Step> {
    let replace = match &days {
        Some(d) => Replace::Days(d.clone()),
        None => Replace::All,
    };
    let days = match days {
        Some(d) => d,
        None => input_days(ctx).await?,
    };
    let mut queries = Vec::with_capacity(days.len().max(1));
    let mut all_rejects = Vec::new();
    // No day at all (an empty input) still plans one query: its schema
    // makes the output.
    let ranges: Vec<Option<(i64, i64)>> =
        if days.is_empty() { vec![None] } else { days.iter().map(|d| Some((*d, d + DAY_US))).collect() };
    for (i, range) in ranges.into_iter().enumerate() {
        let name = format!("_input_{i}");
        let input = match range {
            Some(r) => ctx.input_at(Some(&[r])).await?,
            None => ctx.input_at(None).await?,
        };
        ctx.session.register(&name, input)?;
        if rejects {
            all_rejects.extend(collect_rejects(ctx, &name).await?);
        }
        let conformed = plan::cleanse_conformed(ctx.job, &ctx.input_columns(), &name);
        queries.push(ctx.session.sql(&plan::cleanse_latest(ctx.job, &output_columns(ctx), &conformed)).await?);
    }
    let query = queries.remove(0);
    let rows_read = if matches!(replace, Replace::All) { ctx.input.total_records() } else { 0 };
    Ok(Step { query, more: queries, replace, rejects: all_rejects, watermark: None, rows_read, late: 0, mode })
}

/// The days (day starts) holding an event of the input, read from its
/// event-time column alone.
async fn input_days(ctx: &Ctx<'_>) -> Result<BTreeSet<i64>> {
    ctx.session.register("_days", ctx.input_at(None).await?)?;
    let t = plan::q(ctx.time());
    let sql = format!("SELECT DISTINCT CAST(date_trunc('day', {t}) AS BIGINT) FROM _days WHERE {t} IS NOT NULL");
    let batches = ctx.session.sql(&sql).await?.collect().await.map_err(TransformError::query(&ctx.job.name))?;
    ctx.session.deregister("_days")?;
    let mut days = BTreeSet::new();
    for b in &batches {
        if let Some(col) = b.column(0).as_primitive_opt::<arrow_array::types::Int64Type>() {
            days.extend(col.iter().flatten());
        }
    }
    Ok(days)
}

/// Merges the new rows `added` into the days they fall in.
async fn merge(ctx: &Ctx<'_>, added: Vec<RecordBatch>) -> Result<Step> {
    let rows_read = added.iter().map(|b| b.num_rows() as u64).sum();
    let days = ctx.days_of(&added)?;
    ctx.session.register("_delta", ctx.delta(added)?)?;
    let rejects = collect_rejects(ctx, "_delta").await?;
    let out = output_columns(ctx);
    let current =
        ctx.current_in(ctx.time(), &days).await?.ok_or_else(|| TransformError::Raced(ctx.job.name.clone()))?;
    ctx.session.register("_current", current)?;
    let kept: Vec<String> = out.iter().map(|c| plan::q(c)).collect();
    let rows = format!(
        "SELECT {} FROM _current UNION ALL {}",
        kept.join(", "),
        plan::cleanse_conformed(ctx.job, &ctx.input_columns(), "_delta")
    );
    let query = ctx.session.sql(&plan::cleanse_latest(ctx.job, &out, &rows)).await?;
    Ok(Step {
        query,
        more: Vec::new(),
        replace: Replace::Days(days),
        rejects,
        watermark: None,
        rows_read,
        late: 0,
        mode: "incremental",
    })
}

/// The rows of `from` that break a rule, as quarantine records: the row as
/// JSON, the rule it broke.
async fn collect_rejects(ctx: &Ctx<'_>, from: &str) -> Result<Vec<Reject>> {
    let df = ctx.session.sql(&plan::cleanse_rejects(ctx.job, from)).await?;
    let batches = df.collect().await.map_err(TransformError::query(&ctx.job.name))?;
    let mut rejects = Vec::new();
    for batch in batches {
        let rule_at = batch
            .schema()
            .index_of("__rule")
            .map_err(|e| TransformError::Query { job: ctx.job.name.clone(), message: e.to_string() })?;
        let rules = batch.column(rule_at).as_string_opt::<i32>().cloned();
        let mut row_only = batch.clone();
        row_only.remove_column(rule_at);
        for (i, raw) in crate::json::rows(&row_only)?.into_iter().enumerate() {
            let rule = rules.as_ref().map(|r| r.value(i).to_owned()).unwrap_or_default();
            let message = format!("breaks the rule '{rule}' of job '{}'", ctx.job.name);
            rejects.push(Reject {
                raw,
                rejection: Rejection { kind: "rule", field: Some(rule), message },
                position: ctx.position(),
            });
        }
    }
    Ok(rejects)
}
