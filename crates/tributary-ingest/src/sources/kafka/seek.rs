//! Where each assigned partition reads from: the positions recovered from
//! the table (`recover`), and the seeks to them.
//!
//! Two ways input could be skipped, both closed here:
//! - A seek to the committed position can fail (the partition is not fetching
//!   yet). The consumer then delivers from wherever it stands, and taking
//!   those messages would skip the gap. A partition whose seek failed takes
//!   no message until a retried seek succeeds.
//! - With `start = "latest"`, a partition without a position starts at the
//!   end of the log, and that used to be re-resolved on every rebalance: what
//!   the previous owner read but never committed was skipped. Such a
//!   partition is now paused on assignment; its start (the high watermark)
//!   is committed in an otherwise empty snapshot before it is read, so every
//!   later owner resumes there.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::topic_partition_list::Offset;
use tributary_core::kafka::StartAt;
use tributary_core::{Classify, Positions};
use tributary_table::{LoadedTable, last_pipeline_state};

use super::context::Context;
use super::health::watermarks;
use super::{KafkaSource, Tp, pipeline_gone};
use crate::error::IngestError;
use crate::pipeline::{Landed, Range};

impl KafkaSource {
    /// The next offset per partition of this cluster that `table` holds.
    pub(super) fn positions(&self, table: &LoadedTable) -> Result<HashMap<Tp, i64>, IngestError> {
        let recorded = last_pipeline_state(table, &self.pipeline)?.map(|s| s.positions).unwrap_or_default();
        let ours: HashMap<Tp, i64> =
            recorded.0.iter().filter_map(|(k, v)| Some((self.parse_key(k)?, i64::try_from(*v).ok()?))).collect();
        if ours.is_empty() && !recorded.0.is_empty() {
            tracing::error!(pipeline = %self.pipeline, table = %table.name, cluster = %self.cluster, recorded = ?recorded.0.keys().collect::<Vec<_>>(),
                "the table holds positions for another Kafka cluster id; partitions start from the `start` policy");
        }
        Ok(ours)
    }

    /// Drops what was read and not handed over, reloads both tables' positions
    /// and starts a new read generation from them.
    pub(super) async fn recover(&mut self) -> Result<(), IngestError> {
        let table = self.lake.load(&self.schema.table).await?;
        let quarantine = self.lake.load(&self.schema.table.quarantine()).await?;
        let data = self.positions(&table)?;
        self.quarantined_to = self.positions(&quarantine)?;
        self.drop_unsent();
        self.epoch += 1;
        self.cursor.reset(&data);
        self.committed = data;
        if let Ok(mut p) = self.shared.positions.lock() {
            p.clone_from(&self.committed);
        }
        Ok(())
    }

    /// Seeks every assigned partition to its committed position; those whose
    /// seek fails are held until [`Self::retry_seeks`] succeeds.
    pub(super) fn seek_assigned(&mut self, consumer: &StreamConsumer<Context>) {
        let Ok(assignment) = consumer.assignment() else {
            self.cursor.hold([]);
            return;
        };
        self.cursor.hold(assignment.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
        self.retry_seeks(consumer);
    }

    /// Retries the seeks that failed.
    pub(super) fn retry_seeks(&mut self, consumer: &StreamConsumer<Context>) {
        let pending: Vec<Tp> = self.cursor.unsought.iter().cloned().collect();
        for tp in pending {
            let Some(next) = self.cursor.next.get(&tp).copied() else {
                self.cursor.sought(&tp);
                continue;
            };
            match consumer.seek(&tp.0, tp.1, Offset::Offset(next), Duration::from_millis(200)) {
                Ok(()) => self.cursor.sought(&tp),
                Err(err) => {
                    tracing::debug!(pipeline = %self.pipeline, topic = %tp.0, partition = tp.1, error = %err,
                        "seek to the committed position failed; holding the partition until it succeeds");
                }
            }
        }
    }

    /// With `start = "latest"`: commits the offset each new partition starts
    /// at (its high watermark) before reading it, then seeks and resumes it.
    /// The rebalance callback paused every partition the table holds no
    /// position for, so nothing of it is read before its start is durable.
    /// A partition whose watermark cannot be read stays paused until the
    /// next call.
    pub(super) async fn start_latest(&mut self, consumer: &Arc<StreamConsumer<Context>>) -> Result<(), IngestError> {
        if self.def.start != StartAt::Latest {
            return Ok(());
        }
        let Ok(assignment) = consumer.assignment() else { return Ok(()) };
        let fresh: HashSet<Tp> = assignment
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .filter(|tp| !self.cursor.next.contains_key(tp))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let marks: Vec<(Tp, i64)> = watermarks(consumer)
            .await
            .into_iter()
            .filter(|(tp, _)| fresh.contains(tp))
            .map(|(tp, (_, high))| (tp, high))
            .collect();
        if marks.is_empty() {
            return Ok(());
        }
        let mut starts = Positions::default();
        for (tp, high) in &marks {
            starts.advance(self.key(tp), u64::try_from(*high).unwrap_or(0));
        }
        let range = Range { epoch: self.epoch, from: starts.clone(), rejects_from: starts.clone(), to: starts };
        self.send_urgent(range).await?;
        let mut sent = self.sent.pop_front().expect("just sent, and nothing else was in flight");
        let answer = (&mut sent.ack).await.map_err(|_| pipeline_gone())?;
        match answer {
            Ok(Landed::Committed(_)) => {
                for (tp, high) in &marks {
                    tracing::info!(pipeline = %self.pipeline, topic = %tp.0, partition = tp.1, offset = high,
                        "partition starts at the end of its log; start recorded");
                    self.cursor.next.insert(tp.clone(), *high);
                    self.cursor.unsought.insert(tp.clone());
                    self.committed.insert(tp.clone(), *high);
                }
                // Only the partitions just pinned move; the others read on.
                self.retry_seeks(consumer);
            }
            // Another worker recorded a position first: start from it.
            Ok(Landed::Zombie) => self.restart(consumer).await?,
            // The partitions stay paused: the next tick tries again.
            Err(e) if e.is_retryable() => {
                tracing::warn!(pipeline = %self.pipeline, error = %e, "cannot record where new partitions start yet; retrying");
                return self.restart(consumer).await;
            }
            Err(e) => return Err(e),
        }
        let mut resume = TopicPartitionList::new();
        for (tp, _) in &marks {
            resume.add_partition(&tp.0, tp.1);
        }
        consumer.resume(&resume).map_err(|e| IngestError::Source(format!("cannot resume partitions: {e}")))?;
        Ok(())
    }
}
