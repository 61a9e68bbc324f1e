//! The exactly-once commit path: one Iceberg snapshot built from an explicit
//! base and published by a compare-and-swap of the catalog pointer.
//!
//! ```text
//!  writer                              storage                 catalog row
//!  ──────                              ───────                 ───────────
//!  base = load()  ─────────────────────────────────────────────► metadata_location = M0
//!  write data files  ─────────────────► data/*.parquet  (orphans until referenced)
//!  write manifest + manifest list  ───► metadata/*.avro
//!  fsync everything written so far, and its directories
//!  build metadata M1 from M0:
//!     snapshot.parent  = M0.current
//!     summary          = tributary.pipeline / .positions / .epoch
//!  write M1  ─────────────────────────► metadata/000NN-uuid.metadata.json
//!  CAS(expected = M0, new = M1) ───────────────────────────────► won  → M1 is current, data visible
//!                                                              ├─► lost → CommitConflict
//!                                                              └─► error → read back: our snapshot in
//!                                                                  the table? committed : the error
//!                                                                  (unreadable → CommitUnknown)
//!  on CommitConflict (commit_with_retry):
//!     fresh = load()
//!     if fresh's positions for our partitions moved past where the batch
//!        began, or a newer epoch committed → ZOMBIE: drop batch, re-seek
//!     else rebuild on fresh (same data files) and try again, with backoff
//! ```
//!
//! Invariants: (1) nothing is visible before the CAS succeeds, so a crash at
//! any earlier point leaves only orphan files; (2) a commit never succeeds on
//! a base other than the one it names, so a stale writer cannot silently
//! rebase (iceberg-rust's `Transaction::commit` would); (3) positions travel
//! in the same snapshot as the rows they produced.

use std::collections::HashMap;
use std::time::Duration;

use iceberg::spec::{
    DataFile, MAIN_BRANCH, ManifestFile, ManifestListWriter, ManifestWriterBuilder, Operation, Snapshot,
    SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Summary, TableMetadataBuilder,
};
use tributary_core::Positions;
use tributary_core::positions::{SUMMARY_EPOCH, SUMMARY_PIPELINE, SUMMARY_POSITIONS};
use uuid::Uuid;

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable, next_version};

/// What a commit records about the pipeline that produced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineStamp {
    /// Stable pipeline id, e.g. `http:raw.transactions`.
    pub pipeline: String,
    /// Next position per source partition after this commit.
    pub positions: Positions,
    /// Fencing epoch of the writer; 0 means the pipeline is not fenced.
    pub epoch: u64,
    /// Further summary properties that must land with these positions, e.g.
    /// the HTTP requests this snapshot answers (`tributary.requests`).
    pub extra: Vec<(String, String)>,
}

impl PipelineStamp {
    /// A stamp carrying positions only.
    pub fn new(pipeline: impl Into<String>, positions: Positions, epoch: u64) -> Self {
        Self { pipeline: pipeline.into(), positions, epoch, extra: Vec::new() }
    }
}

/// How a commit attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The snapshot is published; this is the new table state.
    Committed(LoadedTable),
    /// Another writer already committed this input: the batch was dropped.
    /// Holds the fresh table state to re-seek from.
    Zombie(LoadedTable),
}

/// Publishes one append snapshot of `data_files` on top of `base`.
///
/// Fails with [`TableError::CommitConflict`] if `base` is no longer current.
pub async fn commit(
    lake: &Lake,
    base: &LoadedTable,
    data_files: &[DataFile],
    stamp: &PipelineStamp,
) -> Result<LoadedTable> {
    let meta = &base.metadata;
    let snapshot_id = unique_snapshot_id(base);
    let seq = meta.next_sequence_number();
    let commit_id = Uuid::new_v4();
    let schema = meta.current_schema().clone();
    let spec = meta.default_partition_spec().clone();
    let parent = meta.current_snapshot();

    let mut manifests: Vec<ManifestFile> = match parent {
        Some(p) => lake
            .iceberg_table(base)?
            .manifest_list_reader(p)
            .load()
            .await
            .map_err(TableError::iceberg("reading manifest list"))?
            .consume_entries()
            .into_iter()
            .collect(),
        None => Vec::new(),
    };
    let mut collector = SnapshotSummaryCollector::default();
    // Everything the new metadata references, made durable before it is.
    let mut written: Vec<String> = data_files.iter().map(|f| f.file_path().to_owned()).collect();
    if !data_files.is_empty() {
        let path = format!("{}/metadata/{commit_id}-m0.avro", meta.location());
        written.push(path.clone());
        let output = lake.file_io().new_output(&path).map_err(TableError::iceberg("creating manifest"))?;
        let mut writer =
            ManifestWriterBuilder::new(output, Some(snapshot_id), schema.clone(), (*spec).clone()).build_v2_data();
        for f in data_files {
            collector.add_file(f, schema.clone(), spec.clone());
            writer.add_file(f.clone(), seq).map_err(TableError::iceberg("adding data file to manifest"))?;
        }
        manifests.push(writer.write_manifest_file().await.map_err(TableError::iceberg("writing manifest"))?);
    }

    let list_path = format!("{}/metadata/snap-{snapshot_id}-1-{commit_id}.avro", meta.location());
    let list_out = lake
        .file_io()
        .new_output(&list_path)
        .map_err(TableError::iceberg("creating manifest list"))?
        .writer()
        .await
        .map_err(TableError::iceberg("creating manifest list"))?;
    let mut list = ManifestListWriter::v2(list_out, snapshot_id, parent.map(|p| p.snapshot_id()), seq);
    list.add_manifests(manifests.into_iter()).map_err(TableError::iceberg("writing manifest list"))?;
    list.close().await.map_err(TableError::iceberg("writing manifest list"))?;
    written.push(list_path.clone());
    crate::durable::sync(written).await?;

    let mut props = collector.build();
    add_totals(&mut props, parent.map(|p| p.summary()));
    props.insert(SUMMARY_PIPELINE.to_owned(), stamp.pipeline.clone());
    props.insert(SUMMARY_POSITIONS.to_owned(), stamp.positions.to_json());
    props.insert(SUMMARY_EPOCH.to_owned(), stamp.epoch.to_string());
    props.extend(stamp.extra.iter().cloned());
    let snapshot = Snapshot::builder()
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(parent.map(|p| p.snapshot_id()))
        .with_sequence_number(seq)
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(meta.last_updated_ms() + 1))
        .with_manifest_list(list_path)
        .with_schema_id(meta.current_schema_id())
        .with_summary(Summary { operation: Operation::Append, additional_properties: props })
        .build();
    let new_meta = TableMetadataBuilder::new_from_metadata((**meta).clone(), Some(base.location.clone()))
        .add_snapshot(snapshot)
        .and_then(|b| {
            b.set_ref(MAIN_BRANCH, SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)))
        })
        .and_then(|b| b.build())
        .map_err(TableError::iceberg("building snapshot metadata"))?
        .metadata;
    let path = lake.write_metadata(meta.location(), next_version(&base.location), &new_meta).await?;
    fail::fail_point!("table::before_catalog_swap", |_| Err(TableError::Injected("table::before_catalog_swap")));
    stall("table::stall_before_catalog_swap").await;
    let unknown = |reason: String| TableError::CommitUnknown { table: base.name.clone(), snapshot_id, reason };
    let swapped = match lake.store().swap(&base.name, &base.location, &path).await {
        Ok(swapped) => swapped,
        // The connection may have broken after the database committed: the
        // table itself says whether our snapshot landed.
        Err(e) => match lake.landed(&base.name, snapshot_id).await {
            Ok(Some(_)) => true,
            Ok(None) => return Err(e),
            Err(_) => return Err(unknown(e.to_string())),
        },
    };
    if !swapped {
        return Err(TableError::CommitConflict { table: base.name.clone(), expected: base.location.clone() });
    }
    // The connection broke after the database committed: the caller cannot
    // tell whether the swap happened.
    fail::fail_point!("table::after_catalog_swap", |_| Err(unknown("failpoint table::after_catalog_swap".to_owned())));
    // The process died right after the swap: nothing after it runs.
    fail::fail_point!("table::crash_after_catalog_swap", |_| Err(TableError::Injected(
        "table::crash_after_catalog_swap"
    )));
    Ok(LoadedTable { name: base.name.clone(), location: path, metadata: new_meta.into() })
}

/// With the `failpoints` feature, `return(MS)` on `name` holds this commit
/// for MS milliseconds without blocking the runtime (a thread sleep would
/// stall every task): a writer that is slow at the worst moment.
#[cfg_attr(not(feature = "failpoints"), allow(unused_variables))]
async fn stall(name: &str) {
    let ms = (|| {
        fail::fail_point!(name, |ms: Option<String>| ms.and_then(|m| m.parse::<u64>().ok()));
        None
    })();
    if let Some(ms) = ms {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

/// Commits with the protocol's conflict rule.
///
/// `stamp_for` is asked for the stamp on every attempt, with the base the
/// attempt builds on; it returns `None` when that base proves this batch a
/// zombie. Data files are immutable, so every retry reuses them.
pub async fn commit_with_retry(
    lake: &Lake,
    mut base: LoadedTable,
    data_files: &[DataFile],
    mut stamp_for: impl FnMut(&LoadedTable) -> Result<Option<PipelineStamp>>,
    max_attempts: u32,
) -> Result<(Outcome, u32)> {
    let mut conflicts = 0;
    loop {
        let Some(stamp) = stamp_for(&base)? else {
            return Ok((Outcome::Zombie(base), conflicts));
        };
        match commit(lake, &base, data_files, &stamp).await {
            Ok(new) => return Ok((Outcome::Committed(new), conflicts)),
            Err(TableError::CommitConflict { .. }) if conflicts + 1 < max_attempts => {
                conflicts += 1;
                tracing::debug!(table = %base.name, conflicts, "commit conflict; reloading base");
                let backoff = Duration::from_millis(5u64 << conflicts.min(7));
                tokio::time::sleep(backoff).await;
                base = lake.load(&base.name).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

fn unique_snapshot_id(base: &LoadedTable) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        // 53 bits: exact in JSON numbers and in Prometheus gauges.
        let id = ((a ^ b) & ((1u64 << 53) - 1)) as i64;
        if id != 0 && base.metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Carries the `total-*` counters forward from the parent summary.
fn add_totals(props: &mut HashMap<String, String>, parent: Option<&Summary>) {
    let get = |m: &HashMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    for (total, added) in [
        ("total-data-files", "added-data-files"),
        ("total-records", "added-records"),
        ("total-files-size", "added-files-size"),
        ("total-delete-files", "added-delete-files"),
        ("total-position-deletes", "added-position-deletes"),
        ("total-equality-deletes", "added-equality-deletes"),
    ] {
        let prev = parent.map_or(0, |p| get(&p.additional_properties, total));
        let value = prev + get(props, added);
        props.insert(total.to_owned(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_accumulate_over_the_parent() {
        let parent = Summary {
            operation: Operation::Append,
            additional_properties: HashMap::from([("total-records".to_owned(), "10".to_owned())]),
        };
        let mut props = HashMap::from([("added-records".to_owned(), "5".to_owned())]);
        add_totals(&mut props, Some(&parent));
        assert_eq!(props["total-records"], "15");
        assert_eq!(props["total-data-files"], "0");
    }
}
