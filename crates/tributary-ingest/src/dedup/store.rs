//! Where a table's dedup index keeps its runs and what lets a restart
//! resume: `DATA_DIR/dedup/<table>/<slot>/`, with a `state.json` naming the
//! runs and the table sequence number they cover.
//!
//! Several workers may share a data directory (one lake, one machine), so
//! each process takes a slot it locks for its lifetime (`flock`, released
//! by the kernel when the process dies). A restarted worker takes any free
//! slot: what a slot holds is derived from the table, valid for every
//! worker of it, and checked against the table's identity, the key column,
//! the window and the fingerprint before use.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::Run;

/// Slots tried per table before the index runs without persistence.
const SLOTS: usize = 64;
const STATE: &str = "state.json";
/// Names the fingerprint function; another one makes stored runs unusable.
pub(super) const FINGERPRINT: &str = "siphash13-128";

/// What a stored index must match to be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Identity {
    pub table_uuid: String,
    pub key: String,
    pub window_us: i64,
    pub fingerprint: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct State {
    identity: Identity,
    /// The table sequence number through which the runs hold every
    /// committed key of the window.
    covered: i64,
    runs: Vec<String>,
}

/// A locked slot directory.
#[derive(Debug)]
pub(super) struct Store {
    dir: PathBuf,
    identity: Identity,
    _lock: File,
}

impl Store {
    /// Locks the first free slot under `root` for `identity`, then empties
    /// the free slots whose every run has expired: a worker that went away
    /// for good leaves its slot to no one.
    pub(super) fn open(root: &Path, identity: Identity) -> std::io::Result<Self> {
        for slot in 0..SLOTS {
            let dir = root.join(slot.to_string());
            std::fs::create_dir_all(&dir)?;
            if let Some(lock) = try_lock(&dir)? {
                let window = std::time::Duration::from_micros(identity.window_us.max(0).cast_unsigned());
                empty_abandoned(root, slot, window);
                return Ok(Self { dir, identity, _lock: lock });
            }
        }
        Err(std::io::Error::other(format!("all {SLOTS} dedup slots under {} are taken", root.display())))
    }

    /// The runs stored for this identity and the sequence number they
    /// cover, if usable for a table whose newest sequence number is
    /// `newest`; else nothing, with the reason. Files no usable state names
    /// (a crash between a run's write and the state's, or a state not
    /// used) are deleted.
    pub(super) fn load(&self, newest: i64) -> (Option<(Vec<Run>, i64)>, Vec<String>) {
        let (loaded, problems) = match self.read_state(newest) {
            Ok(loaded) => (loaded, Vec::new()),
            Err(problem) => {
                let _ = std::fs::remove_file(self.dir.join(STATE));
                (None, vec![problem])
            }
        };
        let keep: Vec<String> = loaded.iter().flat_map(|(runs, _)| runs.iter().map(Run::file_name)).collect();
        self.delete_unnamed(&keep);
        (loaded, problems)
    }

    fn read_state(&self, newest: i64) -> Result<Option<(Vec<Run>, i64)>, String> {
        let unreadable = |e: &dyn std::fmt::Display| format!("{STATE} is unreadable: {e}");
        let bytes = match std::fs::read(self.dir.join(STATE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unreadable(&e)),
        };
        let state: State = serde_json::from_slice(&bytes).map_err(|e| unreadable(&e))?;
        if state.identity != self.identity {
            return Err("the stored index belongs to another table, key, window or fingerprint".to_owned());
        }
        // A table older than what the runs cover (a catalog restored from a
        // backup) may lack keys they hold: those would drop good records.
        if state.covered > newest {
            return Err(format!("it covers sequence number {}, the table ends at {newest}", state.covered));
        }
        let runs: std::io::Result<Vec<Run>> = state.runs.iter().map(|name| Run::open(&self.dir.join(name))).collect();
        let runs = runs.map_err(|e| format!("a stored run is unreadable: {e}"))?;
        Ok(Some((runs, state.covered)))
    }

    /// Its directory.
    #[cfg(test)]
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A path for a new run.
    pub(super) fn new_run_path(&self) -> PathBuf {
        self.dir.join(format!("{}.run", uuid::Uuid::now_v7()))
    }

    /// Records `runs` as covering the table through `covered`, atomically,
    /// then deletes run files it no longer names.
    pub(super) fn save(&self, runs: &[Run], covered: i64) -> std::io::Result<()> {
        let state = State { identity: self.identity.clone(), covered, runs: runs.iter().map(Run::file_name).collect() };
        let tmp = self.dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec(&state).map_err(std::io::Error::other)?)?;
        File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, self.dir.join(STATE))?;
        File::open(&self.dir)?.sync_all()?;
        self.delete_unnamed(&state.runs);
        Ok(())
    }

    fn delete_unnamed(&self, keep: &[String]) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let is_run = name.ends_with(".run") || name.ends_with(".tmp");
            if is_run && !keep.contains(&name) && name != "state.json.tmp" {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The lock of the slot at `dir`, if no other process holds it.
fn try_lock(dir: &Path) -> std::io::Result<Option<File>> {
    let lock = File::create(dir.join("lock"))?;
    match lock.try_lock() {
        Ok(()) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Deletes the files of every free slot but `ours` whose state is older
/// than the window: each run's newest key was claimed before the state
/// naming it was saved, so all of them have expired. Holding the slot's
/// lock meanwhile keeps a worker that starts now out of it.
fn empty_abandoned(root: &Path, ours: usize, window: std::time::Duration) {
    for slot in (0..SLOTS).filter(|s| *s != ours) {
        let dir = root.join(slot.to_string());
        // A slot never made fails to lock (no directory) and is passed.
        let Ok(Some(_lock)) = try_lock(&dir) else { continue };
        let age =
            std::fs::metadata(dir.join(STATE)).and_then(|m| m.modified()).map(|t| t.elapsed().unwrap_or_default());
        if age.is_ok_and(|age| age <= window) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten().filter(|e| e.file_name() != "lock") {
            let _ = std::fs::remove_file(e.path());
        }
        tracing::info!(dir = %dir.display(), "emptied an abandoned dedup slot whose keys had all expired");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity { table_uuid: "u".into(), key: "k".into(), window_us: 1, fingerprint: FINGERPRINT.into() }
    }

    #[test]
    fn each_process_gets_its_own_slot_and_a_freed_slot_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let a = Store::open(dir.path(), identity()).unwrap();
        let b = Store::open(dir.path(), identity()).unwrap();
        assert_ne!(a.dir, b.dir);
        let a_dir = a.dir.clone();
        drop(a);
        assert_eq!(Store::open(dir.path(), identity()).unwrap().dir, a_dir);
    }

    #[test]
    fn a_free_slot_whose_keys_all_expired_is_emptied_and_a_recent_one_kept() {
        let dir = tempfile::tempdir().unwrap();
        let short = Identity { window_us: 1, ..identity() };
        let long = Identity { window_us: 3_600_000_000, ..identity() };
        let open = |id: &Identity| Store::open(dir.path(), id.clone()).unwrap();
        let (_a, b, c) = (open(&short), open(&short), open(&short));
        let run = Run::write(&c.new_run_path(), &[(super::super::fingerprint(b"x"), 5)]).unwrap();
        c.save(&[run], 1).unwrap();
        let c_dir = c.dir.clone();
        drop((b, c));
        std::thread::sleep(std::time::Duration::from_millis(5));
        let files = || std::fs::read_dir(&c_dir).unwrap().count();
        // The next process takes slot 1 and looks at slot 2, now free.
        drop(open(&long));
        assert_eq!(files(), 3, "its keys are younger than the window: lock, state and run stay");
        let _e = open(&short);
        assert_eq!(files(), 1, "every key expired: only the lock is left");
    }

    #[test]
    fn a_state_for_another_identity_is_not_used_and_stray_runs_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), identity()).unwrap();
        let run = Run::write(&store.new_run_path(), &[(super::super::fingerprint(b"x"), 5)]).unwrap();
        let stray = store.new_run_path();
        std::fs::write(&stray, b"half written").unwrap();
        store.save(&[run], 7).unwrap();
        assert!(!stray.exists(), "a run no state names is deleted");
        let (loaded, problems) = store.load(i64::MAX);
        assert_eq!(loaded.map(|(runs, covered)| (runs.len(), covered)), Some((1, 7)));
        assert!(problems.is_empty());
        let dir2 = store.dir.clone();
        drop(store);
        let other = Store {
            dir: dir2,
            identity: Identity { window_us: 2, ..identity() },
            _lock: tempfile::tempfile().unwrap(),
        };
        let (loaded, problems) = other.load(i64::MAX);
        assert!(loaded.is_none());
        assert!(problems[0].contains("another table, key, window"), "{problems:?}");
    }
}
