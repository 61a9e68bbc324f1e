//! The TOML configuration: serde structs that mirror the file, then
//! `validate()` into [`ValidConfig`], the only form the rest of Tributary sees.
//!
//! Unknown keys are refused (`deny_unknown_fields`) and every error names the
//! key that is wrong, because a silently ignored typo in a dedup key or a
//! partition spec costs a user data, not just time. Every key is documented in
//! `docs/configuration.md`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod auth;
mod jobs;
mod maintenance;
mod table;
mod warehouse;

pub use auth::{Access, TokenConfig, TokenDef, is_loopback};
pub use jobs::{JobConfig, JobDef, JobKind, Lookup, Trigger};
pub use maintenance::{MaintenanceConfig, MaintenancePolicy};
pub use table::{DEFAULT_DEDUP_MEMORY, DEFAULT_DEDUP_WINDOW, FieldConfig, TableConfig, TableDef};
pub use warehouse::{S3Config, Sse, Warehouse, WarehouseConfig};

use crate::files::{FilesConfig, FilesDef};
use crate::kafka::{KafkaConfig, KafkaDef};
use crate::table_name::is_identifier;

/// Columns Tributary adds to every ingested table; users may not declare them.
///
/// The source partition and offset are `_source_partition`/`_source_offset`,
/// not `_partition`/`_offset`: Iceberg reserves `_partition` as a metadata
/// column, and iceberg-rust's reader resolves that name to it. A file
/// source puts the row number in `_source_offset` and the file's location
/// in `_source_file` (NULL for other sources).
pub const LINEAGE_COLUMNS: [&str; 6] =
    ["_source", "_source_partition", "_source_offset", "_ingested_at", "_schema_id", "_source_file"];

/// The config file as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where table pointers live.
    #[serde(default)]
    pub catalog: CatalogConfig,
    /// Where data and metadata files live.
    #[serde(default)]
    pub warehouse: WarehouseConfig,
    /// The HTTP server.
    #[serde(default)]
    pub server: ServerConfig,
    /// When buffered records become a snapshot.
    #[serde(default)]
    pub commit: CommitConfig,
    /// Compaction and snapshot expiry.
    #[serde(default)]
    pub maintenance: MaintenanceConfig,
    /// The tables to create and ingest into.
    #[serde(default)]
    pub tables: Vec<TableConfig>,
    /// Kafka sources.
    #[serde(default)]
    pub kafka: Vec<KafkaConfig>,
    /// Landing areas polled for file drops.
    #[serde(default)]
    pub files: Vec<FilesConfig>,
    /// Zone jobs: cleansed and curated tables kept up to date.
    #[serde(default)]
    pub jobs: Vec<JobConfig>,
    /// Access tokens; none: an open server, on loopback only.
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
}

/// `[catalog]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// `sqlite://PATH` or `postgres://...`; default: the SQLite file
    /// `DATA_DIR/catalog.db`.
    #[serde(default)]
    pub url: Option<String>,
    /// Catalog name as PyIceberg's `SqlCatalog` sees it.
    #[serde(default = "default_catalog_name")]
    pub name: String,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        Self { url: None, name: default_catalog_name() }
    }
}

fn default_catalog_name() -> String {
    "tributary".to_owned()
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// HTTP listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Largest accepted request body, in bytes.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` is remembered, e.g. `"24h"`.
    #[serde(default = "default_idempotency_window")]
    pub idempotency_window: String,
    /// Serve on a non-loopback address without `[[tokens]]`.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Postgres wire protocol listen address; none: not served.
    #[serde(default)]
    pub pg_listen: Option<String>,
    /// TLS for every listener.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            max_body_bytes: default_max_body(),
            idempotency_window: default_idempotency_window(),
            allow_unauthenticated: false,
            pg_listen: None,
            tls: None,
        }
    }
}

/// `[server.tls]`: a PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM), the server's certificate first.
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

fn default_idempotency_window() -> String {
    "10m".to_owned()
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_max_body() -> usize {
    16 * 1024 * 1024
}

/// `[commit]`: a snapshot is cut when any trigger fires.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommitConfig {
    /// Rows buffered per table before a commit.
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Bytes of input buffered per table before a commit.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// Longest a record waits for its commit, e.g. `"200ms"`.
    #[serde(default = "default_max_latency")]
    pub max_latency: String,
    /// Target size of each Parquet data file.
    #[serde(default = "default_file_size")]
    pub target_file_size_bytes: usize,
}

impl Default for CommitConfig {
    fn default() -> Self {
        Self {
            max_rows: default_max_rows(),
            max_bytes: default_max_bytes(),
            max_latency: default_max_latency(),
            target_file_size_bytes: default_file_size(),
        }
    }
}

fn default_max_rows() -> usize {
    200_000
}
fn default_max_bytes() -> usize {
    64 * 1024 * 1024
}
fn default_max_latency() -> String {
    "200ms".to_owned()
}
fn default_file_size() -> usize {
    128 * 1024 * 1024
}

/// A validated configuration with every default resolved.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// Catalog database URL (`sqlite://...` or `postgres://...`).
    pub catalog_url: String,
    /// Catalog name shared with other Iceberg clients.
    pub catalog_name: String,
    /// Where data and metadata files live.
    pub warehouse: Warehouse,
    /// Local state derived from the tables (the dedup indexes' runs):
    /// `DATA_DIR/dedup`.
    pub dedup_dir: PathBuf,
    /// HTTP listen address.
    pub listen: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window: Duration,
    /// Commit triggers.
    pub commit: CommitPolicy,
    /// Tables, in config order.
    pub tables: Vec<TableDef>,
    /// Each table's maintenance, in the order of `tables`.
    pub maintenance: Vec<MaintenancePolicy>,
    /// `[maintenance]` itself: the policy of tables the config does not declare.
    pub maintenance_defaults: MaintenancePolicy,
    /// Kafka sources.
    pub kafka: Vec<KafkaDef>,
    /// File sources.
    pub files: Vec<FilesDef>,
    /// Zone jobs, each after the jobs it depends on.
    pub jobs: Vec<JobDef>,
    /// Access tokens; empty: no authentication.
    pub tokens: Vec<TokenDef>,
    /// Serve a non-loopback address without tokens.
    pub allow_unauthenticated: bool,
    /// Postgres wire protocol listen address.
    pub pg_listen: Option<String>,
    /// TLS for every listener.
    pub tls: Option<TlsConfig>,
}

impl ValidConfig {
    /// Refuses to serve every table to anyone who can reach a listener:
    /// without tokens, only loopback addresses, unless
    /// `allow_unauthenticated`. Checked again after `--http`/`--pg`.
    pub fn check_exposure(&self) -> Result<(), String> {
        if !self.tokens.is_empty() || self.allow_unauthenticated {
            return Ok(());
        }
        for (key, addr) in [("server.listen", Some(&self.listen)), ("server.pg_listen", self.pg_listen.as_ref())] {
            if let Some(addr) = addr.filter(|a| !is_loopback(a)) {
                return Err(format!(
                    "{key} = '{addr}' is reachable from other machines, and no [[tokens]] are configured: anyone \
                     could read and write every table. Add [[tokens]] (`tributary token hash` makes one), listen on \
                     127.0.0.1, or set server.allow_unauthenticated = true if something in front authenticates"
                ));
            }
        }
        Ok(())
    }

    /// The maintenance of `table`; `[maintenance]` for a table the config
    /// does not declare.
    pub fn maintenance_for(&self, table: &crate::TableName) -> MaintenancePolicy {
        let declared = self.tables.iter().position(|t| &t.name == table);
        declared.map_or_else(|| self.maintenance_defaults.clone(), |i| self.maintenance[i].clone())
    }
}

/// When buffered rows become a snapshot.
#[derive(Debug, Clone, Copy)]
pub struct CommitPolicy {
    /// Row trigger.
    pub max_rows: usize,
    /// Byte trigger.
    pub max_bytes: usize,
    /// Age trigger.
    pub max_latency: Duration,
    /// Target Parquet file size.
    pub target_file_size_bytes: usize,
}

impl CommitPolicy {
    /// These triggers with a source's own `max_rows`, `max_bytes` and
    /// `max_latency`, where it sets them.
    pub(crate) fn overridden(
        self,
        max_rows: Option<usize>,
        max_bytes: Option<usize>,
        max_latency: Option<&str>,
    ) -> Result<Self, String> {
        let max_latency = match max_latency {
            Some(l) => parse_duration(l).map_err(|e| format!("max_latency: {e}"))?,
            None => self.max_latency,
        };
        Ok(Self {
            max_rows: max_rows.unwrap_or(self.max_rows).max(1),
            max_bytes: max_bytes.unwrap_or(self.max_bytes).max(1),
            max_latency: max_latency.max(Duration::from_millis(1)),
            target_file_size_bytes: self.target_file_size_bytes,
        })
    }
}

impl Config {
    /// Parses TOML text; errors carry the line and the offending key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// Resolves defaults against `data_dir` and checks every table.
    pub fn validate(&self, data_dir: &Path) -> Result<ValidConfig, String> {
        let catalog_url = match &self.catalog.url {
            Some(u) if u.starts_with("sqlite:") || u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                u.clone()
            }
            Some(u) => {
                return Err(format!(
                    "catalog.url = '{u}': use 'sqlite:///path/catalog.db' or 'postgres://user@host/db'"
                ));
            }
            None => format!("sqlite://{}", data_dir.join("catalog.db").display()),
        };
        if !is_identifier(&self.catalog.name) {
            return Err(format!("catalog.name = '{}' must be a lowercase identifier", self.catalog.name));
        }
        let warehouse = self.warehouse.resolve(data_dir)?;
        let max_latency = parse_duration(&self.commit.max_latency).map_err(|e| format!("commit.max_latency: {e}"))?;
        if self.commit.max_rows == 0 || self.commit.max_bytes == 0 {
            return Err("commit.max_rows and commit.max_bytes must be at least 1".to_owned());
        }
        let port = self.server.listen.rsplit_once(':').map(|(_, port)| port.parse::<u16>());
        if !matches!(port, Some(Ok(_))) {
            return Err(format!(
                "server.listen = '{}' needs a numeric port, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
                self.server.listen
            ));
        }
        if self.server.max_body_bytes == 0 {
            return Err("server.max_body_bytes must be at least 1".to_owned());
        }
        let idempotency_window =
            parse_duration(&self.server.idempotency_window).map_err(|e| format!("server.idempotency_window: {e}"))?;
        let mut seen = HashSet::new();
        let mut tables = Vec::with_capacity(self.tables.len());
        for (i, t) in self.tables.iter().enumerate() {
            let def = t.validate().map_err(|e| format!("tables[{i}] ({}): {e}", t.name))?;
            if !seen.insert(def.name.clone()) {
                return Err(format!("tables[{i}]: table '{}' is declared twice", def.name));
            }
            tables.push(def);
        }
        let commit = CommitPolicy {
            max_rows: self.commit.max_rows,
            max_bytes: self.commit.max_bytes,
            max_latency,
            target_file_size_bytes: self.commit.target_file_size_bytes.max(1024),
        };
        let defaults = MaintenancePolicy::defaults(commit.target_file_size_bytes);
        let section = self.maintenance.resolve(&defaults, "maintenance", idempotency_window)?;
        let maintenance = self
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let what = format!("tables[{i}].maintenance");
                let policy = match &t.maintenance {
                    Some(over) => over.resolve(&section, &what, idempotency_window)?,
                    None => section.clone(),
                };
                policy.check_sort_by(&tables[i], &what)?;
                Ok(policy)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut kafka = Vec::with_capacity(self.kafka.len());
        let mut names = HashSet::new();
        for (i, k) in self.kafka.iter().enumerate() {
            let def = k.validate(&tables, commit).map_err(|e| format!("kafka[{i}] ({}): {e}", k.name))?;
            if !names.insert(def.name.clone()) {
                return Err(format!("kafka[{i}]: pipeline name '{}' is used twice", def.name));
            }
            kafka.push(def);
        }
        let mut files = Vec::with_capacity(self.files.len());
        for (i, f) in self.files.iter().enumerate() {
            let def = f.validate(&tables, commit, &warehouse).map_err(|e| format!("files[{i}] ({}): {e}", f.name))?;
            if !names.insert(def.name.clone()) {
                return Err(format!("files[{i}]: source name '{}' is used twice", def.name));
            }
            files.push(def);
        }
        let jobs = jobs::validate_jobs(&self.jobs, &tables)?;
        let tokens = auth::validate_tokens(&self.tokens)?;
        if let Some(pg) = &self.server.pg_listen
            && !matches!(pg.rsplit_once(':').map(|(_, p)| p.parse::<u16>()), Some(Ok(_)))
        {
            return Err(format!("server.pg_listen = '{pg}' needs a numeric port, e.g. \"127.0.0.1:5433\""));
        }
        let valid = ValidConfig {
            catalog_url,
            catalog_name: self.catalog.name.clone(),
            warehouse,
            dedup_dir: data_dir.join("dedup"),
            listen: self.server.listen.clone(),
            max_body_bytes: self.server.max_body_bytes,
            idempotency_window,
            commit,
            tables,
            maintenance,
            maintenance_defaults: section,
            kafka,
            files,
            jobs,
            tokens,
            allow_unauthenticated: self.server.allow_unauthenticated,
            pg_listen: self.server.pg_listen.clone(),
            tls: self.server.tls.clone(),
        };
        valid.check_exposure()?;
        Ok(valid)
    }
}

/// Parses `250ms`, `30s`, `15m`, `24h` or `7d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a duration; write e.g. 200ms, 30s, 15m, 24h, 7d"))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86_400),
        _ => return Err(format!("'{s}' has unit '{unit}'; use ms, s, m, h or d")),
    })
}

/// Parses a size: `1048576`, `512KiB`, `256MiB` or `2GiB`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("'{s}' is not a size; write e.g. 512KiB, 256MiB or 2GiB"))?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        u => return Err(format!("'{s}' has unit '{u}'; use B, KiB, MiB or GiB")),
    };
    n.checked_mul(1 << shift).ok_or_else(|| format!("'{s}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{EpochUnit, FieldType, TimestampRange};

    const GOOD: &str = r#"
[[tables]]
name = "raw.transactions"
partition = ["day(event_time)"]
dedup_key = "event_id"
dedup_window = "1h"
event_time = "event_time"
fields = [
  { name = "event_id", type = "string", required = true },
  { name = "amount", type = "decimal(12,2)" },
  { name = "event_time", type = "timestamptz", required = true },
  { name = "tags", type = "list", element = { type = "string" } },
  { name = "geo", type = "struct", fields = [{ name = "lat", type = "double" }] },
]
"#;

    #[test]
    fn valid_config_resolves_embedded_defaults() {
        let v = Config::from_toml(GOOD).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!(v.catalog_url, "sqlite:///d/catalog.db");
        assert_eq!(v.warehouse, Warehouse::Local(PathBuf::from("/d/warehouse")));
        assert_eq!(v.tables[0].dedup, Some(("event_id".to_owned(), Duration::from_secs(3600))));
        assert_eq!(v.tables[0].dedup_memory, 256 << 20);
        assert_eq!(v.dedup_dir, PathBuf::from("/d/dedup"));
        assert!(matches!(v.tables[0].fields[3].ty, FieldType::List(_)));
    }

    #[test]
    fn the_dedup_memory_bound_is_a_size_of_at_least_a_mebibyte() {
        let with = |m: &str| {
            let text = GOOD.replace("dedup_window = \"1h\"", &format!("dedup_window = \"1h\"\ndedup_memory = \"{m}\""));
            Config::from_toml(&text).unwrap().validate(Path::new("/d"))
        };
        assert_eq!(with("64MiB").unwrap().tables[0].dedup_memory, 64 << 20);
        assert_eq!(with("2GiB").unwrap().tables[0].dedup_memory, 2 << 30);
        let err = with("512KiB").unwrap_err();
        assert!(err.contains("dedup_memory") && err.contains("1MiB"), "{err}");
        let err = with("lots").unwrap_err();
        assert!(err.contains("dedup_memory") && err.contains("256MiB"), "{err}");
        assert!(parse_bytes("3MB").unwrap_err().contains("MiB"));
    }

    #[test]
    fn unknown_key_error_names_the_key_and_line() {
        let err = Config::from_toml("[server]\nlisen = \"x\"\n").unwrap_err();
        assert!(err.contains("lisen"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn wrong_type_error_names_the_key() {
        let err = Config::from_toml("[commit]\nmax_rows = \"many\"\n").unwrap_err();
        assert!(err.contains("max_rows"), "{err}");
    }

    #[test]
    fn semantic_errors_point_at_the_table_and_key() {
        let bad = GOOD.replace("dedup_key = \"event_id\"", "dedup_key = \"nope\"");
        let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("tables[0]") && err.contains("dedup_key"), "{err}");
        let bad = GOOD.replace("day(event_time)", "day(amount)");
        let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("partition[0]"), "{err}");
        let bad = GOOD.replace("name = \"amount\"", "name = \"_source\"");
        let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("lineage"), "{err}");
    }

    #[test]
    fn kafka_sources_are_validated_against_tables() {
        let ok = format!(
            "{GOOD}\n[[kafka]]\nname = \"orders\"\nbrokers = \"127.0.0.1:9092\"\ntopics = [\"orders\"]\ngroup_id = \"g\"\ntable = \"raw.transactions\"\nkey_field = \"event_id\"\nmax_latency = \"1s\"\n"
        );
        let v = Config::from_toml(&ok).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!(v.kafka[0].commit.max_latency, Duration::from_secs(1));
        let err = Config::from_toml(&ok.replace("table = \"raw.transactions\"", "table = \"raw.nope\""))
            .unwrap()
            .validate(Path::new("/d"))
            .unwrap_err();
        assert!(err.contains("kafka[0]") && err.contains("raw.nope"), "{err}");
        let bad_regex = ok.replace("topics = [\"orders\"]", "topics = [\"^orders-([\"]");
        let err = Config::from_toml(&bad_regex).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("topics[0] = '^orders-(['") && err.contains("regular expression"), "{err}");
        let owned = format!("{ok}properties = {{ \"enable.auto.commit\" = \"true\" }}\n");
        let err = Config::from_toml(&owned).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("enable.auto.commit"), "{err}");
    }

    #[test]
    fn file_sources_name_a_table_or_route_by_directory() {
        let ok = format!("{GOOD}\n[[files]]\nname = \"drops\"\npath = \"/landing\"\ntable = \"raw.transactions\"\n");
        let v = Config::from_toml(&ok).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!(v.files[0].route, crate::files::Route::Table(crate::TableName::parse("raw.transactions").unwrap()));
        assert_eq!(v.files[0].poll_interval, Duration::from_secs(10));
        let routed = format!("{GOOD}\n[[files]]\nname = \"drops\"\npath = \"/landing/{{table}}\"\n");
        let v = Config::from_toml(&routed).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!((v.files[0].root.as_str(), &v.files[0].route), ("/landing", &crate::files::Route::ByDirectory));
        for (bad, says) in [
            (ok.replace("table = \"raw.transactions\"", "table = \"raw.nope\""), "raw.nope"),
            (ok.replace("table = \"raw.transactions\"", ""), "no target table"),
            (format!("{ok}csv = {{ delimiter = \";;\" }}\n"), "csv.delimiter"),
            (format!("{ok}poll_interval = \"soon\"\n"), "poll_interval"),
            (ok.replace("/landing", "gs://bucket/landing"), "s3://bucket/prefix"),
        ] {
            let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
            assert!(err.contains("files[0]") && err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn timestamp_units_and_range_are_read_and_checked() {
        let cfg = GOOD
            .replace("type = \"timestamptz\", required = true", "type = \"timestamptz\", required = true, unit = \"s\"")
            .replace("event_time = \"event_time\"", "event_time = \"event_time\"\nmin_timestamp = \"2000-01-01\"");
        let v = Config::from_toml(&cfg).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!(v.tables[0].fields[2].epoch_unit, EpochUnit::Seconds);
        assert_eq!(v.tables[0].timestamp_range.min_us, 946_684_800_000_000);
        assert_eq!(v.tables[0].timestamp_range.max_us, TimestampRange::default().max_us);
        let bad = GOOD.replace("type = \"decimal(12,2)\"", "type = \"decimal(12,2)\", unit = \"s\"");
        let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("fields[1].unit applies to timestamp columns only"), "{err}");
        let bad = cfg.replace("unit = \"s\"", "unit = \"sec\"");
        let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("fields[2].unit") && err.contains("\"ms\""), "{err}");
        let bad = cfg.replace("2000-01-01", "last year");
        let err = Config::from_toml(&bad).unwrap().validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("min_timestamp = 'last year'"), "{err}");
    }

    #[test]
    fn a_listen_address_without_a_numeric_port_fails_check() {
        for bad in ["localhost:http", "127.0.0.1", "[::1]:99999"] {
            let cfg = format!("[server]\nlisten = \"{bad}\"\n");
            let err = Config::from_toml(&cfg).unwrap().validate(Path::new("/d")).unwrap_err();
            assert!(err.contains("server.listen") && err.contains(bad), "{err}");
        }
        let ok = Config::from_toml("[server]\nlisten = \"localhost:8080\"\n").unwrap();
        assert!(ok.validate(Path::new("/d")).is_ok());
    }

    #[test]
    fn an_open_server_stays_on_loopback_unless_told_otherwise() {
        let open = Config::from_toml("[server]\nlisten = \"0.0.0.0:8080\"\n").unwrap();
        let err = open.validate(Path::new("/d")).unwrap_err();
        assert!(err.contains("server.listen = '0.0.0.0:8080'") && err.contains("[[tokens]]"), "{err}");
        let allowed = Config::from_toml("[server]\nlisten = \"0.0.0.0:8080\"\nallow_unauthenticated = true\n").unwrap();
        assert!(allowed.validate(Path::new("/d")).is_ok());
        let guarded = format!(
            "[server]\nlisten = \"0.0.0.0:8080\"\n[[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nscopes = {{ \"*\" = \"admin\" }}\n",
            "0f".repeat(32)
        );
        let v = Config::from_toml(&guarded).unwrap().validate(Path::new("/d")).unwrap();
        assert_eq!(v.tokens[0].access("raw"), Some(Access::Admin));
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_duration("2 weeks").is_err());
    }
}
