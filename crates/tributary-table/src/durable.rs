//! Making written files survive a power loss before the catalog points at
//! them.
//!
//! The catalog swap is durable the moment the database commits (SQLite is
//! synchronous, PostgreSQL fsyncs its WAL). Files written through the page
//! cache are not: after a power loss the catalog could point at an empty or
//! missing metadata file, or at a manifest that names vanished data files —
//! a table nobody can read. So every file a commit references, and the
//! directories that name them, are fsynced before the swap.
//!
//! No temp-file-and-rename is needed: file names are unique and never
//! overwritten, and nothing references a file until the swap, so a torn
//! write leaves only an orphan.
//!
//! Object stores (S3) make a PUT durable before answering; only local paths
//! (`file://` or plain) need this.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Result, TableError};

/// Fsyncs each local file of `locations`, then the directories holding
/// them and their parents. Other schemes are skipped.
pub async fn sync(locations: Vec<String>) -> Result<()> {
    let files: Vec<PathBuf> = locations.iter().filter_map(|l| local_path(l)).collect();
    if files.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || sync_blocking(&files))
        .await
        .map_err(|e| TableError::Config(format!("fsync task failed: {e}")))?
}

fn sync_blocking(files: &[PathBuf]) -> Result<()> {
    // The directory names the file; its parent names the directory, which
    // may be new (a partition's first file).
    let dirs: BTreeSet<PathBuf> =
        files.iter().flat_map(|f| f.ancestors().skip(1).take(2)).map(Path::to_path_buf).collect();
    sync_all(files)?;
    sync_all(&dirs.into_iter().collect::<Vec<_>>())
}

/// Fsyncs `paths` a few at a time: the file system merges concurrent
/// flushes into one journal commit, where one after another each waits for
/// its own (a commit writes a file per partition).
fn sync_all(paths: &[PathBuf]) -> Result<()> {
    const PARALLEL: usize = 8;
    let fsync = |p: &Path| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|e| TableError::Config(format!("cannot make {} durable (fsync): {e}", p.display())))
    };
    if paths.len() <= 1 {
        return paths.iter().try_for_each(|p| fsync(p));
    }
    let chunk = paths.len().div_ceil(PARALLEL);
    std::thread::scope(|scope| {
        let workers: Vec<_> =
            paths.chunks(chunk).map(|part| scope.spawn(move || part.iter().try_for_each(|p| fsync(p)))).collect();
        workers.into_iter().try_for_each(|w| {
            w.join().unwrap_or_else(|_| Err(TableError::Config("an fsync thread panicked".to_owned())))
        })
    })
}

/// The local path of a warehouse location, if it is on local disk.
fn local_path(location: &str) -> Option<PathBuf> {
    match location.split_once("://") {
        Some(("file", rest)) => Some(PathBuf::from(rest)),
        Some(_) => None,
        None => Some(PathBuf::from(location)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_locations_are_synced() {
        assert_eq!(local_path("file:///w/t/metadata/a.json"), Some(PathBuf::from("/w/t/metadata/a.json")));
        assert_eq!(local_path("/w/t/data/x.parquet"), Some(PathBuf::from("/w/t/data/x.parquet")));
        assert_eq!(local_path("s3://bucket/t/x.parquet"), None);
    }

    #[test]
    fn a_file_that_was_never_written_fails_the_sync() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("m.json");
        std::fs::write(&written, b"{}").unwrap();
        assert!(sync_blocking(std::slice::from_ref(&written)).is_ok());
        let err = sync_blocking(&[written, dir.path().join("missing.avro")]).unwrap_err().to_string();
        assert!(err.contains("missing.avro") && err.contains("fsync"), "{err}");
    }
}
