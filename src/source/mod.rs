//! Identity sources: where a request's credentials are recognised.
//!
//! They are asked in a fixed order: TOML users first (a TOML user always wins), then JWTs, then
//! the account sources (Jellyfin, Emby, Plex, OIDC password login, LDAP) in the order their sections
//! appear in the config.

use crate::source::backend::AccountKind;

pub mod account;
pub mod backend;
pub mod jwks;
pub mod jwt;
pub mod ldap;
pub mod mediabrowser;
pub mod oidc;
pub mod plex;
pub mod upstream;
pub mod users;

/// Every kind of account source. A new one is its own file implementing
/// `backend::Backend` with an `AccountKind`, and one line here: its config section, metrics
/// label, readiness and `explain` follow from this list.
pub const ACCOUNT_KINDS: &[&AccountKind] = &[
    &mediabrowser::JELLYFIN,
    &mediabrowser::EMBY,
    &plex::PLEX,
    &oidc::OIDC,
    &ldap::LDAP,
];
