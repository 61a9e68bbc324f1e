//! Drops records whose dedup key was already ingested within the window.
//!
//! The index is derived from the table, never the other way round: at start
//! it is rebuilt from the key column of rows ingested within the window (or
//! resumed from the runs a previous process stored, plus what snapshots
//! since then added), so a client that retries after a crash cannot create
//! duplicates, and the index can never disagree with the data. Keys are
//! only kept while their commit is pending or done; a failed commit takes
//! its keys back out.
//!
//! There is one index per table ([`TableDedup`]), shared by every source
//! that writes to it in this process, and kept in step with the other
//! workers: `refresh` adds the keys of the rows that snapshots committed
//! since its last look added, reading only those files' key column. A
//! snapshot that removed rows (a rollback) makes it rebuild from the
//! table, since keys it forgets may come again.
//!
//! Keys are 128-bit fingerprints (SipHash-1-3, fixed keys) and memory is
//! bounded: past the bound, committed keys move to sorted runs on local
//! disk ([`index`]). Two distinct keys share a fingerprint with
//! probability about n²/2¹²⁹ for n keys in the window: 3·10⁻¹⁹ at 10¹⁰.

mod index;
mod run;
mod store;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use futures::TryStreamExt;
use siphasher::sip128::SipHasher13;
use tributary_core::metrics as m;
use tributary_table::changes::changed_since;
use tributary_table::iceberg::expr::Reference;
use tributary_table::iceberg::spec::Datum;
use tributary_table::{Lake, LoadedTable, TableError};

use index::DedupIndex;
pub use index::DedupStats;
pub use index::FpSet;
use store::{FINGERPRINT, Identity, Store};

use crate::IngestError;

/// A dedup key's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fp(u64, u64);

impl Hash for Fp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The fingerprint of a key's bytes. Stored runs depend on it: changing it
/// means changing [`store::FINGERPRINT`] too.
pub fn fingerprint(bytes: &[u8]) -> Fp {
    let (a, b) = SipHasher13::new_with_keys(0x7472_6962_7574_6172, 0x7964_6564_7570_0001).hash(bytes).as_u64();
    Fp(a, b)
}

/// The fingerprints of the dedup keys of a string, int or long column, row
/// by row (`None` for a null; an int and the long it widens to agree). The
/// column's type is resolved once, not per row.
pub fn key_fps(col: &ArrayRef) -> impl Iterator<Item = Option<Fp>> + '_ {
    let (strings, longs, ints) =
        (col.as_string_opt::<i32>(), col.as_primitive_opt::<Int64Type>(), col.as_primitive_opt::<Int32Type>());
    (0..col.len()).map(move |i| {
        if col.is_null(i) {
            return None;
        }
        if let Some(s) = strings {
            return Some(fingerprint(s.value(i).as_bytes()));
        }
        let long = longs.map(|v| v.value(i)).or_else(|| ints.map(|v| i64::from(v.value(i))))?;
        Some(fingerprint(&long.to_le_bytes()))
    })
}

/// How a table's dedup index is kept.
#[derive(Debug, Clone)]
pub struct DedupSettings {
    /// The key column.
    pub key: String,
    /// How long a key is remembered.
    pub window: Duration,
    /// Memory bound in bytes.
    pub memory: usize,
    /// Where runs go: `DATA_DIR/dedup`; memory only without one.
    pub dir: Option<PathBuf>,
}

/// The dedup index of one table, shared by its sources.
#[derive(Debug, Clone)]
pub struct TableDedup {
    key: String,
    table: String,
    index: Arc<Mutex<DedupIndex>>,
    gauges: Gauges,
}

/// The index's size metrics, registered once.
#[derive(Debug, Clone)]
struct Gauges {
    keys: metrics::Gauge,
    memory: metrics::Gauge,
    disk: metrics::Gauge,
}

impl Gauges {
    fn new(table: &str) -> Self {
        Self {
            keys: metrics::gauge!(m::DEDUP_KEYS, "table" => table.to_owned()),
            memory: metrics::gauge!(m::DEDUP_MEMORY, "table" => table.to_owned()),
            disk: metrics::gauge!(m::DEDUP_DISK, "table" => table.to_owned()),
        }
    }
}

impl TableDedup {
    /// Opens the index of `table`: the runs a previous process stored and
    /// what snapshots added since, or else the table's rows within the
    /// window.
    pub async fn open(
        lake: &Lake,
        table: &LoadedTable,
        settings: &DedupSettings,
        now_us: i64,
    ) -> Result<Self, IngestError> {
        let started = std::time::Instant::now();
        let (store, resumed) = match &settings.dir {
            Some(root) => stored(root, table, settings),
            None => (None, None),
        };
        let mut index = DedupIndex::new(settings.window, settings.memory, store);
        let from_runs = resumed.is_some();
        if let Some((runs, covered)) = resumed {
            index = index.with_runs(runs, covered);
        }
        let name = table.name.to_string();
        let gauges = Gauges::new(&name);
        let dedup = Self { key: settings.key.clone(), table: name, index: Arc::new(Mutex::new(index)), gauges };
        // What is read here stays in memory until the next spill or stop
        // stores it: a start writes nothing to disk.
        if from_runs {
            dedup.refresh(lake, table).await?;
        } else {
            dedup.read_window(lake, table, now_us, &mut FpSet::default()).await?;
            dedup.lock().covered = table.metadata.last_sequence_number();
            dedup.publish();
        }
        let stats = dedup.stats();
        tracing::info!(table = %table.name, keys = stats.keys, runs = stats.runs, resumed = from_runs, ms = started.elapsed().as_millis() as u64, "opened dedup index");
        Ok(dedup)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DedupIndex> {
        // The index holds plain data; a panic elsewhere cannot leave it torn.
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the keys that snapshots of `table` newer than the last refresh
    /// added: what other workers and sources committed meanwhile. Returns
    /// those of them that rows not committed yet claimed: duplicates.
    pub async fn refresh(&self, lake: &Lake, table: &LoadedTable) -> Result<FpSet, IngestError> {
        let mut known = FpSet::default();
        let since = self.lock().covered;
        let newest = table.metadata.last_sequence_number();
        if newest <= since {
            return Ok(known);
        }
        match changed_since(lake, table, since, &[&self.key, "_ingested_at"]).await? {
            Some(changes) => {
                // A rollback removes rows and may add back older ones with
                // the same keys (files compaction had replaced): keys no
                // longer in the table must be forgotten, and only a
                // rebuild forgets committed keys.
                let forgets = !changes.removed.is_empty() && {
                    let added: FpSet = changes.added.iter().flat_map(fps_of).collect();
                    changes.removed.iter().flat_map(fps_of).any(|fp| !added.contains(&fp))
                };
                if forgets {
                    self.lock().reset().map_err(storage)?;
                    self.read_window(lake, table, now_us(), &mut known).await?;
                } else {
                    let mut index = self.lock();
                    for batch in &changes.added {
                        insert_rows(&mut index, batch, &mut known)?;
                    }
                }
            }
            // Expiry removed snapshots this index never read: read the
            // window from the table itself.
            None => self.read_window(lake, table, now_us(), &mut known).await?,
        }
        let mut index = self.lock();
        index.covered = index.covered.max(newest);
        drop(index);
        self.publish();
        Ok(known)
    }

    /// Inserts the keys of the rows of `table` ingested within the window.
    /// A key this process claimed and has not committed cannot be in it
    /// unless another writer committed it, so each one found goes into
    /// `known`. The table's pipeline task is the index's one user, so
    /// nothing claims while the index is taken out for the read.
    async fn read_window(
        &self,
        lake: &Lake,
        table: &LoadedTable,
        now_us: i64,
        known: &mut FpSet,
    ) -> Result<(), IngestError> {
        if table.current_snapshot_id().is_none() {
            return Ok(());
        }
        let mut index = std::mem::replace(&mut *self.lock(), DedupIndex::new(Duration::ZERO, 0, None));
        let result = async {
            let since = now_us.saturating_sub(index.window_us());
            let scan = lake
                .iceberg_table(table)?
                .scan()
                .select([self.key.as_str(), "_ingested_at"])
                .with_filter(Reference::new("_ingested_at").greater_than_or_equal_to(Datum::timestamptz_micros(since)))
                .build()
                .map_err(iceberg_err)?;
            let mut stream = scan.to_arrow().await.map_err(iceberg_err)?;
            while let Some(batch) = stream.try_next().await.map_err(iceberg_err)? {
                insert_rows(&mut index, &batch, known)?;
            }
            Ok(())
        }
        .await;
        *self.lock() = index;
        result
    }

    /// Notes that this process committed the rows that claimed `keys`,
    /// taking the table from sequence number `before` to `after`. If that
    /// was the one snapshot added and the index was current before it, its
    /// keys (ours, already in the index) need not be read back by the next
    /// refresh.
    pub fn committed<'a>(&self, before: i64, after: i64, keys: impl IntoIterator<Item = &'a Fp>) {
        let mut index = self.lock();
        index.settle(keys);
        if index.covered == before && after == before + 1 {
            index.covered = after;
        }
        drop(index);
        self.publish();
    }

    /// Notes that the rows that claimed `keys` were committed earlier (a
    /// retried request answered from the table).
    pub fn settle(&self, keys: &[Fp]) {
        self.lock().settle(keys);
    }

    /// Forgets keys whose commit failed.
    pub fn remove(&self, keys: &[Fp]) {
        self.lock().remove(keys);
    }

    /// Claims the keys in column `col` of `batch` as seen at `at_us`: which
    /// rows to keep (new keys, and rows without a key), and the keys claimed.
    pub fn claim(&self, batch: &RecordBatch, col: usize, at_us: i64) -> Result<(BooleanArray, Vec<Fp>), IngestError> {
        let mut claimed = Vec::new();
        let mut index = self.lock();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for fp in key_fps(batch.column(col)) {
            keep.push(match fp.map(|fp| (fp, index.insert(fp, at_us, true))) {
                None => true,
                Some((fp, Ok(true))) => {
                    claimed.push(fp);
                    true
                }
                Some((_, Ok(false))) => false,
                Some((_, Err(e))) => {
                    // The batch is refused whole: its keys may come again.
                    index.remove(&claimed);
                    return Err(storage(e));
                }
            });
        }
        Ok((BooleanArray::from(keep), claimed))
    }

    /// Stores every committed key and what they cover, so that the next
    /// process resumes from here; a failure only costs that process a
    /// longer start.
    pub fn checkpoint(&self, now_us: i64) {
        if let Err(e) = self.lock().checkpoint(now_us) {
            tracing::warn!(table = %self.table, error = %e, "could not store the dedup index: the next start reads the table");
        }
        self.publish();
    }

    /// Its sizes.
    pub fn stats(&self) -> DedupStats {
        self.lock().stats()
    }

    fn publish(&self) {
        let s = self.stats();
        self.gauges.keys.set(s.keys as f64);
        self.gauges.memory.set(s.memory_bytes as f64);
        self.gauges.disk.set(s.disk_bytes as f64);
    }
}

/// The slot of `table` under `root`, and the runs it stored with the
/// sequence number they cover, if they are usable for this table.
fn stored(root: &Path, table: &LoadedTable, settings: &DedupSettings) -> (Option<Store>, Option<(Vec<run::Run>, i64)>) {
    let identity = Identity {
        table_uuid: table.metadata.uuid().to_string(),
        key: settings.key.clone(),
        window_us: i64::try_from(settings.window.as_micros()).unwrap_or(i64::MAX),
        fingerprint: FINGERPRINT.to_owned(),
    };
    let dir = root.join(table.name.to_string());
    let store = match Store::open(&dir, identity) {
        Ok(store) => store,
        Err(e) => {
            let dir = dir.display();
            tracing::warn!(table = %table.name, %dir, error = %e, "dedup index keeps every key in memory: no usable directory");
            return (None, None);
        }
    };
    let (loaded, problems) = store.load(table.metadata.last_sequence_number());
    for problem in problems {
        tracing::warn!(table = %table.name, %problem, "stored dedup index not used: reading the table");
    }
    (Some(store), loaded)
}

/// Inserts the keys of `batch`, a key column and an `_ingested_at` column
/// as read from the table, as committed; `known` gets each key that rows
/// not committed yet had claimed.
fn insert_rows(index: &mut DedupIndex, batch: &RecordBatch, known: &mut FpSet) -> Result<(), IngestError> {
    let at = batch.column(1).as_primitive::<TimestampMicrosecondType>();
    for (i, fp) in key_fps(batch.column(0)).enumerate() {
        let Some(fp) = fp.filter(|_| !at.is_null(i)) else { continue };
        if !index.insert(fp, at.value(i), false).map_err(storage)? && index.is_pending(&fp) {
            index.settle([&fp]);
            known.insert(fp);
        }
    }
    Ok(())
}

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn storage(e: std::io::Error) -> IngestError {
    IngestError::DedupStorage(e.to_string())
}

fn iceberg_err(source: tributary_table::iceberg::Error) -> IngestError {
    IngestError::Table(TableError::iceberg("rebuilding dedup index")(source))
}

/// The fingerprints of the non-null keys of the first column of `batch`.
fn fps_of(batch: &RecordBatch) -> impl Iterator<Item = Fp> + '_ {
    key_fps(batch.column(0)).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_own_single_commit_skips_the_read_back() {
        let mut index = DedupIndex::new(Duration::from_secs(10), 1 << 20, None);
        index.covered = 5;
        let (key, table, gauges) = ("k".to_owned(), "t".to_owned(), Gauges::new("t"));
        let d = TableDedup { key, table, index: Arc::new(Mutex::new(index)), gauges };
        d.committed(5, 6, &[]);
        assert_eq!(d.lock().covered, 6, "the one snapshot we added holds only our keys");
        d.committed(6, 8, &[]);
        assert_eq!(d.lock().covered, 6, "another writer committed in between: read it back");
        d.committed(7, 8, &[]);
        assert_eq!(d.lock().covered, 6, "the index was behind before our commit");
    }

    #[test]
    fn an_int_key_and_the_long_it_widens_to_agree() {
        let ints: ArrayRef = Arc::new(arrow_array::Int32Array::from(vec![Some(7), None]));
        let longs: ArrayRef = Arc::new(arrow_array::Int64Array::from(vec![7]));
        let strings: ArrayRef = Arc::new(arrow_array::StringArray::from(vec!["7"]));
        let (ints, longs, strings): (Vec<_>, Vec<_>, Vec<_>) =
            (key_fps(&ints).collect(), key_fps(&longs).collect(), key_fps(&strings).collect());
        assert_eq!(ints[0], longs[0]);
        assert_eq!(ints[1], None);
        assert_eq!(strings[0], Some(fingerprint(b"7")));
    }
}
