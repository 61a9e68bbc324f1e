//! The binary as a user runs it: signals, pipes and exit codes, which no
//! library-level test can see.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tributary");

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/ecommerce.toml").display().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn serve(dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(BIN);
    // `--pg`: the example's Postgres port, 5433, would be taken by a parallel test.
    cmd.args(["serve", "--config", &example(), "--http", &format!("127.0.0.1:{port}"), "--pg", "127.0.0.1:0"]);
    cmd.arg("--data-dir").arg(dir);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

fn healthy(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200")
}

fn wait_healthy(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy(port) {
        assert!(Instant::now() < deadline, "serve never became healthy");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate_and_wait(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve ignored SIGTERM for {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `tributary serve 2>&1 | head -3`: once the reader is gone, a log line
/// panicked in the signal handler, and SIGTERM was swallowed for good.
#[test]
fn serve_stops_on_sigterm_after_its_stderr_reader_went_away() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serve(dir.path(), port).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "serve exited before listening");
    }
    drop(stderr);
    drop(child.stdout.take());
    wait_healthy(port);
    let status = terminate_and_wait(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
}

/// A stderr pipe that nobody reads fills up; a log line must then be
/// dropped, not block the task (or the start-up) that wrote it.
#[test]
fn serve_starts_and_stops_while_its_stderr_pipe_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (reader, mut writer) = std::io::pipe().unwrap();
    // Fill the pipe (64 KiB on Linux) before the server writes a byte.
    writer.write_all(&vec![b'.'; 65536]).unwrap();
    let mut child = serve(dir.path(), port).stderr(writer.try_clone().unwrap()).spawn().unwrap();
    wait_healthy(port);
    let status = terminate_and_wait(&mut child, Duration::from_secs(30));
    assert!(status.success(), "{status:?}");
    drop(reader);
}

fn run(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN).args(args).arg("--data-dir").arg(dir).stdin(Stdio::null()).output().unwrap()
}

#[test]
fn sql_refuses_writes_and_table_drop_needs_confirmation() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["quickstart", "--events", "200", "--exit", "--http", "127.0.0.1:0"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("curl"), "after --exit the server is gone; no curl to it: {stdout}");

    let target = dir.path().join("out.csv");
    let copy = format!("COPY (SELECT 1) TO '{}'", target.display());
    let out = run(&["sql", &copy], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("COPY is not allowed").count(), 1, "the cause is printed once: {stderr}");
    assert!(!target.exists());

    let out = run(&["table", "drop", "raw.transactions"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--yes") && stderr.contains("rows"), "{stderr}");
    let out = run(&["sql", "SELECT count(*) FROM raw.transactions"], dir.path());
    assert!(out.status.success(), "nothing was dropped without --yes");

    let out = run(&["table", "drop", "raw.transactions", "--yes"], dir.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["sql", "SELECT count(*) FROM raw.transactions"], dir.path());
    assert_eq!(out.status.code(), Some(1), "the table is gone");
}
