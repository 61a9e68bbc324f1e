//! Who is calling, and what they may do: bearer tokens with scopes per
//! namespace, the same rules on every listener (HTTP ingest and SQL, the
//! REST catalog, the Postgres protocol, whose password is the token).
//!
//! Without `[[tokens]]` the server is open (and the config keeps it on
//! loopback). With tokens, a request without one, or with one no entry
//! hashes to, is refused as unauthenticated (401); a token without the
//! scope is refused as forbidden (403), naming the namespace and the scope
//! it lacks. Only SHA-256 hashes are kept, and every presented token is
//! compared with every hash in full, whatever matches.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};
use tributary_core::config::{Access, TokenDef};

use crate::api::AppState;

/// The configured tokens.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Vec<TokenDef>,
}

/// A caller: the token they presented, or anyone when the server is open.
#[derive(Debug, Clone)]
pub struct Caller {
    token: Option<TokenDef>,
}

/// Why a call is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, or an unknown one (HTTP 401; SQLSTATE 28P01).
    #[error("{0}")]
    Unauthenticated(String),
    /// A known token without the scope (HTTP 403; SQLSTATE 42501).
    #[error("{0}")]
    Forbidden(String),
}

impl Auth {
    /// Checks calls against `tokens`; none: every call is allowed.
    pub fn new(tokens: Vec<TokenDef>) -> Self {
        Self { tokens }
    }

    /// The caller presenting `token`.
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, Denied> {
        if self.tokens.is_empty() {
            return Ok(Caller { token: None });
        }
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Denied::Unauthenticated(
                "this server needs an access token: send `Authorization: Bearer <token>` (the Postgres password)"
                    .to_owned(),
            ));
        };
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for t in &self.tokens {
            let differs = t.sha256.iter().zip(&hash).fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if differs == 0 {
                found = Some(t.clone());
            }
        }
        found.map(|t| Caller { token: Some(t) }).ok_or_else(|| {
            Denied::Unauthenticated(
                "the access token is not one this server knows; check it, or ask for one".to_owned(),
            )
        })
    }
}

impl Caller {
    /// Whether the caller may `need` on `namespace`.
    pub fn can(&self, namespace: &str, need: Access) -> bool {
        self.token.as_ref().is_none_or(|t| t.access(namespace).is_some_and(|a| a >= need))
    }

    /// [`Caller::can`], or why not.
    pub fn require(&self, namespace: &str, need: Access) -> Result<(), Denied> {
        if self.can(namespace, need) {
            return Ok(());
        }
        let name = self.token.as_ref().map_or("", |t| t.name.as_str());
        Err(Denied::Forbidden(format!(
            "token '{name}' may not {} namespace '{namespace}': it needs the '{}' scope there",
            match need {
                Access::Read => "read",
                Access::Write => "write to",
                Access::Admin => "administer",
            },
            need.name()
        )))
    }

    /// Every namespace of `namespaces` readable, or the first that is not.
    pub fn require_all(&self, namespaces: &[String], need: Access) -> Result<(), Denied> {
        namespaces.iter().try_for_each(|ns| self.require(ns, need))
    }
}

/// The caller of an HTTP request, from its `Authorization: Bearer` header.
impl FromRequestParts<AppState> for Caller {
    type Rejection = Denied;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
        let token = header.and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")));
        state.auth.caller(token.map(str::trim))
    }
}
