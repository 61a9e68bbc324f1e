//! A table's snapshots as SQL (`t$snapshots`) and the HTTP API
//! (`GET /v1/tables/{t}/snapshots`) show them: newest first, with the
//! summary keys people ask about, Tributary's among them.

use tributary_core::positions::{SUMMARY_EPOCH, SUMMARY_PIPELINE, SUMMARY_POSITIONS};

use crate::lake::LoadedTable;

/// One snapshot kept in a table's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Its id.
    pub snapshot_id: i64,
    /// Its parent's id.
    pub parent_id: Option<i64>,
    /// When it was committed, milliseconds since the epoch.
    pub committed_at_ms: i64,
    /// `append`, `replace`, `overwrite` or `delete`.
    pub operation: String,
    /// Rows it added.
    pub added_records: Option<i64>,
    /// Rows the table held after it.
    pub total_records: Option<i64>,
    /// The pipeline whose positions it carries.
    pub pipeline: Option<String>,
    /// That pipeline's fencing epoch.
    pub epoch: Option<i64>,
    /// Its positions, as the JSON text stored in the summary.
    pub positions: Option<String>,
}

/// Every snapshot `table` keeps, newest first.
pub fn snapshot_log(table: &LoadedTable) -> Vec<SnapshotInfo> {
    let mut snaps: Vec<_> = table.metadata.snapshots().collect();
    snaps.sort_by_key(|s| std::cmp::Reverse((s.sequence_number(), s.timestamp_ms())));
    snaps
        .into_iter()
        .map(|s| {
            let props = &s.summary().additional_properties;
            let number = |k: &str| props.get(k).and_then(|v| v.parse::<i64>().ok());
            SnapshotInfo {
                snapshot_id: s.snapshot_id(),
                parent_id: s.parent_snapshot_id(),
                committed_at_ms: s.timestamp_ms(),
                operation: s.summary().operation.as_str().to_owned(),
                added_records: number("added-records"),
                total_records: number("total-records"),
                pipeline: props.get(SUMMARY_PIPELINE).cloned(),
                epoch: number(SUMMARY_EPOCH),
                positions: props.get(SUMMARY_POSITIONS).cloned(),
            }
        })
        .collect()
}
