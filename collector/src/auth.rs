//! Bearer tokens bound to a cluster and node.
//!
//! The config lists the SHA-256 of each node's token, so the collector holds
//! no secret. A request's token is hashed and compared with every entry in
//! constant time; a known token used for another node is refused (403).

use axum::http::HeaderValue;
use subtle::ConstantTimeEq;

use super::config::{NodeEntry, parse_sha256};

/// Why a request is not authenticated (answered 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Malformed,
    Unknown,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing Authorization header: send `Authorization: Bearer <token>`",
            AuthError::Malformed => "Authorization header is not `Bearer <token>`",
            AuthError::Unknown => "unknown token",
        }
    }
}

struct Entry {
    cluster: String,
    /// `None`: every node of the cluster.
    node: Option<String>,
    hash: [u8; 32],
}

pub struct Tokens {
    entries: Vec<Entry>,
}

/// The entries a presented token matched.
pub struct Grant<'a> {
    entries: Vec<&'a Entry>,
}

impl Tokens {
    /// From validated config entries.
    pub fn new(nodes: &[NodeEntry]) -> Result<Self, String> {
        let entries = nodes
            .iter()
            .map(|n| {
                Ok(Entry {
                    cluster: n.cluster.clone(),
                    node: (n.node != "*").then(|| n.node.clone()),
                    hash: parse_sha256(&n.token_sha256)?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { entries })
    }

    /// Who holds the token of this `Authorization` header value.
    pub fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Grant<'_>, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = bearer_token(header.as_bytes()).ok_or(AuthError::Malformed)?;
        let hash = ring::digest::digest(&ring::digest::SHA256, token);
        // Every entry is compared, matched or not, so the time taken says
        // nothing about which entry (or how much of a hash) matched.
        let entries: Vec<&Entry> = self.entries.iter().filter(|e| bool::from(e.hash.ct_eq(hash.as_ref()))).collect();
        if entries.is_empty() {
            return Err(AuthError::Unknown);
        }
        Ok(Grant { entries })
    }
}

impl Grant<'_> {
    /// Whether the token may upload as `cluster`/`node`.
    pub fn allows(&self, cluster: &str, node: &str) -> bool {
        self.entries.iter().any(|e| e.cluster == cluster && e.node.as_deref().is_none_or(|n| n == node))
    }
}

/// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750's
/// token characters).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = value.trim_ascii();
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.first()?.is_ascii_whitespace() {
        return None;
    }
    let token = rest.trim_ascii();
    let ok = !token.is_empty() && token.iter().all(|&b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b));
    ok.then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(token: &str) -> String {
        ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn tokens() -> Tokens {
        let entry = |c: &str, n: &str, t: &str| NodeEntry { cluster: c.into(), node: n.into(), token_sha256: sha(t) };
        Tokens::new(&[entry("c1", "n1", "token-n1"), entry("c1", "n2", "token-n2"), entry("c2", "*", "token-c2")])
            .unwrap()
    }

    fn auth(t: &Tokens, h: &str) -> Result<Vec<(String, String)>, AuthError> {
        let g = t.authenticate(Some(&HeaderValue::from_str(h).unwrap()))?;
        Ok(g.entries.iter().map(|e| (e.cluster.clone(), e.node.clone().unwrap_or("*".into()))).collect())
    }

    #[test]
    fn a_token_is_bound_to_its_node() {
        let t = tokens();
        let g = t.authenticate(Some(&HeaderValue::from_static("Bearer token-n1"))).ok().unwrap();
        assert!(g.allows("c1", "n1"));
        assert!(!g.allows("c1", "n2"));
        assert!(!g.allows("c2", "n1"));
        let g = t.authenticate(Some(&HeaderValue::from_static("bearer   token-c2 "))).ok().unwrap();
        assert!(g.allows("c2", "any-node") && !g.allows("c1", "n1"));
    }

    #[test]
    fn missing_malformed_and_unknown_tokens_are_told_apart() {
        let t = tokens();
        assert_eq!(t.authenticate(None).err(), Some(AuthError::Missing));
        assert_eq!(auth(&t, "Basic dXNlcjpwYXNz").err(), Some(AuthError::Malformed));
        assert_eq!(auth(&t, "Bearer").err(), Some(AuthError::Malformed));
        assert_eq!(auth(&t, "Bearertoken-n1").err(), Some(AuthError::Malformed));
        assert_eq!(auth(&t, "Bearer token n1").err(), Some(AuthError::Malformed));
        assert_eq!(auth(&t, "Bearer token-n3").err(), Some(AuthError::Unknown));
        assert_eq!(auth(&t, "Bearer token-n1").unwrap(), [("c1".to_string(), "n1".to_string())]);
    }
}
