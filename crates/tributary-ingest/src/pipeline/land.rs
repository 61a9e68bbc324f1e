//! Landing one lane, the same for every source: rejects to the quarantine
//! table first, then rows to the data table. A crash between the two
//! commits leaves rejects that a replay recognises and skips (by position,
//! or by idempotency key), never rows without their rejects.
//!
//! Each commit is stamped with the lane's positions, by the rule of their
//! kind (`tributary_core::positions`):
//! - a **range** (Kafka offsets): the zombie rule — if the table's position
//!   for a partition is past where the lane's input began, another writer
//!   landed it, and the lane is dropped;
//! - **requests** (HTTP): the running count, plus the idempotency keys the
//!   snapshot answers (`tributary.requests`).
//!
//! A commit is pinned to the table state its checks ran against whenever
//! the checks matter: a dedup key (did another writer commit this key?) or
//! an idempotency key (did another worker answer this request?). If anyone
//! commits first, the pinned swap is refused and the checks are redone from
//! the new state rather than rebased onto it. A lane whose rows did not land
//! gives its dedup keys back, so a retry is not mistaken for a duplicate.

use arrow_array::RecordBatch;
use tributary_core::{Classify, Positions};
use tributary_table::{LoadedTable, Outcome, PipelineStamp, last_pipeline_state, stamp_unless_zombie};

use super::chunk::{Chunk, Delta};
use super::{HTTP_POSITION, TablePipeline};
use crate::error::IngestError;
use crate::prepare::{Reject, quarantine_batch};
use crate::requests::summary;
use crate::sink::{MAX_PINNED_ATTEMPTS, kept_changing, write_and_commit};

/// How a lane's landing ended.
pub(super) enum Flushed {
    /// Both tables hold it; the data table's snapshot.
    Committed(Option<i64>),
    /// Another writer had landed (part of) its input: nothing of its rows
    /// was written.
    Zombie,
}

/// A failed landing, and whether its rejects reached the quarantine table
/// before it failed.
pub(super) struct Failed {
    pub error: IngestError,
    pub rejects_committed: bool,
}

impl Failed {
    /// What a chunk of the landing is answered. An HTTP client is told
    /// when its rejects did land (its retry writes only the rows); a
    /// replayable source re-reads both from the positions either way.
    pub fn answer(&self, request: bool) -> IngestError {
        match &self.error {
            IngestError::Superseded(t) => IngestError::Superseded(t.clone()),
            e if request && self.rejects_committed => IngestError::OnlyRejectsCommitted(e.to_string()),
            e if e.is_retryable() => IngestError::Unavailable(e.to_string()),
            e => IngestError::Internal(e.to_string()),
        }
    }
}

/// The positions a lane's chunks cover, by kind.
enum Span {
    /// HTTP requests: a count of rows, never replayed.
    Requests,
    /// Replayable input: per partition, where it began (for rows and for
    /// rejects) and where it ends.
    Range { from: Positions, rejects_from: Positions, to: Positions },
}

impl Span {
    /// The span of `chunks`, which come from one source.
    fn of(chunks: &[Chunk]) -> Self {
        let mut span = None;
        for c in chunks {
            let Delta::Range(r) = &c.delta else { continue };
            let (from, rejects_from, to) =
                span.get_or_insert_with(|| (Positions::default(), Positions::default(), Positions::default()));
            earliest(from, &r.from);
            earliest(rejects_from, &r.rejects_from);
            to.merge(&r.to);
        }
        span.map_or(Self::Requests, |(from, rejects_from, to)| Self::Range { from, rejects_from, to })
    }

    /// Whether a commit moves positions even without rows.
    fn moves(&self) -> bool {
        matches!(self, Self::Range { to, .. } if !to.0.is_empty())
    }

    /// The stamp of a commit of `rows` rows (rejects when `rejects`) on
    /// `base`, or `None` if `base` proves the input landed already.
    fn stamp(
        &self,
        base: &LoadedTable,
        pipeline: &str,
        rows: usize,
        rejects: bool,
        extra: &[(String, String)],
    ) -> tributary_table::Result<Option<PipelineStamp>> {
        let stamp = match self {
            Self::Requests => {
                let mut positions = last_pipeline_state(base, pipeline)?.map(|s| s.positions).unwrap_or_default();
                let count = positions.get(HTTP_POSITION).unwrap_or(0);
                positions.advance(HTTP_POSITION, count + rows as u64);
                Some(PipelineStamp::new(pipeline, positions, 0))
            }
            Self::Range { from, rejects_from, to } => {
                // The quarantine table moves only when rejects land, so its
                // positions may lag where a batch's rejects begin.
                stamp_unless_zombie(base, pipeline, if rejects { rejects_from } else { from }, to, 0, !rejects)?
            }
        };
        Ok(stamp.map(|s| PipelineStamp { extra: extra.to_vec(), ..s }))
    }
}

/// Many small batches (a trickle of small requests or chunks) as one: the
/// Parquet writer and the partition splitter pay per batch.
fn coalesce(batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>, IngestError> {
    if batches.len() < 2 {
        return Ok(batches);
    }
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows / batches.len() >= 4096 {
        return Ok(batches);
    }
    let merged = arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
        .map_err(|e| IngestError::Internal(format!("joining batches: {e}")))?;
    Ok(vec![merged])
}

/// Lowers each position of `into` to `other`'s where that is earlier.
fn earliest(into: &mut Positions, other: &Positions) {
    for (k, v) in &other.0 {
        into.0.entry(k.clone()).and_modify(|p| *p = (*p).min(*v)).or_insert(*v);
    }
}

/// How one commit ended.
enum Commit {
    Done(LoadedTable),
    /// The pinned base moved, but not past this input: check again from it.
    Moved(LoadedTable),
    /// The table is past this input, or behind it (rolled back): the input
    /// is read again from the table's positions. Holds the table's state.
    Zombie(LoadedTable),
}

impl TablePipeline {
    /// Lands `chunks` of the source stamped `pipeline`.
    pub(super) async fn land(
        &mut self,
        pipeline: &str,
        file_size: usize,
        chunks: &mut [Chunk],
    ) -> Result<Flushed, Failed> {
        let span = Span::of(chunks);
        let rejects = self.land_rejects(pipeline, &span, file_size, chunks).await;
        let rejects_committed = match rejects {
            Ok(Some(committed)) => committed,
            Ok(None) => {
                self.give_back(chunks);
                return Ok(Flushed::Zombie);
            }
            Err(error) => {
                self.give_back(chunks);
                return Err(Failed { error, rejects_committed: false });
            }
        };
        match self.land_rows(pipeline, &span, file_size, chunks).await {
            Ok(true) => Ok(Flushed::Committed(self.table.current_snapshot_id())),
            Ok(false) => {
                self.give_back(chunks);
                // The source reads again from the table's positions: the
                // index must first hold what the table holds now, or rows a
                // rollback removed would come back as duplicates.
                if let Some(index) = &self.dedup
                    && let Err(error) = index.refresh(&self.lake, &self.table).await
                {
                    return Err(Failed { error, rejects_committed });
                }
                Ok(Flushed::Zombie)
            }
            Err(error) => {
                self.give_back(chunks);
                Err(Failed { error, rejects_committed })
            }
        }
    }

    /// Forgets the dedup keys of chunks whose rows did not land.
    fn give_back(&self, chunks: &[Chunk]) {
        if let Some(index) = &self.dedup {
            for c in chunks.iter().filter(|c| c.replayed.is_none()) {
                index.remove(&c.keys);
            }
        }
    }

    /// Commits the rejects the quarantine table does not hold yet: whether
    /// it committed any, or `None` if the input had landed already.
    async fn land_rejects(
        &mut self,
        pipeline: &str,
        span: &Span,
        file_size: usize,
        chunks: &mut [Chunk],
    ) -> Result<Option<bool>, IngestError> {
        let mut base = self.quarantine.clone();
        for _ in 0..MAX_PINNED_ATTEMPTS {
            self.quarantined_requests.refresh(&base)?;
            for c in chunks.iter_mut() {
                if c.idempotency().is_some_and(|i| self.quarantined_requests.get(&i.key).is_some()) {
                    c.rejects.clear();
                }
            }
            let rejects: Vec<Reject> = chunks.iter().flat_map(|c| c.rejects.iter().cloned()).collect();
            if rejects.is_empty() {
                self.quarantine = base;
                return Ok(Some(false));
            }
            let entries: Vec<_> = chunks.iter().filter(|c| !c.rejects.is_empty()).filter_map(Chunk::entry).collect();
            let source = pipeline.split(':').next().unwrap_or(pipeline);
            let batch =
                quarantine_batch(&self.schema.quarantine_arrow, &rejects, source, self.clock.now().timestamp_micros())?;
            let extra = if entries.is_empty() { Vec::new() } else { vec![summary(&entries)] };
            let pinned = !entries.is_empty();
            let landing = Landing { pipeline, span, rejects: true, pinned, extra, file_size };
            match self.commit(&landing, base, &[batch], rejects.len()).await? {
                Commit::Done(table) => {
                    self.quarantined_requests.refresh(&table)?;
                    self.quarantine = table;
                    return Ok(Some(true));
                }
                Commit::Moved(fresh) => base = fresh,
                Commit::Zombie(fresh) => {
                    self.quarantine = fresh;
                    return Ok(None);
                }
            }
        }
        Err(kept_changing(&self.schema.table))
    }

    /// Commits the rows of the chunks no snapshot answered yet, with the
    /// idempotency keys of those that have one: true once committed, false
    /// if the input had landed already.
    async fn land_rows(
        &mut self,
        pipeline: &str,
        span: &Span,
        file_size: usize,
        chunks: &mut [Chunk],
    ) -> Result<bool, IngestError> {
        let col = self.schema.dedup.map(|(col, _)| col);
        // The first attempt trusts the state this pipeline last saw: a
        // pinned swap fails if anyone committed since, and only then is the
        // state re-read (one catalog read fewer per landing).
        let mut base = self.table.clone();
        for _ in 0..MAX_PINNED_ATTEMPTS {
            self.replay_answered(chunks, &base)?;
            if let (Some(index), Some(col)) = (self.dedup.clone(), col) {
                let theirs = index.refresh(&self.lake, &base).await?;
                if !theirs.is_empty() {
                    for c in chunks.iter_mut().filter(|c| c.replayed.is_none()) {
                        c.drop_keys(col, &theirs)?;
                    }
                }
            }
            let live = || chunks.iter().filter(|c| c.replayed.is_none());
            let batches = coalesce(live().map(|c| c.batch.clone()).filter(|b| b.num_rows() > 0).collect())?;
            let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
            let entries: Vec<_> = live().filter_map(Chunk::entry).collect();
            // A range commits even when every record was a reject or a
            // duplicate: its positions move.
            if rows == 0 && entries.is_empty() && !span.moves() {
                self.table = base;
                return Ok(true);
            }
            let extra = if entries.is_empty() { Vec::new() } else { vec![summary(&entries)] };
            let pinned = self.dedup.is_some() || !entries.is_empty();
            let landing = Landing { pipeline, span, rejects: false, pinned, extra, file_size };
            let before = base.metadata.last_sequence_number();
            match self.commit(&landing, base, &batches, rows).await? {
                Commit::Done(table) => {
                    if let Some(index) = &self.dedup {
                        let keys = live().flat_map(|c| c.keys.iter());
                        index.committed(before, table.metadata.last_sequence_number(), keys);
                    }
                    self.requests.refresh(&table)?;
                    self.table = table;
                    return Ok(true);
                }
                Commit::Moved(fresh) => base = fresh,
                Commit::Zombie(fresh) => {
                    self.requests.refresh(&fresh)?;
                    self.table = fresh;
                    return Ok(false);
                }
            }
        }
        Err(kept_changing(&self.schema.table))
    }

    /// Marks the chunks whose idempotency key a snapshot of `base` already
    /// answered: they write nothing and get that answer. A different body
    /// under a used key is refused, and the dedup keys it claimed are given
    /// back.
    fn replay_answered(&mut self, chunks: &mut [Chunk], base: &LoadedTable) -> Result<(), IngestError> {
        self.requests.refresh(base)?;
        for c in chunks.iter_mut().filter(|c| c.replayed.is_none()) {
            let Some(idem) = c.idempotency() else { continue };
            let Some((entry, snapshot_id)) = self.requests.get(&idem.key) else { continue };
            let replayed = entry.replay(idem, *snapshot_id);
            // A true retry's keys are the answered request's, committed.
            if let Some(index) = &self.dedup {
                match replayed {
                    Ok(_) => index.settle(&c.keys),
                    Err(_) => index.remove(&c.keys),
                }
            }
            c.keys.clear();
            c.replayed = Some(replayed);
        }
        Ok(())
    }

    /// Commits `batches` on `base`. A pinned commit refuses any other base
    /// instead of rebasing onto it.
    async fn commit(
        &self,
        landing: &Landing<'_>,
        base: LoadedTable,
        batches: &[RecordBatch],
        rows: usize,
    ) -> Result<Commit, IngestError> {
        let Landing { pipeline, span, rejects, pinned, extra, file_size } = landing;
        let pinned_at = pinned.then(|| base.location.clone());
        let stamp_for = |b: &LoadedTable| {
            if pinned_at.as_ref().is_some_and(|p| *p != b.location) {
                return Ok(None);
            }
            span.stamp(b, pipeline, rows, *rejects, extra)
        };
        Ok(match write_and_commit(&self.lake, base, batches, *file_size, stamp_for).await? {
            Outcome::Committed(new) => Commit::Done(new),
            // Refused: moved under a pin, or overtaken (a zombie).
            Outcome::Zombie(fresh) => {
                if *pinned && span.stamp(&fresh, pipeline, rows, *rejects, extra)?.is_some() {
                    Commit::Moved(fresh)
                } else {
                    Commit::Zombie(fresh)
                }
            }
        })
    }
}

/// What one commit of a landing stamps and how it treats a moved base.
struct Landing<'a> {
    pipeline: &'a str,
    span: &'a Span,
    /// Whether this commit holds rejects (the quarantine table).
    rejects: bool,
    pinned: bool,
    extra: Vec<(String, String)>,
    file_size: usize,
}
