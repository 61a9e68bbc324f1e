//! Snapshot expiry: keeps the snapshots of the retention (newer than
//! `max_age`, and at least `min_snapshots`), removes the older ones from the
//! metadata, then deletes the files only they referenced.
//!
//! Positions must survive: recovery walks the ancestry back to a pipeline's
//! newest snapshot, which may be among those removed. So the expiry commit
//! first adds a *carry* snapshot, with no data change, whose summary holds
//! every pipeline's state ([`SUMMARY_CARRIED`]); the walk stops there. The
//! idempotency keys of HTTP requests live in snapshot summaries too, so the
//! retention must cover `server.idempotency_window` (config validation
//! says so).
//!
//! Which files go, along the one lineage of the main branch (a rollback is
//! a new snapshot on it, with manifests of its own):
//! - the manifest list of every removed snapshot;
//! - each manifest that removed snapshots listed and the oldest kept one
//!   does not (a manifest is listed by a contiguous run of snapshots, from
//!   the one that added it until one merged or rewrote it);
//! - each data file that a removed rewrite, overwrite or delete snapshot
//!   removed (its `DELETED` entries): no later snapshot lists it as live —
//!   unless a rollback brought it back, so while any rollback is in the
//!   history, those files are left to orphan cleanup, which checks every
//!   snapshot.

use std::collections::HashSet;

use iceberg::spec::{ManifestStatus, Operation};
use tributary_core::TableName;
use tributary_core::positions::SUMMARY_ROLLBACK_TO;

use super::{MAX_ATTEMPTS, backoff};
use crate::commit::{SnapshotChange, publish_snapshot};
use crate::error::{Result, TableError};
use crate::lake::{Lake, LoadedTable};
use crate::recovery::carried_summary;

/// Which snapshots are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Snapshots newer than this are kept.
    pub max_age: std::time::Duration,
    /// At least this many of the newest snapshots are kept, whatever their age.
    pub min_snapshots: usize,
}

/// What one expiry did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Expired {
    /// Snapshots removed from the metadata.
    pub snapshots: usize,
    /// Files deleted: manifest lists, manifests, replaced data files.
    pub files_deleted: usize,
    /// Bytes of the manifests and data files deleted.
    pub bytes_deleted: u64,
}

/// Expires the snapshots of `name` beyond `retention` at `now_ms`; with
/// `dry_run`, reports how many snapshots would go and changes nothing.
pub async fn expire_snapshots(
    lake: &Lake,
    name: &TableName,
    retention: Retention,
    now_ms: i64,
    dry_run: bool,
) -> Result<Expired> {
    for attempt in 1..=MAX_ATTEMPTS {
        let gate = lake.gate(name);
        let turn = gate.lock().await;
        let held = std::time::Instant::now();
        let base = lake.load(name).await?;
        let Some(plan) = plan(&base, retention, now_ms) else { return Ok(Expired::default()) };
        if dry_run {
            return Ok(Expired { snapshots: plan.removed.len(), ..Expired::default() });
        }
        let published = publish(lake, &base, &plan.removed).await;
        drop(turn);
        tracing::debug!(table = %name, held_ms = held.elapsed().as_secs_f64() * 1e3, "expiry held the commit gate");
        match published {
            Ok(_) => {
                let (files_deleted, bytes_deleted) = delete_unreferenced(lake, &base, &plan).await;
                let expired = Expired { snapshots: plan.removed.len(), files_deleted, bytes_deleted };
                tracing::info!(table = %name, snapshots = expired.snapshots, files = files_deleted, bytes = bytes_deleted, "expired snapshots");
                return Ok(expired);
            }
            Err(TableError::CommitConflict { .. }) => tokio::time::sleep(backoff(attempt)).await,
            Err(e) => return Err(e),
        }
    }
    Err(TableError::CommitConflict { table: name.clone(), expected: "a quieter moment for snapshot expiry".to_owned() })
}

/// The snapshots to remove, and the kept ones just newer and just older
/// than them: a manifest a removed snapshot listed is still needed only if
/// one of those two lists it.
struct Plan {
    removed: Vec<i64>,
    oldest_kept: i64,
    /// A snapshot a branch or tag names stops the removal: it and its
    /// ancestors are kept.
    named_beyond: Option<i64>,
}

/// Plans the expiry of `base`'s history; `None` if nothing is beyond the
/// retention. Only ancestors of the current snapshot are removed, never one
/// a branch or tag names.
fn plan(base: &LoadedTable, retention: Retention, now_ms: i64) -> Option<Plan> {
    let meta = &base.metadata;
    let cutoff = now_ms.saturating_sub(i64::try_from(retention.max_age.as_millis()).unwrap_or(i64::MAX));
    let named = named_snapshots(meta);
    let mut ancestry = Vec::new();
    let mut next = meta.current_snapshot();
    while let Some(snap) = next {
        ancestry.push((snap.snapshot_id(), snap.timestamp_ms()));
        next = snap.parent_snapshot_id().and_then(|p| meta.snapshot_by_id(p));
    }
    let kept = ancestry
        .iter()
        .enumerate()
        .take_while(|(i, (_, ts))| *i < retention.min_snapshots.max(1) || *ts >= cutoff)
        .count();
    let oldest_kept = ancestry[kept.checked_sub(1)?].0;
    let beyond = &ancestry[kept..];
    let named_at = beyond.iter().position(|(id, _)| named.contains(id));
    let removed: Vec<i64> = beyond[..named_at.unwrap_or(beyond.len())].iter().map(|(id, _)| *id).collect();
    let named_beyond = named_at.map(|i| beyond[i].0);
    (!removed.is_empty()).then_some(Plan { removed, oldest_kept, named_beyond })
}

/// The snapshots a branch or tag names (iceberg-rust has no accessor for
/// the refs, so they are read from the metadata's JSON form).
fn named_snapshots(meta: &iceberg::spec::TableMetadata) -> HashSet<i64> {
    let json = serde_json::to_value(meta).unwrap_or_default();
    let refs = json.get("refs").and_then(serde_json::Value::as_object);
    refs.into_iter().flatten().filter_map(|(_, r)| r.get("snapshot-id")?.as_i64()).collect()
}

/// Adds the carry snapshot on top of `base` and removes `removed`, in one
/// metadata swap.
async fn publish(lake: &Lake, base: &LoadedTable, removed: &[i64]) -> Result<LoadedTable> {
    let summary = vec![carried_summary(base, base.metadata.current_snapshot_id())?];
    let carry =
        SnapshotChange { added: &[], removed: &HashSet::new(), operation: Operation::Append, summary, expire: removed };
    publish_snapshot(lake, base, carry).await
}

/// Deletes what only the removed snapshots referenced; returns how many
/// files and bytes. Best effort: what is left is an orphan for orphan
/// cleanup, never a file a kept snapshot needs.
async fn delete_unreferenced(lake: &Lake, base: &LoadedTable, plan: &Plan) -> (usize, u64) {
    let meta = &base.metadata;
    let table = match lake.iceberg_table(base) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(table = %base.name, error = %e, "cannot read the expired snapshots; their files stay");
            return (0, 0);
        }
    };
    let list_of = |id: i64| meta.snapshot_by_id(id).cloned();
    let rolled_back = meta.snapshots().any(|s| s.summary().additional_properties.contains_key(SUMMARY_ROLLBACK_TO));
    let mut keep = HashSet::new();
    for id in std::iter::once(plan.oldest_kept).chain(plan.named_beyond) {
        if let Some(snap) = list_of(id)
            && let Ok(list) = table.manifest_list_reader(&snap).load().await
        {
            keep.extend(list.entries().iter().map(|m| m.manifest_path.clone()));
        } else {
            tracing::warn!(table = %base.name, snapshot_id = id, "cannot read a kept snapshot's manifests; expired files stay");
            return (0, 0);
        }
    }
    let mut doomed: Vec<(String, u64)> = Vec::new();
    let mut seen = HashSet::new();
    for id in &plan.removed {
        let Some(snap) = list_of(*id) else { continue };
        doomed.push((snap.manifest_list().to_owned(), 0));
        let Ok(list) = table.manifest_list_reader(&snap).load().await else { continue };
        // A named older snapshot may still list the files a rewrite replaced.
        let replaced =
            matches!(snap.summary().operation, Operation::Replace | Operation::Overwrite | Operation::Delete)
                && plan.named_beyond.is_none()
                && !rolled_back;
        for m in list.entries() {
            if replaced && m.added_snapshot_id == *id {
                let Ok(manifest) = m.load_manifest(lake.file_io()).await else { continue };
                for e in manifest.entries() {
                    if e.status() == ManifestStatus::Deleted && e.snapshot_id() == Some(*id) {
                        doomed.push((e.file_path().to_owned(), e.file_size_in_bytes()));
                    }
                }
            }
            if !keep.contains(&m.manifest_path) && seen.insert(m.manifest_path.clone()) {
                doomed.push((m.manifest_path.clone(), u64::try_from(m.manifest_length).unwrap_or(0)));
            }
        }
    }
    let (mut files, mut bytes) = (0, 0);
    for (path, size) in doomed {
        match lake.file_io().delete(&path).await {
            Ok(()) => (files, bytes) = (files + 1, bytes + size),
            Err(e) => tracing::debug!(table = %base.name, file = %path, error = %e, "cannot delete an expired file"),
        }
    }
    (files, bytes)
}
