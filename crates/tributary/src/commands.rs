//! `check`, `serve`, `sql`, `maintain`, `rollback` and `table drop`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tributary_core::TableName;
use tributary_core::config::{Config, ValidConfig, Warehouse};
use tributary_query::{QueryEngine, output};
use tributary_table::Lake;
use tributary_table::maintain::maintain_table;

use crate::OutputFormat;

/// Loads and validates a config file; `data_dir` resolves embedded defaults.
pub(crate) fn load_config(path: &Path, data_dir: &Path) -> anyhow::Result<ValidConfig> {
    let cfg = Config::load(path).map_err(anyhow::Error::msg)?;
    cfg.validate(data_dir).map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))
}

pub async fn check(path: &Path) -> anyhow::Result<ExitCode> {
    let v = load_config(path, Path::new("./tributary-data"))?;
    for k in &v.kafka {
        tributary_ingest::sources::kafka::check_client(k)
            .map_err(|e| anyhow::anyhow!("config file {}: kafka source '{}': {e}", path.display(), k.name))?;
    }
    tributary_transform::check(&v).await.map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    println!("{}: ok", path.display());
    println!("  catalog   {} (name '{}')", v.catalog_url, v.catalog_name);
    println!("  warehouse {}", v.warehouse);
    println!("  listen    {}", v.listen);
    for t in &v.tables {
        let dedup = t.dedup.as_ref().map_or("none".to_owned(), |(k, w)| format!("{k} within {w:?}"));
        println!(
            "  table     {} ({} fields, {} partition fields, dedup: {dedup})",
            t.name,
            t.fields.len(),
            t.partition.len()
        );
    }
    for k in &v.kafka {
        println!("  kafka     {} → {} (topics {:?}, group '{}')", k.name, k.table, k.topics, k.group_id);
    }
    for f in &v.files {
        let to = match &f.route {
            tributary_core::files::Route::Table(t) => t.to_string(),
            tributary_core::files::Route::ByDirectory => "the table each folder names".to_owned(),
        };
        println!("  files     {} → {to} ({}, every {:?}, then {:?})", f.name, f.root, f.poll_interval, f.post_action);
    }
    for j in &v.jobs {
        let after =
            if j.depends_on.is_empty() { String::new() } else { format!(", after {}", j.depends_on.join(", ")) };
        let kind = tributary_transform::status::kind_name(j);
        println!("  job       {} ({kind}): {} → {}{after}", j.name, j.input, j.output);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn serve(path: &Path, data_dir: &Path, http: Option<String>, pg: Option<String>) -> anyhow::Result<ExitCode> {
    let mut config = load_config(path, data_dir)?;
    if let Some(addr) = http {
        config.listen = addr;
    }
    if let Some(addr) = pg {
        config.pg_listen = Some(addr);
    }
    config.check_exposure().map_err(|e| anyhow::anyhow!("{e}"))?;
    let shutdown = crate::shutdown_on_signal();
    let server = tributary_server::start(&config, shutdown).await?;
    crate::logging::say(format_args!("tributary listening on http://{}", server.addr));
    if let Some(pg) = server.pg_addr {
        crate::logging::say(format_args!(
            "postgres wire protocol on {pg}: psql \"host={} port={} dbname=tributary\"",
            pg.ip(),
            pg.port()
        ));
    }
    server.wait().await?;
    Ok(ExitCode::SUCCESS)
}

/// Opens the lake of `config`, or the embedded one under `data_dir`, which
/// must exist: a typo in `--data-dir` must not create an empty lake.
pub(crate) async fn open_lake(data_dir: &Path, config: Option<&Path>) -> anyhow::Result<Lake> {
    let (url, name, warehouse) = match config {
        Some(p) => {
            let v = load_config(p, data_dir)?;
            (v.catalog_url, v.catalog_name, v.warehouse)
        }
        None => {
            let db = data_dir.join("catalog.db");
            anyhow::ensure!(
                db.exists(),
                "no lake at {}: {} does not exist; run `tributary quickstart` or pass --data-dir/--config",
                data_dir.display(),
                db.display()
            );
            let warehouse = Warehouse::Local(data_dir.join("warehouse"));
            (format!("sqlite://{}", db.display()), "tributary".to_owned(), warehouse)
        }
    };
    Lake::open(&url, &name, &warehouse).await.context("opening the lake")
}

pub async fn sql(data_dir: &Path, config: Option<&Path>, format: OutputFormat, sql: &str) -> anyhow::Result<ExitCode> {
    let engine = QueryEngine::new(open_lake(data_dir, config).await?, 2)?;
    let result = engine.sql(sql).await?;
    let text = match format {
        OutputFormat::Table => output::to_table(&result)?,
        OutputFormat::Csv => output::to_csv(&result)?,
        OutputFormat::Json => output::to_json(&result)?.to_string(),
    };
    println!("{}", text.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// `tributary maintain`: compacts each table and expires its snapshots once,
/// one table at a time, printing each table's line as it finishes.
pub async fn maintain(
    data_dir: &Path,
    config: Option<&Path>,
    table: Option<&str>,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let lake = open_lake(data_dir, config).await?;
    // Without a config, the defaults of an empty one apply.
    let valid = match config {
        Some(p) => load_config(p, data_dir)?,
        None => Config::default().validate(data_dir).map_err(anyhow::Error::msg)?,
    };
    // A quarantine table is maintained like the table it belongs to.
    let policy = |name: &TableName| {
        let owner = valid.tables.iter().find(|t| &t.name == name || &t.name.quarantine() == name);
        let policy = valid.maintenance_for(owner.map_or(name, |t| &t.name));
        if owner.is_some_and(|t| &t.name != name) { policy.for_quarantine() } else { policy }
    };
    let tables = match table {
        Some(t) => vec![TableName::parse(t).map_err(anyhow::Error::msg)?],
        None => lake.list().await?,
    };
    let verb = if dry_run { "would" } else { "did" };
    println!(
        "{:<32} {:>13} {:>11} {:>9} {:>17} {:>17}  took",
        "table", "data files", "compacted", "expired", "deleted", "orphans"
    );
    let now_ms = chrono::Utc::now().timestamp_millis();
    for (i, name) in tables.iter().enumerate() {
        crate::logging::say(format_args!("[{}/{}] {name}…", i + 1, tables.len()));
        let r = maintain_table(&lake, name, &policy(name), true, dry_run, now_ms).await?;
        println!(
            "{:<32} {:>6} → {:<4} {:>11} {:>9} {:>17} {:>17}  {:.1}s",
            name.to_string(),
            r.compacted.files_before,
            r.compacted.files_after,
            format!("{} files", r.compacted.files_rewritten),
            format!("{} snaps", r.expired.snapshots),
            format!("{} files {}", r.expired.files_deleted, human_bytes(r.expired.bytes_deleted)),
            format!("{} files {}", r.orphans.files, human_bytes(r.orphans.bytes)),
            r.took.as_secs_f64()
        );
    }
    println!(
        "({verb}: compacted = small files rewritten; expired = snapshots removed; deleted = files only they needed; \
         orphans = files nothing references, older than orphan_min_age)"
    );
    Ok(ExitCode::SUCCESS)
}

fn human_bytes(b: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = b as f64;
    match b {
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.1} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b} B"),
    }
}

/// `tributary rollback`: moves a table back to an older snapshot; refuses
/// without `yes`, saying how many rows would go.
pub async fn rollback(
    data_dir: &Path,
    config: Option<&Path>,
    table: &str,
    to: i64,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let name = TableName::parse(table).map_err(anyhow::Error::msg)?;
    let lake = open_lake(data_dir, config).await?;
    let loaded = lake.load(&name).await?;
    let then = loaded.metadata.snapshot_by_id(to).map(|s| {
        let rows = s.summary().additional_properties.get("total-records").and_then(|r| r.parse::<u64>().ok());
        (rows.unwrap_or(0), chrono::DateTime::from_timestamp_millis(s.timestamp_ms()).unwrap_or_default())
    });
    if !yes {
        let (rows, at) = then.ok_or_else(|| {
            anyhow::anyhow!(
                r#"table {name} has no snapshot {to}; `tributary sql 'SELECT snapshot_id, committed_at FROM {}."{}$snapshots"'` lists them"#,
                name.namespace,
                name.name
            )
        })?;
        anyhow::bail!(
            "this would roll {name} back to snapshot {to} of {at}: {} rows now, {rows} after; its sources would \
             read again what they ingested since; run again with --yes to do it",
            loaded.total_records()
        );
    }
    let done = tributary_table::rollback(&lake, &name, to).await?;
    println!(
        "rolled {name} back to snapshot {to} as snapshot {}: {} → {} rows ({} files removed, {} restored)",
        done.snapshot_id, done.rows_before, done.rows_after, done.files_removed, done.files_restored
    );
    for (pipeline, positions) in &done.pipelines {
        println!("  {pipeline} resumes from {}", positions.to_json());
    }
    println!("a running server notices on its next commit; Kafka sources read again from these positions");
    Ok(ExitCode::SUCCESS)
}

/// `tributary table drop`: removes a table from the catalog, and with
/// `purge` its files; refuses without `yes`, saying what would be lost.
pub async fn drop_table(
    data_dir: &Path,
    config: Option<&Path>,
    table: &str,
    purge: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let name = TableName::parse(table).map_err(anyhow::Error::msg)?;
    let lake = open_lake(data_dir, config).await?;
    let loaded = lake.load(&name).await?;
    let rows = loaded.total_records();
    let what = if purge { "and delete its files" } else { "(its files stay)" };
    anyhow::ensure!(yes, "this would drop table {name} with {rows} rows {what}; run again with --yes to do it");
    lake.drop_table(&name, purge).await?;
    println!("dropped {name} ({rows} rows){}", if purge { ", files deleted" } else { "" });
    if lake.try_load(&name.quarantine()).await?.is_some() {
        println!("its rejects are still in {}; drop that too if you no longer need them", name.quarantine());
    }
    Ok(ExitCode::SUCCESS)
}

/// The hex SHA-256 of `token`: what `[[tokens]] sha256` holds.
pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}
