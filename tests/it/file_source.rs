//! The `[[files]]` landing source inside a running server: Parquet, CSV and
//! NDJSON (compressed or not) routed by folder, `key=value` folders filling
//! columns, whole-file and row quarantine, a changed file refused, and two
//! workers on one landing area and one lake landing each row once. The
//! table has no dedup key, so nothing but positions prevents duplicates.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Int32Array, RecordBatch, StringArray, TimestampNanosecondArray};
use parquet::arrow::ArrowWriter;

use crate::common::{Running, TRANSACTIONS, config, metric, start, wait_for_rows, without_dedup_key};

/// [`TRANSACTIONS`] without its dedup key, as `table`, fed by a landing
/// area routed by folder. Metrics are per process: each test has a table
/// name of its own.
fn landing_config(table: &str, landing: &Path, extra: &str) -> String {
    format!(
        "{}\n[[files]]\nname = \"drops\"\npath = \"{}/{{table}}\"\npoll_interval = \"50ms\"\n{extra}",
        without_dedup_key(TRANSACTIONS).replace("raw.transactions", table),
        landing.display()
    )
}

/// `rows` events as Parquet: a 32-bit `user_id` (the table's is a long), the
/// amount as text, the time in nanoseconds. Row `bad`, if any, has a time
/// with nanoseconds, which microseconds cannot hold.
fn parquet_file(path: &Path, prefix: &str, rows: usize, bad: Option<usize>) {
    let ns = 1_795_000_000_000_000_000i64;
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("event_id", Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("{prefix}-{i}"))))),
        ("user_id", Arc::new(Int32Array::from_iter_values((0..rows).map(|i| i as i32)))),
        ("amount", Arc::new(StringArray::from_iter_values((0..rows).map(|i| format!("{}.50", i % 90))))),
        (
            "event_time",
            Arc::new(
                TimestampNanosecondArray::from_iter_values((0..rows).map(|i| ns + i64::from(Some(i) == bad)))
                    .with_timezone("UTC"),
            ),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut writer = ArrowWriter::try_new(std::fs::File::create(path).unwrap(), batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

fn csv_text(prefix: &str, rows: usize) -> String {
    let mut text = "event_id,user_id,amount,event_time\n".to_owned();
    for i in 0..rows {
        text += &format!("{prefix}-{i},{i},{}.25,2026-11-20T10:00:00Z\n", i % 90);
    }
    text
}

fn gzip(text: &str) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

async fn one_number(srv: &Running, sql: &str) -> i64 {
    let (status, v) = srv.sql(sql).await;
    assert_eq!(status, 200, "{sql}: {v}");
    v["rows"][0][0].as_i64().unwrap()
}

#[tokio::test]
async fn a_landing_area_lands_mixed_files_once_and_refuses_a_changed_one() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let eur = landing.join("raw.mixed/day=2026-11-20/currency=EUR");
    std::fs::create_dir_all(&eur).unwrap();
    std::fs::create_dir_all(landing.join("raw.unknown")).unwrap();
    parquet_file(&eur.join("a.parquet"), "pq", 1000, Some(7));
    std::fs::write(
        eur.join("b.csv.gz"),
        gzip(&format!("{}csv-x,oops,1.00,2026-11-20T10:00:00Z\n", csv_text("csv", 500))),
    )
    .unwrap();
    let ndjson: String = (0..300).map(|i| crate::common::event(&format!("nd-{i}"), "2.00") + "\n").collect();
    std::fs::write(eur.join("c.ndjson.zst"), zstd::encode_all(format!("{ndjson}{{\"broken\n").as_bytes(), 1).unwrap())
        .unwrap();
    let whole = std::fs::read(eur.join("a.parquet")).unwrap();
    std::fs::write(eur.join("truncated.parquet"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(landing.join("raw.unknown/x.csv"), "a\n1\n").unwrap();

    let cfg = config(&landing_config("raw.mixed", &landing, ""), dir.path());
    let srv = start(&cfg).await;
    wait_for_rows(&srv, "raw.mixed", 999 + 500 + 300).await;
    wait_for_rows(&srv, "quarantine.mixed", 4).await;
    assert_eq!(one_number(&srv, "SELECT count(DISTINCT event_id) FROM raw.mixed").await, 1799);
    assert_eq!(
        one_number(&srv, "SELECT count(*) FROM raw.mixed WHERE currency = 'EUR' AND _source = 'file'").await,
        1799,
        "the currency=EUR folder fills the column"
    );
    let sql = "SELECT count(*) FROM raw.mixed WHERE event_id = 'pq-8' AND user_id = 8 AND _source_offset = 8 \
               AND _source_file LIKE '%/a.parquet'";
    assert_eq!(one_number(&srv, sql).await, 1, "a Parquet row keeps its values and lineage");
    let kinds = srv.sql("SELECT error_kind, position FROM quarantine.mixed ORDER BY error_kind, position").await.1;
    let kinds: Vec<(String, String)> = kinds["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().rsplit('/').next().unwrap().to_owned()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("bad_file".into(), "truncated.parquet row 0".into()),
            ("invalid_timestamp".into(), "a.parquet row 7".into()),
            ("malformed_json".into(), "c.ndjson.zst row 300".into()),
            ("type_mismatch".into(), "b.csv.gz row 500".into()),
        ]
    );
    let text = srv.metrics().await;
    let files = |outcome: &str| metric(&text, "tributary_files_total", &[r#"table="raw.mixed""#, outcome]);
    assert_eq!(files(r#"outcome="loaded""#), Some(3.0));
    assert_eq!(files(r#"outcome="failed""#), Some(1.0));
    srv.stop().await;

    // A restart reads nothing again; a rewritten file is refused, a new one lands.
    std::fs::write(eur.join("b.csv.gz"), gzip(&csv_text("csv-again", 10))).unwrap();
    std::fs::write(eur.join("d.csv"), csv_text("new", 20)).unwrap();
    let srv = start(&cfg).await;
    wait_for_rows(&srv, "raw.mixed", 1799 + 20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.count("raw.mixed").await, 1819);
    let text = srv.metrics().await;
    let files = |outcome: &str| metric(&text, "tributary_files_total", &[r#"table="raw.mixed""#, outcome]);
    assert_eq!(files(r#"outcome="changed""#), Some(1.0), "reported once, not at every poll");
    assert_eq!(files(r#"outcome="loaded""#), Some(4.0), "the process's count: three, then one");
    srv.stop().await;
}

#[tokio::test]
async fn two_workers_on_one_landing_area_land_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    let day = landing.join("raw.transactions/day=2026-11-20");
    std::fs::create_dir_all(&day).unwrap();
    let (files, rows) = (12, 3000);
    for f in 0..files {
        std::fs::write(day.join(format!("part-{f:02}.csv")), csv_text(&format!("f{f}"), rows)).unwrap();
    }
    // Small commits, so that the workers' commits interleave within files.
    let toml = landing_config("raw.transactions", &landing, "max_rows = 1000\n");
    let cfg = config(&toml, dir.path());
    let a = start(&cfg).await;
    let b = start(&cfg).await;
    wait_for_rows(&a, "raw.transactions", (files * rows) as i64).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.count("raw.transactions").await, (files * rows) as i64);
    let sql = "SELECT count(DISTINCT concat(_source_file, '#', CAST(_source_offset AS VARCHAR))) FROM raw.transactions";
    assert_eq!(one_number(&a, sql).await, (files * rows) as i64);
    assert_eq!(one_number(&a, "SELECT count(DISTINCT event_id) FROM raw.transactions").await, (files * rows) as i64);
    a.stop().await;
    b.stop().await;
}
