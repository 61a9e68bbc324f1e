//! The flow between a Kafka source and its table's pipeline: sealing chunks,
//! handing them over, acting on each answer, and backpressure.
//!
//! Answers come back in the order the chunks were sent (the pipeline lands
//! a source's chunks in order). A chunk of the current read generation that
//! did not land — a zombie, or a retryable failure — restarts reading from
//! the table's positions under a new generation; the pipeline has already
//! refused the rest of the old one, whose answers are then ignored.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::sync::oneshot::error::RecvError;
use tokio::time::Instant;
use tributary_core::Classify;
use tributary_core::kafka::{KafkaDef, StartAt};

use super::context::Context;
use super::{Batch, KafkaSource, Sent, Tp, pipeline_gone};
use crate::error::IngestError;
use crate::pipeline::{Chunk, Delta, Landed, Range};

impl KafkaSource {
    /// Seals the batch read so far into the chunk waiting for the channel.
    pub(super) fn seal(&mut self) -> Result<(), IngestError> {
        debug_assert!(self.ready.is_none(), "one sealed chunk at a time");
        let batch = std::mem::take(&mut self.batch);
        let since = batch.first_read;
        let ends = batch.ranges.iter().map(|(tp, (_, end))| (tp.clone(), *end)).collect();
        let sealed = batch.seal(|tp| self.key(tp), &self.quarantined_to, self.epoch);
        let rows = self.rows.finish(&self.schema)?;
        self.rows.reserve(super::chunk_records(&self.def.commit));
        let records = sealed.rows + sealed.rejects.len();
        let now = self.clock.now().timestamp_micros();
        let (mut chunk, ack) =
            Chunk::new(rows, sealed.rejects, sealed.messages, sealed.bytes, now, Delta::Range(sealed.range));
        chunk.since = since;
        let sent = Sent { epoch: self.epoch, ends, records, bytes: sealed.bytes, ack };
        self.ready = Some((chunk, sent));
        Ok(())
    }

    /// Notes a chunk handed to the pipeline.
    pub(super) fn hand_over(&mut self, sent: Sent) {
        self.in_flight.0 += sent.records;
        self.in_flight.1 += sent.bytes;
        self.sent.push_back(sent);
    }

    /// Acts on the pipeline's answer to the oldest chunk handed over.
    pub(super) async fn acked(
        &mut self,
        consumer: &StreamConsumer<Context>,
        sent: Sent,
        answer: Result<Result<Landed, IngestError>, RecvError>,
    ) -> Result<(), IngestError> {
        self.in_flight.0 -= sent.records;
        self.in_flight.1 -= sent.bytes;
        let current = sent.epoch == self.epoch;
        match answer.map_err(|_| pipeline_gone())? {
            Ok(Landed::Committed(_)) => {
                for (tp, end) in sent.ends {
                    let next = self.committed.entry(tp).or_insert(end);
                    *next = (*next).max(end);
                }
                self.publish_positions(consumer);
            }
            // An older generation's: reading has restarted since.
            Ok(Landed::Zombie) | Err(_) if !current => {}
            Ok(Landed::Zombie) => {
                tracing::warn!(pipeline = %self.pipeline, "another worker committed this input; re-reading from the table's positions");
                self.restart(consumer).await?;
            }
            Err(e) if e.is_retryable() => {
                tracing::warn!(pipeline = %self.pipeline, error = %e, "landing failed; re-reading from the table's positions");
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.restart(consumer).await?;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Drops what was read and not landed, and reads again from the table.
    pub(super) async fn restart(&mut self, consumer: &StreamConsumer<Context>) -> Result<(), IngestError> {
        self.recover().await?;
        self.seek_assigned(consumer);
        Ok(())
    }

    /// After a rebalance: lands what was read, then starts again from the
    /// table's positions for the new assignment.
    pub(super) async fn rebalanced(&mut self, consumer: &Arc<StreamConsumer<Context>>) -> Result<(), IngestError> {
        self.settle(consumer).await?;
        self.restart(consumer).await?;
        // The new assignment starts unpaused (or held, for `latest`).
        self.read_again();
        self.start_latest(consumer).await
    }

    /// Hands over what was read, asks the pipeline to land it now, and waits
    /// for every answer.
    pub(super) async fn settle(&mut self, consumer: &StreamConsumer<Context>) -> Result<(), IngestError> {
        loop {
            if let Some((chunk, sent)) = self.ready.take() {
                self.tx.send(chunk).await.map_err(|_| pipeline_gone())?;
                self.hand_over(sent);
            } else if !self.batch.is_empty() {
                self.seal()?;
            } else {
                break;
            }
        }
        if !self.sent.is_empty() {
            self.send_urgent(Range { epoch: self.epoch, ..Range::default() }).await?;
        }
        while let Some(mut sent) = self.sent.pop_front() {
            let answer = (&mut sent.ack).await;
            self.acked(consumer, sent, answer).await?;
        }
        Ok(())
    }

    /// Sends a chunk without records that lands the lane at once (with
    /// `range`'s positions, if any) and is answered like any other.
    pub(super) async fn send_urgent(&mut self, range: Range) -> Result<(), IngestError> {
        let ends = range.to.0.iter().filter_map(|(k, v)| Some((self.parse_key(k)?, i64::try_from(*v).ok()?))).collect();
        let empty = arrow_array::RecordBatch::new_empty(self.schema.arrow.clone());
        let now = self.clock.now().timestamp_micros();
        let (mut chunk, ack) = Chunk::new(empty, Vec::new(), 0, 0, now, Delta::Range(range));
        chunk.urgent = true;
        self.tx.send(chunk).await.map_err(|_| pipeline_gone())?;
        self.hand_over(Sent { epoch: self.epoch, ends, records: 0, bytes: 0, ack });
        Ok(())
    }

    /// Shares the committed positions with the rebalance callback and
    /// commits them to Kafka, only for lag monitoring: the table stays the
    /// authority.
    pub(super) fn publish_positions(&self, consumer: &StreamConsumer<Context>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), off) in &self.committed {
            let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*off));
        }
        if let Ok(mut p) = self.shared.positions.lock() {
            p.clone_from(&self.committed);
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::debug!(pipeline = %self.pipeline, error = %e, "kafka offset commit failed (monitoring only)");
        }
    }

    /// Holds off reading while more than two commit batches' worth is in
    /// flight, or a full chunk waits behind one the channel has no room for;
    /// reads again once that drains.
    ///
    /// A hold only stops taking messages: librdkafka keeps what it has
    /// prefetched (up to `queued.max.messages.kbytes`) and stops fetching by
    /// itself. Pausing the partitions would drop that prefetch, and the
    /// broker would send it again on resume. A hold that outlasts
    /// [`hold_limit`] pauses the partitions after all and polls again, so
    /// rebalances and errors are served and `max.poll.interval.ms` is kept.
    pub(super) fn backpressure(&mut self, consumer: &StreamConsumer<Context>) {
        let policy = &self.def.commit;
        let (records, bytes) = self.in_flight;
        let full = records >= 2 * policy.max_rows
            || bytes >= 2 * policy.max_bytes
            || (self.ready.is_some() && self.batch_full());
        match (&self.flow, full) {
            (Flow::Reading, true) => {
                self.flow = Flow::Holding(Instant::now() + hold_limit(&self.def));
                self.paused_gauge.set(1.0);
                self.holds.increment(1);
            }
            (Flow::Holding(_), false) => self.read_again(),
            (Flow::Paused, false) => {
                self.pause(consumer, false);
                self.read_again();
            }
            _ => {}
        }
    }

    /// A hold outlasted its limit: pause the partitions and poll again.
    pub(super) fn hold_expired(&mut self, consumer: &StreamConsumer<Context>) {
        tracing::info!(pipeline = %self.pipeline, "landing is slow; pausing the partitions so the consumer keeps polling");
        self.pause(consumer, true);
        self.flow = Flow::Paused;
        self.pauses.increment(1);
    }

    fn read_again(&mut self) {
        self.flow = Flow::Reading;
        self.paused_gauge.set(0.0);
    }

    /// Pauses (or resumes) fetching for every assigned partition. With
    /// `latest`, a partition whose start is not recorded yet stays paused.
    fn pause(&self, consumer: &StreamConsumer<Context>, pause: bool) {
        let Ok(assignment) = consumer.assignment() else { return };
        let mut tpl = TopicPartitionList::new();
        for e in assignment.elements() {
            let tp: Tp = (e.topic().to_owned(), e.partition());
            if pause || self.def.start != StartAt::Latest || self.cursor.next.contains_key(&tp) {
                tpl.add_partition(&tp.0, tp.1);
            }
        }
        let result = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
        if let Err(e) = result {
            tracing::warn!(pipeline = %self.pipeline, error = %e, pause, "kafka pause/resume failed");
        }
    }

    /// Forgets what was read and not handed over.
    pub(super) fn drop_unsent(&mut self) {
        self.batch = Batch::default();
        self.rows.clear();
        self.ready = None;
    }
}

/// Whether the source takes messages (backpressure).
pub(super) enum Flow {
    Reading,
    /// Takes none until the pipeline answers, or until this deadline.
    Holding(Instant),
    /// Held past the deadline: the partitions are paused and the consumer
    /// polls, for rebalances and errors only.
    Paused,
}

/// How long a hold may last before the partitions are paused: ten commit
/// latencies (a landing normally answers within one or two), between 1 s
/// and 5 s, and under a quarter of `max.poll.interval.ms`, past which the
/// group would count this consumer as gone.
fn hold_limit(def: &KafkaDef) -> Duration {
    let poll = def.properties.get("max.poll.interval.ms").and_then(|ms| ms.parse::<u64>().ok()).unwrap_or(300_000);
    (def.commit.max_latency * 10)
        .clamp(Duration::from_secs(1), Duration::from_secs(5))
        .min(Duration::from_millis(poll / 4))
}

/// Resolves when a hold's deadline passes; never while reading or paused.
pub(super) async fn hold_deadline(flow: &Flow) {
    match flow {
        Flow::Holding(deadline) => tokio::time::sleep_until(*deadline).await,
        _ => std::future::pending().await,
    }
}
