//! Zone jobs that fail at each dangerous instant of a run, then run again:
//! the outputs and quarantines must be exactly what runs that never failed
//! produce. This is the promise of `tributary_transform::run` — a run's state
//! lives in its output's snapshot, so a crash anywhere is undone by running
//! again, and the quarantine, committed first with the same positions, is
//! never written twice.
//!
//! Two lakes get the same appends to `raw.orders`, each followed by runs of
//! a cleanse job (rule breakers, late duplicates) and a window job (over raw,
//! a small grace, late events that update emitted windows and, later, events
//! past the retention that go to quarantine). Lake A never fails. In lake B a
//! failpoint fires once during chosen runs: at the quarantine's swap or the
//! output's, and the job is run again either at once or only after the next
//! append (so the retry reads more than the failed run did). At
//! `table::after_catalog_swap` and `table::crash_after_catalog_swap` the
//! commit landed though the run failed: the job must find its own position
//! and count nothing twice. The failpoint also proves where it fired: which
//! of the quarantine and the output moved.
//!
//! Last, a job's very first run failing before any commit: its retry, after
//! the next append, recomputes over both appends where lake A merged.

use tributary_core::TableName;
use tributary_core::config::ValidConfig;
use tributary_table::Lake;
use tributary_transform::RunOptions;
use tributary_transform::schedule::run_job;

use crate::common::open_lake;
use crate::zones_util::{DAY0, H, Order, append, job, lines, run, zone_config};

const JOBS: &str = r#"
[[jobs]]
name = "clean"
kind = "cleanse"
input = "raw.orders"
output = "cleansed.orders"
key = ["id"]
columns = { user_id = "upper(trim(user_id))" }
rules = ["amount >= 0"]

[[jobs]]
name = "hourly"
kind = "window"
input = "raw.orders"
output = "curated.hourly"
window = "1h"
group_by = ["user_id"]
aggregates = { orders = "count(*)", revenue = "sum(amount)" }
grace = "10m"
retention = "1d"
"#;

const MIN: i64 = 60_000_000;
const BATCHES: i64 = 8;

/// A failed run in lake B: the job, the batch it follows, whether the run
/// quarantines rows (so it commits twice), whether the failpoint fires at
/// the output's swap rather than the first one, and whether it is run again
/// at once or only after the next append.
struct Failure {
    job: &'static str,
    batch: i64,
    rejects: bool,
    at_output: bool,
    retry_now: bool,
}

const FAILURES: [Failure; 5] = [
    Failure { job: "clean", batch: 2, rejects: true, at_output: false, retry_now: true },
    Failure { job: "hourly", batch: 3, rejects: false, at_output: true, retry_now: true },
    Failure { job: "clean", batch: 4, rejects: true, at_output: true, retry_now: false },
    Failure { job: "hourly", batch: 5, rejects: false, at_output: true, retry_now: false },
    // Batch 7 holds events past the retention: the window job quarantines.
    Failure { job: "hourly", batch: 7, rejects: true, at_output: false, retry_now: true },
];

fn order(id: &str, user: &str, amount: f64, ts: i64) -> Order {
    (id.to_owned(), user.to_owned(), amount, ts)
}

/// Batch `b`: twelve orders 40 minutes apart starting at `b * 9h`, every
/// fifth breaking the rule; a later copy (same day) of an order of the
/// previous batch; in batch 6 events a day behind (windows already emitted,
/// not final); in batch 7 events of day 0, final by then (late).
fn batch(b: i64) -> Vec<Order> {
    let mut out: Vec<Order> = (0..12)
        .map(|i| {
            let amount = if i % 5 == 4 { -(i as f64) } else { ((i * 7 + b) % 50) as f64 };
            order(&format!("e{b}-{i}"), &format!(" u{} ", i % 3), amount, DAY0 + b * 9 * H + i * 40 * MIN)
        })
        .collect();
    if b > 0 {
        out.push(order(&format!("e{}-1", b - 1), "u1", 99.0, DAY0 + (b - 1) * 9 * H + 41 * MIN));
    }
    if b == 6 {
        out.push(order("d1-a", "u0", 5.0, DAY0 + 30 * H + 5 * MIN));
        out.push(order("d1-b", "u2", 6.0, DAY0 + 33 * H));
    }
    if b == 7 {
        out.push(order("d0-a", "u2", 3.0, DAY0 + H));
        out.push(order("d0-b", "u1", 4.0, DAY0 + 5 * H + 7 * MIN));
    }
    out
}

async fn snapshot(lake: &Lake, ns: &str, name: &str) -> Option<i64> {
    lake.try_load(&TableName::new(ns, name)).await.unwrap().and_then(|t| t.current_snapshot_id())
}

/// (output, quarantine) of `job`: namespace and name.
fn tables(job: &str) -> [(&'static str, &'static str); 2] {
    match job {
        "clean" => [("cleansed", "orders"), ("quarantine", "cleansed_orders")],
        _ => [("curated", "hourly"), ("quarantine", "curated_hourly")],
    }
}

/// Runs `f.job` once in lake B with `point` firing once, and checks the run
/// failed there and that exactly the commits before the point landed.
async fn fail_once(lake: &Lake, cfg: &ValidConfig, point: &str, f: &Failure) {
    let [(ons, oname), (qns, qname)] = tables(f.job);
    let before = (snapshot(lake, ons, oname).await, snapshot(lake, qns, qname).await);
    let in_run = point.starts_with("transform::");
    let action = if !in_run && f.rejects && f.at_output { "1*off->1*return" } else { "1*return" };
    fail::cfg(point, action).unwrap();
    let result = run_job(lake, job(cfg, f.job), &RunOptions::new(1 << 27)).await;
    fail::remove(point);
    let at = format!("{point}, job {}, batch {}", f.job, f.batch);
    match &result {
        Err(e) => assert!(e.to_string().contains(point), "{at}: failed otherwise: {e}"),
        // A commit whose outcome was unknown may be read back as landed.
        Ok(r) => assert_eq!(point, "table::after_catalog_swap", "{at}: the failpoint never fired: {r:?}"),
    }
    let lands = point.ends_with("after_catalog_swap");
    let hits_output = f.at_output || !f.rejects;
    let out_moved = !in_run && lands && hits_output;
    let q_moved = f.rejects && (in_run || hits_output || lands);
    let after = (snapshot(lake, ons, oname).await, snapshot(lake, qns, qname).await);
    assert_eq!(after.0 != before.0, out_moved, "{at}: did the output commit land?");
    assert_eq!(after.1 != before.1, q_moved, "{at}: did the quarantine commit land?");
    if f.retry_now {
        // A landed output holds its positions: the retry has nothing to do.
        assert_eq!(run(lake, cfg, f.job).await.is_some(), !out_moved, "{at}: the retry");
    }
}

const CLEANSED: &str = "SELECT id, user_id, amount, CAST(ts AS BIGINT) FROM cleansed.orders ORDER BY id";
const WINDOWS: &str = "SELECT CAST(window_start AS BIGINT), CAST(window_end AS BIGINT), user_id, orders, revenue \
                       FROM curated.hourly ORDER BY 1, 3";

/// The rows of quarantine table `q`, as text, without their ingestion time
/// (the fixture stamps the wall clock).
async fn quarantined(lake: &Lake, q: &str) -> Vec<String> {
    let sql = format!("SELECT raw_text, error_kind FROM quarantine.{q} ORDER BY raw_text");
    let mut rows: Vec<String> = lines(lake, &sql)
        .await
        .into_iter()
        .map(|l| {
            let (raw, kind) = l.rsplit_once('|').unwrap();
            let mut v: serde_json::Value = serde_json::from_str(raw).unwrap();
            v.as_object_mut().unwrap().remove("_ingested_at");
            format!("{v}|{kind}")
        })
        .collect();
    rows.sort();
    rows
}

/// Both outputs and both quarantines, as text.
async fn state(lake: &Lake) -> Vec<Vec<String>> {
    vec![
        lines(lake, CLEANSED).await,
        lines(lake, WINDOWS).await,
        quarantined(lake, "cleansed_orders").await,
        quarantined(lake, "curated_hourly").await,
    ]
}

async fn fail_during_runs_and_compare(point: &str) {
    let scenario = fail::FailScenario::setup();
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cfg_a, cfg_b) = (zone_config(JOBS, dir_a.path()), zone_config(JOBS, dir_b.path()));
    let (a, b) = (open_lake(&cfg_a).await, open_lake(&cfg_b).await);
    for n in 0..BATCHES {
        let orders = batch(n);
        append(&a, &cfg_a, &orders).await;
        append(&b, &cfg_b, &orders).await;
        for name in ["clean", "hourly"] {
            assert!(run(&a, &cfg_a, name).await.is_some(), "{name} runs after batch {n}");
            match FAILURES.iter().find(|f| f.batch == n && f.job == name) {
                Some(f) => fail_once(&b, &cfg_b, point, f).await,
                None => {
                    run(&b, &cfg_b, name).await;
                }
            }
        }
    }
    for name in ["clean", "hourly"] {
        assert!(run(&b, &cfg_b, name).await.is_none(), "{point}: {name} has caught up");
        let (sa, sb) = (
            tributary_transform::status::status(&a, job(&cfg_a, name)).await.unwrap(),
            tributary_transform::status::status(&b, job(&cfg_b, name)).await.unwrap(),
        );
        assert_eq!((sa.processed_sequence, sa.input_sequence), (BATCHES, BATCHES), "{name}: {sa:?}");
        assert_eq!((sb.processed_sequence, sb.watermark), (sa.processed_sequence, sa.watermark), "{point}: {name}");
    }
    let (expected, actual) = (state(&a).await, state(&b).await);
    // The reference exercises what it should: every fifth order of each
    // batch refused, two events past the retention, windows of three users.
    assert_eq!(expected[2].len(), 2 * BATCHES as usize, "{:?}", expected[2]);
    assert_eq!(expected[3].len(), 2, "{:?}", expected[3]);
    assert!(expected[3].iter().all(|l| l.ends_with("|late")), "{:?}", expected[3]);
    assert!(expected[1].len() > 40, "{:?}", expected[1]);
    for (i, what) in ["cleansed.orders", "curated.hourly", "quarantine.cleansed_orders", "quarantine.curated_hourly"]
        .iter()
        .enumerate()
    {
        assert_eq!(actual[i], expected[i], "{point}: {what} differs from the run that never failed");
    }
    scenario.teardown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failing_before_its_output_commit_runs_again_to_the_same_outputs() {
    fail_during_runs_and_compare("transform::before_output_commit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_failing_before_a_catalog_swap_runs_again_to_the_same_outputs() {
    fail_during_runs_and_compare("table::before_catalog_swap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_commit_outcome_is_unknown_finds_its_position_and_counts_nothing_twice() {
    fail_during_runs_and_compare("table::after_catalog_swap").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_crashing_after_a_catalog_swap_runs_again_to_the_same_outputs() {
    fail_during_runs_and_compare("table::crash_after_catalog_swap").await;
}

/// A job's first run recomputes from the whole input; later runs merge new
/// rows into the days they fall in. When the first run fails before any
/// commit and runs again after the next append, it recomputes over both
/// appends: a key seen again on another day (a different event, says
/// `cleanse.rs`) must come out as it does when the runs were not merged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanse_job_whose_first_run_failed_keeps_a_key_seen_again_on_another_day() {
    let scenario = fail::FailScenario::setup();
    let point = "table::before_catalog_swap";
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (cfg_a, cfg_b) = (zone_config(JOBS, dir_a.path()), zone_config(JOBS, dir_b.path()));
    let (a, b) = (open_lake(&cfg_a).await, open_lake(&cfg_b).await);
    let first = [order("k", "u1", 1.0, DAY0 + H), order("x", "u2", 2.0, DAY0 + 2 * H), order("r", "u3", -1.0, DAY0)];
    let next_day = [order("k", "u1", 5.0, DAY0 + 26 * H)];
    append(&a, &cfg_a, &first).await;
    run(&a, &cfg_a, "clean").await.unwrap();
    append(&a, &cfg_a, &next_day).await;
    run(&a, &cfg_a, "clean").await.unwrap();

    append(&b, &cfg_b, &first).await;
    fail::cfg(point, "1*return").unwrap();
    let failed = run_job(&b, job(&cfg_b, "clean"), &RunOptions::new(1 << 27)).await;
    fail::remove(point);
    assert!(failed.unwrap_err().to_string().contains(point));
    append(&b, &cfg_b, &next_day).await;
    run(&b, &cfg_b, "clean").await.unwrap();

    let (expected, actual) = (quarantined(&a, "cleansed_orders").await, quarantined(&b, "cleansed_orders").await);
    assert_eq!((expected.len(), &actual), (1, &expected), "quarantine.cleansed_orders");
    let (expected, actual) = (lines(&a, CLEANSED).await, lines(&b, CLEANSED).await);
    assert_eq!(expected.len(), 3, "{expected:?}");
    assert_eq!(actual, expected, "cleansed.orders differs from the runs that never failed");
    scenario.teardown();
}
