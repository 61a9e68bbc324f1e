//! A broken dependency must look broken: `/readyz` names the failing
//! component and why, the source's metric says it is down, and an
//! unreachable catalog is reported at once instead of after a timeout.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{TRANSACTIONS, config, metric, start};

#[tokio::test]
async fn an_unreachable_broker_makes_readyz_fail_with_the_reason() {
    // Port 9 on loopback: nothing listens there.
    let toml = format!(
        "{TRANSACTIONS}\n[[kafka]]\nname = \"orders\"\nbrokers = \"127.0.0.1:9\"\ntopics = [\"orders\"]\n\
         group_id = \"g\"\ntable = \"raw.transactions\"\nproperties = {{ \"reconnect.backoff.max.ms\" = \"500\" }}\n"
    );
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(&toml, dir.path())).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let resp = srv.client.get(format!("{}/readyz", srv.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 503, "a source that cannot connect is not ready");
        let body: Value = resp.json().await.unwrap();
        let reason = body["components"]["kafka:orders"]["reason"].as_str().unwrap_or_default().to_owned();
        if reason.contains("refused") || Instant::now() > deadline {
            break body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(body["ready"], false);
    assert_eq!(body["components"]["catalog"]["ready"], true, "{body}");
    let kafka = &body["components"]["kafka:orders"];
    assert_eq!(kafka["ready"], false, "{body}");
    assert!(kafka["reason"].as_str().unwrap().contains("127.0.0.1:9"), "the reason names the broker: {body}");
    assert!(kafka["reason"].as_str().unwrap().contains("refused"), "the reason says why: {body}");
    let text = srv.metrics().await;
    assert_eq!(metric(&text, "tributary_source_up", &["source=\"kafka:orders\""]), Some(0.0), "{text}");
    assert!(metric(&text, "tributary_source_errors_total", &["source=\"kafka:orders\""]).unwrap_or(0.0) >= 1.0);
    // Shutdown is not held up by the source that never connected.
    tokio::time::timeout(Duration::from_secs(30), srv.stop()).await.expect("shutdown hung");
}

#[tokio::test]
async fn readyz_is_ok_when_every_component_is() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let resp = srv.client.get(format!("{}/readyz", srv.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["components"]["catalog"]["ready"], true, "{body}");
    srv.stop().await;
}

/// The server used to wait 30 s and then say only "pool timed out".
#[tokio::test]
async fn an_unreachable_postgres_catalog_is_named_at_once() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let err = tributary_table::Lake::open(
        "postgres://postgres@127.0.0.1:9/postgres",
        "tributary",
        &tributary_core::config::Warehouse::Local(dir.path().to_path_buf()),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert!(err.contains("[catalog] url = 'postgres://postgres@127.0.0.1:9/postgres'"), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}
