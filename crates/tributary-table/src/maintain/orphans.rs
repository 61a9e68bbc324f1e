//! Orphan-file cleanup: deletes files under a table's location that no
//! metadata references — data and manifest files written by a commit that
//! crashed before its swap, or that lost its race and could not clean up.
//!
//! Referenced is everything the current metadata can reach: itself and the
//! metadata files in its log, and for every snapshot its manifest list,
//! those lists' manifests and those manifests' files. A file younger than
//! the age guard is never deleted, whatever it is: it may belong to a
//! commit in flight on another worker.
//!
//! Listing is the one storage-specific step (`Lake::lister`): a local
//! directory walk, or a bucket prefix listing.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use tributary_core::TableName;

use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};

/// What one cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Orphans {
    /// Files deleted (or, dry, that would be).
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Deletes the files under `name`'s location that nothing references and
/// that are older than `min_age`; with `dry_run`, only counts them.
pub async fn remove_orphans(lake: &Lake, name: &TableName, min_age: Duration, dry_run: bool) -> Result<Orphans> {
    let table = lake.load(name).await?;
    let cutoff = SystemTime::now().checked_sub(min_age).unwrap_or(SystemTime::UNIX_EPOCH);
    let listed = lake.lister().list(table.metadata.location()).await?;
    let old: Vec<(String, u64)> =
        listed.into_iter().filter(|f| f.modified < cutoff).map(|f| (f.path, f.size)).collect();
    if old.is_empty() {
        return Ok(Orphans::default());
    }
    let referenced = referenced(lake, &table).await?;
    let mut done = Orphans::default();
    for (path, size) in old.into_iter().filter(|(p, _)| !referenced.contains(p)) {
        if dry_run || lake.file_io().delete(&path).await.is_ok() {
            done.files += 1;
            done.bytes += size;
        }
    }
    if done.files > 0 && !dry_run {
        tracing::info!(table = %name, files = done.files, bytes = done.bytes, "removed orphan files");
    }
    Ok(done)
}

/// Every file the metadata of `table` references, as full locations.
async fn referenced(lake: &Lake, table: &LoadedTable) -> Result<HashSet<String>> {
    let meta = &table.metadata;
    let mut refs: HashSet<String> = meta.metadata_log().iter().map(|l| l.metadata_file.clone()).collect();
    refs.insert(table.location.clone());
    let iceberg = lake.iceberg_table(table)?;
    let mut manifests = HashSet::new();
    for snapshot in meta.snapshots() {
        refs.insert(snapshot.manifest_list().to_owned());
        let list = iceberg
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(TableError::iceberg("reading manifest list"))?;
        for m in list.entries() {
            if manifests.insert(m.manifest_path.clone()) {
                let manifest =
                    m.load_manifest(lake.file_io()).await.map_err(TableError::iceberg("reading manifest"))?;
                refs.extend(manifest.entries().iter().map(|e| e.file_path().to_owned()));
            }
        }
    }
    refs.extend(manifests);
    Ok(refs)
}
