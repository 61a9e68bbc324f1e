//! The consumer context: assigns partitions at the positions the table holds.
//!
//! librdkafka calls `rebalance` from inside `recv()`. It must not do I/O, so
//! it assigns each partition at the position last read from the table (kept
//! in `Shared`) and raises a flag; the pipeline then drops its uncommitted
//! batch, reloads the table and re-seeks. If the cached position was stale,
//! the commit-time zombie check catches the overlap, so the cache only has
//! to be fast, not fresh.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tributary_core::kafka::StartAt;

/// State shared between the pipeline and librdkafka's callbacks.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Next offset per (topic, partition), as committed in the table.
    pub positions: Mutex<HashMap<(String, i32), i64>>,
    /// Where partitions without a position start.
    pub start: StartAt,
    /// Set by every rebalance; cleared by the pipeline.
    pub rebalanced: AtomicBool,
    /// Label for metrics.
    pub pipeline: String,
}

/// The rdkafka context.
#[derive(Debug)]
pub(crate) struct Context(pub std::sync::Arc<Shared>);

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let positions = self.0.positions.lock().map(|p| p.clone()).unwrap_or_default();
                let wanted: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                let mut assigned = TopicPartitionList::new();
                for (topic, partition) in &wanted {
                    let offset = match positions.get(&(topic.clone(), *partition)) {
                        Some(next) => Offset::Offset(*next),
                        None if self.0.start == StartAt::Latest => Offset::End,
                        None => Offset::Beginning,
                    };
                    let _ = assigned.add_partition_offset(topic, *partition, offset);
                }
                tracing::info!(pipeline = %self.0.pipeline, partitions = wanted.len(), "partitions assigned");
                consumer.assign(&assigned)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                tracing::info!(pipeline = %self.0.pipeline, partitions = tpl.count(), "partitions revoked");
                consumer.unassign()
            }
            other => {
                tracing::warn!(pipeline = %self.0.pipeline, error = ?other, "rebalance error; unassigning");
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            tracing::error!(pipeline = %self.0.pipeline, error = %e, "rebalance assignment failed");
        }
        metrics::counter!(tributary_core::metrics::KAFKA_REBALANCES, "pipeline" => self.0.pipeline.clone())
            .increment(1);
        self.0.rebalanced.store(true, Ordering::SeqCst);
    }
}
