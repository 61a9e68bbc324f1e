//! Drops records whose dedup key was already ingested within the window.
//!
//! The index is derived from the table, never the other way round: at start
//! it is rebuilt from the key column of rows ingested within the window, so a
//! client that retries after a crash cannot create duplicates, and the index
//! can never disagree with the data. Keys are only kept while their commit is
//! pending or done; a failed commit takes its keys back out.
//!
//! There is one index per table ([`TableDedup`]), shared by every source
//! that writes to it in this process, and kept in step with the other
//! workers: `refresh` adds the keys of the rows that snapshots committed
//! since its last look added, reading only those files' key column, and
//! forgets the keys of rows they removed (a rollback), which may come again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use futures::TryStreamExt;
use tributary_table::changes::changed_since;
use tributary_table::iceberg::expr::Reference;
use tributary_table::iceberg::spec::Datum;
use tributary_table::{Lake, LoadedTable, TableError};

/// Keys seen within the window, with their expiry (microseconds).
#[derive(Debug, Clone)]
pub struct DedupIndex {
    window_us: i64,
    expiry: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
}

impl DedupIndex {
    /// An empty index remembering keys for `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window_us: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            expiry: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Number of remembered keys.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }

    /// Records `key` as seen at `at_us`; returns false if it is a duplicate.
    pub fn insert(&mut self, key: &str, at_us: i64) -> bool {
        self.evict(at_us);
        if self.expiry.contains_key(key) {
            return false;
        }
        let until = at_us.saturating_add(self.window_us);
        self.expiry.insert(key.to_owned(), until);
        self.order.push_back((until, key.to_owned()));
        true
    }

    /// Inserts the keys of `batch`, a key column and an `_ingested_at`
    /// column as read from the table; `known` gets each key already held.
    fn insert_rows(&mut self, batch: &RecordBatch, mut known: impl FnMut(String)) {
        let at = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        for i in 0..batch.num_rows() {
            if let Some(k) = key_at(batch.column(0), i)
                && !at.is_null(i)
                && !self.insert(&k, at.value(i))
            {
                known(k);
            }
        }
    }

    /// Forgets keys: those whose commit failed, or whose rows left the table.
    pub fn remove<'a>(&mut self, keys: impl IntoIterator<Item = &'a String>) {
        for k in keys {
            self.expiry.remove(k);
        }
    }

    fn evict(&mut self, now_us: i64) {
        while let Some((until, _)) = self.order.front() {
            if *until > now_us {
                break;
            }
            if let Some((until, key)) = self.order.pop_front()
                && self.expiry.get(&key) == Some(&until)
            {
                self.expiry.remove(&key);
            }
        }
    }

    /// Rebuilds the index from rows of `table` ingested within the window.
    pub async fn rebuild(
        lake: &Lake,
        table: &LoadedTable,
        key: &str,
        window: Duration,
        now_us: i64,
    ) -> Result<Self, TableError> {
        let mut index = Self::new(window);
        index.read_window(lake, table, key, now_us, |_| {}).await?;
        tracing::info!(table = %table.name, keys = index.len(), "rebuilt dedup index from the table");
        Ok(index)
    }

    /// Inserts the keys of the rows of `table` ingested within the window;
    /// `known` gets each key already held.
    async fn read_window(
        &mut self,
        lake: &Lake,
        table: &LoadedTable,
        key: &str,
        now_us: i64,
        mut known: impl FnMut(String),
    ) -> Result<(), TableError> {
        if table.current_snapshot_id().is_none() {
            return Ok(());
        }
        let since = now_us.saturating_sub(self.window_us);
        let scan = lake
            .iceberg_table(table)?
            .scan()
            .select([key, "_ingested_at"])
            .with_filter(Reference::new("_ingested_at").greater_than_or_equal_to(Datum::timestamptz_micros(since)))
            .build()
            .map_err(iceberg_err)?;
        let mut stream = scan.to_arrow().await.map_err(iceberg_err)?;
        while let Some(batch) = stream.try_next().await.map_err(iceberg_err)? {
            self.insert_rows(&batch, &mut known);
        }
        Ok(())
    }
}

/// The dedup index of one table, shared by its sources, and the newest
/// sequence number of the table whose keys it holds.
#[derive(Debug, Clone)]
pub struct TableDedup {
    key: String,
    synced: Arc<Mutex<Synced>>,
}

#[derive(Debug)]
struct Synced {
    index: DedupIndex,
    seen_sequence: i64,
}

impl TableDedup {
    /// Rebuilds the index of `table` from its rows within the window.
    pub async fn rebuild(
        lake: &Lake,
        table: &LoadedTable,
        key: &str,
        window: Duration,
        now_us: i64,
    ) -> Result<Self, TableError> {
        let index = DedupIndex::rebuild(lake, table, key, window, now_us).await?;
        let seen_sequence = table.metadata.last_sequence_number();
        Ok(Self { key: key.to_owned(), synced: Arc::new(Mutex::new(Synced { index, seen_sequence })) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Synced> {
        // The index holds plain data; a panic elsewhere cannot leave it torn.
        self.synced.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the keys that snapshots of `table` newer than the last refresh
    /// added: what other workers and sources committed meanwhile. Returns
    /// those of them the index already held — keys that may also be claimed
    /// by rows not committed yet, which are then duplicates.
    pub async fn refresh(&self, lake: &Lake, table: &LoadedTable) -> Result<HashSet<String>, TableError> {
        let mut known = HashSet::new();
        let since = self.lock().seen_sequence;
        let newest = table.metadata.last_sequence_number();
        if newest <= since {
            return Ok(known);
        }
        match changed_since(lake, table, since, &[&self.key, "_ingested_at"]).await? {
            Some(changes) => {
                let mut synced = self.lock();
                let mut added = HashSet::new();
                for batch in &changes.added {
                    synced.index.insert_rows(batch, |k| {
                        known.insert(k);
                    });
                    added.extend(keys_of(batch));
                }
                // A rollback removes rows and may add back older ones with
                // the same keys (files compaction had replaced): only keys
                // no longer in the table are forgotten.
                let gone: HashSet<String> =
                    changes.removed.iter().flat_map(keys_of).filter(|k| !added.contains(k)).collect();
                known.retain(|k| !gone.contains(k));
                synced.index.remove(gone.iter());
            }
            // Expiry removed snapshots this index never read: read the
            // window from the table itself. A key this process claimed and
            // has not committed cannot be in it, so every key found again
            // that is claimed here was committed by another writer. The
            // table's pipeline task is the index's one user, so nothing
            // claims while the index is taken out for the read.
            None => {
                let mut index = std::mem::replace(&mut self.lock().index, DedupIndex::new(Duration::ZERO));
                let now_us = chrono::Utc::now().timestamp_micros();
                let read = index.read_window(lake, table, &self.key, now_us, |k| {
                    known.insert(k);
                });
                let result = read.await;
                self.lock().index = index;
                result?;
            }
        }
        let mut synced = self.lock();
        synced.seen_sequence = synced.seen_sequence.max(newest);
        Ok(known)
    }

    /// Notes that this process committed the table from sequence number
    /// `before` to `after`. If that was the one snapshot added and the index
    /// was current before it, its keys (ours, already in the index) need not
    /// be read back by the next refresh.
    pub fn committed(&self, before: i64, after: i64) {
        let mut synced = self.lock();
        if synced.seen_sequence == before && after == before + 1 {
            synced.seen_sequence = after;
        }
    }

    /// Forgets keys whose commit failed.
    pub fn remove(&self, keys: &[String]) {
        self.lock().index.remove(keys);
    }

    /// Claims the keys in column `col` of `batch` as seen at `at_us`: which
    /// rows to keep (new keys, and rows without a key), and the keys claimed.
    pub fn claim(&self, batch: &RecordBatch, col: usize, at_us: i64) -> (BooleanArray, Vec<String>) {
        let keys = batch.column(col);
        let mut claimed = Vec::new();
        let mut synced = self.lock();
        let keep = (0..batch.num_rows())
            .map(|i| {
                Some(match key_at(keys, i) {
                    Some(k) if synced.index.insert(&k, at_us) => {
                        claimed.push(k);
                        true
                    }
                    Some(_) => false,
                    None => true,
                })
            })
            .collect();
        (keep, claimed)
    }
}

fn iceberg_err(source: tributary_table::iceberg::Error) -> TableError {
    TableError::iceberg("rebuilding dedup index")(source)
}

/// The non-null keys of the first column of `batch`.
fn keys_of(batch: &RecordBatch) -> impl Iterator<Item = String> + '_ {
    (0..batch.num_rows()).filter_map(|i| key_at(batch.column(0), i))
}

/// The dedup key of row `i` of a string, int or long column.
pub fn key_at(col: &ArrayRef, i: usize) -> Option<String> {
    if col.is_null(i) {
        return None;
    }
    if let Some(s) = col.as_string_opt::<i32>() {
        return Some(s.value(i).to_owned());
    }
    if let Some(v) = col.as_primitive_opt::<Int64Type>() {
        return Some(v.value(i).to_string());
    }
    col.as_primitive_opt::<Int32Type>().map(|v| v.value(i).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_within_the_window_are_refused() {
        let mut d = DedupIndex::new(Duration::from_secs(10));
        assert!(d.insert("a", 0));
        assert!(!d.insert("a", 5_000_000));
        assert!(d.insert("b", 5_000_000));
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn keys_expire_after_the_window() {
        let mut d = DedupIndex::new(Duration::from_secs(10));
        assert!(d.insert("a", 0));
        assert!(d.insert("a", 10_000_001));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn only_our_own_single_commit_skips_the_read_back() {
        let synced = Synced { index: DedupIndex::new(Duration::from_secs(10)), seen_sequence: 5 };
        let d = TableDedup { key: "k".to_owned(), synced: Arc::new(Mutex::new(synced)) };
        d.committed(5, 6);
        assert_eq!(d.lock().seen_sequence, 6, "the one snapshot we added holds only our keys");
        d.committed(6, 8);
        assert_eq!(d.lock().seen_sequence, 6, "another writer committed in between: read it back");
        d.committed(7, 8);
        assert_eq!(d.lock().seen_sequence, 6, "the index was behind before our commit");
    }

    #[test]
    fn removed_keys_can_be_ingested_again() {
        let mut d = DedupIndex::new(Duration::from_secs(10));
        assert!(d.insert("a", 0));
        d.remove(&["a".to_owned()]);
        assert!(d.insert("a", 1));
        // The stale queue entry for the first insert must not evict the new one.
        assert!(!d.insert("a", 10_000_000));
    }
}
