//! `.slt` files in `tests/slt/`: the SQL semantics of zone jobs (windows,
//! dedup, enrichment) written as data, run against a real lake.
//!
//! This is our own tiny runner, not the `sqllogictest` crate: the files need
//! directives plain sqllogictest does not have (a config of jobs, appends of
//! NDJSON rows as one commit, running a job until it is idle). A file is a
//! sequence of records separated by blank lines; `#` starts a comment line.
//!
//! ```text
//! jobs                       # first: [[jobs]] TOML up to `----`
//! [[jobs]]
//! name = "clean"
//! ...
//! ----
//!
//! append raw.orders          # NDJSON rows up to a blank line, one commit
//! {"id": "a", "user_id": "u1", "amount": 1.0, "ts": "2026-11-20T01:00:00Z"}
//!
//! run clean                  # runs the job until it has nothing to do
//!
//! query TTR rowsort          # SQL up to `----`, then the expected rows
//! SELECT id, user_id, amount FROM cleansed.orders
//! ----
//! a U1 1.0
//!
//! statement error not found  # the SQL must fail with that in its message
//! SELECT * FROM cleansed.nope
//! ```
//!
//! Result rows are their columns joined by single spaces, NULL as `NULL`
//! and the empty string as `(empty)`; `rowsort` sorts expected and actual
//! rows before comparing. An append leaves lineage columns NULL, except
//! `_ingested_at`, which is the time of the append unless the rows set it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{Array, ArrayRef, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::DataType;
use tributary_core::Positions;
use tributary_core::config::ValidConfig;
use tributary_query::{QueryEngine, QueryResult, output};
use tributary_table::{Lake, PipelineStamp};

use crate::common::open_lake;
use crate::zones_util::{run, zone_config};

macro_rules! slt_files {
    ($($test:ident: $file:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $test() {
                run_file($file).await;
            }
        )*
        const FILES: &[&str] = &[$($file),*];
    };
}

slt_files!(windows: "windows.slt", dedup: "dedup.slt", enrichment: "enrichment.slt");

#[test]
fn every_slt_file_has_a_test() {
    let mut found: Vec<String> = std::fs::read_dir(slt_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".slt"))
        .collect();
    found.sort();
    let mut listed: Vec<&str> = FILES.to_vec();
    listed.sort_unstable();
    assert_eq!(found, listed, "add each file of tests/slt to slt_files! in tests/it/slt.rs");
}

fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("slt")
}

/// The lake a file's `jobs` record set up.
struct Env {
    _dir: tempfile::TempDir,
    cfg: ValidConfig,
    lake: Lake,
    engine: QueryEngine,
}

/// The file's lines, read record by record.
struct Lines {
    lines: Vec<String>,
    at: usize,
}

impl Lines {
    /// The lines up to the first one `end` accepts (consumed) or the end.
    fn until(&mut self, end: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(line) = self.lines.get(self.at) {
            self.at += 1;
            if end(line) {
                break;
            }
            out.push(line.clone());
        }
        out
    }
}

fn blank(line: &str) -> bool {
    line.trim().is_empty()
}

fn dashes(line: &str) -> bool {
    line.trim() == "----"
}

async fn run_file(name: &str) {
    let text = std::fs::read_to_string(slt_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut lines = Lines { lines: text.lines().map(str::to_owned).collect(), at: 0 };
    let mut env: Option<Env> = None;
    while let Some(header) = lines.lines.get(lines.at).map(|l| l.trim().to_owned()) {
        lines.at += 1;
        if header.is_empty() || header.starts_with('#') {
            continue;
        }
        let at = format!("{name}:{}", lines.at);
        let words: Vec<&str> = header.split_whitespace().collect();
        if words[0] == "jobs" {
            assert!(env.is_none(), "{at}: one `jobs` record per file");
            let dir = tempfile::tempdir().unwrap();
            let cfg = zone_config(&lines.until(dashes).join("\n"), dir.path());
            let lake = open_lake(&cfg).await;
            let engine = QueryEngine::new(lake.clone(), 1).unwrap();
            env = Some(Env { _dir: dir, cfg, lake, engine });
            continue;
        }
        let Some(env) = &env else { panic!("{at}: the file must start with a `jobs` record") };
        match words.as_slice() {
            ["append", table] => append(env, table, &lines.until(blank), &at).await,
            ["run", job] => {
                assert!(env.cfg.jobs.iter().any(|j| j.name == *job), "{at}: there is no job '{job}'");
                run(&env.lake, &env.cfg, job).await;
            }
            ["query", _, rest @ ..] => {
                let sql = lines.until(dashes).join("\n");
                let sort = match rest {
                    [] => false,
                    ["rowsort"] => true,
                    _ => panic!("{at}: unknown query option in '{header}' (only `rowsort`)"),
                };
                let mut expected = lines.until(blank);
                let mut actual = rows(&env.engine.sql(&sql).await.unwrap_or_else(|e| panic!("{at}: {sql}\n{e}")));
                if sort {
                    expected.sort();
                    actual.sort();
                }
                if expected != actual {
                    panic!(
                        "{at}: query result mismatch\n{sql}\n--- expected\n{}\n--- actual\n{}\n",
                        expected.join("\n"),
                        actual.join("\n")
                    );
                }
            }
            ["statement", "ok"] => {
                let sql = lines.until(blank).join("\n");
                if let Err(e) = env.engine.sql(&sql).await {
                    panic!("{at}: {sql}\nfailed: {e}");
                }
            }
            ["statement", "error", ..] => {
                let want = words[2..].join(" ");
                let sql = lines.until(blank).join("\n");
                match env.engine.sql(&sql).await {
                    Ok(r) => {
                        panic!("{at}: {sql}\nsucceeded, expected an error with '{want}':\n{}", rows(&r).join("\n"))
                    }
                    Err(e) => assert!(e.to_string().contains(&want), "{at}: {sql}\nthe error lacks '{want}': {e}"),
                }
            }
            _ => panic!("{at}: unknown record '{header}'"),
        }
    }
}

/// Appends the NDJSON `rows` to `table` in one commit.
async fn append(env: &Env, table: &str, rows: &[String], at: &str) {
    let def = env
        .cfg
        .tables
        .iter()
        .find(|t| t.name.to_string() == table)
        .unwrap_or_else(|| panic!("{at}: no table '{table}' in the config"));
    let loaded = env.lake.ensure_table(def).await.unwrap();
    let schema =
        Arc::new(tributary_table::iceberg::arrow::schema_to_arrow_schema(loaded.metadata.current_schema()).unwrap());
    let text = rows.join("\n");
    let reader = arrow_json::ReaderBuilder::new(schema)
        .with_batch_size(rows.len().max(1))
        .with_strict_mode(true)
        .build(text.as_bytes())
        .unwrap();
    let now = chrono::Utc::now().timestamp_micros();
    let batches: Vec<RecordBatch> = reader
        .map(|b| ingested_at(&b.unwrap_or_else(|e| panic!("{at}: rows not in {table}'s schema: {e}")), now))
        .collect();
    let files = tributary_table::write_data_files(&env.lake, &loaded, &batches, 1 << 27).await.unwrap();
    let stamp = PipelineStamp::new("slt", Positions::default(), 0);
    tributary_table::commit(&env.lake, &loaded, &files, &stamp).await.unwrap();
}

/// `batch` with `_ingested_at` set to `now` where the rows leave it NULL.
fn ingested_at(batch: &RecordBatch, now: i64) -> RecordBatch {
    let columns: Vec<ArrayRef> = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| match f.data_type() {
            DataType::Timestamp(_, tz) if f.name() == "_ingested_at" && c.null_count() == c.len() => {
                Arc::new(TimestampMicrosecondArray::from(vec![now; batch.num_rows()]).with_timezone_opt(tz.clone()))
            }
            _ => c.clone(),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

/// Each result row as its cells joined by single spaces.
fn rows(result: &QueryResult) -> Vec<String> {
    let mut out = Vec::new();
    for b in &result.batches {
        for row in 0..b.num_rows() {
            let cells: Vec<String> = (0..b.num_columns())
                .map(|c| match output::cell_text(b, c, row) {
                    _ if b.column(c).is_null(row) => "NULL".to_owned(),
                    s if s.is_empty() => "(empty)".to_owned(),
                    s => s,
                })
                .collect();
            out.push(cells.join(" "));
        }
    }
    out
}
