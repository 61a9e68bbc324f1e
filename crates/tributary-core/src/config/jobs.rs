//! `[[jobs]]`: the zone jobs that keep cleansed and curated tables up to
//! date from the tables they read, as written and as validated.
//!
//! Validation checks everything that can be checked without planning SQL:
//! names, kinds and their keys, that every table a job reads is declared
//! (a `[[tables]]` entry or another job's output), and that the jobs form a
//! DAG. It returns the jobs in dependency order, so a scheduler that runs
//! them in that order sees every upstream's output before its readers run.
//! Planning each job's SQL against its inputs' schemas is the transform
//! crate's part of `tributary check`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde::Deserialize;

use super::{TableDef, parse_duration};
use crate::schema::PartitionField;
use crate::table_name::{TableName, is_identifier};

/// `[[jobs]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// A lowercase identifier, unique among jobs.
    pub name: String,
    /// `cleanse`, `window`, `sql` or `enrich`.
    pub kind: String,
    /// The table read incrementally.
    pub input: TableName,
    /// The table the job writes; the job creates it.
    pub output: TableName,
    /// Run every this long (`"30s"`); without it, the job runs when its
    /// input has a new commit.
    #[serde(default)]
    pub every: Option<String>,
    /// Jobs that must run before this one besides those writing its inputs.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// The input's event-time column; default: the input's `event_time`.
    #[serde(default)]
    pub time_column: Option<String>,
    /// cleanse: the columns that identify a row.
    #[serde(default)]
    pub key: Vec<String>,
    /// cleanse: output columns computed by SQL expressions, e.g.
    /// `currency = "upper(trim(currency))"`.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// cleanse: SQL conditions every row must meet; others go to quarantine.
    #[serde(default)]
    pub rules: Vec<String>,
    /// window: the window length, e.g. `"1h"`.
    #[serde(default)]
    pub window: Option<String>,
    /// window: how far apart windows start (hopping); default the length
    /// (tumbling).
    #[serde(default)]
    pub hop: Option<String>,
    /// window: group keys.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// window: output column = SQL aggregate, e.g. `revenue = "sum(amount)"`.
    #[serde(default)]
    pub aggregates: BTreeMap<String, String>,
    /// window: how far behind the newest event time the watermark trails.
    #[serde(default)]
    pub grace: Option<String>,
    /// window: how long after the watermark passes a day its windows may
    /// still be corrected by late events; older ones go to quarantine.
    #[serde(default)]
    pub retention: Option<String>,
    /// sql: a query over the input (new rows only) and any other table.
    #[serde(default)]
    pub sql: Option<String>,
    /// sql: the output's partition fields.
    #[serde(default)]
    pub partition: Vec<String>,
    /// enrich: the dimension table joined to each input row.
    #[serde(default)]
    pub dimension: Option<TableName>,
    /// enrich: the join column, present in both tables.
    #[serde(default)]
    pub on: Option<String>,
    /// enrich: `latest` (the dimension's newest row per key) or `as_of`
    /// (the row valid at the event's time).
    #[serde(default)]
    pub lookup: Option<String>,
    /// enrich: the dimension's column saying from when a row is valid;
    /// default its `event_time`.
    #[serde(default)]
    pub valid_from: Option<String>,
    /// enrich: the dimension columns added to each row.
    #[serde(default)]
    pub add: Vec<String>,
}

/// When a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// When its input has a commit the job has not read.
    OnCommit,
    /// At this interval (if its input moved).
    Every(Duration),
}

/// How an enrichment picks the dimension row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The dimension's newest row for the key.
    Latest,
    /// The row whose validity began last at or before the event time.
    AsOf,
}

/// What a job computes.
#[derive(Debug, Clone, PartialEq)]
pub enum JobKind {
    /// The latest row per key (by event time, then ingestion time), with
    /// columns conformed and rows breaking a rule quarantined.
    Cleanse {
        /// Key columns.
        key: Vec<String>,
        /// Computed output columns, `(column, SQL expression)`.
        columns: Vec<(String, String)>,
        /// Conditions every row must meet.
        rules: Vec<String>,
    },
    /// Aggregates over event-time windows.
    Window {
        /// Window length.
        size: Duration,
        /// Distance between window starts (= `size` when tumbling).
        hop: Duration,
        /// Group keys.
        group_by: Vec<String>,
        /// `(output column, SQL aggregate)`.
        aggregates: Vec<(String, String)>,
        /// How far the watermark trails the newest event time.
        grace: Duration,
        /// How long emitted windows may still be corrected.
        retention: Duration,
    },
    /// A query over the new input rows, appended to the output.
    Sql {
        /// The query.
        sql: String,
        /// Output partition fields.
        partition: Vec<PartitionField>,
    },
    /// Input rows with dimension columns added, appended to the output.
    Enrich {
        /// The dimension table.
        dimension: TableName,
        /// Join column.
        on: String,
        /// Which dimension row is joined.
        lookup: Lookup,
        /// The dimension's validity column.
        valid_from: String,
        /// Dimension columns added.
        add: Vec<String>,
    },
}

/// A validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDef {
    /// Unique name.
    pub name: String,
    /// The table read incrementally.
    pub input: TableName,
    /// The table written.
    pub output: TableName,
    /// The input's event-time column, if it has one (cleanse and window
    /// need it).
    pub time_column: Option<String>,
    /// When it runs.
    pub trigger: Trigger,
    /// Jobs that run before it: those writing its input or dimension, and
    /// `depends_on`.
    pub depends_on: Vec<String>,
    /// What it computes.
    pub kind: JobKind,
}

impl JobDef {
    /// The pipeline id the job's commits carry.
    pub fn pipeline(&self) -> String {
        format!("job:{}", self.name)
    }

    /// The table receiving the rows the job refuses:
    /// `quarantine.<output namespace>_<output name>`, apart from the
    /// quarantine of the ingested table of the same name.
    pub fn quarantine(&self) -> TableName {
        TableName::new("quarantine", format!("{}_{}", self.output.namespace, self.output.name))
    }

    /// Every table the job reads: its input, then its dimension.
    pub fn reads(&self) -> Vec<&TableName> {
        let mut tables = vec![&self.input];
        if let JobKind::Enrich { dimension, .. } = &self.kind {
            tables.push(dimension);
        }
        tables
    }
}

/// Largest window: one output partition (a day) holds each window's start.
const MAX_WINDOW: Duration = Duration::from_secs(31 * 86_400);

impl JobConfig {
    fn validate(&self, time_of: &dyn Fn(&TableName) -> Option<String>) -> Result<JobDef, String> {
        if !is_identifier(&self.name) {
            return Err("name must be a lowercase identifier, e.g. \"cleanse_orders\"".to_owned());
        }
        if matches!(self.output.namespace.as_str(), "quarantine" | "_tributary") {
            return Err(format!(
                "output = '{}': the '{}' namespace is Tributary's",
                self.output, self.output.namespace
            ));
        }
        if self.output == self.input {
            return Err(format!("output = '{}' is also the input; a job writes another table", self.output));
        }
        let trigger = match &self.every {
            Some(e) => {
                Trigger::Every(parse_duration(e).map_err(|e| format!("every: {e}"))?.max(Duration::from_millis(100)))
            }
            None => Trigger::OnCommit,
        };
        let time_column = self.time_column.clone().or_else(|| time_of(&self.input));
        let unused = |keys: &[(&str, bool)]| -> Result<(), String> {
            match keys.iter().find(|(_, set)| *set) {
                Some((key, _)) => Err(format!("'{key}' does not apply to kind = \"{}\"", self.kind)),
                None => Ok(()),
            }
        };
        let cleanse_keys =
            [("key", !self.key.is_empty()), ("columns", !self.columns.is_empty()), ("rules", !self.rules.is_empty())];
        let window_keys = [
            ("window", self.window.is_some()),
            ("hop", self.hop.is_some()),
            ("group_by", !self.group_by.is_empty()),
            ("aggregates", !self.aggregates.is_empty()),
            ("grace", self.grace.is_some()),
            ("retention", self.retention.is_some()),
        ];
        let sql_keys = [("sql", self.sql.is_some()), ("partition", !self.partition.is_empty())];
        let enrich_keys = [
            ("dimension", self.dimension.is_some()),
            ("on", self.on.is_some()),
            ("lookup", self.lookup.is_some()),
            ("valid_from", self.valid_from.is_some()),
            ("add", !self.add.is_empty()),
        ];
        let needs_time = || {
            time_column.clone().ok_or_else(|| {
                format!(
                    "input '{}' has no event_time; set time_column = \"<timestamp column of {}>\"",
                    self.input, self.input
                )
            })
        };
        let kind = match self.kind.as_str() {
            "cleanse" => {
                [&window_keys[..], &sql_keys, &enrich_keys].iter().try_for_each(|k| unused(k))?;
                if self.key.is_empty() {
                    return Err(
                        "kind = \"cleanse\" needs key = [\"<column>\", …]: the columns that identify a row".to_owned()
                    );
                }
                let time = needs_time()?;
                if let Some(c) = self.columns.keys().find(|c| self.key.contains(c) || **c == time) {
                    return Err(format!(
                        "columns.{c}: the key and the event time are kept as they are (rows are matched and \
                         refused on them); conform them upstream"
                    ));
                }
                JobKind::Cleanse {
                    key: self.key.clone(),
                    columns: self.columns.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    rules: self.rules.clone(),
                }
            }
            "window" => {
                [&cleanse_keys[..], &sql_keys, &enrich_keys].iter().try_for_each(|k| unused(k))?;
                let size = parse_duration(
                    self.window.as_deref().ok_or("kind = \"window\" needs window = \"1h\" (the window length)")?,
                )
                .map_err(|e| format!("window: {e}"))?;
                let hop = match &self.hop {
                    Some(h) => parse_duration(h).map_err(|e| format!("hop: {e}"))?,
                    None => size,
                };
                if size.as_millis() == 0 || hop.as_millis() == 0 || size > MAX_WINDOW {
                    return Err("window and hop must be between 1ms and 31d".to_owned());
                }
                if size.as_micros() % hop.as_micros() != 0 || hop > size {
                    return Err(format!(
                        "window = {size:?} is not a whole number of hops of {hop:?}; pick a hop that divides the window"
                    ));
                }
                if self.aggregates.is_empty() {
                    return Err("kind = \"window\" needs aggregates = { <column> = \"<aggregate>\" }, e.g. { orders = \"count(*)\" }".to_owned());
                }
                for reserved in ["window_start", "window_end"] {
                    if self.aggregates.contains_key(reserved) || self.group_by.iter().any(|g| g == reserved) {
                        return Err(format!("'{reserved}' is the output's own column; name the aggregate otherwise"));
                    }
                }
                needs_time()?;
                let dur = |key: &str, v: &Option<String>, default: Duration| match v {
                    Some(v) => parse_duration(v).map_err(|e| format!("{key}: {e}")),
                    None => Ok(default),
                };
                JobKind::Window {
                    size,
                    hop,
                    group_by: self.group_by.clone(),
                    aggregates: self.aggregates.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                    grace: dur("grace", &self.grace, Duration::ZERO)?,
                    retention: dur("retention", &self.retention, Duration::from_secs(7 * 86_400))?,
                }
            }
            "sql" => {
                [&cleanse_keys[..], &window_keys, &enrich_keys].iter().try_for_each(|k| unused(k))?;
                let sql = self.sql.clone().filter(|s| !s.trim().is_empty()).ok_or_else(|| {
                    format!("kind = \"sql\" needs sql = \"SELECT … FROM {}\" (the input's new rows)", self.input)
                })?;
                let partition = self
                    .partition
                    .iter()
                    .enumerate()
                    .map(|(i, p)| PartitionField::parse(p).map_err(|e| format!("partition[{i}]: {e}")))
                    .collect::<Result<_, _>>()?;
                JobKind::Sql { sql, partition }
            }
            "enrich" => {
                [&cleanse_keys[..], &window_keys, &sql_keys].iter().try_for_each(|k| unused(k))?;
                let dimension = self.dimension.clone().ok_or("kind = \"enrich\" needs dimension = \"<ns.table>\"")?;
                let on = self.on.clone().ok_or("kind = \"enrich\" needs on = \"<column in both tables>\"")?;
                let lookup = match self.lookup.as_deref().unwrap_or("latest") {
                    "latest" => Lookup::Latest,
                    "as_of" => Lookup::AsOf,
                    other => return Err(format!("lookup = '{other}': use \"latest\" or \"as_of\"")),
                };
                let valid_from = self.valid_from.clone().or_else(|| time_of(&dimension)).ok_or_else(|| {
                    format!("dimension '{dimension}' has no event_time; set valid_from = \"<its timestamp column>\"")
                })?;
                if lookup == Lookup::AsOf {
                    needs_time()?;
                }
                if self.add.is_empty() {
                    return Err("kind = \"enrich\" needs add = [\"<dimension column>\", …]".to_owned());
                }
                JobKind::Enrich { dimension, on, lookup, valid_from, add: self.add.clone() }
            }
            other => return Err(format!("kind = '{other}': use \"cleanse\", \"window\", \"sql\" or \"enrich\"")),
        };
        Ok(JobDef {
            name: self.name.clone(),
            input: self.input.clone(),
            output: self.output.clone(),
            time_column,
            trigger,
            depends_on: self.depends_on.clone(),
            kind,
        })
    }
}

/// Validates every job against the declared `tables` and returns them in
/// dependency order (each after every job it reads from or depends on).
pub(super) fn validate_jobs(jobs: &[JobConfig], tables: &[TableDef]) -> Result<Vec<JobDef>, String> {
    // A table's event-time column: declared, or inherited from the job that
    // writes it (cleanse and enrich keep the input's columns; a window's
    // output is keyed by window_start).
    let declared: HashMap<&TableName, Option<String>> =
        tables.iter().map(|t| (&t.name, t.event_time.clone())).collect();
    let writers: HashMap<&TableName, &JobConfig> = jobs.iter().map(|j| (&j.output, j)).collect();
    let time_of = |t: &TableName| -> Option<String> {
        let mut t = t.clone();
        for _ in 0..=jobs.len() {
            if let Some(time) = declared.get(&t) {
                return time.clone();
            }
            let job = writers.get(&t)?;
            match job.kind.as_str() {
                "window" => return Some("window_start".to_owned()),
                "sql" => return None,
                _ if job.time_column.is_some() => return job.time_column.clone(),
                _ => t = job.input.clone(),
            }
        }
        None
    };
    let mut outputs: HashMap<&TableName, &str> = HashMap::new();
    for (i, j) in jobs.iter().enumerate() {
        let at = |e: String| format!("jobs[{i}] ({}): {e}", j.name);
        if jobs[..i].iter().any(|o| o.name == j.name) {
            return Err(at("another job has this name".to_owned()));
        }
        if declared.contains_key(&j.output) {
            return Err(at(format!(
                "output = '{}' is declared in [[tables]]; a job's output is created by the job, so remove that entry",
                j.output
            )));
        }
        if let Some(other) = outputs.insert(&j.output, &j.name) {
            return Err(at(format!("job '{other}' writes '{}' already; each table has one writer", j.output)));
        }
    }
    // Unknown tables first: a kind's error about an inherited column would
    // otherwise hide the typo that caused it.
    let mut all_deps = Vec::with_capacity(jobs.len());
    for (i, j) in jobs.iter().enumerate() {
        let at = |e: String| format!("jobs[{i}] ({}): {e}", j.name);
        let mut deps = Vec::new();
        for table in std::iter::once(&j.input).chain(&j.dimension) {
            match outputs.get(table) {
                Some(writer) => deps.push((*writer).to_owned()),
                None if declared.contains_key(table) => {}
                None => {
                    return Err(at(format!(
                        "reads '{table}', which no [[tables]] entry declares and no job writes; declare it or fix the name"
                    )));
                }
            }
        }
        for d in &j.depends_on {
            if !jobs.iter().any(|o| &o.name == d) {
                return Err(at(format!("depends_on = '{d}': there is no job of that name")));
            }
            deps.push(d.clone());
        }
        deps.sort();
        deps.dedup();
        all_deps.push(deps);
    }
    let mut defs = Vec::with_capacity(jobs.len());
    for ((i, j), deps) in jobs.iter().enumerate().zip(all_deps) {
        let mut def = j.validate(&time_of).map_err(|e| format!("jobs[{i}] ({}): {e}", j.name))?;
        def.depends_on = deps;
        defs.push(def);
    }
    order(defs)
}

/// The jobs in an order where each follows its dependencies; a cycle is
/// refused with the jobs on it.
fn order(defs: Vec<JobDef>) -> Result<Vec<JobDef>, String> {
    let mut done: HashSet<String> = HashSet::new();
    let mut pending = defs;
    let mut ordered = Vec::with_capacity(pending.len());
    while !pending.is_empty() {
        let (ready, blocked): (Vec<_>, Vec<_>) =
            pending.into_iter().partition(|d| d.depends_on.iter().all(|x| done.contains(x)));
        if ready.is_empty() {
            let cycle: Vec<String> =
                blocked.iter().map(|d| format!("{} (after {})", d.name, d.depends_on.join(", "))).collect();
            return Err(format!(
                "jobs form a cycle: {}; a job may not read, directly or through others, what it writes",
                cycle.join("; ")
            ));
        }
        done.extend(ready.iter().map(|d| d.name.clone()));
        ordered.extend(ready);
        pending = blocked;
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests;
