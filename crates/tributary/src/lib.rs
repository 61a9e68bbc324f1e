//! The `tributary` command line: `check`, `serve`, `sql`, `load`,
//! `maintain`, `rollback`, `table`, `jobs`, `backfill`, `token` and `quickstart`.
//!
//! Each command is a thin function over the library crates, so the same code
//! paths run under the CLI, the tests and the benchmarks.

mod commands;
mod generator;
mod jobs;
mod load;
pub mod logging;
mod quickstart;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

/// Event-driven data lake: events from HTTP and Kafka, exactly once into Apache Iceberg.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Query output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A boxed table.
    Table,
    /// `{"columns":[...],"rows":[[...]]}`.
    Json,
    /// CSV with a header.
    Csv,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a config file without starting anything.
    Check {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the service: HTTP ingest, SQL and metrics.
    Serve {
        /// The TOML config.
        #[arg(long)]
        config: PathBuf,
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// HTTP listen address (overrides [server] listen).
        #[arg(long)]
        http: Option<String>,
        /// Postgres wire protocol listen address, e.g. 127.0.0.1:5433
        /// (overrides [server] pg_listen).
        #[arg(long, value_name = "ADDR")]
        pg: Option<String>,
    },
    /// Run one SQL statement against the lake, without a server.
    Sql {
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Take the catalog and warehouse from this config instead.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// The statement, e.g. "SELECT count(*) FROM raw.transactions".
        sql: String,
    },
    /// Load files into a table once (exactly once: files already loaded are
    /// skipped), print a reconciliation, and exit non-zero if any file failed.
    Load {
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Take the catalog, the warehouse and the table's declaration
        /// (types, dedup key, event time) from this config; without it the
        /// table must exist.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The table (`namespace.table`).
        #[arg(long)]
        table: String,
        /// File format; `auto` reads it from each file's extension.
        #[arg(long, value_enum, default_value_t = load::Format::Auto)]
        format: load::Format,
        /// CSV field delimiter.
        #[arg(long, default_value = ",")]
        delimiter: String,
        /// CSV files have no header line (columns in the table's order).
        #[arg(long)]
        no_header: bool,
        /// Files, directories (walked; `key=value` folders fill columns) and globs.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Compact tables and expire their old snapshots once, and say what it did.
    Maintain {
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Take the catalog, warehouse and `[maintenance]` settings from this config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Only this table (`namespace.table`); default: every table.
        #[arg(long)]
        table: Option<String>,
        /// Plan only: report what would be done, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Move a table back to an older snapshot, as a new commit; its sources
    /// resume from that snapshot's positions.
    Rollback {
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Take the catalog and warehouse from this config.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The table (`namespace.table`).
        #[arg(long)]
        table: String,
        /// The snapshot to go back to (`SELECT * FROM ns."t$snapshots"`).
        #[arg(long)]
        to: i64,
        /// Do it; without this, only say what it would do.
        #[arg(long)]
        yes: bool,
    },
    /// Manage tables: `tributary table drop raw.events --yes`.
    Table {
        /// What to do.
        #[command(subcommand)]
        action: TableAction,
    },
    /// Show where each zone job stands: input read to, lag, watermark.
    Jobs {
        /// The TOML config declaring the jobs.
        #[arg(long)]
        config: PathBuf,
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Print JSON (what `GET /v1/jobs` answers).
        #[arg(long)]
        json: bool,
    },
    /// Compute a job's output days again from its input and replace them in
    /// one commit; safe to interrupt and to run again.
    Backfill {
        /// The TOML config declaring the job.
        #[arg(long)]
        config: PathBuf,
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// The job's name.
        #[arg(long)]
        job: String,
        /// First day, YYYY-MM-DD (UTC).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (UTC), included.
        #[arg(long)]
        to: String,
    },
    /// Access tokens: `tributary token new` makes one and prints its hash for
    /// `[[tokens]]`; `tributary token hash TOKEN` hashes an existing one.
    Token {
        /// What to do.
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Create a demo lake, post events through the real HTTP path and report.
    Quickstart {
        /// Where the demo lake lives.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// How many events to generate.
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        http: String,
        /// Exit after the report instead of serving until Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
}

/// `tributary token …`.
#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// A new random token, and the `[[tokens]]` entry that admits it.
    New {
        /// Who will hold it.
        #[arg(long, default_value = "me")]
        name: String,
    },
    /// The SHA-256 of a token, as `[[tokens]] sha256` wants it.
    Hash {
        /// The token.
        token: String,
    },
}

/// `tributary table …`.
#[derive(Debug, Subcommand)]
pub enum TableAction {
    /// Drop a table from the catalog (its rows stop being queryable).
    Drop {
        /// `namespace.table`.
        table: String,
        /// Where the embedded catalog and warehouse live.
        #[arg(long, default_value = "./tributary-data")]
        data_dir: PathBuf,
        /// Take the catalog and warehouse from this config instead.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also delete the table's data and metadata files.
        #[arg(long)]
        purge: bool,
        /// Confirm: without it, nothing is dropped.
        #[arg(long)]
        yes: bool,
    },
}

/// Installs the tracing subscriber, writing to stderr through a queue that
/// never blocks ([`logging`]); keep the returned guard until exit. Quickstart
/// logs only warnings so its report stays readable. Colours only on a
/// terminal.
pub fn init_logging(cli: &Cli) -> logging::DrainOnDrop {
    let quiet = matches!(
        cli.command,
        Command::Quickstart { .. }
            | Command::Sql { .. }
            | Command::Table { .. }
            | Command::Maintain { .. }
            | Command::Rollback { .. }
            | Command::Token { .. }
            | Command::Jobs { .. }
            | Command::Backfill { .. }
    );
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let (writer, guard) = logging::StderrQueue::start();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(logging::StderrQueue::is_terminal())
        .log_internal_errors(false);
    match cli.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    guard
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check { config } => commands::check(&config).await,
        Command::Jobs { config, data_dir, json } => jobs::jobs(&config, &data_dir, json).await,
        Command::Backfill { config, data_dir, job, from, to } => {
            jobs::backfill(&config, &data_dir, &job, &from, &to).await
        }
        Command::Serve { config, data_dir, http, pg } => commands::serve(&config, &data_dir, http, pg).await,
        Command::Sql { data_dir, config, format, sql } => {
            commands::sql(&data_dir, config.as_deref(), format, &sql).await
        }
        Command::Load { data_dir, config, table, format, delimiter, no_header, paths } => {
            let csv = tributary_core::files::CsvOptions { header: !no_header, delimiter, ..Default::default() };
            let options = load::Options { data_dir, config, table, format, csv, paths };
            load::run(options).await
        }
        Command::Maintain { data_dir, config, table, dry_run } => {
            commands::maintain(&data_dir, config.as_deref(), table.as_deref(), dry_run).await
        }
        Command::Rollback { data_dir, config, table, to, yes } => {
            commands::rollback(&data_dir, config.as_deref(), &table, to, yes).await
        }
        Command::Table { action: TableAction::Drop { table, data_dir, config, purge, yes } } => {
            commands::drop_table(&data_dir, config.as_deref(), &table, purge, yes).await
        }
        Command::Token { action: TokenAction::New { name } } => {
            let token = format!("trb_{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
            println!("token (give it to '{name}', keep it secret; it is not stored anywhere): {token}\n");
            println!("[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"", commands::token_hash(&token));
            println!("scopes = {{ raw = \"write\" }}   # namespace (or \"*\") = \"read\" | \"write\" | \"admin\"");
            Ok(ExitCode::SUCCESS)
        }
        Command::Token { action: TokenAction::Hash { token } } => {
            println!("{}", commands::token_hash(&token));
            Ok(ExitCode::SUCCESS)
        }
        Command::Quickstart { data_dir, events, http, exit } => {
            quickstart::run(quickstart::Options { data_dir, events, http, exit }).await
        }
    }
}

/// An error and its causes on one line, each cause once: error types that
/// show their source in their own message would otherwise repeat it.
pub fn error_chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

/// A token cancelled by the first SIGINT or SIGTERM.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops the server");
                    let _ = ctrl_c.await;
                    t.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {},
                _ = term.recv() => {},
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        // Cancel first: nothing, not even a log line, may stand between a
        // signal and the shutdown it asks for.
        t.cancel();
        tracing::info!("shutdown requested; flushing and committing what was acknowledged");
    });
    token
}
