//! The same commit protocol against a real PostgreSQL catalog.
//!
//! `dev/test.sh` makes sure a server is listening and exports
//! `TRIBUTARY_TEST_PG_URL`; by default the local one on 127.0.0.1:5432.

use tributary_core::config::Config;

use crate::common::{TRANSACTIONS, event, start};

fn pg_url() -> String {
    std::env::var("TRIBUTARY_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

#[tokio::test]
async fn postgres_catalog_ingests_queries_and_fences() {
    let dir = tempfile::tempdir().unwrap();
    // A catalog name of its own keeps runs from seeing each other's tables.
    let name = format!("it_{}", uuid::Uuid::new_v4().simple());
    let toml = format!("[catalog]\nurl = \"{}\"\nname = \"{name}\"\n{TRANSACTIONS}", pg_url());
    let cfg = Config::from_toml(&toml).unwrap().validate(dir.path()).unwrap();
    let srv = start(&cfg).await;
    let body: Vec<String> = (0..200).map(|i| event(&format!("p{i}"), "5.00")).collect();
    let (status, r) = srv.post("raw.transactions", body.join("\n")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["accepted"], 200);
    assert_eq!(srv.count("raw.transactions").await, 200);

    // The compare-and-swap refuses a stale base on PostgreSQL too.
    let lake = srv.server.lake.clone();
    let t = lake.load(&tributary_core::TableName::new("raw", "transactions")).await.unwrap();
    let stale = t.location.clone();
    assert!(!lake.store().swap(&t.name, "file:///not/the/current.json", "file:///x.json").await.unwrap());
    assert_eq!(lake.load(&t.name).await.unwrap().location, stale);
    srv.stop().await;
}
