//! The keys of one table's window, within a memory bound.
//!
//! Keys are held as 128-bit fingerprints with their expiry, 24 bytes, in
//! an open-addressing map (`hot`). When the map would grow past what the
//! bound leaves, it is sealed: a thread sorts its committed keys into a
//! [`Run`] on local disk while lookups still consult the sealed map, and a
//! new map starts; keys still waiting for their commit move to the new
//! map, so a run only ever holds keys the table has. Ingest never waits for
//! the sort or the disk unless the new map fills an eighth of its size
//! first. Runs expire whole. Within the bound nothing is approximate: a key is a
//! duplicate exactly when a live entry for it exists in the map or in a
//! run; the filters in front of the runs only save reads.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use super::Fp;
use super::run::Run;
use super::store::Store;

/// Passes a fingerprint's first word through: it is already uniform.
#[derive(Debug, Default, Clone, Copy)]
pub struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A set of fingerprints.
pub type FpSet = HashSet<Fp, BuildHasherDefault<FpHasher>>;
type FpMap = HashMap<Fp, i64, BuildHasherDefault<FpHasher>>;

/// Bytes per bucket of the map: a 24-byte entry and a control byte.
const BUCKET_BYTES: usize = 25;
/// Bytes per key a spill sorts before writing: the sealed map, its sorted
/// copy and the new map's first eighth together stay within the bound.
const SPILL_BYTES: usize = 24;

/// A map being written to a run by another thread.
#[derive(Debug)]
struct Sealed {
    map: Arc<FpMap>,
    /// What the runs cover once it is written.
    covered: i64,
    done: Receiver<std::io::Result<Run>>,
    started: Instant,
}

/// Sizes of the index, for metrics and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DedupStats {
    /// Keys in memory and in runs (expired keys included until swept).
    pub keys: u64,
    /// Bytes of memory: the map's buckets and the runs' filters.
    pub memory_bytes: u64,
    /// Bytes of the runs on disk.
    pub disk_bytes: u64,
    /// Runs on disk.
    pub runs: usize,
}

/// Keys seen within the window.
#[derive(Debug)]
pub struct DedupIndex {
    window_us: i64,
    bound: usize,
    hot: FpMap,
    /// Keys claimed by rows not committed yet: never spilled.
    pending: FpSet,
    runs: Vec<Run>,
    sealed: Option<Sealed>,
    store: Option<Store>,
    /// The table sequence number through which every committed key of the
    /// window is held.
    pub(super) covered: i64,
    /// What the runs alone cover: `covered` as of the last spill, when the
    /// map's committed keys went into them. The stored state says this,
    /// never `covered`, whose newest keys may be in the map only.
    stored: i64,
    next_sweep_us: i64,
    /// The map's size at which it spills next.
    spill_at: usize,
}

impl DedupIndex {
    /// An empty index remembering keys for `window` in at most `bound`
    /// bytes of memory, spilling to `store` (in memory only without one).
    pub(super) fn new(window: Duration, bound: usize, store: Option<Store>) -> Self {
        let mut index = Self {
            window_us: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            bound,
            hot: FpMap::default(),
            pending: FpSet::default(),
            runs: Vec::new(),
            sealed: None,
            store,
            covered: 0,
            stored: 0,
            next_sweep_us: i64::MIN,
            spill_at: 0,
        };
        index.resize();
        index
    }

    /// How long a key is remembered, in microseconds.
    pub(super) fn window_us(&self) -> i64 {
        self.window_us
    }

    /// Takes the runs a store held for the table through `covered`.
    pub(super) fn with_runs(mut self, runs: Vec<Run>, covered: i64) -> Self {
        self.runs = runs;
        self.covered = covered;
        self.stored = covered;
        self.resize();
        self
    }

    /// An empty index with the same settings and store, holding only the
    /// keys still waiting for their commit: the start of a rebuild.
    pub(super) fn reset(&mut self) -> std::io::Result<()> {
        self.finish_sealed(true)?;
        for run in std::mem::take(&mut self.runs) {
            run.delete();
        }
        let pending = std::mem::take(&mut self.pending);
        self.hot.retain(|fp, _| pending.contains(fp));
        self.pending = pending;
        self.covered = 0;
        self.stored = 0;
        self.resize();
        self.save()
    }

    /// Records `fp` as seen at `at_us`, claimed by rows not committed yet
    /// if `pending`; false if it is a duplicate.
    pub(super) fn insert(&mut self, fp: Fp, at_us: i64, pending: bool) -> std::io::Result<bool> {
        self.sweep(at_us)?;
        let live = |until: Option<&i64>| until.is_some_and(|until| *until > at_us);
        if live(self.hot.get(&fp)) || self.sealed.as_ref().is_some_and(|s| live(s.map.get(&fp))) {
            return Ok(false);
        }
        for run in self.runs.iter().rev().filter(|r| r.max_expiry > at_us) {
            if run.get(fp)?.is_some_and(|until| until > at_us) {
                return Ok(false);
            }
        }
        if self.sealed.is_some() {
            // The new map may take an eighth of its size while the sealed
            // one is written; past that, ingest waits for the disk.
            let full = self.hot.len() >= self.spill_at / 8;
            self.finish_sealed(full)?;
        }
        if self.hot.len() >= self.spill_at {
            self.spill(at_us)?;
        }
        self.hot.insert(fp, at_us.saturating_add(self.window_us));
        if pending {
            self.pending.insert(fp);
        }
        Ok(true)
    }

    /// Forgets keys whose commit failed.
    pub(super) fn remove<'a>(&mut self, fps: impl IntoIterator<Item = &'a Fp>) {
        for fp in fps {
            if self.pending.remove(fp) {
                self.hot.remove(fp);
            }
        }
    }

    /// Marks claimed keys as committed.
    pub(super) fn settle<'a>(&mut self, fps: impl IntoIterator<Item = &'a Fp>) {
        for fp in fps {
            self.pending.remove(fp);
        }
    }

    /// Whether `fp` is claimed by rows not committed yet.
    pub(super) fn is_pending(&self, fp: &Fp) -> bool {
        self.pending.contains(fp)
    }

    /// Sets when the map spills next: at its capacity, or, if keys waiting
    /// for their commit fill half of it, once as many again came.
    fn resize(&mut self) {
        let capacity = self.hot_capacity();
        self.spill_at = capacity.max(self.hot.len() + capacity / 2);
        if self.hot.capacity() > capacity && self.hot.len() < capacity {
            self.hot.shrink_to(capacity);
        }
    }

    /// The most keys the map may hold before it spills: the largest table
    /// (a power of two of buckets, 7/8 full) that fits in the bound beside
    /// the runs' filters and the sorted copy a spill makes. Never less than
    /// a quarter of what the bound alone allows: past that, the filters
    /// take memory beyond the bound rather than runs multiplying.
    fn hot_capacity(&self) -> usize {
        capacity(self.bound.saturating_sub(self.runs_memory())).max(capacity(self.bound) / 4)
    }

    /// Memory the runs keep: their filters and sparse indexes.
    fn runs_memory(&self) -> usize {
        self.runs.iter().map(|r| Run::memory_bytes(r.len())).sum()
    }

    /// Seals the map and starts writing its committed, live keys to a new
    /// run on another thread (after the previous one is written); without a
    /// store the map just grows past the bound.
    fn spill(&mut self, now_us: i64) -> std::io::Result<()> {
        let Some(store) = &self.store else {
            self.spill_at = self.hot.len() * 2;
            tracing::warn!(
                keys = self.hot.len(),
                "dedup index is past its memory bound and has no directory to spill to"
            );
            return Ok(());
        };
        let path = store.new_run_path();
        self.finish_sealed(true)?;
        let mut map = std::mem::take(&mut self.hot);
        for fp in &self.pending {
            if let Some(until) = map.remove(fp) {
                self.hot.insert(*fp, until);
            }
        }
        map.retain(|_, until| *until > now_us);
        if map.is_empty() {
            self.stored = self.covered;
            self.resize();
            return Ok(());
        }
        let map = Arc::new(map);
        let (tx, done) = sync_channel(1);
        let keys = map.clone();
        std::thread::Builder::new().name("dedup-spill".to_owned()).spawn(move || {
            let mut entries: Vec<(Fp, i64)> = keys.iter().map(|(fp, until)| (*fp, *until)).collect();
            entries.sort_unstable_by_key(|e| e.0);
            let _ = tx.send(Run::write(&path, &entries));
        })?;
        self.sealed = Some(Sealed { map, covered: self.covered, done, started: Instant::now() });
        self.resize();
        Ok(())
    }

    /// Takes the run of the sealed map once it is written (waiting for it
    /// if `wait`). If the write failed, its keys go back into the map.
    fn finish_sealed(&mut self, wait: bool) -> std::io::Result<()> {
        let Some(sealed) = &self.sealed else { return Ok(()) };
        let died = || std::io::Error::other("the dedup spill thread died");
        let written = if wait {
            sealed.done.recv().unwrap_or_else(|_| Err(died()))
        } else {
            match sealed.done.try_recv() {
                Ok(written) => written,
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Disconnected) => Err(died()),
            }
        };
        let Some(sealed) = self.sealed.take() else { return Ok(()) };
        match written {
            Ok(run) => {
                tracing::info!(
                    keys = run.len(),
                    runs = self.runs.len() + 1,
                    ms = sealed.started.elapsed().as_millis() as u64,
                    "dedup index reached its memory bound: committed keys went to disk"
                );
                self.runs.push(run);
                self.stored = sealed.covered;
                self.resize();
                self.save()
            }
            Err(e) => {
                let map = Arc::try_unwrap(sealed.map).unwrap_or_else(|shared| (*shared).clone());
                for (fp, until) in map {
                    self.hot.entry(fp).or_insert(until);
                }
                self.resize();
                Err(e)
            }
        }
    }

    /// Drops expired keys and runs, at most once per sixteenth of the window.
    fn sweep(&mut self, now_us: i64) -> std::io::Result<()> {
        if now_us < self.next_sweep_us {
            return Ok(());
        }
        self.next_sweep_us = now_us.saturating_add((self.window_us / 16).max(1_000_000));
        self.hot.retain(|_, until| *until > now_us);
        if self.runs.iter().any(|r| r.max_expiry <= now_us) {
            let (live, expired): (Vec<Run>, Vec<Run>) =
                std::mem::take(&mut self.runs).into_iter().partition(|r| r.max_expiry > now_us);
            self.runs = live;
            self.resize();
            self.save()?;
            expired.into_iter().for_each(Run::delete);
        }
        Ok(())
    }

    /// Moves every committed key into a run and records what the runs
    /// cover, so that a restart reads only newer snapshots.
    pub(super) fn checkpoint(&mut self, now_us: i64) -> std::io::Result<()> {
        if self.store.is_none() {
            return Ok(());
        }
        self.spill(now_us)?;
        self.finish_sealed(true)?;
        self.save()
    }

    fn save(&self) -> std::io::Result<()> {
        match &self.store {
            Some(store) => store.save(&self.runs, self.stored),
            None => Ok(()),
        }
    }

    /// Its sizes.
    pub fn stats(&self) -> DedupStats {
        let sealed = self.sealed.as_ref().map(|s| &*s.map);
        let maps = std::iter::once(&self.hot).chain(sealed);
        let (keys, map_memory) = maps.fold((0, 0), |(k, m), map| (k + map.len(), m + map_bytes(map)));
        DedupStats {
            keys: keys as u64 + self.runs.iter().map(Run::len).sum::<u64>(),
            memory_bytes: (map_memory + self.runs_memory()) as u64,
            disk_bytes: self.runs.iter().map(Run::disk_bytes).sum(),
            runs: self.runs.len(),
        }
    }
}

/// The keys a map fits in `budget` bytes, with room to sort them and to
/// start the next map while they are written.
fn capacity(budget: usize) -> usize {
    let bytes = |buckets: usize| buckets * BUCKET_BYTES * 9 / 8 + buckets / 8 * 7 * SPILL_BYTES;
    let mut buckets = 16usize;
    while bytes(buckets * 2) <= budget {
        buckets *= 2;
    }
    buckets / 8 * 7
}

/// Bytes of a map's buckets (hashbrown: a power of two, at most 7/8 full).
fn map_bytes(map: &FpMap) -> usize {
    match map.capacity() {
        0 => 0,
        c => (c / 7 * 8).next_power_of_two() * BUCKET_BYTES,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fingerprint;
    use super::super::store::{FINGERPRINT, Identity};
    use super::*;

    const S: i64 = 1_000_000;

    fn fp(i: u64) -> Fp {
        fingerprint(&i.to_le_bytes())
    }

    fn on_disk(dir: &std::path::Path, bound: usize) -> DedupIndex {
        let identity =
            Identity { table_uuid: "t".into(), key: "k".into(), window_us: 100 * S, fingerprint: FINGERPRINT.into() };
        DedupIndex::new(Duration::from_secs(100), bound, Some(Store::open(dir, identity).unwrap()))
    }

    #[test]
    fn duplicates_within_the_window_are_refused_and_keys_expire_after_it() {
        let mut d = DedupIndex::new(Duration::from_secs(10), 1 << 20, None);
        assert!(d.insert(fp(1), 0, false).unwrap());
        assert!(!d.insert(fp(1), 5 * S, false).unwrap());
        assert!(d.insert(fp(2), 5 * S, false).unwrap());
        assert!(d.insert(fp(1), 10 * S + 1, false).unwrap(), "the window ended");
        assert_eq!(d.stats().keys, 2);
    }

    #[test]
    fn removed_keys_can_come_again_but_committed_ones_cannot_be_removed() {
        let mut d = DedupIndex::new(Duration::from_secs(10), 1 << 20, None);
        assert!(d.insert(fp(1), 0, true).unwrap());
        assert!(d.insert(fp(2), 0, true).unwrap());
        d.settle(&[fp(2)]);
        d.remove(&[fp(1), fp(2)]);
        assert!(d.insert(fp(1), 1, true).unwrap(), "its commit failed: it may come again");
        assert!(!d.insert(fp(2), 1, true).unwrap(), "committed: only a rebuild forgets it");
    }

    /// More keys than the bound holds in memory: every duplicate within the
    /// window is still dropped, memory stays within the bound, and only
    /// committed keys went to disk.
    #[test]
    fn past_the_memory_bound_keys_spill_to_disk_and_stay_exact() {
        let dir = tempfile::tempdir().unwrap();
        let bound = 256 * 1024;
        let mut d = on_disk(dir.path(), bound);
        let n = 50_000u64;
        for i in 0..n {
            assert!(d.insert(fp(i), i as i64, i % 1000 == 0).unwrap(), "key {i} is new");
        }
        let stats = d.stats();
        assert!(stats.runs >= 5, "{stats:?}");
        assert!(stats.memory_bytes <= bound as u64, "{stats:?}");
        assert_eq!(stats.keys, n);
        for i in (0..n).step_by(7) {
            assert!(!d.insert(fp(i), n as i64, false).unwrap(), "key {i} is a duplicate");
        }
        // Pending keys never went to a run: removing them works.
        d.remove(&[fp(0), fp(1000)]);
        assert!(d.insert(fp(0), n as i64, false).unwrap());
        assert!(d.insert(fp(1000), n as i64, false).unwrap());
        // Past the window, keys and whole runs are gone.
        let later = 200 * S;
        assert!(d.insert(fp(3), later, false).unwrap());
        assert_eq!(d.stats().runs, 0);
        let files = std::fs::read_dir(d.store.as_ref().unwrap().dir()).unwrap();
        assert_eq!(files.flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".run")).count(), 0);
    }

    /// A run that cannot be written (here: its directory is gone) fails
    /// the insert that finds out, and its keys stay in memory.
    #[test]
    fn a_failed_spill_loses_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = on_disk(dir.path(), 256 * 1024);
        let slot = d.store.as_ref().unwrap().dir().to_owned();
        std::fs::remove_dir_all(&slot).unwrap();
        let failed_at = (0..50_000u64).find(|i| d.insert(fp(*i), *i as i64, false).is_err()).expect("a spill fails");
        assert!(d.sealed.is_none());
        for i in 0..failed_at {
            assert!(!d.insert(fp(i), failed_at as i64, false).unwrap_or(true), "key {i} was lost");
        }
        std::fs::create_dir_all(&slot).unwrap();
        for i in failed_at..50_000 {
            assert!(d.insert(fp(i), i as i64, false).unwrap(), "key {i} is new");
        }
        d.checkpoint(50_000).unwrap();
        assert!(d.stats().runs > 0);
        for i in (0..50_000).step_by(11) {
            assert!(!d.insert(fp(i), 50_001, false).unwrap(), "key {i} is a duplicate");
        }
    }

    /// The map's newest committed keys are not in any run: a state saved
    /// when runs expire must not claim to cover them.
    #[test]
    fn the_stored_state_covers_only_what_runs_hold() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = on_disk(dir.path(), 1 << 20);
        d.insert(fp(1), 0, false).unwrap();
        d.covered = 3;
        d.checkpoint(1).unwrap();
        d.insert(fp(2), 50 * S, false).unwrap();
        d.covered = 4;
        // The first run expires: the sweep saves the state.
        d.insert(fp(3), 101 * S, false).unwrap();
        let (loaded, _) = d.store.as_ref().unwrap().load(i64::MAX);
        let (runs, covered) = loaded.unwrap();
        assert_eq!((runs.len(), covered), (0, 3), "fp(2), committed at 4, is only in memory");
    }

    #[test]
    fn a_checkpoint_is_found_again_by_the_next_process() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = on_disk(dir.path(), 1 << 20);
        for i in 0..1000 {
            d.insert(fp(i), 0, i == 999).unwrap();
        }
        d.covered = 42;
        d.checkpoint(1).unwrap();
        drop(d);
        let next = on_disk(dir.path(), 1 << 20);
        let (loaded, problems) = next.store.as_ref().unwrap().load(i64::MAX);
        assert!(problems.is_empty(), "{problems:?}");
        let (runs, covered) = loaded.unwrap();
        assert_eq!(covered, 42);
        let mut next = next.with_runs(runs, covered);
        assert_eq!(next.stats().keys, 999, "the key waiting for its commit was not stored");
        assert!(!next.insert(fp(5), 2, false).unwrap());
        assert!(next.insert(fp(999), 2, false).unwrap());
    }
}
