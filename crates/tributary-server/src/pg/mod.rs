//! The Postgres wire protocol on `[server] pg_listen`, so psql, pgbench,
//! drivers and BI tools query the lake with the tools they already have.
//!
//! Read-only SQL over DataFusion, the same engine and gate as `/v1/sql`,
//! over both the simple and the extended query protocol (`$n`
//! parameters bound as typed values, not pasted into SQL). Arrow types are
//! answered as their Postgres types ([`encode`]), errors carry SQLSTATE
//! codes ([`error`]), and what clients send around their queries (`SET`,
//! `SHOW`, `SELECT version()`, psql's `\d` catalog queries) is answered
//! rather than refused ([`route`], [`catalog`]).
//!
//! The password is the access token ([`startup`]); with `[server.tls]` the
//! listener speaks TLS (`sslmode=require`) and refuses plain connections.
//! Each connection runs on its own task; on shutdown the listener stops
//! accepting and open connections are closed: nothing here writes, so
//! there is nothing to finish.

pub mod catalog;
pub mod decode;
pub mod encode;
pub mod error;
pub mod handler;
pub mod route;
pub mod startup;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::PgWireServerHandlers;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::config::ValidConfig;

pub use handler::Lakeside;

use crate::ServerError;
use crate::auth::Auth;

/// Everything one connection is served by.
struct Handlers {
    queries: Arc<handler::Handler>,
    startup: Arc<startup::Startup>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl pgwire::api::query::SimpleQueryHandler> {
        self.queries.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl pgwire::api::query::ExtendedQueryHandler> {
        self.queries.clone()
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        self.startup.clone()
    }
}

/// Binds `config.pg_listen`, if set, and serves it (over `tls`, if any) on
/// `tasks` until `shutdown`: the bound address.
pub async fn spawn(
    config: &ValidConfig,
    tls: Option<TlsAcceptor>,
    lake: Lakeside,
    auth: Arc<Auth>,
    shutdown: &CancellationToken,
    tasks: &TaskTracker,
) -> Result<Option<SocketAddr>, ServerError> {
    let Some(listen) = &config.pg_listen else { return Ok(None) };
    let listener = TcpListener::bind(listen).await.map_err(|source| ServerError::Bind {
        addr: listen.clone(),
        setting: "--pg or [server] pg_listen",
        source,
    })?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, tls = tls.is_some(), "serving the postgres wire protocol");
    tasks.spawn(serve(listener, tls, lake, auth, shutdown.clone()));
    Ok(Some(addr))
}

/// Serves `listener` until `shutdown`, each connection on its own task.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    lake: Lakeside,
    auth: Arc<Auth>,
    shutdown: CancellationToken,
) {
    let handlers = Arc::new(Handlers {
        queries: Arc::new(handler::Handler::new(lake)),
        startup: Arc::new(startup::Startup::new(auth, tls.is_some())),
    });
    crate::tls::accept_each(listener, shutdown, "postgres", move |tcp, peer, stop| {
        let (tls, handlers) = (tls.clone(), handlers.clone());
        async move {
            tokio::select! {
                served = pgwire::tokio::process_socket(tcp, tls, handlers) => {
                    if let Err(e) = served {
                        tracing::debug!(%peer, error = %e, "postgres connection ended");
                    }
                }
                () = stop.cancelled() => {}
            }
        }
    })
    .await;
}
