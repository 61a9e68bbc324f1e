//! The Postgres wire protocol, driven by the real clients users have:
//! psql 15 (simple protocol: values as text, `\dt`, `\d`, errors with
//! their SQLSTATE) and `pgbench -M extended` (Parse/Bind/Execute with a
//! `$1` parameter). Then tokens as passwords (28P01, 42501 naming the
//! namespace) and TLS with a certificate made for the test.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{Running, config, start};

/// The quickstart's table with a list column, served over the protocol
/// on a free port.
fn lake_toml(extra: &str) -> String {
    crate::common::TRANSACTIONS
        .replace("max_body_bytes = 1048576\n", &format!("max_body_bytes = 1048576\npg_listen = \"127.0.0.1:0\"\n{extra}"))
        .replace(
            "{ name = \"currency\",   type = \"string\" },",
            "{ name = \"currency\",   type = \"string\" },\n  { name = \"tags\", type = \"list\", element = { type = \"string\" } },",
        )
}

const EVENTS: &str = concat!(
    r#"{"event_id":"e1","user_id":7,"amount":"10.50","currency":"EUR","tags":["a","b"],"event_time":"2026-11-20T10:00:00Z"}"#,
    "\n",
    r#"{"event_id":"e2","user_id":7,"amount":"2.25","event_time":"2026-11-20T10:00:00.25Z"}"#,
    "\n",
    r#"{"event_id":"e3","user_id":8,"amount":"100.00","currency":"USD","tags":[],"event_time":"2026-11-21T23:59:59Z"}"#,
    "\n",
);

async fn lake_with_events(extra: &str, dir: &Path) -> Running {
    let srv = start(&config(&lake_toml(extra), dir)).await;
    let (status, receipt) = srv.post("raw.transactions", EVENTS).await;
    assert_eq!(status, 200, "{receipt}");
    assert_eq!(receipt["accepted"], 3, "{receipt}");
    srv
}

/// Runs `program` with `args` off the runtime the server is on; psql's
/// own settings files and environment are kept out.
async fn client(program: &'static str, args: Vec<String>, password: Option<&str>) -> Output {
    let password = password.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(program);
        cmd.args(&args).env("PSQLRC", "/dev/null").env("PGCONNECT_TIMEOUT", "20");
        for var in ["PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGSSLMODE", "PGPASSWORD", "PGSERVICE", "PGOPTIONS"] {
            cmd.env_remove(var);
        }
        if let Some(p) = password {
            cmd.env("PGPASSWORD", p);
        }
        cmd.output().unwrap_or_else(|e| panic!("{program} is installed by dev/test.sh: {e}"))
    })
    .await
    .unwrap()
}

fn conninfo(srv: &Running, extra: &str) -> String {
    let pg = srv.server.pg_addr.expect("pg_listen is set");
    format!("host=127.0.0.1 port={} dbname=tributary user=analyst {extra}", pg.port())
}

/// psql `-c sql` unaligned, tuples only, NULL shown as `NULL`, errors
/// verbose (with their SQLSTATE), never prompting for a password:
/// (success, stdout, stderr).
async fn psql(conn: &str, sql: &str, password: Option<&str>) -> (bool, String, String) {
    let args = [
        "-X",
        "-q",
        "-w",
        "-A",
        "-t",
        "-P",
        "null=NULL",
        "-v",
        "VERBOSITY=verbose",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
        conn,
    ];
    let out = client("psql", args.map(str::to_owned).to_vec(), password).await;
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim_end().to_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test]
async fn psql_and_pgbench_read_the_lake() {
    let data = tempfile::tempdir().unwrap();
    let srv = lake_with_events("", data.path()).await;
    let conn = conninfo(&srv, "");
    let ok = |(success, out, err): (bool, String, String)| {
        assert!(success, "psql failed: {err}");
        out
    };

    let sums = "SELECT count(*), sum(amount), count(DISTINCT user_id) FROM raw.transactions";
    assert_eq!(ok(psql(&conn, sums, None).await), "3|112.75|2");
    // A decimal exact as text, a timestamptz in ISO form at +00, a NULL, a list as JSON.
    let row = "SELECT amount, event_time, currency, tags FROM raw.transactions WHERE event_id = 'e2'";
    assert_eq!(ok(psql(&conn, row, None).await), "2.25|2026-11-20 10:00:00.25+00|NULL|NULL");
    let row = "SELECT amount, event_time, currency, tags, user_id + 1, amount > 5 FROM raw.transactions WHERE event_id = 'e1'";
    assert_eq!(ok(psql(&conn, row, None).await), r#"10.50|2026-11-20 10:00:00+00|EUR|["a","b"]|8|t"#);
    let day = "SELECT CAST(event_time AS DATE), CAST(0.5 AS DOUBLE) FROM raw.transactions WHERE event_id = 'e3'";
    assert_eq!(ok(psql(&conn, day, None).await), "2026-11-21|0.5");

    let version = ok(psql(&conn, "SELECT version()", None).await);
    assert!(version.starts_with("PostgreSQL 15.0 (Tributary"), "{version}");
    assert_eq!(ok(psql(&conn, "SHOW transaction_isolation", None).await), "read committed");
    assert_eq!(ok(psql(&conn, "SET application_name = 'bi'; SELECT 1", None).await), "1");

    let tables = ok(psql(&conn, "\\dt", None).await);
    assert!(tables.lines().any(|l| l == "raw|transactions|table|tributary"), "{tables}");
    assert!(tables.lines().any(|l| l == "quarantine|transactions|table|tributary"), "{tables}");
    let raw_only = ok(psql(&conn, "\\dt raw.*", None).await);
    assert_eq!(raw_only, "raw|transactions|table|tributary");
    let described = ok(psql(&conn, "\\d raw.transactions", None).await);
    for column in ["event_id|text", "user_id|bigint", "amount|numeric(12,2)", "event_time|timestamp with time zone"] {
        assert!(described.lines().any(|l| l.starts_with(column)), "{column} missing from \\d:\n{described}");
    }

    let (success, _, err) = psql(&conn, "DROP TABLE raw.transactions", None).await;
    assert!(!success && err.contains("ERROR:  42501:") && err.contains("DROP TABLE is not allowed"), "{err}");
    let (success, _, err) = psql(&conn, "SELEC count(*) FROM raw.transactions", None).await;
    assert!(!success && err.contains("ERROR:  42601:"), "{err}");
    let (success, _, err) = psql(&conn, "SELECT * FROM raw.nope", None).await;
    assert!(!success && err.contains("ERROR:  42P01:"), "{err}");

    // The extended protocol: Parse once, then Bind and Execute a $1 per transaction.
    let script = data.path().join("by_user.sql");
    std::fs::write(&script, "\\set uid random(1, 10)\nSELECT count(*) FROM raw.transactions WHERE user_id = :uid;\n")
        .unwrap();
    let pg = srv.server.pg_addr.unwrap();
    let args = ["-h", "127.0.0.1", "-p", &pg.port().to_string(), "-U", "bench", "-n", "-M", "extended", "-t", "50"]
        .iter()
        .map(|s| (*s).to_owned())
        .chain(["-f".to_owned(), script.display().to_string(), "tributary".to_owned()])
        .collect();
    let bench = client("pgbench", args, None).await;
    let (stdout, stderr) = (String::from_utf8_lossy(&bench.stdout), String::from_utf8_lossy(&bench.stderr));
    assert!(bench.status.success(), "pgbench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("query mode: extended"), "{stdout}");
    assert!(stdout.contains("number of transactions actually processed: 50/50"), "{stdout}");
    assert!(stdout.contains("number of failed transactions: 0"), "{stdout}");
    srv.stop().await;
}

fn hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The `(severity, SQLSTATE, message)` a server answers a startup with
/// `password`, read off the wire (libpq prints the message, not the code).
fn startup_error(port: u16, password: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20))).unwrap();
    let params = b"user\0analyst\0database\0tributary\0\0";
    let mut startup = Vec::new();
    startup.extend_from_slice(&(8 + params.len() as i32).to_be_bytes());
    startup.extend_from_slice(&196_608i32.to_be_bytes());
    startup.extend_from_slice(params);
    s.write_all(&startup).unwrap();
    let answer = |s: &mut std::net::TcpStream| {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).unwrap();
        let mut body = vec![0u8; i32::from_be_bytes(head[1..].try_into().unwrap()) as usize - 4];
        s.read_exact(&mut body).unwrap();
        (head[0], body)
    };
    let (kind, body) = answer(&mut s);
    assert_eq!((kind, &body[..]), (b'R', &3i32.to_be_bytes()[..]), "expected a cleartext password request");
    let mut message = vec![b'p'];
    message.extend_from_slice(&(4 + password.len() as i32 + 1).to_be_bytes());
    message.extend_from_slice(password.as_bytes());
    message.push(0);
    s.write_all(&message).unwrap();
    let (kind, body) = answer(&mut s);
    assert_eq!(kind, b'E', "expected an error response");
    let field = |tag: u8| {
        body.split(|b| *b == 0)
            .find(|f| f.first() == Some(&tag))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
            .unwrap_or_default()
    };
    (field(b'S'), field(b'C'), field(b'M'))
}

#[tokio::test]
async fn the_password_is_the_access_token() {
    let tokens = format!(
        "\n[[tokens]]\nname = \"admin\"\nsha256 = \"{}\"\nscopes = {{ \"*\" = \"read\" }}\n\n\
         [[tokens]]\nname = \"analyst\"\nsha256 = \"{}\"\nscopes = {{ curated = \"read\" }}\n",
        hash("tok-admin"),
        hash("tok-analyst")
    );
    let data = tempfile::tempdir().unwrap();
    let srv = start(&config(&format!("{}{tokens}", lake_toml("")), data.path())).await;
    let conn = conninfo(&srv, "");
    let count = "SELECT count(*) FROM raw.transactions";

    let port = srv.server.pg_addr.unwrap().port();
    let (severity, code, message) = tokio::task::spawn_blocking(move || startup_error(port, "wrong")).await.unwrap();
    assert_eq!((severity.as_str(), code.as_str()), ("FATAL", "28P01"), "{message}");
    let (success, _, err) = psql(&conn, count, Some("wrong")).await;
    assert!(!success && err.contains("the access token is not one this server knows"), "{err}");
    let (success, _, err) = psql(&conn, count, None).await;
    assert!(!success && err.contains("password"), "no password must not connect: {err}");

    assert_eq!(psql(&conn, count, Some("tok-admin")).await.1, "0");
    let (success, _, err) = psql(&conn, count, Some("tok-analyst")).await;
    assert!(!success && err.contains("ERROR:  42501:") && err.contains("namespace 'raw'"), "{err}");
    let (success, listed, err) = psql(&conn, "\\dt", Some("tok-analyst")).await;
    assert!(success && !listed.contains("transactions"), "a table the token may not read is listed: {listed} {err}");
    srv.stop().await;
}

#[tokio::test]
async fn tls_with_a_certificate_made_for_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, tls) = crate::common::test_certificate(dir.path());
    let data = tempfile::tempdir().unwrap();
    let srv = start(&config(&lake_toml(&tls), data.path())).await;

    let secure = conninfo(&srv, "sslmode=require");
    assert_eq!(psql(&secure, "SELECT 1", None).await, (true, "1".to_owned(), String::new()));
    assert_eq!(psql(&secure, "SELECT count(*) FROM raw.transactions", None).await.1, "0");
    let verified = conninfo(&srv, &format!("sslmode=verify-ca sslrootcert={}", cert.display()));
    assert_eq!(psql(&verified, "SELECT 1", None).await.1, "1");
    let (success, _, err) = psql(&conninfo(&srv, "sslmode=disable"), "SELECT 1", None).await;
    assert!(!success && err.contains("TLS connections only"), "{err}");
    srv.stop().await;
}
