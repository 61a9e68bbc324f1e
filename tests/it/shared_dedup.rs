//! One dedup index per table, whatever the source and however many workers:
//! a key committed by one source or worker is a duplicate for every other.

use std::time::Duration;

use crate::common::{TRANSACTIONS, config, event, metric, start};
use crate::kafka_util::{kafka_config, new_topic, produce, wait_for};

/// Each worker held a private index built at start, so an HTTP retry that
/// reached another worker landed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_to_two_workers_on_one_lake_lands_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TRANSACTIONS, dir.path());
    let first = start(&cfg).await;
    let second = start(&cfg).await;
    let (status, r) = first.post("raw.transactions", event("e1", "1.00")).await;
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    let (status, r) = second.post("raw.transactions", event("e1", "1.00")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(1)), "{r}");
    // And the other way round, with a batch that mixes new and old keys.
    let body = [event("e1", "1.00"), event("e2", "1.00")].join("\n");
    let (_, r) = second.post("raw.transactions", body.clone()).await;
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(1), Some(1)), "{r}");
    let (_, r) = first.post("raw.transactions", body).await;
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(2)), "{r}");
    assert_eq!(first.count("raw.transactions").await, 2);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_sent_through_kafka_and_http_lands_once() {
    let topic = new_topic("shared").await;
    let good = produce(&topic, "k", 20).await;
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(&kafka_config(&topic, &format!("g-{topic}")), dir.path())).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 0).await;

    // Kafka first, then HTTP.
    let (status, r) = srv.post("raw.transactions", event("k3", "3.00")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(1)), "{r}");
    // HTTP first, then Kafka.
    assert_eq!(srv.post("raw.transactions", event("h1", "1.00")).await.1["accepted"], 1);
    let before = metric(&srv.metrics().await, "tributary_records_deduplicated_total", &[]).unwrap_or(0.0);
    crate::kafka_util::produce_ids(&topic, &["h1"]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while metric(&srv.metrics().await, "tributary_records_deduplicated_total", &[]).unwrap_or(0.0) <= before {
        assert!(std::time::Instant::now() < deadline, "the Kafka copy of h1 was not dropped as a duplicate");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, v) = srv.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([good + 1, good + 1]), "{v}");
    srv.stop().await;
}

/// Both workers get the same keys at the same moment: their flushes race,
/// the loser's swap fails, and it must check the keys again against what
/// the winner committed instead of rebasing onto it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_racing_with_the_same_keys_land_each_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TRANSACTIONS, dir.path());
    let (first, second) = (start(&cfg).await, start(&cfg).await);
    for round in 0..10 {
        let body: Vec<String> = (0..20).map(|i| event(&format!("r{round}-{i}"), "1.00")).collect();
        let body = body.join("\n");
        let ((s1, r1), (s2, r2)) =
            tokio::join!(first.post("raw.transactions", body.clone()), second.post("raw.transactions", body));
        assert_eq!((s1, s2), (200, 200), "{r1} {r2}");
        let accepted = r1["accepted"].as_u64().unwrap() + r2["accepted"].as_u64().unwrap();
        let duplicates = r1["duplicates"].as_u64().unwrap() + r2["duplicates"].as_u64().unwrap();
        assert_eq!((accepted, duplicates), (20, 20), "round {round}: {r1} {r2}");
    }
    let (_, v) = first.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([200, 200]), "{v}");
    first.stop().await;
    second.stop().await;
}

/// Two Kafka pipelines on two workers read the same keys (one topic, two
/// consumer groups) into one table with a dedup key. Their commits race;
/// each re-checks its keys against the table state it commits on, so every
/// key lands once. Input arrives in rounds while both run, so that they
/// read and commit the same keys at the same moments.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_kafka_workers_reading_the_same_keys_land_each_once() {
    let topic = new_topic("twin").await;
    let dir = tempfile::tempdir().unwrap();
    let a = kafka_config(&topic, &format!("ga-{topic}"));
    let b = kafka_config(&topic, &format!("gb-{topic}")).replace("name = \"orders\"", "name = \"mirror\"");
    let (first, second) = (start(&config(&a, dir.path())).await, start(&config(&b, dir.path())).await);
    let mut good = 0;
    for round in 0..4 {
        good += produce(&topic, &format!("t{round}-"), 1000).await;
        // Each pipeline quarantines the malformed records of its own input.
        let rejects = 2 * (1000 * (round + 1) - good);
        wait_for(&first, i64::try_from(good).unwrap(), i64::try_from(rejects).unwrap()).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, v) = first.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([good, good]), "{v}");
    first.stop().await;
    second.stop().await;
}
