//! `[[kafka]]`: a Kafka consumer-group source feeding one table.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::{CommitPolicy, TableDef};
use crate::table_name::{TableName, is_identifier};

/// Where a partition with no committed position starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// The oldest retained offset.
    #[default]
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// What to do when records were deleted by retention before being ingested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GapPolicy {
    /// Stop the pipeline with an error naming the partition and the gap.
    #[default]
    Fail,
    /// Continue from the earliest retained offset; count the gap in a metric
    /// and record it in the quarantine table.
    Continue,
}

/// `[[kafka]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Pipeline name, unique per config; part of the pipeline id.
    pub name: String,
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic names; an entry starting with `^` is a regular expression.
    pub topics: Vec<String>,
    /// Consumer group shared by all workers of this pipeline.
    pub group_id: String,
    /// Target table, declared under `[[tables]]`.
    pub table: TableName,
    /// Payload format; `json` for now.
    #[serde(default = "default_format")]
    pub format: String,
    /// Column filled from the message key when the payload lacks it.
    #[serde(default)]
    pub key_field: Option<String>,
    /// Where partitions without a committed position start.
    #[serde(default)]
    pub start: StartAt,
    /// Policy for offsets lost to retention.
    #[serde(default)]
    pub on_offset_gap: GapPolicy,
    /// Overrides `[commit] max_rows` for this source.
    #[serde(default)]
    pub max_rows: Option<usize>,
    /// Overrides `[commit] max_bytes` for this source.
    #[serde(default)]
    pub max_bytes: Option<usize>,
    /// Overrides `[commit] max_latency` for this source.
    #[serde(default)]
    pub max_latency: Option<String>,
    /// librdkafka properties passed through (TLS, SASL, tuning).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_format() -> String {
    "json".to_owned()
}

/// A validated Kafka source.
#[derive(Debug, Clone)]
pub struct KafkaDef {
    /// Pipeline name.
    pub name: String,
    /// Bootstrap servers.
    pub brokers: String,
    /// Topics or `^regex` patterns.
    pub topics: Vec<String>,
    /// Consumer group.
    pub group_id: String,
    /// Target table.
    pub table: TableName,
    /// Column filled from the message key.
    pub key_field: Option<String>,
    /// Start policy.
    pub start: StartAt,
    /// Gap policy.
    pub on_offset_gap: GapPolicy,
    /// Commit triggers for this source.
    pub commit: CommitPolicy,
    /// librdkafka pass-through properties.
    pub properties: BTreeMap<String, String>,
}

/// Properties Tributary sets itself because exactly-once depends on them.
const OWNED_PROPERTIES: [&str; 5] =
    ["group.id", "bootstrap.servers", "enable.auto.commit", "isolation.level", "auto.offset.reset"];

impl KafkaConfig {
    pub(crate) fn validate(&self, tables: &[TableDef], commit: CommitPolicy) -> Result<KafkaDef, String> {
        if !is_identifier(&self.name) {
            return Err(format!("name = '{}': use lowercase letters, digits and '_'", self.name));
        }
        if self.brokers.trim().is_empty() {
            return Err("brokers is empty; set e.g. brokers = \"127.0.0.1:9092\"".to_owned());
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err("topics must list at least one topic name or '^regex'".to_owned());
        }
        for (i, t) in self.topics.iter().enumerate() {
            if t.starts_with('^') {
                regex::Regex::new(t).map_err(|e| {
                    format!("topics[{i}] = '{t}' is not a valid regular expression: {}", e.to_string().trim())
                })?;
            }
        }
        if self.group_id.trim().is_empty() {
            return Err("group_id is empty".to_owned());
        }
        if self.format != "json" {
            return Err(format!("format = '{}' is not supported yet; use \"json\"", self.format));
        }
        let table = tables
            .iter()
            .find(|t| t.name == self.table)
            .ok_or_else(|| format!("table = '{}' is not declared under [[tables]]", self.table))?;
        if let Some(k) = &self.key_field
            && !table.fields.iter().any(|f| &f.name == k)
        {
            return Err(format!("key_field = '{k}': table '{}' has no top-level column '{k}'", self.table));
        }
        if let Some(p) = self.properties.keys().find(|p| OWNED_PROPERTIES.contains(&p.as_str())) {
            return Err(format!(
                "properties.\"{p}\" is managed by Tributary (exactly-once depends on it); use the dedicated key instead"
            ));
        }
        let commit = commit.overridden(self.max_rows, self.max_bytes, self.max_latency.as_deref())?;
        Ok(KafkaDef {
            name: self.name.clone(),
            brokers: self.brokers.clone(),
            topics: self.topics.clone(),
            group_id: self.group_id.clone(),
            table: self.table.clone(),
            key_field: self.key_field.clone(),
            start: self.start,
            on_offset_gap: self.on_offset_gap,
            commit,
            properties: self.properties.clone(),
        })
    }
}
