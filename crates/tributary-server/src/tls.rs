//! TLS for every listener, from `[server.tls]`: a PEM certificate chain and
//! its key, served with rustls (ring; no C build beyond ring's).
//!
//! The HTTP listener is served connection by connection (axum's `serve`
//! has no TLS); each connection's handshake runs on its own task, so a
//! client that stalls its handshake holds no one else up. On shutdown the
//! listener stops accepting and open connections finish their requests.

use std::sync::Arc;

use axum::Router;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_core::config::TlsConfig;

use crate::error::ServerError;

/// The acceptor for `tls`'s certificate and key; errors name the file.
pub fn acceptor(tls: &TlsConfig) -> Result<TlsAcceptor, ServerError> {
    let bad = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        ServerError::Config(format!("server.tls.{what} = '{}': {e}", path.display()))
    };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&tls.cert).and_then(Iterator::collect).map_err(|e| bad("cert", &tls.cert, &e))?;
    if certs.is_empty() {
        return Err(bad("cert", &tls.cert, &"no PEM certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| bad("key", &tls.key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| bad("key", &tls.key, &format!("does not fit the certificate: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `router` over TLS on `listener` until `shutdown`, then waits for
/// the open connections to finish.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, router: Router, shutdown: CancellationToken) {
    accept_each(listener, shutdown, "TLS", move |tcp, peer, stop| {
        let (acceptor, router) = (acceptor.clone(), router.clone());
        async move {
            let tls = match acceptor.accept(tcp).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper_util::service::TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => if let Err(e) = r { tracing::debug!(%peer, error = %e, "TLS connection ended") },
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        }
    })
    .await;
}

/// Accepts connections on `listener` until `shutdown`, each served by
/// `connection` on a task of its own (a slow client holds up no one), then
/// waits for those tasks: the loop both listeners (HTTPS, Postgres) share.
pub(crate) async fn accept_each<F, Fut>(listener: TcpListener, shutdown: CancellationToken, what: &str, connection: F)
where
    F: Fn(TcpStream, SocketAddr, CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a {what} connection failed");
                    continue;
                }
            },
        };
        connections.spawn(connection(tcp, peer, shutdown.clone()));
    }
    connections.close();
    connections.wait().await;
}
