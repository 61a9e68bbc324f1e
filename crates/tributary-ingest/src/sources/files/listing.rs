//! Finding files: a landing directory walked recursively, or the paths,
//! directories and globs given to `tributary load`; each file with the
//! identity its position key records, the table it feeds and its
//! Hive-style `key=value` path segments.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use tributary_core::TableName;
use tributary_core::files::{Route, file_key};

/// The directory under a landing area that processed files are moved to;
/// never listed.
pub const PROCESSED_DIR: &str = "processed";

/// One version of one file, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Where it is.
    pub path: PathBuf,
    /// Its location in position keys and `_source_file`: the absolute path.
    pub location: String,
    /// Bytes.
    pub size: u64,
    /// The version tag: the modification time in nanoseconds.
    pub tag: String,
    /// The table it feeds.
    pub table: TableName,
    /// Its path relative to the landing area (or its file name).
    pub relative: String,
    /// `key=value` segments of its directory path, outermost first.
    pub hive: Vec<(String, String)>,
}

impl FileRef {
    /// Describes the file at `path`, which feeds `table`; `relative` is its
    /// path under the landing area.
    pub fn stat(path: &Path, table: TableName, relative: String) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let absolute = std::path::absolute(path)?;
        let hive = hive_segments(&relative);
        Ok(Self {
            location: absolute.to_string_lossy().into_owned(),
            path: absolute,
            size: meta.len(),
            tag: mtime.to_string(),
            table,
            relative,
            hive,
        })
    }

    /// This version's position key.
    pub fn key(&self) -> String {
        file_key(&self.location, self.size, &self.tag)
    }

    /// The version part of [`Self::key`], as `parse_file_key` returns it.
    pub fn version(&self) -> String {
        format!("{}.{}", self.size, self.tag)
    }
}

/// The `key=value` directory segments of a relative path.
pub fn hive_segments(relative: &str) -> Vec<(String, String)> {
    let mut segments: Vec<&str> = relative.split('/').collect();
    segments.pop();
    segments
        .into_iter()
        .filter_map(|s| s.split_once('='))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Whether a file name is one a writer is still producing or a marker:
/// hidden (`.x`), `_SUCCESS`-style, or a temporary suffix.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with('_')
        || [".tmp", ".part", ".crc", ".inprogress"].iter().any(|s| name.ends_with(s))
}

/// Every file under `root` for `route`, sorted by relative path (so
/// partitioned folders load in date order). Subdirectories that name no
/// declared table are returned as `unrouted` for the caller to report.
pub fn list_landing(root: &Path, route: &Route, tables: &[TableName]) -> std::io::Result<Listing> {
    let mut listing = Listing::default();
    let mut found = Vec::new();
    walk(root, root, &mut found)?;
    found.sort();
    for (relative, path) in found {
        let table = match route {
            Route::Table(t) => t.clone(),
            Route::ByDirectory => {
                let (dir, _) = relative.split_once('/').unwrap_or(("", &relative));
                match tables.iter().find(|t| t.to_string() == dir) {
                    Some(t) => t.clone(),
                    None => {
                        listing.unrouted.push(relative);
                        continue;
                    }
                }
            }
        };
        match FileRef::stat(&path, table, relative) {
            Ok(f) => listing.files.push(f),
            // Moved or deleted since the walk: nothing to load.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(listing)
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Files to consider, in load order.
    pub files: Vec<FileRef>,
    /// Files in directories that name no declared table.
    pub unrouted: Vec<String>,
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir != root => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let kind = entry.file_type()?;
        if ignored(&name) || (dir == root && name == PROCESSED_DIR) {
            continue;
        }
        if kind.is_dir() {
            walk(root, &path, out)?;
        } else if kind.is_file() || (kind.is_symlink() && path.is_file()) {
            let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().replace('\\', "/");
            out.push((relative, path));
        }
    }
    Ok(())
}

/// The files named by `tributary load`'s arguments: files, directories
/// (walked, relative paths kept for `key=value` segments) and globs.
/// An argument that matches nothing is an error naming it.
pub fn list_inputs(inputs: &[String], table: &TableName) -> Result<Vec<FileRef>, String> {
    let mut files = Vec::new();
    for input in inputs {
        if input.starts_with("s3://") {
            return Err(format!("{input}: loading from S3 is not supported yet; copy the files to a local directory"));
        }
        let path = Path::new(input);
        let before = files.len();
        if path.is_dir() {
            let route = Route::Table(table.clone());
            let listing = list_landing(path, &route, &[]).map_err(|e| format!("{input}: cannot list: {e}"))?;
            files.extend(listing.files);
        } else if path.is_file() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            files.push(FileRef::stat(path, table.clone(), name).map_err(|e| format!("{input}: {e}"))?);
        } else if input.contains(['*', '?', '[']) {
            let matches = glob::glob(input).map_err(|e| format!("{input}: not a valid glob: {e}"))?;
            let mut paths: Vec<PathBuf> = matches.filter_map(Result::ok).filter(|p| p.is_file()).collect();
            paths.sort();
            for p in paths {
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                files.push(FileRef::stat(&p, table.clone(), name).map_err(|e| format!("{}: {e}", p.display()))?);
            }
        } else {
            return Err(format!("{input}: no such file or directory"));
        }
        if files.len() == before {
            return Err(format!("{input}: matches no file"));
        }
    }
    files.dedup_by(|a, b| a.location == b.location);
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_directories_are_hive_segments() {
        let segments = hive_segments("raw.t/event_date=2026-11-30/region=eu/part-0.csv");
        assert_eq!(segments, vec![("event_date".into(), "2026-11-30".into()), ("region".into(), "eu".into())]);
        assert!(hive_segments("a=b.csv").is_empty(), "a file name is not a segment");
    }

    #[test]
    fn a_landing_area_routes_by_directory_and_skips_markers() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableName::parse("raw.t").unwrap();
        for f in ["raw.t/d=1/a.csv", "raw.t/d=1/_SUCCESS", "raw.t/.b.csv", "raw.t/c.csv.tmp", "other.x/e.csv"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("processed/raw.t")).unwrap();
        std::fs::write(dir.path().join("processed/raw.t/old.csv"), "x").unwrap();
        let listing = list_landing(dir.path(), &Route::ByDirectory, std::slice::from_ref(&t)).unwrap();
        let names: Vec<_> = listing.files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(names, ["raw.t/d=1/a.csv"]);
        assert_eq!(listing.files[0].hive, vec![("d".to_owned(), "1".to_owned())]);
        assert_eq!(listing.unrouted, ["other.x/e.csv"]);
        assert_eq!(listing.files[0].table, t);
    }
}
