//! SQL's scan of a lake table: answers from manifest statistics, file
//! pruning, and results that agree with the rows written whatever the
//! filter.

use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array};
use tributary_core::Positions;
use tributary_core::config::ValidConfig;
use tributary_query::{QueryEngine, output};
use tributary_table::{Lake, PipelineStamp};

use crate::common::open_lake;
use crate::zones_util::{DAY0, H, zone_config};

/// One row: (id, user, amount, ts µs).
type Row = (String, String, Option<f64>, i64);

/// Appends `rows` to raw.orders in one commit (one file per day they span).
async fn append(lake: &Lake, cfg: &ValidConfig, rows: &[Row]) {
    let def = cfg.tables.iter().find(|t| t.name.to_string() == "raw.orders").unwrap();
    let table = lake.ensure_table(def).await.unwrap();
    let schema = table.arrow_schema().unwrap();
    let n = rows.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0.clone()))),
                "user_id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1.clone()))),
                "amount" => Arc::new(rows.iter().map(|r| r.2).collect::<Float64Array>()),
                "ts" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.3)).with_timezone("+00:00"),
                ),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    let files = tributary_table::write_data_files(lake, &table, &[batch], 1 << 27).await.unwrap();
    tributary_table::commit(lake, &table, &files, &PipelineStamp::new("test", Positions::default(), 0)).await.unwrap();
}

/// `sql`'s rows as `|`-joined text.
async fn ask(engine: &QueryEngine, sql: &str) -> Vec<String> {
    let r = engine.sql(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let mut out = Vec::new();
    for b in &r.batches {
        for row in 0..b.num_rows() {
            out.push((0..b.num_columns()).map(|c| output::cell_text(b, c, row)).collect::<Vec<_>>().join("|"));
        }
    }
    out
}

/// The physical plan of `sql`, as text.
async fn plan(engine: &QueryEngine, sql: &str) -> String {
    ask(engine, &format!("EXPLAIN {sql}")).await.join("\n")
}

/// `µs` as the SQL timestamp literal DataFusion compares with `ts`.
fn at(us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(us).unwrap();
    format!("TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// Tiny deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

#[tokio::test]
async fn count_min_and_max_come_from_the_manifests_and_filters_prune_files() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = zone_config("", dir.path());
    let lake = open_lake(&cfg).await;
    let engine = QueryEngine::new(lake.clone(), 2).unwrap();
    // Before any commit: an empty table, still answered.
    lake.ensure_table(&cfg.tables[0]).await.unwrap();
    assert_eq!(ask(&engine, "SELECT count(*) FROM raw.orders").await, ["0"]);

    // Three days, a commit per day, and a fourth commit over days 1 and 2.
    let row = |i: i64, day: i64, amount: f64| {
        (format!("o{i}"), format!("u{}", i % 3), Some(amount), DAY0 + day * 24 * H + i * 1000)
    };
    for day in 0..3 {
        let rows: Vec<Row> = (0..10).map(|i| row(day * 100 + i, day, (day * 10 + i) as f64)).collect();
        append(&lake, &cfg, &rows).await;
    }
    append(&lake, &cfg, &[row(500, 1, 100.0), row(501, 2, -5.0)]).await;

    let count = "SELECT count(*) FROM raw.orders";
    assert_eq!(ask(&engine, count).await, ["32"]);
    let p = plan(&engine, count).await;
    assert!(!p.contains("DataSourceExec"), "count(*) reads no file:\n{p}");

    let day1 =
        format!("SELECT count(*) FROM raw.orders WHERE ts >= {} AND ts < {}", at(DAY0 + 24 * H), at(DAY0 + 48 * H));
    assert_eq!(ask(&engine, &day1).await, ["11"]);
    let p = plan(&engine, &day1).await;
    assert!(
        !p.contains("DataSourceExec") && !p.contains("FilterExec"),
        "a whole day is counted from the manifests:\n{p}"
    );

    let bounds = "SELECT min(ts), max(ts), min(amount), max(amount) FROM raw.orders";
    let got = ask(&engine, bounds).await;
    let p = plan(&engine, bounds).await;
    assert!(!p.contains("DataSourceExec"), "min and max of numbers and times read no file:\n{p}");
    // The same values as a scan that cannot use the statistics.
    let scanned = format!("{bounds} WHERE length(id) > 0");
    assert!(plan(&engine, &scanned).await.contains("DataSourceExec"));
    assert_eq!(got, ask(&engine, &scanned).await);
    let exact = format!(
        "SELECT min(ts) = {}, max(ts) = {}, min(amount) = -5, max(amount) = 100 FROM raw.orders",
        at(DAY0),
        at(DAY0 + 48 * H + 501_000)
    );
    assert_eq!(ask(&engine, &exact).await, ["true|true|true|true"], "{got:?}");

    // A filter the bounds cannot settle still reads only the files of day 1.
    let some = format!(
        "SELECT count(*) FROM raw.orders WHERE ts >= {} AND ts < {} AND amount > 12",
        at(DAY0 + 24 * H),
        at(DAY0 + 48 * H)
    );
    assert_eq!(ask(&engine, &some).await, ["8"]);
    let p = plan(&engine, &some).await;
    assert_eq!(p.matches(".parquet").count(), 2, "day 1's two files, of five:\n{p}");

    // A string's bounds may be truncated: min(id) is read, and right.
    assert_eq!(ask(&engine, "SELECT min(id), max(id) FROM raw.orders").await, ["o0|o9"]);
    // A prefix match, which DataFusion turns into bounds of its own.
    assert_eq!(ask(&engine, "SELECT count(*) FROM raw.orders WHERE id LIKE 'o10%'").await, ["10"]);

    // NaN is left out of a float's bounds; max sees it.
    append(&lake, &cfg, &[("nan".into(), "u0".into(), Some(f64::NAN), DAY0)]).await;
    assert_eq!(ask(&engine, "SELECT max(amount), count(*) FROM raw.orders").await, ["NaN|33"]);

    // Time travel reads the older snapshot the same way.
    let first = ask(&engine, r#"SELECT snapshot_id FROM raw."orders$snapshots" ORDER BY committed_at LIMIT 1"#).await;
    let old = format!(r#"SELECT count(*), max(amount) = 9 FROM raw."orders@{}""#, first[0]);
    assert_eq!(ask(&engine, &old).await, ["10|true"]);
}

#[tokio::test]
async fn any_filter_gives_the_rows_written() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = zone_config("", dir.path());
    let lake = open_lake(&cfg).await;
    let engine = QueryEngine::new(lake.clone(), 2).unwrap();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut rows: Vec<Row> = Vec::new();
    // Ten commits of random rows over five days, some amounts NULL.
    for c in 0..10 {
        let batch: Vec<Row> = (0..50)
            .map(|i| {
                let amount = (rng.below(10) != 0).then(|| rng.below(10_000) as f64 / 100.0 - 20.0);
                // A quarter on the hour, where the filters' bounds fall.
                let within = if rng.below(4) == 0 { 0 } else { rng.below(H as u64) as i64 };
                let ts = DAY0 + rng.below(5 * 24) as i64 * H + within;
                (format!("r{c}-{i}"), format!("u{}", rng.below(7)), amount, ts)
            })
            .collect();
        append(&lake, &cfg, &batch).await;
        rows.extend(batch);
    }
    for _ in 0..40 {
        let (a, b) = (rng.below(6 * 24) as i64 - 12, rng.below(6 * 24) as i64 - 12);
        let (from, to) = (DAY0 + a.min(b) * H, DAY0 + a.max(b) * H);
        let least = rng.below(100) as f64 - 30.0;
        let filters = [
            (
                format!("ts >= {} AND ts < {}", at(from), at(to)),
                Box::new(|r: &Row| r.3 >= from && r.3 < to) as Box<dyn Fn(&Row) -> bool>,
            ),
            (format!("ts > {}", at(from)), Box::new(move |r: &Row| r.3 > from)),
            (format!("amount >= {least}"), Box::new(move |r: &Row| r.2.is_some_and(|v| v >= least))),
            (
                format!("ts <= {} AND amount < {least}", at(to)),
                Box::new(move |r: &Row| r.3 <= to && r.2.is_some_and(|v| v < least)),
            ),
            (format!("ts < {} OR ts >= {}", at(from), at(to)), Box::new(move |r: &Row| r.3 < from || r.3 >= to)),
        ];
        for (sql, keep) in &filters {
            let kept: Vec<&Row> = rows.iter().filter(|r| keep(r)).collect();
            let amounts: Vec<f64> = kept.iter().filter_map(|r| r.2).collect();
            let min = amounts.iter().copied().reduce(f64::min);
            let max = amounts.iter().copied().reduce(f64::max);
            let q = format!(
                "SELECT count(*), count(amount), min(amount), max(amount), min(ts) IS NULL FROM raw.orders WHERE {sql}"
            );
            let got = ask(&engine, &q).await;
            let cells: Vec<&str> = got[0].split('|').collect();
            let number = |c: &str| c.parse::<f64>().ok();
            assert_eq!(cells[0], kept.len().to_string(), "{q}");
            assert_eq!(cells[1], amounts.len().to_string(), "{q}");
            assert_eq!((number(cells[2]), number(cells[3])), (min, max), "{q}: {got:?}");
            assert_eq!(cells[4], kept.is_empty().to_string(), "{q}");
        }
    }
}
