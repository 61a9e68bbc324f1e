//! Kafka fixtures: topics, a producer and a config for the real broker that
//! `dev/kafka.sh` starts (its address is in `TRIBUTARY_TEST_KAFKA`).
#![allow(dead_code)]

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::common::{Running, TRANSACTIONS, event, metric};

pub const PARTITIONS: i32 = 4;

pub fn brokers() -> String {
    std::env::var("TRIBUTARY_TEST_KAFKA").unwrap_or_else(|_| "127.0.0.1:19092".to_owned())
}

/// Creates a topic with a unique name starting with `prefix` and returns it.
pub async fn new_topic(prefix: &str) -> String {
    let topic = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    create_topic(&topic).await;
    topic
}

async fn create_topic(topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin client");
    let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
    let res = admin.create_topics([&new], &AdminOptions::new()).await.expect("create topic");
    for r in res {
        r.expect("topic created");
    }
}

/// Produces `n` events with ids `{prefix}{i}`, every 50th malformed, spread
/// over the partitions; returns how many were good.
pub async fn produce(topic: &str, prefix: &str, n: usize) -> usize {
    let producer: FutureProducer =
        ClientConfig::new().set("bootstrap.servers", brokers()).set("linger.ms", "5").create().expect("producer");
    let mut good = 0;
    let mut sends = Vec::new();
    for i in 0..n {
        let id = format!("{prefix}{i}");
        let payload = if i % 50 == 49 { format!("{{\"event_id\":\"{id}\",") } else { event(&id, "3.00") };
        if i % 50 != 49 {
            good += 1;
        }
        let partition = i32::try_from(i).unwrap() % PARTITIONS;
        let producer = producer.clone();
        let topic = topic.to_owned();
        sends.push(async move {
            producer
                .send(FutureRecord::to(&topic).key(&id).payload(&payload).partition(partition), Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e)
                .expect("produce");
        });
    }
    futures::future::join_all(sends).await;
    good
}

/// Produces one good event per id, to partition 0.
pub async fn produce_ids(topic: &str, ids: &[&str]) {
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("producer");
    for id in ids {
        let payload = event(id, "3.00");
        producer
            .send(FutureRecord::to(topic).key(*id).payload(&payload).partition(0), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
}

pub fn kafka_config(topic: &str, group: &str) -> String {
    kafka_config_with(topic, group, "")
}

/// `kafka_config` with more librdkafka properties, e.g. SASL settings, as
/// TOML inline-table entries each starting with ", ".
pub fn kafka_config_with(topic: &str, group: &str, extra_properties: &str) -> String {
    format!(
        r#"{TRANSACTIONS}
[[kafka]]
name = "orders"
brokers = "{}"
topics = ["{topic}"]
group_id = "{group}"
table = "raw.transactions"
max_latency = "100ms"
properties = {{ "session.timeout.ms" = "6000", "heartbeat.interval.ms" = "500", "receive.message.max.bytes" = "2147483647", "topic.metadata.refresh.interval.ms" = "1000"{extra_properties} }}
"#,
        brokers()
    )
}

/// The config of a source named `name` whose commit batches hold 100 rows:
/// they fill far faster than one lands, so backpressure applies.
pub fn small_batch_config(topic: &str, name: &str) -> String {
    kafka_config(topic, &format!("g-{topic}"))
        .replace("name = \"orders\"", &format!("name = \"{name}\""))
        .replace("max_latency = \"100ms\"", "max_latency = \"100ms\"\nmax_rows = 100")
}

/// Metric `name` of the Kafka source `source`, from a `/metrics` text.
pub fn source_metric(text: &str, source: &str, name: &str) -> f64 {
    metric(text, name, &[&format!("pipeline=\"kafka:{source}\"")]).unwrap_or_else(|| panic!("{name} missing:\n{text}"))
}

pub async fn wait_for(srv: &Running, rows: i64, rejects: i64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let (r, q) = (srv.count("raw.transactions").await, srv.count("quarantine.transactions").await);
        if (r, q) == (rows, rejects) {
            return;
        }
        assert!(r <= rows && q <= rejects, "more rows than produced: {r}/{rows} rows, {q}/{rejects} rejects");
        assert!(std::time::Instant::now() < deadline, "timed out at {r}/{rows} rows, {q}/{rejects} rejects");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn assert_exactly_once(srv: &Running, produced: usize, good: usize) {
    let (_, v) = srv.sql("SELECT count(*), count(DISTINCT event_id) FROM raw.transactions").await;
    assert_eq!(v["rows"][0], serde_json::json!([good, good]), "every good record exactly once");
    let (_, v) =
        srv.sql("SELECT count(*) FROM raw.transactions WHERE _source = 'kafka' AND _source_offset IS NOT NULL").await;
    assert_eq!(v["rows"][0][0], good);
    // Positions in the newest snapshot cover every produced offset.
    let (_, v) =
        srv.sql("SELECT positions FROM raw.\"transactions$snapshots\" WHERE positions IS NOT NULL LIMIT 1").await;
    let positions: serde_json::Value = serde_json::from_str(v["rows"][0][0].as_str().unwrap()).unwrap();
    let total: u64 = positions.as_object().unwrap().values().map(|p| p.as_u64().unwrap()).sum();
    assert_eq!(total, produced as u64, "positions: {positions}");
}
