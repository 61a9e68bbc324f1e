//! The consumer's settings and context. The context assigns partitions at
//! the positions the table holds.
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

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext};
use tributary_core::kafka::{KafkaDef, StartAt};

use crate::error::IngestError;
use crate::health::Health;

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
    /// Where the source reports whether it can reach its brokers.
    pub health: Health,
    /// Whether `health` holds this source as ready (checked per message,
    /// so a recovery is reported once and cheaply).
    pub ready: AtomicBool,
    /// librdkafka's last failure log line (e.g. "Connect to ipv4#… failed:
    /// Connection refused"): the error events that follow it carry only a
    /// code such as `AllBrokersDown`.
    pub last_failure: Mutex<Option<String>>,
}

impl Shared {
    /// The brokers answered.
    pub fn up(&self) {
        if !self.ready.swap(true, Ordering::Relaxed) {
            if let Ok(mut last) = self.last_failure.lock() {
                *last = None;
            }
            self.health.up(&self.pipeline);
        }
    }

    /// The source cannot work, because of `reason` (with librdkafka's last
    /// failure, when that says more).
    pub fn down(&self, reason: &str) {
        self.ready.store(false, Ordering::Relaxed);
        let detail = self.last_failure.lock().ok().and_then(|f| f.clone());
        match detail {
            Some(detail) if !reason.contains(&detail) => {
                self.health.down(&self.pipeline, &format!("{reason}; last failure: {detail}"));
            }
            _ => self.health.down(&self.pipeline, reason),
        }
    }
}

/// The rdkafka context.
#[derive(Debug)]
pub(crate) struct Context(pub std::sync::Arc<Shared>);

impl ClientContext for Context {
    /// librdkafka's own errors (a refused connection, a failed
    /// authentication) are what an operator needs to see, and at once; they
    /// used to surface only when the consumer was destroyed.
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.down(&format!("{reason} ({error})"));
    }

    /// librdkafka's log, into ours; its failure lines are kept as the detail
    /// of the next error.
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let pipeline = &self.0.pipeline;
        use RDKafkaLogLevel::{Alert, Critical, Emerg, Error, Warning};
        if matches!(level, Emerg | Alert | Critical | Error | Warning) {
            if let Ok(mut last) = self.0.last_failure.lock() {
                *last = Some(message.to_owned());
            }
            tracing::debug!(%pipeline, facility = fac, message, "librdkafka failure");
        } else {
            tracing::trace!(%pipeline, facility = fac, message, "librdkafka");
        }
    }
}

impl ConsumerContext for Context {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let result: KafkaResult<()> = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let positions = self.0.positions.lock().map(|p| p.clone()).unwrap_or_default();
                let wanted: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                let mut assigned = TopicPartitionList::new();
                // With `latest`, a partition without a position waits,
                // paused, until the pipeline has committed where it starts.
                let mut held = TopicPartitionList::new();
                for (topic, partition) in &wanted {
                    let offset = match positions.get(&(topic.clone(), *partition)) {
                        Some(next) => Offset::Offset(*next),
                        None if self.0.start == StartAt::Latest => {
                            held.add_partition(topic, *partition);
                            Offset::End
                        }
                        None => Offset::Beginning,
                    };
                    let _ = assigned.add_partition_offset(topic, *partition, offset);
                }
                tracing::info!(pipeline = %self.0.pipeline, partitions = wanted.len(), "partitions assigned");
                consumer.assign(&assigned).and_then(|()| if held.count() > 0 { consumer.pause(&held) } else { Ok(()) })
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

/// The consumer's librdkafka settings: the ones exactly-once depends on,
/// then the source's pass-through `properties` (TLS, SASL, tuning), which
/// config validation keeps from overriding the former.
pub(crate) fn client_config(def: &KafkaDef) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", &def.brokers)
        .set("group.id", &def.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "error");
    for (k, v) in &def.properties {
        cfg.set(k, v);
    }
    cfg
}

pub(crate) fn consumer_error(e: &KafkaError) -> IngestError {
    IngestError::Source(format!(
        "cannot create the consumer: {e}; check its `properties` against librdkafka's CONFIGURATION.md"
    ))
}

/// Builds the source's client without connecting, so that `tributary check`
/// reports an unknown or invalid librdkafka property (or a TLS file that
/// cannot be read) before anything runs.
pub fn check_client(def: &KafkaDef) -> Result<(), IngestError> {
    client_config(def).create::<BaseConsumer>().map(drop).map_err(|e| consumer_error(&e))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tributary_core::config::CommitPolicy;
    use tributary_core::kafka::{GapPolicy, StartAt};

    use super::*;

    fn def(properties: &[(&str, &str)]) -> KafkaDef {
        KafkaDef {
            name: "orders".to_owned(),
            brokers: "127.0.0.1:1".to_owned(),
            topics: vec!["orders".to_owned()],
            group_id: "g".to_owned(),
            table: tributary_core::TableName::new("raw", "orders"),
            key_field: None,
            start: StartAt::Earliest,
            on_offset_gap: GapPolicy::Fail,
            commit: CommitPolicy {
                max_rows: 1,
                max_bytes: 1,
                max_latency: std::time::Duration::from_secs(1),
                target_file_size_bytes: 1,
            },
            properties: properties.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn tls_and_sasl_settings_are_accepted() {
        // Each of these needs librdkafka built with OpenSSL: without it the
        // client refuses `ssl`/`sasl_ssl` and the SCRAM mechanisms.
        check_client(&def(&[("security.protocol", "ssl"), ("ssl.endpoint.identification.algorithm", "https")]))
            .unwrap();
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"] {
            let props = [
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ];
            let props = if mechanism == "OAUTHBEARER" { &props[..2] } else { &props[..] };
            check_client(&def(props)).unwrap_or_else(|e| panic!("{mechanism}: {e}"));
        }
    }

    #[test]
    fn bad_properties_are_named() {
        let err = check_client(&def(&[("sasl.mechansims", "PLAIN")])).unwrap_err().to_string();
        assert!(err.contains("sasl.mechansims") && err.contains("properties"), "{err}");
        let err = check_client(&def(&[("security.protocol", "ssl"), ("ssl.ca.location", "/nonexistent/ca.pem")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ca.pem") || err.contains("ssl.ca.location"), "{err}");
    }
}
