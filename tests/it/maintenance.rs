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
    assert!(metadata.len() <= 102, "{} metadata files kept for 131 versions", metadata.len());
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
    let done = compact(&lake, &def.name, Compaction { target_file_size: 1 << 20, min_files: 2 }).await.unwrap();
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
    compact(&lake, &def.name, Compaction { target_file_size: 1 << 20, min_files: 2 }).await.unwrap();
    assert_readable(&lake, &lake.load(&def.name).await.unwrap(), 500).await;
}

#[tokio::test]
async fn expiry_keeps_every_pipelines_positions_and_deletes_only_what_nothing_needs() {
    let (dir, lake, def) = setup().await;
    // Pipeline "old" commits once, early; "live" keeps committing.
    append(&lake, &def.name, "old", 0, 1).await;
    append(&lake, &def.name, "live", 1, 30).await;
    compact(&lake, &def.name, Compaction { target_file_size: 1 << 20, min_files: 2 }).await.unwrap();
    append(&lake, &def.name, "live", 30, 35).await;
    let parquet_before = files_under(dir.path(), ".parquet").len();
    let now = chrono::Utc::now().timestamp_millis() + 1000;
    let retention = Retention { max_age: Duration::ZERO, min_snapshots: 3 };
    let expired = expire_snapshots(&lake, &def.name, retention, now).await.unwrap();
    assert!(expired.snapshots >= 30, "{expired:?}");
    assert!(expired.files_deleted > expired.snapshots, "manifest lists, manifests and replaced files: {expired:?}");
    let table = lake.load(&def.name).await.unwrap();
    assert_eq!(table.metadata.snapshots().count(), 4, "three kept and the carry snapshot");
    assert!(files_under(dir.path(), ".parquet").len() < parquet_before, "replaced data files are deleted");
    assert_readable(&lake, &table, 350).await;

    let old = last_pipeline_state(&table, "old").unwrap().expect("a pipeline whose snapshots expired keeps its state");
    assert_eq!(old.positions.get("old/0"), Some(10));
    let live = last_pipeline_state(&table, "live").unwrap().unwrap();
    assert_eq!(live.positions.get("live/0"), Some(350));
    assert_eq!(last_pipeline_state(&table, "never").unwrap(), None, "a pipeline that never committed is new");

    // History keeps moving: more commits, and a second expiry past the first carry snapshot.
    append(&lake, &def.name, "live", 35, 40).await;
    expire_snapshots(&lake, &def.name, retention, chrono::Utc::now().timestamp_millis() + 1000).await.unwrap();
    let table = lake.load(&def.name).await.unwrap();
    assert_eq!(last_pipeline_state(&table, "old").unwrap().unwrap().positions.get("old/0"), Some(10));
    assert_eq!(last_pipeline_state(&table, "live").unwrap().unwrap().positions.get("live/0"), Some(400));
    assert_readable(&lake, &table, 400).await;
    // Nothing is left to expire within the retention.
    let again =
        expire_snapshots(&lake, &def.name, Retention { max_age: Duration::from_secs(3600), min_snapshots: 3 }, 0)
            .await
            .unwrap();
    assert_eq!(again.snapshots, 0);
}
