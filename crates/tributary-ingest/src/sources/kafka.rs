//! Kafka source: a consumer-group member that lands its partitions in one
//! table exactly once.
//!
//! Positions live in the table, not in Kafka. Every commit stamps, for each
//! partition read, the next offset into the same snapshot as the rows
//! (`kafka:<cluster>/<topic>/<partition>`). On start and on every rebalance
//! the pipeline drops what it had not committed, reloads the table and seeks
//! to those positions. Messages below a partition's committed position are
//! skipped. At commit the protocol's zombie rule applies: if the table's
//! position for any partition in the batch is beyond the batch's first
//! offset, another worker already landed that input and the batch is dropped.
//! Kafka's own group offsets are committed afterwards, for lag monitoring only.
//!
//! Rejected records go to the quarantine table *before* the data commit,
//! stamped with the same positions; on replay a reject below the quarantine
//! table's position is skipped, so quarantine is exactly-once as well.
//!
//! A sealed batch lands in its own task (`commit`) while the next one is
//! read; at most one is in flight. A batch that fills up while another is
//! landing pauses the partitions until it can be sealed (backpressure), so
//! memory stays bounded by two batches whatever the backlog.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::task::{JoinError, JoinHandle};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use tributary_core::Clock;
use tributary_core::kafka::KafkaDef;
use tributary_core::metrics as m;
use tributary_table::{Lake, LoadedTable};

mod batch;
mod commit;
mod context;
mod cursor;
mod health;
mod seek;

use crate::dedup::{TableDedup, cell_key};
use crate::error::IngestError;
use crate::health::Health;
use crate::prepare::{Lineage, PreparedTable, Reject, prepare_record};
use crate::validate::Cell;
use batch::Batch;
use commit::{Landed, Target, land};
pub use context::check_client;
use context::{Context, Shared, client_config, consumer_error};
use cursor::Cursor;

type Tp = (String, i32);

/// The batch being landed, at most one.
type InFlight = Option<JoinHandle<Result<Landed, IngestError>>>;

/// Whether the current batch waits to be sealed behind the one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sealing {
    No,
    /// Its age trigger fired.
    Due,
    /// It is full and the partitions are paused.
    Paused,
}

fn joined(r: Result<Result<Landed, IngestError>, JoinError>) -> Result<Landed, IngestError> {
    r.map_err(|e| IngestError::Internal(format!("kafka landing task: {e}")))?
}

/// One `[[kafka]]` source.
pub struct KafkaPipeline {
    def: KafkaDef,
    target: Arc<Target>,
    table: LoadedTable,
    quarantine: LoadedTable,
    dedup: Option<TableDedup>,
    cluster: String,
    shared: Arc<Shared>,
    /// Which offsets are taken per partition.
    cursor: Cursor,
    /// Quarantine table's positions: rejects below them are already there.
    quarantined_to: HashMap<Tp, i64>,
    batch: Batch,
    /// The user field filled from the message key (`key_field`), resolved once.
    key_fill: Option<usize>,
    /// `tributary_kafka_records_total` for this pipeline, registered once.
    records_read: metrics::Counter,
    /// Backpressure: 1 while paused, and how often it paused.
    paused: metrics::Gauge,
    pauses: metrics::Counter,
}

impl KafkaPipeline {
    /// A pipeline for `def`, writing through a prepared table.
    pub fn new(def: KafkaDef, lake: Lake, prepared: PreparedTable, clock: Arc<dyn Clock>, health: Health) -> Self {
        let PreparedTable { schema, table, quarantine, dedup, outcomes } = prepared;
        let pipeline = format!("kafka:{}", def.name);
        let records_read = metrics::counter!(m::KAFKA_RECORDS, "pipeline" => pipeline.clone());
        let key_fill = def.key_field.as_deref().and_then(|k| schema.user_field(k));
        let paused = metrics::gauge!(m::KAFKA_PAUSED, "pipeline" => pipeline.clone());
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
        let target_file_size = def.commit.target_file_size_bytes;
        Self {
            def,
            target: Arc::new(Target {
                lake,
                schema,
                pipeline,
                clock,
                target_file_size,
                dedup: dedup.clone(),
                outcomes,
            }),
            table,
            quarantine,
            dedup,
            cluster: String::new(),
            shared,
            cursor: Cursor::default(),
            quarantined_to: HashMap::new(),
            batch: Batch::default(),
            key_fill,
            records_read,
            paused,
            pauses,
        }
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
            tracing::debug!(pipeline = %self.target.pipeline, attempt, brokers = %self.def.brokers, "kafka cluster id not available yet; retrying");
        }
        Err(IngestError::Source(format!(
            "cannot read the cluster id from {}; check that the brokers are reachable",
            self.def.brokers
        )))
    }

    /// Runs until `shutdown`, then commits what it has read.
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
        tracing::info!(pipeline = %self.target.pipeline, cluster = %self.cluster, ?topics, "kafka source started");
        let mut deadline: Option<Instant> = None;
        let mut in_flight: InFlight = None;
        // A batch whose trigger fired while another was in flight: it is
        // sealed as soon as that one lands. If it is full, the partitions are
        // paused meanwhile; `recv` keeps being polled so that rebalances and
        // errors are still served.
        let mut sealing = Sealing::No;
        let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                landed = async { in_flight.as_mut().expect("guarded by the branch condition").await }, if in_flight.is_some() => {
                    in_flight = None;
                    self.landed(&consumer, joined(landed)?).await?;
                    if sealing != Sealing::No {
                        self.flush(&mut in_flight);
                        if sealing == Sealing::Paused {
                            self.pause(&consumer, false);
                        }
                        sealing = Sealing::No;
                        deadline = None;
                    }
                }
                msg = consumer.recv() => {
                    if self.shared.rebalanced.swap(false, Ordering::SeqCst) {
                        self.settle(&consumer, &mut in_flight).await?;
                        self.recover().await?;
                        self.seek_assigned(&consumer);
                        self.start_latest(&consumer).await?;
                        if sealing == Sealing::Paused {
                            self.pause(&consumer, false);
                        }
                        (deadline, sealing) = (None, Sealing::No);
                    }
                    match msg {
                        Ok(msg) => {
                            self.shared.up();
                            if self.accept(&msg) {
                                deadline.get_or_insert_with(|| Instant::now() + self.def.commit.max_latency);
                            }
                        }
                        Err(e) => {
                            self.shared.down(&e.to_string());
                            self.on_error(&consumer, &e).await?;
                        }
                    }
                    let full = self.batch.rows.len() + self.batch.rejects.len() >= self.def.commit.max_rows
                        || self.batch.bytes >= self.def.commit.max_bytes;
                    if full && sealing != Sealing::Paused {
                        if in_flight.is_none() {
                            self.flush(&mut in_flight);
                            deadline = None;
                        } else {
                            self.pause(&consumer, true);
                            sealing = Sealing::Paused;
                        }
                    }
                }
                () = async { sleep_until(deadline.unwrap_or_else(Instant::now)).await }, if deadline.is_some() && sealing == Sealing::No => {
                    if in_flight.is_none() {
                        self.flush(&mut in_flight);
                        deadline = None;
                    } else {
                        sealing = Sealing::Due;
                    }
                }
                _ = lag_tick.tick() => {
                    self.check_fatal(&consumer)?;
                    self.report_lag(&consumer).await;
                    self.retry_seeks(&consumer);
                    if in_flight.is_none() {
                        self.start_latest(&consumer).await?;
                    }
                }
            }
        }
        self.settle(&consumer, &mut in_flight).await?;
        if !self.shared.rebalanced.load(Ordering::SeqCst) {
            self.flush(&mut in_flight);
            self.settle(&consumer, &mut in_flight).await?;
        }
        tracing::info!(pipeline = %self.target.pipeline, "kafka source stopped");
        Ok(())
    }

    /// Pauses (or resumes) fetching for every assigned partition.
    fn pause(&self, consumer: &StreamConsumer<Context>, pause: bool) {
        let Ok(assignment) = consumer.assignment() else { return };
        let result = if pause { consumer.pause(&assignment) } else { consumer.resume(&assignment) };
        if let Err(e) = result {
            tracing::warn!(pipeline = %self.target.pipeline, error = %e, pause, "kafka pause/resume failed");
        }
        self.paused.set(if pause { 1.0 } else { 0.0 });
        if pause {
            self.pauses.increment(1);
        }
    }

    /// Adds one message to the batch; false if it was below a position.
    fn accept(&mut self, msg: &BorrowedMessage<'_>) -> bool {
        let tp = (msg.topic().to_owned(), msg.partition());
        let offset = msg.offset();
        if !self.cursor.admit(&tp, offset) {
            return false;
        }
        self.batch.read(&tp, offset, offset + 1);
        self.batch.messages += 1;
        self.records_read.increment(1);
        let payload = msg.payload().unwrap_or_default();
        self.batch.bytes += payload.len();
        let key = self.key_fill.and_then(|_| msg.key()).map(String::from_utf8_lossy);
        let fill = self.key_fill.zip(key.as_deref());
        let now = self.target.clock.now().timestamp_micros();
        let lineage = Lineage { source: "kafka", partition: Some(tp.1), offset: Some(offset), ingested_at_us: now };
        match prepare_record(&self.target.schema, payload, fill, &lineage) {
            Ok(row) => self.add_row(row, now),
            Err(rejection) => {
                if self.quarantined_to.get(&tp).is_none_or(|q| offset >= *q) {
                    let position = format!("{}/{}@{}", tp.0, tp.1, offset);
                    self.batch.rejects.push(Reject { raw: payload.to_vec(), rejection, position });
                }
            }
        }
        true
    }

    fn add_row(&mut self, row: Vec<Cell>, now_us: i64) {
        if let (Some(index), Some((col, _))) = (&self.dedup, self.target.schema.dedup)
            && let Some(k) = cell_key(&row[col])
        {
            if !index.insert(&k, now_us) {
                self.target.outcomes.deduplicated(1);
                return;
            }
            self.batch.keys.push(k);
        }
        if let Some(col) = self.target.schema.event_time_column()
            && let Cell::Ts(t) = row[col]
        {
            self.batch.max_event_us = Some(self.batch.max_event_us.map_or(t, |m| m.max(t)));
        }
        self.batch.rows.push(row);
    }

    /// Seals the batch and hands it to a landing task. The caller makes sure
    /// no other batch is in flight, so commits stay in order and a batch
    /// read after a zombie is dropped with it (by `landed`) before sealing.
    fn flush(&mut self, in_flight: &mut InFlight) {
        debug_assert!(in_flight.is_none(), "one landing at a time");
        if self.batch.is_empty() {
            return;
        }
        let sealed = std::mem::take(&mut self.batch).seal(|tp| self.key(tp), &self.quarantined_to);
        let landing = land(self.target.clone(), self.table.clone(), self.quarantine.clone(), sealed);
        *in_flight = Some(tokio::spawn(landing));
    }

    /// Waits for the batch in flight, if any, and applies its outcome.
    async fn settle(
        &mut self,
        consumer: &StreamConsumer<Context>,
        in_flight: &mut InFlight,
    ) -> Result<(), IngestError> {
        match in_flight.take() {
            Some(handle) => self.landed(consumer, joined(handle.await)?).await,
            None => Ok(()),
        }
    }

    /// Adopts the tables a landing produced, or drops the work on a zombie.
    async fn landed(&mut self, consumer: &StreamConsumer<Context>, landed: Landed) -> Result<(), IngestError> {
        let (table, quarantine) = match landed {
            Landed::Committed { table, quarantine } => (table, quarantine),
            Landed::Zombie { keys } => return self.drop_zombie(consumer, keys).await,
        };
        self.table = table;
        self.quarantine = quarantine;
        // `quarantined_to` keeps what recovery read: every offset read from
        // now on lies past these positions, so raising it to them would
        // change nothing.
        let committed = self.positions(&self.table)?;
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), off) in &committed {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*off));
        }
        if let Ok(mut p) = self.shared.positions.lock() {
            *p = committed;
        }
        // Only for lag monitoring: the table stays the authority.
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(pipeline = %self.target.pipeline, error = %e, "kafka offset commit failed (monitoring only)");
        }
        // The landing refreshed the dedup index before its pinned commit and
        // noted its own snapshot: nothing is left to read back here.
        Ok(())
    }

    /// Learns the keys other sources and workers committed to the table, on
    /// recovery. A failure only delays that (each landing refreshes before
    /// it commits), so it is logged, not fatal.
    async fn refresh_dedup(&self) {
        if let Some(index) = &self.dedup
            && let Err(e) = index.refresh(&self.target.lake, &self.table).await
        {
            tracing::warn!(pipeline = %self.target.pipeline, error = %e, "cannot refresh the dedup index; the next landing retries");
        }
    }

    async fn drop_zombie(&mut self, consumer: &StreamConsumer<Context>, keys: Vec<String>) -> Result<(), IngestError> {
        tracing::warn!(pipeline = %self.target.pipeline, "another worker committed this input; dropping the batch and re-seeking");
        if let Some(index) = &self.dedup {
            index.remove(&keys);
        }
        self.recover().await?;
        self.seek_assigned(consumer);
        Ok(())
    }
}
