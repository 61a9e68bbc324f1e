//! The lake on a real S3 server (SeaweedFS, started by `dev/s3.sh`;
//! endpoint in `TRIBUTARY_TEST_S3`): Iceberg data and metadata in a bucket,
//! a landing area in the same bucket, two writers on one warehouse, and
//! wrong credentials refused at once with the reason.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tributary_core::config::{S3Config, Warehouse};
use tributary_table::iceberg::io::Storage;
use tributary_table::storage::s3::S3Storage;

use crate::common::{Running, TRANSACTIONS, config, event, start, wait_for_rows, without_dedup_key};

pub fn endpoint() -> String {
    std::env::var("TRIBUTARY_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:8333".to_owned())
}

/// The test server's settings, in the config (tests share one process, so
/// not through the environment).
fn s3_settings() -> S3Config {
    S3Config {
        endpoint: Some(endpoint()),
        access_key_id: Some("tributary".into()),
        secret_access_key: Some("tributary-secret".into()),
        ..S3Config::default()
    }
}

/// `[warehouse]` on a fresh prefix of the test bucket, as TOML.
fn warehouse_toml(prefix: &str) -> String {
    format!(
        "[warehouse]\npath = \"s3://tributary/{prefix}\"\ns3 = {{ endpoint = \"{}\", access_key_id = \"tributary\", secret_access_key = \"tributary-secret\" }}\n",
        endpoint()
    )
}

fn client() -> S3Storage {
    tributary_table::storage::s3_client(&s3_settings()).unwrap()
}

#[tokio::test]
async fn a_lake_on_s3_takes_http_and_landing_files_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("it-{}", uuid::Uuid::new_v4().simple());
    let landing = format!("s3://tributary/{prefix}-landing");
    let toml = format!(
        "{}{}\n[[files]]\nname = \"drops\"\npath = \"{landing}/{{table}}\"\npoll_interval = \"100ms\"\npost_action = \"move\"\n",
        warehouse_toml(&prefix),
        without_dedup_key(TRANSACTIONS).replace("raw.transactions", "raw.ons3"),
    );
    let s3 = client();
    let csv: String = std::iter::once("event_id,user_id,amount,event_time\n".to_owned())
        .chain((0..500).map(|i| format!("csv-{i},{i},1.50,2026-11-20T10:00:00Z\n")))
        .collect();
    s3.write(&format!("{landing}/raw.ons3/currency=EUR/a.csv"), Bytes::from(csv)).await.unwrap();
    let ndjson: String = (0..200).map(|i| event(&format!("nd-{i}"), "2.00") + "\n").collect();
    s3.write(&format!("{landing}/raw.ons3/b.ndjson"), Bytes::from(ndjson)).await.unwrap();

    let cfg = config(&toml, dir.path());
    assert!(matches!(cfg.warehouse, Warehouse::S3 { .. }));
    let srv = start(&cfg).await;
    let body: String = (0..100).map(|i| event(&format!("http-{i}"), "3.00") + "\n").collect();
    let (status, receipt) = srv.post("raw.ons3", body).await;
    assert_eq!(status, 200, "{receipt}");
    wait_for_rows(&srv, "raw.ons3", 800).await;
    let sql = "SELECT count(*) FROM raw.ons3 WHERE event_id LIKE 'csv-%' AND currency = 'EUR' AND _source = 'file' \
               AND _source_file LIKE 's3://tributary/%/a.csv'";
    let (_, v) = srv.sql(sql).await;
    assert_eq!(v["rows"][0][0], 500, "the currency=EUR folder fills the CSV rows' column");
    srv.stop().await;

    let objects = s3.list(&format!("s3://tributary/{prefix}/raw/ons3/")).await.unwrap();
    assert!(objects.iter().any(|o| o.path.ends_with(".parquet")), "data files are in the bucket");
    assert!(objects.iter().any(|o| o.path.ends_with(".metadata.json")), "metadata is in the bucket");
    let moved = s3.list(&format!("{landing}/processed/")).await.unwrap();
    assert_eq!(moved.len(), 2, "both files moved after their commit: {moved:?}");
    assert!(s3.list(&format!("{landing}/raw.ons3/")).await.unwrap().is_empty());

    // A second process reads what the first committed, and lands more.
    let srv = start(&cfg).await;
    assert_eq!(srv.count("raw.ons3").await, 800);
    let (status, _) = srv.post("raw.ons3", event("late", "4.00")).await;
    assert_eq!(status, 200);
    assert_eq!(srv.count("raw.ons3").await, 801);
    srv.stop().await;

    // Orphan cleanup lists the bucket prefix (nothing is old enough to go).
    let lake = crate::common::open_lake(&cfg).await;
    let name = tributary_core::TableName::parse("raw.ons3").unwrap();
    let orphans = tributary_table::maintain::remove_orphans(&lake, &name, Duration::ZERO, true).await.unwrap();
    assert_eq!(orphans.files, 0, "every file in the bucket is referenced: {orphans:?}");
}

#[tokio::test]
async fn two_writers_on_one_s3_warehouse_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("it-{}", uuid::Uuid::new_v4().simple());
    let toml = format!(
        "{}{}",
        warehouse_toml(&prefix),
        without_dedup_key(TRANSACTIONS).replace("raw.transactions", "raw.twos3")
    );
    let cfg = config(&toml, dir.path());
    let (a, b) = (start(&cfg).await, start(&cfg).await);
    let post = |srv: &Running, who: &'static str| {
        let (client, url) = (srv.client.clone(), format!("{}/v1/tables/raw.twos3/events", srv.base));
        async move {
            for round in 0..20 {
                let body: String = (0..50).map(|i| event(&format!("{who}-{round}-{i}"), "1.00") + "\n").collect();
                let resp = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
            }
        }
    };
    tokio::join!(post(&a, "a"), post(&b, "b"));
    assert_eq!(a.count("raw.twos3").await, 2000);
    let (_, v) = b.sql("SELECT count(DISTINCT event_id) FROM raw.twos3").await;
    assert_eq!(v["rows"][0][0], 2000);
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn wrong_credentials_are_refused_at_once_with_the_reason() {
    let wrong = Warehouse::S3 {
        bucket: "tributary".into(),
        prefix: "never".into(),
        settings: S3Config { secret_access_key: Some("not-the-secret".into()), ..s3_settings() },
    };
    let dir = tempfile::tempdir().unwrap();
    let catalog = format!("sqlite://{}", dir.path().join("catalog.db").display());
    let started = Instant::now();
    let err = tributary_table::Lake::open(&catalog, "tributary", &wrong).await.unwrap_err().to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(err.contains("403") && err.contains("credentials"), "{err}");
}
