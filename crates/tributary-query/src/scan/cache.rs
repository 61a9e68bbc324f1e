//! Table metadata, manifest lists and manifests kept between queries.
//!
//! Iceberg never rewrites a metadata file, a manifest list or a manifest: a
//! new commit writes new ones under new names. So a file read once is good for as long
//! as it is kept, and caching by path needs no invalidation. A query still
//! asks the catalog for each table's current metadata, so it always sees
//! the latest commit; what it no longer does is re-read and re-parse the
//! hundreds of manifests that commit shares with the one before.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use iceberg::io::FileIO;
use iceberg::spec::{DataFile, FormatVersion, ManifestFile, ManifestList, TableMetadataRef};
use tributary_core::TableName;
use tributary_table::{Lake, LoadedTable, Result as TableResult};

/// How many file entries (manifest-list entries plus data-file entries)
/// the cache holds, oldest first out: at a few hundred bytes to a few KiB
/// each (wide tables carry bounds per column), tens to a couple of hundred
/// MiB at the most.
const BUDGET: usize = 100_000;

/// Table metadata, manifest lists and the live files of manifests, by
/// path; shared by every query of an engine.
#[derive(Debug, Default)]
pub struct ScanCache {
    metadata: Mutex<Fifo<TableMetadataRef>>,
    lists: Mutex<Fifo<Arc<ManifestList>>>,
    manifests: Mutex<Fifo<Arc<[DataFile]>>>,
}

impl ScanCache {
    /// `name` as the catalog has it now: one catalog lookup, and the
    /// metadata file read only if this is a commit not seen before (a
    /// table with a long snapshot log has a metadata file of megabytes).
    pub(crate) async fn table(&self, lake: &Lake, name: &TableName) -> TableResult<Option<LoadedTable>> {
        let Some(location) = lake.store().load(name).await? else { return Ok(None) };
        if let Some(metadata) = lock(&self.metadata).get(&location) {
            return Ok(Some(LoadedTable { name: name.clone(), location, metadata }));
        }
        let loaded = lake.read_metadata(name, location).await?;
        let weight = loaded.metadata.snapshots().len();
        lock(&self.metadata).insert(&loaded.location, loaded.metadata.clone(), weight);
        Ok(Some(loaded))
    }

    /// The manifest list at `path`.
    pub(crate) async fn list(&self, io: &FileIO, path: &str, version: FormatVersion) -> Result<Arc<ManifestList>> {
        if let Some(list) = lock(&self.lists).get(path) {
            return Ok(list);
        }
        let bytes = io.new_input(path).map_err(ext)?.read().await.map_err(ext)?;
        let list = Arc::new(ManifestList::parse_with_version(&bytes, version).map_err(ext)?);
        lock(&self.lists).insert(path, list.clone(), list.entries().len());
        Ok(list)
    }

    /// The live entries (added or existing) of the manifest `m`.
    pub(crate) async fn live(&self, io: &FileIO, m: &ManifestFile) -> Result<Arc<[DataFile]>> {
        if let Some(files) = lock(&self.manifests).get(&m.manifest_path) {
            return Ok(files);
        }
        let manifest = m.load_manifest(io).await.map_err(ext)?;
        let files: Arc<[DataFile]> =
            manifest.entries().iter().filter(|e| e.is_alive()).map(|e| e.data_file().clone()).collect();
        lock(&self.manifests).insert(&m.manifest_path, files.clone(), files.len());
        Ok(files)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ext(e: iceberg::Error) -> DataFusionError {
    DataFusionError::External(Box::new(e))
}

/// A map that forgets its oldest entries past [`BUDGET`] weight.
#[derive(Debug)]
struct Fifo<V> {
    map: HashMap<String, (V, usize)>,
    order: VecDeque<String>,
    weight: usize,
}

impl<V> Default for Fifo<V> {
    fn default() -> Self {
        Self { map: HashMap::new(), order: VecDeque::new(), weight: 0 }
    }
}

impl<V: Clone> Fifo<V> {
    fn get(&self, key: &str) -> Option<V> {
        self.map.get(key).map(|(v, _)| v.clone())
    }

    fn insert(&mut self, key: &str, value: V, weight: usize) {
        // Count an empty manifest as one, so that the map stays bounded.
        let weight = weight.max(1);
        // Two queries may read the same file at once; it is the same file.
        if self.map.contains_key(key) {
            return;
        }
        self.map.insert(key.to_owned(), (value, weight));
        self.order.push_back(key.to_owned());
        self.weight += weight;
        while self.weight > BUDGET && self.order.len() > 1 {
            let Some(old) = self.order.pop_front() else { break };
            if let Some((_, w)) = self.map.remove(&old) {
                self.weight -= w;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_past_the_budget() {
        let mut f = Fifo::default();
        f.insert("a", 1, BUDGET / 2);
        f.insert("b", 2, BUDGET / 2);
        assert_eq!((f.get("a"), f.get("b")), (Some(1), Some(2)));
        f.insert("c", 3, 1);
        assert_eq!((f.get("a"), f.get("b"), f.get("c")), (None, Some(2), Some(3)));
        // Inserting a key again keeps one entry, not two weights.
        f.insert("c", 3, 1);
        assert_eq!((f.weight, f.order.len()), (BUDGET / 2 + 1, 2));
    }
}
