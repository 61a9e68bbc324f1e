//! The table pipeline driven directly, with no broker: chunks of a
//! replayable source (positions `[from, to)` per partition) and HTTP
//! requests in one table, checking the zombie rule, the fence after a chunk
//! that did not land, and that each source's positions stay its own.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tributary_core::Positions;
use tributary_core::config::ValidConfig;
use tributary_ingest::pipeline::{Chunk, Delta, Landed, Range, TablePipeline};
use tributary_ingest::prepare::{IngestSchema, PreparedTable, prepare};
use tributary_ingest::{BodyFormat, IngestError};
use tributary_table::{Lake, last_pipeline_state};

use crate::common::{TRANSACTIONS, config, event, open_lake, without_dedup_key};

const SOURCE: &str = "kafka:orders";
const PARTITION: &str = "kafka:c/orders/0";

struct Fixture {
    lake: Lake,
    schema: Arc<IngestSchema>,
    kafka: mpsc::Sender<Chunk>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn fixture(toml: &str) -> (Fixture, ValidConfig) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(toml, dir.path());
    let lake = open_lake(&cfg).await;
    let def = &cfg.tables[0];
    let table = lake.ensure_table(def).await.unwrap();
    let quarantine = lake.ensure_quarantine(&def.name).await.unwrap();
    let schema = Arc::new(IngestSchema::new(def, &table, &quarantine).unwrap());
    let outcomes = tributary_ingest::outcomes::Outcomes::new(&def.name);
    let prepared = PreparedTable { schema: schema.clone(), table, quarantine, dedup: None, outcomes };
    let clock = Arc::new(tributary_core::SystemClock);
    let mut pipeline = TablePipeline::new(lake.clone(), prepared, &cfg, clock).unwrap();
    let kafka = pipeline.add_source(SOURCE.to_owned(), cfg.commit, 4, false);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(pipeline.run(shutdown.clone()));
    (Fixture { lake, schema, kafka, shutdown, task, _dir: dir }, cfg)
}

impl Fixture {
    /// Sends records `first..end` of partition 0 (ids `e<offset>`, `bad`
    /// ones malformed) as one urgent chunk of read generation `epoch`.
    async fn send(&self, epoch: u64, first: u64, end: u64, bad: &[u64]) -> Result<Landed, IngestError> {
        let body: String = (first..end)
            .map(|o| if bad.contains(&o) { "{not json\n".to_owned() } else { event(&format!("e{o}"), "1.00") + "\n" })
            .collect();
        let p = prepare(&self.schema, body.as_bytes(), BodyFormat::Ndjson, "kafka", "x", 0).unwrap();
        let (mut from, mut to) = (Positions::default(), Positions::default());
        from.advance(PARTITION, first);
        to.advance(PARTITION, end);
        let range = Range { epoch, rejects_from: from.clone(), from, to };
        let (mut chunk, rx) = Chunk::new(p.batch, p.rejects, p.received, p.bytes, 0, Delta::Range(range));
        chunk.urgent = true;
        self.kafka.send(chunk).await.unwrap();
        answer(rx).await
    }

    async fn position(&self, table: &str) -> Option<u64> {
        let name = tributary_core::TableName::parse(table).unwrap();
        let state = last_pipeline_state(&self.lake.load(&name).await.unwrap(), SOURCE).unwrap();
        state.and_then(|s| s.positions.get(PARTITION))
    }

    async fn rows(&self) -> u64 {
        let name = tributary_core::TableName::parse("raw.transactions").unwrap();
        self.lake.load(&name).await.unwrap().total_records()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        drop(self.kafka);
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap();
    }
}

async fn answer(rx: oneshot::Receiver<Result<Landed, IngestError>>) -> Result<Landed, IngestError> {
    tokio::time::timeout(Duration::from_secs(10), rx).await.expect("answered").expect("not dropped")
}

fn committed(r: Result<Landed, IngestError>) -> bool {
    matches!(r, Ok(Landed::Committed(_)))
}

/// A chunk that overlaps what the table holds is a zombie; the chunks of
/// the same read generation after it follow a gap and must be refused, even
/// though their own range is new; the next generation, read again from the
/// table's position, lands. No dedup key: only positions stand between the
/// input and a duplicate or a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_after_one_that_did_not_land_is_refused_until_the_source_rereads() {
    let (f, _) = fixture(&without_dedup_key(TRANSACTIONS)).await;
    assert!(committed(f.send(1, 0, 5, &[]).await));
    assert_eq!((f.rows().await, f.position("raw.transactions").await), (5, Some(5)));

    // Another worker's view: read from 3, which the table is past.
    assert!(matches!(f.send(1, 3, 8, &[]).await, Ok(Landed::Zombie)));
    // 8..10 is new input, but landing it would skip 5..8.
    assert!(matches!(f.send(1, 8, 10, &[]).await, Ok(Landed::Zombie)), "a chunk after a gap must be refused");
    assert_eq!((f.rows().await, f.position("raw.transactions").await), (5, Some(5)));

    // The source re-reads from the table's position as generation 2.
    assert!(committed(f.send(2, 5, 10, &[]).await));
    assert_eq!((f.rows().await, f.position("raw.transactions").await), (10, Some(10)));
    f.stop().await;
}

/// Rejects land in the quarantine table first, stamped with the same
/// positions; a chunk of rejects only still moves the data table's position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejects_land_first_and_a_chunk_of_rejects_only_moves_the_position() {
    let (f, _) = fixture(&without_dedup_key(TRANSACTIONS)).await;
    let Ok(Landed::Committed(receipt)) = f.send(1, 0, 4, &[1, 2]).await else { panic!("committed") };
    assert_eq!((receipt.accepted, receipt.quarantined), (2, 2));
    assert_eq!(f.position("quarantine.transactions").await, Some(4));
    assert!(committed(f.send(1, 4, 6, &[4, 5]).await));
    assert_eq!((f.rows().await, f.position("raw.transactions").await), (2, Some(6)));
    assert_eq!(f.position("quarantine.transactions").await, Some(6));
    f.stop().await;
}

/// On shutdown the pipeline waits for a source that stops itself, and lands
/// the chunk it sends last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lands_what_a_stopping_source_sends_last() {
    let (f, _) = fixture(&without_dedup_key(TRANSACTIONS)).await;
    f.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!f.task.is_finished(), "the pipeline waits for its sources");
    assert!(committed(f.send(1, 0, 3, &[]).await));
    assert_eq!(f.rows().await, 3);
    f.stop().await;
}
