//! The TOML config: read, checked, and turned into ready-to-use types.
//!
//! Parsing happens in two steps. serde reads the file into `Raw*` structs that keep the span of
//! every value (`toml::Spanned`) and reject unknown keys; then `build` validates each value
//! (credentials, CIDRs, regexes) and reports *every* problem as `FILE:LINE:COL: message`, so an
//! operator fixes a file in one pass. A `Config` that exists is valid: the hot path never
//! re-checks anything.

use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::credential::{Credential, CredentialError};
use crate::limiter::Limits;
use crate::permission::{Action, PathInterner, PathMatcher, Permission};
use crate::source::account::{AccountConfig, AccountKind, AccountSettings, Override};
use crate::source::jwks::{FetchPolicy, KeySource};
use crate::source::jwt::{JwtConfig, RoleMapping};
use crate::source::oidc::{OidcClient, Secret};
use crate::source::plex::DEFAULT_API_URL;
use crate::source::users::{UserEntry, UserList, UserName};

/// Where the service listens unless `[server] listen` or `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";

/// A checked configuration.
#[derive(Debug)]
pub struct Config {
    /// What `check` reports without failing: secrets that could not be read where the config
    /// was checked (see [`Secrets`]). Always empty for a config that `serve` loads.
    pub warnings: Vec<Problem>,
    pub server: ServerConfig,
    pub users: UserList,
    pub jwt: Option<JwtConfig>,
    /// `[jellyfin]`, `[emby]`, `[plex]` and `[oidc]`, in the order they appear in the file.
    pub accounts: Vec<AccountConfig>,
}

/// `[server]`: where to listen and how much argon2 work and memory to allow.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    /// argon2 verifications running at once (each uses one core and its `m` KiB of memory).
    pub argon2_concurrency: usize,
    /// argon2 verifications allowed to wait; beyond this, requests are denied at once.
    pub argon2_queue: usize,
    /// Entries in the cache of successful argon2 verifications.
    pub cache_capacity: u64,
    /// How long a successful argon2 verification is remembered.
    pub cache_ttl: Duration,
    /// Brute-force limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ServerConfig {
            listen: DEFAULT_LISTEN.to_owned(),
            argon2_concurrency: cores,
            argon2_queue: 64,
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(3600),
            limits: Limits::default(),
        }
    }
}

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Everything wrong with a config file; its `Display` is one `FILE:LINE:COL: message` per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    server: Option<Spanned<RawServer>>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
    #[serde(default)]
    jwt: Option<Spanned<RawJwt>>,
    jellyfin: Option<Spanned<RawAccount>>,
    emby: Option<Spanned<RawAccount>>,
    plex: Option<Spanned<RawAccount>>,
    oidc: Option<Spanned<RawAccount>>,
}

/// The keys of `[jellyfin]`, `[emby]`, `[plex]` and `[oidc]`: one struct, so the keys they
/// share are read once; `build_account` refuses a key that isn't its section's, with its
/// position.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    // [jellyfin], [emby]
    url: Option<Spanned<String>>,
    local_networks: Option<Spanned<Vec<Spanned<String>>>>,
    // [plex]
    server: Option<Spanned<String>>,
    api_url: Option<Spanned<String>>,
    password_login: Option<Spanned<bool>>,
    // [oidc]
    discovery_url: Option<Spanned<String>>,
    token_endpoint: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    client_secret: Option<Spanned<String>>,
    client_secret_file: Option<Spanned<String>>,
    client_secret_env: Option<Spanned<String>>,
    scope: Option<Spanned<String>>,
    claim_key: Option<Spanned<String>>,
    identity_claim: Option<Spanned<String>>,
    issuer: Option<Spanned<String>>,
    audience: Option<Spanned<String>>,
    require_exp: Option<Spanned<bool>>,
    leeway_secs: Option<Spanned<i64>>,
    refresh_interval_secs: Option<Spanned<i64>>,
    max_stale_secs: Option<Spanned<i64>>,
    roles: Option<Spanned<Vec<RawRole>>>,
    // every account section
    permissions: Option<Spanned<Vec<Spanned<RawPermission>>>>,
    admin_permissions: Option<Spanned<Vec<Spanned<RawPermission>>>>,
    overrides: Option<Spanned<Vec<RawOverride>>>,
    timeout_secs: Option<Spanned<i64>>,
    cache_ttl_secs: Option<Spanned<i64>>,
    failure_ttl_secs: Option<Spanned<i64>>,
    stale_grace_secs: Option<Spanned<i64>>,
    cache_capacity: Option<Spanned<i64>>,
    max_failures: Option<Spanned<i64>>,
    failure_window_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverride {
    user: Spanned<String>,
    permissions: Vec<Spanned<RawPermission>>,
    #[serde(default)]
    replace: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJwt {
    jwks_url: Option<Spanned<String>>,
    discovery_url: Option<Spanned<String>>,
    jwks_fingerprint: Option<Spanned<String>>,
    claim_key: Option<String>,
    identity_claim: Option<String>,
    issuer: Option<String>,
    audience: Option<String>,
    require_exp: Option<bool>,
    leeway_secs: Option<Spanned<i64>>,
    fetch_timeout_secs: Option<Spanned<i64>>,
    refresh_interval_secs: Option<Spanned<i64>>,
    refetch_interval_secs: Option<Spanned<i64>>,
    max_stale_secs: Option<Spanned<i64>>,
    cache_ttl_secs: Option<Spanned<i64>>,
    #[serde(default)]
    roles: Vec<RawRole>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRole {
    claim: Spanned<String>,
    value: String,
    permissions: Vec<Spanned<RawPermission>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<Spanned<String>>,
    argon2_concurrency: Option<Spanned<i64>>,
    argon2_queue: Option<Spanned<i64>>,
    cache_capacity: Option<Spanned<i64>>,
    cache_ttl_secs: Option<Spanned<i64>>,
    max_failures_per_ip: Option<Spanned<i64>>,
    max_failures_per_user: Option<Spanned<i64>>,
    failure_window_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    user: Spanned<String>,
    #[serde(default)]
    pass: Option<Spanned<String>>,
    #[serde(default)]
    ips: Vec<Spanned<String>>,
    #[serde(default)]
    permissions: Vec<Spanned<RawPermission>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPermission {
    action: Spanned<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
}

impl Config {
    /// Reads and checks a config file.
    /// True when nothing in this config can ever allow a request: no `[[users]]` entry holds a
    /// permission, and there is no `[jwt]` and no account source. An empty file is such a
    /// config. `check` warns about it, and a reload refuses to swap one in for a config that
    /// grants something (`crate::reload`): it is far more often a file caught half-written.
    pub fn grants_nothing(&self) -> bool {
        self.jwt.is_none()
            && self.accounts.is_empty()
            && self.users.iter().all(|u| !u.has_permissions())
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Required)
    }

    /// Like `load`, choosing what an unreadable `*_file` or unset `*_env` secret is.
    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse_with(&text, &file, secrets),
            Err(e) => Err(ConfigError {
                problems: vec![Problem {
                    file,
                    line: 0,
                    col: 0,
                    message: format!("cannot read config: {e}"),
                }],
            }),
        }
    }

    /// Checks config text; `file` names it in problems.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, Secrets::Required)
    }

    /// Like `parse`, choosing what an unreadable `*_file` or unset `*_env` secret is.
    pub fn parse_with(text: &str, file: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let mut errs = Problems::new(file, text);
        errs.secrets = secrets;
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                // toml leaves `message` empty for some syntax errors (its Display is then only
                // an excerpt of the file, which could hold a secret): say what we can.
                let message = match e.message().trim() {
                    "" => match e.span().and_then(|sp| text.get(sp.start..)?.chars().next()) {
                        Some(c) if c.is_control() => {
                            format!(
                                "invalid TOML syntax: unexpected control character U+{:04X}",
                                c as u32
                            )
                        }
                        _ => "invalid TOML syntax".to_owned(),
                    },
                    m => m.to_owned(),
                };
                errs.push(e.span().unwrap_or(0..0), message);
                return Err(errs.into_error());
            }
        };
        let server = match raw.server {
            Some(s) => build_server(s.into_inner(), &mut errs),
            None => ServerConfig::default(),
        };
        let mut paths = PathInterner::default();
        let users = raw
            .users
            .into_iter()
            .filter_map(|u| build_user(u, &mut errs, &mut paths))
            .collect();
        let jwt = raw.jwt.and_then(|j| build_jwt(j, &mut errs));
        let mut sections: Vec<_> = [
            (Section::Jellyfin, raw.jellyfin),
            (Section::Emby, raw.emby),
            (Section::Plex, raw.plex),
            (Section::Oidc, raw.oidc),
        ]
        .into_iter()
        .filter_map(|(section, raw)| Some((section, raw?)))
        .collect();
        sections.sort_by_key(|(_, raw)| raw.span().start);
        let accounts = sections
            .into_iter()
            .filter_map(|(section, raw)| build_account(section, raw, &mut errs))
            .collect();
        if errs.list.is_empty() {
            Ok(Config {
                warnings: errs.warnings,
                server,
                users,
                jwt,
                accounts,
            })
        } else {
            Err(errs.into_error())
        }
    }
}

/// Collects problems and turns byte spans into line and column numbers.
struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    /// Byte offset of the start of each line: a config of 100,000 users asks for 100,000
    /// positions, so each must not rescan the text.
    line_starts: Vec<usize>,
    list: Vec<Problem>,
    warnings: Vec<Problem>,
    secrets: Secrets,
}

/// What a secret given as `*_file` or `*_env` that cannot be read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// An error: `serve` cannot run without it (and `check --strict` says so).
    Required,
    /// A warning, and everything else is checked: `check` on a machine that is not where the
    /// service runs (a laptop checking a Kubernetes ConfigMap whose Secret it never sees).
    MayBeAbsent,
}

impl<'a> Problems<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Problems {
            file,
            text,
            line_starts,
            list: Vec::new(),
            warnings: Vec::new(),
            secrets: Secrets::Required,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, col + 1)
    }

    fn push(&mut self, span: Range<usize>, message: String) {
        let problem = self.problem(span, message);
        self.list.push(problem);
    }

    /// A secret that cannot be read here: an error, or with `Secrets::MayBeAbsent` a warning.
    /// Returns whether it was only a warning.
    fn absent_secret(&mut self, span: Range<usize>, message: String) -> bool {
        let problem = self.problem(span, message);
        match self.secrets {
            Secrets::Required => {
                self.list.push(problem);
                false
            }
            Secrets::MayBeAbsent => {
                self.warnings.push(problem);
                true
            }
        }
    }

    fn problem(&self, span: Range<usize>, message: String) -> Problem {
        let (line, col) = self.line_col(span.start);
        Problem {
            file: self.file.to_owned(),
            line,
            col,
            message,
        }
    }

    fn into_error(self) -> ConfigError {
        ConfigError {
            problems: self.list,
        }
    }
}

fn build_server(raw: RawServer, errs: &mut Problems) -> ServerConfig {
    let mut s = ServerConfig::default();
    if let Some(listen) = raw.listen {
        s.listen = listen.get_ref().clone();
    }
    let mut positive = |v, key, max| in_range(v, key, 1, max, errs);
    if let Some(n) = positive(raw.argon2_concurrency, "argon2_concurrency", 1024) {
        s.argon2_concurrency = n as usize;
    }
    if let Some(n) = positive(raw.argon2_queue, "argon2_queue", 1_000_000) {
        s.argon2_queue = n as usize;
    }
    if let Some(n) = positive(raw.cache_capacity, "cache_capacity", 100_000_000) {
        s.cache_capacity = n;
    }
    if let Some(n) = positive(raw.cache_ttl_secs, "cache_ttl_secs", 30 * 24 * 3600) {
        s.cache_ttl = Duration::from_secs(n);
    }
    if let Some(n) = positive(raw.failure_window_secs, "failure_window_secs", 24 * 3600) {
        s.limits.failure_window = Duration::from_secs(n);
    }
    let mut count = |v, key| in_range(v, key, 0, 1_000_000, errs).map(|n| n as u32);
    if let Some(n) = count(raw.max_failures_per_ip, "max_failures_per_ip") {
        s.limits.max_failures_per_ip = n;
    }
    if let Some(n) = count(raw.max_failures_per_user, "max_failures_per_user") {
        s.limits.max_failures_per_user = n;
    }
    s
}

/// A number within `min..=max`, or a located problem.
fn in_range(
    v: Option<Spanned<i64>>,
    key: &str,
    min: i64,
    max: i64,
    errs: &mut Problems,
) -> Option<u64> {
    let v = v?;
    let n = *v.get_ref();
    if (min..=max).contains(&n) {
        Some(n as u64)
    } else {
        errs.push(v.span(), format!("{key} must be between {min} and {max}"));
        None
    }
}

fn build_jwt(raw: Spanned<RawJwt>, errs: &mut Problems) -> Option<JwtConfig> {
    let span = raw.span();
    let raw = raw.into_inner();
    let before = errs.list.len();
    let mut url = |u: Spanned<String>, key: &str| {
        let ok = reqwest::Url::parse(u.get_ref())
            .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https"));
        if !ok {
            errs.push(u.span(), format!("{key}: not an http or https URL"));
        }
        u.into_inner()
    };
    let source = match (raw.jwks_url, raw.discovery_url) {
        (Some(u), None) => Some(KeySource::Jwks(url(u, "jwks_url"))),
        (None, Some(u)) => Some(KeySource::Discovery(url(u, "discovery_url"))),
        (Some(_), Some(u)) => {
            errs.push(u.span(), "set jwks_url or discovery_url, not both".into());
            None
        }
        (None, None) => {
            errs.push(span, "[jwt] needs jwks_url or discovery_url".into());
            None
        }
    };
    let pinned_certificate = raw.jwks_fingerprint.and_then(|f| {
        let https = matches!(&source, Some(KeySource::Jwks(u) | KeySource::Discovery(u))
            if u.starts_with("https://"));
        let pin = parse_fingerprint(f.get_ref());
        if pin.is_none() {
            errs.push(
                f.span(),
                "jwks_fingerprint: not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                    .into(),
            );
        } else if !https && source.is_some() {
            errs.push(
                f.span(),
                "jwks_fingerprint pins a TLS certificate, so the key server's URL must be https"
                    .into(),
            );
        }
        pin
    });
    let day = 24 * 3600;
    let secs = |n: Option<u64>, default: u64| Duration::from_secs(n.unwrap_or(default));
    let leeway = secs(in_range(raw.leeway_secs, "leeway_secs", 0, 3600, errs), 30);
    let fetch = FetchPolicy {
        timeout: secs(
            in_range(raw.fetch_timeout_secs, "fetch_timeout_secs", 1, 60, errs),
            3,
        ),
        refresh_interval: secs(
            in_range(
                raw.refresh_interval_secs,
                "refresh_interval_secs",
                10,
                day,
                errs,
            ),
            15 * 60,
        ),
        refetch_interval: secs(
            in_range(
                raw.refetch_interval_secs,
                "refetch_interval_secs",
                1,
                day,
                errs,
            ),
            60,
        ),
        max_stale: secs(
            in_range(raw.max_stale_secs, "max_stale_secs", 0, 30 * day, errs),
            day as u64,
        ),
        pinned_certificate,
    };
    let cache_ttl = secs(
        in_range(raw.cache_ttl_secs, "cache_ttl_secs", 1, day, errs),
        300,
    );
    let mut paths = PathInterner::default();
    let roles = raw
        .roles
        .into_iter()
        .map(|r| {
            let claim: Vec<String> = r.claim.get_ref().split('.').map(str::to_owned).collect();
            if claim.iter().any(String::is_empty) {
                errs.push(r.claim.span(), "claim: not a dotted claim path".into());
            }
            let permissions = r
                .permissions
                .into_iter()
                .filter_map(|p| build_permission(p.get_ref(), errs, &mut paths))
                .collect();
            RoleMapping {
                claim,
                value: r.value,
                permissions,
            }
        })
        .collect();
    if errs.list.len() > before {
        return None;
    }
    Some(JwtConfig {
        source: source?,
        claim_key: raw
            .claim_key
            .unwrap_or_else(|| "mediamtx_permissions".into()),
        identity_claim: raw.identity_claim.unwrap_or_else(|| "sub".into()),
        issuer: raw.issuer.filter(|s| !s.is_empty()),
        audience: raw.audience.filter(|s| !s.is_empty()),
        require_exp: raw.require_exp.unwrap_or(true),
        leeway,
        fetch,
        roles,
        cache_ttl,
    })
}

/// A certificate's SHA-256 as MediaMTX takes it (64 hex digits, any case) or as
/// `openssl x509 -fingerprint -sha256` prints it (pairs separated by colons).
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b':').collect();
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut pin = [0; 32];
    for (byte, pair) in pin.iter_mut().zip(digits.chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(pin)
}

/// An account section of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Jellyfin,
    Emby,
    Plex,
    Oidc,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Jellyfin => "jellyfin",
            Section::Emby => "emby",
            Section::Plex => "plex",
            Section::Oidc => "oidc",
        }
    }
}

/// Checks an `http` or `https` URL.
fn check_url(u: &Spanned<String>, key: &str, errs: &mut Problems) {
    let ok = reqwest::Url::parse(u.get_ref())
        .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https"));
    if !ok {
        errs.push(u.span(), format!("{key}: not an http or https URL"));
    }
}

fn build_account(
    section: Section,
    raw: Spanned<RawAccount>,
    errs: &mut Problems,
) -> Option<AccountConfig> {
    let span = raw.span();
    let (line, _) = errs.line_col(span.start);
    let raw = raw.into_inner();
    let before = errs.list.len();
    let name = section.name();

    // Keys of other kinds of section, present here.
    let media = matches!(section, Section::Jellyfin | Section::Emby);
    let foreign: [(Option<Range<usize>>, &str, bool); 20] = [
        (raw.url.as_ref().map(Spanned::span), "url", media),
        (
            raw.local_networks.as_ref().map(Spanned::span),
            "local_networks",
            media,
        ),
        (
            raw.server.as_ref().map(Spanned::span),
            "server",
            section == Section::Plex,
        ),
        (
            raw.api_url.as_ref().map(Spanned::span),
            "api_url",
            section == Section::Plex,
        ),
        (
            raw.password_login.as_ref().map(Spanned::span),
            "password_login",
            section == Section::Plex,
        ),
        (
            raw.discovery_url.as_ref().map(Spanned::span),
            "discovery_url",
            section == Section::Oidc,
        ),
        (
            raw.token_endpoint.as_ref().map(Spanned::span),
            "token_endpoint",
            section == Section::Oidc,
        ),
        (
            raw.client_id.as_ref().map(Spanned::span),
            "client_id",
            section == Section::Oidc,
        ),
        (
            raw.client_secret.as_ref().map(Spanned::span),
            "client_secret",
            section == Section::Oidc,
        ),
        (
            raw.client_secret_file.as_ref().map(Spanned::span),
            "client_secret_file",
            section == Section::Oidc,
        ),
        (
            raw.client_secret_env.as_ref().map(Spanned::span),
            "client_secret_env",
            section == Section::Oidc,
        ),
        (
            raw.scope.as_ref().map(Spanned::span),
            "scope",
            section == Section::Oidc,
        ),
        (
            raw.claim_key.as_ref().map(Spanned::span),
            "claim_key",
            section == Section::Oidc,
        ),
        (
            raw.identity_claim.as_ref().map(Spanned::span),
            "identity_claim",
            section == Section::Oidc,
        ),
        (
            raw.issuer.as_ref().map(Spanned::span),
            "issuer",
            section == Section::Oidc,
        ),
        (
            raw.audience.as_ref().map(Spanned::span),
            "audience",
            section == Section::Oidc,
        ),
        (
            raw.require_exp.as_ref().map(Spanned::span),
            "require_exp",
            section == Section::Oidc,
        ),
        (
            raw.leeway_secs.as_ref().map(Spanned::span),
            "leeway_secs",
            section == Section::Oidc,
        ),
        (
            raw.refresh_interval_secs.as_ref().map(Spanned::span),
            "refresh_interval_secs",
            section == Section::Oidc,
        ),
        (
            raw.max_stale_secs.as_ref().map(Spanned::span),
            "max_stale_secs",
            section == Section::Oidc,
        ),
    ];
    for (key_span, key, allowed) in foreign {
        if let (Some(key_span), false) = (key_span, allowed) {
            errs.push(key_span, format!("{key} is not a [{name}] key"));
        }
    }
    if section != Section::Oidc {
        if let Some(roles) = &raw.roles {
            errs.push(roles.span(), format!("roles is not a [{name}] key"));
        }
    } else {
        for (key, value) in [
            ("permissions", raw.permissions.as_ref().map(Spanned::span)),
            (
                "admin_permissions",
                raw.admin_permissions.as_ref().map(Spanned::span),
            ),
        ] {
            if let Some(key_span) = value {
                errs.push(
                    key_span,
                    format!("{key} is not an [oidc] key: the token's claim and [[oidc.roles]] give permissions"),
                );
            }
        }
    }

    let settings = build_account_settings(&raw, section, errs);
    let kind = match section {
        Section::Jellyfin | Section::Emby => {
            let url = raw.url.as_ref();
            match url {
                Some(u) => check_url(u, "url", errs),
                None => errs.push(span.clone(), format!("[{name}] needs url")),
            }
            let url = url.map(|u| u.get_ref().clone()).unwrap_or_default();
            if section == Section::Jellyfin {
                AccountKind::Jellyfin { url }
            } else {
                AccountKind::Emby { url }
            }
        }
        Section::Plex => {
            let server = match &raw.server {
                Some(s) if !s.get_ref().is_empty() => s.get_ref().clone(),
                Some(s) => {
                    errs.push(s.span(), "server: must not be empty".into());
                    String::new()
                }
                None => {
                    errs.push(
                        span.clone(),
                        "[plex] needs server (the server's machine identifier or name)".into(),
                    );
                    String::new()
                }
            };
            if let Some(u) = &raw.api_url {
                check_url(u, "api_url", errs);
            }
            AccountKind::Plex {
                api_url: raw
                    .api_url
                    .as_ref()
                    .map_or_else(|| DEFAULT_API_URL.to_owned(), |u| u.get_ref().clone()),
                server,
                password_login: raw.password_login.as_ref().is_some_and(|b| *b.get_ref()),
            }
        }
        Section::Oidc => build_oidc(raw, span, &settings, errs)?,
    };
    if errs.list.len() > before {
        return None;
    }
    Some(AccountConfig {
        kind,
        line,
        settings,
    })
}

fn build_account_settings(
    raw: &RawAccount,
    section: Section,
    errs: &mut Problems,
) -> AccountSettings {
    let mut s = AccountSettings::default();
    let day = 24 * 3600;
    let num = |v: &Option<Spanned<i64>>| v.clone();
    if let Some(n) = in_range(num(&raw.timeout_secs), "timeout_secs", 1, 60, errs) {
        s.timeout = Duration::from_secs(n);
    }
    if let Some(n) = in_range(num(&raw.cache_ttl_secs), "cache_ttl_secs", 1, day, errs) {
        s.cache_ttl = Duration::from_secs(n);
    }
    if let Some(n) = in_range(
        num(&raw.failure_ttl_secs),
        "failure_ttl_secs",
        0,
        3600,
        errs,
    ) {
        s.failure_ttl = Duration::from_secs(n);
    }
    if let Some(n) = in_range(
        num(&raw.stale_grace_secs),
        "stale_grace_secs",
        0,
        30 * day,
        errs,
    ) {
        s.stale_grace = Duration::from_secs(n);
    }
    if let Some(n) = in_range(
        num(&raw.cache_capacity),
        "cache_capacity",
        1,
        100_000_000,
        errs,
    ) {
        s.cache_capacity = n;
    }
    if let Some(n) = in_range(num(&raw.max_failures), "max_failures", 1, 1000, errs) {
        s.max_failures = n as u32;
    }
    if let Some(n) = in_range(
        num(&raw.failure_window_secs),
        "failure_window_secs",
        1,
        day,
        errs,
    ) {
        s.failure_window = Duration::from_secs(n);
    }
    let mut paths = PathInterner::default();
    let mut perms = |list: &Option<Spanned<Vec<Spanned<RawPermission>>>>, errs: &mut Problems| {
        list.as_ref().map(|l| {
            l.get_ref()
                .iter()
                .filter_map(|p| build_permission(p.get_ref(), errs, &mut paths))
                .collect::<Vec<_>>()
        })
    };
    // A media-server account with no `permissions` key may watch: read and playback.
    s.permissions = perms(&raw.permissions, errs).unwrap_or_else(|| {
        if section == Section::Oidc {
            Vec::new()
        } else {
            [Action::Read, Action::Playback]
                .into_iter()
                .map(|action| Permission {
                    action,
                    path: PathMatcher::Any,
                })
                .collect()
        }
    });
    s.admin_permissions = perms(&raw.admin_permissions, errs).unwrap_or_default();
    if let Some(list) = &raw.overrides {
        for o in list.get_ref() {
            if o.user.get_ref().is_empty() {
                errs.push(o.user.span(), "user: must not be empty".into());
            }
            let permissions = o
                .permissions
                .iter()
                .filter_map(|p| build_permission(p.get_ref(), errs, &mut paths))
                .collect();
            s.overrides.push(Override {
                user: o.user.get_ref().to_lowercase(),
                permissions,
                replace: o.replace,
            });
        }
    }
    if let Some(list) = &raw.local_networks {
        for net in list.get_ref() {
            match parse_net(net.get_ref()) {
                Some(n) => s.local_networks.push(n),
                None => errs.push(
                    net.span(),
                    format!(
                        "local_networks: {:?} is not an IP address or CIDR",
                        net.get_ref()
                    ),
                ),
            }
        }
    }
    s
}

fn build_oidc(
    raw: RawAccount,
    span: Range<usize>,
    settings: &AccountSettings,
    errs: &mut Problems,
) -> Option<AccountKind> {
    let Some(discovery_url) = raw.discovery_url else {
        errs.push(span, "[oidc] needs discovery_url".into());
        return None;
    };
    if let Some(e) = &raw.token_endpoint {
        check_url(e, "token_endpoint", errs);
    }
    let client_id = match raw.client_id {
        Some(id) if !id.get_ref().is_empty() => id.into_inner(),
        Some(id) => {
            errs.push(id.span(), "client_id: must not be empty".into());
            return None;
        }
        None => {
            errs.push(span, "[oidc] needs client_id".into());
            return None;
        }
    };
    let client_secret = read_secret(
        "client_secret",
        raw.client_secret,
        raw.client_secret_file,
        raw.client_secret_env,
        errs,
    );
    let identity_claim = raw
        .identity_claim
        .map_or_else(|| "preferred_username".to_owned(), Spanned::into_inner);
    let jwt = RawJwt {
        jwks_url: None,
        discovery_url: Some(discovery_url),
        jwks_fingerprint: None,
        claim_key: raw.claim_key.map(Spanned::into_inner),
        identity_claim: Some(identity_claim),
        issuer: raw.issuer.map(Spanned::into_inner),
        audience: raw.audience.map(Spanned::into_inner),
        require_exp: raw.require_exp.map(Spanned::into_inner),
        leeway_secs: raw.leeway_secs,
        fetch_timeout_secs: Some(Spanned::new(0..0, settings.timeout.as_secs() as i64)),
        refresh_interval_secs: raw.refresh_interval_secs,
        refetch_interval_secs: None,
        max_stale_secs: raw.max_stale_secs,
        cache_ttl_secs: None,
        roles: raw.roles.map(Spanned::into_inner).unwrap_or_default(),
    };
    let jwt = build_jwt(Spanned::new(span, jwt), errs)?;
    Some(AccountKind::Oidc {
        jwt: Box::new(jwt),
        client: OidcClient {
            client_id,
            client_secret: client_secret?,
            scope: raw
                .scope
                .map_or_else(|| "openid".to_owned(), Spanned::into_inner),
            token_endpoint: raw.token_endpoint.map(Spanned::into_inner),
        },
    })
}

/// A secret given inline (`KEY`), in a file (`KEY_file`, trailing newline removed) or in an
/// environment variable (`KEY_env`): at most one of the three. `Some(None)`: none given.
/// Stands in for a secret that `check` could not read (`Secrets::MayBeAbsent`); such a config
/// is only ever checked, never served.
const ABSENT: &str = "(absent where checked)";

fn read_secret(
    key: &str,
    inline: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
    env: Option<Spanned<String>>,
    errs: &mut Problems,
) -> Option<Option<Secret>> {
    let given: Vec<_> = [&inline, &file, &env].into_iter().flatten().collect();
    if given.len() > 1 {
        errs.push(
            given[1].span(),
            format!("set one of {key}, {key}_file and {key}_env"),
        );
        return None;
    }
    let (value, span) = if let Some(v) = inline {
        (v.get_ref().clone(), v.span())
    } else if let Some(path) = file {
        match std::fs::read_to_string(path.get_ref()) {
            Ok(text) => (text.trim_end_matches(['\n', '\r']).to_owned(), path.span()),
            Err(e) => {
                let message = format!("{key}_file: cannot read {:?}: {e}", path.get_ref());
                return errs
                    .absent_secret(path.span(), message)
                    .then(|| Some(Secret(ABSENT.to_owned())));
            }
        }
    } else if let Some(var) = env {
        match std::env::var(var.get_ref()) {
            Ok(v) => (v, var.span()),
            Err(_) => {
                let message = format!(
                    "{key}_env: environment variable {:?} is not set",
                    var.get_ref()
                );
                return errs
                    .absent_secret(var.span(), message)
                    .then(|| Some(Secret(ABSENT.to_owned())));
            }
        }
    } else {
        return Some(None);
    };
    if value.is_empty() {
        errs.push(span, format!("{key}: must not be empty"));
        return None;
    }
    Some(Some(Secret(value)))
}

fn build_user(
    raw: Spanned<RawUser>,
    errs: &mut Problems,
    paths: &mut PathInterner,
) -> Option<UserEntry> {
    let (line, _) = errs.line_col(raw.span().start);
    let raw = raw.into_inner();
    let before = errs.list.len();

    let user_value = raw.user.get_ref().as_str();
    let name = if user_value == "any" {
        Some(UserName::Any)
    } else {
        match Credential::parse(user_value) {
            Ok(c) => Some(UserName::Credential(c)),
            Err(CredentialError::Empty) => {
                errs.push(
                    raw.user.span(),
                    "user: must not be empty (use \"any\" for anyone)".into(),
                );
                None
            }
            Err(e) => {
                errs.push(raw.user.span(), format!("user: {e}"));
                None
            }
        }
    };

    let pass = match &raw.pass {
        None => None,
        Some(p) if p.get_ref().is_empty() => None,
        Some(p) if matches!(name, Some(UserName::Any)) => {
            errs.push(p.span(), "pass: user \"any\" cannot have a password".into());
            None
        }
        Some(p) => match Credential::parse(p.get_ref()) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(p.span(), format!("pass: {e}"));
                None
            }
        },
    };

    let ips = raw
        .ips
        .iter()
        .filter_map(|ip| match parse_net(ip.get_ref()) {
            Some(net) => Some(net),
            None => {
                errs.push(
                    ip.span(),
                    format!("ips: {:?} is not an IP address or CIDR", ip.get_ref()),
                );
                None
            }
        })
        .collect();

    let permissions = raw
        .permissions
        .into_iter()
        .filter_map(|p| build_permission(p.get_ref(), errs, paths))
        .collect();

    if errs.list.len() > before {
        return None;
    }
    Some(UserEntry {
        name: name?,
        pass,
        ips,
        permissions,
        line,
    })
}

/// A CIDR, or a single address as a /32 or /128 network; an IPv4-mapped one as the IPv4
/// network it maps (`crate::source::users::canonical_net`), for `ips` and `local_networks` alike.
fn parse_net(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(crate::source::users::canonical_net(net))
}

fn build_permission(
    raw: &RawPermission,
    errs: &mut Problems,
    paths: &mut PathInterner,
) -> Option<Permission> {
    let action = match raw.action.get_ref().parse::<Action>() {
        Ok(a) => Some(a),
        Err(e) => {
            errs.push(
                raw.action.span(),
                format!("action {:?}: {e}", raw.action.get_ref()),
            );
            None
        }
    };
    let path = match &raw.path {
        None => Some(PathMatcher::Any),
        Some(p) => match paths.parse(p.get_ref()) {
            Ok(m) => Some(m),
            Err(e) => {
                let msg = e.to_string().replace('\n', " ");
                let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
                errs.push(
                    p.span(),
                    format!("path: regular expression does not compile: {msg}"),
                );
                None
            }
        },
    };
    Some(Permission {
        action: action?,
        path: path?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text, "t.toml")
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn empty_config_is_valid_and_has_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.server.listen, DEFAULT_LISTEN);
        assert!(c.users.is_empty());
    }

    #[test]
    fn locates_unknown_key() {
        let p = problems("[server]\nlisten = \"x\"\nlisen = 3\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("t.toml:3:1: unknown field `lisen`"),
            "{p:?}"
        );
    }

    #[test]
    fn reports_every_problem_with_position() {
        let text = r#"
[[users]]
user = ""
ips = ["10.0.0.0/33", "::1"]
permissions = [{ action = "write" }, { action = "read", path = "~(" }]

[[users]]
user = "any"
pass = "x"
"#;
        let p = problems(text);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p[0].starts_with("t.toml:3:8: user: must not be empty"),
            "{p:?}"
        );
        assert!(p[1].starts_with("t.toml:4:8: ips:"), "{p:?}");
        assert!(p[2].starts_with("t.toml:5:27: action \"write\""), "{p:?}");
        assert!(
            p[3].starts_with("t.toml:5:64: path: regular expression"),
            "{p:?}"
        );
        assert!(p[4].starts_with("t.toml:9:8: pass: user \"any\""), "{p:?}");
    }

    /// MediaMTX's form (hex, any case) and openssl's (colons) give the same pin; anything else,
    /// or a pin on a plain-http key server, is refused at its place.
    #[test]
    fn jwks_fingerprint_forms_and_problems() {
        let hex = "0123456789abcdef".repeat(4);
        let colons = hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let pin = |f: &str| {
            let text =
                format!("[jwt]\njwks_url = \"https://idp/certs\"\njwks_fingerprint = \"{f}\"\n");
            Config::parse(&text, "t.toml")
                .unwrap()
                .jwt
                .unwrap()
                .fetch
                .pinned_certificate
        };
        let expected = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef].repeat(4);
        assert_eq!(pin(&hex).unwrap().to_vec(), expected);
        assert_eq!(pin(&colons).unwrap().to_vec(), expected);
        let no_pin = Config::parse("[jwt]\njwks_url = \"https://idp/certs\"\n", "t.toml");
        assert_eq!(no_pin.unwrap().jwt.unwrap().fetch.pinned_certificate, None);

        for bad in [
            &hex[..62],
            &format!("{hex}00"),
            &format!("+f{}", &hex[2..]),
            "xyz",
        ] {
            let p = problems(&format!(
                "[jwt]\njwks_url = \"https://idp/certs\"\njwks_fingerprint = \"{bad}\"\n"
            ));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with("t.toml:3:20: jwks_fingerprint: not a SHA-256"),
                "{p:?}"
            );
        }
        let p = problems(&format!(
            "[jwt]\ndiscovery_url = \"http://idp/.well-known/openid-configuration\"\njwks_fingerprint = \"{hex}\"\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("t.toml:3:20: jwks_fingerprint pins a TLS certificate"),
            "{p:?}"
        );
    }

    #[test]
    fn line_col_counts_characters() {
        let p = Problems::new("t", "ab\ncé x\n");
        assert_eq!(p.line_col(0), (1, 1));
        assert_eq!(p.line_col(3), (2, 1));
        assert_eq!(p.line_col(7), (2, 4));
        assert_eq!(p.line_col(9), (3, 1));
        assert_eq!(Problems::new("t", "").line_col(0), (1, 1));
    }

    #[test]
    fn account_sections_keep_file_order() {
        let c = Config::parse(
            "[plex]\nserver = \"Home\"\n[jellyfin]\nurl = \"http://jf:8096\"\n[emby]\nurl = \"http://emby:8096\"\n",
            "t.toml",
        )
        .unwrap();
        let kinds: Vec<_> = c
            .accounts
            .iter()
            .map(|a| match a.kind {
                AccountKind::Plex { .. } => "plex",
                AccountKind::Jellyfin { .. } => "jellyfin",
                AccountKind::Emby { .. } => "emby",
                AccountKind::Oidc { .. } => "oidc",
            })
            .collect();
        assert_eq!(kinds, ["plex", "jellyfin", "emby"]);
        assert_eq!(
            c.accounts.iter().map(|a| a.line).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        // Defaults: read and playback for every account, nothing more.
        let s = &c.accounts[1].settings;
        assert_eq!(s.permissions.len(), 2);
        assert!(s.admin_permissions.is_empty());
        assert_eq!(s.timeout, Duration::from_secs(3));
    }

    #[test]
    fn account_section_problems_are_located() {
        let p = problems(
            r#"
[jellyfin]
server = "x"
local_networks = ["10.0.0.0/33"]
timeout_secs = 0

[plex]
url = "http://x"

[oidc]
discovery_url = "ftp://x"
client_id = "c"
client_secret = "a"
client_secret_env = "B"
permissions = [{ action = "read" }]

[emby]
url = "not a url"
[[emby.overrides]]
user = ""
permissions = [{ action = "fly" }]
"#,
        );
        let want = [
            "t.toml:2:1: [jellyfin] needs url",
            "t.toml:3:10: server is not a [jellyfin] key",
            "t.toml:4:19: local_networks: \"10.0.0.0/33\" is not an IP address or CIDR",
            "t.toml:5:16: timeout_secs must be between 1 and 60",
            "t.toml:7:1: [plex] needs server",
            "t.toml:8:7: url is not a [plex] key",
            "t.toml:15:15: permissions is not an [oidc] key",
            "t.toml:14:21: set one of client_secret, client_secret_file and client_secret_env",
            "t.toml:11:17: discovery_url: not an http or https URL",
            "t.toml:20:8: user: must not be empty",
            "t.toml:21:27: action \"fly\"",
            "t.toml:18:7: url: not an http or https URL",
        ];
        for w in want {
            assert!(
                p.iter().any(|p| p.starts_with(w)),
                "missing {w:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), want.len(), "{p:#?}");
    }

    #[test]
    fn oidc_secret_from_file_or_environment() {
        let dir = std::env::temp_dir().join(format!("mtx-auth-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-file\r\n").unwrap();
        let base = "[oidc]\ndiscovery_url = \"http://idp/.well-known/openid-configuration\"\nclient_id = \"c\"\n";
        let secret_of = |line: &str| {
            let c = Config::parse(&format!("{base}{line}\n"), "t.toml").unwrap();
            match &c.accounts[0].kind {
                AccountKind::Oidc { client, .. } => client.client_secret.clone().map(|s| s.0),
                _ => unreachable!(),
            }
        };
        assert_eq!(
            secret_of(&format!(
                "client_secret_file = {:?}",
                file.display().to_string()
            )),
            Some("from-file".into())
        );
        std::env::set_var("MTX_AUTH_UNIT_SECRET", "from-env");
        assert_eq!(
            secret_of("client_secret_env = \"MTX_AUTH_UNIT_SECRET\""),
            Some("from-env".into())
        );
        assert_eq!(secret_of(""), None, "a public client");
        let p = problems(&format!("{base}client_secret_file = \"/nonexistent/x\"\n"));
        assert!(
            p[0].starts_with("t.toml:4:22: client_secret_file: cannot read"),
            "{p:?}"
        );
        let p = problems(&format!(
            "{base}client_secret_env = \"MTX_AUTH_UNSET_VAR_X\"\n"
        ));
        assert!(
            p[0].starts_with("t.toml:4:21: client_secret_env: environment variable"),
            "{p:?}"
        );
        // The secret never appears in Debug output.
        let c = Config::parse(&format!("{base}client_secret = \"hunter2\"\n"), "t.toml").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
