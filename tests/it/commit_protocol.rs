//! The exactly-once commit path: races, zombies, crashes and recovery.

use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, new_null_array};
use tributary_core::Positions;
use tributary_core::config::TableDef;
use tributary_core::error::Classify;
use tributary_table::iceberg::arrow::schema_to_arrow_schema;
use tributary_table::{
    Lake, LoadedTable, Outcome, PipelineStamp, TableError, commit, commit_with_retry, last_pipeline_state,
    stamp_unless_zombie, write_data_files,
};

use crate::common::{config, open_lake, rows, scan_all};

const TABLE: &str = r#"
[[tables]]
name = "raw.events"
partition = ["bucket(4, id)"]
fields = [
  { name = "id", type = "string", required = true },
  { name = "n",  type = "long" },
]
"#;

pub async fn setup() -> (tempfile::TempDir, Lake, TableDef) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(TABLE, dir.path());
    let lake = open_lake(&cfg).await;
    let def = cfg.tables[0].clone();
    lake.ensure_table(&def).await.unwrap();
    (dir, lake, def)
}

pub fn batch(table: &LoadedTable, from: i64, to: i64) -> RecordBatch {
    let schema = Arc::new(schema_to_arrow_schema(table.metadata.current_schema()).unwrap());
    let n = usize::try_from(to - from).unwrap();
    let cols: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "id" => Arc::new(StringArray::from_iter_values((from..to).map(|i| format!("id-{i}")))),
                "n" => Arc::new(Int64Array::from_iter_values(from..to)),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    RecordBatch::try_new(schema, cols).unwrap()
}

pub fn stamp(pipeline: &str, key: &str, next: u64, epoch: u64) -> PipelineStamp {
    let mut positions = Positions::default();
    positions.advance(key, next);
    PipelineStamp::new(pipeline, positions, epoch)
}

#[tokio::test]
async fn racing_writers_on_one_base_have_exactly_one_winner() {
    let (_dir, lake, def) = setup().await;
    let base = lake.load(&def.name).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..6i64 {
        let (lake, base) = (lake.clone(), base.clone());
        handles.push(tokio::spawn(async move {
            let files = write_data_files(&lake, &base, &[batch(&base, w * 100, w * 100 + 100)], 1 << 20).await.unwrap();
            commit(&lake, &base, &files, &stamp(&format!("w{w}"), "src/0", 100, 0)).await
        }));
    }
    let mut won = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => won += 1,
            Err(TableError::CommitConflict { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1, "exactly one compare-and-swap must win");
    let now = lake.load(&def.name).await.unwrap();
    assert_eq!(now.metadata.snapshots().count(), 1);
    assert_eq!(rows(&scan_all(&lake, &now).await), 100);
    // The losers' metadata, manifests and lists are gone: the table's
    // creation and the winner's commit are what is left.
    let metadata_dir = now.metadata.location().trim_start_matches("file://").to_owned() + "/metadata";
    let mut left: Vec<String> = std::fs::read_dir(&metadata_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    let json = left.iter().filter(|f| f.ends_with(".metadata.json")).count();
    let avro = left.iter().filter(|f| f.ends_with(".avro")).count();
    assert_eq!((json, avro), (2, 2), "files a refused commit wrote are left behind: {left:?}");
}

#[tokio::test]
async fn racing_unfenced_writers_all_land_after_retry() {
    let (_dir, lake, def) = setup().await;
    let base = lake.load(&def.name).await.unwrap();
    let mut handles = Vec::new();
    for w in 0..4i64 {
        let (lake, base) = (lake.clone(), base.clone());
        handles.push(tokio::spawn(async move {
            let files = write_data_files(&lake, &base, &[batch(&base, w * 10, w * 10 + 10)], 1 << 20).await.unwrap();
            let pipeline = format!("http-{w}");
            commit_with_retry(
                &lake,
                base,
                &files,
                |b| stamp_unless_zombie(b, &pipeline, &Positions::default(), &Positions::default(), 0, true),
                20,
            )
            .await
            .unwrap()
        }));
    }
    let mut conflicts = 0;
    for h in handles {
        let (outcome, c) = h.await.unwrap();
        assert!(matches!(outcome, Outcome::Committed(_)));
        conflicts += c;
    }
    assert!(conflicts >= 1, "four writers on one base must have collided");
    let now = lake.load(&def.name).await.unwrap();
    assert_eq!(rows(&scan_all(&lake, &now).await), 40, "no lost update");
    assert_eq!(now.metadata.snapshots().count(), 4);
}

#[tokio::test]
async fn stale_writer_is_refused_and_detected_as_zombie() {
    let (_dir, lake, def) = setup().await;
    let base = lake.load(&def.name).await.unwrap();
    // Both workers read source partition 0 from offset 0 to 50.
    let started = stamp("kafka", "c/t/0", 0, 1).positions;
    let ends = stamp("kafka", "c/t/0", 50, 1).positions;
    let a_files = write_data_files(&lake, &base, &[batch(&base, 0, 50)], 1 << 20).await.unwrap();
    let b_files = write_data_files(&lake, &base, &[batch(&base, 0, 50)], 1 << 20).await.unwrap();

    let a = commit(
        &lake,
        &base,
        &a_files,
        &stamp_unless_zombie(&base, "kafka", &started, &ends, 1, true).unwrap().unwrap(),
    )
    .await
    .unwrap();

    // The zombie still holds the old base: a plain commit is refused...
    let refused = commit(&lake, &base, &b_files, &stamp("kafka", "c/t/0", 50, 1)).await.unwrap_err();
    assert!(matches!(refused, TableError::CommitConflict { .. }), "{refused}");
    // ...and the protocol's retry recognises it as a zombie and drops the batch.
    let (outcome, _) =
        commit_with_retry(&lake, base, &b_files, |b| stamp_unless_zombie(b, "kafka", &started, &ends, 1, true), 5)
            .await
            .unwrap();
    let Outcome::Zombie(fresh) = outcome else { panic!("stale writer must be a zombie") };
    assert_eq!(fresh.location, a.location);
    assert_eq!(rows(&scan_all(&lake, &fresh).await), 50, "zombie rows must not be visible");
    assert_eq!(last_pipeline_state(&fresh, "kafka").unwrap().unwrap().positions.get("c/t/0"), Some(50));
}

#[tokio::test]
async fn newer_epoch_fences_an_older_writer() {
    let (_dir, lake, def) = setup().await;
    let base = lake.load(&def.name).await.unwrap();
    let files = write_data_files(&lake, &base, &[batch(&base, 0, 5)], 1 << 20).await.unwrap();
    let fresh = commit(&lake, &base, &files, &stamp("kafka", "c/t/1", 5, 7)).await.unwrap();
    let empty = Positions::default();
    assert!(stamp_unless_zombie(&fresh, "kafka", &empty, &empty, 6, true).unwrap().is_none());
    assert!(stamp_unless_zombie(&fresh, "kafka", &empty, &empty, 7, true).unwrap().is_some());
}

#[tokio::test]
async fn crash_between_data_write_and_commit_leaves_only_orphan_files() {
    let (dir, lake, def) = setup().await;
    let base = lake.load(&def.name).await.unwrap();
    let files = write_data_files(&lake, &base, &[batch(&base, 0, 30)], 1 << 20).await.unwrap();
    assert!(!files.is_empty());
    drop(lake); // the process dies here: no commit

    let cfg = config(TABLE, dir.path());
    let lake = open_lake(&cfg).await;
    let after = lake.load(&def.name).await.unwrap();
    assert_eq!(after.location, base.location, "table pointer must not move");
    assert_eq!(rows(&scan_all(&lake, &after).await), 0, "no data may be visible");
    for f in &files {
        let path = f.file_path().trim_start_matches("file://");
        assert!(std::path::Path::new(path).exists(), "orphan {path} stays for maintenance to clean");
    }
}

#[tokio::test]
async fn recovery_walks_past_snapshots_without_positions() {
    let (_dir, lake, def) = setup().await;
    let mut t = lake.load(&def.name).await.unwrap();
    let files = write_data_files(&lake, &t, &[batch(&t, 0, 10)], 1 << 20).await.unwrap();
    t = commit(&lake, &t, &files, &stamp("ingest", "c/t/0", 10, 1)).await.unwrap();
    let ours = t.current_snapshot_id().unwrap();
    // Two later snapshots by other writers, e.g. compaction or another pipeline.
    for other in ["maintenance", "backfill"] {
        let files = write_data_files(&lake, &t, &[batch(&t, 10, 12)], 1 << 20).await.unwrap();
        t = commit(&lake, &t, &files, &PipelineStamp::new(other, Positions::default(), 0)).await.unwrap();
    }
    let reloaded = lake.load(&def.name).await.unwrap();
    let state = last_pipeline_state(&reloaded, "ingest").unwrap().unwrap();
    assert_eq!(state.snapshot_id, ours);
    assert_eq!(state.positions.get("c/t/0"), Some(10));
    assert_eq!(state.epoch, 1);
    assert!(last_pipeline_state(&reloaded, "never").unwrap().is_none());
}

/// Recovery took "cannot tell" for "never committed": an expired parent
/// or unreadable positions made a source restart from its `start` policy.
#[tokio::test]
async fn recovery_refuses_to_guess_when_the_history_is_broken() {
    let (_dir, lake, def) = setup().await;
    let mut t = lake.load(&def.name).await.unwrap();
    let files = write_data_files(&lake, &t, &[batch(&t, 0, 10)], 1 << 20).await.unwrap();
    t = commit(&lake, &t, &files, &stamp("ingest", "c/t/0", 10, 1)).await.unwrap();
    let ours = t.current_snapshot_id().unwrap();
    let files = write_data_files(&lake, &t, &[batch(&t, 10, 12)], 1 << 20).await.unwrap();
    let other = PipelineStamp::new("other", Positions::default(), 0);
    t = commit(&lake, &t, &files, &other).await.unwrap();
    let edited = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut json = serde_json::to_value(&*t.metadata).unwrap();
        edit(&mut json);
        LoadedTable { metadata: Arc::new(serde_json::from_value(json).unwrap()), ..t.clone() }
    };
    let ours_of = |v: &mut serde_json::Value| -> usize {
        v["snapshots"].as_array().unwrap().iter().position(|s| s["snapshot-id"] == ours).unwrap()
    };
    // Our snapshot expired by another engine: its child still names it.
    let expired = edited(&|v| {
        let i = ours_of(v);
        v["snapshots"].as_array_mut().unwrap().remove(i);
        v["snapshot-log"] = serde_json::json!([]);
    });
    let err = last_pipeline_state(&expired, "ingest").unwrap_err().to_string();
    assert!(err.contains(&format!("snapshot {ours}")) && err.contains("expired"), "{err}");
    assert!(err.contains("raw.events") && err.contains("'ingest'"), "{err}");
    let garbled = edited(&|v| {
        let i = ours_of(v);
        v["snapshots"][i]["summary"]["tributary.positions"] = "{not json".into();
    });
    let err = last_pipeline_state(&garbled, "ingest").unwrap_err().to_string();
    assert!(err.contains("unreadable tributary.positions"), "{err}");
    assert!(stamp_unless_zombie(&garbled, "ingest", &Positions::default(), &Positions::default(), 1, true).is_err());
}

#[tokio::test]
async fn changed_since_reads_only_what_later_snapshots_added() {
    let (_dir, lake, def) = setup().await;
    let mut t = lake.load(&def.name).await.unwrap();
    let mut sequence = Vec::new();
    for (from, to) in [(0, 10), (10, 13), (13, 20)] {
        let files = write_data_files(&lake, &t, &[batch(&t, from, to)], 1 << 20).await.unwrap();
        t = commit(&lake, &t, &files, &stamp("ingest", "c/t/0", u64::try_from(to).unwrap(), 1)).await.unwrap();
        sequence.push(t.metadata.last_sequence_number());
    }
    let changes =
        tributary_table::changes::changed_since(&lake, &t, sequence[0], &["n"]).await.unwrap().expect("full history");
    assert!(changes.removed.is_empty(), "appends remove nothing");
    let mut n: Vec<i64> = changes
        .added
        .iter()
        .flat_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
        .collect();
    n.sort_unstable();
    assert_eq!(n, (10..20).collect::<Vec<_>>(), "the first commit's rows are not re-read");
    let none = tributary_table::changes::changed_since(&lake, &t, sequence[2], &["n"]).await.unwrap().unwrap();
    assert!(none.added.is_empty() && none.removed.is_empty());
}

#[tokio::test]
async fn a_writer_whose_base_was_expired_by_another_retries_instead_of_failing() {
    let (_dir, lake, def) = setup().await;
    let first = lake.load(&def.name).await.unwrap();
    let files = write_data_files(&lake, &first, &[batch(&first, 0, 10)], 1 << 20).await.unwrap();
    let stale = commit(&lake, &first, &files, &stamp("a", "src/0", 10, 0)).await.unwrap();
    // Another worker commits twice and expires every snapshot but its
    // newest: the manifest list `stale` points at is deleted.
    let mut now = stale.clone();
    for i in 1..3 {
        let files = write_data_files(&lake, &now, &[batch(&now, i * 10, i * 10 + 10)], 1 << 20).await.unwrap();
        now = commit(&lake, &now, &files, &stamp("b", "src/1", 10 * i as u64, 0)).await.unwrap();
    }
    let retention = tributary_table::maintain::Retention { max_age: std::time::Duration::ZERO, min_snapshots: 1 };
    let expired =
        tributary_table::maintain::expire_snapshots(&lake, &def.name, retention, i64::MAX, false).await.unwrap();
    assert!(expired.files_deleted > 0, "{expired:?}");
    let list = stale.metadata.current_snapshot().unwrap().manifest_list().trim_start_matches("file://").to_owned();
    assert!(!std::path::Path::new(&list).exists(), "the stale base's manifest list is gone");

    let files = write_data_files(&lake, &stale, &[batch(&stale, 100, 110)], 1 << 20).await.unwrap();
    match commit(&lake, &stale, &files, &stamp("a", "src/0", 20, 0)).await {
        Err(e @ TableError::CommitConflict { .. }) => assert!(e.is_retryable()),
        other => panic!("a stale base is a conflict, not a failure: {other:?}"),
    }
    let (outcome, _) = commit_with_retry(
        &lake,
        stale,
        &files,
        |b| stamp_unless_zombie(b, "a", &Positions::default(), &Positions::default(), 0, true),
        5,
    )
    .await
    .unwrap();
    assert!(matches!(outcome, Outcome::Committed(_)));
    let now = lake.load(&def.name).await.unwrap();
    assert_eq!(rows(&scan_all(&lake, &now).await), 40);
}
