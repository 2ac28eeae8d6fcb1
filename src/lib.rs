//! mtx-auth: an authentication service for MediaMTX's `authMethod: http`.
//!
//! MediaMTX POSTs one JSON request per client action (`request`); we answer 2xx to allow and
//! 401 to deny. The map (ARCHITECTURE.md has the layers, a request's life and the invariants):
//!
//! - [`decision`] is the vocabulary every layer shares: `Decision`, `DenyReason`, `Source`. A
//!   leaf: it imports nothing of the crate.
//! - [`config`] reads the TOML file into checked types: a loaded config cannot be invalid. Each
//!   section is read by the code that owns it, through [`config::reader`]; account sections by
//!   the kinds registered in [`source::ACCOUNT_KINDS`].
//! - [`credential`] holds plain, `sha256:` and `argon2:` secrets and every comparison of them.
//! - [`permission`] is MediaMTX's `{action, path}` matching.
//! - [`source`] holds the identity sources, asked in this order: [`source::users`] is MediaMTX's
//!   `authInternalUsers`, indexed by user name so 100,000 users cost the same as ten;
//!   [`source::jwt`] verifies JWTs against the key set that [`source::jwks`] fetches, refreshes
//!   and keeps through IdP outages; [`source::account`] is what the account sources share
//!   (cache, coalescing, outages, per-name limit) and [`source::backend`] the contract their
//!   backends (Jellyfin/Emby, Plex, OIDC password login) implement.
//! - [`issued`] holds the stream credentials mtx-auth issues (`mtx-auth token`) as decisions
//!   read them: in memory, by digest, decided first. [`store`] keeps them (SQLite), and its
//!   `feed` brings every change into memory within a second.
//! - [`cache`] is the hot-path cache of account answers: lock-free reads, expiring entries.
//! - [`policy`] decides: it has no HTTP or async types, so tests, benches and `explain` call it
//!   directly. argon2 work and JWKS refetches are returned to the caller as steps to run
//!   elsewhere.
//! - [`limiter`] counts failed attempts per client address (and optionally per user name) and
//!   turns away a client that failed too often, before any work.
//! - [`verifier`] runs those steps for the server: argon2 on a bounded blocking pool, refetches
//!   on the runtime.
//! - [`state`] is what lives as long as the process, apart from the policy a reload replaces:
//!   the limiter, the argon2 pool, metrics, the store, the registry of live sessions.
//! - [`sessions`] takes access back: it remembers every session let in, with what granted it,
//!   and kicks it through MediaMTX's control API when that ends (a credential revoked or
//!   expired, a JWT's `exp`, a reload that changes a `[[users]]` entry).
//! - [`time`] reads durations (`90s`, `1h30m`) and writes RFC 3339 instants.
//! - [`reload`] holds the policy in use and swaps in a new one when the config file changes or
//!   on SIGHUP; an invalid file changes nothing.
//! - [`server`] is the actix-web adapter: routes, body limits, status mapping, decision logs,
//!   and the time and connection limits that keep slow or idle clients from holding it.
//! - [`body`] gives every request body a deadline, and closes a connection whose body was left
//!   unread rather than draining it.
//! - [`metrics`] is `GET /metrics`: decisions, latency, caches, upstreams, key sets and reloads
//!   in the Prometheus (OpenMetrics) text format; counted once per process, across reloads.
//! - [`import`] turns a `mediamtx.yml`'s own auth settings into an equivalent config.
//! - [`cli`] is the command line (`serve`, `check`, `hash`, `explain`, `token`,
//!   `import-mediamtx`, `healthcheck`).

pub mod body;
pub mod cache;
pub mod cli;
pub mod config;
pub mod credential;
pub mod decision;
pub mod import;
pub mod issued;
pub mod limiter;
pub mod logging;
pub mod metrics;
pub mod permission;
pub mod policy;
pub mod portal;
pub mod reload;
pub mod request;
pub mod server;
pub mod sessions;
pub mod source;
pub mod state;
pub mod store;
pub mod time;
pub mod verifier;
