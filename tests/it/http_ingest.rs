//! HTTP ingest end to end: validation, quarantine, dedup, group commit,
//! limits, restarts and reconciliation.

use crate::common::{TRANSACTIONS, config, event, start};

fn body_with(good: usize, malformed: usize, duplicates: usize) -> String {
    let mut lines: Vec<String> = (0..good).map(|i| event(&format!("e{i}"), "10.50")).collect();
    for i in 0..malformed {
        lines.push(match i % 3 {
            0 => {
                format!(r#"{{"event_id":"bad{i}","user_id":"x","amount":"1.00","event_time":"2026-11-20T10:00:00Z"}}"#)
            }
            1 => format!(r#"{{"event_id":"bad{i}","user_id":1,"amount":"1.00"}}"#),
            _ => "{not json".to_owned(),
        });
    }
    for i in 0..duplicates {
        lines.push(event(&format!("e{i}"), "10.50"));
    }
    lines.join("\n")
}

#[tokio::test]
async fn thousand_events_with_ten_bad_and_ten_duplicates_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let (status, receipt) = srv.post("raw.transactions", body_with(980, 10, 10)).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 980);
    assert_eq!(receipt["quarantined"], 10);
    assert_eq!(receipt["duplicates"], 10);
    assert!(receipt["snapshot_id"].as_i64().is_some());
    assert_eq!(srv.count("raw.transactions").await, 980);
    assert_eq!(srv.count("quarantine.transactions").await, 10);

    let (_, v) = srv
        .sql("SELECT error_kind, field, error_message FROM quarantine.transactions ORDER BY error_kind, field")
        .await;
    let rows = v["rows"].as_array().unwrap();
    let kinds: Vec<&str> = rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(
        kinds.contains(&"malformed_json") && kinds.contains(&"type_mismatch") && kinds.contains(&"missing_event_time"),
        "{kinds:?}"
    );
    let mismatch = rows.iter().find(|r| r[0] == "type_mismatch").unwrap();
    assert_eq!(mismatch[1], "user_id");
    assert!(mismatch[2].as_str().unwrap().contains("field 'user_id' expects long"), "{mismatch}");

    // Lineage columns are filled.
    let (_, v) = srv.sql("SELECT DISTINCT _source, _schema_id FROM raw.transactions").await;
    assert_eq!(v["rows"], serde_json::json!([["http", 0]]));
    srv.stop().await;
}

#[tokio::test]
async fn concurrent_requests_share_snapshots_and_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let mut posted = 0;
    let mut reqs = Vec::new();
    for r in 0..16 {
        // Each request repeats two ids of the previous one and has one bad line.
        let mut lines: Vec<String> = (0..50).map(|i| event(&format!("r{r}-{i}"), "1.00")).collect();
        if r > 0 {
            lines.push(event(&format!("r{}-0", r - 1), "1.00"));
            lines.push(event(&format!("r{}-1", r - 1), "1.00"));
        }
        lines.push("[]".to_owned());
        posted += lines.len();
        reqs.push(srv.post("raw.transactions", lines.join("\n")));
    }
    let receipts = futures::future::join_all(reqs).await;
    let (mut acc, mut q, mut d) = (0, 0, 0);
    let mut snapshots = std::collections::HashSet::new();
    for (status, r) in &receipts {
        assert_eq!(*status, 200, "{r}");
        acc += r["accepted"].as_u64().unwrap();
        q += r["quarantined"].as_u64().unwrap();
        d += r["duplicates"].as_u64().unwrap();
        snapshots.insert(r["snapshot_id"].as_i64().unwrap());
    }
    assert_eq!(acc + q + d, posted as u64, "posted = accepted + quarantined + duplicates");
    assert_eq!((acc, q, d), (800, 16, 30));
    assert_eq!(srv.count("raw.transactions").await, 800);
    assert!(snapshots.len() < 16, "group commit must share snapshots, got {}", snapshots.len());
    // The HTTP position counts every committed row.
    let (_, v) = srv.sql("SELECT positions FROM raw.\"transactions$snapshots\" LIMIT 1").await;
    assert_eq!(v["rows"][0][0], r#"{"http":800}"#);
    srv.stop().await;
}

#[tokio::test]
async fn retry_after_restart_creates_no_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TRANSACTIONS, dir.path());
    let body = body_with(100, 0, 0);
    let srv = start(&cfg).await;
    assert_eq!(srv.post("raw.transactions", body.clone()).await.1["accepted"], 100);
    srv.stop().await;

    // A client that never saw the answer retries against the restarted server.
    let srv = start(&cfg).await;
    let (status, r) = srv.post("raw.transactions", body).await;
    assert_eq!(status, 200);
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(100)));
    assert_eq!(srv.count("raw.transactions").await, 100);
    srv.stop().await;
}

#[tokio::test]
async fn request_errors_leave_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;

    let (status, v) = srv.post("raw.transactions", "x".repeat(2 * 1024 * 1024)).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_body_bytes"), "413 is JSON like every error: {v}");
    let (status, v) = srv.post("raw.nope", event("a", "1.00")).await;
    assert_eq!(status, 404);
    assert!(v["error"]["message"].as_str().unwrap().contains("raw.nope"), "{v}");
    let (status, v) = srv.post("transactions", event("a", "1.00")).await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("namespace.table"), "{v}");
    let (status, v) = srv.post("raw.transactions", "[{\"event_id\":\"a\"},").await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("JSON array"), "{v}");

    let (status, v) = srv.sql("SELEC 1").await;
    assert_eq!(status, 400);
    assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    let (status, v) = srv.sql("SELECT nope FROM raw.transactions").await;
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"), "{v}");

    assert_eq!(srv.count("raw.transactions").await, 0);
    assert_eq!(srv.count("quarantine.transactions").await, 0);
    srv.stop().await;
}

#[tokio::test]
async fn json_array_bodies_time_travel_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let first = format!("[{},{}]", event("a1", "1.00"), event("a2", "2.00"));
    let (_, r1) = srv.post("raw.transactions", first).await;
    assert_eq!(r1["accepted"], 2);
    let (_, r2) = srv.post("raw.transactions", format!("[{}]", event("a3", "3.00"))).await;
    assert_ne!(r1["snapshot_id"], r2["snapshot_id"]);

    let old = r1["snapshot_id"].as_i64().unwrap();
    let (status, v) = srv.sql(&format!("SELECT count(*), sum(amount) FROM raw.\"transactions@{old}\"")).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["rows"][0][0], 2);
    assert_eq!(srv.count("raw.transactions").await, 3);
    let (status, v) = srv.sql("SELECT * FROM raw.\"transactions@42\"").await;
    assert_eq!(status, 400);
    assert!(v["error"]["message"].as_str().unwrap().contains("no snapshot 42"), "{v}");

    let text = srv.metrics().await;
    for name in [
        "tributary_records_received_total",
        "tributary_records_written_total",
        "tributary_commits_total",
        "tributary_commit_latency_seconds_bucket",
        "tributary_current_snapshot_id",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics:\n{text}");
    }
    let health = srv.client.get(format!("{}/healthz", srv.base)).send().await.unwrap();
    assert_eq!(health.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_commits_every_acknowledged_request() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&TRANSACTIONS.replace("max_latency = \"20ms\"", "max_latency = \"2s\""), dir.path());
    let srv = start(&cfg).await;
    // Requests wait for a 2 s commit interval; shutdown must flush them now.
    let posts: Vec<_> = (0..8)
        .map(|r| {
            let body: Vec<String> = (0..25).map(|i| event(&format!("s{r}-{i}"), "1.00")).collect();
            srv.post("raw.transactions", body.join("\n"))
        })
        .collect();
    let stopper = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        srv.shutdown.cancel();
    };
    let (receipts, ()) = tokio::join!(futures::future::join_all(posts), stopper);
    let acknowledged: u64 =
        receipts.iter().filter(|(s, _)| *s == 200).map(|(_, r)| r["accepted"].as_u64().unwrap()).sum();
    assert_eq!(acknowledged, 200, "requests queued before shutdown are committed and answered: {receipts:?}");
    srv.server.wait().await.unwrap();

    let srv = start(&cfg).await;
    assert_eq!(srv.count("raw.transactions").await, 200);
    srv.stop().await;
}

/// Property: whatever the mix of good, bad and repeated records, every
/// posted record is accounted for exactly once, and the tables agree.
#[tokio::test]
async fn reconciliation_holds_for_random_mixes() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut posted, mut acc, mut q, mut d) = (0u64, 0u64, 0u64, 0u64);
    for request in 0..12 {
        let n = 1 + next() % 300;
        let lines: Vec<String> = (0..n)
            .map(|_| match next() % 10 {
                0 => "{\"event_id\":".to_owned(),
                1 => r#"{"event_id":"x","user_id":1,"amount":"1.001","event_time":"2026-11-20T10:00:00Z"}"#.to_owned(),
                // Keys drawn from a small space repeat within and across requests.
                _ => event(&format!("k{}", next() % 500), "2.50"),
            })
            .collect();
        posted += n;
        let (status, r) = srv.post("raw.transactions", lines.join("\n")).await;
        assert_eq!(status, 200, "request {request}: {r}");
        let (a, qq, dd) =
            (r["accepted"].as_u64().unwrap(), r["quarantined"].as_u64().unwrap(), r["duplicates"].as_u64().unwrap());
        assert_eq!(a + qq + dd, n, "request {request}: {r}");
        (acc, q, d) = (acc + a, q + qq, d + dd);
    }
    assert_eq!(acc + q + d, posted);
    assert_eq!(srv.count("raw.transactions").await, i64::try_from(acc).unwrap());
    assert_eq!(srv.count("quarantine.transactions").await, i64::try_from(q).unwrap());
    let (_, v) = srv.sql("SELECT count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0][0].as_u64(), Some(acc), "no key is stored twice");
    srv.stop().await;
}

/// A body large enough to be validated in parts on several threads: every
/// reject keeps its record number (including those on either side of a
/// part boundary), and every good row lands once.
#[tokio::test]
async fn a_large_body_validated_in_parts_keeps_record_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let srv =
        start(&config(&TRANSACTIONS.replace("max_body_bytes = 1048576", "max_body_bytes = 16777216"), dir.path()))
            .await;
    let n = 20_000;
    let bad = [0, 4095, 4096, 9_999, 10_000, 10_001, 19_999];
    let lines: Vec<String> = (0..n)
        .map(|i| if bad.contains(&i) { "{not json".to_owned() } else { event(&format!("e{i}"), "1.00") })
        .collect();
    let (status, r) = srv.post("raw.transactions", lines.join("\n")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["quarantined"].as_u64()), (Some(n - 7), Some(7)), "{r}");
    let (_, v) = srv.sql("SELECT position FROM quarantine.transactions").await;
    let mut numbers: Vec<u64> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_str().unwrap().rsplit(' ').next().unwrap().parse().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, bad.to_vec());
    let (_, v) =
        srv.sql("SELECT count(*), count(DISTINCT event_id), min(event_id), max(event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([n - 7, n - 7, "e1", "e9998"]), "{v}");
    srv.stop().await;
}
