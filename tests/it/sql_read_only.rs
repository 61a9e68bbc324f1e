//! SQL over HTTP reads the lake and nothing else: statements that would
//! write server files, read them, change settings or change tables are
//! refused before they run, and leave nothing behind.

use crate::common::{TRANSACTIONS, config, event, start};

#[tokio::test]
async fn sql_endpoint_refuses_writes_file_reads_and_settings_and_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&config(TRANSACTIONS, dir.path())).await;
    assert_eq!(srv.post("raw.transactions", event("e1", "1.00")).await.0, 200);
    let out = tempfile::tempdir().unwrap();
    let secret = out.path().join("secret.csv");
    std::fs::write(&secret, "user,password\nroot,hunter2\n").unwrap();
    let at = |name: &str| out.path().join(name).display().to_string();
    let statements = [
        ("COPY", format!("COPY (SELECT 1) TO '{}'", at("one.csv"))),
        ("COPY", format!("COPY (SELECT event_id FROM raw.transactions LIMIT 2) TO '{}'", at("rows.parquet"))),
        ("CREATE EXTERNAL TABLE", format!("CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{}'", secret.display())),
        ("SET", "SET datafusion.execution.batch_size = 1".to_owned()),
        ("INSERT", "INSERT INTO raw.transactions (event_id) VALUES ('x')".to_owned()),
        ("DROP TABLE", "DROP TABLE raw.transactions".to_owned()),
        ("CREATE TABLE", "CREATE TABLE copied AS SELECT * FROM raw.transactions".to_owned()),
        ("SELECT INTO", "SELECT * INTO copied FROM raw.transactions".to_owned()),
        ("COPY", format!("EXPLAIN ANALYZE COPY (SELECT 1) TO '{}'", at("explained.csv"))),
    ];
    for (kind, sql) in &statements {
        let (status, v) = srv.sql(sql).await;
        assert_eq!(status, 403, "{sql}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("{kind} is not allowed")) && message.contains("read-only"), "{message}");
        assert!(!message.contains("hunter2") && !message.contains("records"), "{sql} leaked the file: {message}");
        assert_eq!(v["error"]["retryable"], false);
    }
    let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, vec![std::ffi::OsString::from("secret.csv")], "a refused statement wrote a file");
    assert_eq!(srv.count("raw.transactions").await, 1);
    let m = crate::common::metric(&srv.metrics().await, "tributary_queries_total", &["outcome=\"refused\""]);
    assert!(m.unwrap_or(0.0) >= statements.len() as f64, "refusals are counted");

    // Reads still work: SHOW, EXPLAIN and DESCRIBE (in the config's types).
    assert_eq!(srv.sql("SHOW TABLES").await.0, 200);
    assert_eq!(srv.sql("EXPLAIN SELECT count(*) FROM raw.transactions").await.0, 200);
    let (status, v) = srv.sql("DESCRIBE raw.transactions").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (&v["columns"][0], &v["columns"][1]),
        (&serde_json::json!("column_name"), &serde_json::json!("data_type"))
    );
    let types: Vec<(String, String)> = v["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()))
        .collect();
    assert!(types.contains(&("amount".into(), "decimal(12,2)".into())), "{types:?}");
    assert!(types.contains(&("event_time".into(), "timestamptz".into())), "{types:?}");
    srv.stop().await;
}
