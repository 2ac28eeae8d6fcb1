//! The JWT source: MediaMTX's `authMethod: jwt`, without its failure modes.
//!
//! A token comes from the `token` field (MediaMTX copies the password there) or from the
//! `query` string's `token=` / `jwt=` parameter when it occurs exactly once (MediaMTX leaves
//! HLS and WebRTC tokens there). Only a value shaped like a JWT is this source's business; any
//! other value is left to the other sources.
//!
//! Verification: the header's `alg` must be an asymmetric algorithm that the chosen key's type
//! and its JWK `alg` allow (so `none` and HS256-with-the-RSA-public-key are refused), the
//! signature must check, a header with `crit` is refused (RFC 7515 §4.1.11: we understand no
//! extension, so we cannot know what the issuer meant the token to be limited by), `exp` is
//! required (configurable) with a leeway, `nbf` is honoured, an `iat` in the future beyond the
//! leeway is refused (a token minted by a clock, or a forger, we should not believe), `iss` and
//! `aud` must match when configured. Permissions come from the claim `claim_key` (MediaMTX's
//! strict format) plus those granted by `[[jwt.roles]]`. A verified token is remembered (keyed by
//! a keyed hash of its signature) until its `exp`, so the next request with it costs a lookup
//! rather than a signature check, but only while the key set keeps every key it had when the
//! token was verified (`KeyStore::generation`): a key that leaves the set takes its tokens with
//! it at that refresh.

pub mod config;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use crate::cache::{SecretHasher, TtlMap};
use crate::permission::{self, Action, PathMatcher, Permission};
use crate::request::Request;
use crate::source::jwks::{KeySet, KeyStore};

/// Longest token considered. Keycloak's are 1–2 KiB; 16 KiB is far beyond any real one.
pub const MAX_TOKEN: usize = 16 * 1024;

/// `[jwt]`, checked.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub source: crate::source::jwks::KeySource,
    pub claim_key: String,
    /// Claim holding the identity; `sub` as in MediaMTX.
    pub identity_claim: String,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub require_exp: bool,
    pub leeway: Duration,
    pub fetch: crate::source::jwks::FetchPolicy,
    pub roles: Vec<RoleMapping>,
    /// Longest a verified token is remembered, even if its `exp` is later.
    pub cache_ttl: Duration,
}

/// `[[jwt.roles]]`: a claim value that grants permissions.
#[derive(Debug, Clone)]
pub struct RoleMapping {
    /// Dotted path into the claims, e.g. `realm_access.roles`.
    pub claim: Vec<String>,
    pub value: String,
    pub permissions: Vec<Permission>,
}

pub use crate::decision::JwtError;

/// What this source says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum JwtOutcome {
    /// No JWT-shaped value in the request: other sources decide.
    NoToken,
    Allow {
        identity: String,
        cached: bool,
        /// The first second (since 1970) at which this token is denied: `exp` plus the leeway,
        /// plus one. `None` without `exp`.
        ends_at: Option<i64>,
    },
    Deny(JwtError),
}

/// What a verified token says, for callers outside this module.
#[derive(Debug)]
pub struct VerifiedToken {
    pub identity: String,
    pub permissions: Vec<Permission>,
    /// Time left until `exp`, if it has one.
    pub valid_for: Option<Duration>,
}

/// A verified token's content, as cached.
struct Verified {
    identity: String,
    permissions: Vec<Permission>,
    /// Seconds since the epoch.
    exp: Option<u64>,
    /// The token's `header.payload`, which a cache hit must match exactly.
    signed: Box<str>,
    /// `KeyStore::generation` before the keys that verified it were read; a cache hit needs it
    /// unchanged (no key has left the set since).
    key_generation: u64,
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

pub struct Jwt {
    config: JwtConfig,
    pub keys: Arc<KeyStore>,
    verified: TtlMap<u128, Arc<Verified>>,
    hasher: SecretHasher,
}

impl Jwt {
    pub fn new(config: JwtConfig) -> Self {
        let keys = KeyStore::new(
            config.source.clone(),
            config.issuer.clone(),
            config.fetch.clone(),
        );
        Jwt {
            verified: TtlMap::new(100_000, config.cache_ttl),
            keys: Arc::new(keys),
            hasher: SecretHasher::random(),
            config,
        }
    }

    /// The JWT in a request, if there is one: the `token` field, else a single `token=` or
    /// `jwt=` in the query.
    pub fn find_token<'r>(req: &'r Request) -> Option<std::borrow::Cow<'r, str>> {
        let field = token_field(req);
        if looks_like_jwt(field) {
            return Some(std::borrow::Cow::Borrowed(field));
        }
        req.query_token().filter(|t| looks_like_jwt(t))
    }

    /// Decides a request from its JWT, without fetching keys. `Deny(UnknownKey)` means a
    /// refetch may help: see `KeyStore::refetch_for_unknown_kid`.
    pub fn check(&self, req: &Request, action: Action) -> JwtOutcome {
        // Fast path first: the `token` field of a recently verified request is a cache hit,
        // with no need to look at its shape.
        if let Some(v) = self.cached(token_field(req)) {
            return self.grant(&v, req, action, true);
        }
        let Some(token) = Self::find_token(req) else {
            return JwtOutcome::NoToken;
        };
        if token != token_field(req) {
            if let Some(v) = self.cached(&token) {
                return self.grant(&v, req, action, true);
            }
        }
        match self.verify(&token, unix_now()) {
            Ok(v) => {
                let v = Arc::new(v);
                if let Some((key, _)) = self.cache_key(&token) {
                    self.verified.insert(key, Arc::clone(&v));
                }
                self.grant(&v, req, action, false)
            }
            Err(e) => JwtOutcome::Deny(e),
        }
    }

    /// Verifies a token this process obtained itself (the OIDC password source), with the same
    /// checks and mapping as a client's token. No caching: the caller caches the result.
    pub fn verify_token(&self, token: &str) -> Result<VerifiedToken, JwtError> {
        let v = self.verify(token, unix_now())?;
        Ok(VerifiedToken {
            valid_for: v
                .exp
                .map(|exp| Duration::from_secs(exp.saturating_sub(unix_now()))),
            identity: v.identity,
            permissions: v.permissions,
        })
    }

    /// The cache is keyed by a keyed hash of the token's *signature* segment: the part that
    /// makes it a credential, and much shorter than the whole token (hashing a 1.3 KB Keycloak
    /// token costs more than the rest of a cached decision). The entry keeps the signed part
    /// (header and payload, readable by anyone holding the token anyway) and a hit requires it to
    /// be identical, so a known signature cannot be re-used with another payload.
    fn cache_key<'t>(&self, token: &'t str) -> Option<(u128, &'t str)> {
        let (signed, signature) = token.rsplit_once('.')?;
        if signature.is_empty() {
            return None;
        }
        Some((self.hasher.hash(0, &[signature.as_bytes()]), signed))
    }

    fn cached(&self, token: &str) -> Option<Arc<Verified>> {
        let (key, signed) = self.cache_key(token)?;
        self.verified
            .get(&key)
            .filter(|v| *v.signed == *signed && v.key_generation == self.keys.generation())
    }

    /// Applies a verified token to a request: still unexpired, and permitting this action.
    fn grant(&self, v: &Verified, req: &Request, action: Action, cached: bool) -> JwtOutcome {
        // A cached token may have expired since it was verified.
        let now = unix_now();
        if v.exp
            .is_some_and(|exp| exp.saturating_add(self.config.leeway.as_secs()) < now)
        {
            return JwtOutcome::Deny(JwtError::Expired);
        }
        if !permission::any_matches(&v.permissions, action, &req.path) {
            return JwtOutcome::Deny(JwtError::NotPermitted);
        }
        JwtOutcome::Allow {
            identity: v.identity.clone(),
            cached,
            ends_at: v.exp.map(|exp| {
                i64::try_from(exp.saturating_add(self.config.leeway.as_secs()))
                    .unwrap_or(i64::MAX)
                    .saturating_add(1)
            }),
        }
    }

    fn verify(&self, token: &str, now: u64) -> Result<Verified, JwtError> {
        if token.len() > MAX_TOKEN {
            return Err(JwtError::TooLarge);
        }
        let key_generation = self.keys.generation();
        let keys = self.keys.keys().ok_or(JwtError::KeysUnavailable)?;
        let claims = signed_claims(token, &keys)?;
        self.check_claims(&claims, &keys, now)?;
        let identity = claims
            .get(&self.config.identity_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(JwtError::NoIdentity)?
            .to_owned();
        let permissions = self.permissions(&claims)?;
        Ok(Verified {
            identity,
            permissions,
            exp: claims.get("exp").and_then(Value::as_u64),
            signed: token
                .rsplit_once('.')
                .map_or("", |(signed, _)| signed)
                .into(),
            key_generation,
        })
    }

    fn check_claims(&self, claims: &Value, keys: &KeySet, now: u64) -> Result<(), JwtError> {
        let leeway = self.config.leeway.as_secs();
        match claims.get("exp") {
            None if self.config.require_exp => return Err(JwtError::NoExpiry),
            None => {}
            Some(exp) => {
                let exp = exp.as_u64().ok_or(JwtError::Malformed)?;
                if exp.saturating_add(leeway) < now {
                    return Err(JwtError::Expired);
                }
            }
        }
        if let Some(nbf) = claims.get("nbf") {
            if nbf.as_u64().ok_or(JwtError::Malformed)? > now.saturating_add(leeway) {
                return Err(JwtError::NotYetValid);
            }
        }
        // A token "issued" after now comes from a clock, or a forger, we should not believe; one
        // minted far ahead would stay valid for longer than the issuer's lifetime meant.
        if let Some(iat) = claims.get("iat") {
            if iat.as_u64().ok_or(JwtError::Malformed)? > now.saturating_add(leeway) {
                return Err(JwtError::IssuedInFuture);
            }
        }
        let issuer = self
            .config
            .issuer
            .as_deref()
            .or(keys.discovered_issuer.as_deref());
        if let Some(issuer) = issuer {
            if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
                return Err(JwtError::Issuer);
            }
        }
        if let Some(audience) = &self.config.audience {
            let ok = match claims.get("aud") {
                Some(Value::String(a)) => a == audience,
                Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
                _ => false,
            };
            if !ok {
                return Err(JwtError::Audience);
            }
        }
        Ok(())
    }

    /// The claim's permissions plus those of matching roles. A token with neither is refused.
    fn permissions(&self, claims: &Value) -> Result<Vec<Permission>, JwtError> {
        let mut perms = match claims.get(&self.config.claim_key) {
            None => Vec::new(),
            Some(v) => parse_permission_claim(v)?,
        };
        let mut any_source = claims.get(&self.config.claim_key).is_some();
        for role in &self.config.roles {
            if claim_has_value(claims, &role.claim, &role.value) {
                perms.extend(role.permissions.iter().cloned());
                any_source = true;
            }
        }
        if !any_source || perms.is_empty() {
            return Err(JwtError::NoPermissions);
        }
        Ok(perms)
    }
}

/// The claims of a token whose signature checks against `keys`: the header's `alg` must be an
/// asymmetric algorithm that the chosen key allows, and a header with `crit` is refused. Nothing
/// else is checked (no time, issuer or audience): the caller does, as `[jwt]` does in
/// `check_claims` and the portal does for its ID tokens (`portal::oidc`).
pub fn signed_claims(token: &str, keys: &KeySet) -> Result<Value, JwtError> {
    let header = parse_header(token)?;
    let claims = verify_signature(token, &header, keys)?;
    // Checked once the signature holds, so that a forged token, or one naming an unknown key
    // (which may need a refetch), is reported as such.
    if header.crit {
        return Err(JwtError::CriticalExtension);
    }
    Ok(claims)
}

/// Checks the signature with the key the header names (or, without a `kid`, each key that
/// allows the header's algorithm) and returns the claims.
fn verify_signature(token: &str, header: &Header, keys: &KeySet) -> Result<Value, JwtError> {
    let candidates: Vec<_> = keys
        .keys
        .iter()
        // A key without a kid may sign any token (some JWKS omit kids).
        .filter(|k| header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
        .collect();
    if candidates.is_empty() {
        return Err(JwtError::UnknownKey);
    }
    // Time claims are checked by the caller (`check_claims`), with our own error mapping; here
    // only the signature and the algorithm.
    let mut validation = Validation::new(header.alg);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let mut result = Err(JwtError::Algorithm);
    for key in candidates
        .iter()
        .filter(|k| k.algorithms.contains(&header.alg))
    {
        match jsonwebtoken::decode::<Value>(token, &key.key, &validation) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                result = Err(match e.kind() {
                    ErrorKind::InvalidSignature => JwtError::Signature,
                    ErrorKind::InvalidAlgorithm => JwtError::Algorithm,
                    _ => JwtError::Malformed,
                })
            }
        }
    }
    result
}

/// The request field that carries a token: `token`, or `password` for MediaMTX before v1.12.3,
/// which had no `token` field (since then `token` equals `password` whenever one is given).
fn token_field<'r>(req: &'r Request) -> &'r str {
    if req.token.is_empty() {
        &req.password
    } else {
        &req.token
    }
}

/// The parts of a JWT header we act on.
struct Header {
    alg: Algorithm,
    kid: Option<String>,
    /// The header has a `crit` parameter (of any value): the token is refused.
    crit: bool,
}

/// Only asymmetric algorithms are ever accepted.
const ALLOWED: [(&str, Algorithm); 9] = [
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

fn parse_header(token: &str) -> Result<Header, JwtError> {
    let header = token.split('.').next().ok_or(JwtError::Malformed)?;
    let json: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed)?;
    let alg = json
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed)?;
    let alg = ALLOWED
        .iter()
        .find(|(name, _)| *name == alg)
        .map(|(_, a)| *a)
        .ok_or(JwtError::Algorithm)?;
    let kid = match json.get("kid") {
        None | Some(Value::Null) => None,
        Some(Value::String(k)) => Some(k.clone()),
        Some(_) => return Err(JwtError::Malformed),
    };
    Ok(Header {
        alg,
        kid,
        crit: json.get("crit").is_some(),
    })
}

/// Three dot-separated base64url segments whose first decodes to a JSON object. Anything else is
/// a password or an opaque token for another source.
pub fn looks_like_jwt(s: &str) -> bool {
    let mut parts = s.split('.');
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let b64 = |x: &str| {
        x.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    };
    !h.is_empty()
        && !p.is_empty()
        && b64(h)
        && b64(p)
        && b64(sig)
        && URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .is_some_and(|b| serde_json::from_slice::<serde_json::Map<String, Value>>(&b).is_ok())
}

/// MediaMTX's permission claim: a JSON array of `{action, path}`, or a string holding one.
/// Strict like MediaMTX: an unknown field, `null` or an unknown action refuses the token.
pub fn parse_permission_claim(value: &Value) -> Result<Vec<Permission>, JwtError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Wire {
        action: String,
        #[serde(default)]
        path: String,
    }
    let list: Vec<Wire> = match value {
        Value::String(s) => serde_json::from_str(s),
        other => Vec::<Wire>::deserialize(other),
    }
    .map_err(|_| JwtError::BadPermissions)?;
    list.into_iter()
        .map(|w| {
            Ok(Permission {
                action: w.action.parse().map_err(|_| JwtError::BadPermissions)?,
                path: PathMatcher::parse(&w.path).map_err(|_| JwtError::BadPermissions)?,
            })
        })
        .collect()
}

/// True when the claim at `path` is `value`, or a list containing it.
pub fn claim_has_value(claims: &Value, path: &[String], value: &str) -> bool {
    let found = path.iter().try_fold(claims, |v, key| v.get(key));
    match found {
        Some(Value::String(s)) => s == value,
        Some(Value::Array(list)) => list.iter().any(|v| v.as_str() == Some(value)),
        _ => false,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn permission_claim_as_array_and_string() {
        let arr = json!([{"action": "read", "path": "cam"}, {"action": "publish"}]);
        let perms = parse_permission_claim(&arr).unwrap();
        assert!(permission::any_matches(&perms, Action::Read, "cam"));
        assert!(!permission::any_matches(&perms, Action::Read, "other"));
        assert!(permission::any_matches(&perms, Action::Publish, "anything"));
        let s = Value::String(arr.to_string());
        assert_eq!(parse_permission_claim(&s).unwrap().len(), 2);
    }

    #[test]
    fn permission_claim_is_strict() {
        for bad in [
            json!([{"action": "read", "paths": "cam"}]),
            json!([{"action": "read", "path": null}]),
            json!([{"action": null}]),
            json!([{"action": "write"}]),
            json!([null]),
            json!({"action": "read"}),
            json!("not json"),
            json!([{"action": "read", "path": "~("}]),
        ] {
            assert_eq!(
                parse_permission_claim(&bad).err(),
                Some(JwtError::BadPermissions),
                "{bad}"
            );
        }
    }

    #[test]
    fn jwt_shape() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        assert!(looks_like_jwt(&format!("{h}.eyJ4IjoxfQ.c2ln")));
        assert!(looks_like_jwt(&format!("{h}.eyJ4IjoxfQ.")));
        assert!(!looks_like_jwt("password"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(&format!("{h}.eyJ4IjoxfQ")));
        assert!(!looks_like_jwt(&format!("{h}.eyJ4IjoxfQ.c2ln.x")));
        assert!(!looks_like_jwt(&format!("{h}.e+J4.c2ln")));
    }

    #[test]
    fn header_algorithms() {
        let tok = |h: &str| format!("{}.e30.sig", URL_SAFE_NO_PAD.encode(h));
        assert!(parse_header(&tok(r#"{"alg":"ES256","kid":"k"}"#)).is_ok());
        assert_eq!(
            parse_header(&tok(r#"{"alg":"none"}"#)).err(),
            Some(JwtError::Algorithm)
        );
        assert!(matches!(
            parse_header(&tok(r#"{"alg":"HS256"}"#)),
            Err(JwtError::Algorithm)
        ));
        assert!(matches!(
            parse_header(&tok(r#"{"kid":"k"}"#)),
            Err(JwtError::Malformed)
        ));
    }

    #[test]
    fn role_claim_paths() {
        let claims = json!({"realm_access": {"roles": ["viewer", "streamer"]}, "groups": "admins"});
        let path = |p: &str| p.split('.').map(String::from).collect::<Vec<_>>();
        assert!(claim_has_value(
            &claims,
            &path("realm_access.roles"),
            "streamer"
        ));
        assert!(!claim_has_value(
            &claims,
            &path("realm_access.roles"),
            "admin"
        ));
        assert!(claim_has_value(&claims, &path("groups"), "admins"));
        assert!(!claim_has_value(&claims, &path("missing.x"), "admins"));
    }

    #[test]
    fn token_from_field_or_single_query_parameter() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
        let jwt = format!("{h}.eyJ4IjoxfQ.c2ln");
        let mut req = Request::default();
        assert_eq!(Jwt::find_token(&req), None);
        req.token = jwt.clone().into();
        assert_eq!(Jwt::find_token(&req).as_deref(), Some(jwt.as_str()));
        req.token = String::new().into();
        req.password = jwt.clone().into();
        assert_eq!(Jwt::find_token(&req).as_deref(), Some(jwt.as_str()));
        req.token = "plainpassword".into();
        req.query = format!("a=1&jwt={jwt}").into();
        assert_eq!(Jwt::find_token(&req).as_deref(), Some(jwt.as_str()));
        req.query = format!("token={jwt}").into();
        assert_eq!(Jwt::find_token(&req).as_deref(), Some(jwt.as_str()));
        req.query = format!("token={jwt}&jwt={jwt}").into();
        assert_eq!(Jwt::find_token(&req), None);
        req.query = "token=notajwt".into();
        assert_eq!(Jwt::find_token(&req), None);
    }
}
