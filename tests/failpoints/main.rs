//! Deterministic crash and zombie tests: a failpoint makes the Kafka
//! pipeline die at each dangerous instant of a commit, then a restarted
//! server must land every record exactly once; another stalls a commit while
//! a second worker lands the same input, and the stalled one must drop it.
//!
//! A separate test binary because failpoints are process-global: each test
//! holds a `FailScenario`, which serialises them.

#[path = "../it/common.rs"]
mod common;
mod jobs;
#[path = "../it/kafka_util.rs"]
mod kafka_util;
#[path = "../it/zones_util.rs"]
mod zones_util;

use std::time::Duration;

use common::{config, metric, start};
use kafka_util::{assert_exactly_once, kafka_config, new_topic, produce, small_batch_config, source_metric, wait_for};

/// Produces 600 events (12 malformed), crashes the first worker at `point`
/// with `action`, restarts, and checks the table against the producer.
async fn crash_and_recover(point: &str, action: &str) {
    let scenario = fail::FailScenario::setup();
    let topic = new_topic("crash").await;
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
    crash_and_recover("table::crash_after_catalog_swap", "1*return").await;
}

/// The quarantine table got ahead of the data table (a crash between the
/// two swaps); the first batch after the restart began below the quarantine
/// table's positions and held a reject past them, so its quarantine commit
/// was refused as a zombie, again after every re-seek: the pipeline stalled.
/// No dedup key, so a positional duplicate would show too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_quarantine_swap_then_more_input_with_rejects() {
    let scenario = fail::FailScenario::setup();
    let point = "table::crash_after_catalog_swap";
    let topic = new_topic("qahead").await;
    let mut good = produce(&topic, "a", 600).await;
    let dir = tempfile::tempdir().unwrap();
    let toml = kafka_config(&topic, &format!("g-{topic}")).replace("dedup_key = \"event_id\"\n", "");
    assert!(!toml.contains("dedup_key"));
    let cfg = config(&toml, dir.path());

    fail::cfg(point, "1*return").unwrap();
    let srv = start(&cfg).await;
    let err = tokio::time::timeout(Duration::from_secs(60), srv.server.wait()).await.expect("the failpoint fired");
    assert!(err.expect_err("fatal").to_string().contains(point));
    fail::remove(point);

    good += produce(&topic, "b", 600).await;
    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 24).await;
    assert_exactly_once(&srv, 1200, good).await;
    let (_, v) = srv.sql("SELECT count(DISTINCT position) FROM quarantine.transactions").await;
    assert_eq!(v["rows"][0][0], 24, "every reject quarantined once");
    srv.stop().await;
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_after_the_data_swap() {
    crash_and_recover("table::crash_after_catalog_swap", "1*off->1*return").await;
}

/// The connection broke after the catalog committed a Kafka batch: the
/// source reads the table back, finds its snapshot and goes on, without a
/// restart and without landing the batch twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_commit_with_an_unknown_outcome_is_read_back_and_the_source_goes_on() {
    let scenario = fail::FailScenario::setup();
    let topic = new_topic("unknown").await;
    let good = produce(&topic, "u", 600).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(&kafka_config(&topic, &format!("g-{topic}")).replace("dedup_key = \"event_id\"\n", ""), dir.path());
    fail::cfg("table::after_catalog_swap", "1*off->1*return").unwrap();
    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 12).await;
    fail::remove("table::after_catalog_swap");
    assert_exactly_once(&srv, 600, good).await;
    srv.stop().await;
    scenario.teardown();
}

/// A zombie commit caught in the act: worker A's first commit stalls before
/// its catalog swap while worker B reads the same partitions from the
/// table's positions and commits them. (B is in another consumer group, so
/// the overlap does not depend on how fast the broker rebalances; within one
/// group it is what a paused worker meets after its partitions moved.) When
/// A wakes, its batch overlaps what B landed: the commit protocol must refuse
/// it as a zombie, and A must drop it and re-read, so the table still holds
/// every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_partitions_moved_mid_commit_drops_its_batch() {
    let scenario = fail::FailScenario::setup();
    let topic = new_topic("zombie").await;
    let good = produce(&topic, "z", 600).await;
    let dir = tempfile::tempdir().unwrap();
    let worker = |group: &str| config(&kafka_config(&topic, &format!("{group}-{topic}")), dir.path());

    fail::cfg("table::stall_before_catalog_swap", "1*return(8000)").unwrap();
    let first = start(&worker("a")).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // A has read a batch and is stuck in its commit
    let second = start(&worker("b")).await;
    wait_for(&second, i64::try_from(good).unwrap(), 12).await;
    // A wakes, finds its input landed, and drops the batch.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = second.metrics().await;
        if metric(&text, "tributary_commit_conflicts_total", &["outcome=\"zombie\""]).is_some_and(|n| n >= 1.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no batch was refused as a zombie:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fail::remove("table::stall_before_catalog_swap");
    // Give A time to re-read after its recovery: still every record once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_exactly_once(&second, 600, good).await;
    assert_exactly_once(&first, 600, good).await;
    first.stop().await;
    second.stop().await;
    scenario.teardown();
}

/// Commits that take seconds: the source first holds off reading, keeping
/// librdkafka's prefetch; past the hold limit (1 s here: ten 100 ms commit
/// latencies) it pauses its partitions and polls, then resumes once the
/// commits catch up. Every record once, and nothing left paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_hold_pauses_the_partitions_and_resumes_them() {
    let scenario = fail::FailScenario::setup();
    let topic = new_topic("slow").await;
    let good = produce(&topic, "s", 3000).await;
    let dir = tempfile::tempdir().unwrap();
    fail::cfg("table::stall_before_catalog_swap", "4*return(2500)").unwrap();
    let srv = start(&config(&small_batch_config(&topic, "orders_slow"), dir.path())).await;
    wait_for(&srv, i64::try_from(good).unwrap(), 60).await;
    fail::remove("table::stall_before_catalog_swap");
    assert_exactly_once(&srv, 3000, good).await;
    let text = srv.metrics().await;
    let value = |name: &str| source_metric(&text, "orders_slow", name);
    assert!(value("tributary_kafka_backpressure_pauses_total") >= 1.0, "{text}");
    assert!(value("tributary_kafka_paused").abs() < f64::EPSILON, "still paused:\n{text}");
    srv.stop().await;
    scenario.teardown();
}

/// A flush whose data commit landed but whose call failed (the connection
/// broke after COMMIT) took its dedup keys back, so the client's retry landed
/// the rows a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_retry_after_a_commit_with_an_unknown_outcome_is_a_duplicate() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(common::TRANSACTIONS, dir.path())).await;
    let body: Vec<String> = (0..10).map(|i| common::event(&format!("u{i}"), "1.00")).collect();
    let body = body.join("\n");
    fail::cfg("table::after_catalog_swap", "1*return").unwrap();
    let (status, first) = srv.post("raw.transactions", body.clone()).await;
    fail::remove("table::after_catalog_swap");
    assert!(status == 200 || status == 503, "{status}: {first}");
    let (status, retry) = srv.post("raw.transactions", body).await;
    assert_eq!(status, 200, "{retry}");
    let landed_first = if first["accepted"] == 10 { 0 } else { 10 };
    assert_eq!(retry["duplicates"], 10 - landed_first, "first: {first}, retry: {retry}");
    assert_eq!(srv.count("raw.transactions").await, 10, "every row once");
    srv.stop().await;
    scenario.teardown();
}

/// Rejects land before rows. A flush whose rejects landed and whose data
/// commit then failed says so; the retry, under the same key, quarantines
/// nothing twice and lands every row once — on a table without a dedup key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_the_rejects_landed_and_the_rows_did_not_writes_each_once() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(&common::without_dedup_key(common::TRANSACTIONS), dir.path())).await;
    let mut body: Vec<String> = (0..10).map(|i| common::event(&format!("q{i}"), "1.00")).collect();
    body.push("{not json".to_owned());
    let body = body.join("\n");
    // The quarantine commit's swap passes; the data commit's fails.
    fail::cfg("table::before_catalog_swap", "1*off->1*return").unwrap();
    let (status, first) = srv.post_with_key("raw.transactions", "k-1", body.clone()).await;
    fail::remove("table::before_catalog_swap");
    assert_eq!(status, 503, "{first}");
    assert!(first["error"]["message"].as_str().unwrap().contains("rejects were quarantined"), "{first}");
    assert_eq!(srv.count("quarantine.transactions").await, 1);
    let (status, retry) = srv.post_with_key("raw.transactions", "k-1", body).await;
    assert_eq!(status, 200, "{retry}");
    assert_eq!((retry["accepted"].as_u64(), retry["quarantined"].as_u64()), (Some(10), Some(1)), "{retry}");
    assert_eq!(srv.count("raw.transactions").await, 10, "every row once");
    assert_eq!(srv.count("quarantine.transactions").await, 1, "the reject once");
    srv.stop().await;
    scenario.teardown();
}

/// The data commit landed but the call failed (the connection broke after
/// COMMIT); without a dedup key only the idempotency key recognises the
/// retry, on this worker and on a restarted one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyed_retry_after_a_commit_with_an_unknown_outcome_writes_nothing() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&common::without_dedup_key(common::TRANSACTIONS), dir.path());
    let srv = start(&cfg).await;
    let body: Vec<String> = (0..10).map(|i| common::event(&format!("u{i}"), "1.00")).collect();
    let body = body.join("\n");
    fail::cfg("table::after_catalog_swap", "1*return").unwrap();
    let (status, first) = srv.post_with_key("raw.transactions", "k-2", body.clone()).await;
    fail::remove("table::after_catalog_swap");
    assert_eq!(status, 200, "the read-back finds the snapshot: {first}");
    let (status, retry) = srv.post_with_key("raw.transactions", "k-2", body.clone()).await;
    assert_eq!(
        (status, &retry["request_id"], &retry["snapshot_id"]),
        (200, &first["request_id"], &first["snapshot_id"])
    );
    srv.stop().await;
    let srv = start(&cfg).await;
    let (status, retry) = srv.post_with_key("raw.transactions", "k-2", body).await;
    assert_eq!((status, &retry["request_id"], retry["accepted"].as_u64()), (200, &first["request_id"], Some(10)));
    assert_eq!(srv.count("raw.transactions").await, 10, "every row once");
    srv.stop().await;
    scenario.teardown();
}

/// A crash in the middle of each maintenance kind: before its swap the table
/// is as it was, after it the change is whole; either way every row reads,
/// and the pipeline's positions are still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_compaction_or_expiry_leaves_the_table_unchanged_or_fully_changed() {
    use tributary_table::maintain::{Compaction, Retention, compact, expire_snapshots};

    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&common::without_dedup_key(common::TRANSACTIONS), dir.path());
    let srv = start(&cfg).await;
    for i in 0..12 {
        let body: Vec<String> = (0..5).map(|j| common::event(&format!("m{i}-{j}"), "1.00")).collect();
        let (status, v) = srv.post("raw.transactions", body.join("\n")).await;
        assert_eq!(status, 200, "{v}");
    }
    srv.stop().await;
    let lake = common::open_lake(&cfg).await;
    let name = tributary_core::TableName::new("raw", "transactions");
    let pipeline = "http:raw.transactions";
    let check = |t: &tributary_table::LoadedTable| {
        let state = tributary_table::last_pipeline_state(t, pipeline).unwrap().expect("positions found");
        assert_eq!(state.positions.get("http"), Some(60));
    };
    for (point, lands) in [("table::before_catalog_swap", false), ("table::crash_after_catalog_swap", true)] {
        let before = lake.load(&name).await.unwrap();
        fail::cfg(point, "1*return").unwrap();
        let err = compact(&lake, &name, &Compaction::new(1 << 20, 2), false).await;
        fail::remove(point);
        assert!(err.unwrap_err().to_string().contains(point));
        let after = lake.load(&name).await.unwrap();
        assert_eq!(after.location != before.location, lands, "compaction at {point}");
        assert_eq!(common::rows(&common::scan_all(&lake, &after).await), 60, "compaction at {point}");
        check(&after);

        let before = after;
        let retention = Retention { max_age: Duration::ZERO, min_snapshots: 1 };
        fail::cfg(point, "1*return").unwrap();
        let err = expire_snapshots(&lake, &name, retention, chrono::Utc::now().timestamp_millis() + 1000, false).await;
        fail::remove(point);
        assert!(err.unwrap_err().to_string().contains(point));
        let after = lake.load(&name).await.unwrap();
        let (was, now) = (before.metadata.snapshots().count(), after.metadata.snapshots().count());
        assert_eq!(now < was, lands, "expiry at {point}: {was} → {now} snapshots");
        assert_eq!(common::rows(&common::scan_all(&lake, &after).await), 60, "expiry at {point}");
        check(&after);
    }
    scenario.teardown();
}
