//! `[jwt]`'s keys, and the keys it shares with `[oidc]` (how a token is validated and what it
//! grants): read here, beside the source, so the two sections cannot drift apart.

use std::time::Duration;

use crate::config::reader::Table;
use crate::source::jwks::{FetchPolicy, KeySource};
use crate::source::jwt::{JwtConfig, RoleMapping};

const DAY: i64 = 24 * 3600;

/// `[jwt]`, or `None` after reporting what is wrong with it.
pub fn read(mut t: Table<'_>) -> Option<JwtConfig> {
    let errs = t.errs();
    let before = errs.count();
    let jwks_url = t.url("jwks_url");
    let discovery_url = t.url("discovery_url");
    let source = match (t.has("jwks_url"), t.has("discovery_url")) {
        (true, false) => jwks_url.map(KeySource::Jwks),
        (false, true) => discovery_url.map(KeySource::Discovery),
        (true, true) => {
            errs.push(
                t.span_of("discovery_url"),
                "set jwks_url or discovery_url, not both".into(),
            );
            None
        }
        (false, false) => {
            t.problem("[jwt] needs jwks_url or discovery_url".into());
            None
        }
    };
    let pinned_certificate = t.string("jwks_fingerprint").and_then(|f| {
        let https = matches!(&source, Some(KeySource::Jwks(u) | KeySource::Discovery(u))
            if u.starts_with("https://"));
        let pin = parse_fingerprint(&f.value);
        if pin.is_none() {
            errs.push(
                f.span,
                "jwks_fingerprint: not a SHA-256 fingerprint (64 hex digits, colons allowed)"
                    .into(),
            );
        } else if !https && source.is_some() {
            errs.push(
                f.span,
                "jwks_fingerprint pins a TLS certificate, so the key server's URL must be https"
                    .into(),
            );
        }
        pin
    });
    let timeout = t
        .secs("fetch_timeout_secs", 1, 60)
        .unwrap_or(Duration::from_secs(3));
    let refetch_interval = t
        .secs("refetch_interval_secs", 1, DAY)
        .unwrap_or(Duration::from_secs(60));
    let cache_ttl = t
        .secs("cache_ttl_secs", 1, DAY)
        .unwrap_or(Duration::from_secs(300));
    let fetch = FetchPolicy {
        timeout,
        refetch_interval,
        pinned_certificate,
        ..FetchPolicy::default()
    };
    let config = read_shared(&mut t, source, "sub", fetch, cache_ttl);
    t.finish();
    config.filter(|_| errs.count() == before)
}

/// The keys `[jwt]` and `[oidc]` share, completing `fetch` (whose other fields each section
/// sets its own way). `None` without a key source: the caller reported why.
pub fn read_shared(
    t: &mut Table<'_>,
    source: Option<KeySource>,
    default_identity_claim: &str,
    fetch: FetchPolicy,
    cache_ttl: Duration,
) -> Option<JwtConfig> {
    let string = |t: &mut Table<'_>, key| t.string(key).map(|s| s.value);
    let claim_key = string(t, "claim_key").unwrap_or_else(|| "mediamtx_permissions".into());
    let identity_claim =
        string(t, "identity_claim").unwrap_or_else(|| default_identity_claim.into());
    let issuer = string(t, "issuer").filter(|s| !s.is_empty());
    let audience = string(t, "audience").filter(|s| !s.is_empty());
    let require_exp = t.bool("require_exp").unwrap_or(true);
    let leeway = t
        .secs("leeway_secs", 0, 3600)
        .unwrap_or(Duration::from_secs(30));
    let refresh_interval = t
        .secs("refresh_interval_secs", 10, DAY)
        .unwrap_or(Duration::from_secs(15 * 60));
    let max_stale = t
        .secs("max_stale_secs", 0, 30 * DAY)
        .unwrap_or(Duration::from_secs(DAY as u64));
    let roles = read_roles(t);
    Some(JwtConfig {
        source: source?,
        claim_key,
        identity_claim,
        issuer,
        audience,
        require_exp,
        leeway,
        fetch: FetchPolicy {
            refresh_interval,
            max_stale,
            ..fetch
        },
        roles,
        cache_ttl,
    })
}

/// `[[…roles]]` (`[[jwt.roles]]`, `[[oidc.roles]]`, `[[portal.oidc.roles]]`): a claim value that
/// grants permissions.
pub fn read_roles(t: &mut Table<'_>) -> Vec<RoleMapping> {
    let errs = t.errs();
    let mut roles = Vec::new();
    for mut r in t.tables("roles").unwrap_or_default() {
        let claim = r.string("claim");
        let value = r.string("value");
        let permissions = r.permissions("permissions");
        for (key, present) in [
            ("claim", claim.is_some()),
            ("value", value.is_some()),
            ("permissions", permissions.is_some()),
        ] {
            if !present && !r.has(key) {
                r.problem(format!("missing field `{key}`"));
            }
        }
        r.finish();
        let (Some(claim), Some(value)) = (claim, value) else {
            continue;
        };
        let path: Vec<String> = claim.value.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            errs.push(claim.span, "claim: not a dotted claim path".into());
        }
        roles.push(RoleMapping {
            claim: path,
            value: value.value,
            permissions: permissions.unwrap_or_default(),
        });
    }
    roles
}

/// A certificate's SHA-256 as MediaMTX takes it (64 hex digits, any case) or as
/// `openssl x509 -fingerprint -sha256` prints it (pairs separated by colons).
fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    crate::credential::from_hex(&digits)
}
