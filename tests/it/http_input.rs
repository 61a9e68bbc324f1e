//! How request bodies are read: declared formats and compressions, and the
//! input that used to be misread silently (epoch units, repeated keys, a
//! byte-order mark). Each ends in the table, in quarantine with its reason,
//! or in a clear 4xx: never as a wrong value.

use std::io::Write;

use serde_json::{Value, json};

use crate::common::{Running, TRANSACTIONS, config, event, start};

async fn post_with(srv: &Running, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut req = srv.client.post(format!("{}/v1/tables/raw.transactions/events", srv.base)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[tokio::test]
async fn compressed_bodies_are_decoded_and_unknown_encodings_refused() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let body = format!("{}\n{}\n", event("g1", "1.00"), event("g2", "2.00"));
    let (status, r) = post_with(&srv, &[("Content-Encoding", "gzip")], gzip(body.as_bytes())).await;
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(2)), "{r}");
    let zst = zstd::encode_all(event("z1", "3.00").as_bytes(), 3).unwrap();
    let (status, r) = post_with(&srv, &[("Content-Encoding", "zstd")], zst).await;
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(1)), "{r}");

    let (status, v) = post_with(&srv, &[("Content-Encoding", "br")], b"\x0b\x02".to_vec()).await;
    assert_eq!(status, 415, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("'br' is not supported"), "{v}");
    // A small gzip body that expands past max_body_bytes (1 MiB here).
    let bomb = gzip(&vec![b' '; 4 * 1024 * 1024]);
    let (status, v) = post_with(&srv, &[("Content-Encoding", "gzip")], bomb).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("max_body_bytes"), "{v}");
    assert_eq!(srv.count("raw.transactions").await, 3, "only the good bodies landed");
    srv.stop().await;
}

/// A 1,000-event NDJSON batch was refused whole because its first line, a
/// malformed record, started with '['.
#[tokio::test]
async fn a_declared_ndjson_body_is_split_by_lines_whatever_its_first_byte() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let mut lines = vec!["[not a record".to_owned()];
    lines.extend((0..9).map(|i| event(&format!("n{i}"), "1.00")));
    let (status, r) = post_with(&srv, &[("Content-Type", "application/x-ndjson")], lines.join("\n").into_bytes()).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["quarantined"].as_u64()), (Some(9), Some(1)), "{r}");
    // application/json: one pretty-printed record is one record.
    let pretty = serde_json::to_string_pretty(&serde_json::from_str::<Value>(&event("p1", "1.00")).unwrap()).unwrap();
    let (status, r) = post_with(&srv, &[("Content-Type", "application/json")], pretty.into_bytes()).await;
    assert_eq!((status, r["accepted"].as_u64()), (200, Some(1)), "{r}");
    srv.stop().await;
}

#[tokio::test]
async fn misread_input_is_quarantined_with_its_reason_and_found_by_request_id() {
    let toml = TRANSACTIONS.replace(
        "type = \"timestamptz\",   required = true",
        "type = \"timestamptz\",   required = true, unit = \"s\"",
    );
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(&toml, dir.path())).await;
    let ok_seconds = r#"{"event_id":"s1","user_id":1,"amount":"1.00","event_time":1795000000}"#;
    let negative = r#"{"event_id":"s2","user_id":1,"amount":"1.00","event_time":-62000000000}"#;
    let repeated = r#"{"event_id":"s3","user_id":1,"user_id":2,"amount":"1.00","event_time":1795000000}"#;
    let bom = "\u{feff}{\"event_id\":\"s4\",\"user_id\":1,\"amount\":\"1.00\",\"event_time\":1795000000}";
    let binary = b"{\"event_id\":\"\xff\xfe\"".to_vec();
    let mut body = [ok_seconds, negative, repeated, bom].join("\n").into_bytes();
    body.push(b'\n');
    body.extend_from_slice(&binary);
    let (status, r) = post_with(&srv, &[], body).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!((r["accepted"].as_u64(), r["quarantined"].as_u64()), (Some(2), Some(3)), "{r}");
    let request_id = r["request_id"].as_str().expect("the receipt names the request");

    let (_, v) = srv.sql("SELECT event_id, to_unixtime(event_time) FROM raw.transactions ORDER BY event_id").await;
    assert_eq!(v["rows"], json!([["s1", 1_795_000_000], ["s4", 1_795_000_000]]), "epoch seconds, not 1970: {v}");
    let (status, v) = srv
        .sql(&format!(
            "SELECT error_kind, raw_text FROM quarantine.transactions WHERE position LIKE 'request {request_id} %' \
             ORDER BY position"
        ))
        .await;
    assert_eq!(status, 200, "{v}");
    let kinds: Vec<&str> = v["rows"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap()).collect();
    assert_eq!(kinds, ["invalid_timestamp", "duplicate_field", "malformed_json"], "{v}");
    assert!(v["rows"][2][1].as_str().unwrap().contains('\u{fffd}'), "raw_text reads binary records lossily");
    srv.stop().await;
}
