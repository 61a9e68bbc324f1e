//! Analytical SQL: what our query engine costs over a large table, against
//! DuckDB reading the very same Parquet files in the same run.
//!
//! `query-bench [DIR] [ROWS] [PYTHON] [COMMIT_ROWS]` (default a temporary
//! directory, 10,000,000, `$TRIBUTARY_PYTHON` or `.dev/venv/bin/python`,
//! 1,000,000): raw.orders gets ROWS rows over 30 days, partitioned by day
//! and committed COMMIT_ROWS at a time as `jobs-bench` writes it (a few
//! thousand rows a commit gives the many small files of a lake fed by
//! frequent small commits, before compaction), and raw.users 1,000 users
//! (20 countries, 3 tiers) in one commit. A lake in `DIR/lake` that already
//! holds both with those row counts is reused, so that two builds of the
//! engine can be compared on one lake. Seven queries (aggregates by hour
//! and user, a filter on the partition column, a join, a distinct count,
//! `count(*)`, min/max) each run 3 times in our engine (`QueryEngine` with
//! 2 threads, in a child process of its own so that its CPU time and peak
//! RSS are its own) and in DuckDB (`SET threads = 2`, in its Python
//! process) over views on `read_parquet` of the table's live data files,
//! listed by our `raw."orders$files"`.
//!
//! To profile one query of ours: `perf record -g query-bench phase
//! DIR/lake queries NAME`.
//!
//! Our time is `engine.sql` to the collected batches: it includes loading
//! the table's metadata and planning, as every query does. DuckDB's is
//! `execute` to `fetch_arrow_table`, the Arrow result ours also returns.
//! Both answers are compared (floats to a relative 1e-6, timestamps as
//! microseconds since the epoch), so a fast wrong answer shows. Nothing here
//! asserts on time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arrow_array::cast::AsArray;
use arrow_array::types::{
    ArrowPrimitiveType, Float32Type, Float64Type, Int32Type, Int64Type, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt64Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, new_null_array};
use arrow_schema::{DataType, SchemaRef, TimeUnit};
use serde_json::{Value, json};
use tributary_benches::lake::{COMMIT_ROWS, DAY, DAY0, ORDERS_TABLE, orders};
use tributary_benches::{child, count_arg, cpu_seconds, num, peak_rss_mib, quantile, sorted_ms, thousands};
use tributary_core::TableName;
use tributary_core::config::{Config, ValidConfig};
use tributary_query::{QueryEngine, QueryResult};
use tributary_table::Lake;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs of each query; the best and the median are reported.
const RUNS: usize = 3;
/// Threads each engine gets.
const THREADS: usize = 2;
const USERS: usize = 1_000;
const COUNTRIES: [&str; 20] = [
    "AR", "AU", "BR", "CA", "CN", "DE", "ES", "FR", "GB", "IN", "IT", "JP", "KR", "MX", "NL", "NO", "PL", "SE", "US",
    "ZA",
];
const TIERS: [&str; 3] = ["free", "plus", "pro"];

const USERS_TABLE: &str = r#"
[[tables]]
name = "raw.users"
fields = [
  { name = "user_id", type = "string", required = true },
  { name = "country", type = "string" },
  { name = "tier", type = "string" },
]
"#;

/// (name, SQL): `{orders}` and `{users}` are named by each engine's
/// [`Dialect`]. `day_count` reads 3 of the 30 day partitions ([`DAY0`] is
/// 2026-11-20); both engines take its `TIMESTAMPTZ '…+00'` literals.
const QUERIES: [(&str, &str); 7] = [
    (
        "hourly",
        "SELECT date_trunc('hour', ts) AS h, count(*) AS n, sum(amount) AS revenue FROM {orders} GROUP BY 1 ORDER BY 1",
    ),
    ("top_users", "SELECT user_id, sum(amount) AS s FROM {orders} GROUP BY user_id ORDER BY s DESC, user_id LIMIT 10"),
    (
        "day_count",
        "SELECT count(*) FROM {orders} WHERE ts >= TIMESTAMPTZ '2026-11-25 00:00:00+00' \
         AND ts < TIMESTAMPTZ '2026-11-28 00:00:00+00'",
    ),
    (
        "join_country",
        "SELECT u.country, count(*) AS n, sum(o.amount) AS revenue FROM {orders} o JOIN {users} u \
         ON o.user_id = u.user_id GROUP BY u.country ORDER BY u.country",
    ),
    ("distinct_users", "SELECT count(DISTINCT user_id) FROM {orders}"),
    ("count", "SELECT count(*) FROM {orders}"),
    ("min_max", "SELECT min(ts), max(ts), min(amount), max(amount) FROM {orders}"),
];

/// How an engine names the tables.
struct Dialect {
    orders: &'static str,
    users: &'static str,
}

const OURS: Dialect = Dialect { orders: "raw.orders", users: "raw.users" };
const DUCKDB: Dialect = Dialect { orders: "orders", users: "users" };

impl Dialect {
    fn spell(&self, template: &str) -> String {
        template.replace("{orders}", self.orders).replace("{users}", self.users)
    }
}

/// DuckDB's side, fed `{"orders": [paths], "users": [paths], "queries":
/// [[name, sql]], "runs": n}` on stdin; prints the same JSON shape as ours.
const DUCKDB_SCRIPT: &str = r#"
import decimal, json, resource, sys, time
import duckdb, pyarrow as pa

def rows(table):
    cols = []
    for col in table.columns:
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.timestamp("us", tz=col.type.tz), safe=False).cast(pa.int64())
        cols.append([float(v) if isinstance(v, decimal.Decimal) else v for v in col.to_pylist()])
    return [list(r) for r in zip(*cols)]

job = json.load(sys.stdin)
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SET TimeZone = 'UTC'")
con.execute("SET enable_progress_bar = false")
for name in ("orders", "users"):
    paths = ", ".join("'" + p.replace("'", "''") + "'" for p in job[name])
    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{paths}])")
out = []
for name, sql in job["queries"]:
    try:
        ms, cpu0 = [], time.process_time()
        for _ in range(job["runs"]):
            t0 = time.perf_counter()
            table = con.execute(sql).fetch_arrow_table()
            ms.append((time.perf_counter() - t0) * 1e3)
        cpu_ms = (time.process_time() - cpu0) * 1e3 / job["runs"]
        ms.sort()
        out.append({"name": name, "best_ms": ms[0], "median_ms": ms[len(ms) // 2], "cpu_ms": cpu_ms, "rows": rows(table)})
    except Exception as e:
        out.append({"name": name, "error": str(e).splitlines()[0][:150]})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"queries": out, "peak_rss_mib": peak}))
"#;

fn config(dir: &Path) -> anyhow::Result<ValidConfig> {
    Config::from_toml(&format!("{ORDERS_TABLE}{USERS_TABLE}")).and_then(|c| c.validate(dir)).map_err(anyhow::Error::msg)
}

/// Users u0..u{n-1}, each with a country and a tier.
fn users(schema: &SchemaRef, first: usize, n: usize) -> RecordBatch {
    let ids = first..first + n;
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "user_id" => Arc::new(StringArray::from_iter_values(ids.clone().map(|i| format!("u{i}")))),
                "country" => {
                    Arc::new(StringArray::from_iter_values(ids.clone().map(|i| COUNTRIES[i % COUNTRIES.len()])))
                }
                "tier" => Arc::new(StringArray::from_iter_values(
                    ids.clone().map(|i| TIERS[(i / COUNTRIES.len()) % TIERS.len()]),
                )),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("a users batch")
}

/// A result as rows of JSON values, timestamps as microseconds since the
/// epoch, so that both engines' answers compare.
fn cells(result: &QueryResult) -> anyhow::Result<Value> {
    let mut rows = Vec::new();
    for batch in &result.batches {
        let columns = batch.columns().iter().map(column).collect::<anyhow::Result<Vec<_>>>()?;
        rows.extend((0..batch.num_rows()).map(|r| Value::Array(columns.iter().map(|c| c[r].clone()).collect())));
    }
    Ok(Value::Array(rows))
}

fn column(a: &ArrayRef) -> anyhow::Result<Vec<Value>> {
    fn each<T: ArrowPrimitiveType>(a: &ArrayRef, f: impl Fn(T::Native) -> Value) -> Vec<Value> {
        a.as_primitive::<T>().iter().map(|v| v.map_or(Value::Null, &f)).collect()
    }
    let text = |v: Option<&str>| v.map_or(Value::Null, Value::from);
    Ok(match a.data_type() {
        DataType::Int32 => each::<Int32Type>(a, Value::from),
        DataType::Int64 => each::<Int64Type>(a, Value::from),
        DataType::UInt64 => each::<UInt64Type>(a, Value::from),
        DataType::Float32 => each::<Float32Type>(a, Value::from),
        DataType::Float64 => each::<Float64Type>(a, Value::from),
        DataType::Timestamp(TimeUnit::Second, _) => each::<TimestampSecondType>(a, |v| json!(v * 1_000_000)),
        DataType::Timestamp(TimeUnit::Millisecond, _) => each::<TimestampMillisecondType>(a, |v| json!(v * 1_000)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => each::<TimestampMicrosecondType>(a, Value::from),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            each::<TimestampNanosecondType>(a, |v| json!(v.div_euclid(1_000)))
        }
        DataType::Utf8 => a.as_string::<i32>().iter().map(text).collect(),
        DataType::LargeUtf8 => a.as_string::<i64>().iter().map(text).collect(),
        DataType::Utf8View => a.as_string_view().iter().map(text).collect(),
        other => anyhow::bail!("no comparable form for a {other} column"),
    })
}

/// Whether two answers agree: floats to a relative 1e-6 (the engines sum
/// in different orders), everything else exactly.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b)),
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= 1e-6 * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

/// `720 rows, first [..]`, cut to fit a line.
fn compact(rows: &Value) -> String {
    let rows = rows.as_array().map_or(&[][..], Vec::as_slice);
    let mut first = rows.first().map_or_else(String::new, |r| format!(", first {r}"));
    if first.chars().count() > 90 {
        first = first.chars().take(89).chain(['…']).collect();
    }
    format!("{} rows{first}", thousands(rows.len() as u64))
}

/// Each table's rows and live data files (local paths) and their bytes.
async fn status(lake: Lake, cfg: &ValidConfig) -> anyhow::Result<Value> {
    let engine = QueryEngine::new(lake.clone(), THREADS)?;
    let mut v = json!({});
    for def in &cfg.tables {
        let TableName { namespace, name } = &def.name;
        let rows = lake.try_load(&def.name).await?.map_or(0, |t| t.total_records());
        let (mut files, mut bytes) = (Vec::new(), 0);
        if rows > 0 {
            let sql = format!("SELECT file_path, file_size_in_bytes FROM {namespace}.\"{name}$files\"");
            let listed = cells(&engine.sql(&sql).await.with_context(|| sql.clone())?)?;
            for f in listed.as_array().into_iter().flatten() {
                let path = f[0].as_str().context("a file path")?;
                files.push(path.strip_prefix("file://").unwrap_or(path).to_owned());
                bytes += f[1].as_u64().unwrap_or(0);
            }
        }
        v[name] = json!({ "rows": rows, "files": files, "bytes": bytes });
    }
    Ok(v)
}

/// Every query (or just `only`) [`RUNS`] times in our engine.
async fn ours(lake: Lake, only: Option<&str>) -> anyhow::Result<Value> {
    let engine = QueryEngine::new(lake, THREADS)?;
    let mut out = Vec::new();
    for (name, template) in QUERIES.into_iter().filter(|(n, _)| only.is_none_or(|o| o == *n)) {
        let sql = OURS.spell(template);
        let (mut times, mut last, cpu0) = (Vec::new(), None, cpu_seconds());
        for _ in 0..RUNS {
            let t0 = Instant::now();
            match engine.sql(&sql).await {
                Ok(result) => last = Some(result),
                Err(e) => {
                    last = None;
                    out.push(json!({ "name": name, "error": e.to_string().lines().next().unwrap_or_default() }));
                    break;
                }
            }
            times.push(t0.elapsed());
        }
        let cpu_ms = (cpu_seconds() - cpu0) * 1e3 / RUNS as f64;
        if let Some(result) = last {
            let ms = sorted_ms(times);
            out.push(json!({
                "name": name, "best_ms": ms[0], "median_ms": quantile(&ms, 0.5), "cpu_ms": cpu_ms,
                "rows": cells(&result)?,
            }));
        }
    }
    Ok(json!({ "queries": out, "peak_rss_mib": peak_rss_mib() }))
}

/// The child's side: one phase on the lake in `dir`, its result as JSON.
fn phase(dir: &Path, args: &[String]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cfg = config(dir)?;
    let lake = rt.block_on(Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse))?;
    let v = match args.first().map(String::as_str) {
        Some("build") => {
            let rows: usize = args.get(1).context("build ROWS")?.parse()?;
            let per_commit: usize = args.get(2).context("build ROWS COMMIT_ROWS")?.parse()?;
            let span = (DAY0, DAY0 + 30 * DAY);
            rt.block_on(async {
                let o =
                    tributary_benches::lake::append(&lake, &cfg, "raw.orders", rows, per_commit, |schema, first, n| {
                        orders(schema, "b", first, n, rows, span)
                    })
                    .await?;
                let u = tributary_benches::lake::append(&lake, &cfg, "raw.users", USERS, USERS, users).await?;
                anyhow::Ok(json!({ "orders": o, "users": u }))
            })?
        }
        Some("status") => rt.block_on(status(lake, &cfg))?,
        Some("queries") => rt.block_on(ours(lake, args.get(1).map(String::as_str)))?,
        other => anyhow::bail!("unknown phase {other:?}"),
    };
    println!("{v}");
    Ok(())
}

/// DuckDB over the files `status` listed, in `python`'s process.
fn duckdb(python: &Path, status: &Value) -> anyhow::Result<Value> {
    let queries: Vec<(&str, String)> = QUERIES.iter().map(|(name, t)| (*name, DUCKDB.spell(t))).collect();
    let job = json!({
        "orders": status["orders"]["files"], "users": status["users"]["files"], "queries": queries, "runs": RUNS,
    });
    let mut proc = Command::new(python)
        .args(["-c", DUCKDB_SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {} (make it with `bash dev/python-env.sh`)", python.display()))?;
    proc.stdin.take().context("duckdb's stdin")?.write_all(job.to_string().as_bytes())?;
    let out = proc.wait_with_output()?;
    anyhow::ensure!(out.status.success(), "duckdb failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("phase") {
        return phase(Path::new(args.get(2).context("phase DIR")?), &args[3..]);
    }
    let temp = tempfile::tempdir()?;
    let dir = args.get(1).map_or_else(|| temp.path().to_path_buf(), PathBuf::from);
    let rows = count_arg(&args, 2, 10_000_000)?;
    let per_commit = count_arg(&args, 4, COMMIT_ROWS)?;
    let python = args
        .get(3)
        .cloned()
        .or_else(|| std::env::var("TRIBUTARY_PYTHON").ok())
        .map_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.dev/venv/bin/python")), PathBuf::from);
    let lake = dir.join("lake");
    let rows_of = |s: &Value, t: &str| s[t]["rows"].as_u64().unwrap_or(0);

    let t0 = Instant::now();
    let mut status = if lake.exists() { child(&lake, &["status"])? } else { Value::Null };
    let reused = rows_of(&status, "orders") == rows as u64 && rows_of(&status, "users") == USERS as u64;
    if !reused {
        let _ = std::fs::remove_dir_all(&lake);
        std::fs::create_dir_all(&lake)?;
        child(&lake, &["build", &rows.to_string(), &per_commit.to_string()])?;
        status = child(&lake, &["status"])?;
    }
    for t in ["orders", "users"] {
        let files = status[t]["files"].as_array().map_or(0, Vec::len);
        println!(
            "raw.{t}: {} rows in {files} file{}, {:.2} MiB of Parquet",
            thousands(rows_of(&status, t)),
            if files == 1 { "" } else { "s" },
            num(&status[t], "bytes") / 1048576.0
        );
    }
    let how = if reused { "reused" } else { "written" };
    println!("lake {how} in {:.0} s: {}", t0.elapsed().as_secs_f64(), lake.display());

    let ours = child(&lake, &["queries"])?;
    let theirs = duckdb(&python, &status)?;
    let find = |v: &Value, name: &str| -> Value {
        v["queries"].as_array().into_iter().flatten().find(|q| q["name"] == name).cloned().unwrap_or_default()
    };
    println!(
        "\n{RUNS} runs each, {THREADS} threads each\n\n\
         | query | ours best ms | ours median ms | ours CPU ms | DuckDB best ms | DuckDB CPU ms | ours/DuckDB | answers match |\n\
         |---|---:|---:|---:|---:|---:|---:|---|"
    );
    let mut notes = Vec::new();
    for (name, _) in QUERIES {
        let (a, b) = (find(&ours, name), find(&theirs, name));
        let failed = |v: &Value| v.get("error").is_some() || v.is_null();
        let (ratio, answers) = if failed(&a) || failed(&b) {
            (String::new(), "FAILED")
        } else if same(&a["rows"], &b["rows"]) {
            (format!("{:.2}×", num(&a, "best_ms") / num(&b, "best_ms")), "yes")
        } else {
            (format!("{:.2}×", num(&a, "best_ms") / num(&b, "best_ms")), "NO")
        };
        let ms = |v: &Value, k: &str| if failed(v) { "FAILED".to_owned() } else { format!("{:.1}", num(v, k)) };
        println!(
            "| {name} | {} | {} | {} | {} | {} | {ratio} | {answers} |",
            ms(&a, "best_ms"),
            ms(&a, "median_ms"),
            ms(&a, "cpu_ms"),
            ms(&b, "best_ms"),
            ms(&b, "cpu_ms")
        );
        for (who, v) in [("ours", &a), ("DuckDB", &b)] {
            match v.get("error") {
                Some(e) => notes.push(format!("{name}: {who} failed: {}", e.as_str().unwrap_or_default())),
                None if answers == "NO" || who == "ours" => {
                    notes.push(format!("{name}: {who} {}", compact(&v["rows"])))
                }
                None => {}
            }
        }
    }
    println!(
        "\npeak RSS: ours {:.0} MiB, DuckDB {:.0} MiB (each its whole process)",
        num(&ours, "peak_rss_mib"),
        num(&theirs, "peak_rss_mib")
    );
    println!("ours/DuckDB: best time over best time; CPU ms: user + system per run (ours in 10 ms ticks).\n\nanswers:");
    for n in notes {
        println!("  {n}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_compare_floats_loosely_and_the_rest_exactly() {
        assert!(same(&json!([[1, "a", 1000.0]]), &json!([[1, "a", 1_000.000_000_1]])));
        assert!(!same(&json!([[1, "a", 1000.0]]), &json!([[1, "a", 1000.1]])));
        assert!(same(&json!([[42]]), &json!([[42.0]])));
        assert!(!same(&json!([[1795132800000000_i64]]), &json!([[1795132800000001_i64]])));
        assert!(!same(&json!([["a"]]), &json!([["a"], ["b"]])));
        assert!(same(&json!([[null]]), &json!([[null]])));
    }

    #[test]
    fn timestamps_become_microseconds_whatever_their_unit() {
        let ns: ArrayRef =
            Arc::new(arrow_array::TimestampNanosecondArray::from(vec![1_795_132_800_000_000_999]).with_timezone("UTC"));
        assert_eq!(column(&ns).unwrap(), vec![json!(1_795_132_800_000_000_i64)]);
    }

    #[test]
    fn both_dialects_spell_every_placeholder() {
        for (_, t) in QUERIES {
            for d in [&OURS, &DUCKDB] {
                assert!(!d.spell(t).contains('{'), "{}", d.spell(t));
            }
        }
    }
}
