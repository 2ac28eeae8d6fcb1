//! The viewer portal: people sign in with an account they already have, pass a second factor,
//! and get their streams as links that work in every player.
//!
//! It listens on its own address (`[portal] listen`), apart from `/auth`, and keeps everything
//! that must outlive a request in the store: web sessions (the cookie carries only an id; the
//! store only its digest), sealed TOTP secrets, recovery codes, pending sign-ins. So logging out,
//! "sign out everywhere" and an administrator's revoke take effect at once on every replica.
//!
//! - [`config`]: `[portal]`; [`people`]: who signs in and what they hold (the policy's answer);
//!   [`mfa`]: TOTP, sealing, recovery codes; [`links`]: stream credentials for a person;
//!   [`pages`]: the HTML; [`http`]: the routes (the only part that knows actix);
//!   [`oidc`]: "Sign in with …" through `[portal.oidc]` (code flow, PKCE);
//!   [`watch`]: ends links and sessions whose grant ended.
//!
//! This module holds the state the routes share and the session logic, without HTTP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use ipnet::IpNet;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::decision::AccountToken;
use crate::portal::config::{MfaMode, PortalConfig};
use crate::portal::mfa::Sealer;
use crate::portal::people::Person;
use crate::state::Service;
use crate::store::portal::WebSession;
use crate::store::{Store, StoreError};
use crate::time::now_unix;

pub mod config;
pub mod http;
pub mod links;
pub mod mfa;
pub mod oidc;
pub mod pages;
pub mod people;
pub mod watch;

/// The cookie of a web session (contract).
pub const SESSION_COOKIE: &str = "mtx_auth_session";
/// The cookie of a sign-in under way (OIDC, Plex): a handle to what the store keeps for it.
pub const PENDING_COOKIE: &str = "mtx_auth_pending";
/// How long a sign-in under way may take.
pub const PENDING_SECS: i64 = 600;
/// How long a half-signed-in session has for its second factor.
pub const MFA_PENDING_SECS: i64 = 600;

/// Why the portal cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("[portal] keeps its sessions in the store: add [store] (e.g. url = \"sqlite://mtx-auth.db\")")]
    NoStore,
    #[error("[portal] mfa key: {0}")]
    MfaKey(String),
    #[error("[portal] mfa = \"{0}\" needs mfa_key_env or mfa_key_file: {help}", help = mfa::KEY_HELP)]
    NoMfaKey(&'static str),
}

/// What every route of the portal shares.
pub struct Portal {
    pub config: Arc<PortalConfig>,
    pub service: Arc<Service>,
    pub store: Store,
    sealer: Option<Sealer>,
    /// `[portal.oidc]`'s provider, when configured.
    pub oidc: Option<Arc<oidc::Provider>>,
    /// `/forward-auth`'s credentials, per (web session digest, path, action): reused for
    /// [`FORWARD_REUSE_SECS`] rather than made for every segment a proxy asks about.
    forward: Mutex<HashMap<ForwardKey, (String, i64)>>,
    /// Per person signed in through an account source that gave a recheck handle: the
    /// source and the handle (`portal::watch` asks again). Memory only: it is a secret.
    pub rechecks: Mutex<HashMap<String, (String, AccountToken)>>,
}

/// A web session's digest, a path and an action.
type ForwardKey = (String, String, &'static str);

/// How long `/forward-auth` hands out the same credential (the contract's 60 seconds).
pub const FORWARD_REUSE_SECS: i64 = 60;

/// A web session as a route sees it.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub session: WebSession,
    pub person: Person,
    pub profile: Profile,
}

/// What a web session keeps of its person (the store's `profile`): the person as signed in,
/// and for a `[[users]]` person, the digests of the entries their password matched (what they
/// hold is read from those entries on every page).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub person: Person,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub digests: Vec<String>,
}

/// Whether a sign-in must pass a second factor first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactor {
    /// Signed in at once.
    None,
    /// A code is asked for (`/mfa`).
    Code,
    /// `mfa = "required"` and nothing enrolled yet: enrollment first (`/mfa/enroll`).
    Enroll,
}

impl Portal {
    pub fn new(config: Arc<PortalConfig>, service: Arc<Service>) -> Result<Portal, StartError> {
        let store = service.store.clone().ok_or(StartError::NoStore)?;
        let sealer = match (&config.mfa_key, config.mfa) {
            (Some(key), _) => Some(Sealer::from_base64(&key.0).map_err(StartError::MfaKey)?),
            (None, MfaMode::Off) => None,
            (None, MfaMode::Optional) => return Err(StartError::NoMfaKey("optional")),
            (None, MfaMode::Required) => return Err(StartError::NoMfaKey("required")),
        };
        let oidc = config
            .oidc
            .as_ref()
            .map(|o| oidc::Provider::new(o.clone(), &config.public_url));
        Ok(Portal {
            config,
            service,
            store,
            sealer,
            oidc,
            forward: Mutex::default(),
            rechecks: Mutex::default(),
        })
    }

    /// The sealer of MFA secrets; `None` when `mfa = "off"`.
    pub fn sealer(&self) -> Option<&Sealer> {
        self.sealer
            .as_ref()
            .filter(|_| self.config.mfa != MfaMode::Off)
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    /// address of `X-Forwarded-For` that is not a trusted proxy (the ones before it could have
    /// been written by the client).
    pub fn client_ip(&self, peer: Option<IpAddr>, forwarded_for: &[&str]) -> Option<IpAddr> {
        client_ip(&self.config.trusted_proxies, peer, forwarded_for)
    }

    /// Whether `person` is an administrator: named in `admin_users` (`source:name`; account
    /// sources' names compared without case, as those servers compare them), with a verified
    /// e-mail in `admin_emails`, or made one by the account source it signed in with
    /// (`person.admin` as `people` built it: LDAP's `admin_groups`). Called once per sign-in.
    pub fn is_admin(&self, person: &Person) -> bool {
        let named = self.config.admin_users.iter().any(|a| {
            // An identity provider may let people choose their names: there, only the
            // stable `sub` names an administrator (or a verified e-mail, below).
            let mine = match person.source.as_str() {
                "portal_oidc" => person.key(),
                _ => person.admin_name(),
            };
            match person.source.as_str() {
                "users" => *a == mine,
                _ => a.eq_ignore_ascii_case(&mine),
            }
        });
        let by_email = person.email.as_ref().is_some_and(|e| {
            let e = e.to_lowercase();
            self.config.admin_emails.contains(&e)
        });
        named || by_email || person.admin
    }

    /// What a sign-in of `person` must pass before it is complete.
    pub async fn second_factor(&self, person: &Person) -> Result<SecondFactor, StoreError> {
        if self.sealer().is_none() {
            return Ok(SecondFactor::None);
        }
        if self.store.mfa(&person.key()).await?.is_some() {
            return Ok(SecondFactor::Code);
        }
        Ok(match self.config.mfa {
            MfaMode::Required => SecondFactor::Enroll,
            _ => SecondFactor::None,
        })
    }

    /// Remembers how to ask about `person`'s account again, if their source said.
    pub fn remember_recheck(&self, person: &Person) {
        if let Some(handle) = &person.recheck {
            self.rechecks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(person.key(), (person.source.clone(), handle.clone()));
        }
    }

    /// Starts a web session for `person` (replacing `replaces`, the one the browser had) and
    /// returns the cookie's value. `complete` is false while a second factor is due.
    pub async fn begin_session(
        &self,
        profile: &Profile,
        complete: bool,
        replaces: Option<&str>,
        failures: i64,
    ) -> Result<Option<String>, StoreError> {
        let (cookie, digest) = new_session_id();
        let now = now_unix();
        let ttl = if complete {
            self.config.session_ttl.as_secs() as i64
        } else {
            MFA_PENDING_SECS
        };
        let session = WebSession {
            digest,
            person: profile.person.key(),
            profile: serde_json::to_string(profile)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            complete,
            failures,
            created_at: now,
            expires_at: now + ttl,
        };
        Ok(self
            .store
            .put_web_session(&session, replaces)
            .await?
            .then_some(cookie))
    }

    /// The web session a cookie names, with what its person holds now.
    pub async fn signed_in(&self, cookie: &str) -> Result<Option<SignedIn>, StoreError> {
        if cookie.is_empty() || cookie.len() > 100 {
            return Ok(None);
        }
        let Some(session) = self.store.web_session(&digest(cookie), now_unix()).await? else {
            return Ok(None);
        };
        let Ok(mut profile) = serde_json::from_str::<Profile>(&session.profile) else {
            tracing::warn!("portal: a web session's profile does not read back; it is ended");
            self.store.end_web_session(&session.digest).await?;
            return Ok(None);
        };
        if profile.person.source == "users" {
            let policy = self.service.live.load();
            profile.person.holds = people::user_holdings(
                &policy,
                &self.service.grant_key,
                &profile.person.id,
                &profile.digests,
            );
        }
        Ok(Some(SignedIn {
            person: profile.person.clone(),
            profile,
            session,
        }))
    }

    /// Ends a web session and revokes the credentials `/forward-auth` made for it.
    pub async fn end_session(&self, session: &WebSession) -> Result<(), StoreError> {
        self.store.end_web_session(&session.digest).await?;
        self.forward_forget(&session.digest);
        let now = now_unix();
        let ids: Vec<String> = self
            .store
            .links_in_force(Some(&session.person), now)
            .await?
            .iter()
            .filter(|c| {
                links::LinkGrant::of(c).and_then(|g| g.session).as_deref() == Some(&session.digest)
            })
            .map(|c| c.id.clone())
            .collect();
        if !ids.is_empty() {
            self.store.revoke_credentials(&ids, now).await?;
        }
        Ok(())
    }

    /// Ends every web session of a person and revokes every link they made: "sign out
    /// everywhere" and an administrator's revoke. Revoked links' sessions are kicked (through
    /// the store feed, `crate::sessions`).
    pub async fn end_person(&self, person: &str) -> Result<(usize, usize), StoreError> {
        let sessions = self.store.end_web_sessions_of(person).await?;
        for session in &sessions {
            self.forward_forget(session);
        }
        let now = now_unix();
        let ids: Vec<String> = self
            .store
            .links_in_force(Some(person), now)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        if !ids.is_empty() {
            self.store.revoke_credentials(&ids, now).await?;
        }
        Ok((sessions.len(), ids.len()))
    }

    /// `/forward-auth`'s credential for a session, path and action made less than
    /// [`FORWARD_REUSE_SECS`] ago, if any.
    pub fn forward_cached(
        &self,
        session: &str,
        path: &str,
        action: &'static str,
    ) -> Option<String> {
        let now = now_unix();
        let map = self.forward.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(session.to_owned(), path.to_owned(), action))
            .filter(|(_, at)| now - *at < FORWARD_REUSE_SECS)
            .map(|(token, _)| token.clone())
    }

    /// Forgets `/forward-auth`'s credentials past their reuse (`portal::watch`, every second):
    /// not on the request's path, which proxies call for every segment.
    pub fn forward_prune(&self, now: i64) {
        let mut map = self.forward.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (_, at)| now - *at < FORWARD_REUSE_SECS);
    }

    pub fn forward_remember(&self, session: &str, path: &str, action: &'static str, token: String) {
        let mut map = self.forward.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            (session.to_owned(), path.to_owned(), action),
            (token, now_unix()),
        );
    }

    pub fn forward_forget(&self, session: &str) {
        let mut map = self.forward.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|(s, _, _), _| s != session);
    }
}

/// A new session (or pending sign-in) id: 256 random bits for the cookie, and the digest the
/// store keeps.
pub fn new_session_id() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let cookie = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let digest = digest(&cookie);
    (cookie, digest)
}

/// How the store keys a cookie's id: SHA-256, hex. 256 random bits need no slow hash.
pub fn digest(cookie: &str) -> String {
    crate::credential::hex(&Sha256::digest(cookie.as_bytes()))
}

/// See [`Portal::client_ip`].
pub fn client_ip(
    trusted: &[IpNet],
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    let peer = peer.map(canonical)?;
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let hops: Vec<IpAddr> = forwarded_for
        .iter()
        .flat_map(|h| h.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok().map(canonical))
        .collect();
    Some(
        hops.iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .copied()
            // Every hop is a trusted proxy: the left-most is as close to the client as known.
            .or_else(|| hops.first().copied())
            .unwrap_or(peer),
    )
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Not from a proxy: the header is the client's own words.
        assert_eq!(
            client_ip(&trusted, ip("203.0.113.9"), &["1.2.3.4"]),
            ip("203.0.113.9")
        );
        // From the proxy: the right-most address that is not a proxy.
        assert_eq!(
            client_ip(
                &trusted,
                ip("10.0.0.2"),
                &["6.6.6.6, 198.51.100.7, 10.0.0.3"]
            ),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(&trusted, ip("10.0.0.2"), &[]), ip("10.0.0.2"));
        assert_eq!(
            client_ip(&trusted, ip("::ffff:10.0.0.2"), &["198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(client_ip(&[], ip("10.0.0.2"), &["1.2.3.4"]), ip("10.0.0.2"));
    }

    #[test]
    fn session_ids_are_long_and_stored_as_digests() {
        let (a, da) = new_session_id();
        let (b, _) = new_session_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(da, digest(&a));
        assert_eq!(da.len(), 64);
        assert!(!da.contains(&a));
    }
}
