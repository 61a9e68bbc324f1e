//! Ingestion: decode → validate → enrich → dedup → batch → write → commit.
//!
//! Sources (the HTTP endpoint, Kafka, file drops) decode and validate
//! on their own tasks and hand chunks to their table's pipeline
//! ([`pipeline::TablePipeline`]), one task per table that owns every later
//! stage for all of the table's sources: concurrent requests and Kafka
//! chunks share one snapshot per commit interval and source, and the dedup
//! index has a single writer per process.

pub mod columns;
pub mod decode;
pub mod dedup;
pub mod error;
pub mod health;
pub mod outcomes;
pub mod pipeline;
pub mod prepare;
pub mod requests;
pub mod rows;
pub mod sink;
pub mod sources;
pub mod validate;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::config::{TableDef, ValidConfig};
use tributary_core::files::FILES_PIPELINE;
use tributary_core::{Clock, TableName};
use tributary_table::Lake;

pub use decode::{BodyEncoding, BodyFormat};
use dedup::TableDedup;
pub use error::IngestError;
pub use health::Health;
pub use pipeline::Receipt;
use pipeline::{Chunk, Delta, Landed, TablePipeline};
use prepare::{IngestSchema, PreparedTable, prepare};
use requests::Idempotency;
use sources::files::{self, FileSource};
use sources::kafka::KafkaSource;

/// HTTP requests queued per table before senders wait (backpressure).
const QUEUE_DEPTH: usize = 64;

/// The ingest side of one table.
#[derive(Debug, Clone)]
pub struct TableIngest {
    schema: Arc<IngestSchema>,
    tx: mpsc::Sender<Chunk>,
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
        let delta = Delta::Request { request_id, idempotency };
        let p = prepared;
        let (chunk, rx) = Chunk::new(p.batch, p.rejects, p.received, p.bytes, p.ingested_at_us, delta);
        self.tx.send(chunk).await.map_err(|_| IngestError::ShuttingDown)?;
        match rx.await.map_err(|_| IngestError::ShuttingDown)?? {
            Landed::Committed(receipt) => Ok(receipt),
            Landed::Zombie => Err(IngestError::Internal("an HTTP request was taken for replayed input".to_owned())),
        }
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
    /// the tables, and starts one pipeline per table, and every Kafka source,
    /// on `tasks`.
    pub async fn start(
        lake: &Lake,
        config: &ValidConfig,
        clock: Arc<dyn Clock>,
        shutdown: &CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<Self, IngestError> {
        for k in &config.kafka {
            if !config.tables.iter().any(|t| t.name == k.table) {
                return Err(IngestError::UnknownTable(k.table.clone()));
            }
        }
        let health = Health::default();
        let fatal: Arc<std::sync::OnceLock<String>> = Arc::default();
        let mut tables = HashMap::new();
        let mut pipelines = Vec::new();
        for def in &config.tables {
            let prepared = prepare_table(lake, def, config, clock.as_ref(), true).await?;
            let schema = prepared.schema.clone();
            let mut pipeline = TablePipeline::new(lake.clone(), prepared, config, clock.clone())?;
            let tx = pipeline.add_source(format!("http:{}", def.name), config.commit, QUEUE_DEPTH, true);
            for k in config.kafka.iter().filter(|k| k.table == def.name) {
                let id = sources::kafka::pipeline_id(k);
                let chunks = pipeline.add_source(id, k.commit, sources::kafka::queue_depth(&k.commit), false);
                let source =
                    KafkaSource::new(k.clone(), lake.clone(), schema.clone(), chunks, clock.clone(), health.clone())?;
                let name = format!("kafka source '{}'", k.name);
                tasks.spawn(stop_on_failure(name, source.run(shutdown.clone()), shutdown.clone(), fatal.clone()));
            }
            let max_body_bytes = config.max_body_bytes;
            tables.insert(
                def.name.clone(),
                TableIngest { schema: schema.clone(), tx, clock: clock.clone(), max_body_bytes },
            );
            pipelines.push((schema, pipeline));
        }
        for f in &config.files {
            let mut targets = HashMap::new();
            for def in f.feeds(&config.tables) {
                let Some((schema, pipeline)) = pipelines.iter_mut().find(|(s, _)| s.table == def.name) else {
                    continue;
                };
                let chunks = pipeline.add_source(FILES_PIPELINE.to_owned(), f.commit, files::queue_depth(f), false);
                targets.insert(def.name.clone(), files::Target { schema: schema.clone(), chunks });
            }
            let source = FileSource::new(f.clone(), lake.clone(), targets, clock.clone(), health.clone())?;
            let name = format!("file source '{}'", f.name);
            tasks.spawn(stop_on_failure(name, source.run(shutdown.clone()), shutdown.clone(), fatal.clone()));
        }
        for (_, pipeline) in pipelines {
            tasks.spawn(pipeline.run(shutdown.clone()));
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

/// Runs a source until it ends; the first source to fail stops the whole
/// process, in order, and says why.
async fn stop_on_failure(
    name: String,
    source: impl Future<Output = Result<(), IngestError>>,
    shutdown: CancellationToken,
    fatal: Arc<std::sync::OnceLock<String>>,
) {
    if let Err(e) = source.await {
        tracing::error!(source = %name, error = %e, "source failed; shutting down");
        let _ = fatal.set(format!("{name}: {e}"));
        shutdown.cancel();
    }
}

/// Makes `def`'s table ready for ingestion: created or evolved (`ensure`;
/// otherwise it must exist as it is), with its quarantine table, ingest
/// view and dedup index.
async fn prepare_table(
    lake: &Lake,
    def: &TableDef,
    config: &ValidConfig,
    clock: &dyn Clock,
    ensure: bool,
) -> Result<PreparedTable, IngestError> {
    let table = if ensure { lake.ensure_table(def).await } else { lake.load(&def.name).await };
    let table = table.map_err(IngestError::Table)?;
    let quarantine = lake.ensure_quarantine(&def.name).await.map_err(IngestError::Table)?;
    let schema = Arc::new(IngestSchema::new(def, &table, &quarantine)?);
    let dedup = dedup_index(lake, &table, def, config, clock).await?;
    let outcomes = outcomes::Outcomes::new(&def.name);
    Ok(PreparedTable { schema, table, quarantine, dedup, outcomes })
}

/// `tributary load`: lands `files` in `def`'s table once, through the same
/// pipeline as every source, and reconciles what happened. `ensure`
/// creates or evolves the table from `def` (a declared table); otherwise
/// it must exist. `watch` is handed the progress counters.
#[allow(clippy::too_many_arguments)]
pub async fn load(
    lake: &Lake,
    config: &ValidConfig,
    def: &TableDef,
    ensure: bool,
    source: tributary_core::files::FilesDef,
    files: Vec<files::listing::FileRef>,
    clock: Arc<dyn Clock>,
    shutdown: &CancellationToken,
    watch: impl FnOnce(Arc<files::Progress>),
) -> Result<files::Tally, IngestError> {
    let prepared = prepare_table(lake, def, config, clock.as_ref(), ensure).await?;
    let schema = prepared.schema.clone();
    let mut pipeline = TablePipeline::new(lake.clone(), prepared, config, clock.clone())?;
    let chunks = pipeline.add_source(FILES_PIPELINE.to_owned(), source.commit, files::queue_depth(&source), false);
    let landing = tokio::spawn(pipeline.run(shutdown.clone()));
    let targets = HashMap::from([(def.name.clone(), files::Target { schema, chunks })]);
    let mut reader = FileSource::new(source, lake.clone(), targets, clock, Health::default())?;
    watch(reader.progress());
    let tally = reader.load(files, shutdown).await;
    drop(reader);
    landing.await.map_err(|e| IngestError::Internal(format!("table pipeline: {e}")))?;
    tally
}

/// The dedup index of a table with a dedup key, resumed from what the last
/// process stored or rebuilt from the table's recent rows.
async fn dedup_index(
    lake: &Lake,
    table: &tributary_table::LoadedTable,
    def: &TableDef,
    config: &ValidConfig,
    clock: &dyn Clock,
) -> Result<Option<TableDedup>, IngestError> {
    let Some((key, window)) = &def.dedup else { return Ok(None) };
    let settings = dedup::DedupSettings {
        key: key.clone(),
        window: *window,
        memory: def.dedup_memory,
        dir: Some(config.dedup_dir.clone()),
    };
    Ok(Some(TableDedup::open(lake, table, &settings, clock.now().timestamp_micros()).await?))
}
