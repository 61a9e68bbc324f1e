//! The metadata tables of SQL (`t$snapshots`, `t$history`, `t$manifests`,
//! `t$files`) and `GET /v1/tables/{t}/snapshots` agree with each other and
//! with the table's rows.

use crate::common::{TRANSACTIONS, config, event, start};

#[tokio::test]
async fn metadata_tables_agree_with_the_rows() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    for body in 0..3 {
        let events: String = (0..10).map(|i| event(&format!("m{body}-{i}"), "1.00") + "\n").collect();
        assert_eq!(srv.post("raw.transactions", events).await.0, 200);
    }
    let number = |v: &serde_json::Value| v["rows"][0][0].as_i64().unwrap();
    let ask = |sql: &'static str| {
        let srv = &srv;
        async move {
            let (status, v) = srv.sql(sql).await;
            assert_eq!(status, 200, "{sql}: {v}");
            v
        }
    };
    let history =
        ask(r#"SELECT snapshot_id, is_current_ancestor FROM raw."transactions$history" ORDER BY made_current_at"#)
            .await;
    let snapshots = ask(r#"SELECT snapshot_id FROM raw."transactions$snapshots" ORDER BY committed_at"#).await;
    let ids = |v: &serde_json::Value| {
        v["rows"].as_array().unwrap().iter().map(|r| r[0].as_i64().unwrap()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&history), ids(&snapshots), "each snapshot became current once, in order");
    assert_eq!(ids(&history).len(), 3);
    assert!(history["rows"].as_array().unwrap().iter().all(|r| r[1] == true));
    let files = ask(r#"SELECT sum(record_count), count(*), count(*) FILTER (WHERE partition LIKE 'event_time_day=%') FROM raw."transactions$files""#).await;
    assert_eq!(number(&files), 30, "the live files hold every row: {files}");
    assert_eq!(files["rows"][0][1], files["rows"][0][2], "each file names its day partition: {files}");
    let manifests = ask(r#"SELECT sum(added_rows_count + existing_rows_count) FROM raw."transactions$manifests" WHERE content = 'data'"#).await;
    assert_eq!(number(&manifests), 30, "{manifests}");
    let url = format!("{}/v1/tables/raw.transactions/snapshots", srv.base);
    let listed: serde_json::Value = srv.client.get(&url).send().await.unwrap().json().await.unwrap();
    let listed = listed["snapshots"].as_array().unwrap();
    let mut newest_first = ids(&snapshots);
    newest_first.reverse();
    assert_eq!(listed.iter().map(|s| s["snapshot_id"].as_i64().unwrap()).collect::<Vec<_>>(), newest_first);
    assert!(listed.iter().all(|s| s["added_records"] == 10 && s["operation"] == "append"), "{listed:?}");
    assert_eq!(listed[0]["pipeline"], "http:raw.transactions");
    assert_eq!(listed[0]["positions"]["http"], 30, "the HTTP count after three bodies: {listed:?}");
    let missing = srv.client.get(format!("{}/v1/tables/raw.nope/snapshots", srv.base)).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    let (status, v) = srv.sql(r#"SELECT * FROM raw."transactions$partitions""#).await;
    assert_eq!(status, 400, "{v}");
    assert!(v.to_string().contains("$files"), "the error lists the metadata tables: {v}");
    srv.stop().await;
}
