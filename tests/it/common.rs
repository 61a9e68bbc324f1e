//! Shared fixtures: a throwaway lake, a running server, HTTP helpers.
#![allow(dead_code)]

use std::path::Path;

use arrow_array::RecordBatch;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tributary_core::config::{Config, ValidConfig};
use tributary_server::Server;
use tributary_table::{Lake, LoadedTable};

/// The quickstart's table, with a dedup key and a day partition.
pub const TRANSACTIONS: &str = r#"
[server]
listen = "127.0.0.1:0"
max_body_bytes = 1048576

[commit]
max_latency = "20ms"

[[tables]]
name = "raw.transactions"
partition = ["day(event_time)"]
dedup_key = "event_id"
event_time = "event_time"
fields = [
  { name = "event_id",   type = "string",        required = true },
  { name = "user_id",    type = "long",          required = true },
  { name = "amount",     type = "decimal(12,2)", required = true },
  { name = "currency",   type = "string" },
  { name = "event_time", type = "timestamptz",   required = true },
]
"#;

/// [`TRANSACTIONS`] without a dedup key: exactly-once rests on positions
/// and idempotency keys alone.
pub fn without_dedup_key(toml: &str) -> String {
    toml.replace("dedup_key = \"event_id\"\n", "")
}

pub fn config(toml: &str, dir: &Path) -> ValidConfig {
    Config::from_toml(toml).unwrap().validate(dir).unwrap()
}

pub struct Running {
    pub server: Server,
    pub shutdown: CancellationToken,
    pub base: String,
    pub client: reqwest::Client,
}

pub async fn start(cfg: &ValidConfig) -> Running {
    let shutdown = CancellationToken::new();
    let server = tributary_server::start(cfg, shutdown.clone()).await.unwrap();
    let base = format!("http://{}", server.addr);
    Running { server, shutdown, base, client: reqwest::Client::new() }
}

impl Running {
    pub async fn post(&self, table: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self.client.post(format!("{}/v1/tables/{table}/events", self.base)).body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POSTs `body` with an `Idempotency-Key` header.
    pub async fn post_with_key(&self, table: &str, key: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let url = format!("{}/v1/tables/{table}/events", self.base);
        let resp = self.client.post(url).header("Idempotency-Key", key).body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn sql(&self, sql: &str) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/v1/sql", self.base))
            .json(&serde_json::json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn count(&self, table: &str) -> i64 {
        let (status, v) = self.sql(&format!("SELECT count(*) FROM {table}")).await;
        assert_eq!(status, 200, "{v}");
        v["rows"][0][0].as_i64().unwrap()
    }

    /// The Prometheus exposition text.
    pub async fn metrics(&self) -> String {
        self.client.get(format!("{}/metrics", self.base)).send().await.unwrap().text().await.unwrap()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.server.wait().await.unwrap();
    }
}

/// The sum of the samples of metric `name` whose labels include every entry
/// of `labels` (each written `key="value"`); `None` if there is none.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' ')))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

/// Waits until `table` holds `rows` rows (a source landing in the
/// background), and fails if it ever holds more.
pub async fn wait_for_rows(srv: &Running, table: &str, rows: i64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let n = srv.count(table).await;
        if n >= rows {
            assert_eq!(n, rows, "{table} holds more rows than were offered");
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{table} reached only {n} of {rows} rows");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// One good event as NDJSON.
pub fn event(id: &str, amount: &str) -> String {
    format!(
        r#"{{"event_id":"{id}","user_id":7,"amount":"{amount}","currency":"EUR","event_time":"2026-11-20T10:00:00Z"}}"#
    )
}

/// Opens a fresh handle on the lake behind `cfg`.
pub async fn open_lake(cfg: &ValidConfig) -> Lake {
    Lake::open(&cfg.catalog_url, &cfg.catalog_name, &cfg.warehouse).await.unwrap()
}

/// Reads every row of a table state with iceberg-rust's own scan.
pub async fn scan_all(lake: &Lake, table: &LoadedTable) -> Vec<RecordBatch> {
    use futures::TryStreamExt;
    if table.current_snapshot_id().is_none() {
        return Vec::new();
    }
    let scan = lake.iceberg_table(table).unwrap().scan().build().unwrap();
    scan.to_arrow().await.unwrap().try_collect().await.unwrap()
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// A self-signed certificate for 127.0.0.1 made with openssl in `dir`; its
/// path, and the `[server]` line that serves it.
pub fn test_certificate(dir: &Path) -> (std::path::PathBuf, String) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed by dev/test.sh");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let line = format!("tls = {{ cert = \"{}\", key = \"{}\" }}\n", cert.display(), key.display());
    (cert, line)
}
