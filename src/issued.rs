//! Stream credentials that mtx-auth issues itself (`mtx-auth token issue`), as decisions read
//! them: a table in memory, keyed by the credential's SHA-256, that the store feeds
//! (`crate::store::feed`) and `/auth` reads without waiting for anything.
//!
//! A credential is `mtxa_` and 32 characters of base64url: 192 random bits in 37 characters, well
//! under what an RTSP URL, an RTMP query or an SRT streamid's pass field can carry. Only its
//! digest is stored. An unsalted SHA-256 is enough for a secret with 192 bits of entropy (nothing
//! to brute-force), and it is what lets a decision find the credential in one lookup: the lookup
//! is keyed by the digest, so how long it takes says nothing about how close a guess was.
//!
//! Anything that looks like a credential is decided here alone and first: an unknown, revoked or
//! expired one is denied outright and never travels on to another source as a password.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use base64::Engine;
use ipnet::IpNet;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::decision::{CredentialDeny, Decision, DenyReason, Grant, Source};
use crate::permission::{any_matches, Permission};
use crate::request::Request;

/// What every credential starts with.
pub const PREFIX: &str = "mtxa_";

/// Random bytes in a new credential: 192 bits.
const RANDOM_BYTES: usize = 24;

/// The longest credential accepted (the contract's bound): anything longer is not ours.
pub const MAX_LEN: usize = 100;

/// The SHA-256 of a credential: how it is stored and looked up.
pub type CredentialDigest = [u8; 32];

/// A credential just made: shown once, then only its digest is kept.
pub struct NewCredential {
    pub token: String,
    pub digest: CredentialDigest,
}

impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewCredential(…)")
    }
}

/// A new credential's public id: 64 random bits, hex (`token list`, `token revoke`, the portal).
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    crate::credential::hex(&bytes)
}

/// Makes a new credential from the operating system's random source.
pub fn generate() -> NewCredential {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    NewCredential {
        digest: digest(&token),
        token,
    }
}

pub fn digest(token: &str) -> CredentialDigest {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether a value a client sent is meant as one of our credentials (and so is decided here).
pub fn looks_issued(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// The credential a request carries, wherever the client put it: the password (any user name
/// goes with it), the token, or `token=`/`jwt=` in the query (MediaMTX's HLS and WebRTC pages
/// forward the page's query there).
pub fn presented<'r>(req: &'r Request<'_>) -> Option<Cow<'r, str>> {
    if looks_issued(&req.password) {
        return Some(Cow::Borrowed(&req.password));
    }
    if looks_issued(&req.token) {
        return Some(Cow::Borrowed(&req.token));
    }
    req.query_token().filter(|t| looks_issued(t))
}

/// One credential, as decisions need it.
#[derive(Debug)]
pub struct Issued {
    /// The public id (`token list`, `token revoke`, the registry of sessions).
    pub id: Arc<str>,
    /// The holder's name: the allow reply's `user`.
    pub name: String,
    pub permissions: Vec<Permission>,
    /// Seconds since 1970.
    pub expires_at: Option<i64>,
    pub revoked: bool,
    /// The client addresses it is good from: a portal link keeps the `ips` rule of the
    /// `[[users]]` entry that granted it. Empty: any address.
    pub ips: Vec<IpNet>,
}

impl Issued {
    /// Whether it no longer grants anything at `now`.
    pub fn ended(&self, now: i64) -> bool {
        self.revoked || self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Every credential the store holds, revoked ones included (so that a revoked one is denied as
/// such), swapped whole on each change: a decision reads it without a lock.
#[derive(Default)]
pub struct IssuedCredentials {
    table: ArcSwap<HashMap<CredentialDigest, Arc<Issued>>>,
}

impl IssuedCredentials {
    /// Applies changed credentials (new ones, revocations). Copies the table once per batch:
    /// changes are rare, and readers never wait.
    pub fn apply(&self, changed: impl IntoIterator<Item = (CredentialDigest, Arc<Issued>)>) {
        let mut changed = changed.into_iter().peekable();
        if changed.peek().is_none() {
            return;
        }
        let mut table = HashMap::clone(&self.table.load());
        table.extend(changed);
        self.table.store(Arc::new(table));
    }

    pub fn len(&self) -> usize {
        self.table.load().len()
    }

    /// Every revoked credential: what sessions taken over from elsewhere (another replica, a
    /// previous run) are checked against.
    pub fn revoked(&self) -> Vec<Arc<Issued>> {
        self.table
            .load()
            .values()
            .filter(|c| c.revoked)
            .cloned()
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decides a request that carries a credential; `None` when it carries none (the other
    /// sources decide).
    pub fn decide(&self, req: &Request) -> Option<Decision> {
        let presented = presented(req)?;
        Some(self.decide_at(req, &presented, crate::time::now_unix()))
    }

    /// Decides `presented` for `req` at `now` (seconds since 1970).
    pub fn decide_at(&self, req: &Request, presented: &str, now: i64) -> Decision {
        let deny = |why| Decision::Deny(DenyReason::Credential(why));
        if presented.len() > MAX_LEN {
            return deny(CredentialDeny::Unknown);
        }
        let table = self.table.load();
        let Some(issued) = table.get(&digest(presented)) else {
            return deny(CredentialDeny::Unknown);
        };
        if issued.revoked {
            return deny(CredentialDeny::Revoked);
        }
        if issued.ended(now) {
            return deny(CredentialDeny::Expired);
        }
        if !issued.ips.is_empty()
            && !req
                .ip
                .is_some_and(|ip| issued.ips.iter().any(|n| n.contains(&ip)))
        {
            return deny(CredentialDeny::Address);
        }
        match req.action {
            Some(action) if any_matches(&issued.permissions, action, &req.path) => {
                Decision::Allow {
                    user: issued.name.clone(),
                    source: Source::Credential,
                    rule: None,
                    cached: false,
                    grant: Grant::Credential {
                        id: Arc::clone(&issued.id),
                        ends_at: issued.expires_at,
                    },
                }
            }
            _ => deny(CredentialDeny::NotPermitted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::{Action, PathMatcher};

    fn issued(id: &str, path: &str, expires_at: Option<i64>, revoked: bool) -> Issued {
        Issued {
            id: id.into(),
            name: format!("holder-{id}"),
            permissions: vec![Permission {
                action: Action::Read,
                path: PathMatcher::parse(path).unwrap(),
            }],
            expires_at,
            revoked,
            ips: Vec::new(),
        }
    }

    #[test]
    fn generated_credentials_fit_every_protocol() {
        let a = generate();
        let b = generate();
        assert_ne!(a.token, b.token);
        assert!(a.token.starts_with(PREFIX));
        assert_eq!(a.token.len(), 37);
        assert!(a.token[PREFIX.len()..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(a.digest, digest(&a.token));
        assert!(!format!("{a:?}").contains(&a.token));
    }

    #[test]
    fn decided_alone_wherever_it_rides() {
        let table = IssuedCredentials::default();
        let good = generate();
        let revoked = generate();
        let expiring = generate();
        table.apply([
            (good.digest, Arc::new(issued("a", "~^cam", None, false))),
            (revoked.digest, Arc::new(issued("b", "", None, true))),
            (
                expiring.digest,
                Arc::new(issued("c", "", Some(1000), false)),
            ),
        ]);
        let in_password = Request::new(Action::Read, "cam1", "10.0.0.1", "anyone", &good.token);
        let at = |req: &Request, now| presented(req).map(|p| table.decide_at(req, &p, now));
        let allow = at(&in_password, 0).unwrap();
        assert!(
            matches!(&allow, Decision::Allow { user, source: Source::Credential, .. } if user == "holder-a")
        );

        let mut in_query = Request::new(Action::Read, "cam1", "10.0.0.1", "", "");
        let query = format!("a=1&token={}", good.token);
        in_query.query = query.as_str().into();
        assert!(at(&in_query, 0).unwrap().is_allow());

        let deny = |token: &str, path: &str, now| match at(
            &Request::new(Action::Read, path, "10.0.0.1", "", token),
            now,
        ) {
            Some(Decision::Deny(DenyReason::Credential(why))) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(deny(&good.token, "other", 0), CredentialDeny::NotPermitted);
        assert_eq!(deny(&revoked.token, "cam", 0), CredentialDeny::Revoked);
        assert_eq!(
            deny(&expiring.token, "cam", 999 + 1),
            CredentialDeny::Expired
        );
        let before_expiry = Request::new(Action::Read, "cam", "10.0.0.1", "", &expiring.token);
        assert!(at(&before_expiry, 999).unwrap().is_allow());
        let mut near_miss = good.token.clone();
        near_miss.pop();
        assert_eq!(deny(&near_miss, "cam1", 0), CredentialDeny::Unknown);
        assert_eq!(
            deny(&"mtxa_x".repeat(40), "cam1", 0),
            CredentialDeny::Unknown
        );
        // Not ours: the other sources decide.
        assert!(table
            .decide(&Request::new(
                Action::Read,
                "cam",
                "10.0.0.1",
                "u",
                "password"
            ))
            .is_none());
    }
}
