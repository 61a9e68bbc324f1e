//! Table maintenance on the commit path: manifest merging and the metadata
//! log on every append, compaction, and snapshot expiry that keeps every
//! pipeline's positions recoverable.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use arrow_array::{Array, StringArray};
use tributary_table::maintain::{Compaction, Retention, compact, expire_snapshots};
use tributary_table::{Lake, LoadedTable, commit, last_pipeline_state, write_data_files};

use crate::commit_protocol::{batch, setup, stamp};
use crate::common::scan_all;

/// Commits rows `i*10 .. i*10+10` for i in `from..to`, each stamped as
/// pipeline `p` at position `(i+1)*10`.
async fn append(lake: &Lake, name: &tributary_core::TableName, p: &str, from: i64, to: i64) -> LoadedTable {
    let mut table = lake.load(name).await.unwrap();
    for i in from..to {
        let files = write_data_files(lake, &table, &[batch(&table, i * 10, i * 10 + 10)], 1 << 20).await.unwrap();
        let next = u64::try_from((i + 1) * 10).unwrap();
        table = commit(lake, &table, &files, &stamp(p, &format!("{p}/0"), next, 0)).await.unwrap();
    }
    table
}

/// Every id in the table, checked distinct.
async fn ids(lake: &Lake, table: &LoadedTable) -> HashSet<String> {
    let mut seen = HashSet::new();
    for b in scan_all(lake, table).await {
        let col = b.column_by_name("id").unwrap().as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..col.len() {
            assert!(seen.insert(col.value(i).to_owned()), "duplicate row {}", col.value(i));
        }
    }
    seen
}

fn files_under(dir: &Path, suffix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(dir) {
        if entry.ends_with(suffix) {
            found.push(entry);
        }
    }
    found
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}

/// Every file the current snapshot needs exists.
async fn assert_readable(lake: &Lake, table: &LoadedTable, rows: usize) {
    assert_eq!(ids(lake, table).await.len(), rows);
}

#[tokio::test]
async fn appends_merge_their_manifests_and_drop_metadata_files_beyond_the_log() {
    let (dir, lake, def) = setup().await;
    let table = append(&lake, &def.name, "p", 0, 130).await;
    let list = lake
        .iceberg_table(&table)
        .unwrap()
        .manifest_list_reader(table.metadata.current_snapshot().unwrap())
        .load()
        .await
        .unwrap();
    assert!(list.entries().len() <= 51, "the manifest list keeps growing: {} manifests", list.entries().len());
    let metadata = files_under(dir.path(), ".metadata.json");
    assert!(metadata.len() <= 12, "{} metadata files kept for 131 versions", metadata.len());
    assert_readable(&lake, &table, 1300).await;
    assert_eq!(table.total_records(), 1300);
}

#[tokio::test]
async fn compaction_rewrites_small_files_and_keeps_rows_and_positions() {
    let (_dir, lake, def) = setup().await;
    let before = append(&lake, &def.name, "kafka:a", 0, 40).await;
    let files_before = before.metadata.current_snapshot().unwrap().summary().additional_properties["total-data-files"]
        .parse::<usize>()
        .unwrap();
    let done = compact(&lake, &def.name, &Compaction::new(1 << 20, 2), false).await.unwrap();
    assert_eq!(done.files_before, files_before);
    assert!(done.files_after <= 4, "one file per bucket expected, got {done:?}");
    let after = lake.load(&def.name).await.unwrap();
    assert_readable(&lake, &after, 400).await;
    assert_eq!(after.total_records(), 400);
    let summary = &after.metadata.current_snapshot().unwrap().summary().additional_properties;
    assert_eq!(summary["total-data-files"].parse::<usize>().unwrap(), done.files_after);
    let state = last_pipeline_state(&after, "kafka:a").unwrap().unwrap();
    assert_eq!(state.positions.get("kafka:a/0"), Some(400), "compaction must not hide the positions");
    // Appending after a compaction, and compacting again, still holds every row once.
    append(&lake, &def.name, "kafka:a", 40, 50).await;
    compact(&lake, &def.name, &Compaction::new(1 << 20, 2), false).await.unwrap();
    assert_readable(&lake, &lake.load(&def.name).await.unwrap(), 500).await;
}

#[tokio::test]
async fn expiry_keeps_every_pipelines_positions_and_deletes_only_what_nothing_needs() {
    let (dir, lake, def) = setup().await;
    // Pipeline "old" commits once, early; "live" keeps committing.
    append(&lake, &def.name, "old", 0, 1).await;
    append(&lake, &def.name, "live", 1, 30).await;
    compact(&lake, &def.name, &Compaction::new(1 << 20, 2), false).await.unwrap();
    append(&lake, &def.name, "live", 30, 35).await;
    let parquet_before = files_under(dir.path(), ".parquet").len();
    let now = chrono::Utc::now().timestamp_millis() + 1000;
    let retention = Retention { max_age: Duration::ZERO, min_snapshots: 3 };
    let expired = expire_snapshots(&lake, &def.name, retention, now, false).await.unwrap();
    assert!(expired.snapshots >= 30, "{expired:?}");
    assert!(expired.files_deleted > expired.snapshots, "manifest lists, manifests and replaced files: {expired:?}");
    let table = lake.load(&def.name).await.unwrap();
    assert_eq!(table.metadata.snapshots().count(), 4, "three kept and the carry snapshot");
    assert!(files_under(dir.path(), ".parquet").len() < parquet_before, "replaced data files are deleted");
    assert_readable(&lake, &table, 350).await;
    // The dedup refresh learns that history it never read is gone.
    let changes = tributary_table::changes::changed_since(&lake, &table, 1, &["n"]).await.unwrap();
    assert!(changes.is_none(), "expired history must not read as 'nothing added'");

    let old = last_pipeline_state(&table, "old").unwrap().expect("a pipeline whose snapshots expired keeps its state");
    assert_eq!(old.positions.get("old/0"), Some(10));
    let live = last_pipeline_state(&table, "live").unwrap().unwrap();
    assert_eq!(live.positions.get("live/0"), Some(350));
    assert_eq!(last_pipeline_state(&table, "never").unwrap(), None, "a pipeline that never committed is new");

    // History keeps moving: more commits, and a second expiry past the first carry snapshot.
    append(&lake, &def.name, "live", 35, 40).await;
    expire_snapshots(&lake, &def.name, retention, chrono::Utc::now().timestamp_millis() + 1000, false).await.unwrap();
    let table = lake.load(&def.name).await.unwrap();
    assert_eq!(last_pipeline_state(&table, "old").unwrap().unwrap().positions.get("old/0"), Some(10));
    assert_eq!(last_pipeline_state(&table, "live").unwrap().unwrap().positions.get("live/0"), Some(400));
    assert_readable(&lake, &table, 400).await;
    // Nothing is left to expire within the retention.
    let again = expire_snapshots(
        &lake,
        &def.name,
        Retention { max_age: Duration::from_secs(3600), min_snapshots: 3 },
        0,
        false,
    )
    .await
    .unwrap();
    assert_eq!(again.snapshots, 0);
}

/// Compaction and expiry run every 300 ms, with a 4 s retention, while a
/// Kafka source and keyed HTTP requests write to the same table (no dedup
/// key: a duplicate would show). Every acknowledged record is there once;
/// maintenance did compact and expire; after a restart the source resumes
/// from positions that now live in a carry snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_beside_kafka_and_http_ingest_loses_and_duplicates_nothing() {
    use crate::common::{config, event, metric, start, without_dedup_key};
    use crate::kafka_util::{kafka_config, new_topic, produce, wait_for};

    let topic = new_topic("maint").await;
    let dir = tempfile::tempdir().unwrap();
    let toml = without_dedup_key(&kafka_config(&topic, &format!("g-{topic}")))
        .replace("max_body_bytes = 1048576", "max_body_bytes = 1048576\nidempotency_window = \"4s\"")
        + "\n[maintenance]\ninterval = \"300ms\"\nsnapshot_max_age = \"4s\"\nmin_snapshots = 3\ncompact_min_files = 2\n";
    let cfg = config(&toml, dir.path());
    let srv = start(&cfg).await;
    let mut good = 0;
    let mut http_rows = 0;
    for wave in 0..6 {
        good += produce(&topic, &format!("k{wave}-"), 300).await;
        for r in 0..10 {
            let body: String = (0..5).map(|i| event(&format!("h{wave}-{r}-{i}"), "1.00") + "\n").collect();
            let key = format!("req-{wave}-{r}");
            let (status, v) = srv.post_with_key("raw.transactions", &key, body.clone()).await;
            assert_eq!(status, 200, "{v}");
            http_rows += 5;
            if r == 0 {
                // A retry of an answered request writes nothing.
                let (_, again) = srv.post_with_key("raw.transactions", &key, body).await;
                assert_eq!(again["snapshot_id"], v["snapshot_id"]);
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    }
    wait_for(&srv, i64::try_from(good + http_rows).unwrap(), 36).await;
    // Let maintenance run past the retention with ingest still arriving.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let text = srv.metrics().await;
    let table = ["table=\"raw.transactions\""];
    assert!(
        metric(&text, "tributary_maintenance_files_compacted_total", &table).unwrap_or(0.0) > 0.0,
        "no compaction ran"
    );
    assert!(
        metric(&text, "tributary_maintenance_snapshots_expired_total", &table).unwrap_or(0.0) > 0.0,
        "no expiry ran"
    );
    let (_, v) = srv.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    let total = good + http_rows;
    assert_eq!(v["rows"][0], serde_json::json!([total, total]), "every acknowledged record exactly once");
    srv.stop().await;

    // A restart resumes from the carried positions: only new records land.
    good += produce(&topic, "after-", 100).await;
    let srv = start(&cfg).await;
    wait_for(&srv, i64::try_from(good + http_rows).unwrap(), 38).await;
    let (_, v) = srv.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([good + http_rows, good + http_rows]));
    srv.stop().await;
}

/// Files nothing references (a commit that died before its swap) are
/// deleted once older than the guard; every referenced file stays.
#[tokio::test]
async fn orphan_cleanup_deletes_only_unreferenced_files_past_the_guard() {
    use tributary_table::maintain::remove_orphans;

    let (dir, lake, def) = setup().await;
    let table = append(&lake, &def.name, "p", 0, 5).await;
    compact(&lake, &def.name, &Compaction::new(1 << 20, 2), false).await.unwrap();
    // Written, never committed: an orphan.
    let orphans = write_data_files(&lake, &table, &[batch(&table, 900, 910)], 1 << 20).await.unwrap();
    let before = walk(dir.path()).len();

    let young = remove_orphans(&lake, &def.name, Duration::from_secs(3600), false).await.unwrap();
    assert_eq!(young.files, 0, "a file younger than the guard may be a commit in flight");
    let dry = remove_orphans(&lake, &def.name, Duration::ZERO, true).await.unwrap();
    assert_eq!(walk(dir.path()).len(), before, "a dry run deletes nothing");
    let done = remove_orphans(&lake, &def.name, Duration::ZERO, false).await.unwrap();
    assert_eq!(done, dry);
    assert!(done.files >= orphans.len(), "{done:?}");
    for f in &orphans {
        assert!(!Path::new(f.file_path().trim_start_matches("file://")).exists(), "{} survived", f.file_path());
    }
    // Every snapshot still reads: nothing referenced went.
    let table = lake.load(&def.name).await.unwrap();
    assert_readable(&lake, &table, 50).await;
    for snapshot in table.metadata.snapshots() {
        let list = lake.iceberg_table(&table).unwrap().manifest_list_reader(snapshot).load().await.unwrap();
        for m in list.entries() {
            m.load_manifest(lake.file_io()).await.unwrap();
        }
    }
}

/// With `sort_by`, each file compaction writes holds its rows in order;
/// without, in arrival order.
#[tokio::test]
async fn compaction_sorts_the_files_it_writes_when_asked() {
    use arrow_array::Int64Array;

    for sorted in [false, true] {
        let (_dir, lake, def) = setup().await;
        let mut table = lake.load(&def.name).await.unwrap();
        // Arrival order is descending, block by block.
        for i in (0..20).rev() {
            let files = write_data_files(&lake, &table, &[batch(&table, i * 10, i * 10 + 10)], 1 << 20).await.unwrap();
            table = commit(&lake, &table, &files, &stamp("p", "p/0", 20 - u64::try_from(i).unwrap(), 0)).await.unwrap();
        }
        let policy = Compaction {
            sort_by: if sorted { vec!["n".to_owned()] } else { Vec::new() },
            ..Compaction::new(1 << 20, 2)
        };
        compact(&lake, &def.name, &policy, false).await.unwrap();
        let table = lake.load(&def.name).await.unwrap();
        let batches = scan_all(&lake, &table).await;
        assert_eq!(batches.len(), 4, "one compacted file per bucket, one batch each");
        let in_order = batches.iter().all(|b| {
            let n = b.column_by_name("n").unwrap().as_any().downcast_ref::<Int64Array>().unwrap();
            n.values().windows(2).all(|w| w[0] <= w[1])
        });
        assert_eq!(in_order, sorted, "sort_by {sorted}");
        assert_readable(&lake, &table, 200).await;
    }
    let bad = crate::common::TRANSACTIONS.to_owned() + "\n[maintenance]\nsort_by = [\"amount\", \"nope\"]\n";
    let err = tributary_core::config::Config::from_toml(&bad).unwrap().validate(Path::new("/tmp")).unwrap_err();
    assert!(err.contains("sort_by") && err.contains("no column 'nope'") && err.contains("event_id"), "{err}");
}
