//! Zone jobs as a user runs them, through the binary.
//!
//! `tributary check` refuses a config whose jobs cannot run — a cycle, a
//! table nobody declares or writes, SQL that does not plan, a window grouped
//! by a missing column — with a non-zero exit and the job and the mistake on
//! stderr, before anything starts; a good config passes and lists its jobs.
//!
//! `tributary serve` SIGKILLed at random moments while events arrive over
//! HTTP and its jobs run (some kills are timed for when `GET /v1/jobs`
//! shows a job running), restarted after each kill, ends with the same
//! cleansed and curated tables, row for row, and the same quarantined rows,
//! as a server that was never killed and got the same requests. Posts cut off
//! by a kill are retried with their `Idempotency-Key`, as a client should, so
//! the raw table gets every event once; the jobs' state lives in their output
//! tables, so nothing a killed run did half-way shows or counts twice.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_tributary");

fn example() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ecommerce.toml");
    std::fs::read_to_string(path).unwrap()
}

/// The example's `[[tables]]` without its jobs.
fn tables_only() -> String {
    let text = example();
    text[..text.find("[[jobs]]").unwrap()].to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn check(dir: &Path, toml: &str) -> Output {
    let config = dir.join("check.toml");
    std::fs::write(&config, toml).unwrap();
    Command::new(BIN).arg("check").arg("--config").arg(&config).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn check_names_the_job_and_its_mistake_and_lists_the_jobs_of_a_good_config() {
    let dir = tempfile::tempdir().unwrap();
    let job = |name: &str, input: &str, output: &str, rest: &str| {
        format!("\n[[jobs]]\nname = \"{name}\"\ninput = \"{input}\"\noutput = \"{output}\"\n{rest}\n")
    };
    let sql = |from: &str| format!("kind = \"sql\"\nsql = \"SELECT * FROM {from}\"");
    let cycle = job("a_from_b", "curated.b", "curated.a", &sql("curated.b"))
        + &job("b_from_a", "curated.a", "curated.b", &sql("curated.a"));
    let unknown = job("typo", "raw.transaction", "cleansed.t", "kind = \"cleanse\"\nkey = [\"event_id\"]");
    let no_plan = job("bad_sql", "raw.transactions", "curated.s", &sql("raw.transactions").replace('*', "nope"));
    let window = "kind = \"window\"\nwindow = \"1h\"\ngroup_by = [\"nope\"]\naggregates = { n = \"count(*)\" }";
    let cases = [
        (cycle, "a_from_b", "jobs form a cycle: a_from_b (after b_from_a); b_from_a (after a_from_b)"),
        (unknown, "jobs[0] (typo)", "reads 'raw.transaction', which no [[tables]] entry declares"),
        (no_plan, "job 'bad_sql'", "No field named nope"),
        (job("by_nope", "raw.transactions", "curated.w", window), "job 'by_nope'", "group_by 'nope' is not a column"),
    ];
    for (jobs, name, problem) in cases {
        let out = check(dir.path(), &(tables_only() + &jobs));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{jobs}: {stderr}");
        assert!(stderr.contains(name) && stderr.contains(problem), "not '{name}' and '{problem}': {stderr}");
    }
    let out = check(dir.path(), &example());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    for line in [
        "job       cleanse_transactions (cleanse): raw.transactions → cleansed.transactions",
        "job       revenue_hourly (window): cleansed.transactions → curated.revenue_hourly, after cleanse_transactions",
    ] {
        assert!(stdout.contains(line), "no '{line}' in: {stdout}");
    }
}

/// A lake: its directory, config and server log.
struct Lake {
    dir: PathBuf,
    config: PathBuf,
    log: PathBuf,
}

impl Lake {
    fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let toml = example()
            .replace("listen = \"127.0.0.1:8080\"", &format!("listen = \"127.0.0.1:{}\"", free_port()))
            .replace("max_latency = \"200ms\"", "max_latency = \"20ms\"")
            .replace("pg_listen = \"127.0.0.1:5433\"", "pg_listen = \"127.0.0.1:0\"");
        assert!(
            toml.contains("max_latency = \"20ms\"") && !toml.contains(":8080") && !toml.contains(":5433"),
            "{toml}"
        );
        let config = dir.join("tributary.toml");
        std::fs::write(&config, toml).unwrap();
        Self { log: dir.join("serve.log"), config, dir: dir.join("data") }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.char_indices().rev().nth(4000).map_or(text.clone(), |(i, _)| text[i..].to_owned())
    }

    fn tributary(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--config").arg(&self.config).arg("--data-dir").arg(&self.dir).stdin(Stdio::null());
        cmd
    }

    /// `serve` on a fresh port, logging to the lake's log.
    async fn serve(&self, client: &reqwest::Client) -> Serve {
        let port = free_port();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = self
            .tributary(&["serve", "--http", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut srv = Serve { child, base: format!("http://127.0.0.1:{port}") };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", srv.base)).send().await
                && r.status() == 200
            {
                return srv;
            }
            assert!(srv.child.try_wait().unwrap().is_none(), "serve exited:\n{}", self.log_tail());
            assert!(Instant::now() < deadline, "serve never became healthy:\n{}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sql(&self, format: &str, sql: &str) -> String {
        let out = self.tributary(&["sql", "--format", format, sql]).output().unwrap();
        assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A running `serve`.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    /// SIGKILL (a no-op on a child already reaped, which `Drop` relies on).
    fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn stop(mut self, lake: &Lake) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "serve ignored SIGTERM:\n{}", lake.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(self.child.wait().unwrap().success(), "{}", lake.log_tail());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// POSTs one batch; `Err` when it may be retried (no answer, or 503).
async fn post(client: reqwest::Client, base: String, key: String, body: String) -> Result<Value, String> {
    let sent = client
        .post(format!("{base}/v1/tables/raw.transactions/events"))
        .header("Idempotency-Key", &key)
        .header("Content-Type", "application/x-ndjson")
        .timeout(Duration::from_secs(30))
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = sent.status().as_u16();
    let answer: Value = sent.json().await.map_err(|e| e.to_string())?;
    match status {
        200 => Ok(answer),
        503 => Err(answer.to_string()),
        _ => panic!("{key}: {status} {answer}"),
    }
}

/// POSTs until the batch is answered 200, starting the server again when
/// it is dead.
async fn post_until_landed(lake: &Lake, client: &reqwest::Client, srv: &mut Serve, key: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match post(client.clone(), srv.base.clone(), key.to_owned(), body.to_owned()).await {
            Ok(_) => return,
            Err(e) => assert!(Instant::now() < deadline, "{key}: {e}\n{}", lake.log_tail()),
        }
        if srv.child.try_wait().unwrap().is_some() {
            *srv = lake.serve(client).await;
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn jobs(client: &reqwest::Client, srv: &Serve) -> Option<Vec<Value>> {
    let answer: Value = client.get(format!("{}/v1/jobs", srv.base)).send().await.ok()?.json().await.ok()?;
    answer["jobs"].as_array().cloned()
}

/// When a SIGKILL lands.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// This many milliseconds after the post started.
    After(u64),
    /// Once `GET /v1/jobs` shows a job running (or after 4 s), then this
    /// many milliseconds later.
    WhileRunning(u64),
}

/// Posts a batch and SIGKILLs the server meanwhile; starts it again and
/// retries the post if it was cut off. Whether a job was seen running.
async fn post_and_kill(
    lake: &Lake,
    client: &reqwest::Client,
    srv: &mut Serve,
    key: &str,
    body: &str,
    kill: Kill,
) -> bool {
    let posting = tokio::spawn(post(client.clone(), srv.base.clone(), key.to_owned(), body.to_owned()));
    let mut running = false;
    match kill {
        Kill::After(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
        Kill::WhileRunning(ms) => {
            let deadline = Instant::now() + Duration::from_secs(4);
            while !running && Instant::now() < deadline {
                running = jobs(client, srv).await.unwrap_or_default().iter().any(|j| j["state"] == "running");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
    srv.kill();
    let answered = posting.await.unwrap().is_ok();
    *srv = lake.serve(client).await;
    if !answered {
        post_until_landed(lake, client, srv, key, body).await;
    }
    running
}

/// Waits until every job has read its input's newest snapshot.
async fn wait_caught_up(lake: &Lake, client: &reqwest::Client, srv: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let all = jobs(client, srv).await.unwrap_or_default();
        let done = |j: &Value| j["input_sequence"].as_i64() > Some(0) && j["processed_sequence"] == j["input_sequence"];
        if all.len() == 2 && all.iter().all(done) {
            return;
        }
        assert!(Instant::now() < deadline, "jobs never caught up: {all:?}\n{}", lake.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// 2026-11-20T00:00:00Z.
const T0: i64 = 1_795_132_800;
const BATCHES: i64 = 24;
const CURRENCIES: [&str; 4] = ["eur", " usd ", "EUR", "gbp"];

fn event(id: &str, user: i64, cents: i64, currency: &str, secs: i64) -> String {
    let at = chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    serde_json::json!({
        "event_id": id, "user_id": user, "order_id": format!("o-{id}"),
        "amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": currency,
        "event_type": "purchase", "event_time": at,
    })
    .to_string()
}

/// Batch `b` as NDJSON: 40 events 30 s apart from `b * 20 min`, three of
/// them of amount 0 (the cleanse job's rule refuses them); later copies of
/// three events of the previous batch (the dedup key drops them at ingest);
/// every fourth batch, three events a day earlier (windows already
/// written are corrected).
fn batch(b: i64) -> String {
    let mut lines: Vec<String> = (0..40)
        .map(|i| {
            let cents = if i % 13 == 5 { 0 } else { 100 + (b * 37 + i * 11) % 5000 };
            event(&format!("e{b}-{i}"), (b * 40 + i) % 7 + 1, cents, CURRENCIES[i as usize % 4], T0 + b * 1200 + i * 30)
        })
        .collect();
    if b > 0 {
        lines.extend(
            (0..3).map(|i| event(&format!("e{}-{i}", b - 1), 1, 999, "eur", T0 + (b - 1) * 1200 + i * 30 + 60)),
        );
    }
    if b % 4 == 3 {
        lines
            .extend((0..3).map(|i| event(&format!("late{b}-{i}"), 2, 250 + i, "usd", T0 + b * 1200 + i * 30 - 86_400)));
    }
    lines.join("\n")
}

/// Ingests every batch; kills and restarts the server at `kills`. Returns
/// how many kills came while a job was seen running.
async fn ingest(lake: &Lake, kills: &[(i64, Kill)]) -> usize {
    let client = reqwest::Client::new();
    let mut srv = lake.serve(&client).await;
    let mut during_runs = 0;
    for b in 0..BATCHES {
        let (key, body) = (format!("batch-{b}"), batch(b));
        match kills.iter().find(|(at, _)| *at == b) {
            Some((_, kill)) => {
                during_runs += usize::from(post_and_kill(lake, &client, &mut srv, &key, &body, *kill).await)
            }
            None => post_until_landed(lake, &client, &mut srv, &key, &body).await,
        }
    }
    wait_caught_up(lake, &client, &srv).await;
    srv.stop(lake);
    during_runs
}

/// What the comparison reads, with the server stopped: raw counts, both
/// outputs as CSV, and the quarantined rows by event id and rule.
fn outcome(lake: &Lake) -> [String; 4] {
    let raw = lake.sql("csv", "SELECT count(*), count(DISTINCT event_id) FROM raw.transactions");
    let cleansed = lake.sql(
        "csv",
        "SELECT event_id, user_id, order_id, amount, currency, event_type, event_time FROM cleansed.transactions ORDER BY event_id",
    );
    let hourly = lake.sql(
        "csv",
        "SELECT window_start, window_end, currency, orders, revenue FROM curated.revenue_hourly ORDER BY window_start, currency",
    );
    let q: Value = serde_json::from_str(
        &lake.sql("json", "SELECT raw_text, error_kind, field FROM quarantine.cleansed_transactions ORDER BY raw_text"),
    )
    .unwrap();
    let mut quarantined: Vec<String> = q["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let raw: Value = serde_json::from_str(r[0].as_str().unwrap()).unwrap();
            format!("{}|{}|{}", raw["event_id"], r[1], r[2])
        })
        .collect();
    quarantined.sort();
    [raw, cleansed, hourly, quarantined.join("\n")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_killed_while_its_jobs_run_ends_with_the_outputs_of_a_server_never_killed() {
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    let mut rng = seed;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut at: Vec<i64> = Vec::new();
    while at.len() < 8 {
        let b = 1 + next(BATCHES as u64 - 1) as i64;
        if !at.contains(&b) {
            at.push(b);
        }
    }
    at.sort_unstable();
    let kills: Vec<(i64, Kill)> = at
        .iter()
        .enumerate()
        .map(|(i, b)| (*b, if i % 2 == 0 { Kill::WhileRunning(next(150)) } else { Kill::After(next(1500)) }))
        .collect();
    eprintln!("seed {seed}: kills {kills:?}");

    let root = tempfile::tempdir().unwrap();
    let (clean, killed) = (Lake::new(root.path(), "clean"), Lake::new(root.path(), "killed"));
    ingest(&clean, &[]).await;
    let during_runs = ingest(&killed, &kills).await;
    eprintln!("{during_runs} of {} kills came while a job was running", kills.len());
    assert!(during_runs > 0, "seed {seed}: no kill came while a job was running");

    let status = killed.tributary(&["jobs", "--json"]).output().unwrap();
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    for j in status["jobs"].as_array().unwrap() {
        assert_eq!(j["processed_sequence"], j["input_sequence"], "`tributary jobs` agrees: {j}");
    }
    let (expected, actual) = (outcome(&clean), outcome(&killed));
    let events = 40 * BATCHES + 3 * (BATCHES / 4);
    assert_eq!(expected[0].lines().nth(1), Some(format!("{events},{events}").as_str()), "{}", expected[0]);
    assert_eq!(expected[1].lines().count() as i64, 1 + events - 3 * BATCHES, "the header and every good event");
    assert!(expected[2].lines().count() > 20, "{}", expected[2]);
    assert_eq!(expected[3].lines().count() as i64, 3 * BATCHES, "{}", expected[3]);
    let what =
        ["raw.transactions", "cleansed.transactions", "curated.revenue_hourly", "quarantine.cleansed_transactions"];
    for i in 0..4 {
        assert_eq!(actual[i], expected[i], "seed {seed}: {} after kills {kills:?}", what[i]);
    }
}
