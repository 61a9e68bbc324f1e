//! `Idempotency-Key`: a retry of an answered request, to any worker, after a
//! restart, gets the original receipt and writes nothing — on a table
//! without a dedup key, where nothing else would catch the duplicate.

use serde_json::Value;

use crate::common::{TRANSACTIONS, config, event, start, without_dedup_key};

/// Ten good records and one malformed one.
fn body(tag: &str) -> String {
    let mut lines: Vec<String> = (0..10).map(|i| event(&format!("{tag}{i}"), "1.00")).collect();
    lines.push("{not json".to_owned());
    lines.join("\n")
}

fn receipt_fields(r: &Value) -> (Value, Value, Value, Value, Value) {
    (
        r["request_id"].clone(),
        r["accepted"].clone(),
        r["quarantined"].clone(),
        r["duplicates"].clone(),
        r["snapshot_id"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_gets_the_original_receipt_from_any_worker_and_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&without_dedup_key(TRANSACTIONS), dir.path());
    let (first, second) = (start(&cfg).await, start(&cfg).await);
    let (status, original) = first.post_with_key("raw.transactions", "key-1", body("a")).await;
    assert_eq!(status, 200, "{original}");
    assert_eq!((original["accepted"].as_u64(), original["quarantined"].as_u64()), (Some(10), Some(1)));

    let (status, again) = first.post_with_key("raw.transactions", "key-1", body("a")).await;
    assert_eq!((status, receipt_fields(&again)), (200, receipt_fields(&original)), "same worker");
    let (status, elsewhere) = second.post_with_key("raw.transactions", "key-1", body("a")).await;
    assert_eq!((status, receipt_fields(&elsewhere)), (200, receipt_fields(&original)), "another worker");

    // The same key with another body is a client bug, not a retry.
    let (status, reused) = second.post_with_key("raw.transactions", "key-1", body("b")).await;
    assert_eq!(status, 422, "{reused}");
    assert!(reused["error"]["message"].as_str().unwrap().contains("different body"), "{reused}");

    // Without a key the same body is new input: the table has no dedup key.
    assert_eq!(first.post("raw.transactions", body("a")).await.0, 200);
    second.stop().await;
    first.stop().await;

    let srv = start(&cfg).await;
    let (status, restarted) = srv.post_with_key("raw.transactions", "key-1", body("a")).await;
    assert_eq!((status, receipt_fields(&restarted)), (200, receipt_fields(&original)), "after a restart");
    assert_eq!(srv.count("raw.transactions").await, 20, "the keyed request once, the unkeyed one once");
    assert_eq!(srv.count("quarantine.transactions").await, 2);
    srv.stop().await;
}

/// The same key reaches two workers at the same moment: both validate it,
/// their commits race, and the loser must find the winner's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_on_two_workers_land_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&without_dedup_key(TRANSACTIONS), dir.path());
    let (first, second) = (start(&cfg).await, start(&cfg).await);
    for round in 0..8 {
        let key = format!("race-{round}");
        let b = body(&format!("r{round}-"));
        let ((s1, r1), (s2, r2), (s3, r3)) = tokio::join!(
            first.post_with_key("raw.transactions", &key, b.clone()),
            second.post_with_key("raw.transactions", &key, b.clone()),
            first.post_with_key("raw.transactions", &key, b.clone()),
        );
        assert_eq!((s1, s2, s3), (200, 200, 200), "{r1} {r2} {r3}");
        assert_eq!(receipt_fields(&r1), receipt_fields(&r2), "round {round}");
        assert_eq!(receipt_fields(&r1), receipt_fields(&r3), "round {round}");
    }
    assert_eq!(first.count("raw.transactions").await, 80);
    assert_eq!(first.count("quarantine.transactions").await, 8);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_of_rejects_only_is_answered_once_too() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let (status, original) = srv.post_with_key("raw.transactions", "bad-only", "{nope\n[1]").await;
    assert_eq!((status, original["quarantined"].as_u64()), (200, Some(2)), "{original}");
    let (status, again) = srv.post_with_key("raw.transactions", "bad-only", "{nope\n[1]").await;
    assert_eq!((status, receipt_fields(&again)), (200, receipt_fields(&original)));
    assert_eq!(srv.count("quarantine.transactions").await, 2);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_key_is_refused_with_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    for key in ["has space", &"k".repeat(256)] {
        let (status, v) = srv.post_with_key("raw.transactions", key, event("x", "1.00")).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("Idempotency-Key must be"), "{v}");
    }
    assert_eq!(srv.count("raw.transactions").await, 0);
    srv.stop().await;
}
