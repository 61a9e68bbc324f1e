//! The SQL each job kind runs, generated from its definition.
//!
//! Generated SQL keeps every kind's semantics in one readable place and
//! lets DataFusion plan and run it like a user's query. The working tables
//! a run registers are `_input` (the input rows a run recomputes from),
//! `_delta` (the input's new rows) and `_current` (the output rows of the
//! days being replaced); see `run.rs` for which is what.

use std::fmt::Write;

use tributary_core::config::{JobDef, JobKind, Lookup};

use crate::units::Windows;

/// `name` as a quoted SQL identifier.
pub fn q(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The conditions a cleanse job's rows must meet, with the label each
/// failure is quarantined under: the key and the event time are present,
/// then the configured rules.
pub fn cleanse_rules(job: &JobDef) -> Vec<(String, String)> {
    let JobKind::Cleanse { key, rules, .. } = &job.kind else { return Vec::new() };
    let mut all: Vec<(String, String)> = key
        .iter()
        .chain(job.time_column.as_ref())
        .map(|c| (format!("{} IS NOT NULL", q(c)), format!("{c} is missing")))
        .collect();
    all.extend(rules.iter().map(|r| (format!("COALESCE(({r}), false)"), r.clone())));
    all
}

/// The rows of `from` that meet every rule, conformed: each input column
/// as it is or as its `columns` expression says, then the new columns.
pub fn cleanse_conformed(job: &JobDef, input_columns: &[String], from: &str) -> String {
    let JobKind::Cleanse { columns, .. } = &job.kind else { return String::new() };
    let expr = |c: &str| columns.iter().find(|(name, _)| name == c).map(|(_, e)| e.as_str());
    let mut select: Vec<String> = input_columns
        .iter()
        .map(|c| match expr(c) {
            Some(e) => format!("({e}) AS {}", q(c)),
            None => q(c),
        })
        .collect();
    select
        .extend(columns.iter().filter(|(c, _)| !input_columns.contains(c)).map(|(c, e)| format!("({e}) AS {}", q(c))));
    let ok: Vec<String> = cleanse_rules(job).into_iter().map(|(cond, _)| cond).collect();
    format!("SELECT {} FROM {from} WHERE {}", select.join(", "), ok.join(" AND "))
}

/// The rows of `from` that break a rule, with the first rule each breaks
/// in `__rule`.
pub fn cleanse_rejects(job: &JobDef, from: &str) -> String {
    let rules = cleanse_rules(job);
    let mut case = String::from("CASE");
    for (cond, label) in &rules {
        let _ = write!(case, " WHEN NOT ({cond}) THEN '{}'", label.replace('\'', "''"));
    }
    case.push_str(" END");
    let ok: Vec<&str> = rules.iter().map(|(c, _)| c.as_str()).collect();
    format!("SELECT *, {case} AS \"__rule\" FROM {from} WHERE NOT ({})", ok.join(" AND "))
}

/// The latest row per key and day of `rows` (a query): by event time,
/// then ingestion time, then source position, so equal keys always resolve
/// the same way whatever order the rows arrived in.
pub fn cleanse_latest(job: &JobDef, output_columns: &[String], rows: &str) -> String {
    let JobKind::Cleanse { key, .. } = &job.kind else { return String::new() };
    let mut order: Vec<String> = job.time_column.iter().map(|t| format!("{} DESC NULLS LAST", q(t))).collect();
    for tiebreak in ["_ingested_at", "_source_file", "_source_partition", "_source_offset"] {
        if output_columns.iter().any(|c| c == tiebreak) {
            order.push(format!("{} DESC NULLS LAST", q(tiebreak)));
        }
    }
    let cols: Vec<String> = output_columns.iter().map(|c| q(c)).collect();
    // A key is unique within a day of its event time: the unit a run
    // replaces, so that merging new rows day by day and computing all days
    // at once agree.
    let mut keys: Vec<String> = key.iter().map(|k| q(k)).collect();
    keys.extend(job.time_column.iter().map(|t| format!("date_trunc('day', {})", q(t))));
    format!(
        "SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY {order}) AS \"__rn\" FROM ({rows})) WHERE \"__rn\" = 1",
        cols = cols.join(", "),
        keys = keys.join(", "),
        order = order.join(", "),
    )
}

/// `expr` (microseconds) in one of the inclusive `runs`.
fn in_runs(expr: &str, runs: &[(i64, i64)]) -> String {
    if runs.is_empty() {
        return "false".to_owned();
    }
    let parts: Vec<String> = runs.iter().map(|(a, b)| format!("({expr} BETWEEN {a} AND {b})")).collect();
    format!("({})", parts.join(" OR "))
}

/// The window rows of the windows starting in `runs`, from `_input`; with
/// `current`, preceded by the rows of `_current` outside those windows.
/// `window_start` and `window_end` come out as microseconds (BIGINT).
pub fn window_query(job: &JobDef, runs: &[(i64, i64)], current: bool) -> String {
    let JobKind::Window { size, hop, group_by, aggregates, .. } = &job.kind else { return String::new() };
    let w = windows(job).unwrap_or(Windows { size: 1, hop: 1 });
    let time = q(job.time_column.as_deref().unwrap_or("event_time"));
    let t = format!("CAST({time} AS BIGINT)");
    let h = w.hop;
    let hops = (size.as_micros() / hop.as_micros()).max(1);
    let (cross, k) = if hops > 1 {
        let values: Vec<String> = (0..hops).map(|k| format!("({k})")).collect();
        (
            format!(" CROSS JOIN (VALUES {}) AS \"__hops\"(\"__k\")", values.join(", ")),
            " - \"__k\" * ".to_owned() + &h.to_string(),
        )
    } else {
        (String::new(), String::new())
    };
    let groups: Vec<String> = group_by.iter().map(|g| q(g)).collect();
    let aggs: Vec<String> = aggregates.iter().map(|(name, e)| format!("{e} AS {}", q(name))).collect();
    let mut select =
        vec!["\"__ws\" AS \"window_start\"".to_owned(), format!("\"__ws\" + {} AS \"window_end\"", w.size)];
    select.extend(groups.iter().cloned());
    select.extend(aggs);
    let mut group = vec!["\"__ws\"".to_owned()];
    group.extend(groups);
    let fresh = format!(
        "SELECT {select} FROM (SELECT *, ({t} - (({t} % {h}) + {h}) % {h}){k} AS \"__ws\" FROM _input{cross}) \
         WHERE {time} IS NOT NULL AND {ws} GROUP BY {group}",
        select = select.join(", "),
        ws = in_runs("\"__ws\"", runs),
        group = group.join(", "),
    );
    if !current {
        return fresh;
    }
    let mut kept = vec![
        "CAST(\"window_start\" AS BIGINT) AS \"window_start\"".to_owned(),
        "CAST(\"window_end\" AS BIGINT) AS \"window_end\"".to_owned(),
    ];
    kept.extend(group_by.iter().map(|g| q(g)));
    kept.extend(aggregates.iter().map(|(name, _)| q(name)));
    format!(
        "SELECT {kept} FROM _current WHERE NOT {ws} UNION ALL {fresh}",
        kept = kept.join(", "),
        ws = in_runs("CAST(\"window_start\" AS BIGINT)", runs),
    )
}

/// The window geometry of a window job, in microseconds.
pub fn windows(job: &JobDef) -> Option<Windows> {
    match &job.kind {
        JobKind::Window { size, hop, .. } => Some(Windows {
            size: i64::try_from(size.as_micros()).unwrap_or(i64::MAX),
            hop: i64::try_from(hop.as_micros()).unwrap_or(i64::MAX),
        }),
        _ => None,
    }
}

/// The enrichment of `from`'s rows with the dimension's columns. With
/// `ingested` (the dimension has `_ingested_at`), of two dimension rows of
/// one key valid from the same time the one ingested last (a correction)
/// is the one joined, by both lookups.
pub fn enrich_query(job: &JobDef, from: &str, ingested: bool) -> String {
    let JobKind::Enrich { dimension, on, lookup, valid_from, add } = &job.kind else { return String::new() };
    let (on, from_col) = (q(on), q(valid_from));
    let table = format!("{}.{}", q(&dimension.namespace), q(&dimension.name));
    let dim = if ingested {
        format!(
            "(SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY {on}, {from_col} ORDER BY \"_ingested_at\" DESC NULLS LAST) AS \"__v\" FROM {table}) WHERE \"__v\" = 1)"
        )
    } else {
        table
    };
    let added: Vec<String> = add.iter().map(|c| format!("\"__d\".{}", q(c))).collect();
    let picked: Vec<String> = add.iter().map(|c| q(c)).collect();
    let joined = match lookup {
        Lookup::Latest => format!(
            "SELECT {on}, {picked} FROM (SELECT *, row_number() OVER (PARTITION BY {on} ORDER BY {from_col} DESC NULLS LAST) AS \"__rn\" FROM {dim}) WHERE \"__rn\" = 1",
            picked = picked.join(", "),
        ),
        Lookup::AsOf => format!(
            "SELECT {on}, {picked}, {from_col} AS \"__from\", lead({from_col}) OVER (PARTITION BY {on} ORDER BY {from_col}) AS \"__to\" FROM {dim}",
            picked = picked.join(", "),
        ),
    };
    let mut cond = format!("\"__e\".{on} = \"__d\".{on}");
    if *lookup == Lookup::AsOf {
        let t = q(job.time_column.as_deref().unwrap_or("event_time"));
        let _ = write!(
            cond,
            " AND \"__e\".{t} >= \"__d\".\"__from\" AND (\"__d\".\"__to\" IS NULL OR \"__e\".{t} < \"__d\".\"__to\")"
        );
    }
    format!("SELECT \"__e\".*, {} FROM {from} AS \"__e\" LEFT JOIN ({joined}) AS \"__d\" ON {cond}", added.join(", "))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use tributary_core::config::Config;

    use super::*;

    fn job(kind: &str) -> JobDef {
        let text = format!(
            r#"
[[tables]]
name = "raw.t"
event_time = "ts"
fields = [{{ name = "id", type = "string" }}, {{ name = "ts", type = "timestamptz" }}]
[[jobs]]
name = "j"
input = "raw.t"
output = "x.out"
{kind}
"#
        );
        Config::from_toml(&text).unwrap().validate(Path::new("/d")).unwrap().jobs.remove(0)
    }

    #[test]
    fn cleanse_sql_names_each_rule_and_orders_ties_by_lineage() {
        let j = job("kind = \"cleanse\"\nkey = [\"id\"]\nrules = [\"id <> 'x'\"]\ncolumns = { code = \"trim(id)\" }");
        let rejects = cleanse_rejects(&j, "_delta");
        assert!(rejects.contains("WHEN NOT (\"id\" IS NOT NULL) THEN 'id is missing'"), "{rejects}");
        assert!(rejects.contains("THEN 'id <> ''x'''"), "{rejects}");
        let conformed = cleanse_conformed(&j, &["id".into(), "ts".into()], "_delta");
        assert!(
            conformed.starts_with("SELECT \"id\", \"ts\", (trim(id)) AS \"code\" FROM _delta WHERE"),
            "{conformed}"
        );
        let latest = cleanse_latest(&j, &["id".into(), "ts".into(), "_ingested_at".into()], "x");
        assert!(
            latest.contains(
                "PARTITION BY \"id\", date_trunc('day', \"ts\") ORDER BY \"ts\" DESC NULLS LAST, \"_ingested_at\" DESC"
            ),
            "{latest}"
        );
    }

    #[test]
    fn window_sql_bins_by_hop_and_keeps_other_windows() {
        let j = job("kind = \"window\"\nwindow = \"2h\"\nhop = \"1h\"\naggregates = { n = \"count(*)\" }");
        let sql = window_query(&j, &[(0, 3_600_000_000)], true);
        assert!(sql.contains("VALUES (0), (1)"), "{sql}");
        assert!(
            sql.contains("FROM _current WHERE NOT ((CAST(\"window_start\" AS BIGINT) BETWEEN 0 AND 3600000000))"),
            "{sql}"
        );
        assert!(sql.contains("\"__ws\" + 7200000000 AS \"window_end\""), "{sql}");
    }
}
