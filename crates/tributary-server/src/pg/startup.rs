//! Who connects: the Postgres password is the access token.
//!
//! Only tokens' hashes are kept, so the password must reach the server
//! as it is: cleartext password authentication (SCRAM and MD5 need the
//! password itself on the server). With `[server.tls]` set, connections
//! without TLS are refused before any password is asked for, so a token
//! never crosses the network in the clear. Without `[[tokens]]` the server
//! is open (and on loopback only): no password is asked for.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    DefaultServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, METADATA_USER, PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::startup::Authentication;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};

use super::error;
use super::route::parameter;
use crate::auth::{Auth, Caller};

/// Authenticates each connection and leaves its [`Caller`] in the
/// session.
pub struct Startup {
    auth: Arc<Auth>,
    tls_only: bool,
    parameters: DefaultServerParameterProvider,
    pids: RandomPidSecretKeyGenerator,
}

impl Startup {
    /// Checks connections against `auth`; `tls_only`: refuse plain TCP.
    pub fn new(auth: Arc<Auth>, tls_only: bool) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        // The values `SHOW` answers with (`route::PARAMETERS`).
        parameters.server_version = parameter("server_version").to_owned();
        parameters.time_zone = parameter("timezone").to_owned();
        parameters.date_style = parameter("datestyle").to_owned();
        parameters.search_path = parameter("search_path").to_owned();
        parameters.is_superuser = parameter("is_superuser") == "on";
        parameters.default_transaction_read_only = parameter("default_transaction_read_only") == "on";
        Self { auth, tls_only, parameters, pids: RandomPidSecretKeyGenerator::default() }
    }

    async fn admit<C>(&self, client: &mut C, caller: Caller) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, key);
        client.session_extensions().insert(caller);
        tracing::debug!(peer = %client.socket_addr(), user = ?client.metadata().get(METADATA_USER), "postgres connection admitted");
        finish_authentication(client, &self.parameters).await
    }
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if self.tls_only && !client.is_secure() {
                    return Err(error::fatal(
                        "28000",
                        "this server takes TLS connections only ([server.tls] is set): connect with sslmode=require",
                    ));
                }
                match self.auth.caller(None) {
                    Ok(open) => self.admit(client, open).await?,
                    Err(_) => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client.send(PgWireBackendMessage::Authentication(Authentication::CleartextPassword)).await?;
                    }
                }
            }
            PgWireFrontendMessage::PasswordMessageFamily(password) => {
                let password = password.into_password()?;
                let caller = self.auth.caller(Some(&password.password)).map_err(error::denied)?;
                self.admit(client, caller).await?;
            }
            _ => {}
        }
        Ok(())
    }
}
