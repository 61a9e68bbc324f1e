//! Looking around the lake and cleaning it up: the table listing, time
//! travel by time, unknown endpoints answered in JSON, and dropping a table.

use serde_json::Value;
use tributary_core::TableName;

use crate::common::{TRANSACTIONS, config, event, start};

#[tokio::test]
async fn tables_are_listed_with_columns_counts_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(srv.post("raw.transactions", event("a", "1.00")).await.0, 200);
    assert_eq!(srv.post("raw.transactions", format!("{}\n{{bad", event("b", "1.00"))).await.0, 200);
    let v: Value = srv.client.get(format!("{}/v1/tables", srv.base)).send().await.unwrap().json().await.unwrap();
    let tables = v["tables"].as_array().unwrap();
    let raw = tables.iter().find(|t| t["name"] == "raw.transactions").expect("raw table listed");
    assert_eq!(raw["rows"], 2);
    assert_eq!(raw["snapshots"], 2);
    assert_eq!(raw["partition"], serde_json::json!(["day(event_time)"]));
    let amount = raw["columns"].as_array().unwrap().iter().find(|c| c["name"] == "amount").unwrap();
    assert_eq!((amount["type"].as_str(), amount["required"].as_bool()), (Some("decimal(12,2)"), Some(true)));
    let q = tables.iter().find(|t| t["name"] == "quarantine.transactions").expect("quarantine listed");
    assert_eq!(q["rows"], 1);

    // Unknown endpoints answer in the same JSON shape as every error.
    let resp = srv.client.get(format!("{}/v1/nope", srv.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let v: Value = resp.json().await.unwrap();
    assert!(v["error"]["message"].as_str().unwrap().contains("/v1/sql"), "{v}");
    srv.stop().await;
}

#[tokio::test]
async fn time_travel_takes_a_time_as_well_as_a_snapshot_id() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(srv.post("raw.transactions", event("a", "1.00")).await.0, 200);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let between = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert_eq!(srv.post("raw.transactions", event("b", "1.00")).await.0, 200);
    let (status, v) = srv.sql(&format!("SELECT count(*) FROM raw.\"transactions@{between}\"")).await;
    assert_eq!((status, v["rows"][0][0].as_i64()), (200, Some(1)), "{v}");
    let (status, v) = srv.sql("SELECT count(*) FROM raw.\"transactions@2000-01-01T00:00:00Z\"").await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("no snapshot committed at or before"), "{v}");
    let (status, v) = srv.sql("SELECT count(*) FROM raw.\"transactions@yesterday\"").await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("RFC 3339 time"), "{v}");
    srv.stop().await;
}

#[tokio::test]
async fn a_dropped_table_leaves_the_catalog_and_with_purge_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TRANSACTIONS, dir.path());
    let srv = start(&cfg).await;
    assert_eq!(srv.post("raw.transactions", event("a", "1.00")).await.0, 200);
    srv.stop().await;
    let lake = crate::common::open_lake(&cfg).await;
    let name = TableName::new("raw", "transactions");
    let files = dir.path().join("warehouse/raw/transactions");
    assert!(files.join("metadata").exists());
    lake.drop_table(&name, true).await.unwrap();
    assert!(lake.try_load(&name).await.unwrap().is_none());
    assert!(!files.join("metadata").exists(), "purge deletes the files");
    assert!(lake.try_load(&name.quarantine()).await.unwrap().is_some(), "quarantine is a table of its own");
}
