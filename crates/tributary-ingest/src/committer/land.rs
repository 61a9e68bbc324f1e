//! Landing one flush: rejects to the quarantine table first, then rows to
//! the data table — the order every source follows (the Kafka source's
//! `commit.rs` too), so that a crash between the two commits leaves rejects
//! that a replay recognises and skips, never rows without their rejects.
//!
//! Each commit is pinned to the table state its checks were made against
//! whenever the checks matter: a dedup key (did another writer commit this
//! key?) or an idempotency key (did another worker answer this request?).
//! If anyone commits first, the pinned swap fails, and the checks are
//! redone from the new state rather than rebased onto it. A flush whose rows
//! did not land takes its dedup keys back, so a retry is not mistaken for a
//! duplicate.

use arrow_array::RecordBatch;
use tributary_table::{LoadedTable, Outcome, PipelineStamp, last_pipeline_state};

use super::{Committer, Failed, HTTP_POSITION, Pending, non_empty};
use crate::error::IngestError;
use crate::prepare::{Reject, quarantine_batch};
use crate::requests::summary;
use crate::sink::{MAX_PINNED_ATTEMPTS, kept_changing, write_and_commit};

impl Committer {
    /// Lands the flush; returns the data table's snapshot id.
    pub(super) async fn land(&mut self, pending: &mut [Pending]) -> Result<Option<i64>, Failed> {
        let rejects_committed =
            self.land_rejects(pending).await.map_err(|error| Failed { error, rejects_committed: false })?;
        let result = self.land_rows(pending).await;
        if result.is_err()
            && let Some(index) = &self.dedup
        {
            for p in pending.iter().filter(|p| p.replayed.is_none()) {
                index.remove(&p.keys);
            }
        }
        result.map_err(|error| Failed { error, rejects_committed })?;
        Ok(self.table.current_snapshot_id())
    }

    /// Commits the rejects the quarantine table does not hold yet; true if
    /// it committed any.
    async fn land_rejects(&mut self, pending: &mut [Pending]) -> Result<bool, IngestError> {
        let mut base = self.quarantine.clone();
        for attempt in 0..MAX_PINNED_ATTEMPTS {
            if attempt > 0 {
                base = self.lake.load(&base.name).await?;
            }
            self.quarantined_requests.refresh(&base)?;
            for p in pending.iter_mut() {
                if p.idempotency.as_ref().is_some_and(|i| self.quarantined_requests.get(&i.key).is_some()) {
                    p.rejects.clear();
                }
            }
            let rejects: Vec<Reject> = pending.iter().flat_map(|p| p.rejects.iter().cloned()).collect();
            if rejects.is_empty() {
                self.quarantine = base;
                return Ok(false);
            }
            let entries: Vec<_> = pending.iter().filter(|p| !p.rejects.is_empty()).filter_map(Pending::entry).collect();
            let at = self.clock.now().timestamp_micros();
            let batch = quarantine_batch(&self.schema.quarantine_arrow, &rejects, "http", at)?;
            let pinned = (!entries.is_empty()).then(|| base.location.clone());
            let extra = if entries.is_empty() { Vec::new() } else { vec![summary(&entries)] };
            match self.commit_rows(base.clone(), &[batch], rejects.len(), pinned.as_deref(), extra).await {
                Ok(table) => {
                    self.quarantined_requests.refresh(&table)?;
                    self.quarantine = table;
                    return Ok(true);
                }
                // Someone committed since we checked: again, from there.
                Err(IngestError::Superseded(_)) if pinned.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Err(kept_changing(&self.schema.table))
    }

    /// Commits the rows of the requests no snapshot answered yet, with the
    /// idempotency keys of those that have one.
    async fn land_rows(&mut self, pending: &mut [Pending]) -> Result<(), IngestError> {
        let col = self.schema.dedup.map(|(col, _)| col);
        // The first attempt trusts the state this committer last saw: a
        // pinned swap fails if anyone committed since, and only then is the
        // table reloaded (one catalog read fewer per flush).
        let mut base = self.table.clone();
        for attempt in 0..MAX_PINNED_ATTEMPTS {
            if attempt > 0 {
                base = self.lake.load(&self.table.name).await?;
            }
            self.replay_answered(pending, &base)?;
            if let (Some(index), Some(col)) = (self.dedup.clone(), col) {
                let theirs = index.refresh(&self.lake, &base).await?;
                if !theirs.is_empty() {
                    for p in pending.iter_mut().filter(|p| p.replayed.is_none()) {
                        p.drop_keys(col, &theirs)?;
                    }
                }
            }
            let live = || pending.iter().filter(|p| p.replayed.is_none());
            let batches = non_empty(live());
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let entries: Vec<_> = live().filter_map(Pending::entry).collect();
            if rows == 0 && entries.is_empty() {
                self.table = base;
                return Ok(());
            }
            let pinned = (self.dedup.is_some() || !entries.is_empty()).then(|| base.location.clone());
            let extra = if entries.is_empty() { Vec::new() } else { vec![summary(&entries)] };
            let before = base.metadata.last_sequence_number();
            match self.commit_rows(base.clone(), &batches, rows, pinned.as_deref(), extra).await {
                Ok(table) => {
                    if let Some(index) = &self.dedup {
                        index.committed(before, table.metadata.last_sequence_number());
                    }
                    self.requests.refresh(&table)?;
                    self.table = table;
                    return Ok(());
                }
                Err(IngestError::Superseded(_)) if pinned.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        Err(kept_changing(&self.schema.table))
    }

    /// Marks the requests whose key a snapshot of `base` already answered:
    /// they write nothing and get that answer. A different body under a used
    /// key is refused, and the dedup keys it claimed are given back.
    fn replay_answered(&mut self, pending: &mut [Pending], base: &LoadedTable) -> Result<(), IngestError> {
        self.requests.refresh(base)?;
        for p in pending.iter_mut().filter(|p| p.replayed.is_none()) {
            let Some(idem) = &p.idempotency else { continue };
            let Some((entry, snapshot_id)) = self.requests.get(&idem.key) else { continue };
            let replayed = entry.replay(idem, *snapshot_id);
            // A true retry's keys are the answered request's, committed.
            if replayed.is_err()
                && let Some(index) = &self.dedup
            {
                index.remove(&p.keys);
            }
            p.keys.clear();
            p.replayed = Some(replayed);
        }
        Ok(())
    }

    /// Commits `batches` on `base` with `extra` summary properties. With
    /// `pinned`, a base other than that location is refused (`Superseded`)
    /// instead of rebased onto.
    async fn commit_rows(
        &self,
        base: LoadedTable,
        batches: &[RecordBatch],
        rows: usize,
        pinned: Option<&str>,
        extra: Vec<(String, String)>,
    ) -> Result<LoadedTable, IngestError> {
        let pipeline = self.pipeline.clone();
        let stamp_for = |b: &LoadedTable| {
            if pinned.is_some_and(|p| p != b.location) {
                return Ok(None);
            }
            let committed = last_pipeline_state(b, &pipeline)?.map(|s| s.positions).unwrap_or_default();
            let mut positions = committed.clone();
            positions.advance(HTTP_POSITION, committed.get(HTTP_POSITION).unwrap_or(0) + rows as u64);
            Ok(Some(PipelineStamp { extra: extra.clone(), ..PipelineStamp::new(pipeline.clone(), positions, 0) }))
        };
        match write_and_commit(&self.lake, base, batches, self.policy.target_file_size_bytes, stamp_for).await? {
            Outcome::Committed(new) => Ok(new),
            Outcome::Zombie(_) => Err(IngestError::Superseded(self.schema.table.clone())),
        }
    }
}

impl Pending {
    /// Drops the rows whose key (column `col`) another writer committed.
    fn drop_keys(&mut self, col: usize, theirs: &std::collections::HashSet<String>) -> Result<(), IngestError> {
        if !self.keys.iter().any(|k| theirs.contains(k)) {
            return Ok(());
        }
        let keys = self.batch.column(col).clone();
        let keep: arrow_array::BooleanArray = (0..self.batch.num_rows())
            .map(|i| Some(crate::dedup::key_at(&keys, i).is_none_or(|k| !theirs.contains(&k))))
            .collect();
        self.keys.retain(|k| !theirs.contains(k));
        self.drop_rows(&keep)
    }
}
