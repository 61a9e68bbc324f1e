//! File loading as a user runs it: `tributary load` on good and bad files,
//! and both `load` and a `[[files]]` landing source killed with SIGKILL in
//! the middle and started again, which must land every row exactly once.
//! The tables have no dedup key: exactly-once rests on positions alone.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tributary");

const TABLE: &str = r#"
[commit]
max_rows = 5000
max_latency = "50ms"

[[tables]]
name = "raw.events"
event_time = "event_time"
fields = [
  { name = "event_id",   type = "string",        required = true },
  { name = "user_id",    type = "long",          required = true },
  { name = "amount",     type = "decimal(12,2)" },
  { name = "region",     type = "string" },
  { name = "event_time", type = "timestamptz" },
]
"#;

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("tributary.toml");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    std::fs::write(&path, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n{TABLE}{extra}")).unwrap();
    path
}

fn tributary(args: &[&str], config: &Path, lake: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args).arg("--config").arg(config).arg("--data-dir").arg(lake);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn load(config: &Path, lake: &Path, paths: &[&Path]) -> Output {
    let mut cmd = tributary(&["load", "--table", "raw.events"], config, lake);
    cmd.args(paths).output().unwrap()
}

/// One row of a `SELECT` as JSON values.
fn query(config: &Path, lake: &Path, sql: &str) -> Vec<serde_json::Value> {
    let out = tributary(&["sql", "--format", "json", sql], config, lake).output().unwrap();
    assert!(out.status.success(), "{sql}: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["rows"][0].as_array().unwrap().clone()
}

fn counts(config: &Path, lake: &Path) -> (i64, i64, i64) {
    let row = query(
        config,
        lake,
        "SELECT count(*), count(DISTINCT event_id), count(DISTINCT concat(_source_file, '#', CAST(_source_offset AS VARCHAR))) FROM raw.events",
    );
    (row[0].as_i64().unwrap(), row[1].as_i64().unwrap(), row[2].as_i64().unwrap())
}

fn ndjson_line(file: usize, i: usize) -> String {
    format!(
        r#"{{"event_id":"f{file}-{i}","user_id":{i},"amount":"{}.25","event_time":"2026-11-30T{:02}:00:00Z"}}"#,
        i % 1000,
        i % 24
    )
}

/// NDJSON files of `rows` events each, ids `f<file>-<row>`, gzip for odd files.
fn ndjson_files(dir: &Path, files: usize, rows: usize) {
    for f in 0..files {
        let text: String = (0..rows).map(|i| ndjson_line(f, i) + "\n").collect();
        if f % 2 == 1 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(text.as_bytes()).unwrap();
            std::fs::write(dir.join(format!("part-{f:03}.ndjson.gz")), gz.finish().unwrap()).unwrap();
        } else {
            std::fs::write(dir.join(format!("part-{f:03}.jsonl")), text).unwrap();
        }
    }
}

/// Panics with its stderr if `child` has exited.
fn alive(child: &mut Child) {
    if let Some(status) = child.try_wait().unwrap() {
        let mut err = String::new();
        let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
        panic!("exited ({status}): {err}");
    }
}

fn summary_line<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout.lines().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no '{label}' line: {stdout}"))
}

#[test]
fn load_reconciles_good_and_bad_files_and_a_rerun_skips_them() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, drop) = (dir.path().join("lake"), dir.path().join("drop/region=eu"));
    std::fs::create_dir_all(&drop).unwrap();
    let config = write_config(dir.path(), "");
    ndjson_files(&drop, 2, 100);
    let csv =
        "event_id,user_id,amount,event_time\nc1,1,2.50,2026-11-30T10:00:00Z\nc2,x,1.00,2026-11-30T10:00:00Z\nc3,3\n";
    std::fs::write(drop.join("c.csv"), csv).unwrap();
    std::fs::write(drop.join("wrong-header.csv"), "id,name\n1,a\n").unwrap();
    std::fs::write(drop.join("broken.parquet"), b"PAR1 not really").unwrap();

    let out = load(&config, &lake, &[&dir.path().join("drop")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "bad files fail the load: {stdout}");
    assert!(summary_line(&stdout, "files").contains("3 loaded, 0 already loaded (skipped), 2 failed"), "{stdout}");
    assert!(
        summary_line(&stdout, "rows").contains("203 read = 201 written + 2 quarantined + 0 duplicates"),
        "{stdout}"
    );
    assert!(!stdout.contains("does not add up"), "{stdout}");
    assert_eq!(counts(&config, &lake), (201, 201, 201));
    let eu = query(&config, &lake, "SELECT count(*) FROM raw.events WHERE region = 'eu'");
    assert_eq!(eu[0], 201, "the region=eu folder fills the column");
    let why = query(
        &config,
        &lake,
        "SELECT count(*), count(*) FILTER (WHERE error_kind = 'bad_file') FROM quarantine.events WHERE source = 'file'",
    );
    assert_eq!((why[0].as_i64(), why[1].as_i64()), (Some(4), Some(2)), "two rows and two whole files");

    let out = load(&config, &lake, &[&dir.path().join("drop")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(summary_line(&stdout, "files").contains("0 loaded, 5 already loaded (skipped)"), "{stdout}");
    assert_eq!(counts(&config, &lake), (201, 201, 201));

    // The same name with other content is refused, not loaded again.
    std::fs::write(drop.join("c.csv"), format!("{csv}c4,4,1.00,2026-11-30T11:00:00Z\n")).unwrap();
    let out = load(&config, &lake, &[&drop.join("c.csv")]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(summary_line(&stdout, "files").contains("1 changed since loaded"), "{stdout}");
    assert_eq!(counts(&config, &lake).0, 201);

    let out = load(&config, &lake, &[&dir.path().join("nothing-*.csv")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing-*.csv: matches no file"));
}

/// Waits until the table has committed at least `commits` snapshots of rows.
fn wait_for_commits(config: &Path, lake: &Path, child: &mut Child, commits: usize) {
    let metadata = lake.join("warehouse/raw/events/metadata");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let files = std::fs::read_dir(&metadata).map_or(0, |d| {
            d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".metadata.json"))).count()
        });
        if files > commits {
            return;
        }
        assert!(child.try_wait().unwrap().is_none(), "exited before {commits} commits");
        assert!(Instant::now() < deadline, "no {commits} commits in time ({config:?})");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_load_killed_midway_resumes_and_lands_every_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, drop) = (dir.path().join("lake"), dir.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let config = write_config(dir.path(), "");
    let (files, rows) = (4, 40_000);
    ndjson_files(&drop, files, rows);
    let mut first = tributary(&["load", "--table", "raw.events"], &config, &lake).arg(&drop).spawn().unwrap();
    wait_for_commits(&config, &lake, &mut first, 4);
    first.kill().unwrap();
    let _ = first.wait();
    let landed = counts(&config, &lake).0;
    assert!(landed > 0 && landed < (files * rows) as i64, "killed in the middle: {landed} rows");

    let out = load(&config, &lake, &[&drop]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let read: i64 = summary_line(&stdout, "rows").split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(read, (files * rows) as i64 - landed, "the rerun reads only what had not landed: {stdout}");
    let total = (files * rows) as i64;
    assert_eq!(counts(&config, &lake), (total, total, total));
}

#[test]
fn a_landing_source_killed_midway_lands_a_day_of_files_once() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, landing) = (dir.path().join("lake"), dir.path().join("landing"));
    let day = landing.join("raw.events/event_date=2026-11-30");
    std::fs::create_dir_all(&day).unwrap();
    let source = format!(
        "\n[[files]]\nname = \"drops\"\npath = \"{}/{{table}}\"\npoll_interval = \"100ms\"\npost_action = \"move\"\n",
        landing.display()
    );
    let config = write_config(dir.path(), &source);
    let (files, rows) = (6, 20_000);
    ndjson_files(&day, files, rows);
    let csv: String = std::iter::once("event_id,user_id,amount,event_time\n".to_owned())
        .chain((0..rows).map(|i| format!("csv-{i},{i},{}.5,2026-11-30T10:00:00Z\n", i % 100)))
        .collect();
    std::fs::write(day.join("partner.csv"), csv).unwrap();
    std::fs::write(day.join("bad.csv"), "who,what\n1,2\n").unwrap();
    let total = ((files + 1) * rows) as i64;

    let mut first = tributary(&["serve"], &config, &lake).spawn().unwrap();
    wait_for_commits(&config, &lake, &mut first, 5);
    first.kill().unwrap();
    let _ = first.wait();
    let landed = counts(&config, &lake).0;
    assert!(landed < total, "killed in the middle: {landed} rows");

    let mut second = tributary(&["serve"], &config, &lake).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_dir(&day).unwrap().count() > 0 {
        alive(&mut second);
        assert!(Instant::now() < deadline, "files were not all landed and moved in time");
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    assert!(second.wait().unwrap().success());

    assert_eq!(counts(&config, &lake), (total, total, total));
    let ids = query(
        &config,
        &lake,
        "SELECT count(*) FILTER (WHERE event_id LIKE 'csv-%'), min(_source_offset), max(_source_offset) FROM raw.events",
    );
    assert_eq!(
        (ids[0].as_i64(), ids[1].as_i64(), ids[2].as_i64()),
        (Some(rows as i64), Some(0), Some(rows as i64 - 1))
    );
    let bad = query(&config, &lake, "SELECT count(*) FROM quarantine.events WHERE error_kind = 'bad_file'");
    assert_eq!(bad[0], 1);
    let processed = landing.join("processed/raw.events/event_date=2026-11-30");
    assert_eq!(std::fs::read_dir(processed).unwrap().count(), files + 2, "every file moved once landed");
}

/// The same on a real S3 server (`dev/s3.sh`, endpoint in
/// `TRIBUTARY_TEST_S3`): warehouse and landing area in the bucket, serve
/// killed with SIGKILL in mid-ingest, restarted, and the S3 server itself
/// restarted while the second process ingests (when `dev/s3.sh` runs it).
#[test]
fn a_landing_area_on_s3_lands_every_row_once_across_a_kill_and_an_s3_restart() {
    use tributary_table::iceberg::io::Storage;

    let endpoint = std::env::var("TRIBUTARY_TEST_S3").unwrap_or_else(|_| "http://127.0.0.1:8333".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let prefix = format!("bin-{}", std::process::id());
    let landing = format!("s3://tributary/{prefix}-landing");
    let s3 = format!(
        "{{ endpoint = \"{endpoint}\", access_key_id = \"tributary\", secret_access_key = \"tributary-secret\" }}"
    );
    let extra = format!(
        "\n[warehouse]\npath = \"s3://tributary/{prefix}\"\ns3 = {s3}\n\n[[files]]\nname = \"drops\"\npath = \"{landing}/{{table}}\"\npoll_interval = \"100ms\"\npost_action = \"delete\"\n"
    );
    let config = write_config(dir.path(), &extra);
    let (files, rows) = (8, 25_000);
    let settings = tributary_core::config::S3Config {
        endpoint: Some(endpoint),
        access_key_id: Some("tributary".into()),
        secret_access_key: Some("tributary-secret".into()),
        ..Default::default()
    };
    let client = tributary_table::storage::s3_client(&settings).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for f in 0..files {
            let text: String = (0..rows).map(|i| ndjson_line(f, i) + "\n").collect();
            let at = format!("{landing}/raw.events/event_date=2026-11-30/part-{f:03}.ndjson");
            client.write(&at, text.into_bytes().into()).await.unwrap();
        }
    });
    let total = (files * rows) as i64;
    let landed = || query(&config, &lake, "SELECT count(*) FROM raw.events")[0].as_i64().unwrap();

    let mut first = tributary(&["serve"], &config, &lake).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::metadata(lake.join("catalog.db")).is_err() || landed() == 0 {
        alive(&mut first);
        assert!(Instant::now() < deadline, "nothing landed in time");
        std::thread::sleep(Duration::from_millis(50));
    }
    first.kill().unwrap();
    let _ = first.wait();
    let at_kill = landed();
    assert!(at_kill < total, "killed in the middle: {at_kill} rows");

    let mut second = tributary(&["serve"], &config, &lake).spawn().unwrap();
    while landed() == at_kill {
        alive(&mut second);
        std::thread::sleep(Duration::from_millis(20));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dev/s3.sh");
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.dev/seaweedfs/pid").exists();
    if ours {
        let restarted = Command::new("bash").arg(&script).arg("restart").output().unwrap();
        assert!(restarted.status.success(), "{}", String::from_utf8_lossy(&restarted.stderr));
    }
    let deadline = Instant::now() + Duration::from_secs(180);
    while landed() < total {
        alive(&mut second);
        assert!(Instant::now() < deadline, "only {} of {total} rows landed", landed());
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill").args(["-TERM", &second.id().to_string()]).status();
    assert!(second.wait().unwrap().success());
    assert_eq!(counts(&config, &lake), (total, total, total));
    let left = rt.block_on(async { client.list(&format!("{landing}/raw.events/")).await.unwrap() });
    assert!(left.is_empty(), "every landed file was deleted: {left:?}");
}

/// Two loads of the same files at once: each file lands once, by one of
/// them; the other re-plans when it loses a race, and each summary still
/// reconciles what that process committed.
#[test]
fn two_loads_of_the_same_files_land_each_once_and_both_reconcile() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, drop) = (dir.path().join("lake"), dir.path().join("drop"));
    std::fs::create_dir_all(&drop).unwrap();
    let config = write_config(dir.path(), "");
    let (files, rows) = (8, 10_000);
    ndjson_files(&drop, files, rows);
    // Create the table first, so the two processes race on rows, not on creation.
    let out = load(&config, &lake, &[&drop.join("part-000.jsonl")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let spawn = || tributary(&["load", "--table", "raw.events"], &config, &lake).arg(&drop).spawn().unwrap();
    let (a, b) = (spawn(), spawn());
    let mut loaded = 1;
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(!stdout.contains("does not add up"), "{stdout}");
        let files_line = summary_line(&stdout, "files");
        loaded += files_line.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap();
        let numbers: Vec<i64> =
            summary_line(&stdout, "rows").split_whitespace().filter_map(|w| w.parse().ok()).collect();
        assert_eq!(
            numbers[0],
            numbers[1] + numbers[2] + numbers[3],
            "read = written + quarantined + duplicates: {stdout}"
        );
    }
    assert_eq!(loaded, files, "each file was landed by exactly one process");
    let total = (files * rows) as i64;
    assert_eq!(counts(&config, &lake), (total, total, total));
}
