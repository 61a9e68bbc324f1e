//! `_tributary.job_runs`: the history of job runs, as a table anyone can
//! query (`SELECT * FROM _tributary.job_runs ORDER BY started_at DESC`).

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use tributary_core::TableName;
use tributary_core::config::JobDef;
use tributary_core::schema::{Field, FieldType};
use tributary_table::{Change, Lake, TableError};

use crate::error::Result;
use crate::run::{RunOptions, RunReport};

/// The run history table.
pub const JOB_RUNS_TABLE: &str = "_tributary.job_runs";

fn fields() -> Vec<Field> {
    let f = |n: &str, t: FieldType| Field::new(n, t, false);
    vec![
        f("job", FieldType::String),
        f("status", FieldType::String),
        f("mode", FieldType::String),
        f("started_at", FieldType::Timestamptz),
        f("ended_at", FieldType::Timestamptz),
        f("input_table", FieldType::String),
        f("input_snapshot", FieldType::Long),
        f("input_sequence", FieldType::Long),
        f("from_sequence", FieldType::Long),
        f("output_table", FieldType::String),
        f("output_snapshot", FieldType::Long),
        f("rows_read", FieldType::Long),
        f("rows_written", FieldType::Long),
        f("quarantined", FieldType::Long),
        f("late", FieldType::Long),
        f("days_replaced", FieldType::Long),
        f("watermark", FieldType::Timestamptz),
        f("error", FieldType::String),
    ]
}

/// Appends one run (that changed the output or failed) to the history.
pub(super) async fn record(
    lake: &Lake,
    job: &JobDef,
    started_at: chrono::DateTime<chrono::Utc>,
    result: &Result<Option<RunReport>>,
    opts: &RunOptions,
) -> Result<()> {
    let (report, error) = match result {
        Ok(Some(r)) => (r.clone(), None),
        Ok(None) => return Ok(()),
        Err(e) => (RunReport { job: job.name.clone(), ..RunReport::default() }, Some(e.to_string())),
    };
    let name = TableName::parse(JOB_RUNS_TABLE).map_err(TableError::Config)?;
    let table = lake.ensure_derived(&name, &fields(), &[]).await?;
    let schema = table.arrow_schema()?;
    let text = |v: Option<&str>| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let long = |v: Option<i64>| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
    let time =
        |v: Option<i64>| -> ArrayRef { Arc::new(TimestampMicrosecondArray::from(vec![v]).with_timezone("+00:00")) };
    let count = |n: u64| long(i64::try_from(n).ok());
    let ok = error.is_none();
    let columns = vec![
        text(Some(&job.name)),
        text(Some(if ok { "ok" } else { "failed" })),
        text(ok.then_some(report.mode)),
        time(Some(started_at.timestamp_micros())),
        time(Some(chrono::Utc::now().timestamp_micros())),
        text(Some(&job.input.to_string())),
        long(ok.then_some(report.input_snapshot)),
        long(ok.then_some(report.input_sequence)),
        long(ok.then_some(report.from_sequence)),
        text(Some(&job.output.to_string())),
        long(report.output_snapshot),
        count(report.rows_read),
        count(report.rows_written),
        count(report.quarantined),
        count(report.late),
        count(report.days as u64),
        time(report.watermark),
        text(error.as_deref()),
    ];
    let batch = RecordBatch::try_new(schema, columns).map_err(|e| TableError::Internal(format!("job run row: {e}")))?;
    let files = tributary_table::write_data_files(lake, &table, &[batch], opts.target_file_size).await?;
    let none = HashSet::new();
    let mut base = table;
    for _ in 0..8 {
        let gate = lake.gate(&name);
        let _turn = gate.lock().await;
        match tributary_table::publish(lake, &base, Change::Overwrite { removed: &none, added: &files, stamp: None })
            .await
        {
            Err(TableError::CommitConflict { .. }) => base = lake.load(&name).await?,
            other => return Ok(other.map(|_| ())?),
        }
    }
    Err(TableError::CommitConflict { table: name, expected: base.location }.into())
}
