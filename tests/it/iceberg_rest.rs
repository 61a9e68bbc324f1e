//! The Iceberg REST catalog's protocol details that a client library hides:
//! the spec's error bodies and statuses, and that a commit whose
//! requirement no longer holds (ingestion committed first) is refused with
//! 409 `CommitFailedException` and changes nothing. PyIceberg and DuckDB
//! themselves are exercised by `dev/interop_rest.py`.

use serde_json::{Value, json};

use crate::common::{TRANSACTIONS, config, event, start};

async fn get(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = client.get(url).send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_rest_catalog_serves_tables_and_refuses_a_stale_commit_with_409() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    let (status, _) = srv.post("raw.transactions", event("e1", "1.00")).await;
    assert_eq!(status, 200);
    let rest = format!("{}/iceberg/v1", srv.base);
    let (status, cfg) = get(&srv.client, &format!("{rest}/config")).await;
    assert_eq!((status, cfg["defaults"].is_object()), (200, true), "{cfg}");
    let (_, ns) = get(&srv.client, &format!("{rest}/namespaces")).await;
    assert!(ns["namespaces"].as_array().unwrap().contains(&json!(["raw"])), "{ns}");
    let (_, tables) = get(&srv.client, &format!("{rest}/namespaces/raw/tables")).await;
    assert_eq!(tables["identifiers"], json!([{ "namespace": ["raw"], "name": "transactions" }]));

    let (status, loaded) = get(&srv.client, &format!("{rest}/namespaces/raw/tables/transactions")).await;
    assert_eq!(status, 200);
    let first = loaded["metadata"]["current-snapshot-id"].as_i64().unwrap();
    assert!(loaded["metadata-location"].as_str().unwrap().ends_with(".metadata.json"));

    // Ingestion commits again: a client still holding `first` is stale.
    let (status, _) = srv.post("raw.transactions", event("e2", "2.00")).await;
    assert_eq!(status, 200);
    let stale = json!({
        "requirements": [{ "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": first }],
        "updates": [{ "action": "set-properties", "updates": { "owner": "someone" } }],
    });
    let url = format!("{rest}/namespaces/raw/tables/transactions");
    let resp = srv.client.post(&url).json(&stale).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "CommitFailedException", "{body}");
    assert_eq!(body["error"]["code"], 409);
    let (_, now) = get(&srv.client, &url).await;
    assert!(now["metadata"]["properties"].get("owner").is_none(), "a refused commit changes nothing");

    // Against the current snapshot the same change lands, and ingestion
    // goes on committing on top of it.
    let current = now["metadata"]["current-snapshot-id"].as_i64().unwrap();
    let fresh = json!({
        "requirements": [{ "type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": current }],
        "updates": [{ "action": "set-properties", "updates": { "owner": "someone" } }],
    });
    let resp = srv.client.post(&url).json(&fresh).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, _) = srv.post("raw.transactions", event("e3", "3.00")).await;
    assert_eq!(status, 200);
    let (_, after) = get(&srv.client, &url).await;
    assert_eq!(after["metadata"]["properties"]["owner"], "someone", "ingestion kept the client's change");
    assert_eq!(srv.count("raw.transactions").await, 3);

    let (status, missing) = get(&srv.client, &format!("{rest}/namespaces/raw/tables/nope")).await;
    assert_eq!((status, missing["error"]["type"].as_str()), (404, Some("NoSuchTableException")), "{missing}");
    let (status, bad) = get(&srv.client, &format!("{rest}/namespaces/Bad-Name/tables")).await;
    assert_eq!((status, bad["error"]["type"].as_str()), (400, Some("BadRequestException")), "{bad}");
    srv.stop().await;
}
