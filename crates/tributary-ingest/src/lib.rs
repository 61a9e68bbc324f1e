//! Ingestion: decode → validate → enrich → dedup → batch → write → commit.
//!
//! Sources (today the HTTP endpoint; Kafka and file drops later) hand raw
//! bodies to a [`TableIngest`]; each table has one committer task that owns
//! its write path, so concurrent requests share one snapshot per commit
//! interval and the dedup index has a single owner.

pub mod columns;
pub mod committer;
pub mod decode;
pub mod dedup;
pub mod error;
pub mod health;
pub mod outcomes;
pub mod prepare;
pub mod requests;
pub mod sink;
pub mod sources;
pub mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::config::ValidConfig;
use tributary_core::{Clock, TableName};
use tributary_table::Lake;

pub use committer::Receipt;
use committer::{Committer, Submission};
pub use decode::{BodyEncoding, BodyFormat};
use dedup::TableDedup;
pub use error::IngestError;
pub use health::Health;
use prepare::{IngestSchema, PreparedTable, prepare};
use requests::Idempotency;
use sources::kafka::KafkaPipeline;

/// Submissions queued per table before senders wait (backpressure).
const QUEUE_DEPTH: usize = 64;

/// The ingest side of one table.
#[derive(Debug, Clone)]
pub struct TableIngest {
    schema: Arc<IngestSchema>,
    tx: mpsc::Sender<Submission>,
    clock: Arc<dyn Clock>,
    /// Largest body accepted once decompressed.
    max_body_bytes: usize,
}

/// One request body as received, with how it is framed and compressed.
#[derive(Debug, Clone)]
pub struct Body {
    /// The bytes as sent.
    pub bytes: Bytes,
    /// The declared framing.
    pub format: BodyFormat,
    /// The declared compression.
    pub encoding: BodyEncoding,
    /// The client's `Idempotency-Key`, if it sent one.
    pub idempotency_key: Option<String>,
}

impl From<Bytes> for Body {
    /// An uncompressed body whose format is sniffed.
    fn from(bytes: Bytes) -> Self {
        Self { bytes, format: BodyFormat::Sniff, encoding: BodyEncoding::Identity, idempotency_key: None }
    }
}

impl TableIngest {
    /// Ingests one body and waits for its commit. The receipt carries the
    /// request id that the quarantine table's `position` column names; a
    /// retry under an answered `Idempotency-Key` gets the original receipt.
    pub async fn ingest(&self, body: Body, source: &'static str) -> Result<Receipt, IngestError> {
        let schema = self.schema.clone();
        let now = self.clock.now().timestamp_micros();
        let request_id = uuid::Uuid::now_v7().to_string();
        let limit = self.max_body_bytes;
        let id = request_id.clone();
        let (idempotency, prepared) = tokio::task::spawn_blocking(move || {
            let bytes = body.encoding.decode(body.bytes, limit)?;
            let idempotency = body.idempotency_key.map(|k| Idempotency::parse(&k, &bytes)).transpose()?;
            Ok::<_, IngestError>((idempotency, prepare(&schema, &bytes, body.format, source, &id, now)?))
        })
        .await
        .map_err(|e| IngestError::Internal(format!("validation task: {e}")))??;
        let (reply, rx) = oneshot::channel();
        let submission = Submission { request_id, idempotency, prepared, reply };
        self.tx.send(submission).await.map_err(|_| IngestError::ShuttingDown)?;
        rx.await.map_err(|_| IngestError::ShuttingDown)?
    }

    /// The table this ingests into.
    pub fn table(&self) -> &TableName {
        &self.schema.table
    }
}

/// Every configured table's ingest side.
#[derive(Debug, Clone, Default)]
pub struct IngestService {
    tables: HashMap<TableName, TableIngest>,
    /// The error that stopped the process, if a source failed.
    fatal: Arc<std::sync::OnceLock<String>>,
    /// Whether each source can reach what it reads from.
    health: Health,
}

impl IngestService {
    /// Creates or evolves every configured table, rebuilds dedup state from
    /// the tables, and starts one committer per table on `tasks`.
    pub async fn start(
        lake: &Lake,
        config: &ValidConfig,
        clock: Arc<dyn Clock>,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Self, IngestError> {
        let mut prepared = Vec::with_capacity(config.tables.len());
        for def in &config.tables {
            let table = lake.ensure_table(def).await.map_err(IngestError::Table)?;
            let quarantine = lake.ensure_quarantine(&def.name).await.map_err(IngestError::Table)?;
            let schema = Arc::new(IngestSchema::new(def, &table, &quarantine)?);
            let dedup = dedup_index(lake, &table, def, clock.as_ref()).await?;
            let outcomes = outcomes::Outcomes::new(&def.name);
            prepared.push(PreparedTable { schema, table, quarantine, dedup, outcomes });
        }
        // Every source of a table shares its one dedup index.
        let health = Health::default();
        let pipelines = config
            .kafka
            .iter()
            .map(|k| {
                let table = prepared.iter().find(|p| p.schema.table == k.table);
                let table = table.cloned().ok_or_else(|| IngestError::UnknownTable(k.table.clone()))?;
                Ok(KafkaPipeline::new(k.clone(), lake.clone(), table, clock.clone(), health.clone()))
            })
            .collect::<Result<Vec<_>, IngestError>>()?;
        let mut tables = HashMap::new();
        for table in prepared {
            let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
            let schema = table.schema.clone();
            let committer = Committer::new(lake.clone(), table, config, clock.clone())?;
            tasks.spawn(committer.run(rx, shutdown.clone()));
            let max_body_bytes = config.max_body_bytes;
            tables.insert(schema.table.clone(), TableIngest { schema, tx, clock: clock.clone(), max_body_bytes });
        }
        let fatal: Arc<std::sync::OnceLock<String>> = Arc::default();
        for (k, pipeline) in config.kafka.iter().zip(pipelines) {
            let token = shutdown.clone();
            let name = k.name.clone();
            let fatal = fatal.clone();
            tasks.spawn(async move {
                if let Err(e) = pipeline.run(token.clone()).await {
                    // The first fatal error stops the whole process, in order.
                    tracing::error!(source = %name, error = %e, "kafka source failed; shutting down");
                    let _ = fatal.set(format!("kafka source '{name}': {e}"));
                    token.cancel();
                }
            });
        }
        Ok(Self { tables, fatal, health })
    }

    /// The error that made a source stop the process, if any.
    pub fn fatal_error(&self) -> Option<&str> {
        self.fatal.get().map(String::as_str)
    }

    /// Whether each source can do its work, with the reason if not.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The ingest side of `table`.
    pub fn table(&self, table: &TableName) -> Result<&TableIngest, IngestError> {
        self.tables.get(table).ok_or_else(|| IngestError::UnknownTable(table.clone()))
    }
}

/// The dedup index of a table with a dedup key, rebuilt from its recent rows.
async fn dedup_index(
    lake: &Lake,
    table: &tributary_table::LoadedTable,
    def: &tributary_core::config::TableDef,
    clock: &dyn Clock,
) -> Result<Option<TableDedup>, IngestError> {
    let Some((key, window)) = &def.dedup else { return Ok(None) };
    let now = clock.now().timestamp_micros();
    Ok(Some(TableDedup::rebuild(lake, table, key, *window, now).await.map_err(IngestError::Table)?))
}
