//! The integration tests: one test binary (`cargo test --test it`), a module per feature, and
//! one support tree compiled once for all of them.
//!
//! - `support`: the helpers every module uses (the server in-process or as the real binary, a
//!   client, temp configs) and the fakes: identity providers (`idp`), a real OpenID provider
//!   (`oidc`), Jellyfin, Emby and plex.tv (`media`), an HTTPS front (`tls`).
//! - `fixtures`: the fakes' own tests.
//! - A module per feature: the HTTP contract (`http`), TOML users (`users`), JWTs (`jwt`),
//!   account sources (`accounts`: Jellyfin and Emby, Plex, OIDC), failure limits (`limits`), hot
//!   reload (`reload`), the binary's subcommands (`cli`), logs (`logs`), slow clients
//!   (`slow_clients`), `/metrics` (`metrics`), the Prometheus rules and Grafana dashboard against
//!   a real Prometheus (`monitoring`), `import-mediamtx` (`import`), the deployment files
//!   (`deploy`), the docs' configs (`docs`), hostile requests (`hostile`), MediaMTX's own test
//!   rows (`conformance`) and property tests (`proptests`).
//!
//! All tests share this process: files they write go to a fresh folder under
//! `CARGO_TARGET_TMPDIR` (`support::temp_config`), servers listen on port 0, and environment
//! variables are set once for all (`support::test_env`).
//!
//! Run one module with `cargo test --test it jwt::`.

mod support;

mod accounts;
mod cli;
mod conformance;
mod deploy;
mod docs;
mod fixtures;
mod hostile;
mod http;
mod import;
mod jwt;
mod kicks;
mod limits;
mod logs;
mod metrics;
mod monitoring;
mod portal;
mod proptests;
mod reload;
mod replicas;
mod slow_clients;
mod tokens;
mod users;
