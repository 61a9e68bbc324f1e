//! The net change of an input between two of its snapshots.
//!
//! A job upstream rewrites whole days (a cleanse job merging a late
//! duplicate, a backfill), so the files its commit adds repeat, unchanged,
//! almost every row of the files it removes. Read naively, a window job
//! downstream would see every row of those days as new and recompute all
//! their windows. Rows that were removed and added back identically cancel
//! out here, whole row against whole row, and only what really changed
//! remains: the downstream cost follows the upstream's change, not the
//! size of the days it rewrote.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMicrosecondType;
use arrow_array::{Array, RecordBatch};
use arrow_row::{RowConverter, SortField};
use tributary_table::TableError;
use tributary_table::changes::Changes;

use crate::error::{Result, TransformError};

/// The event times (`time`) of the rows `changes` really added and really
/// removed.
pub(crate) fn net_times(job: &str, changes: &Changes, time: &str) -> Result<(Vec<i64>, Vec<i64>)> {
    if changes.removed.is_empty() {
        return Ok((times(job, &changes.added, time)?, Vec::new()));
    }
    let Some(schema) = changes.added.first().or(changes.removed.first()).map(RecordBatch::schema) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let fields = schema.fields().iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields).map_err(|e| TableError::Internal(format!("row converter: {e}")))?;
    let mut net: HashMap<Vec<u8>, (i64, Option<i64>)> = HashMap::new();
    for (batches, sign) in [(&changes.added, 1), (&changes.removed, -1)] {
        for b in batches {
            let rows =
                converter.convert_columns(b.columns()).map_err(|e| TableError::Internal(format!("rows: {e}")))?;
            let t = time_column(job, b, time)?;
            for i in 0..b.num_rows() {
                let at = t.is_valid(i).then(|| t.value(i));
                net.entry(rows.row(i).as_ref().to_vec()).or_insert((0, at)).0 += sign;
            }
        }
    }
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for (count, at) in net.into_values() {
        let Some(at) = at else { continue };
        let into = if count > 0 { &mut added } else { &mut removed };
        into.extend(std::iter::repeat_n(at, count.unsigned_abs() as usize));
    }
    Ok((added, removed))
}

/// The non-null event times of `batches`.
pub(crate) fn times<'a>(job: &str, batches: impl IntoIterator<Item = &'a RecordBatch>, time: &str) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for b in batches {
        out.extend(time_column(job, b, time)?.iter().flatten());
    }
    Ok(out)
}

fn time_column<'a>(
    job: &str,
    batch: &'a RecordBatch,
    time: &str,
) -> Result<&'a arrow_array::PrimitiveArray<TimestampMicrosecondType>> {
    batch
        .column_by_name(time)
        .and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>())
        .ok_or_else(|| TransformError::definition(job, format!("'{time}' is not a timestamp column of the input")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};

    use super::*;

    fn batch(rows: &[(i64, i64)]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("v", DataType::Int64, true),
        ]));
        let ts = TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0));
        let v = Int64Array::from_iter_values(rows.iter().map(|r| r.1));
        RecordBatch::try_new(schema, vec![Arc::new(ts), Arc::new(v)]).unwrap()
    }

    #[test]
    fn rows_rewritten_unchanged_cancel_and_changed_ones_remain() {
        // A day of three rows rewritten: one kept, one changed value, one new.
        let changes = Changes {
            added: vec![batch(&[(1, 10), (2, 21), (3, 30), (1, 10)])],
            removed: vec![batch(&[(1, 10), (2, 20)])],
        };
        let (mut added, removed) = net_times("j", &changes, "ts").unwrap();
        added.sort_unstable();
        assert_eq!(added, vec![1, 2, 3], "the changed row, the new row, and a second copy of (1, 10)");
        assert_eq!(removed, vec![2], "the old version of the changed row");
        let plain = Changes { added: vec![batch(&[(5, 1)])], removed: Vec::new() };
        assert_eq!(net_times("j", &plain, "ts").unwrap(), (vec![5], vec![]));
    }
}
