//! Partition health: offset gaps (retention deleted records never
//! ingested), truncation (the broker lost records already ingested), lag,
//! and fatal consumer errors. Each is reported, never skipped silently.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::topic_partition_list::Offset;
use rdkafka::types::RDKafkaErrorCode;
use tributary_core::kafka::GapPolicy;
use tributary_core::metrics as m;

use super::context::Context;
use super::{KafkaSource, Tp};
use crate::error::IngestError;
use crate::prepare::Reject;
use crate::validate::Rejection;

impl KafkaSource {
    /// A fatal librdkafka error (e.g. this worker was fenced because another
    /// one uses the same `group.instance.id`) leaves a consumer that never
    /// delivers again: stop the source, and the process, with the reason.
    pub(super) fn check_fatal(&self, consumer: &StreamConsumer<Context>) -> Result<(), IngestError> {
        match consumer.client().fatal_error() {
            Some((code, reason)) => Err(IngestError::Source(format!(
                "the consumer hit a fatal error ({code:?}: {reason}) and cannot continue; \
                 uncommitted records are read again on restart{}",
                if code == RDKafkaErrorCode::FencedInstanceId {
                    "; another worker uses the same group.instance.id: give each worker its own"
                } else {
                    ""
                }
            ))),
            None => Ok(()),
        }
    }

    pub(super) async fn on_error(
        &mut self,
        consumer: &Arc<StreamConsumer<Context>>,
        e: &KafkaError,
    ) -> Result<(), IngestError> {
        self.check_fatal(consumer)?;
        let gap = matches!(
            e.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange)
        );
        if !gap {
            tracing::warn!(pipeline = %self.pipeline, error = %e, "kafka consumer error; librdkafka retries");
            return Ok(());
        }
        for (tp, (low, _high)) in watermarks(consumer).await {
            let pos = self.cursor.next.get(&tp).copied().unwrap_or(0);
            if pos >= low {
                continue;
            }
            let what = format!(
                "partition {}/{}: offsets {pos}..{low} were deleted by retention before they were ingested",
                tp.0, tp.1
            );
            if self.def.on_offset_gap == GapPolicy::Fail {
                return Err(IngestError::Source(format!(
                    "{what}; set on_offset_gap = \"continue\" to skip them (they are counted and quarantined)"
                )));
            }
            tracing::error!(pipeline = %self.pipeline, topic = %tp.0, partition = tp.1, from = pos, to = low, "offset gap; continuing");
            metrics::counter!(m::KAFKA_OFFSET_GAPS, "pipeline" => self.pipeline.clone(), "topic" => tp.0.clone(), "partition" => tp.1.to_string())
                .increment(u64::try_from(low - pos).unwrap_or(0));
            self.batch.read(&tp, pos, low);
            self.batch.rejects.push(Reject {
                raw: Vec::new(),
                rejection: Rejection { kind: "offset_gap", field: None, message: what },
                position: format!("{}/{}@{pos}", tp.0, tp.1),
            });
            self.cursor.next.insert(tp.clone(), low);
            let _ = consumer.seek(&tp.0, tp.1, Offset::Offset(low), Duration::from_millis(200));
        }
        Ok(())
    }

    pub(super) async fn report_lag(&self, consumer: &Arc<StreamConsumer<Context>>) {
        let committed = self.shared.positions.lock().map(|p| p.clone()).unwrap_or_default();
        let marks = watermarks(consumer).await;
        if !marks.is_empty() {
            self.shared.up();
        }
        for (tp, (low, high)) in marks {
            let pos = committed.get(&tp).copied().unwrap_or(low);
            let truncated = high < pos;
            if truncated {
                // The broker lost records we had already committed (e.g. an
                // unclean leader election) and will reuse their offsets.
                tracing::error!(pipeline = %self.pipeline, topic = %tp.0, partition = tp.1, committed = pos, high_watermark = high,
                    "partition truncated below the committed position: records produced at reused offsets will be skipped");
            }
            metrics::gauge!(m::KAFKA_TRUNCATED, "pipeline" => self.pipeline.clone(), "topic" => tp.0.clone(), "partition" => tp.1.to_string())
                .set(if truncated { 1.0 } else { 0.0 });
            #[allow(clippy::cast_precision_loss)]
            metrics::gauge!(m::KAFKA_LAG, "pipeline" => self.pipeline.clone(), "topic" => tp.0.clone(), "partition" => tp.1.to_string())
                .set((high - pos).max(0) as f64);
        }
    }
}

/// Low and high watermarks of every assigned partition, fetched off the
/// async runtime (librdkafka blocks for the round trip).
pub(super) async fn watermarks(consumer: &Arc<StreamConsumer<Context>>) -> Vec<(Tp, (i64, i64))> {
    let c = consumer.clone();
    tokio::task::spawn_blocking(move || {
        let Ok(assignment) = c.assignment() else { return Vec::new() };
        assignment
            .elements()
            .iter()
            .filter_map(|e| {
                let w = c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(2)).ok()?;
                Some(((e.topic().to_owned(), e.partition()), w))
            })
            .collect()
    })
    .await
    .unwrap_or_default()
}
