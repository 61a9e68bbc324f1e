//! Rollback: a new commit that holds an older snapshot's files and
//! pipeline states again; sources resume from there, exactly once.

use std::time::Duration;

use tributary_table::maintain::{Compaction, Retention, compact, expire_snapshots};
use tributary_table::write_data_files;
use tributary_table::{Lake, LoadedTable, TableError, commit, last_pipeline_state, rollback, stamp_unless_zombie};

use crate::commit_protocol::{batch, setup, stamp};
use crate::common::scan_all;

/// Commits rows `i*10 .. i*10+10` for i in `from..to`, as pipeline `p` at
/// position `(i+1)*10` of `p/0`.
async fn append(lake: &Lake, table: LoadedTable, p: &str, from: i64, to: i64) -> LoadedTable {
    let mut table = table;
    for i in from..to {
        let files = write_data_files(lake, &table, &[batch(&table, i * 10, i * 10 + 10)], 1 << 20).await.unwrap();
        let next = u64::try_from((i + 1) * 10).unwrap();
        table = commit(lake, &table, &files, &stamp(p, &format!("{p}/0"), next, 0)).await.unwrap();
    }
    table
}

async fn row_count(lake: &Lake, table: &LoadedTable) -> usize {
    scan_all(lake, table).await.iter().map(arrow_array::RecordBatch::num_rows).sum()
}

#[tokio::test]
async fn rollback_restores_the_targets_rows_files_and_positions() {
    let (_dir, lake, def) = setup().await;
    let table = append(&lake, lake.load(&def.name).await.unwrap(), "kafka:a", 0, 10).await;
    let target = table.current_snapshot_id().unwrap();
    // Compaction replaces the target's files; later commits add more.
    compact(&lake, &def.name, &Compaction::new(1 << 20, 2), false).await.unwrap();
    let table = append(&lake, lake.load(&def.name).await.unwrap(), "kafka:a", 10, 20).await;
    let before_seq = table.metadata.last_sequence_number();
    assert_eq!(row_count(&lake, &table).await, 200);

    let done = rollback(&lake, &def.name, target).await.unwrap();
    assert_eq!((done.rows_before, done.rows_after), (200, 100));
    assert!(done.files_restored > 0, "the files compaction replaced come back: {done:?}");
    let table = lake.load(&def.name).await.unwrap();
    assert_eq!(row_count(&lake, &table).await, 100);
    assert_eq!(table.total_records(), 100);
    let state = last_pipeline_state(&table, "kafka:a").unwrap().unwrap();
    assert_eq!(state.positions.get("kafka:a/0"), Some(100), "the source resumes from the target's positions");

    // A batch read on from the old positions must not land: it would skip
    // offsets 100..200. One that begins where the table stands does.
    let (started, ends) = (stamp("x", "kafka:a/0", 200, 0).positions, stamp("x", "kafka:a/0", 210, 0).positions);
    assert!(stamp_unless_zombie(&table, "kafka:a", &started, &ends, 0, true).unwrap().is_none());
    assert!(stamp_unless_zombie(&table, "kafka:a", &started, &ends, 0, false).unwrap().is_some());

    // The dedup refresh hears of the rows that left.
    let changes = tributary_table::changes::changed_since(&lake, &table, before_seq, &["n"]).await.unwrap().unwrap();
    let removed: usize = changes.removed.iter().map(arrow_array::RecordBatch::num_rows).sum();
    let added: usize = changes.added.iter().map(arrow_array::RecordBatch::num_rows).sum();
    assert_eq!((removed, added), (200, 100), "compacted + later files out, the target's files back");

    // Re-ingest what followed: every row once again.
    let table = append(&lake, table, "kafka:a", 10, 20).await;
    assert_eq!(row_count(&lake, &table).await, 200);

    // Expiring everything before the rollback keeps the restored files.
    let now = chrono::Utc::now().timestamp_millis() + 1000;
    let retention = Retention { max_age: Duration::ZERO, min_snapshots: 2 };
    let expired = expire_snapshots(&lake, &def.name, retention, now, false).await.unwrap();
    assert!(expired.snapshots > 10, "{expired:?}");
    let table = lake.load(&def.name).await.unwrap();
    assert_eq!(row_count(&lake, &table).await, 200, "expiry deleted a file the rollback restored");
    assert_eq!(last_pipeline_state(&table, "kafka:a").unwrap().unwrap().positions.get("kafka:a/0"), Some(200));
}

#[tokio::test]
async fn rollback_refuses_a_snapshot_outside_the_history() {
    let (_dir, lake, def) = setup().await;
    let table = append(&lake, lake.load(&def.name).await.unwrap(), "p", 0, 2).await;
    let current = table.current_snapshot_id().unwrap();
    for (to, why) in [(42, "no such snapshot"), (current, "current snapshot already")] {
        match rollback(&lake, &def.name, to).await {
            Err(e @ TableError::UnknownSnapshot { .. }) => {
                let text = e.to_string();
                assert!(text.contains(why) && text.contains("$snapshots"), "{text}");
            }
            other => panic!("rollback to {to}: {other:?}"),
        }
    }
    assert_eq!(lake.load(&def.name).await.unwrap().location, table.location, "a refused rollback changes nothing");
}

/// A server keeps running while its table is rolled back: the Kafka source
/// reads again what followed the target (the dedup index forgot those
/// keys), malformed records are not quarantined twice, and an HTTP request
/// that was rolled back is ingested again when its client retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_server_reingests_what_a_rollback_removed_exactly_once() {
    use crate::common::{TRANSACTIONS, config, event, open_lake, start};
    use crate::kafka_util::{kafka_config, new_topic, produce, wait_for};

    let topic = new_topic("rollback").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka_config(&topic, &format!("g-{topic}")), dir.path());
    assert!(TRANSACTIONS.contains("dedup_key"), "the table has a dedup key");
    let srv = start(&cfg).await;
    let lake = open_lake(&cfg).await;
    let name = tributary_core::TableName::new("raw", "transactions");

    let first = produce(&topic, "a-", 200).await;
    wait_for(&srv, i64::try_from(first).unwrap(), 4).await;
    let target = lake.load(&name).await.unwrap().current_snapshot_id().unwrap();

    let body: String = (0..5).map(|i| event(&format!("h-{i}"), "1.00") + "\n").collect();
    let (status, answered) = srv.post_with_key("raw.transactions", "req-1", body.clone()).await;
    assert_eq!(status, 200, "{answered}");
    let second = produce(&topic, "b-", 200).await;
    wait_for(&srv, i64::try_from(first + 5 + second).unwrap(), 8).await;

    let done = rollback(&lake, &name, target).await.unwrap();
    assert_eq!(done.rows_after, u64::try_from(first).unwrap());

    // The source notices on its next landing and reads "b-" again.
    let third = produce(&topic, "c-", 100).await;
    wait_for(&srv, i64::try_from(first + second + third).unwrap(), 10).await;
    // The rolled-back request is forgotten: its retry is ingested anew.
    let (status, again) = srv.post_with_key("raw.transactions", "req-1", body).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["snapshot_id"], answered["snapshot_id"], "answered from the rolled-back snapshot: {again}");
    assert_eq!(again["accepted"], 5, "{again}");
    let total = first + second + third + 5;
    let (_, v) = srv.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([total, total]), "every record exactly once after the rollback");
    srv.stop().await;
}

/// Deletes and overwrites: the files named leave, new ones join, in one
/// snapshot; naming a file that is no longer live is refused and changes
/// nothing.
#[tokio::test]
async fn overwrite_and_delete_swap_files_and_refuse_files_no_longer_live() {
    use std::collections::HashSet;

    use tributary_table::iceberg::spec::Operation;
    use tributary_table::{Change, publish};

    let (_dir, lake, def) = setup().await;
    let t = lake.load(&def.name).await.unwrap();
    let a = write_data_files(&lake, &t, &[batch(&t, 0, 10)], 1 << 20).await.unwrap();
    let t = commit(&lake, &t, &a, &stamp("p", "p/0", 10, 0)).await.unwrap();
    let b = write_data_files(&lake, &t, &[batch(&t, 10, 20)], 1 << 20).await.unwrap();
    let t = commit(&lake, &t, &b, &stamp("p", "p/0", 20, 0)).await.unwrap();
    let paths = |files: &[tributary_table::iceberg::spec::DataFile]| -> HashSet<String> {
        files.iter().map(|f| f.file_path().to_owned()).collect()
    };

    // Replace the first commit's rows with other rows.
    let c = write_data_files(&lake, &t, &[batch(&t, 100, 105)], 1 << 20).await.unwrap();
    let removed = paths(&a);
    let t = publish(&lake, &t, Change::Overwrite { removed: &removed, added: &c, stamp: None }).await.unwrap();
    assert_eq!(t.metadata.current_snapshot().unwrap().summary().operation, Operation::Overwrite);
    assert_eq!((row_count(&lake, &t).await, t.total_records()), (15, 15));
    assert_eq!(last_pipeline_state(&t, "p").unwrap().unwrap().positions.get("p/0"), Some(20), "positions kept");

    // The same files again: no longer live, refused, nothing changes.
    match publish(&lake, &t, Change::Overwrite { removed: &removed, added: &[], stamp: None }).await {
        Err(TableError::ChangeConflict { .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(lake.load(&def.name).await.unwrap().location, t.location);

    // Delete the second commit's files.
    let t = publish(&lake, &t, Change::Overwrite { removed: &paths(&b), added: &[], stamp: None }).await.unwrap();
    assert_eq!(t.metadata.current_snapshot().unwrap().summary().operation, Operation::Delete);
    assert_eq!((row_count(&lake, &t).await, t.total_records()), (5, 5));
}
