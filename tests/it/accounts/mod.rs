//! The account sources through HTTP, each against fakes on loopback that answer as the real
//! services do: Jellyfin and Emby (`[jellyfin]`, `[emby]`), plex.tv (`[plex]`) and an OIDC
//! provider's password grant (`[oidc]`); and a real OpenLDAP (`[ldap]`, support/ldap.rs).

mod jellyfin_emby;
mod ldap;
mod oidc;
mod plex;
