//! Config changes evolve tables additively and refuse breaking changes.

use tributary_core::TableName;

use crate::common::{TRANSACTIONS, config, event, open_lake, start};

const CURRENCY: &str = "{ name = \"currency\",   type = \"string\" },";

/// `toml` with one more column, declared inline, after `currency`.
fn with_column(toml: &str, column: &str) -> String {
    assert!(toml.contains(CURRENCY));
    toml.replace(CURRENCY, &format!("{CURRENCY}\n  {column},"))
}

#[tokio::test]
async fn adding_an_optional_field_evolves_and_old_rows_read_null() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(srv.post("raw.transactions", event("old", "1.00")).await.1["accepted"], 1);
    srv.stop().await;

    let evolved = with_column(TRANSACTIONS, "{ name = \"channel\", type = \"string\" }");
    let srv = start(&config(&evolved, dir.path())).await;
    let new = r#"{"event_id":"new","user_id":1,"amount":"2.00","channel":"web","event_time":"2026-11-21T00:00:00Z"}"#;
    assert_eq!(srv.post("raw.transactions", new).await.1["accepted"], 1);
    let (status, v) = srv.sql("SELECT event_id, channel, _schema_id FROM raw.transactions ORDER BY event_id").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], serde_json::json!([["new", "web", 1], ["old", null, 0]]));
    srv.stop().await;
}

#[tokio::test]
async fn breaking_change_is_refused_and_table_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TRANSACTIONS, dir.path());
    let srv = start(&cfg).await;
    srv.stop().await;
    let name = TableName::new("raw", "transactions");
    let before = open_lake(&cfg).await.load(&name).await.unwrap().location;

    for (label, broken) in [
        (
            "removed required",
            TRANSACTIONS.replace("{ name = \"user_id\",    type = \"long\",          required = true },", ""),
        ),
        ("narrowed type", TRANSACTIONS.replace("\"user_id\",    type = \"long\"", "\"user_id\",    type = \"int\"")),
    ] {
        let cfg = config(&broken, dir.path());
        let err = tributary_server::start(&cfg, tokio_util::sync::CancellationToken::new()).await.unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("schema change for 'raw.transactions' refused") && msg.contains("user_id"),
            "{label}: {msg}"
        );
        assert!(!msg.contains("commit failed"), "a refusal at start is not a failed commit: {msg}");
        assert_eq!(
            open_lake(&cfg).await.load(&name).await.unwrap().location,
            before,
            "{label}: table must be untouched"
        );
    }
}

/// Queries broke with "Column note not found" between a restart that added
/// a column and the next write: the current snapshot was read under the
/// schema it was written with.
#[tokio::test]
async fn a_new_optional_field_reads_as_null_before_the_next_write() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(srv.post("raw.transactions", event("old", "1.00")).await.1["accepted"], 1);
    srv.stop().await;

    let evolved = with_column(TRANSACTIONS, "{ name = \"note\", type = \"string\" }");
    let srv = start(&config(&evolved, dir.path())).await;
    let (status, v) = srv.sql("SELECT * FROM raw.transactions").await;
    assert_eq!(status, 200, "{v}");
    let note = v["columns"].as_array().unwrap().iter().position(|c| c == "note").expect("note is a column");
    assert_eq!(v["rows"][0][note], serde_json::Value::Null);
    let (status, v) = srv.sql("SELECT count(*) FROM raw.transactions WHERE note IS NULL").await;
    assert_eq!((status, v["rows"][0][0].as_i64()), (200, Some(1)), "{v}");
    srv.stop().await;
}

#[tokio::test]
async fn widening_a_column_and_repartitioning_keep_old_rows_readable() {
    let base = with_column(TRANSACTIONS, "{ name = \"qty\", type = \"int\" }");
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(&base, dir.path())).await;
    let old = r#"{"event_id":"old","user_id":1,"amount":"1.50","qty":3,"event_time":"2026-11-20T10:00:00Z"}"#;
    assert_eq!(srv.post("raw.transactions", old).await.1["accepted"], 1);
    srv.stop().await;

    // int → long, decimal(12,2) → decimal(14,2), day → hour partitions.
    let widened = base
        .replace("{ name = \"qty\", type = \"int\" }", "{ name = \"qty\", type = \"long\" }")
        .replace("type = \"decimal(12,2)\"", "type = \"decimal(14,2)\"")
        .replace("day(event_time)", "hour(event_time)");
    let cfg = config(&widened, dir.path());
    let srv = start(&cfg).await;
    let new = r#"{"event_id":"new","user_id":2,"amount":"123456789012.25","qty":5000000000,"event_time":"2026-11-21T11:00:00Z"}"#;
    let (status, r) = srv.post("raw.transactions", new).await;
    assert_eq!((status, &r["accepted"]), (200, &serde_json::json!(1)), "{r}");
    let (status, v) =
        srv.sql("SELECT event_id, qty, CAST(amount AS VARCHAR) FROM raw.transactions ORDER BY event_id").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"], serde_json::json!([["new", 5_000_000_000i64, "123456789012.25"], ["old", 3, "1.50"]]));

    let table = open_lake(&cfg).await.load(&TableName::new("raw", "transactions")).await.unwrap();
    let spec = table.metadata.default_partition_spec();
    assert_eq!(spec.fields()[0].transform.to_string(), "hour");
    assert_eq!(table.metadata.partition_specs_iter().count(), 2, "the day spec stays for the old file");
    srv.stop().await;
}

/// Another worker evolved the table; after its next reload this worker's
/// HTTP committer wrote its (older) batches through the evolved schema and
/// failed every request with "field id not found" until restarted.
#[tokio::test]
async fn a_worker_keeps_writing_after_another_worker_evolves_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let old = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(old.post("raw.transactions", event("a1", "1.00")).await.0, 200);
    let evolved = with_column(TRANSACTIONS, "{ name = \"channel\", type = \"string\" }");
    let new = start(&config(&evolved, dir.path())).await;
    for id in ["a2", "a3", "a4"] {
        let (status, r) = old.post("raw.transactions", event(id, "1.00")).await;
        assert_eq!(status, 200, "{id}: {r}");
    }
    let with_channel =
        r#"{"event_id":"b1","user_id":1,"amount":"2.00","channel":"web","event_time":"2026-11-21T00:00:00Z"}"#;
    assert_eq!(new.post("raw.transactions", with_channel).await.0, 200);
    let (_, v) = new.sql("SELECT count(*), count(channel) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([5, 1]), "{v}");
    old.stop().await;
    new.stop().await;
}
