//! Deterministic crash tests: a failpoint makes the Kafka pipeline die at
//! each dangerous instant of a commit, then a restarted server must land
//! every record exactly once.
//!
//! A separate test binary because failpoints are process-global: each test
//! holds a `FailScenario`, which serialises them.

#[path = "../it/common.rs"]
mod common;
#[path = "../it/kafka_util.rs"]
mod kafka_util;

use std::time::Duration;

use common::{config, start};
use kafka_util::{assert_exactly_once, create_topic, kafka_config, produce, wait_for};

/// Produces 600 events (12 malformed), crashes the first worker at `point`
/// with `action`, restarts, and checks the table against the producer.
async fn crash_and_recover(point: &str, action: &str) {
    let scenario = fail::FailScenario::setup();
    let topic = format!("crash-{}", uuid::Uuid::new_v4().simple());
    create_topic(&topic).await;
    let good = produce(&topic, "c", 600).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka_config(&topic, &format!("g-{topic}")), dir.path());

    fail::cfg(point, action).unwrap();
    let srv = start(&cfg).await;
    // The pipeline's error is fatal: the server shuts itself down and says why.
    let err = tokio::time::timeout(Duration::from_secs(60), srv.server.wait())
        .await
        .unwrap_or_else(|_| panic!("{point}: the failpoint never fired"))
        .expect_err("a crashed pipeline must fail the server");
    assert!(err.to_string().contains(point), "{point}: {err}");
    fail::remove(point);

    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 12).await;
    assert_exactly_once(&srv, 600, good).await;
    srv.stop().await;
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_the_data_file_write() {
    crash_and_recover("table::before_data_write", "1*return").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_data_file_write() {
    crash_and_recover("table::after_data_write", "1*return").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_before_the_catalog_swap() {
    crash_and_recover("table::before_catalog_swap", "1*return").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_quarantine_swap() {
    // The first swap of a batch with rejects is the quarantine table's.
    crash_and_recover("table::after_catalog_swap", "1*return").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_data_swap() {
    crash_and_recover("table::after_catalog_swap", "1*off->1*return").await;
}
