//! The dedup index past its memory bound, and across restarts: keys that
//! do not fit in memory go to runs on local disk, every duplicate is still
//! dropped, and a restart resumes from the runs instead of the table.

use crate::common::{TRANSACTIONS, config, event, metric, start};

const TABLE: &str = "raw.bounded";
/// Keys ingested: about three times what a 1 MiB bound holds in memory.
const KEYS: usize = 40_000;
const BODY: usize = 2_000;

fn bounded(dir: &std::path::Path) -> tributary_core::config::ValidConfig {
    let toml = TRANSACTIONS
        .replace("raw.transactions", TABLE)
        .replace("dedup_key = \"event_id\"\n", "dedup_key = \"event_id\"\ndedup_memory = \"1MiB\"\n");
    config(&toml, dir)
}

fn body(keys: std::ops::Range<usize>, extra: Option<&str>) -> String {
    let mut lines: Vec<String> = keys.map(|i| event(&format!("k{i}"), "1.00")).collect();
    lines.extend(extra.map(|id| event(id, "2.00")));
    lines.join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_past_the_memory_bound_are_still_deduplicated_and_a_restart_resumes_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bounded(dir.path());
    let srv = start(&cfg).await;
    for from in (0..KEYS).step_by(BODY) {
        let (status, r) = srv.post(TABLE, body(from..from + BODY, None)).await;
        assert_eq!((status, r["accepted"].as_u64()), (200, Some(BODY as u64)), "{r}");
    }
    let m = srv.metrics().await;
    let label = format!("table=\"{TABLE}\"");
    let gauge = |name: &str| metric(&m, name, &[&label]).unwrap_or_else(|| panic!("no {name} in\n{m}"));
    assert!(gauge("tributary_dedup_disk_bytes") > 0.0, "40k keys do not fit in 1 MiB: some must be on disk");
    assert!(gauge("tributary_dedup_memory_bytes") <= f64::from(1 << 20), "memory stays within the bound");
    assert_eq!(gauge("tributary_dedup_keys"), KEYS as f64);

    // Every key again, each body with one new key: only the new ones land.
    for (n, from) in (0..KEYS).step_by(BODY).enumerate() {
        let (status, r) = srv.post(TABLE, body(from..from + BODY, Some(&format!("new{n}")))).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(1), Some(BODY as u64)), "{r}");
    }
    let (_, v) = srv.sql(&format!("SELECT count(*), count(DISTINCT event_id) FROM {TABLE}")).await;
    let landed = KEYS + KEYS / BODY;
    assert_eq!(v["rows"][0], serde_json::json!([landed, landed]), "{v}");
    srv.stop().await;

    // The stop stored every key. With the table's data files gone, a
    // restart that read the table would fail: this one reads only runs.
    let data = cfg.warehouse.local_dir().unwrap().join("raw").join("bounded").join("data");
    let removed = remove_parquet(&data);
    assert!(removed > 0, "no data files under {}", data.display());
    let srv = start(&cfg).await;
    let (status, r) = srv.post(TABLE, body(0..BODY, Some("after-restart"))).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(1), Some(BODY as u64)), "{r}");
    let (_, r) = srv.post(TABLE, body(KEYS - 10..KEYS, Some("new0"))).await;
    assert_eq!((r["accepted"].as_u64(), r["duplicates"].as_u64()), (Some(0), Some(11)), "{r}");
    srv.stop().await;
}

/// Deletes every Parquet file under `dir`; how many.
fn remove_parquet(dir: &std::path::Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            n += remove_parquet(&path);
        } else if path.extension().is_some_and(|x| x == "parquet") {
            std::fs::remove_file(&path).unwrap();
            n += 1;
        }
    }
    n
}
