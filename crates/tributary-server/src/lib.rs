//! The `tributary serve` process: HTTP ingest, zone jobs, SQL and metrics
//! over one lake.
//!
//! Lifecycle: one root `CancellationToken` and one `TaskTracker`. On
//! cancellation the HTTP server stops accepting, in-flight requests finish,
//! each table's pipeline lands what its sources queued or sent last, and
//! only then does [`Server::wait`] return. Nothing is acknowledged before it
//! is committed, so a shutdown at any moment loses nothing acknowledged.

pub mod api;
pub mod auth;
pub mod error;
pub mod iceberg_rest;
pub mod maintenance;
pub mod metrics;
pub mod pg;
mod tables;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::config::ValidConfig;
use tributary_core::{Clock, SystemClock};
use tributary_ingest::IngestService;
use tributary_query::QueryEngine;
use tributary_table::Lake;

pub use api::{AppState, app};
pub use error::ServerError;

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// The bound HTTP address (useful with port 0).
    pub addr: SocketAddr,
    /// The bound Postgres wire protocol address, when `pg_listen` is set.
    pub pg_addr: Option<SocketAddr>,
    /// The lake it serves.
    pub lake: Lake,
    ingest: Arc<IngestService>,
    tasks: TaskTracker,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Opens the lake, prepares every table and starts serving on `config.listen`.
pub async fn start(config: &ValidConfig, shutdown: CancellationToken) -> Result<Server, ServerError> {
    start_with_clock(config, shutdown, Arc::new(SystemClock)).await
}

/// [`start`] with an injected clock.
pub async fn start_with_clock(
    config: &ValidConfig,
    shutdown: CancellationToken,
    clock: Arc<dyn Clock>,
) -> Result<Server, ServerError> {
    config.check_exposure().map_err(ServerError::Config)?;
    metrics::handle();
    metrics::describe();
    let lake = Lake::open(&config.catalog_url, &config.catalog_name, &config.warehouse).await?;
    let tasks = TaskTracker::new();
    let ingest = IngestService::start(&lake, config, clock, &shutdown, &tasks).await?;
    maintenance::spawn(&lake, config, &shutdown, &tasks);
    let jobs = tributary_transform::schedule::Scheduler::spawn(&lake, config, &shutdown, &tasks)?;
    let query = QueryEngine::new(lake.clone(), 2).map_err(ServerError::Io)?;
    let ingest = Arc::new(ingest);
    let auth = Arc::new(auth::Auth::new(config.tokens.clone()));
    let pg_lake = pg::Lakeside { query: query.clone(), lake: lake.clone() };
    let pg_auth = auth.clone();
    let state =
        AppState { ingest: ingest.clone(), query, lake: lake.clone(), jobs, warehouse: config.warehouse.clone(), auth };
    let listener = tokio::net::TcpListener::bind(&config.listen).await.map_err(|source| ServerError::Bind {
        addr: config.listen.clone(),
        setting: "--http or [server] listen",
        source,
    })?;
    let addr = listener.local_addr()?;
    // One acceptor (the certificate read once) for both listeners.
    let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
    let pg_addr = pg::spawn(config, tls.clone(), pg_lake, pg_auth, &shutdown, &tasks).await?;
    let router = app(state, config.max_body_bytes);
    let stop = shutdown.clone();
    let http = match tls {
        None => tokio::spawn(async move {
            axum::serve(listener, router).with_graceful_shutdown(async move { stop.cancelled().await }).await
        }),
        Some(acceptor) => tokio::spawn(async move {
            tls::serve(listener, acceptor, router, stop).await;
            Ok(())
        }),
    };
    tracing::info!(%addr, tables = config.tables.len(), "serving");
    if config.tokens.is_empty() {
        tracing::info!(
            "no [[tokens]] configured: no authentication; {}",
            if config.allow_unauthenticated {
                "server.allow_unauthenticated is set, so whatever reaches this address may read and write every table"
            } else {
                "serving the loopback interface only"
            }
        );
    }
    tasks.close();
    Ok(Server { addr, pg_addr, lake, ingest, tasks, http })
}

impl Server {
    /// Waits until the server has shut down and every table pipeline has
    /// made its last commit. Fails if a source stopped the process.
    pub async fn wait(self) -> Result<(), ServerError> {
        let http = self.http.await.map_err(|e| ServerError::Io(std::io::Error::other(e)));
        self.tasks.wait().await;
        http??;
        match self.ingest.fatal_error() {
            Some(e) => Err(ServerError::Fatal(e.to_owned())),
            None => Ok(()),
        }
    }
}
