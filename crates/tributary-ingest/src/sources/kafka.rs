//! Kafka source: a consumer-group member that reads its partitions into
//! chunks for its table's pipeline, which lands them exactly once.
//!
//! Positions live in the table, not in Kafka. Every chunk carries, per
//! partition, the offsets it read `[from, to)`; the pipeline stamps `to` into
//! the same snapshot as the rows (`kafka:<cluster>/<topic>/<partition>`) and
//! applies the zombie rule to `from`: if the table is already past where the
//! input began, another worker landed it and the chunk is dropped. On start,
//! on every rebalance, and after a chunk that did not land, the source reloads
//! the table's positions, re-seeks, and reads on under a new read generation
//! (the pipeline refuses the rest of the old one). Kafka's own group offsets
//! are committed afterwards, for lag monitoring only.
//!
//! Rejected records go to the quarantine table before the rows, stamped with
//! the same positions; on replay a reject below the quarantine table's
//! position is skipped, so quarantine is exactly-once as well.
//!
//! A chunk is sealed when it is full, or a moment ([`linger`]) after its
//! first record, so a backlog travels in large chunks and no record waits in
//! the source more than a few milliseconds: a record still in the source
//! when its lane's age trigger fires misses that landing. The source keeps reading while the
//! pipeline lands; when more than two commit batches' worth is in flight, it
//! stops taking messages (backpressure) and lets librdkafka's prefetch queue
//! fill; if that lasts seconds, it pauses its partitions and polls again, so
//! that rebalances and errors are still served.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;
use tributary_core::Clock;
use tributary_core::config::CommitPolicy;
use tributary_core::kafka::KafkaDef;
use tributary_core::metrics as m;
use tributary_table::Lake;

mod batch;
mod context;
mod cursor;
mod flow;
mod health;
mod seek;

use crate::error::IngestError;
use crate::health::Health;
use crate::pipeline::{Chunk, Landed};
use crate::prepare::{IngestSchema, Lineage, Reject};
use crate::rows::Rows;
use batch::Batch;
pub use context::check_client;
use context::{Context, Shared, client_config, consumer_error};
use cursor::Cursor;
use flow::{Flow, hold_deadline};

type Tp = (String, i32);

/// Most records in one chunk; a commit batch is made of several.
const CHUNK_RECORDS: usize = 4096;
/// Most bytes in one chunk.
const CHUNK_BYTES: usize = 4 << 20;
/// Most messages taken in one go between looks at the pipeline's answers
/// and the shutdown token: about a millisecond of validation.
const BURST: usize = 512;

/// How long a chunk gathers messages after its first: short against the
/// commit interval, long enough that a steady stream does not travel one
/// message per chunk (each chunk has a fixed cost, and the channel would
/// fill with tiny ones while a landing runs).
fn linger(commit: &CommitPolicy) -> Duration {
    (commit.max_latency / 10).min(Duration::from_millis(20))
}

/// Most records in one of this source's chunks.
fn chunk_records(commit: &CommitPolicy) -> usize {
    CHUNK_RECORDS.min(commit.max_rows)
}

/// Chunks a source may queue: two commit batches' worth of full chunks, the
/// bound at which it pauses anyway.
pub fn queue_depth(commit: &CommitPolicy) -> usize {
    2 * commit.max_rows.div_ceil(chunk_records(commit)) + 2
}

/// A chunk handed to the pipeline and not answered yet.
struct Sent {
    epoch: u64,
    /// Next offset per partition once it lands.
    ends: Vec<(Tp, i64)>,
    records: usize,
    bytes: usize,
    ack: tokio::sync::oneshot::Receiver<Result<Landed, IngestError>>,
}

/// What the source's loop woke up for.
enum Event<'a> {
    Answer(Result<Result<Landed, IngestError>, tokio::sync::oneshot::error::RecvError>),
    /// The channel has room for the sealed chunk.
    Room,
    Message(rdkafka::error::KafkaResult<BorrowedMessage<'a>>),
    /// The chunk's first record has waited a moment.
    Idle,
    /// Backpressure has held reading for too long.
    HoldExpired,
    Tick,
}

/// One `[[kafka]]` source.
pub struct KafkaSource {
    def: KafkaDef,
    lake: Lake,
    schema: Arc<IngestSchema>,
    clock: Arc<dyn Clock>,
    /// The pipeline id its snapshots are stamped with: `kafka:<name>`.
    pipeline: String,
    /// The table pipeline's input for this source.
    tx: mpsc::Sender<Chunk>,
    cluster: String,
    shared: Arc<Shared>,
    /// Which offsets are taken per partition.
    cursor: Cursor,
    /// Quarantine table's positions: rejects below them are already there.
    quarantined_to: HashMap<Tp, i64>,
    /// The data table's positions, as far as this worker knows.
    committed: HashMap<Tp, i64>,
    /// Read generation: bumped whenever reading restarts from the table.
    epoch: u64,
    batch: Batch,
    /// The batch's valid records, as columns.
    rows: Rows,
    /// A sealed chunk waiting for room in the channel.
    ready: Option<(Chunk, Sent)>,
    /// Chunks handed over and not answered yet, oldest first.
    sent: VecDeque<Sent>,
    /// Records and bytes handed over and not answered yet.
    in_flight: (usize, usize),
    /// The partition of the last message taken: runs of messages share it,
    /// so its topic name is copied once per run, not per message.
    last_tp: Tp,
    /// The user field filled from the message key (`key_field`), resolved once.
    key_fill: Option<usize>,
    /// `tributary_kafka_records_total` for this source, registered once.
    records_read: metrics::Counter,
    /// Backpressure: whether the source takes messages, as a gauge too, and
    /// how often it held off and paused its partitions.
    flow: Flow,
    paused_gauge: metrics::Gauge,
    holds: metrics::Counter,
    pauses: metrics::Counter,
}

impl KafkaSource {
    /// A source for `def`, feeding its table's pipeline through `tx`.
    pub fn new(
        def: KafkaDef,
        lake: Lake,
        schema: Arc<IngestSchema>,
        tx: mpsc::Sender<Chunk>,
        clock: Arc<dyn Clock>,
        health: Health,
    ) -> Result<Self, IngestError> {
        let pipeline = pipeline_id(&def);
        let mut rows = Rows::new(&schema)?;
        rows.reserve(chunk_records(&def.commit));
        let records_read = metrics::counter!(m::KAFKA_RECORDS, "pipeline" => pipeline.clone());
        let key_fill = def.key_field.as_deref().and_then(|k| schema.user_field(k));
        let paused_gauge = metrics::gauge!(m::KAFKA_PAUSED, "pipeline" => pipeline.clone());
        let holds = metrics::counter!(m::KAFKA_HOLDS, "pipeline" => pipeline.clone());
        let pauses = metrics::counter!(m::KAFKA_PAUSES, "pipeline" => pipeline.clone());
        let shared = Arc::new(Shared {
            positions: std::sync::Mutex::new(HashMap::new()),
            start: def.start,
            rebalanced: false.into(),
            pipeline: pipeline.clone(),
            health,
            ready: false.into(),
            last_failure: std::sync::Mutex::new(None),
        });
        shared.health.starting(&pipeline, &format!("connecting to the brokers at {}", def.brokers));
        Ok(Self {
            def,
            lake,
            schema,
            clock,
            pipeline,
            tx,
            cluster: String::new(),
            shared,
            cursor: Cursor::default(),
            quarantined_to: HashMap::new(),
            committed: HashMap::new(),
            epoch: 0,
            batch: Batch::default(),
            rows,
            ready: None,
            sent: VecDeque::new(),
            in_flight: (0, 0),
            last_tp: (String::new(), -1),
            key_fill,
            records_read,
            flow: Flow::Reading,
            paused_gauge,
            holds,
            pauses,
        })
    }

    fn consumer(&self) -> Result<StreamConsumer<Context>, IngestError> {
        client_config(&self.def).create_with_context(Context(self.shared.clone())).map_err(|e| consumer_error(&e))
    }

    fn key(&self, tp: &Tp) -> String {
        format!("kafka:{}/{}/{}", self.cluster, tp.0, tp.1)
    }

    fn parse_key(&self, key: &str) -> Option<Tp> {
        let rest = key.strip_prefix(&format!("kafka:{}/", self.cluster))?;
        let (topic, partition) = rest.rsplit_once('/')?;
        Some((topic.to_owned(), partition.parse().ok()?))
    }

    /// The cluster id, which keys every position. Retried until the broker
    /// answers: a wrong or missing id would orphan the committed positions.
    async fn cluster_id(
        &self,
        consumer: &Arc<StreamConsumer<Context>>,
        shutdown: &CancellationToken,
    ) -> Result<String, IngestError> {
        for attempt in 1..=24 {
            let c = consumer.clone();
            let id = tokio::task::spawn_blocking(move || c.client().fetch_cluster_id(Duration::from_secs(5)))
                .await
                .map_err(|e| IngestError::Internal(format!("cluster id task: {e}")))?;
            if let Some(id) = id.filter(|id| !id.is_empty()) {
                self.shared.up();
                return Ok(id);
            }
            if shutdown.is_cancelled() {
                break;
            }
            // librdkafka queues the reason (a refused connection, a failed
            // handshake) as an event; serving the queue hands it to the
            // context's error callback, and so to `health`.
            if let Ok(Err(e)) = tokio::time::timeout(Duration::from_millis(100), consumer.recv()).await {
                self.shared.down(&e.to_string());
            }
            tracing::debug!(pipeline = %self.pipeline, attempt, brokers = %self.def.brokers, "kafka cluster id not available yet; retrying");
        }
        Err(IngestError::Source(format!(
            "cannot read the cluster id from {}; check that the brokers are reachable",
            self.def.brokers
        )))
    }

    /// Runs until `shutdown`, then lands what it has read.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), IngestError> {
        let consumer = Arc::new(self.consumer()?);
        self.cluster = match self.cluster_id(&consumer, &shutdown).await {
            Ok(id) => id,
            Err(_) if shutdown.is_cancelled() => return Ok(()),
            Err(e) => return Err(e),
        };
        self.recover().await?;
        let topics: Vec<&str> = self.def.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(|e| IngestError::Source(format!("cannot subscribe to {topics:?}: {e}")))?;
        tracing::info!(pipeline = %self.pipeline, cluster = %self.cluster, ?topics, "kafka source started");
        let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            // The branches only wait; each event is handled once they are
            // dropped, with the whole source at hand.
            let event = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                answer = async { (&mut self.sent.front_mut().expect("guarded by the branch condition").ack).await }, if !self.sent.is_empty() => Event::Answer(answer),
                room = self.tx.reserve(), if self.ready.is_some() => match room {
                    Ok(_) => Event::Room,
                    Err(_) => return Err(pipeline_gone()),
                },
                msg = consumer.recv(), if !matches!(self.flow, Flow::Holding(_)) => Event::Message(msg),
                () = hold_deadline(&self.flow) => Event::HoldExpired,
                // The chunk's first record has waited a moment: it goes now.
                () = sleep_until(self.batch.first_read + linger(&self.def.commit)), if self.ready.is_none() && !self.batch.is_empty() => Event::Idle,
                _ = lag_tick.tick() => Event::Tick,
            };
            match event {
                Event::Answer(answer) => {
                    let sent = self.sent.pop_front().expect("an answer came for it");
                    self.acked(&consumer, sent, answer).await?;
                }
                Event::Room => {
                    // This source is the channel's only sender: the room is still there.
                    let (chunk, sent) = self.ready.take().expect("guarded by the branch condition");
                    self.tx.try_send(chunk).map_err(|_| pipeline_gone())?;
                    self.hand_over(sent);
                }
                Event::Message(msg) => {
                    self.on_message(&consumer, msg).await?;
                    // Take what librdkafka already holds without going back
                    // to the select: its timers and clock reads are paid per
                    // burst, not per message.
                    for _ in 1..BURST {
                        if self.ready.is_some() || self.batch_full() {
                            break;
                        }
                        match consumer.recv().now_or_never() {
                            Some(msg) => self.on_message(&consumer, msg).await?,
                            None => break,
                        }
                    }
                    if self.ready.is_none() && self.batch_full() {
                        self.seal()?;
                    }
                }
                Event::Idle => self.seal()?,
                Event::HoldExpired => self.hold_expired(&consumer),
                Event::Tick => {
                    self.check_fatal(&consumer)?;
                    self.report_lag(&consumer).await;
                    self.retry_seeks(&consumer);
                    if self.sent.is_empty() && self.ready.is_none() {
                        self.start_latest(&consumer).await?;
                    }
                }
            }
            self.backpressure(&consumer);
        }
        // After a rebalance nothing read is ours to land; the next owner reads it.
        if self.shared.rebalanced.load(Ordering::SeqCst) {
            self.drop_unsent();
        }
        self.settle(&consumer).await?;
        tracing::info!(pipeline = %self.pipeline, "kafka source stopped");
        Ok(())
    }

    /// Takes one message, or one error, from the consumer.
    async fn on_message(
        &mut self,
        consumer: &Arc<StreamConsumer<Context>>,
        msg: rdkafka::error::KafkaResult<BorrowedMessage<'_>>,
    ) -> Result<(), IngestError> {
        if self.shared.rebalanced.swap(false, Ordering::SeqCst) {
            self.rebalanced(consumer).await?;
        }
        match msg {
            Ok(msg) => {
                self.shared.up();
                self.accept(&msg);
            }
            Err(e) => {
                self.shared.down(&e.to_string());
                self.on_error(consumer, &e).await?;
            }
        }
        Ok(())
    }

    /// Adds one message to the batch, unless it lies below a position.
    fn accept(&mut self, msg: &BorrowedMessage<'_>) {
        if self.last_tp.1 != msg.partition() || self.last_tp.0 != msg.topic() {
            self.last_tp = (msg.topic().to_owned(), msg.partition());
        }
        let tp = &self.last_tp;
        let offset = msg.offset();
        if !self.cursor.admit(tp, offset) {
            return;
        }
        self.batch.read(tp, offset, offset + 1);
        if self.batch.messages == 0 {
            self.batch.first_read = tokio::time::Instant::now();
            self.batch.ingested_at_us = self.clock.now().timestamp_micros();
        }
        self.batch.messages += 1;
        self.records_read.increment(1);
        let payload = msg.payload().unwrap_or_default();
        self.batch.bytes += payload.len();
        let key = self.key_fill.and_then(|_| msg.key()).map(String::from_utf8_lossy);
        let fill = self.key_fill.zip(key.as_deref());
        let fill = fill.as_slice();
        let lineage = Lineage {
            source: "kafka",
            partition: Some(tp.1),
            offset: Some(offset),
            ingested_at_us: self.batch.ingested_at_us,
            file: None,
        };
        match self.rows.push_json(&self.schema, payload, fill, &lineage) {
            Ok(()) => self.batch.rows += 1,
            Err(rejection) => {
                if self.quarantined_to.get(tp).is_none_or(|q| offset >= *q) {
                    let position = format!("{}/{}@{}", tp.0, tp.1, offset);
                    self.batch.rejects.push(Reject { raw: payload.to_vec(), rejection, position });
                }
            }
        }
    }

    /// Whether the batch being read is a full chunk.
    fn batch_full(&self) -> bool {
        self.batch.records() >= chunk_records(&self.def.commit)
            || self.batch.bytes >= CHUNK_BYTES.min(self.def.commit.max_bytes)
    }
}

/// The pipeline id of a Kafka source, stamped into its snapshots.
pub fn pipeline_id(def: &KafkaDef) -> String {
    format!("kafka:{}", def.name)
}

fn pipeline_gone() -> IngestError {
    IngestError::Internal("the table pipeline stopped before its Kafka source".to_owned())
}
