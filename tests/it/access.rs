//! Access control, as a full matrix: tokens × namespaces × actions ×
//! listeners, each case asserting allow or deny (401 without a known token,
//! 403 naming the namespace without the scope); an open server refuses to
//! listen beyond loopback; and HTTPS with a certificate made for the test.

use std::process::Command;

use serde_json::{Value, json};
use tributary_core::config::Access;

use crate::common::{config, event, start};

const ADMIN: &str = "tok-admin";
const INGEST: &str = "tok-ingest";
const ANALYST: &str = "tok-analyst";

fn hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn lake_toml(extra_server: &str) -> String {
    let table = |name: &str| {
        format!(
            "[[tables]]\nname = \"{name}\"\nfields = [{{ name = \"event_id\", type = \"string\", required = true }}, \
             {{ name = \"user_id\", type = \"long\" }}, {{ name = \"amount\", type = \"decimal(12,2)\" }}, \
             {{ name = \"currency\", type = \"string\" }}, {{ name = \"event_time\", type = \"timestamptz\" }}]\n"
        )
    };
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{extra_server}\n[commit]\nmax_latency = \"20ms\"\n\n{}{}\n\
         [[tokens]]\nname = \"admin\"\nsha256 = \"{}\"\nscopes = {{ \"*\" = \"admin\" }}\n\n\
         [[tokens]]\nname = \"ingest\"\nsha256 = \"{}\"\nscopes = {{ raw = \"write\" }}\n\n\
         [[tokens]]\nname = \"analyst\"\nsha256 = \"{}\"\nscopes = {{ curated = \"read\" }}\n",
        table("raw.events"),
        table("curated.daily"),
        hash(ADMIN),
        hash(INGEST),
        hash(ANALYST)
    )
}

/// What each token holds, for the expected outcome of every case.
fn access(token: Option<&str>, namespace: &str) -> Option<Access> {
    match (token, namespace) {
        (Some(ADMIN), _) => Some(Access::Admin),
        (Some(INGEST), "raw") => Some(Access::Write),
        (Some(ANALYST), "curated") => Some(Access::Read),
        _ => None,
    }
}

async fn call(token: Option<&str>, req: reqwest::RequestBuilder) -> (u16, Value) {
    let req = match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    };
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_token_namespace_action_and_listener_is_allowed_or_denied_as_scoped() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(&lake_toml(""), dir.path())).await;
    let c = &srv.client;
    // Both tables get a row (and a snapshot) from the admin.
    for ns in ["raw", "curated"] {
        let url = format!("{}/v1/tables/{ns}.{}/events", srv.base, if ns == "raw" { "events" } else { "daily" });
        let (s, body) = call(Some(ADMIN), c.post(&url).body(event("seed", "1.00"))).await;
        assert_eq!(s, 200, "{body}");
    }
    let tokens = [None, Some("tok-unknown"), Some(ADMIN), Some(INGEST), Some(ANALYST)];
    let mut cases = 0;
    for token in tokens {
        for (ns, table) in [("raw", "events"), ("curated", "daily")] {
            let rest = format!("{}/iceberg/v1/namespaces/{ns}/tables/{table}", srv.base);
            let stale =
                json!({ "requirements": [], "updates": [{ "action": "set-properties", "updates": { "k": "v" } }] });
            let actions: Vec<(&str, &str, Access, reqwest::RequestBuilder)> = vec![
                ("http", "ingest", Access::Write, c.post(format!("{}/v1/tables/{ns}.{table}/events", srv.base)).body(event("x", "2.00"))),
                ("http", "sql", Access::Read, c.post(format!("{}/v1/sql", srv.base)).json(&json!({ "sql": format!("SELECT count(*) FROM {ns}.{table}") }))),
                ("http", "sql metadata table", Access::Read, c.post(format!("{}/v1/sql", srv.base)).json(&json!({ "sql": format!("SELECT count(*) FROM {ns}.\"{table}$snapshots\"") }))),
                ("http", "snapshots", Access::Read, c.get(format!("{}/v1/tables/{ns}.{table}/snapshots", srv.base))),
                ("rest", "load", Access::Read, c.get(&rest)),
                ("rest", "list tables", Access::Read, c.get(format!("{}/iceberg/v1/namespaces/{ns}/tables", srv.base))),
                ("rest", "commit", Access::Write, c.post(&rest).json(&stale)),
                ("rest", "create table", Access::Admin, c.post(format!("{}/iceberg/v1/namespaces/{ns}/tables", srv.base)).json(&json!({
                    "name": format!("made_{}", cases),
                    "schema": { "type": "struct", "schema-id": 0, "fields": [{ "id": 1, "name": "a", "type": "long", "required": false }] },
                }))),
            ];
            for (listener, action, need, req) in actions {
                cases += 1;
                let (status, body) = call(token, req).await;
                let known = token.is_some_and(|t| t != "tok-unknown");
                let allowed = access(token, ns).is_some_and(|a| a >= need);
                let what = format!("{listener} {action} on {ns} with {token:?}");
                if !known {
                    assert_eq!(status, 401, "{what}: {body}");
                } else if allowed {
                    assert!((200..300).contains(&status), "{what}: {status} {body}");
                } else {
                    assert_eq!(status, 403, "{what}: {body}");
                    let text = body.to_string();
                    assert!(
                        text.contains(&format!("namespace '{ns}'")) && text.contains(need.name()),
                        "{what}: {text}"
                    );
                }
            }
        }
    }
    assert_eq!(cases, 5 * 2 * 8);
    // A query over both namespaces needs both.
    let join = json!({ "sql": "SELECT count(*) FROM raw.events, curated.daily" });
    let (s, body) = call(Some(ANALYST), c.post(format!("{}/v1/sql", srv.base)).json(&join)).await;
    assert_eq!(s, 403, "{body}");
    assert!(body.to_string().contains("namespace 'raw'"), "{body}");
    // Listings show only what the token may read.
    let (_, tables) = call(Some(ANALYST), c.get(format!("{}/v1/tables", srv.base))).await;
    let names: Vec<&str> = tables["tables"].as_array().unwrap().iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(names.contains(&"curated.daily") && names.iter().all(|n| n.starts_with("curated.")), "{tables}");
    let (_, ns) = call(Some(ANALYST), c.get(format!("{}/iceberg/v1/namespaces", srv.base))).await;
    assert_eq!(ns["namespaces"], json!([["curated"]]), "{ns}");
    // Health and metrics stay open (probes, Prometheus).
    let (s, _) = call(None, c.get(format!("{}/metrics", srv.base))).await;
    assert_eq!(s, 200);
    srv.stop().await;
}

#[tokio::test]
async fn an_open_server_refuses_to_listen_beyond_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let open = tributary_core::config::Config::from_toml("[server]\nlisten = \"0.0.0.0:0\"\n").unwrap();
    let err = open.validate(dir.path()).unwrap_err();
    assert!(err.contains("[[tokens]]") && err.contains("allow_unauthenticated"), "{err}");
    // `--http` overrides the listen address after validation: still refused.
    let mut cfg = config("[server]\nlisten = \"127.0.0.1:0\"\n", dir.path());
    cfg.listen = "0.0.0.0:0".to_owned();
    let err = tributary_server::start(&cfg, tokio_util::sync::CancellationToken::new()).await.unwrap_err();
    assert!(err.to_string().contains("0.0.0.0:0"), "{err}");
}

#[tokio::test]
async fn https_serves_with_a_certificate_made_for_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, tls) = crate::common::test_certificate(dir.path());
    let data = tempfile::tempdir().unwrap();
    let srv = start(&config(&lake_toml(&tls), data.path())).await;
    let https = srv.base.replace("http://", "https://");
    // curl runs off the runtime: the server answers on this test's thread.
    let curl = |args: &[&str]| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--max-time", "20", "--cacert"]).arg(&cert).args(args);
        async move {
            let out = tokio::task::spawn_blocking(move || cmd.output().unwrap()).await.unwrap();
            let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
            (out.status.success(), text(&out.stdout), text(&out.stderr))
        }
    };
    let (ok, body, err) = curl(&[&format!("{https}/healthz")]).await;
    assert!(ok && body.trim() == "ok", "{body} {err}");
    let auth = format!("Authorization: Bearer {ADMIN}");
    let (ok, body, err) =
        curl(&["-H", &auth, "--data-binary", &event("tls", "3.00"), &format!("{https}/v1/tables/raw.events/events")])
            .await;
    assert!(ok && body.contains("\"accepted\":1"), "{body} {err}");
    let (ok, body, err) =
        curl(&["-H", &auth, "-d", "{\"sql\":\"SELECT count(*) FROM raw.events\"}", &format!("{https}/v1/sql")]).await;
    assert!(ok && body.contains("[[1]]"), "{body} {err}");
    // Plain HTTP on the TLS port gets nowhere.
    let mut plain = Command::new("curl");
    plain.args(["-sS", "--max-time", "5", &format!("{}/healthz", srv.base)]);
    let plain = tokio::task::spawn_blocking(move || plain.output().unwrap()).await.unwrap();
    assert!(!plain.status.success() || !String::from_utf8_lossy(&plain.stdout).contains("ok"));
    srv.stop().await;
}
