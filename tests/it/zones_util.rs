//! Fixtures for zone-job tests: a raw table written directly (one commit
//! per call, as an ingest pipeline would), jobs run by hand, outputs read
//! back as sorted text rows.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array};
use tributary_core::Positions;
use tributary_core::config::{JobDef, ValidConfig};
use tributary_query::{QueryEngine, output};
use tributary_table::{Lake, PipelineStamp};
use tributary_transform::{RunOptions, RunReport};

pub const H: i64 = 3_600_000_000;
/// 2026-11-20T00:00:00Z in microseconds.
pub const DAY0: i64 = 1_795_132_800_000_000;

/// raw.orders: id, user_id, amount, ts; `jobs` appended.
pub fn zone_config(jobs: &str, dir: &Path) -> ValidConfig {
    let text = format!(
        r#"
[[tables]]
name = "raw.orders"
partition = ["day(ts)"]
event_time = "ts"
fields = [
  {{ name = "id", type = "string", required = true }},
  {{ name = "user_id", type = "string" }},
  {{ name = "amount", type = "double" }},
  {{ name = "ts", type = "timestamptz", required = true }},
]

[[tables]]
name = "ref.users"
event_time = "valid_from"
fields = [
  {{ name = "user_id", type = "string" }},
  {{ name = "segment", type = "string" }},
  {{ name = "valid_from", type = "timestamptz" }},
]
{jobs}
"#
    );
    crate::common::config(&text, dir)
}

/// One order: (id, user, amount, ts µs).
pub type Order = (String, String, f64, i64);

/// Appends `orders` to raw.orders in one commit.
pub async fn append(lake: &Lake, cfg: &ValidConfig, orders: &[Order]) {
    let def = cfg.tables.iter().find(|t| t.name.to_string() == "raw.orders").unwrap();
    let table = lake.ensure_table(def).await.unwrap();
    let schema = Arc::new(iceberg_arrow(&table));
    let n = orders.len();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "id" => Arc::new(StringArray::from_iter_values(orders.iter().map(|o| o.0.clone()))),
                "user_id" => Arc::new(StringArray::from_iter_values(orders.iter().map(|o| o.1.clone()))),
                "amount" => Arc::new(Float64Array::from_iter_values(orders.iter().map(|o| o.2))),
                "ts" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(orders.iter().map(|o| o.3)).with_timezone("+00:00"),
                ),
                "_ingested_at" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
                        chrono::Utc::now().timestamp_micros(),
                        n,
                    ))
                    .with_timezone("+00:00"),
                ),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    let batch = RecordBatch::try_new(schema, columns).unwrap();
    append_batch(lake, &table, batch).await;
}

/// Appends `rows` of (user, segment, valid_from) to ref.users.
pub async fn append_users(lake: &Lake, cfg: &ValidConfig, rows: &[(&str, &str, i64)]) {
    let def = cfg.tables.iter().find(|t| t.name.to_string() == "ref.users").unwrap();
    let table = lake.ensure_table(def).await.unwrap();
    let schema = Arc::new(iceberg_arrow(&table));
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "user_id" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                "segment" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                "valid_from" => Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2)).with_timezone("+00:00"),
                ),
                _ => new_null_array(f.data_type(), rows.len()),
            }
        })
        .collect();
    append_batch(lake, &table, RecordBatch::try_new(schema, columns).unwrap()).await;
}

fn iceberg_arrow(table: &tributary_table::LoadedTable) -> arrow_schema::Schema {
    tributary_table::iceberg::arrow::schema_to_arrow_schema(table.metadata.current_schema()).unwrap()
}

async fn append_batch(lake: &Lake, table: &tributary_table::LoadedTable, batch: RecordBatch) {
    let files = tributary_table::write_data_files(lake, table, &[batch], 1 << 27).await.unwrap();
    let stamp = PipelineStamp::new("test", Positions::default(), 0);
    tributary_table::commit(lake, table, &files, &stamp).await.unwrap();
}

pub fn job<'a>(cfg: &'a ValidConfig, name: &str) -> &'a JobDef {
    cfg.jobs.iter().find(|j| j.name == name).unwrap()
}

/// Runs `name` until it has nothing left to do; the last report.
pub async fn run(lake: &Lake, cfg: &ValidConfig, name: &str) -> Option<RunReport> {
    let opts = RunOptions::new(1 << 27);
    let mut last = None;
    while let Some(r) = tributary_transform::schedule::run_job(lake, job(cfg, name), &opts).await.unwrap() {
        last = Some(r);
    }
    last
}

/// `sql`'s rows as text lines, sorted.
pub async fn lines(lake: &Lake, sql: &str) -> Vec<String> {
    let engine = QueryEngine::new(lake.clone(), 1).unwrap();
    let r = engine.sql(sql).await.unwrap();
    let mut out = Vec::new();
    for b in &r.batches {
        for row in 0..b.num_rows() {
            out.push((0..b.num_columns()).map(|c| output::cell_text(b, c, row)).collect::<Vec<_>>().join("|"));
        }
    }
    out.sort();
    out
}
