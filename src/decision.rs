//! The vocabulary of a decision: what was decided, by which source, and why not.
//!
//! A leaf: it imports nothing of the crate, so every layer (the sources, the policy, the
//! limiter, metrics, logs, the HTTP adapter) can speak of decisions without depending on the
//! others. Deny reasons are texts MediaMTX writes to its log: none holds a secret, and none says
//! whether a user name exists.

use std::fmt;
use std::sync::Arc;

/// Which source decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A `[[users]]` entry.
    Users,
    /// A JWT verified against the `[jwt]` key set.
    Jwt,
    /// A stream credential mtx-auth issued (`mtx-auth token issue`).
    Credential,
    /// mtx-auth's own secret, on the calls it makes to MediaMTX's API (kicks).
    Internal,
    /// An account source, by the name it is registered under (`crate::source::ACCOUNT_KINDS`):
    /// its config section and metrics label.
    Account(&'static str),
    /// Nothing recognised the request.
    None,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Users => "users",
            Source::Jwt => "jwt",
            Source::Credential => "credential",
            Source::Internal => "internal",
            Source::Account(name) => name,
            Source::None => "none",
        }
    }
}

/// Why a request was denied. The text goes into MediaMTX's log, so it never holds a secret and
/// never says whether a user name exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No credentials, and no anonymous rule grants the request. MediaMTX then asks the client
    /// for credentials.
    NoCredentials,
    /// Credentials were given, but no user with them is granted this action, path and IP.
    NoMatch,
    UnknownAction,
    /// Too many argon2 verifications are already waiting.
    Busy,
    /// The request carried a JWT, and it was refused.
    Jwt(JwtError),
    /// The request carried one of our stream credentials (`mtxa_…`), and it was refused.
    Credential(CredentialDeny),
    /// An account source recognised the credentials but refused the request, or could not be
    /// asked.
    Account(Source, AccountDeny),
    /// Too many failed attempts from this client address (or for this user name) recently:
    /// denied without checking anything.
    RateLimited,
    /// Allowed, but the registry of live sessions is full: a session that could not be taken
    /// back is not let in.
    SessionsFull,
}

impl DenyReason {
    /// Whether this deny is a failed attempt: credentials that didn't check out (a wrong
    /// password or an unknown name, a forged or expired token). The brute-force limiter counts
    /// these. A deny for any other reason (no credentials, a valid token without permission for
    /// the path, an upstream outage, a full argon2 queue) is not the client's guess.
    pub fn is_failed_attempt(&self) -> bool {
        match self {
            DenyReason::NoMatch => true,
            DenyReason::Credential(e) => *e == CredentialDeny::Unknown,
            DenyReason::Jwt(e) => !matches!(e, JwtError::KeysUnavailable | JwtError::NotPermitted),
            _ => false,
        }
    }

    /// A short fixed name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            DenyReason::NoCredentials => "no_credentials",
            DenyReason::NoMatch => "no_match",
            DenyReason::UnknownAction => "unknown_action",
            DenyReason::Busy => "busy",
            DenyReason::Jwt(_) => "jwt",
            DenyReason::Credential(_) => "credential",
            DenyReason::Account(_, AccountDeny::Unreachable) => "unreachable",
            DenyReason::Account(_, AccountDeny::TooManyFailures) => "rate_limited",
            DenyReason::Account(_, _) => "account",
            DenyReason::RateLimited => "rate_limited",
            DenyReason::SessionsFull => "sessions_full",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NoCredentials => f.write_str("credentials required"),
            DenyReason::NoMatch => {
                f.write_str("no user matches these credentials for this action, path and ip")
            }
            DenyReason::UnknownAction => f.write_str("unknown action"),
            DenyReason::Busy => f.write_str("busy: too many password verifications waiting"),
            DenyReason::Jwt(e) => write!(f, "jwt: {e}"),
            DenyReason::Credential(e) => write!(f, "stream credential {e}"),
            DenyReason::Account(source, AccountDeny::Unreachable) => {
                write!(f, "{} unreachable", source.as_str())
            }
            DenyReason::Account(source, e) => write!(f, "{}: {e}", source.as_str()),
            DenyReason::RateLimited => f.write_str("too many failed attempts; try again later"),
            DenyReason::SessionsFull => {
                f.write_str("too many live sessions tracked; try again later")
            }
        }
    }
}

/// The outcome of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow {
        /// The identity recognised: the user name as the client sent it (empty for an
        /// anonymous client allowed by an `any` user).
        user: String,
        source: Source,
        /// The deciding `[[users]]` entry, when a TOML user decided.
        rule: Option<UserRule>,
        /// Answered from a verification cache, without argon2 or a signature check.
        cached: bool,
        /// What let the request in, as the registry of live sessions needs it to know when that
        /// access ends.
        grant: Grant,
    },
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow { .. })
    }

    pub fn source(&self) -> Source {
        match self {
            Decision::Allow { source, .. } => *source,
            Decision::Deny(_) => Source::None,
        }
    }
}

/// What let a request in, beyond the source: what ends the access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// A `[[users]]` entry (the decision's `rule`): a reload may remove or change it.
    User,
    /// A stream credential, by its public id: revoked, or at `ends_at` (its expiry, seconds
    /// since 1970), it ends.
    Credential { id: Arc<str>, ends_at: Option<i64> },
    /// A JWT: it ends at `ends_at`, the first second `/auth` denies it (`exp` plus the leeway).
    Jwt { ends_at: Option<i64> },
    /// An account source's answer: checked again when its cached answer runs out, with what
    /// the source gave for that (the client's token, a token the login returned, the account's
    /// id for an administrator key); never the password, which would count toward the media
    /// server's lockout. `None`: the source has nothing to ask again with.
    Account { recheck: Option<AccountToken> },
    /// mtx-auth's own API secret: nothing to take back.
    Internal,
}

/// What asks an account source about an account again (a token, or an account id for an
/// administrator key): a secret, held in memory only; its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccountToken(pub Arc<str>);

impl fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccountToken(…)")
    }
}

/// A `[[users]]` entry: its position in config order and its line in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserRule {
    pub index: u32,
    pub line: usize,
}

/// Why a token was refused. The text goes to MediaMTX's log and ours: never the token itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token larger than 16 KiB")]
    TooLarge,
    #[error("malformed token")]
    Malformed,
    #[error("token algorithm not allowed (asymmetric algorithms only)")]
    Algorithm,
    #[error("token signed with an unknown key id")]
    UnknownKey,
    #[error("token signature invalid")]
    Signature,
    #[error("token expired")]
    Expired,
    #[error("token not yet valid")]
    NotYetValid,
    #[error("token issued in the future")]
    IssuedInFuture,
    #[error("token header has crit: no extension is understood")]
    CriticalExtension,
    #[error("token has no exp")]
    NoExpiry,
    #[error("token issuer does not match")]
    Issuer,
    #[error("token audience does not match")]
    Audience,
    #[error("token has no identity claim")]
    NoIdentity,
    #[error("token permissions claim is malformed")]
    BadPermissions,
    #[error("token grants no permissions")]
    NoPermissions,
    #[error("token does not permit this action and path")]
    NotPermitted,
    #[error("jwt key set unavailable")]
    KeysUnavailable,
}

/// Why a stream credential was refused. Texts follow "stream credential ".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CredentialDeny {
    /// Not one mtx-auth issued (or the store holding them is not configured).
    #[error("unknown")]
    Unknown,
    #[error("revoked")]
    Revoked,
    #[error("expired")]
    Expired,
    #[error("does not permit this action and path")]
    NotPermitted,
    /// A portal link used from an address its maker's `ips` rule does not hold.
    #[error("not good from this address")]
    Address,
}

/// Why an account source denied a request it recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountDeny {
    #[error("account not permitted this action and path")]
    NotPermitted,
    #[error("account has no remote access and the client is not on a local network")]
    RemoteAccess,
    #[error("too many failed logins for this user; try again later")]
    TooManyFailures,
    #[error("unreachable")]
    Unreachable,
}
