//! Building the next snapshot of a table from an explicit base: the
//! manifests it carries forward, the manifest of the files it adds, its
//! manifest list and its summary — for every commit kind (append, rewrite,
//! overwrite, rollback, expiry's carry snapshot).
//!
//! Manifests are merged here, so that a commit's cost does not grow with
//! the number of commits: every append adds one small manifest, and once
//! [`MERGE_MANIFESTS_AT`] small data manifests are carried, they are
//! rewritten as one (their files as `EXISTING` entries, with their original
//! snapshot ids and sequence numbers). A change that removes files (a
//! rewrite, an overwrite, a rollback) rewrites every data manifest, dropping
//! those files and recording them as `DELETED`; it is refused if any of them
//! is no longer live.

use std::collections::{BTreeMap, HashMap, HashSet};

use iceberg::spec::{
    DataFile, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter, ManifestWriterBuilder, Operation,
    Snapshot, SnapshotRef, SnapshotReference, SnapshotRetention, SnapshotSummaryCollector, Summary,
    TableMetadataBuilder,
};
use uuid::Uuid;

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};

/// Small data manifests carried before they are merged into one.
pub const MERGE_MANIFESTS_AT: usize = 50;
/// A manifest at least this large is left as it is by an append's merge.
const LARGE_MANIFEST_BYTES: i64 = 8 << 20;

/// The parts of a new snapshot, written and ready to be published.
#[derive(Debug)]
pub(crate) struct NextSnapshot {
    pub id: i64,
    pub sequence_number: i64,
    pub manifest_list: String,
    pub operation: Operation,
    /// Summary properties, totals included.
    pub summary: HashMap<String, String>,
    /// Every file written, to make durable before the metadata names them.
    pub written: Vec<String>,
    /// The manifests and manifest list this build wrote: if its swap is
    /// refused, nothing references them.
    pub own: Vec<String>,
}

/// Builds the snapshot of kind `operation` that adds `added` to `base` and
/// removes the live files whose paths are in `removed`.
pub(crate) async fn build(
    lake: &Lake,
    base: &LoadedTable,
    added: &[DataFile],
    removed: &HashSet<String>,
    operation: Operation,
) -> Result<NextSnapshot> {
    let meta = &base.metadata;
    let id = unique_snapshot_id(base);
    let seq = meta.next_sequence_number();
    let commit_id = Uuid::new_v4();
    let schema = meta.current_schema().clone();
    let spec = meta.default_partition_spec().clone();
    let parent = meta.current_snapshot();
    let carried: Vec<ManifestFile> = match parent {
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
    let mut written: Vec<String> = added.iter().map(|f| f.file_path().to_owned()).collect();
    let rewrite = !removed.is_empty();
    let small = |m: &ManifestFile| m.content == ManifestContentType::Data && m.manifest_length < LARGE_MANIFEST_BYTES;
    let merge_all = rewrite || carried.iter().filter(|m| small(m)).count() >= MERGE_MANIFESTS_AT;
    let (to_merge, mut manifests): (Vec<ManifestFile>, Vec<ManifestFile>) =
        carried.into_iter().partition(|m| merge_all && m.content == ManifestContentType::Data && (rewrite || small(m)));

    // Merge per partition spec: a manifest holds files of one spec.
    let mut by_spec: BTreeMap<i32, Vec<ManifestFile>> = BTreeMap::new();
    for m in to_merge {
        by_spec.entry(m.partition_spec_id).or_default().push(m);
    }
    let mut found = 0;
    for (n, (spec_id, group)) in by_spec.into_iter().enumerate() {
        let spec_of = meta.partition_spec_by_id(spec_id).ok_or_else(|| TableError::Corrupt {
            table: base.name.clone(),
            reason: format!("a manifest names partition spec {spec_id}, which the metadata lacks"),
        })?;
        let path = format!("{}/metadata/{commit_id}-m{}.avro", meta.location(), n + 1);
        let output = lake.file_io().new_output(&path).map_err(TableError::iceberg("creating manifest"))?;
        let mut writer =
            ManifestWriterBuilder::new(output, Some(id), schema.clone(), (**spec_of).clone()).build_v2_data();
        let mut entries = 0;
        for m in group {
            let manifest = m.load_manifest(lake.file_io()).await.map_err(TableError::iceberg("reading manifest"))?;
            for e in manifest.entries().iter().filter(|e| e.is_alive()) {
                let (Some(snapshot_id), Some(data_seq)) = (e.snapshot_id(), e.sequence_number()) else {
                    return Err(TableError::Corrupt {
                        table: base.name.clone(),
                        reason: format!("manifest entry {} has no snapshot id or sequence number", e.file_path()),
                    });
                };
                let file = e.data_file().clone();
                if removed.contains(file.file_path()) {
                    found += 1;
                    collector.remove_file(&file, schema.clone(), spec_of.clone());
                    writer.add_delete_file(file, data_seq, e.file_sequence_number).map_err(manifest_err)?;
                } else {
                    writer
                        .add_existing_file(file, snapshot_id, data_seq, e.file_sequence_number)
                        .map_err(manifest_err)?;
                }
                entries += 1;
            }
        }
        if entries > 0 {
            written.push(path);
            manifests.push(writer.write_manifest_file().await.map_err(TableError::iceberg("writing manifest"))?);
        }
    }
    if found != removed.len() {
        return Err(TableError::ChangeConflict {
            table: base.name.clone(),
            reason: format!("{} of the {} files to replace are no longer live", removed.len() - found, removed.len()),
        });
    }
    if !added.is_empty() {
        let path = format!("{}/metadata/{commit_id}-m0.avro", meta.location());
        let output = lake.file_io().new_output(&path).map_err(TableError::iceberg("creating manifest"))?;
        let mut writer = ManifestWriterBuilder::new(output, Some(id), schema.clone(), (*spec).clone()).build_v2_data();
        for f in added {
            collector.add_file(f, schema.clone(), spec.clone());
            writer.add_file(f.clone(), seq).map_err(manifest_err)?;
        }
        written.push(path);
        manifests.push(writer.write_manifest_file().await.map_err(TableError::iceberg("writing manifest"))?);
    }

    let list_path = format!("{}/metadata/snap-{id}-1-{commit_id}.avro", meta.location());
    let list_out = lake
        .file_io()
        .new_output(&list_path)
        .map_err(TableError::iceberg("creating manifest list"))?
        .writer()
        .await
        .map_err(TableError::iceberg("creating manifest list"))?;
    let mut list = ManifestListWriter::v2(list_out, id, parent.map(|p| p.snapshot_id()), seq);
    list.add_manifests(manifests.into_iter()).map_err(TableError::iceberg("writing manifest list"))?;
    list.close().await.map_err(TableError::iceberg("writing manifest list"))?;
    written.push(list_path.clone());

    let mut summary = collector.build();
    add_totals(&mut summary, parent.map(|p| &p.summary().additional_properties));
    let own = written[added.len()..].to_vec();
    Ok(NextSnapshot { id, sequence_number: seq, manifest_list: list_path, operation, summary, written, own })
}

impl NextSnapshot {
    /// The metadata of `base` with this snapshot added, made current, and
    /// `extra` in its summary (a pipeline's stamp, carried positions).
    pub fn into_metadata(
        self,
        base: &LoadedTable,
        extra: impl IntoIterator<Item = (String, String)>,
    ) -> Result<TableMetadataBuilder> {
        let mut props = self.summary;
        props.extend(extra);
        let meta = &base.metadata;
        let snapshot = Snapshot::builder()
            .with_snapshot_id(self.id)
            .with_parent_snapshot_id(meta.current_snapshot_id())
            .with_sequence_number(self.sequence_number)
            .with_timestamp_ms(chrono::Utc::now().timestamp_millis().max(meta.last_updated_ms() + 1))
            .with_manifest_list(self.manifest_list)
            .with_schema_id(meta.current_schema_id())
            .with_summary(Summary { operation: self.operation, additional_properties: props })
            .build();
        TableMetadataBuilder::new_from_metadata((**meta).clone(), Some(base.location.clone()))
            .add_snapshot(snapshot)
            .and_then(|b| {
                b.set_ref(MAIN_BRANCH, SnapshotReference::new(self.id, SnapshotRetention::branch(None, None, None)))
            })
            .map_err(TableError::iceberg("building snapshot metadata"))
    }
}

/// The live data files of `snapshot` of `table`, with their spec ids.
pub(crate) async fn live_files(
    lake: &Lake,
    table: &LoadedTable,
    snapshot: &SnapshotRef,
) -> Result<Vec<(i32, DataFile)>> {
    let iceberg = lake.iceberg_table(table)?;
    let list =
        iceberg.manifest_list_reader(snapshot).load().await.map_err(TableError::iceberg("reading manifest list"))?;
    let mut files = Vec::new();
    for m in list.entries().iter().filter(|m| m.content == ManifestContentType::Data) {
        let manifest = m.load_manifest(lake.file_io()).await.map_err(TableError::iceberg("reading manifest"))?;
        files.extend(
            manifest.entries().iter().filter(|e| e.is_alive()).map(|e| (m.partition_spec_id, e.data_file().clone())),
        );
    }
    Ok(files)
}

fn manifest_err(e: iceberg::Error) -> TableError {
    TableError::iceberg("adding a file to a manifest")(e)
}

/// A snapshot id no snapshot of `base` has.
pub(crate) fn unique_snapshot_id(base: &LoadedTable) -> i64 {
    loop {
        let (a, b) = Uuid::new_v4().as_u64_pair();
        // 53 bits: exact in JSON numbers and in Prometheus gauges.
        let id = ((a ^ b) & ((1u64 << 53) - 1)) as i64;
        if id != 0 && base.metadata.snapshot_by_id(id).is_none() {
            return id;
        }
    }
}

/// Carries the `total-*` counters forward from the parent summary: plus what
/// this snapshot added, minus what it removed.
fn add_totals(props: &mut HashMap<String, String>, parent: Option<&HashMap<String, String>>) {
    let get = |m: &HashMap<String, String>, k: &str| m.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    for (total, added, removed) in [
        ("total-data-files", "added-data-files", "deleted-data-files"),
        ("total-records", "added-records", "deleted-records"),
        ("total-files-size", "added-files-size", "removed-files-size"),
        ("total-delete-files", "added-delete-files", "removed-delete-files"),
        ("total-position-deletes", "added-position-deletes", "removed-position-deletes"),
        ("total-equality-deletes", "added-equality-deletes", "removed-equality-deletes"),
    ] {
        let prev = parent.map_or(0, |p| get(p, total));
        let value = (prev + get(props, added)).saturating_sub(get(props, removed));
        props.insert(total.to_owned(), value.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_add_what_was_added_and_subtract_what_was_removed() {
        let parent = HashMap::from([("total-records".to_owned(), "10".to_owned())]);
        let mut props = HashMap::from([("added-records".to_owned(), "5".to_owned())]);
        add_totals(&mut props, Some(&parent));
        assert_eq!(props["total-records"], "15");
        assert_eq!(props["total-data-files"], "0");
        let mut props = HashMap::from([
            ("added-records".to_owned(), "4".to_owned()),
            ("deleted-records".to_owned(), "4".to_owned()),
            ("added-data-files".to_owned(), "1".to_owned()),
            ("deleted-data-files".to_owned(), "3".to_owned()),
        ]);
        let parent = HashMap::from([
            ("total-records".to_owned(), "10".to_owned()),
            ("total-data-files".to_owned(), "5".to_owned()),
        ]);
        add_totals(&mut props, Some(&parent));
        assert_eq!((props["total-records"].as_str(), props["total-data-files"].as_str()), ("10", "3"));
    }
}
