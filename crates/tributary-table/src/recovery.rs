//! Recovery: where a pipeline stands, read from the table alone.
//!
//! A pipeline's state is the summary of the newest snapshot *it* committed.
//! Other snapshots (compaction, other pipelines, schema changes) carry no
//! positions for it, so the walk follows parent links from the current
//! snapshot until it finds one — never just "the current snapshot".

use iceberg::spec::TableMetadata;
use tributary_core::Positions;
use tributary_core::positions::{SUMMARY_EPOCH, SUMMARY_PIPELINE, SUMMARY_POSITIONS};

use crate::commit::PipelineStamp;

/// The newest committed state of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineState {
    /// The snapshot that recorded it.
    pub snapshot_id: i64,
    /// Next position per source partition.
    pub positions: Positions,
    /// Epoch of the writer that committed it.
    pub epoch: u64,
}

/// Walks the ancestry of the current snapshot back to the newest snapshot of
/// `pipeline`. `None` if the pipeline never committed to this table.
pub fn last_pipeline_state(meta: &TableMetadata, pipeline: &str) -> Option<PipelineState> {
    let mut next = meta.current_snapshot_id();
    while let Some(id) = next {
        let snap = meta.snapshot_by_id(id)?;
        let props = &snap.summary().additional_properties;
        if props.get(SUMMARY_PIPELINE).map(String::as_str) == Some(pipeline) {
            let positions = props.get(SUMMARY_POSITIONS).and_then(|p| Positions::from_json(p).ok()).unwrap_or_default();
            let epoch = props.get(SUMMARY_EPOCH).and_then(|e| e.parse().ok()).unwrap_or(0);
            return Some(PipelineState { snapshot_id: id, positions, epoch });
        }
        next = snap.parent_snapshot_id();
    }
    None
}

/// The conflict rule for a batch that read `started_at` up to `ends_at`.
///
/// Returns the stamp to commit on `fresh`, or `None` if this batch is a zombie:
/// another writer already committed past where the batch began, or a writer
/// with a newer epoch has taken the pipeline over.
pub fn stamp_unless_zombie(
    fresh: &TableMetadata,
    pipeline: &str,
    started_at: &Positions,
    ends_at: &Positions,
    epoch: u64,
) -> Option<PipelineStamp> {
    let mut positions = Positions::default();
    if let Some(state) = last_pipeline_state(fresh, pipeline) {
        if state.positions.overtakes(started_at) || (epoch > 0 && state.epoch > epoch) {
            return None;
        }
        positions = state.positions;
    }
    positions.merge(ends_at);
    Some(PipelineStamp { pipeline: pipeline.to_owned(), positions, epoch })
}
