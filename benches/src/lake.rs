//! Generated tables written straight to a lake: `raw.orders` as the zone-jobs
//! and query benchmarks share it, and the append both use. Rows go through
//! `write_data_files` and `commit` (an ingest pipeline's write path without
//! HTTP), so that building a 10,000,000-row table takes seconds, and the
//! generator is deterministic, so that two runs build the same table.

use std::sync::Arc;

use anyhow::Context;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, new_null_array};
use arrow_schema::SchemaRef;
use serde_json::{Value, json};
use tributary_core::Positions;
use tributary_core::config::ValidConfig;
use tributary_table::{Lake, PipelineStamp};

use crate::Rng;

/// An hour in microseconds.
pub const H: i64 = 3_600_000_000;
/// A day in microseconds.
pub const DAY: i64 = 24 * H;
/// 2026-11-20T00:00:00Z in microseconds: the first day of raw.orders.
pub const DAY0: i64 = 1_795_132_800_000_000;
/// Rows per commit of [`append`], unless told otherwise.
pub const COMMIT_ROWS: usize = 1_000_000;

/// The `[[tables]]` entry of raw.orders, partitioned by day.
pub const ORDERS_TABLE: &str = r#"
[[tables]]
name = "raw.orders"
partition = ["day(ts)"]
event_time = "ts"
fields = [
  { name = "id", type = "string", required = true },
  { name = "user_id", type = "string" },
  { name = "amount", type = "double" },
  { name = "ts", type = "timestamptz", required = true },
]
"#;

/// Rows `first..first + n` of `total` orders `{tag}-{i}` whose event times
/// rise evenly through `[from, to)`: users u0..u999, one amount in a
/// thousand negative (the cleanse rule of the zone-jobs benchmark refuses it).
pub fn orders(schema: &SchemaRef, tag: &str, first: usize, n: usize, total: usize, span: (i64, i64)) -> RecordBatch {
    let mut rng = Rng((first as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag.len() as u64);
    let (from, to) = span;
    let step = (to - from) / total as i64;
    let mut ts = Vec::with_capacity(n);
    let (mut users, mut amounts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in first..first + n {
        ts.push(from + ((i as i128 * (to - from) as i128) / total as i128) as i64 + rng.below(step as u64) as i64);
        users.push(format!("u{}", rng.below(1000)));
        let amount = rng.below(50_000) as f64 / 100.0;
        amounts.push(if rng.below(1000) == 0 { -amount } else { amount });
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64);
    let columns = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "id" => Arc::new(StringArray::from_iter_values((first..first + n).map(|i| format!("{tag}-{i}")))),
                "user_id" => Arc::new(StringArray::from(std::mem::take(&mut users))),
                "amount" => Arc::new(Float64Array::from(std::mem::take(&mut amounts))),
                "ts" => Arc::new(TimestampMicrosecondArray::from(std::mem::take(&mut ts)).with_timezone("+00:00")),
                "_ingested_at" => Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("+00:00")),
                _ => new_null_array(f.data_type(), n),
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("an orders batch")
}

/// Appends `n` rows to `table` (created from `cfg` if need be), a commit
/// per `per_commit` rows; `rows(schema, first, len)` generates each commit's.
/// Returns the commits made and the table's rows after them.
pub async fn append(
    lake: &Lake,
    cfg: &ValidConfig,
    table: &str,
    n: usize,
    per_commit: usize,
    rows: impl Fn(&SchemaRef, usize, usize) -> RecordBatch,
) -> anyhow::Result<Value> {
    let def = cfg.tables.iter().find(|t| t.name.to_string() == table).with_context(|| format!("no table {table}"))?;
    let mut loaded = lake.ensure_table(def).await?;
    let schema = loaded.arrow_schema()?;
    let stamp = PipelineStamp::new("bench", Positions::default(), 0);
    let mut commits = 0;
    for first in (0..n).step_by(per_commit.max(1)) {
        let batch = rows(&schema, first, per_commit.min(n - first));
        let slices: Vec<RecordBatch> =
            (0..batch.num_rows()).step_by(65_536).map(|o| batch.slice(o, 65_536.min(batch.num_rows() - o))).collect();
        let files =
            tributary_table::write_data_files(lake, &loaded, &slices, cfg.commit.target_file_size_bytes).await?;
        loaded = tributary_table::commit(lake, &loaded, &files, &stamp).await?;
        commits += 1;
    }
    Ok(json!({ "commits": commits, "input_rows": loaded.total_records() }))
}
