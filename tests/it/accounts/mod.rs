//! The account sources through HTTP, each against fakes on loopback that answer as the real
//! services do: Jellyfin and Emby (`[jellyfin]`, `[emby]`), plex.tv (`[plex]`) and an OIDC
//! provider's password grant (`[oidc]`).

mod jellyfin_emby;
mod oidc;
mod plex;
