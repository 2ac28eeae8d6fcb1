//! Taking access back: the registry of live MediaMTX sessions mtx-auth let in, and the kicks
//! that end them when what let them in ends.
//!
//! MediaMTX decides only when a session starts (`shared/MEDIAMTX.md`). So every allowed request
//! that carries an `id` is remembered here with what granted it ([`Held`]); [`watch`] looks at
//! the registry when something may have ended (a credential revoked or expired, a JWT's `exp`, a
//! reload that changes a `[[users]]` entry) and kicks through MediaMTX's control API ([`api`]).
//! The registry is memory (`/auth` never waits for anything but a map insert), bounded by
//! `[mediamtx] max_sessions`; the store keeps a copy, written behind, so a restarted server can
//! still kick what it let in before.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cache::SecretHasher;
use crate::decision::{AccountToken, Decision, Grant};
use crate::permission::Action;
use crate::policy::Policy;
use crate::request::Request;

pub mod api;
pub mod watch;

pub use crate::config::MediamtxConfig;

/// One live session, as remembered. Never a password or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// MediaMTX's id: what the kick names. Shared with the registry's key.
    pub id: Arc<str>,
    /// The control API that serves it, shared by every session it serves.
    pub api: Arc<str>,
    pub protocol: Box<str>,
    pub action: Action,
    pub path: Box<str>,
    pub ip: Option<IpAddr>,
    /// Who it was let in as (the allow reply's `user`).
    pub identity: Box<str>,
    pub held: Held,
    /// Seconds since 1970.
    pub created_at: i64,
}

/// What granted a session: enough to tell when that ends, nothing to log in with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Held {
    /// A `[[users]]` entry, known by a keyed digest of its name and pass (the store's key, so a
    /// restarted server recognises it): a reload keeps the session only while an entry with
    /// the same credentials still grants it.
    User {
        digest: String,
    },
    Credential {
        id: String,
        ends_at: Option<i64>,
    },
    Jwt {
        ends_at: Option<i64>,
    },
    /// An account source's answer. With a `recheck` handle, the account is asked again when
    /// its cached answer runs out; the handle is a secret and stays in memory (a restarted
    /// server forgets it, and with it that check).
    Account {
        source: String,
        #[serde(skip)]
        recheck: Option<AccountToken>,
    },
}

impl Held {
    /// The instant it ends by itself, if it does.
    pub fn ends_at(&self) -> Option<i64> {
        match self {
            Held::Credential { ends_at, .. } | Held::Jwt { ends_at } => *ends_at,
            Held::User { .. } | Held::Account { .. } => None,
        }
    }
}

/// Why a session is kicked: the metric's `reason` label and the log line's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    CredentialRevoked,
    CredentialExpired,
    JwtExpired,
    UserChanged,
    AccountEnded,
}

impl Ending {
    pub fn as_str(self) -> &'static str {
        match self {
            Ending::CredentialRevoked => "credential_revoked",
            Ending::CredentialExpired => "credential_expired",
            Ending::JwtExpired => "jwt_expired",
            Ending::UserChanged => "user_changed",
            Ending::AccountEnded => "account_ended",
        }
    }
}

/// The control API's kinds that may hold a session of `protocol`, plain first, then its TLS
/// twin (tried when the plain one answers 404). Empty: nothing of this protocol can be kicked.
pub fn kinds_of(protocol: &str) -> &'static [&'static str] {
    match protocol {
        "rtsp" => &["rtspsessions", "rtspssessions"],
        "rtmp" => &["rtmpconns", "rtmpsconns"],
        "srt" => &["srtconns"],
        "webrtc" => &["webrtcsessions"],
        "hls" => &["hlssessions"],
        "moq" => &["moqsessions"],
        _ => &[],
    }
}

/// Every kind the control API lists, for pruning.
pub const ALL_KINDS: [&str; 8] = [
    "rtspsessions",
    "rtspssessions",
    "rtmpconns",
    "rtmpsconns",
    "srtconns",
    "webrtcsessions",
    "hlssessions",
    "moqsessions",
];

/// Whether `id` can be a MediaMTX session or connection id (a UUID; anything of letters,
/// digits, `-` and `_` up to 64 characters is taken): one that can travel as a URL path segment
/// of a kick as it is. Anything else names nothing MediaMTX could kick, and is not tracked.
pub fn is_session_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The registry is full: the session would go untracked, so it is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many live sessions tracked; try again later")]
pub struct Full;

/// What changed in the registry, for the store's copy.
#[derive(Debug)]
pub enum Change {
    Added(Arc<Session>),
    Removed(Arc<str>),
}

/// The live sessions, by id. Lock-free for `/auth`: a concurrent map and a counter that
/// reserves a place before an insert, so the bound holds under concurrency.
pub struct Registry {
    sessions: papaya::HashMap<Arc<str>, Arc<Session>>,
    count: AtomicUsize,
    capacity: usize,
    /// Digests of `[[users]]` entries (see [`Held::User`]).
    hasher: SecretHasher,
    changes: tokio::sync::mpsc::UnboundedSender<Change>,
    /// `/metrics`' count of tracked sessions.
    tracked: prometheus_client::metrics::gauge::Gauge,
}

impl Registry {
    /// An empty registry; what changes in it is sent to `changes` (the store's writer), and
    /// how many sessions it holds to `tracked`.
    pub fn new(
        capacity: usize,
        hasher: SecretHasher,
        changes: tokio::sync::mpsc::UnboundedSender<Change>,
        tracked: prometheus_client::metrics::gauge::Gauge,
    ) -> Self {
        Registry {
            sessions: papaya::HashMap::new(),
            count: AtomicUsize::new(0),
            capacity,
            hasher,
            changes,
            tracked,
        }
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Remembers the session an allowed request opens, if it has an id and a kickable
    /// protocol. `Err(Full)` when the registry is at its bound: the caller denies.
    pub fn admit(
        &self,
        policy: &Policy,
        req: &Request,
        decision: &Decision,
        api: &Arc<str>,
        now: i64,
    ) -> Result<(), Full> {
        let Decision::Allow {
            user,
            source,
            rule,
            grant,
            ..
        } = decision
        else {
            return Ok(());
        };
        let (Some(action), true) = (req.action, is_session_id(&req.id)) else {
            return Ok(());
        };
        if kinds_of(&req.protocol).is_empty() {
            return Ok(());
        }
        let held = match (grant, rule) {
            (Grant::User, Some(rule)) => Held::User {
                digest: self.user_digest(policy, rule.index),
            },
            // An allow by `[[users]]` always names its entry; mtx-auth's own calls are not
            // sessions.
            (Grant::User, None) | (Grant::Internal, _) => return Ok(()),
            (Grant::Credential { id, ends_at }, _) => Held::Credential {
                id: id.to_string(),
                ends_at: *ends_at,
            },
            (Grant::Jwt { ends_at }, _) => Held::Jwt { ends_at: *ends_at },
            (Grant::Account { recheck }, _) => Held::Account {
                source: source.as_str().to_owned(),
                recheck: recheck.clone(),
            },
        };
        self.insert(Session {
            id: req.id.as_ref().into(),
            api: Arc::clone(api),
            protocol: req.protocol.as_ref().into(),
            action,
            path: req.path.as_ref().into(),
            ip: req.ip,
            identity: user.as_str().into(),
            held,
            created_at: now,
        })
    }

    /// Puts a session in (replacing one with the same id, which takes no new place), within
    /// the bound.
    pub fn insert(&self, session: Session) -> Result<(), Full> {
        let session = Arc::new(session);
        let sessions = self.sessions.pin();
        if sessions.contains_key(&session.id) {
            // Removed in between (a kick of the same id): then it takes a place after all.
            if sessions
                .insert(session.id.clone(), Arc::clone(&session))
                .is_none()
            {
                self.count.fetch_add(1, Ordering::AcqRel);
                self.tracked.inc();
            }
        } else {
            self.count
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.capacity).then_some(n + 1)
                })
                .map_err(|_| Full)?;
            // Two requests of the same new session at once: both reserved, one gives back.
            if sessions
                .insert(session.id.clone(), Arc::clone(&session))
                .is_some()
            {
                self.count.fetch_sub(1, Ordering::AcqRel);
            } else {
                self.tracked.inc();
            }
        }
        let _ = self.changes.send(Change::Added(session));
        Ok(())
    }

    /// Takes a session out; true if it was there.
    pub fn remove(&self, id: &str) -> bool {
        let removed = self.sessions.pin().remove(id).map(|s| Arc::clone(&s.id));
        if let Some(id) = &removed {
            self.count.fetch_sub(1, Ordering::AcqRel);
            self.tracked.dec();
            let _ = self.changes.send(Change::Removed(Arc::clone(id)));
        }
        removed.is_some()
    }

    /// The sessions for which `pred` holds.
    pub fn select(&self, mut pred: impl FnMut(&Session) -> bool) -> Vec<Arc<Session>> {
        self.sessions
            .pin()
            .values()
            .filter(|s| pred(s))
            .cloned()
            .collect()
    }

    /// The digest a `[[users]]` entry's credentials leave in [`Held::User`].
    pub fn user_digest(&self, policy: &Policy, index: u32) -> String {
        user_digest(&self.hasher, policy, index)
    }
}

/// A keyed digest of a `[[users]]` entry's name and pass: what the registry and the portal
/// record of the entry that granted something, to tell after a reload whether an entry with
/// the same credentials is still there. The key (`registry_key` in the store) keeps a plain
/// password from being guessed from the digest, and keeps digests equal across restarts.
pub fn user_digest(hasher: &SecretHasher, policy: &Policy, index: u32) -> String {
    let user = policy.users().get(index);
    let digest = hasher.hash(
        1,
        &[
            &user.name().map(|n| n.material()).unwrap_or_default(),
            &user.pass().map(|p| p.material()).unwrap_or_default(),
        ],
    );
    format!("{digest:032x}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn registry(capacity: usize) -> Registry {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Registry::new(capacity, SecretHasher::random(), tx, Default::default())
    }

    fn session(id: &str) -> Session {
        Session {
            id: id.into(),
            api: "http://127.0.0.1:9997".into(),
            protocol: "rtsp".into(),
            action: Action::Read,
            path: "cam".into(),
            ip: None,
            identity: "v".into(),
            held: Held::Jwt { ends_at: Some(5) },
            created_at: 0,
        }
    }

    #[test]
    fn the_bound_holds_under_concurrency() {
        let r = Arc::new(registry(100));
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let r = Arc::clone(&r);
                    s.spawn(move || {
                        (0..50)
                            .filter(|i| r.insert(session(&format!("{t}-{i}"))).is_ok())
                            .count()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 100);
        assert_eq!(r.len(), 100);
        assert_eq!(r.select(|_| true).len(), 100);
        // The same id again replaces, and does not count twice; a removal frees a place.
        let held = r.select(|_| true)[0].id.to_string();
        assert!(r.insert(session(&held)).is_ok());
        assert_eq!(r.len(), 100);
        assert!(r.remove(&held));
        assert!(!r.remove(&held));
        assert!(r.insert(session("x")).is_ok());
        assert_eq!(r.insert(session("y")), Err(Full));
    }

    #[test]
    fn only_kickable_sessions_are_remembered() {
        let config = Config::parse(
            "[[users]]\nuser = \"v\"\npass = \"p\"\npermissions = [{ action = \"read\" }, { action = \"api\" }]\n",
            "t.toml",
        )
        .unwrap();
        let policy = Policy::new(config);
        let r = registry(10);
        let mut req = Request::new(Action::Read, "cam", "10.0.0.1", "v", "p");
        req.protocol = "rtsp".into();
        let decision = policy.decide(&req);
        let api: Arc<str> = "api".into();
        r.admit(&policy, &req, &decision, &api, 0).unwrap();
        assert!(r.is_empty(), "no id: nothing to kick");
        req.id = "3f1c".into();
        r.admit(&policy, &req, &decision, &api, 0).unwrap();
        let s = r.select(|_| true);
        assert_eq!(s.len(), 1);
        assert!(matches!(&s[0].held, Held::User { digest } if digest.len() == 32));
        let mut call = Request::new(Action::Api, "", "10.0.0.1", "v", "p");
        call.id = "x".into();
        r.admit(&policy, &call, &policy.decide(&call), &api, 0)
            .unwrap();
        assert_eq!(r.len(), 1, "api calls are not sessions");
    }
}
