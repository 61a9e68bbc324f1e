//! Finding files: a landing area (a local directory walked recursively, or
//! an S3 prefix listed), or the paths, directories, globs and `s3://`
//! prefixes given to `tributary load`; each file with the identity its
//! position key records, the table it feeds and its Hive-style
//! `key=value` path segments. [`Landing`] is the one place that knows
//! which storage a file is on: listing, a local copy to read, and the
//! post-commit move or delete.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use tributary_core::TableName;
use tributary_core::config::S3Config;
use tributary_core::files::{PostAction, Route, file_key};
use tributary_table::iceberg::io::Storage;
use tributary_table::storage::s3::S3Storage;

/// The directory under a landing area that processed files are moved to;
/// never listed.
pub const PROCESSED_DIR: &str = "processed";

/// One version of one file, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Its location in position keys and `_source_file`: the absolute path,
    /// or `s3://bucket/key`.
    pub location: String,
    /// Bytes.
    pub size: u64,
    /// The version tag: the modification time in nanoseconds, or the ETag.
    pub tag: String,
    /// The table it feeds.
    pub table: TableName,
    /// Its path relative to the landing area (or its file name).
    pub relative: String,
    /// `key=value` segments of its directory path, outermost first.
    pub hive: Vec<(String, String)>,
}

impl FileRef {
    /// A file found at `location`, which feeds `table`; `relative` is its
    /// path under the landing area.
    fn new(location: String, size: u64, tag: String, table: TableName, relative: String) -> Self {
        let hive = hive_segments(&relative);
        Self { location, size, tag: tag.trim_matches('"').to_owned(), table, relative, hive }
    }

    /// Describes the local file at `path`.
    pub fn stat(path: &Path, table: TableName, relative: String) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        let mtime = meta.modified()?.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let absolute = std::path::absolute(path)?;
        Ok(Self::new(absolute.to_string_lossy().into_owned(), meta.len(), mtime.to_string(), table, relative))
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

/// Where a landing area's files are.
#[derive(Debug, Clone)]
pub enum Landing {
    /// The local file system.
    Local,
    /// An S3-compatible bucket.
    S3(S3Storage),
}

/// A file readable on local disk: the file itself, or a downloaded copy
/// deleted when this is dropped.
pub struct LocalCopy {
    /// Where to read it.
    pub path: PathBuf,
    _temp: Option<tempfile::TempPath>,
}

impl Landing {
    /// The storage of `root` (a directory, or `s3://…` with `s3`'s settings).
    pub fn of(root: &str, s3: &S3Config) -> Result<Self, String> {
        if root.starts_with("s3://") {
            tributary_table::storage::s3_client(s3).map(Self::S3).map_err(|e| e.to_string())
        } else {
            Ok(Self::Local)
        }
    }

    /// Every file under `root` for `route`, sorted by relative path (so
    /// partitioned folders load in date order). Subdirectories that name no
    /// declared table are returned as `unrouted` for the caller to report.
    pub async fn list(&self, root: &str, route: &Route, tables: &[TableName]) -> Result<Listing, String> {
        let found = match self {
            Self::Local => {
                let dir = PathBuf::from(root);
                let walked = tokio::task::spawn_blocking(move || {
                    let mut found = Vec::new();
                    walk(&dir, &dir, &mut found).map(|()| found)
                });
                walked
                    .await
                    .map_err(|e| format!("listing task: {e}"))?
                    .map_err(|e| format!("cannot list {root}: {e}"))?
            }
            Self::S3(s3) => {
                let prefix = format!("{}/", root.trim_end_matches('/'));
                let listed = s3.list(&prefix).await.map_err(|e| e.to_string())?;
                let objects = listed.into_iter().filter_map(|l| {
                    let relative = l.path.strip_prefix(&prefix)?.to_owned();
                    let mut segments = relative.split('/');
                    let processed = segments.next() == Some(PROCESSED_DIR);
                    let skipped = relative.split('/').any(ignored);
                    (!processed && !skipped).then_some(Found::Object(relative, l.path, l.size, l.tag))
                });
                objects.collect()
            }
        };
        Ok(route_files(found, route, tables))
    }

    /// `file` on local disk, downloaded first if it is on S3.
    pub async fn local_copy(&self, file: &FileRef) -> std::io::Result<LocalCopy> {
        match self {
            Self::Local => Ok(LocalCopy { path: PathBuf::from(&file.location), _temp: None }),
            Self::S3(s3) => {
                let temp = tempfile::NamedTempFile::new()?.into_temp_path();
                s3.download(&file.location, &temp).await.map_err(std::io::Error::other)?;
                Ok(LocalCopy { path: temp.to_path_buf(), _temp: Some(temp) })
            }
        }
    }

    /// Moves `file` under `root`'s `processed/` or deletes it; a file
    /// already gone counts as done.
    pub async fn post_action(&self, file: &FileRef, action: PostAction, root: &str) -> Result<(), String> {
        let processed = format!("{}/{PROCESSED_DIR}/{}", root.trim_end_matches('/'), file.relative);
        match (self, action) {
            (_, PostAction::Keep) => Ok(()),
            (Self::Local, PostAction::Delete) => gone_is_done(std::fs::remove_file(&file.location)),
            (Self::Local, PostAction::Move) => {
                let to = Path::new(&processed);
                let made = to.parent().map_or(Ok(()), std::fs::create_dir_all);
                gone_is_done(made.and_then(|()| std::fs::rename(&file.location, to)))
            }
            (Self::S3(s3), PostAction::Delete) => s3.delete(&file.location).await.map_err(|e| e.to_string()),
            (Self::S3(s3), PostAction::Move) => match s3.rename(&file.location, &processed).await {
                // Moved by an earlier try: the original is gone.
                Err(_) if s3.exists(&file.location).await.is_ok_and(|there| !there) => Ok(()),
                other => other.map_err(|e| e.to_string()),
            },
        }
    }
}

fn gone_is_done(result: std::io::Result<()>) -> Result<(), String> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// A file a listing found, before it is routed.
enum Found {
    /// A local file: its relative path and path.
    File(String, PathBuf),
    /// An object: relative path, location, size, ETag.
    Object(String, String, u64, String),
}

impl Found {
    fn relative(&self) -> &str {
        match self {
            Self::File(r, _) | Self::Object(r, ..) => r,
        }
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

/// Whether a file or directory name is one a writer is still producing or
/// a marker: hidden (`.x`), `_SUCCESS`-style, or a temporary suffix.
fn ignored(name: &str) -> bool {
    name.starts_with('.')
        || name.starts_with('_')
        || [".tmp", ".part", ".crc", ".inprogress"].iter().any(|s| name.ends_with(s))
}

/// Routes what a listing found to tables, in relative-path order.
fn route_files(mut found: Vec<Found>, route: &Route, tables: &[TableName]) -> Listing {
    let mut listing = Listing::default();
    found.sort_by(|a, b| a.relative().cmp(b.relative()));
    for f in found {
        let relative = f.relative().to_owned();
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
        match f {
            Found::Object(relative, location, size, tag) => {
                listing.files.push(FileRef::new(location, size, tag, table, relative));
            }
            // Moved or deleted since the walk: nothing to load.
            Found::File(relative, path) => {
                if let Ok(file) = FileRef::stat(&path, table, relative) {
                    listing.files.push(file);
                }
            }
        }
    }
    listing
}

/// What a listing found.
#[derive(Debug, Default)]
pub struct Listing {
    /// Files to consider, in load order.
    pub files: Vec<FileRef>,
    /// Files in directories that name no declared table.
    pub unrouted: Vec<String>,
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Found>) -> std::io::Result<()> {
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
            out.push(Found::File(relative, path));
        }
    }
    Ok(())
}

/// The files named by `tributary load`'s arguments: files, directories
/// (walked, relative paths kept for `key=value` segments), globs, and
/// `s3://` prefixes or objects (with `s3`'s settings). An argument that
/// matches nothing is an error naming it.
pub async fn list_inputs(inputs: &[String], table: &TableName, s3: &S3Config) -> Result<Vec<FileRef>, String> {
    let mut files = Vec::new();
    let route = Route::Table(table.clone());
    for input in inputs {
        let path = Path::new(input);
        let before = files.len();
        if input.starts_with("s3://") {
            let landing = Landing::of(input, s3)?;
            let listing = landing.list(input, &route, &[]).await.map_err(|e| format!("{input}: {e}"))?;
            files.extend(listing.files);
            if files.len() == before {
                // Not a prefix: an object of its parent's.
                let (parent, _) = input.rsplit_once('/').unwrap_or((input, ""));
                let listing = landing.list(parent, &route, &[]).await.map_err(|e| format!("{input}: {e}"))?;
                files.extend(listing.files.into_iter().filter(|f| f.location == *input));
            }
        } else if path.is_dir() {
            let listing = Landing::Local.list(input, &route, &[]).await.map_err(|e| format!("{input}: {e}"))?;
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

    #[tokio::test]
    async fn a_landing_area_routes_by_directory_and_skips_markers() {
        let dir = tempfile::tempdir().unwrap();
        let t = TableName::parse("raw.t").unwrap();
        for f in ["raw.t/d=1/a.csv", "raw.t/d=1/_SUCCESS", "raw.t/.b.csv", "raw.t/c.csv.tmp", "other.x/e.csv"] {
            let p = dir.path().join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "x").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("processed/raw.t")).unwrap();
        std::fs::write(dir.path().join("processed/raw.t/old.csv"), "x").unwrap();
        let root = dir.path().to_str().unwrap();
        let listing = Landing::Local.list(root, &Route::ByDirectory, std::slice::from_ref(&t)).await.unwrap();
        let names: Vec<_> = listing.files.iter().map(|f| f.relative.as_str()).collect();
        assert_eq!(names, ["raw.t/d=1/a.csv"]);
        assert_eq!(listing.files[0].hive, vec![("d".to_owned(), "1".to_owned())]);
        assert_eq!(listing.unrouted, ["other.x/e.csv"]);
        assert_eq!(listing.files[0].table, t);
    }
}
