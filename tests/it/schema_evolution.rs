//! Config changes evolve tables additively and refuse breaking changes.

use tributary_core::TableName;

use crate::common::{TRANSACTIONS, config, event, open_lake, start};

#[tokio::test]
async fn adding_an_optional_field_evolves_and_old_rows_read_null() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(srv.post("raw.transactions", event("old", "1.00")).await.1["accepted"], 1);
    srv.stop().await;

    let evolved = TRANSACTIONS.replace(
        "{ name = \"currency\",   type = \"string\" },",
        "{ name = \"currency\",   type = \"string\" },\n  { name = \"channel\", type = \"string\" },",
    );
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
        assert_eq!(
            open_lake(&cfg).await.load(&name).await.unwrap().location,
            before,
            "{label}: table must be untouched"
        );
    }
}
