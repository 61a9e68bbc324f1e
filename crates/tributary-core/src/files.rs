//! `[[files]]`: a landing area polled for file drops, and the position keys
//! that make each file land exactly once.
//!
//! A file's position key names one *version* of one file: its location, its
//! size and a version tag (the modification time on local disk, the ETag on
//! object storage), `file:<location>@<size>.<tag>`. Its value is the next
//! row to read, or [`FILE_DONE`] plus the file's row count once every row
//! is committed. So a restart resumes a file mid-way, never reads a
//! committed file again, and a file that changed after it was read has a
//! new key beside the old one under the same location: the source reports
//! it rather than loading it a second time.

use std::time::Duration;

use serde::Deserialize;

use crate::config::{CommitPolicy, S3Config, TableDef, Warehouse, parse_duration};
use crate::table_name::{TableName, is_identifier};

/// The pipeline id of every file source of a table: `tributary load` and a
/// `[[files]]` source share one set of positions, so a file reaches a table
/// once however it was offered.
pub const FILES_PIPELINE: &str = "file";

/// Added to a file's row count once all of it is committed. Positions only
/// grow, and a finished file's value is above any row it could be read
/// from, so the zombie rule treats every batch of a finished file as stale.
pub const FILE_DONE: u64 = 1 << 62;

/// The position key of one version of a file.
pub fn file_key(location: &str, size: u64, tag: &str) -> String {
    format!("file:{location}@{size}.{tag}")
}

/// The location and version (`<size>.<tag>`) a file position key names.
pub fn parse_file_key(key: &str) -> Option<(&str, &str)> {
    key.strip_prefix("file:")?.rsplit_once('@')
}

/// A file position: `(rows read, whether the file is finished)`.
pub fn file_progress(value: u64) -> (u64, bool) {
    if value >= FILE_DONE { (value - FILE_DONE, true) } else { (value, false) }
}

/// The file formats a landing area may hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileFormat {
    /// From the extension: `.parquet`, `.csv`, `.ndjson`/`.jsonl`/`.json`,
    /// each optionally followed by `.gz` or `.zst`.
    #[default]
    Auto,
    /// Apache Parquet.
    Parquet,
    /// Comma-separated (or other delimiter) text.
    Csv,
    /// One JSON object per line.
    Ndjson,
}

/// What happens to a file once all of it is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PostAction {
    /// Leave it where it is (its position key remembers it).
    #[default]
    Keep,
    /// Move it under `processed/` in the landing area, keeping its relative path.
    Move,
    /// Delete it.
    Delete,
}

/// CSV parsing options, the same for every CSV file of a source.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CsvOptions {
    /// Whether the first line names the columns. Without a header, columns
    /// are taken in the table's column order.
    #[serde(default = "yes")]
    pub header: bool,
    /// The field delimiter, one ASCII character.
    #[serde(default = "comma")]
    pub delimiter: String,
    /// The quote character, one ASCII character.
    #[serde(default = "double_quote")]
    pub quote: String,
    /// Field texts read as NULL.
    #[serde(default = "empty_is_null")]
    pub nulls: Vec<String>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self { header: true, delimiter: comma(), quote: double_quote(), nulls: empty_is_null() }
    }
}

fn yes() -> bool {
    true
}
fn comma() -> String {
    ",".to_owned()
}
fn double_quote() -> String {
    "\"".to_owned()
}
fn empty_is_null() -> Vec<String> {
    vec![String::new()]
}

impl CsvOptions {
    /// The delimiter and quote as bytes, or which option is wrong.
    pub fn bytes(&self) -> Result<(u8, u8), String> {
        let one = |what: &str, s: &str| match s.as_bytes() {
            [b] if b.is_ascii() => Ok(*b),
            _ => Err(format!("csv.{what} = '{s}' must be exactly one ASCII character, e.g. \",\" or \"\\t\"")),
        };
        Ok((one("delimiter", &self.delimiter)?, one("quote", &self.quote)?))
    }
}

/// `[[files]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// Source name, unique per config.
    pub name: String,
    /// The landing directory. Ending in `/{table}`, each subdirectory named
    /// after a declared table (`ns.t`) feeds that table.
    pub path: String,
    /// Target table, unless `path` routes by `{table}`.
    #[serde(default)]
    pub table: Option<TableName>,
    /// File format; `auto` reads it from the extension.
    #[serde(default)]
    pub format: FileFormat,
    /// CSV options.
    #[serde(default)]
    pub csv: CsvOptions,
    /// How often the landing area is listed, e.g. `"10s"`.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
    /// What to do with a file once it is committed.
    #[serde(default)]
    pub post_action: PostAction,
    /// Endpoint and credentials of an `s3://` landing area; default the
    /// S3 warehouse's, else the AWS environment.
    #[serde(default)]
    pub s3: Option<S3Config>,
    /// Overrides `[commit] max_rows` for this source.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Overrides `[commit] max_bytes` for this source.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Overrides `[commit] max_latency` for this source.
    #[serde(default)]
    pub max_latency: Option<String>,
}

fn default_poll_interval() -> String {
    "10s".to_owned()
}

/// Where a source's files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every file to one table.
    Table(TableName),
    /// Each subdirectory of the landing directory to the table it names.
    ByDirectory,
}

/// A validated file source.
#[derive(Debug, Clone)]
pub struct FilesDef {
    /// Source name.
    pub name: String,
    /// The landing directory or `s3://bucket/prefix` (without `/{table}`).
    pub root: String,
    /// Settings for an `s3://` root.
    pub s3: S3Config,
    /// Where files go.
    pub route: Route,
    /// File format.
    pub format: FileFormat,
    /// CSV options.
    pub csv: CsvOptions,
    /// Listing interval.
    pub poll_interval: Duration,
    /// Post-commit action.
    pub post_action: PostAction,
    /// Commit triggers.
    pub commit: CommitPolicy,
}

impl FilesDef {
    /// A one-off load of files into `table` (`tributary load`).
    pub fn one_off(table: TableName, format: FileFormat, csv: CsvOptions, commit: CommitPolicy, s3: S3Config) -> Self {
        Self {
            name: "load".to_owned(),
            root: String::new(),
            s3,
            route: Route::Table(table),
            format,
            csv,
            poll_interval: Duration::ZERO,
            post_action: PostAction::Keep,
            commit,
        }
    }

    /// The tables this source may feed.
    pub fn feeds<'a>(&'a self, tables: &'a [TableDef]) -> impl Iterator<Item = &'a TableDef> + 'a {
        tables.iter().filter(|t| match &self.route {
            Route::Table(name) => &t.name == name,
            Route::ByDirectory => true,
        })
    }
}

impl FilesConfig {
    pub(crate) fn validate(
        &self,
        tables: &[TableDef],
        commit: CommitPolicy,
        warehouse: &Warehouse,
    ) -> Result<FilesDef, String> {
        if !is_identifier(&self.name) {
            return Err(format!("name = '{}': use lowercase letters, digits and '_'", self.name));
        }
        let (root, by_directory) = match self.path.strip_suffix("/{table}") {
            Some(root) => (root, true),
            None => (self.path.as_str(), false),
        };
        if root.trim().is_empty() || root.contains('{') {
            return Err(format!(
                "path = '{}': give the landing directory, optionally ending in '/{{table}}' to route by subdirectory",
                self.path
            ));
        }
        if root.contains("://") && !root.starts_with("s3://") {
            return Err(format!("path = '{}': use a local directory or s3://bucket/prefix", self.path));
        }
        let route = match (&self.table, by_directory) {
            (Some(t), false) => {
                if !tables.iter().any(|d| &d.name == t) {
                    return Err(format!("table = '{t}' is not declared under [[tables]]"));
                }
                Route::Table(t.clone())
            }
            (None, true) => Route::ByDirectory,
            (Some(_), true) => return Err("set either table or a path ending in '/{table}', not both".to_owned()),
            (None, false) => {
                return Err("no target table: set table = \"ns.t\", or end path in '/{table}'".to_owned());
            }
        };
        self.csv.bytes()?;
        let poll_interval = parse_duration(&self.poll_interval).map_err(|e| format!("poll_interval: {e}"))?;
        let commit = commit.overridden(self.max_rows, self.max_bytes, self.max_latency.as_deref())?;
        let s3 = match (&self.s3, warehouse) {
            (Some(own), _) => own.clone(),
            (None, Warehouse::S3 { settings, .. }) => settings.clone(),
            (None, Warehouse::Local(_)) => S3Config::default(),
        };
        Ok(FilesDef {
            name: self.name.clone(),
            root: root.trim_end_matches('/').to_owned(),
            s3,
            route,
            format: self.format,
            csv: self.csv.clone(),
            poll_interval: poll_interval.max(Duration::from_millis(10)),
            post_action: self.post_action,
            commit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::positions::{PositionKind, Positions};

    #[test]
    fn a_key_names_one_version_of_one_file() {
        let key = file_key("/landing/a@b.csv", 120, "1700000000000000000");
        assert_eq!(parse_file_key(&key), Some(("/landing/a@b.csv", "120.1700000000000000000")));
        assert_eq!(PositionKind::of(&key), PositionKind::FileRow);
        assert_eq!(parse_file_key("kafka:c/t/0"), None);
    }

    #[test]
    fn a_finished_file_overtakes_every_batch_of_it() {
        let key = file_key("/l/a.csv", 10, "1");
        let mut committed = Positions::default();
        committed.advance(key.clone(), FILE_DONE + 3);
        assert_eq!(file_progress(FILE_DONE + 3), (3, true));
        assert_eq!(file_progress(3), (3, false));
        for start in [0, 3, 1_000_000] {
            let mut started = Positions::default();
            started.advance(key.clone(), start);
            assert!(committed.overtakes(&started), "a batch from row {start} of a finished file is stale");
            assert!(!committed.falls_behind(&started));
        }
    }
}
