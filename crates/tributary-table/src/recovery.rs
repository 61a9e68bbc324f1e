//! Recovery: where a pipeline stands, read from the table alone.
//!
//! A pipeline's state is the summary of the newest snapshot *it* committed.
//! Other snapshots (compaction, other pipelines, schema changes) carry no
//! positions for it, so the walk follows parent links from the current
//! snapshot until it finds one — never just "the current snapshot".
//!
//! Snapshot expiry removes old history, and with it snapshots the walk may
//! need. So expiry first adds a snapshot carrying every pipeline's state
//! ([`SUMMARY_CARRIED`]); the walk stops there, with the state it holds or,
//! for a pipeline it does not name, with "never committed".

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tributary_core::Positions;
use tributary_core::positions::{SUMMARY_CARRIED, SUMMARY_EPOCH, SUMMARY_PIPELINE, SUMMARY_POSITIONS};

use crate::commit::PipelineStamp;
use crate::error::{Result, TableError};
use crate::lake::LoadedTable;

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
///
/// "Cannot tell" is an error, never `None`: a broken ancestry (a parent
/// expired by another engine) or unreadable positions would otherwise make
/// a source restart from its `start` policy, duplicating or skipping input.
pub fn last_pipeline_state(table: &LoadedTable, pipeline: &str) -> Result<Option<PipelineState>> {
    let mut found = None;
    walk(table, table.metadata.current_snapshot_id(), &format!("pipeline '{pipeline}'"), |id, record| {
        Ok(match record {
            Record::Stamp(p, state) if p == pipeline => {
                found = Some(state()?);
                false
            }
            Record::Carried(carried) => {
                found = carried.get(pipeline).map(|c| c.state(id));
                false
            }
            _ => true,
        })
    })?;
    Ok(found)
}

/// A pipeline's state as a carry snapshot records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carried {
    /// Next position per source partition.
    pub positions: Positions,
    /// Epoch of the writer that committed it.
    pub epoch: u64,
}

impl Carried {
    fn state(&self, snapshot_id: i64) -> PipelineState {
        PipelineState { snapshot_id, positions: self.positions.clone(), epoch: self.epoch }
    }
}

/// Every pipeline's newest state in the history of snapshot `at` of
/// `table` (`None`: an empty table): what a carry snapshot records, before
/// expiry removes history, or when a rollback goes back to `at`.
pub fn all_pipeline_states(table: &LoadedTable, at: Option<i64>) -> Result<BTreeMap<String, Carried>> {
    let mut states = BTreeMap::new();
    walk(table, at, "the pipelines", |_, record| {
        Ok(match record {
            Record::Stamp(p, state) => {
                if !states.contains_key(p) {
                    let state = state()?;
                    states.insert(p.to_owned(), Carried { positions: state.positions, epoch: state.epoch });
                }
                true
            }
            Record::Carried(carried) => {
                for (p, state) in carried {
                    states.entry(p).or_insert(state);
                }
                false
            }
            Record::Nothing => true,
        })
    })?;
    Ok(states)
}

/// The summary property of a carry snapshot: every pipeline's state as of
/// snapshot `at` of `table` (`SUMMARY_CARRIED`).
pub(crate) fn carried_summary(table: &LoadedTable, at: Option<i64>) -> Result<(String, String)> {
    let json = serde_json::to_string(&all_pipeline_states(table, at)?).map_err(|e| TableError::Corrupt {
        table: table.name.clone(),
        reason: format!("cannot encode the pipelines' positions: {e}"),
    })?;
    Ok((SUMMARY_CARRIED.to_owned(), json))
}

/// What one snapshot says about pipelines.
enum Record<'a> {
    /// A pipeline committed it; its state is parsed only when asked for.
    Stamp(&'a str, &'a dyn Fn() -> Result<PipelineState>),
    /// Expiry added it: every pipeline's state at that point; older history
    /// may be gone.
    Carried(BTreeMap<String, Carried>),
    Nothing,
}

/// Walks the ancestry of snapshot `from`, newest first, while `visit`
/// returns true. `whose` names what is being recovered, for the errors.
fn walk(
    table: &LoadedTable,
    from: Option<i64>,
    whose: &str,
    mut visit: impl FnMut(i64, Record<'_>) -> Result<bool>,
) -> Result<()> {
    let meta = &table.metadata;
    let cannot_tell = |snapshot_id: i64, why: String| TableError::Corrupt {
        table: table.name.clone(),
        reason: format!(
            "cannot tell where {whose} stopped: snapshot {snapshot_id} {why}; restore the snapshot, \
             or rename the pipeline to start it afresh from its `start` setting"
        ),
    };
    let mut next = from;
    let mut child = None;
    while let Some(id) = next {
        let Some(snap) = meta.snapshot_by_id(id) else {
            let why = match child {
                Some(c) => format!("(the parent of {c}) is gone, expired by another writer"),
                None => "is missing from the metadata".to_owned(),
            };
            return Err(cannot_tell(id, why));
        };
        let props = &snap.summary().additional_properties;
        let state = || {
            let positions = props
                .get(SUMMARY_POSITIONS)
                .ok_or_else(|| cannot_tell(id, format!("has no {SUMMARY_POSITIONS}")))
                .and_then(|p| {
                    Positions::from_json(p)
                        .map_err(|e| cannot_tell(id, format!("has unreadable {SUMMARY_POSITIONS} ({e})")))
                })?;
            let epoch = props.get(SUMMARY_EPOCH).and_then(|e| e.parse().ok()).unwrap_or(0);
            Ok(PipelineState { snapshot_id: id, positions, epoch })
        };
        let record = if let Some(pipeline) = props.get(SUMMARY_PIPELINE) {
            Record::Stamp(pipeline, &state)
        } else if let Some(carried) = props.get(SUMMARY_CARRIED) {
            Record::Carried(
                serde_json::from_str(carried)
                    .map_err(|e| cannot_tell(id, format!("has unreadable {SUMMARY_CARRIED} ({e})")))?,
            )
        } else {
            Record::Nothing
        };
        if !visit(id, record)? {
            return Ok(());
        }
        child = Some(id);
        next = snap.parent_snapshot_id();
    }
    Ok(())
}

/// The conflict rule for a batch that read `started_at` up to `ends_at`.
///
/// Returns the stamp to commit on `fresh`, or `None` if this batch is a zombie:
/// another writer already committed past where the batch began, or a writer
/// with a newer epoch has taken the pipeline over. With `contiguous` (the
/// batch must begin exactly where the table stands, as the data table of a
/// replayable source does), a table *behind* where the batch began is a
/// zombie sign too: its history went back (a rollback), and the input in
/// between must be read again rather than skipped.
pub fn stamp_unless_zombie(
    fresh: &LoadedTable,
    pipeline: &str,
    started_at: &Positions,
    ends_at: &Positions,
    epoch: u64,
    contiguous: bool,
) -> Result<Option<PipelineStamp>> {
    let mut positions = Positions::default();
    if let Some(state) = last_pipeline_state(fresh, pipeline)? {
        if state.positions.overtakes(started_at)
            || (contiguous && state.positions.falls_behind(started_at))
            || (epoch > 0 && state.epoch > epoch)
        {
            return Ok(None);
        }
        positions = state.positions;
    }
    positions.merge(ends_at);
    Ok(Some(PipelineStamp::new(pipeline, positions, epoch)))
}
