//! The file source: files dropped in a landing directory (`[[files]]`,
//! listed every `poll_interval`) or named by `tributary load`, each landed
//! exactly once in its table.
//!
//! It is a replayable source on the table pipeline like Kafka: a file is
//! read in parts ([`read`]), each a chunk whose position delta moves the
//! file's key (`tributary_core::files`) from the part's first row to the
//! next, and the file's last chunk marks it finished. So a file's rows may
//! span several commits, a crash resumes it at its last committed row, and
//! a committed file is never read again. A file that cannot be read as what
//! it claims to be (corrupt Parquet, a CSV header that does not match)
//! becomes one quarantine entry and is finished too; a file whose size or
//! modification time changed after it was read is reported and left alone.
//!
//! Every chunk of a pass is one read generation: when one does not land
//! (another worker took the file, a retryable failure), the pipeline drops
//! the rest, and the source reloads the positions and decides every file
//! again.

mod conform;
pub mod listing;
mod read;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tributary_core::files::{FILE_DONE, FILES_PIPELINE, FilesDef, file_progress, parse_file_key};
use tributary_core::metrics as m;
use tributary_core::{Classify, Clock, Positions, TableName};
use tributary_table::{Lake, last_pipeline_state};

use self::listing::{FileRef, Landing};
use self::read::{FileError, FileReader, PART_ROWS, Part};
use crate::error::IngestError;
use crate::health::Health;
use crate::pipeline::{Chunk, Delta, Landed, Range};
use crate::prepare::{IngestSchema, Reject};
use crate::validate::Rejection;

/// Passes in a row that may fail to land before a one-off load gives up.
const MAX_ATTEMPTS: u32 = 5;

/// The chunks a file source may queue per table: two commit batches of
/// parts, as a Kafka source does.
pub fn queue_depth(def: &FilesDef) -> usize {
    (def.commit.max_rows / PART_ROWS).clamp(2, 64) * 2
}

/// A table a file source feeds.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its ingest view.
    pub schema: Arc<IngestSchema>,
    /// Its pipeline's lane for this source.
    pub chunks: mpsc::Sender<Chunk>,
}

/// What a pass did, file by file and row by row: `tributary load`'s
/// reconciliation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Files landed in full by this pass.
    pub loaded: u64,
    /// Files found already landed.
    pub skipped: u64,
    /// Files landed as one quarantine entry (unreadable as their format).
    pub failed: u64,
    /// Files whose size or modification time changed after they were read.
    pub changed: u64,
    /// Files that could not be opened (permissions, I/O errors).
    pub unreadable: u64,
    /// Records read by chunks that committed (rows, and records that were
    /// not rows).
    pub rows_read: u64,
    /// Rows committed to the table.
    pub rows_written: u64,
    /// Records committed to the quarantine table (not the entries of failed files).
    pub rows_quarantined: u64,
    /// Rows dropped as duplicates of the table's dedup key.
    pub duplicates: u64,
}

impl Tally {
    /// Adds `other`'s counts to these.
    fn add(&mut self, other: &Tally) {
        self.loaded += other.loaded;
        self.skipped += other.skipped;
        self.failed += other.failed;
        self.changed += other.changed;
        self.unreadable += other.unreadable;
        self.rows_read += other.rows_read;
        self.rows_written += other.rows_written;
        self.rows_quarantined += other.rows_quarantined;
        self.duplicates += other.duplicates;
    }

    /// Whether every file offered landed or had landed before.
    pub fn all_good(&self) -> bool {
        self.failed == 0 && self.changed == 0 && self.unreadable == 0
    }
}

/// Bytes and rows read so far, shared with a progress display.
#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes of all the files to read.
    pub bytes_total: AtomicU64,
    /// Bytes read.
    pub bytes: AtomicU64,
    /// Records read.
    pub rows: AtomicU64,
}

/// Reads files into their tables' pipelines.
pub struct FileSource {
    def: FilesDef,
    lake: Lake,
    targets: HashMap<TableName, Target>,
    clock: Arc<dyn Clock>,
    health: Health,
    /// The storage the files are on.
    landing: Landing,
    /// The read generation of the current pass.
    epoch: u64,
    /// Changed or unrouted files already reported, so a poll does not repeat it.
    reported: HashSet<String>,
    /// Files this process landed (a later pass finds them finished).
    landed: HashSet<String>,
    progress: Arc<Progress>,
}

impl FileSource {
    /// A source for `def`, feeding `targets`; an error if its S3 landing
    /// area has no credentials.
    pub fn new(
        def: FilesDef,
        lake: Lake,
        targets: HashMap<TableName, Target>,
        clock: Arc<dyn Clock>,
        health: Health,
    ) -> Result<Self, IngestError> {
        let landing = Landing::of(&def.root, &def.s3)
            .map_err(|e| IngestError::Source(format!("file source '{}': {e}", def.name)))?;
        let progress = Arc::default();
        let (reported, landed) = (HashSet::new(), HashSet::new());
        Ok(Self { def, lake, targets, clock, health, landing, epoch: 0, reported, landed, progress })
    }

    /// The counters a progress display reads.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    fn component(&self) -> String {
        format!("files:{}", self.def.name)
    }

    /// Polls the landing directory until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), IngestError> {
        let component = self.component();
        self.health.starting(&component, "first listing");
        let tables: Vec<TableName> = self.targets.keys().cloned().collect();
        loop {
            let listed = self.landing.list(&self.def.root, &self.def.route, &tables).await;
            match listed {
                Ok(listing) => {
                    for relative in listing.unrouted {
                        if self.reported.insert(relative.clone()) {
                            tracing::warn!(source = %component, file = %relative,
                                "file is not under a directory named after a declared table (ns.t); not loaded");
                        }
                    }
                    match self.pass(listing.files, &shutdown).await.1 {
                        Ok(()) => self.health.up(&component),
                        // Another worker landed some of these files first:
                        // the next pass starts from what it committed.
                        Err(IngestError::Superseded(_)) => {
                            tracing::debug!(source = %component, "files taken by another worker")
                        }
                        Err(e) if e.is_retryable() => self.health.down(&component, &e.to_string()),
                        Err(e) => return Err(e),
                    }
                }
                Err(e) => self.health.down(&component, &format!("cannot list {}: {e}", self.def.root)),
            }
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.def.poll_interval) => {}
            }
        }
    }

    /// Lands `files` once (`tributary load`), passing again after a chunk
    /// that did not land, up to [`MAX_ATTEMPTS`] times. The tally adds up
    /// every pass's committed chunks, so it reconciles across retries.
    pub async fn load(&mut self, files: Vec<FileRef>, shutdown: &CancellationToken) -> Result<Tally, IngestError> {
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        self.progress.bytes_total.store(bytes, Ordering::Relaxed);
        let mut total = Tally::default();
        for attempt in 1.. {
            let (tally, result) = self.pass(files.clone(), shutdown).await;
            total.add(&tally);
            match result {
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::warn!(error = %e, attempt, "a load pass did not land; reading again from the table");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
                // Every pass meets the files skipped, refused or unreadable
                // again: the last one counts them.
                other => {
                    let (skipped, changed, unreadable) = (tally.skipped, tally.changed, tally.unreadable);
                    return other.map(|()| Tally { skipped, changed, unreadable, ..total });
                }
            }
        }
        unreachable!("the attempts are bounded")
    }

    /// One pass over `files`, from the tables' positions: what its committed
    /// chunks did, and an error if a chunk did not land (the caller passes
    /// again).
    async fn pass(&mut self, files: Vec<FileRef>, shutdown: &CancellationToken) -> (Tally, Result<(), IngestError>) {
        self.epoch += 1;
        let mut pass = Pass::default();
        let mut states = HashMap::new();
        for table in files.iter().map(|f| &f.table).collect::<HashSet<_>>() {
            match self.known(table).await {
                Ok(known) => states.insert(table.clone(), known),
                Err(e) => return (pass.tally, Err(e)),
            };
        }
        for file in files {
            if shutdown.is_cancelled() || pass.failure.is_some() {
                break;
            }
            let Some(target) = self.targets.get(&file.table).cloned() else { continue };
            let known = &states[&file.table];
            let Some(start) = self.decide(&file, known, &mut pass.tally).await else { continue };
            let quarantined_to = known.quarantine.get(&file.key()).unwrap_or(0);
            if let Err(e) = self.stream(&file, &target, start, quarantined_to, &mut pass, shutdown).await {
                pass.failure.get_or_insert(e);
            }
        }
        if let Some(mut held) = pass.held.take() {
            // The pass's last chunk lands without waiting for a trigger.
            held.chunk.urgent = true;
            self.send(held, &mut pass).await;
        }
        self.settle(&mut pass, true).await;
        match pass.failure {
            Some(e) => (pass.tally, Err(e)),
            None => (pass.tally, Ok(())),
        }
    }

    /// What `table` and its quarantine table hold of the files pipeline.
    async fn known(&self, table: &TableName) -> Result<Known, IngestError> {
        let state = |t: &tributary_table::LoadedTable| {
            last_pipeline_state(t, FILES_PIPELINE).map(|s| s.map(|s| s.positions).unwrap_or_default())
        };
        let data = self.lake.load(table).await.map_err(IngestError::Table)?;
        let quarantine = self.lake.load(&table.quarantine()).await.map_err(IngestError::Table)?;
        let data = state(&data).map_err(IngestError::Table)?;
        let versions = data.0.keys().filter_map(|k| parse_file_key(k)).map(|(l, v)| (l.to_owned(), v.to_owned()));
        let versions = versions.collect();
        Ok(Known { data, quarantine: state(&quarantine).map_err(IngestError::Table)?, versions })
    }

    /// Where to start `file`, or `None` if it is not to be read: finished
    /// (its post-action is done again, idempotently), or changed since a
    /// version of it was read.
    async fn decide(&mut self, file: &FileRef, known: &Known, tally: &mut Tally) -> Option<u64> {
        let key = file.key();
        if let Some(value) = known.data.get(&key) {
            let (rows, done) = file_progress(value);
            if !done {
                return Some(rows);
            }
            if !self.landed.contains(&key) {
                tally.skipped += 1;
            }
            self.post_action(file).await;
            return None;
        }
        // Not this version: any version of the same location is another.
        let Some(old) = known.versions.get(&file.location) else { return Some(0) };
        let version = file.version();
        tally.changed += 1;
        if self.reported.insert(key) {
            metrics::counter!(m::FILES, "table" => file.table.to_string(), "outcome" => "changed").increment(1);
            tracing::warn!(file = %file.location, was = %old, now = %version,
                "file changed after it was read (its size or modification time differ); not loaded again: \
                 give new content a new file name");
        }
        None
    }

    /// Reads `file` from row `start` on a blocking thread, at most two
    /// parts ahead, and hands each part on as a chunk; the file's last
    /// chunk finishes it.
    async fn stream(
        &mut self,
        file: &FileRef,
        target: &Target,
        start: u64,
        quarantined_to: u64,
        pass: &mut Pass,
        shutdown: &CancellationToken,
    ) -> Result<(), IngestError> {
        let (parts_tx, mut parts) = mpsc::channel(2);
        let (def, schema, opened) = (self.def.clone(), target.schema.clone(), file.clone());
        let (now, progress) = (self.clock.now().timestamp_micros(), self.progress.clone());
        let copy = self.landing.local_copy(file).await;
        let reading = tokio::task::spawn_blocking(move || {
            let copy = match copy {
                Ok(copy) => copy,
                Err(e) => return drop(parts_tx.blocking_send(Err(FileError::Unreadable(e)))),
            };
            let opened =
                FileReader::open(&opened, &copy.path, def.format, &def.csv, schema, start, quarantined_to, now);
            let mut reader = match opened {
                Ok(r) => r,
                Err(e) => return drop(parts_tx.blocking_send(Err(e))),
            };
            loop {
                let part = reader.next_part();
                let more = matches!(part, Ok(Some(_)));
                if let Ok(Some(p)) = &part {
                    progress.bytes.fetch_add(p.bytes, Ordering::Relaxed);
                }
                if parts_tx.blocking_send(part).is_err() || !more {
                    return;
                }
            }
        });
        let (key, mut from, mut produced) = (file.key(), start, false);
        let end = loop {
            let item = tokio::select! {
                biased;
                () = shutdown.cancelled() => break None,
                item = parts.recv() => item,
            };
            match item {
                Some(Ok(Some(part))) => {
                    let Part { batch, rejects, next_row, records, bytes } = part;
                    self.progress.rows.fetch_add(records, Ordering::Relaxed);
                    let chunk = self.chunk(&key, (from, next_row, quarantined_to), batch, rejects, bytes, now);
                    self.hold(Held::new(chunk, &file.table, records, None), pass).await;
                    (from, produced) = (next_row, true);
                }
                Some(Ok(None)) => break Some(None),
                Some(Err(FileError::Bad(reason))) => break Some(Some(reason)),
                Some(Err(FileError::Internal(e))) => {
                    // A defect, not the file's fault: it is not finished, so
                    // a fixed version reads it again.
                    pass.tally.unreadable += 1;
                    tracing::error!(file = %file.location, error = %e, "cannot read the file; please report it");
                    break None;
                }
                Some(Err(FileError::Unreadable(e))) => {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        pass.tally.unreadable += 1;
                        metrics::counter!(m::FILES, "table" => file.table.to_string(), "outcome" => "unreadable")
                            .increment(1);
                        tracing::warn!(file = %file.location, error = %e, "cannot read the file; trying again later");
                    }
                    break None;
                }
                None => return Err(IngestError::Internal(format!("the reader of {} stopped", file.location))),
            }
        };
        drop(parts);
        reading.await.map_err(|e| IngestError::Internal(format!("file reader: {e}")))?;
        let Some(bad) = end else { return Ok(()) };
        let failed = bad.is_some();
        match (&mut pass.held, bad) {
            // The last part finishes the file.
            (Some(held), None) if produced => {
                finish(&mut held.chunk, &key, from);
                held.sent.finishes = Some((file.clone(), false));
            }
            (_, bad) => {
                let rejects = match bad {
                    Some(reason) if quarantined_to < FILE_DONE => {
                        tracing::warn!(file = %file.location, %reason, "file quarantined whole");
                        vec![Reject {
                            raw: file.location.as_bytes().to_vec(),
                            rejection: Rejection { kind: "bad_file", field: None, message: reason },
                            position: format!("file {} row {from}", file.location),
                        }]
                    }
                    _ => Vec::new(),
                };
                let empty = arrow_array::RecordBatch::new_empty(target.schema.arrow.clone());
                let mut chunk = self.chunk(&key, (from, from, quarantined_to), empty, rejects, 0, now);
                finish(&mut chunk.0, &key, from);
                self.hold(Held::new(chunk, &file.table, 0, Some((file.clone(), failed))), pass).await;
            }
        }
        Ok(())
    }

    /// A chunk of the file `key` covering rows `from..to`, with rejects
    /// from `quarantined_to` on.
    #[allow(clippy::too_many_arguments)]
    fn chunk(
        &self,
        key: &str,
        (from, to, quarantined_to): (u64, u64, u64),
        batch: arrow_array::RecordBatch,
        rejects: Vec<Reject>,
        bytes: u64,
        ingested_at_us: i64,
    ) -> (Chunk, Answer) {
        let mut range = Range { epoch: self.epoch, ..Range::default() };
        range.from.advance(key, from);
        range.rejects_from.advance(key, from.max(quarantined_to));
        range.to.advance(key, to);
        let received = usize::try_from(to - from).unwrap_or(usize::MAX);
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        Chunk::new(batch, rejects, received, bytes, ingested_at_us, Delta::Range(range))
    }

    /// Holds `next` back and sends the chunk held before it.
    async fn hold(&mut self, next: Held, pass: &mut Pass) {
        if let Some(previous) = pass.held.replace(next) {
            self.send(previous, pass).await;
        }
        self.settle(pass, false).await;
    }

    /// Sends `held` to its table's pipeline.
    async fn send(&self, held: Held, pass: &mut Pass) {
        let Held { chunk, sent } = held;
        let Some(target) = self.targets.get(&sent.table) else { return };
        if target.chunks.send(chunk).await.is_err() {
            pass.failure.get_or_insert(IngestError::ShuttingDown);
            return;
        }
        pass.waiting.push_back(sent);
    }

    /// Takes the answers that arrived (`all`: waits for every one).
    async fn settle(&mut self, pass: &mut Pass, all: bool) {
        while let Some(Sent { answer, .. }) = pass.waiting.front_mut() {
            let result: Result<Result<Landed, IngestError>, ()> = if all {
                answer.await.map_err(drop)
            } else {
                match answer.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return,
                    Err(oneshot::error::TryRecvError::Closed) => Err(()),
                    Ok(r) => Ok(r),
                }
            };
            let Sent { table, records, finishes, .. } = pass.waiting.pop_front().expect("a front");
            match result {
                Ok(Ok(Landed::Committed(receipt))) => {
                    let tally = &mut pass.tally;
                    tally.rows_read += records;
                    tally.rows_written += receipt.accepted as u64;
                    tally.duplicates += receipt.duplicates as u64;
                    // A failed file's chunk holds only its one entry, which is no row.
                    if !finishes.as_ref().is_some_and(|(_, failed)| *failed) {
                        tally.rows_quarantined += receipt.quarantined as u64;
                    }
                    if let Some((file, failed)) = finishes {
                        let outcome = if failed { "failed" } else { "loaded" };
                        metrics::counter!(m::FILES, "table" => file.table.to_string(), "outcome" => outcome)
                            .increment(1);
                        if failed {
                            tally.failed += 1
                        } else {
                            tally.loaded += 1
                        }
                        self.landed.insert(file.key());
                        self.post_action(&file).await;
                    }
                }
                Ok(Ok(Landed::Zombie)) => {
                    pass.failure.get_or_insert(IngestError::Superseded(table));
                }
                Ok(Err(e)) => {
                    pass.failure.get_or_insert(e);
                }
                Err(()) => {
                    pass.failure.get_or_insert(IngestError::ShuttingDown);
                }
            }
        }
    }

    /// Moves or deletes a landed file, as configured; a file already gone
    /// is done.
    async fn post_action(&self, file: &FileRef) {
        if let Err(e) = self.landing.post_action(file, self.def.post_action, &self.def.root).await {
            tracing::warn!(file = %file.location, error = %e, "cannot move or delete a landed file; will retry");
        }
    }
}

/// Marks `chunk` as its file's last: the file, `rows` rows long, is
/// finished once it commits.
fn finish(chunk: &mut Chunk, key: &str, rows: u64) {
    if let Delta::Range(r) = &mut chunk.delta {
        r.to.advance(key, FILE_DONE + rows);
    }
}

/// The files pipeline's state in a table, read once per pass.
struct Known {
    /// The table's positions.
    data: Positions,
    /// Its quarantine table's.
    quarantine: Positions,
    /// A version recorded for each location, to tell a changed file.
    versions: HashMap<String, String>,
}

/// Where a chunk's outcome arrives.
type Answer = oneshot::Receiver<Result<Landed, IngestError>>;

/// The state of one pass.
#[derive(Default)]
struct Pass {
    tally: Tally,
    /// Chunks sent, oldest first.
    waiting: VecDeque<Sent>,
    /// The newest chunk, not sent yet: it may turn out to finish its file.
    held: Option<Held>,
    /// Why the pass cannot go on.
    failure: Option<IngestError>,
}

/// A chunk not sent yet.
struct Held {
    chunk: Chunk,
    sent: Sent,
}

/// A chunk sent, waiting for its answer.
struct Sent {
    answer: Answer,
    table: TableName,
    /// Records it read: counted once it is committed.
    records: u64,
    /// The file, when this chunk finishes it, and whether it failed whole.
    finishes: Option<(FileRef, bool)>,
}

impl Held {
    fn new(chunk: (Chunk, Answer), table: &TableName, records: u64, finishes: Option<(FileRef, bool)>) -> Self {
        let (chunk, answer) = chunk;
        Self { chunk, sent: Sent { answer, table: table.clone(), records, finishes } }
    }
}
