//! Who signs in to the portal, and what they hold. One policy, two faces: a person's
//! permissions are the ones their source grants on `/auth` — the `[[users]]` entries with their
//! name and password, the account source's answer (the same cache, coalescing and lockout
//! shield), the identity provider's claims mapped as `[[jwt.roles]]` maps them.
//!
//! A person is (source, that source's stable id): a Jellyfin "alice" and a `[[users]]` "alice"
//! are two people. What they hold is kept with their web session as a [`Person`]; the
//! `[[users]]` part is read again from the policy in use on every page, so a reload that
//! changes an entry changes what its person holds at once.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::cache::SecretHasher;
use crate::decision::AccountToken;
use crate::permission::{Action, PathMatcher, Permission};
use crate::policy::{Argon2Work, Policy};
use crate::source::account::{AccountSource, Credentials, Lookup, OwnedCredentials};
use crate::verifier::Verifier;

/// Someone signed in (or signing in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The name `/metrics` uses for the source: `users`, `jellyfin`, `emby`, `plex`, `ldap`,
    /// `oidc` (the password login of `[oidc]`), `portal_oidc`.
    pub source: String,
    /// The source's stable id: the `[[users]]` name, the media server's user id, the IdP's
    /// `sub`.
    pub id: String,
    /// What the person is called (shown, and the name of the links they make).
    pub name: String,
    /// A verified e-mail address, from an identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// An administrator of the portal (`admin_users`, `admin_emails`).
    pub admin: bool,
    pub holds: Vec<Holding>,
    /// What asks the account source about this account again (`Backend::recheck`), when it
    /// gave one: a secret, kept in memory only (never in the store), so that the links of an
    /// account that is disabled or loses the server are revoked (`portal::watch`).
    #[serde(skip)]
    pub recheck: Option<AccountToken>,
}

impl Person {
    /// `source:id`: the owner of their links, the key of their second factor.
    pub fn key(&self) -> String {
        format!("{}:{}", self.source, self.id)
    }

    /// `source:name`, as `admin_users` names people.
    pub fn admin_name(&self) -> String {
        format!("{}:{}", self.source, self.name)
    }

    /// The holding that grants `action` on `path`, if any.
    pub fn holding_for(&self, action: Action, path: &str) -> Option<&Holding> {
        self.holds.iter().find(|h| {
            h.action == action.as_str()
                && PathMatcher::parse(&h.path).is_ok_and(|m| m.matches(path))
        })
    }
}

/// One permission a person holds, with what it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// publish, read or playback: the only actions the portal hands out.
    pub action: String,
    /// As in `[[users]]`: empty for any path, `~` before a regex.
    pub path: String,
    /// The `ips` rule of the `[[users]]` entry that grants it (CIDRs); empty: any address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    pub grant: Grant,
}

/// What grants a holding, so that a link made from it ends with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A `[[users]]` entry, by the keyed digest of its name and pass
    /// (`crate::sessions::user_digest`).
    User { digest: String },
    /// An account source's answer.
    Account { source: String },
    /// The identity provider of `[portal.oidc]`.
    PortalOidc,
}

/// Why a sign-in did not succeed. One text for all of `Rejected`: a page must not tell an
/// unknown name from a wrong password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignInError {
    #[error("wrong name or password")]
    Rejected,
    #[error("too many failed attempts; try again later")]
    Limited,
    #[error("cannot check sign-ins right now; try again shortly")]
    Unavailable,
}

/// A name and password against the sources that take them, in `/auth`'s order: `[[users]]`,
/// then the account sources in config order. A name the `[[users]]` entries shadow is never
/// sent to an account source (as on `/auth`). With the person, the digests of the `[[users]]`
/// entries the password matched (empty for an account): what their session is tied to.
pub async fn with_password(
    policy: &Policy,
    verifier: &Verifier,
    grant_key: &SecretHasher,
    name: &str,
    password: &str,
) -> Result<(Person, Vec<String>), SignInError> {
    if name.is_empty() || password.is_empty() {
        return Err(SignInError::Rejected);
    }
    let users = policy.users();
    let entries = users.entries_named(name);
    if !entries.is_empty() || users.shadows(name) {
        return users_sign_in(policy, verifier, grant_key, &entries, name, password).await;
    }
    let creds = Credentials::Login {
        user: name,
        password,
    };
    let mut outcome = Err(SignInError::Rejected);
    for source in policy.accounts() {
        // Plex signs people in on plex.tv (the PIN flow), never with a password typed here.
        if !source.accepts(&creds) || source.pin_flow().is_some() {
            continue;
        }
        match account_sign_in(source, &creds).await {
            Ok(person) => return Ok((person, Vec::new())),
            Err(SignInError::Rejected) => {}
            Err(e) => outcome = Err(e),
        }
    }
    if outcome == Err(SignInError::Rejected) {
        // No entry has this name: the time a wrong password costs must not say so.
        if let Some(decoy) = policy.decoy() {
            let _ = verifier.run(decoy).await;
        }
    }
    outcome
}

async fn users_sign_in(
    policy: &Policy,
    verifier: &Verifier,
    grant_key: &SecretHasher,
    entries: &[u32],
    name: &str,
    password: &str,
) -> Result<(Person, Vec<String>), SignInError> {
    let users = policy.users();
    let mut matched = Vec::new();
    let mut argon2 = false;
    for &index in entries {
        let user = users.get(index);
        match user.credentials_match(name, password) {
            Some(false) => matched.push(index),
            Some(true) => {
                argon2 = true;
                let check = Argon2Work::new(user.argon2_checks(&crate::request::Request::new(
                    Action::Read,
                    "",
                    "",
                    name,
                    password,
                )));
                match verifier.run(check).await {
                    Ok(true) => matched.push(index),
                    Ok(false) => {}
                    Err(_) => return Err(SignInError::Unavailable),
                }
            }
            None => {}
        }
    }
    if matched.is_empty() {
        if !argon2 {
            if let Some(decoy) = policy.decoy() {
                let _ = verifier.run(decoy).await;
            }
        }
        return Err(SignInError::Rejected);
    }
    let digests: Vec<String> = matched
        .iter()
        .map(|&i| crate::sessions::user_digest(grant_key, policy, i))
        .collect();
    let person = Person {
        source: "users".into(),
        id: name.to_owned(),
        name: name.to_owned(),
        email: None,
        admin: false,
        holds: user_holdings(policy, grant_key, name, &digests),
        recheck: None,
    };
    Ok((person, digests))
}

/// What the `[[users]]` entries named `name` whose digests are in `digests` hold now, in the
/// policy in use: read on every page, so that a reload's change shows at once.
pub fn user_holdings(
    policy: &Policy,
    grant_key: &SecretHasher,
    name: &str,
    digests: &[String],
) -> Vec<Holding> {
    let users = policy.users();
    let mut holds = Vec::new();
    for index in users.entries_named(name) {
        let digest = crate::sessions::user_digest(grant_key, policy, index);
        if !digests.contains(&digest) {
            continue;
        }
        let user = users.get(index);
        let ips: Vec<String> = user.ips().iter().map(ToString::to_string).collect();
        for (action, path) in user.permissions_written() {
            if action.has_path() {
                holds.push(Holding {
                    action: action.as_str().into(),
                    path,
                    ips: ips.clone(),
                    grant: Grant::User {
                        digest: digest.clone(),
                    },
                });
            }
        }
    }
    holds
}

/// A token from the upstream's own sign-in site (Plex's PIN flow) against its account source,
/// as `/auth` would check it.
pub async fn with_token(
    source: &Arc<AccountSource>,
    creds: &Credentials<'_>,
) -> Result<Person, SignInError> {
    account_sign_in(source, creds).await
}

async fn account_sign_in(
    source: &Arc<AccountSource>,
    creds: &Credentials<'_>,
) -> Result<Person, SignInError> {
    let lookup = match source.lookup(creds) {
        Lookup::Miss(key) => {
            let owned: OwnedCredentials = Credentials::to_owned(*creds);
            source.fetch(key, &owned).await
        }
        other => other,
    };
    match lookup {
        Lookup::Granted { grant, .. } => Ok(Person {
            source: source.name().into(),
            id: grant
                .id
                .clone()
                .unwrap_or_else(|| grant.name.to_lowercase()),
            name: grant.name.clone(),
            email: None,
            // What the source says (LDAP's admin_groups); `Portal::is_admin` adds the rest.
            admin: grant.admin && source.portal_admins(),
            holds: holdings_of(
                &grant.permissions,
                Grant::Account {
                    source: source.name().into(),
                },
            ),
            recheck: grant.recheck.clone(),
        }),
        Lookup::Rejected => Err(SignInError::Rejected),
        Lookup::Limited => Err(SignInError::Limited),
        Lookup::Unreachable | Lookup::Miss(_) => Err(SignInError::Unavailable),
    }
}

/// Permissions as holdings: the path actions only (the portal hands out nothing else).
pub fn holdings_of(permissions: &[Permission], grant: Grant) -> Vec<Holding> {
    let mut holds: Vec<Holding> = Vec::new();
    for p in permissions.iter().filter(|p| p.action.has_path()) {
        let h = Holding {
            action: p.action.as_str().into(),
            path: p.path.written(),
            ips: Vec::new(),
            grant: grant.clone(),
        };
        if !holds.contains(&h) {
            holds.push(h);
        }
    }
    holds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn users_sign_in_with_every_entry_of_their_name_and_password() {
        let policy = Policy::new(
            Config::parse(
                r#"
[[users]]
user = "alice"
pass = "pw"
ips = ["10.0.0.0/8"]
permissions = [{ action = "read", path = "cam" }, { action = "api" }]
[[users]]
user = "alice"
pass = "pw"
permissions = [{ action = "publish", path = "~^live/" }]
[[users]]
user = "alice"
pass = "other"
permissions = [{ action = "publish" }]
[[users]]
user = "any"
permissions = [{ action = "read" }]
"#,
                "t.toml",
            )
            .unwrap(),
        );
        let verifier = Verifier::new(1, 4);
        let key = SecretHasher::random();
        let (person, digests) =
            block_on(with_password(&policy, &verifier, &key, "alice", "pw")).unwrap();
        assert_eq!(digests.len(), 2, "both entries with her password");
        assert_eq!(person.key(), "users:alice");
        let holds: Vec<_> = person
            .holds
            .iter()
            .map(|h| (h.action.as_str(), h.path.as_str(), h.ips.clone()))
            .collect();
        assert_eq!(
            holds,
            [
                ("read", "cam", vec!["10.0.0.0/8".to_string()]),
                ("publish", "~^live/", vec![])
            ]
        );
        assert!(person.holding_for(Action::Publish, "live/x").is_some());
        assert!(person.holding_for(Action::Publish, "cam").is_none());
        for (name, pass) in [("alice", "nope"), ("bob", "pw"), ("any", "x"), ("", "")] {
            assert_eq!(
                block_on(with_password(&policy, &verifier, &key, name, pass)).map(|(p, _)| p),
                Err(SignInError::Rejected),
                "{name}"
            );
        }
    }
}
