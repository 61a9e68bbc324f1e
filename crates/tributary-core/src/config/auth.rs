//! `[[tokens]]` and the listener's exposure rules: who may read, write and
//! administer which namespace, as written and as validated.
//!
//! Tokens are stored as SHA-256 hashes (`tributary token hash` prints one),
//! never in plain text, so a leaked config file grants nothing. Without any
//! token the server is open, and therefore refuses to listen anywhere but
//! the loopback interface unless `allow_unauthenticated` says the operator
//! means it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::table_name::is_identifier;

/// `[[tokens]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (logs and errors name it; never the token).
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// Namespace (or `"*"`, every namespace) → `read`, `write` or `admin`.
    pub scopes: BTreeMap<String, String>,
}

/// What a scope allows; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    /// Query tables; load them through the REST catalog.
    Read,
    /// Also ingest, and commit through the REST catalog.
    Write,
    /// Also create and drop tables and namespaces.
    Admin,
}

impl Access {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!("'{other}' is not a scope; use \"read\", \"write\" or \"admin\"")),
        }
    }

    /// The scope's name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// A validated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenDef {
    /// Who holds it.
    pub name: String,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// Namespace (`*`: every one) → access.
    pub scopes: BTreeMap<String, Access>,
}

impl TokenDef {
    /// The access this token has to `namespace`.
    pub fn access(&self, namespace: &str) -> Option<Access> {
        let own = self.scopes.get(namespace).copied();
        let all = self.scopes.get("*").copied();
        own.max(all)
    }
}

pub(super) fn validate_tokens(tokens: &[TokenConfig]) -> Result<Vec<TokenDef>, String> {
    let mut out: Vec<TokenDef> = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let at = |e: String| format!("tokens[{i}] ({}): {e}", t.name);
        let sha256 = parse_hash(&t.sha256).ok_or_else(|| {
            at("sha256 must be the 64 hex digits `tributary token hash <TOKEN>` prints, not the token".to_owned())
        })?;
        if out.iter().any(|o| o.sha256 == sha256) {
            return Err(at("the same token as another entry".to_owned()));
        }
        if t.scopes.is_empty() {
            return Err(at("scopes is empty; e.g. scopes = { raw = \"write\", curated = \"read\" }".to_owned()));
        }
        let mut scopes = BTreeMap::new();
        for (ns, access) in &t.scopes {
            if ns != "*" && !is_identifier(ns) {
                return Err(at(format!("scopes.{ns}: a namespace is a lowercase identifier, or \"*\" for all")));
            }
            scopes.insert(ns.clone(), Access::parse(access).map_err(|e| at(format!("scopes.{ns}: {e}")))?);
        }
        out.push(TokenDef { name: t.name.clone(), sha256, scopes });
    }
    Ok(out)
}

fn parse_hash(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Whether `listen` (`host:port`) is on the loopback interface only.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(scopes: &[(&str, &str)]) -> TokenConfig {
        TokenConfig {
            name: "t".to_owned(),
            sha256: "ab".repeat(32),
            scopes: scopes.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    #[test]
    fn scopes_include_lower_ones_and_star_covers_every_namespace() {
        let t = &validate_tokens(&[token(&[("raw", "write"), ("*", "read")])]).unwrap()[0];
        assert_eq!(t.access("raw"), Some(Access::Write));
        assert_eq!(t.access("curated"), Some(Access::Read));
        assert!(Access::Admin > Access::Write && Access::Write > Access::Read);
        let only = &validate_tokens(&[token(&[("raw", "read")])]).unwrap()[0];
        assert_eq!(only.access("curated"), None);
    }

    #[test]
    fn a_plain_token_or_a_bad_scope_is_refused_with_the_fix() {
        let mut plain = token(&[("raw", "read")]);
        plain.sha256 = "my-secret-token".to_owned();
        assert!(validate_tokens(&[plain]).unwrap_err().contains("tributary token hash"));
        let err = validate_tokens(&[token(&[("raw", "owner")])]).unwrap_err();
        assert!(err.contains("scopes.raw") && err.contains("\"admin\""), "{err}");
        let err = validate_tokens(&[token(&[("Raw-Data", "read")])]).unwrap_err();
        assert!(err.contains("scopes.Raw-Data"), "{err}");
    }

    #[test]
    fn loopback_addresses_are_told_apart() {
        for ok in ["127.0.0.1:8080", "localhost:1", "[::1]:5433", "127.1.2.3:9"] {
            assert!(is_loopback(ok), "{ok}");
        }
        for open in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:80", "example.com:80"] {
            assert!(!is_loopback(open), "{open}");
        }
    }
}
