//! Kafka ingestion against a real broker process (`dev/kafka.sh` starts it
//! and exports `TRIBUTARY_TEST_KAFKA`).

use std::time::Duration;

use crate::common::{config, metric, start};
use crate::kafka_util::{
    assert_exactly_once, kafka_config, kafka_config_with, new_topic, produce, small_batch_config, source_metric,
    wait_for,
};

/// SASL/PLAIN over plaintext: the test broker accepts any credentials, so
/// this proves the settings reach a real SASL handshake, not authentication.
const SASL_PLAIN: &str = r#", "security.protocol" = "sasl_plaintext", "sasl.mechanisms" = "PLAIN", "sasl.username" = "tributary", "sasl.password" = "secret""#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lands_every_record_once_across_a_restart() {
    let topic = new_topic("orders").await;
    let good1 = produce(&topic, "a", 2000).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka_config(&topic, &format!("g-{topic}")), dir.path());
    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good1).unwrap(), 40).await;
    srv.stop().await;

    // The restarted worker authenticates with SASL: same cluster, same positions.
    let good2 = produce(&topic, "b", 1000).await;
    let cfg = config(&kafka_config_with(&topic, &format!("g-{topic}"), SASL_PLAIN), dir.path());
    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good1 + good2).unwrap(), 60).await;
    assert_exactly_once(&srv, 3000, good1 + good2).await;
    let (_, v) = srv
        .sql("SELECT count(*) FROM quarantine.transactions WHERE error_kind = 'malformed_json' AND position LIKE '%@%'")
        .await;
    assert_eq!(v["rows"][0][0], 60);
    let text = srv.metrics().await;
    assert!(metric(&text, "tributary_kafka_rebalances_total", &[]).is_some_and(|n| n >= 1.0), "{text}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_in_one_group_ingest_exactly_once() {
    let topic = new_topic("orders").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka_config(&topic, &format!("g-{topic}")), dir.path());
    let first = start(&cfg).await;
    let second = start(&cfg).await;
    let good1 = produce(&topic, "a", 3000).await;
    wait_for(&first, i64::try_from(good1).unwrap(), 60).await;
    // One worker leaves: its partitions move to the other.
    second.stop().await;
    let good2 = produce(&topic, "b", 1000).await;
    wait_for(&first, i64::try_from(good1 + good2).unwrap(), 80).await;
    assert_exactly_once(&first, 4000, good1 + good2).await;
    first.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backpressure_holds_and_resumes_without_losing_records() {
    let topic = new_topic("orders").await;
    let good = produce(&topic, "a", 3000).await;
    let dir = tempfile::tempdir().unwrap();
    // The source must hold off reading while two batches wait, then read on.
    let srv = start(&config(&small_batch_config(&topic, "orders_bp"), dir.path())).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 60).await;
    assert_exactly_once(&srv, 3000, good).await;
    let text = srv.metrics().await;
    let value = |name: &str| source_metric(&text, "orders_bp", name);
    assert!(value("tributary_kafka_backpressure_holds_total") > 0.0, "{text}");
    assert!(value("tributary_kafka_paused").abs() < f64::EPSILON, "still paused:\n{text}");
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_static_member_stops_with_the_reason() {
    let topic = new_topic("orders").await;
    let good = produce(&topic, "a", 500).await;
    let dir = tempfile::tempdir().unwrap();
    // Two workers configured with the same static member id: the broker
    // fences one of them, whose consumer can never deliver again.
    let toml = kafka_config_with(&topic, &format!("g-{topic}"), r#", "group.instance.id" = "worker-1""#);
    let cfg = config(&toml, dir.path());
    let first = start(&cfg).await;
    wait_for(&first, i64::try_from(good).unwrap(), 10).await;
    let second = start(&cfg).await;
    let (a, b) = (first.shutdown.clone(), second.shutdown.clone());
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::select! {
            r = first.server.wait() => (r, b),
            r = second.server.wait() => (r, a),
        }
    })
    .await
    .expect("neither worker stopped after being fenced");
    let (result, survivor) = ended;
    let err = result.expect_err("the fenced worker must fail").to_string();
    assert!(err.contains("fatal") && err.contains("group.instance.id"), "{err}");
    survivor.cancel();
}

/// With `start = "latest"`, a partition without a position started at the
/// end of the log on every assignment, and nothing recorded that start: the
/// records produced while no worker held it were skipped by the next owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_start_is_committed_so_the_next_owner_skips_nothing() {
    let topic = new_topic("latest").await;
    produce(&topic, "before", 40).await; // before the pipeline existed: skipped by design
    let dir = tempfile::tempdir().unwrap();
    let toml = kafka_config(&topic, &format!("g-{topic}"))
        .replace("max_latency = \"100ms\"", "max_latency = \"100ms\"\nstart = \"latest\"");
    let cfg = config(&toml, dir.path());
    let srv = start(&cfg).await;
    // The start of every partition is committed before anything is read.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = srv.sql("SELECT positions FROM raw.\"transactions$snapshots\" LIMIT 1").await;
        let recorded = v["rows"][0][0].as_str().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok());
        if recorded.as_ref().and_then(|p| p.as_object()).is_some_and(|p| p.len() == 4) {
            assert_eq!(recorded.unwrap().as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum::<u64>(), 40);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no start positions committed: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    srv.stop().await;

    let good = produce(&topic, "while-down", 40).await;
    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 0).await;
    let (_, v) = srv.sql("SELECT count(*) FROM raw.transactions WHERE event_id LIKE 'before%'").await;
    assert_eq!(v["rows"][0][0], 0, "records from before the first start are not read");
    srv.stop().await;
}
