//! What an account backend (Jellyfin, Emby, Plex, OIDC password login) and the shared account
//! machinery (`crate::source::account`) agree on: how a backend registers ([`AccountKind`]),
//! what it does ([`Backend`]), the credentials a request carries, what an upstream answers
//! about them, and the identifier we present upstream.
//!
//! Kept apart from `account` so that the backends depend on this contract alone, and `account`
//! drives any of them through the trait without naming one: one way.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::reader::Table;
use crate::decision::AccountToken;
use crate::permission::{Action, Permission};
use crate::request::Request;
use crate::source::account::settings::AccountSettings;
use crate::source::jwks::KeyStore;
use crate::source::jwt::looks_like_jwt;
use crate::source::upstream::UpstreamError;

/// A future a backend returns; boxed so that backends can be chosen at run time.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One kind of account source, as registered in `crate::source::ACCOUNT_KINDS`. Everything
/// else (its config section, the metrics label, `explain`, readiness) follows from this.
pub struct AccountKind {
    /// The config section (`[name]`), the `source` label of metrics and logs, and what
    /// `explain` calls it. Lower case, unique.
    pub name: &'static str,
    /// What an account may do when the section has no `permissions` key.
    pub default_actions: &'static [Action],
    /// Whether the section takes `permissions` and `admin_permissions`; a source whose
    /// upstream grants permissions itself (OIDC tokens) does not.
    pub config_permissions: bool,
    /// Whether the accounts the upstream calls administrators (`Identity::admin`) are the
    /// portal's administrators too: LDAP's `admin_groups` say so; a media server's
    /// administrators run the media server, which is not the same thing (`admin_users` names
    /// them).
    pub portal_admins: bool,
    /// Reads the section's own keys (the shared ones are in `settings`, which `read` may
    /// complete, e.g. with `local_networks`) and builds the backend. `None` after reporting
    /// problems on the table.
    pub read: fn(&mut Table<'_>, &mut AccountSettings) -> Option<Arc<dyn Backend>>,
}

/// What an account source's upstream does for us. Implemented once per upstream, in its own
/// file; `crate::source::account::AccountSource` adds the cache, coalescing, outages and limits.
pub trait Backend: Send + Sync {
    /// Whether these credentials are this backend's business at all.
    fn accepts(&self, creds: &Credentials) -> bool;

    /// Whether a login's user name names an upstream account, and so whether rejected logins
    /// are counted per name (media servers lock accounts after a few failures).
    fn names_accounts(&self) -> bool {
        true
    }

    /// The key a login's user name counts its failures under. Two spellings that the upstream
    /// takes for the same account must give the same key, or a guesser could spread guesses
    /// over spellings past `max_failures` (a directory ignores case and extra spaces, say).
    /// Lower case by default.
    fn failure_key(&self, user: &str) -> String {
        user.to_lowercase()
    }

    /// Asks the upstream who these credentials are.
    fn check<'a>(
        &'a self,
        creds: &'a OwnedCredentials,
    ) -> BoxFuture<'a, Result<Identity, CheckError>>;

    /// Asks the upstream something cheap and public, to learn that it answers at all (for
    /// `/readyz`). Not called for a backend with a `key_store`: its refresh tells.
    fn probe(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Where answers come from: equal for two backends that ask the same upstream, so a
    /// reload carries over what was learnt about it.
    fn upstream(&self) -> String;

    /// The key set the upstream's tokens are verified against, if any: it is refreshed in the
    /// background, tells readiness, is carried across reloads and shows in metrics.
    fn key_store(&self) -> Option<&Arc<KeyStore>> {
        None
    }

    /// A sign-in that happens on the upstream's own site (Plex's PIN flow), for the portal;
    /// `None` for sources that only take a name and password or a token.
    fn pin_flow(&self) -> Option<&dyn PinFlow> {
        None
    }

    /// Asks the upstream again about an account it vouched for, by the `recheck` handle its
    /// `Identity` carried (a token the login returned, or the account's id for an
    /// administrator key): never with the password. Only called with a handle this backend
    /// gave; a backend that gives none keeps this default.
    fn recheck<'a>(&'a self, _handle: &'a str) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(async {
            Err(CheckError::Unreachable(
                "this source cannot check an account again".into(),
            ))
        })
    }
}

/// A sign-in at the upstream's own site: a PIN is made here, the person approves it there, and
/// polling the PIN then yields a token that `Backend::check` takes like any other.
pub trait PinFlow: Send + Sync {
    /// Makes a new PIN: its upstream id and the URL to send the person to.
    fn start(&self) -> BoxFuture<'_, Result<NewPin, CheckError>>;
    /// The PIN's token once the person approved it; `None` while they have not.
    fn poll(&self, id: u64) -> BoxFuture<'_, Result<Option<String>, CheckError>>;
}

/// A PIN made by [`PinFlow::start`]. Its code is only in `auth_url`.
#[derive(Clone)]
pub struct NewPin {
    pub id: u64,
    pub auth_url: String,
}

impl fmt::Debug for NewPin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NewPin {{ id: {}, auth_url: <redacted> }}", self.id)
    }
}

/// The credentials an account source can check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'r> {
    /// A user name and a password.
    Login { user: &'r str, password: &'r str },
    /// An access token: the `token` field without a password, or a password without a user
    /// name (`rtsp://:TOKEN@host/…`).
    Token(&'r str),
}

impl<'r> Credentials<'r> {
    /// MediaMTX copies the password into `token`, so a password makes this a login; a token
    /// alone is a token. JWT-shaped tokens belong to the JWT source.
    pub fn of(req: &'r Request) -> Option<Self> {
        let (user, password, token) = (&*req.user, &*req.password, &*req.token);
        let creds = match (user.is_empty(), password.is_empty()) {
            (false, false) => Credentials::Login { user, password },
            (true, false) => Credentials::Token(password),
            (_, true) if !token.is_empty() => Credentials::Token(token),
            _ => return None,
        };
        match creds {
            Credentials::Token(t) if looks_like_jwt(t) => None,
            c => Some(c),
        }
    }

    pub fn to_owned(self) -> OwnedCredentials {
        match self {
            Credentials::Login { user, password } => OwnedCredentials::Login {
                user: user.to_owned(),
                password: password.to_owned(),
            },
            Credentials::Token(t) => OwnedCredentials::Token(t.to_owned()),
        }
    }
}

/// Credentials that can move into an upstream call.
#[derive(Clone, PartialEq, Eq)]
pub enum OwnedCredentials {
    Login { user: String, password: String },
    Token(String),
}

impl fmt::Debug for OwnedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OwnedCredentials::Login { user, .. } => {
                write!(f, "Login {{ user: {user:?}, password: <redacted> }}")
            }
            OwnedCredentials::Token(_) => f.write_str("Token(<redacted>)"),
        }
    }
}

/// What an upstream says about valid credentials.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The account's name as the upstream spells it; what we answer and log.
    pub name: String,
    /// The upstream's stable id for the account (Jellyfin's user id, Plex's account id, the
    /// identity claim), which a rename does not change: who the portal knows the person as.
    /// `None`: the name is all there is.
    pub id: Option<String>,
    /// Server administrator (Jellyfin/Emby) or server owner (Plex).
    pub admin: bool,
    /// False when the media server forbids this account remote access; honoured only with
    /// `local_networks` (the media server sees our address, not the viewer's).
    pub remote_access: bool,
    /// Permissions the upstream decided itself (OIDC tokens); `None` means the config's.
    pub permissions: Option<Vec<Permission>>,
    /// Permissions the account holds beyond the section's `permissions` by what the upstream
    /// says of it (the groups `[[ldap.groups]]` maps), added to them like `admin_permissions`;
    /// ignored when `permissions` is `Some`.
    pub extra_permissions: Vec<Permission>,
    /// When the upstream's grant ends (an OIDC token's `exp`), if before `cache_ttl`.
    pub valid_for: Option<Duration>,
    /// What lets `Backend::recheck` ask about this account again later without its password,
    /// for the sessions it opened (`crate::sessions`). `None`: it cannot be asked again.
    pub recheck: Option<AccountToken>,
}

/// Why an upstream did not vouch for credentials.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    /// Wrong credentials, a disabled account, or no access to the server: a real "no".
    #[error("rejected: {0}")]
    Rejected(&'static str),
    /// The upstream could not answer (down, slow, 5xx, garbage): never read as a "no".
    #[error("unreachable: {0}")]
    Unreachable(String),
}

impl From<UpstreamError> for CheckError {
    fn from(e: UpstreamError) -> Self {
        CheckError::Unreachable(e.to_string())
    }
}

/// The stable identifier we present to an upstream for one account (Jellyfin's `DeviceId`,
/// Plex's client identifier): ours alone, the same across restarts, and not the name itself.
pub fn device_id(scope: &str, user: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"mtx-auth upstream device id\0")
        .chain_update(scope.as_bytes())
        .chain_update([0])
        .chain_update(user.to_lowercase().as_bytes())
        .finalize();
    format!("mtx-auth-{}", crate::credential::hex(&digest[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Action;

    #[test]
    fn credentials_from_mediamtx_fields() {
        let mut req = Request::new(Action::Read, "cam", "10.0.0.1", "alice", "pw");
        req.token = "pw".into();
        assert_eq!(
            Credentials::of(&req),
            Some(Credentials::Login {
                user: "alice",
                password: "pw"
            })
        );
        let req = Request::new(Action::Read, "cam", "10.0.0.1", "", "tok");
        assert_eq!(Credentials::of(&req), Some(Credentials::Token("tok")));
        let mut req = Request::new(Action::Read, "cam", "10.0.0.1", "", "");
        req.token = "tok".into();
        assert_eq!(Credentials::of(&req), Some(Credentials::Token("tok")));
        req.token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln".into();
        assert_eq!(Credentials::of(&req), None);
        let req = Request::new(Action::Read, "cam", "10.0.0.1", "alice", "");
        assert_eq!(Credentials::of(&req), None);
    }

    #[test]
    fn device_id_is_stable_per_user_and_hides_the_name() {
        let a = device_id("http://jf:8096", "Alice");
        assert_eq!(a, device_id("http://jf:8096", "alice"));
        assert_ne!(a, device_id("http://jf:8096", "bob"));
        assert_ne!(a, device_id("http://other:8096", "alice"));
        assert!(!a.contains("alice"));
        assert_eq!(a.len(), "mtx-auth-".len() + 32);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credentials::Login {
            user: "alice",
            password: "hunter2",
        }
        .to_owned();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", OwnedCredentials::Token("tok123".into())).contains("tok123"));
    }
}
