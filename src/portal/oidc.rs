//! "Sign in with <name>" (`[portal.oidc]`): OpenID Connect's authorization code flow with PKCE
//! (S256), `state` and `nonce`. No actix here: `http` has the two routes.
//!
//! - `GET /login/oidc` ([`Provider::begin`]): a new pending sign-in, kept in the store under the
//!   digest of the pre-sign-in cookie's handle (its `state`, `nonce` and PKCE verifier never
//!   reach the browser but as `state`, `nonce` and the verifier's hash), and the provider's
//!   authorization URL to send the browser to.
//! - `GET /login/oidc/callback` ([`Provider::finish`]): takes the pending sign-in (once), checks
//!   `state`, exchanges the code (with the verifier) at the token endpoint, verifies the ID token
//!   (signature from the provider's key set, `iss`, `aud`/`azp`, `exp`/`iat`, `nonce`), asks
//!   userinfo for what the ID token lacks, and makes the [`Person`] ([`person_of`]).
//!
//! The discovery document is fetched at start and kept; it is fetched again before a sign-in
//! when it is an hour old or when using it failed (the token endpoint did not answer, the key
//! set lacked the ID token's key). The ID token's keys are a [`KeyStore`] over its `jwks_uri`,
//! `[jwt]`'s machinery (unknown `kid` → one refetch). Fail closed: while the provider cannot be
//! reached no sign-in starts or finishes ([`OidcError::Unavailable`], a 503 page). Nothing that
//! is a secret (the code, the tokens, the verifier, the client secret) is logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::permission::Permission;
use crate::portal::config::PortalOidc;
use crate::portal::people::{holdings_of, Grant, Person};
use crate::portal::{digest, new_session_id, PENDING_SECS};
use crate::source::jwks::{FetchPolicy, KeySource, KeyStore};
use crate::source::jwt::{self, claim_has_value, JwtError};
use crate::source::upstream::{self, UpstreamError};
use crate::store::{Store, StoreError};
use crate::time::now_unix;

/// The source's name (`/api/me`'s `source`, the first half of a person's key).
pub const SOURCE: &str = "portal_oidc";
/// The callback's path under `public_url`.
pub const CALLBACK_PATH: &str = "/login/oidc/callback";
/// The store's `kind` of a pending OIDC sign-in.
const PENDING_KIND: &str = "oidc";
/// Timeout of one call to the provider.
const TIMEOUT: Duration = Duration::from_secs(5);
/// A discovery document this old is fetched again before the next sign-in starts.
const REDISCOVER_AFTER: Duration = Duration::from_secs(3600);
/// After a failed discovery, sign-ins are refused at once for this long rather than each
/// waiting for a provider that just did not answer.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Clock skew allowed on the ID token's `exp`, `nbf` and `iat`, in seconds.
const LEEWAY: u64 = 60;
/// Longest code, `state` or ID token taken from the provider.
const MAX_CODE: usize = 4096;

/// Why a sign-in with the provider did not succeed. The texts are what the person reads; the
/// details went to the log where they happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    /// The provider (discovery, keys, token endpoint, userinfo) cannot be reached: 503.
    #[error("cannot reach the identity provider right now; try again shortly")]
    Unavailable,
    /// The provider sent the browser back with an `error` (OAuth's code, sanitised): 401.
    #[error("the identity provider did not sign you in ({0})")]
    Refused(String),
    /// No pending sign-in for this browser: no cookie, expired, or used already: 400.
    #[error("this sign-in has expired, was already used, or was not started in this browser; sign in again")]
    NoPending,
    /// `state` is not the pending sign-in's: 400.
    #[error("this sign-in does not match the one this browser started; sign in again")]
    State,
    /// The code, the token endpoint's answer or the ID token did not check out: 401.
    #[error("the identity provider's answer could not be verified; sign in again")]
    Invalid,
    /// The store failed (logged): 503.
    #[error("cannot record the sign-in right now; try again shortly")]
    Store,
}

impl OidcError {
    /// The HTTP status of the page that says so.
    pub fn status(&self) -> u16 {
        match self {
            OidcError::Unavailable | OidcError::Store => 503,
            OidcError::Refused(_) | OidcError::Invalid => 401,
            OidcError::NoPending | OidcError::State => 400,
        }
    }
}

impl From<StoreError> for OidcError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "portal: store unavailable for an OIDC sign-in");
        OidcError::Store
    }
}

/// A sign-in started: the pre-sign-in cookie's value and where to send the browser.
pub struct Started {
    pub cookie: String,
    pub location: String,
}

/// The callback's query (RFC 6749 §4.1.2). No `Debug`: `code` is a credential.
#[derive(Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    /// RFC 9207's `iss`, when the provider sends it.
    pub iss: Option<String>,
}

impl Callback {
    /// Reads a query string; the first of repeated parameters counts.
    pub fn parse(query: &str) -> Callback {
        let mut cb = Callback::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*k {
                "code" => &mut cb.code,
                "state" => &mut cb.state,
                "error" => &mut cb.error,
                "iss" => &mut cb.iss,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(v.into_owned());
            }
        }
        cb
    }
}

/// What the store keeps while a sign-in is under way.
#[derive(Serialize, Deserialize)]
struct Pending {
    state: String,
    nonce: String,
    verifier: String,
}

/// What the discovery document says, and the keys of its `jwks_uri`.
struct Discovered {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    userinfo_endpoint: Option<String>,
    /// `token_endpoint_auth_methods_supported` (its default: `client_secret_basic`).
    auth_methods: Vec<String>,
    jwks_uri: String,
    keys: Arc<KeyStore>,
    fetched_at: Instant,
    /// Using it failed: fetched again before the next sign-in.
    suspect: AtomicBool,
}

impl Discovered {
    fn fresh(&self) -> bool {
        !self.suspect.load(Ordering::Relaxed) && self.fetched_at.elapsed() < REDISCOVER_AFTER
    }

    fn supports(&self, method: &str) -> bool {
        self.auth_methods.iter().any(|m| m == method)
    }
}

/// The token endpoint's answer. No `Debug`: it holds tokens.
struct Tokens {
    id_token: String,
    access_token: Option<String>,
}

/// `[portal.oidc]`'s provider: its discovery document and keys, and the client's settings.
pub struct Provider {
    config: PortalOidc,
    redirect_uri: String,
    http: reqwest::Client,
    current: ArcSwapOption<Discovered>,
    /// One discovery at a time; the others wait for its result.
    discovering: tokio::sync::Mutex<()>,
    last_failure: Mutex<Option<Instant>>,
    /// The token endpoint refused `client_secret_basic` and took `client_secret_post`.
    secret_in_body: AtomicBool,
}

impl Provider {
    /// The provider of `config`, for a portal at `public_url` (no trailing slash). Within a
    /// runtime, its discovery document is fetched at once in the background (retried until it
    /// loads), so that the first person does not wait and a wrong URL shows in the log at start.
    pub fn new(config: PortalOidc, public_url: &str) -> Arc<Provider> {
        let provider = Arc::new(Provider {
            redirect_uri: format!("{public_url}{CALLBACK_PATH}"),
            config,
            http: upstream::client(TIMEOUT),
            current: ArcSwapOption::empty(),
            discovering: tokio::sync::Mutex::new(()),
            last_failure: Mutex::new(None),
            secret_in_body: AtomicBool::new(false),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(Provider::warm(Arc::downgrade(&provider)));
        }
        provider
    }

    /// Fetches the discovery document until it loads (or the portal is gone).
    async fn warm(provider: Weak<Provider>) {
        let mut wait = Duration::from_secs(5);
        loop {
            let Some(p) = provider.upgrade() else { return };
            if p.discovered().await.is_ok() {
                return;
            }
            drop(p);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(300));
        }
    }

    /// Starts a sign-in: a pending sign-in in the store under a new handle's digest, and the
    /// provider's authorization URL.
    pub async fn begin(&self, store: &Store) -> Result<Started, OidcError> {
        let d = self.discovered().await?;
        let pending = Pending {
            state: random_string(),
            nonce: random_string(),
            verifier: random_string(),
        };
        let (cookie, handle) = new_session_id();
        let data = serde_json::to_string(&pending).map_err(|_| OidcError::Store)?;
        store
            .put_pending(&handle, PENDING_KIND, &data, now_unix() + PENDING_SECS)
            .await?;
        let mut url = reqwest::Url::parse(&d.authorization_endpoint).map_err(|_| {
            // Checked when discovered; unreachable unless the document changes meaning.
            OidcError::Unavailable
        })?;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.redirect_uri)
            .append_pair("scope", &scope(&self.config.scopes))
            .append_pair("state", &pending.state)
            .append_pair("nonce", &pending.nonce)
            .append_pair("code_challenge", &pkce_challenge(&pending.verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(Started {
            cookie,
            location: url.into(),
        })
    }

    /// Finishes a sign-in: the person the provider vouches for. `cookie` is the pre-sign-in
    /// cookie's value, if the browser sent one.
    pub async fn finish(
        &self,
        store: &Store,
        cookie: Option<&str>,
        callback: &Callback,
    ) -> Result<Person, OidcError> {
        let cookie = cookie
            .filter(|c| !c.is_empty() && c.len() <= 100)
            .ok_or(OidcError::NoPending)?;
        // Taken whatever follows: a pending sign-in is used once, well or badly.
        let data = store
            .take_pending(&digest(cookie), PENDING_KIND, now_unix())
            .await?
            .ok_or(OidcError::NoPending)?;
        let pending: Pending = serde_json::from_str(&data).map_err(|_| {
            tracing::warn!("portal: a pending OIDC sign-in does not read back");
            OidcError::NoPending
        })?;
        if let Some(error) = &callback.error {
            let error = oauth_error_code(error);
            tracing::info!(%error, "portal: the identity provider did not sign the person in");
            return Err(OidcError::Refused(error));
        }
        let state = callback.state.as_deref().unwrap_or_default();
        if !crate::credential::ct_eq(state.as_bytes(), pending.state.as_bytes()) {
            tracing::info!("portal: an OIDC callback with the wrong state was refused");
            return Err(OidcError::State);
        }
        let d = self.discovered_for_finish().await?;
        if callback.iss.as_ref().is_some_and(|iss| *iss != d.issuer) {
            tracing::warn!("portal: an OIDC callback named another issuer (iss); refused");
            return Err(OidcError::Invalid);
        }
        let code = callback
            .code
            .as_deref()
            .filter(|c| !c.is_empty() && c.len() <= MAX_CODE)
            .ok_or_else(|| {
                tracing::info!("portal: an OIDC callback without a code was refused");
                OidcError::Invalid
            })?;
        let tokens = self.exchange(&d, code, &pending.verifier).await?;
        let mut claims = self
            .verify_id_token(&d, &tokens.id_token, &pending.nonce)
            .await?;
        if wants_userinfo(&self.config, &claims) {
            if let (Some(endpoint), Some(access)) = (&d.userinfo_endpoint, &tokens.access_token) {
                let info = self.userinfo(&d, endpoint, access).await?;
                merge_claims(&mut claims, info)?;
            }
        }
        person_of(&self.config, &claims).ok_or_else(|| {
            tracing::warn!("portal: the ID token has no usable sub");
            OidcError::Invalid
        })
    }

    /// The discovery document, fetched again when it is old or suspect; `Unavailable` when it
    /// cannot be had.
    async fn discovered(&self) -> Result<Arc<Discovered>, OidcError> {
        if let Some(d) = self.current.load_full().filter(|d| d.fresh()) {
            return Ok(d);
        }
        let _one_at_a_time = self.discovering.lock().await;
        if let Some(d) = self.current.load_full().filter(|d| d.fresh()) {
            return Ok(d);
        }
        let recent_failure = self
            .last_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|t| t.elapsed() < RETRY_AFTER);
        if recent_failure {
            return Err(OidcError::Unavailable);
        }
        match self.discover().await {
            Ok(d) => {
                tracing::info!(issuer = %d.issuer, "portal: [portal.oidc] provider discovered");
                let d = Arc::new(d);
                self.current.store(Some(Arc::clone(&d)));
                Ok(d)
            }
            Err(e) => {
                *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                tracing::warn!(error = %e, "portal: [portal.oidc] discovery failed; no sign-in with the provider until it succeeds");
                Err(OidcError::Unavailable)
            }
        }
    }

    /// The discovery document a callback finishes with: the one its sign-in started with when
    /// it is still the current one, even if it has just become an hour old.
    async fn discovered_for_finish(&self) -> Result<Arc<Discovered>, OidcError> {
        match self.current.load_full() {
            Some(d) if !d.suspect.load(Ordering::Relaxed) => Ok(d),
            _ => self.discovered().await,
        }
    }

    async fn discover(&self) -> Result<Discovered, String> {
        let doc = self
            .get_json(&self.config.discovery_url)
            .await
            .map_err(|e| format!("discovery document: {e}"))?;
        let text = |key: &str| {
            doc.get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let url = |key: &str| {
            let value = text(key).ok_or_else(|| format!("the discovery document has no {key}"))?;
            match reqwest::Url::parse(&value) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => Ok(value),
                _ => Err(format!(
                    "the discovery document's {key} is not an http(s) URL"
                )),
            }
        };
        let issuer = text("issuer").ok_or("the discovery document has no issuer")?;
        let expected = self
            .config
            .discovery_url
            .trim_end_matches("/.well-known/openid-configuration");
        if issuer.trim_end_matches('/') != expected.trim_end_matches('/') {
            // OpenID Connect Discovery §4.3 wants them equal; some providers differ in form.
            // ID tokens must carry this issuer in any case.
            tracing::warn!(%issuer, "portal: [portal.oidc] the discovery document's issuer is not the one its URL names");
        }
        let authorization_endpoint = url("authorization_endpoint")?;
        let token_endpoint = url("token_endpoint")?;
        let jwks_uri = url("jwks_uri")?;
        let userinfo_endpoint = url("userinfo_endpoint").ok();
        let auth_methods = match doc.get("token_endpoint_auth_methods_supported") {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => vec!["client_secret_basic".to_owned()],
        };
        if let Some(Value::Array(methods)) = doc.get("code_challenge_methods_supported") {
            if !methods.iter().any(|m| m.as_str() == Some("S256")) {
                tracing::warn!("portal: [portal.oidc] the provider does not list PKCE S256 among its code_challenge_methods_supported; sign-ins may fail");
            }
        }
        // The keys: the same store while jwks_uri stays the same (its keys are refreshed).
        let keys = match self.current.load_full() {
            Some(old) if old.jwks_uri == jwks_uri => Arc::clone(&old.keys),
            _ => Arc::new(KeyStore::new(
                KeySource::Jwks(jwks_uri.clone()),
                None,
                FetchPolicy {
                    timeout: TIMEOUT,
                    ..FetchPolicy::default()
                },
            )),
        };
        keys.refresh()
            .await
            .map_err(|e| format!("key set (jwks_uri): {e}"))?;
        Ok(Discovered {
            issuer,
            authorization_endpoint,
            token_endpoint,
            userinfo_endpoint,
            auth_methods,
            jwks_uri,
            keys,
            fetched_at: Instant::now(),
            suspect: AtomicBool::new(false),
        })
    }

    async fn get_json(&self, url: &str) -> Result<Value, UpstreamError> {
        let resp = self
            .http
            .get(url)
            .header("Accept", "application/json")
            .send()
            .await?;
        upstream::success_json(resp).await
    }

    /// Marks the discovery document suspect (fetched again before the next sign-in) and says
    /// the provider is unavailable.
    fn provider_down(&self, d: &Discovered, what: &str, e: &UpstreamError) -> OidcError {
        d.suspect.store(true, Ordering::Relaxed);
        tracing::warn!(error = %e, "portal: [portal.oidc] {what} failed");
        OidcError::Unavailable
    }

    /// The code for tokens at the token endpoint, with the PKCE verifier.
    async fn exchange(
        &self,
        d: &Discovered,
        code: &str,
        verifier: &str,
    ) -> Result<Tokens, OidcError> {
        let secret = self.config.client_secret.as_ref();
        let mut in_body = secret.is_some()
            && (self.secret_in_body.load(Ordering::Relaxed)
                || (!d.supports("client_secret_basic") && d.supports("client_secret_post")));
        let (mut status, mut body) = self
            .token_request(d, code, verifier, in_body)
            .await
            .map_err(|e| self.provider_down(d, "the token endpoint", &e))?;
        // Some providers take the secret in the body only; the refusal comes before the code is
        // looked at, so the code is still good for a second try.
        let error = body.get("error").and_then(Value::as_str);
        if status == 401
            && error == Some("invalid_client")
            && secret.is_some()
            && !in_body
            && d.supports("client_secret_post")
        {
            in_body = true;
            (status, body) = self
                .token_request(d, code, verifier, in_body)
                .await
                .map_err(|e| self.provider_down(d, "the token endpoint", &e))?;
            if status == 200 {
                self.secret_in_body.store(true, Ordering::Relaxed);
                tracing::info!("portal: [portal.oidc] the token endpoint takes the client secret in the body (client_secret_post)");
            }
        }
        if status >= 500 {
            return Err(self.provider_down(
                d,
                "the token endpoint",
                &UpstreamError::Status(status),
            ));
        }
        if status != 200 {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| format!("HTTP {status}"), oauth_error_code);
            // invalid_grant: the code was used, expired, or its verifier or redirect_uri do not
            // match; invalid_client: client_id or client_secret.
            tracing::warn!(%error, "portal: [portal.oidc] the token endpoint refused the code");
            return Err(OidcError::Invalid);
        }
        let id_token = body
            .get("id_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= jwt::MAX_TOKEN)
            .ok_or_else(|| {
                tracing::warn!("portal: [portal.oidc] the token endpoint's answer has no ID token (is \"openid\" among the client's scopes?)");
                OidcError::Invalid
            })?
            .to_owned();
        let bearer = body
            .get("token_type")
            .and_then(Value::as_str)
            .is_none_or(|t| t.eq_ignore_ascii_case("bearer"));
        let access_token = body
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && bearer)
            .map(str::to_owned);
        Ok(Tokens {
            id_token,
            access_token,
        })
    }

    async fn token_request(
        &self,
        d: &Discovered,
        code: &str,
        verifier: &str,
        secret_in_body: bool,
    ) -> Result<(u16, Value), UpstreamError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_uri.as_str()),
            ("code_verifier", verifier),
        ];
        let mut request = self
            .http
            .post(&d.token_endpoint)
            .header("Accept", "application/json");
        match &self.config.client_secret {
            None => form.push(("client_id", &self.config.client_id)),
            Some(secret) if secret_in_body => {
                form.push(("client_id", &self.config.client_id));
                form.push(("client_secret", &secret.0));
            }
            // RFC 6749 §2.3.1: both form-encoded, then HTTP Basic.
            Some(secret) => {
                request = request.basic_auth(
                    form_encoded(&self.config.client_id),
                    Some(form_encoded(&secret.0)),
                );
            }
        }
        let resp = request.form(&form).send().await?;
        let status = resp.status().as_u16();
        let body = match upstream::read_json(resp).await {
            Ok(body) => body,
            // An error page that is not JSON says as much as its status.
            Err(_) if status != 200 => Value::Null,
            Err(e) => return Err(e),
        };
        Ok((status, body))
    }

    /// The ID token's claims, once its signature and claims check out.
    async fn verify_id_token(
        &self,
        d: &Discovered,
        token: &str,
        nonce: &str,
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let refused = |reason: &dyn std::fmt::Display| {
            tracing::warn!(%reason, "portal: [portal.oidc] the ID token was refused");
            OidcError::Invalid
        };
        let Some(keys) = d.keys.keys() else {
            d.suspect.store(true, Ordering::Relaxed);
            tracing::warn!("portal: [portal.oidc] no usable key set; discovery runs again");
            return Err(OidcError::Unavailable);
        };
        let claims = match jwt::signed_claims(token, &keys) {
            Err(JwtError::UnknownKey) if d.keys.refetch_for_unknown_kid().await => {
                let keys = d.keys.keys().ok_or(OidcError::Unavailable)?;
                jwt::signed_claims(token, &keys)
            }
            Err(JwtError::UnknownKey) => {
                // Perhaps a new jwks_uri: discovery runs again before the next sign-in.
                d.suspect.store(true, Ordering::Relaxed);
                Err(JwtError::UnknownKey)
            }
            other => other,
        }
        .map_err(|e| refused(&e))?;
        let Value::Object(claims) = claims else {
            return Err(refused(&"its claims are not an object"));
        };
        check_id_claims(
            &claims,
            &d.issuer,
            &self.config.client_id,
            nonce,
            now_unix().max(0) as u64,
        )
        .map_err(|reason| refused(&reason))?;
        Ok(claims)
    }

    /// The userinfo endpoint's claims for the access token.
    async fn userinfo(
        &self,
        d: &Discovered,
        endpoint: &str,
        access_token: &str,
    ) -> Result<serde_json::Map<String, Value>, OidcError> {
        let resp = self
            .http
            .get(endpoint)
            .bearer_auth(access_token)
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| self.provider_down(d, "userinfo", &e.into()))?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err(self.provider_down(d, "userinfo", &UpstreamError::Status(status)));
        }
        if status != 200 {
            tracing::warn!(
                status,
                "portal: [portal.oidc] userinfo refused the access token"
            );
            return Err(OidcError::Invalid);
        }
        match upstream::read_json(resp).await {
            Ok(Value::Object(info)) => Ok(info),
            _ => {
                tracing::warn!("portal: [portal.oidc] userinfo's answer is not a JSON object (signed userinfo is not supported)");
                Err(OidcError::Invalid)
            }
        }
    }
}

/// `openid` and the configured scopes, once each.
fn scope(configured: &[String]) -> String {
    let mut scopes = vec!["openid"];
    for s in configured.iter().flat_map(|s| s.split_whitespace()) {
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    scopes.join(" ")
}

/// 256 random bits, base64url: a `state`, a `nonce`, a PKCE verifier (43 characters, within
/// RFC 7636's 43 to 128).
fn random_string() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// RFC 7636's S256: base64url(SHA-256(verifier)).
fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

fn form_encoded(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An OAuth error code as we repeat it (page, log): its safe characters, at most 64. The
/// callback's `error` is whatever the link that brought the browser said.
fn oauth_error_code(error: &str) -> String {
    let code: String = error
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect();
    if code.is_empty() {
        "error".into()
    } else {
        code
    }
}

/// A numeric date claim (seconds; some providers send fractions).
fn seconds(claims: &serde_json::Map<String, Value>, key: &str) -> Result<Option<u64>, String> {
    match claims.get(key) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
            .map(Some)
            .ok_or_else(|| format!("{key} is not a number")),
    }
}

/// OpenID Connect Core §3.1.3.7 on a signed ID token's claims: `iss` the discovered issuer,
/// `aud` holding our client id (with several audiences, `azp` must be present; when present it
/// must be our client id), `exp` not past, `iat` not ahead (with the leeway), `nbf` honoured,
/// `nonce` the pending sign-in's (compared in constant time), `sub` present.
fn check_id_claims(
    claims: &serde_json::Map<String, Value>,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    now: u64,
) -> Result<(), String> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(JwtError::Issuer.to_string());
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&client_id) {
        return Err(JwtError::Audience.to_string());
    }
    match claims.get("azp").map(Value::as_str) {
        Some(Some(azp)) if azp == client_id => {}
        Some(_) => return Err("token azp is not our client id".into()),
        None if audiences.len() > 1 => return Err("token has several audiences and no azp".into()),
        None => {}
    }
    let exp = seconds(claims, "exp")?.ok_or_else(|| JwtError::NoExpiry.to_string())?;
    if exp.saturating_add(LEEWAY) < now {
        return Err(JwtError::Expired.to_string());
    }
    let iat = seconds(claims, "iat")?.ok_or("token has no iat")?;
    if iat > now.saturating_add(LEEWAY) {
        return Err(JwtError::IssuedInFuture.to_string());
    }
    if seconds(claims, "nbf")?.is_some_and(|nbf| nbf > now.saturating_add(LEEWAY)) {
        return Err(JwtError::NotYetValid.to_string());
    }
    let theirs = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
    if !crate::credential::ct_eq(theirs.as_bytes(), nonce.as_bytes()) {
        return Err("token nonce is not the sign-in's".into());
    }
    match claims.get("sub").and_then(Value::as_str) {
        Some(sub) if !sub.is_empty() && sub.len() <= 255 => Ok(()),
        _ => Err(JwtError::NoIdentity.to_string()),
    }
}

/// Whether userinfo may know what the ID token does not say: the person's names, e-mail (and
/// whether it is verified), or a claim a role is matched on.
fn wants_userinfo(config: &PortalOidc, claims: &serde_json::Map<String, Value>) -> bool {
    ["preferred_username", "email", "email_verified"]
        .iter()
        .any(|k| !claims.contains_key(*k))
        || config
            .roles
            .iter()
            .any(|r| r.claim.first().is_some_and(|c| !claims.contains_key(c)))
}

/// Adds userinfo's claims to the ID token's (which win: they are signed). Userinfo must be about
/// the same `sub` (OpenID Connect Core §5.3.2).
fn merge_claims(
    claims: &mut serde_json::Map<String, Value>,
    info: serde_json::Map<String, Value>,
) -> Result<(), OidcError> {
    if info.get("sub") != claims.get("sub") {
        tracing::warn!("portal: [portal.oidc] userinfo is about another sub; refused");
        return Err(OidcError::Invalid);
    }
    for (k, v) in info {
        claims.entry(k).or_insert(v);
    }
    Ok(())
}

/// The person the claims (ID token and userinfo) describe: `sub` their id; called by
/// `preferred_username`, else `email`, else `sub`; an e-mail only when `email_verified` is true
/// (only such an e-mail may match `admin_emails`); holding `[portal.oidc] permissions` and those
/// of each `[[portal.oidc.roles]]` the claims match (as `[[jwt.roles]]` are). `admin` is for the
/// caller to decide. `None` without a `sub`.
pub fn person_of(config: &PortalOidc, claims: &serde_json::Map<String, Value>) -> Option<Person> {
    let text = |key: &str| {
        claims
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())?;
    let verified = matches!(claims.get("email_verified"), Some(Value::Bool(true)))
        || claims.get("email_verified").and_then(Value::as_str) == Some("true");
    let email = text("email").filter(|_| verified).map(str::to_owned);
    let name = text("preferred_username")
        .or_else(|| text("email"))
        .unwrap_or(sub)
        .to_owned();
    let as_value = Value::Object(claims.clone());
    let mut permissions: Vec<Permission> = config.permissions.clone();
    for role in &config.roles {
        if claim_has_value(&as_value, &role.claim, &role.value) {
            permissions.extend(role.permissions.iter().cloned());
        }
    }
    Some(Person {
        source: SOURCE.into(),
        id: sub.to_owned(),
        name,
        email,
        admin: false,
        holds: holdings_of(&permissions, Grant::PortalOidc),
        recheck: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::{Action, PathMatcher};
    use crate::source::jwt::RoleMapping;
    use serde_json::json;

    fn config() -> PortalOidc {
        let perm = |action: Action, path: &str| Permission {
            action,
            path: PathMatcher::parse(path).unwrap(),
        };
        PortalOidc {
            discovery_url: "https://idp.test/.well-known/openid-configuration".into(),
            client_id: "mtx".into(),
            client_secret: None,
            name: "IdP".into(),
            scopes: vec!["profile".into(), "email groups".into(), "openid".into()],
            permissions: vec![perm(Action::Read, "lobby")],
            roles: vec![RoleMapping {
                claim: vec!["groups".into()],
                value: "streamers".into(),
                permissions: vec![perm(Action::Publish, "~^live/")],
            }],
        }
    }

    fn map(v: Value) -> serde_json::Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn people_are_named_and_granted_from_their_claims() {
        let c = config();
        let jane = person_of(
            &c,
            &map(
                json!({"sub": "s-1", "preferred_username": "jane", "email": "Jane@Example.com",
                         "email_verified": true, "groups": ["viewers", "streamers"]}),
            ),
        )
        .unwrap();
        assert_eq!(jane.key(), "portal_oidc:s-1");
        assert_eq!(jane.name, "jane");
        assert_eq!(jane.email.as_deref(), Some("Jane@Example.com"));
        let holds: Vec<_> = jane
            .holds
            .iter()
            .map(|h| (h.action.as_str(), h.path.as_str(), &h.grant))
            .collect();
        assert_eq!(
            holds,
            [
                ("read", "lobby", &Grant::PortalOidc),
                ("publish", "~^live/", &Grant::PortalOidc)
            ]
        );
        // No verified e-mail, no groups: named by e-mail, holding the section's permissions.
        let sam = person_of(
            &c,
            &map(
                json!({"sub": "s-2", "email": "sam@example.com", "email_verified": false,
                         "groups": "viewers"}),
            ),
        )
        .unwrap();
        assert_eq!((sam.name.as_str(), sam.email), ("sam@example.com", None));
        assert_eq!(sam.holds.len(), 1);
        let anon = person_of(&c, &map(json!({"sub": "s-3", "email_verified": "true"}))).unwrap();
        assert_eq!((anon.name.as_str(), anon.email), ("s-3", None));
        assert!(person_of(&c, &map(json!({"preferred_username": "x"}))).is_none());
        assert!(person_of(&c, &map(json!({"sub": ""}))).is_none());
    }

    #[test]
    fn id_token_claims_are_checked() {
        let now = 1_700_000_000u64;
        let good = json!({"iss": "https://idp.test", "aud": "mtx", "sub": "s-1", "nonce": "n1",
                          "exp": now + 300, "iat": now});
        let check = |v: Value| check_id_claims(&map(v), "https://idp.test", "mtx", "n1", now);
        assert_eq!(check(good.clone()), Ok(()));
        let with = |key: &str, value: Value| {
            let mut v = good.clone();
            v[key] = value;
            v
        };
        let without = |key: &str| {
            let mut v = good.clone();
            v.as_object_mut().unwrap().remove(key);
            v
        };
        let mut two = with("aud", json!(["other", "mtx"]));
        assert!(check(two.clone()).is_err(), "several audiences need azp");
        two["azp"] = json!("mtx");
        assert_eq!(check(two), Ok(()));
        assert_eq!(check(with("aud", json!(["mtx"]))), Ok(()));
        assert_eq!(check(with("exp", json!(now - 30))), Ok(()), "leeway");
        assert_eq!(check(with("exp", json!(now as f64 + 0.5))), Ok(()));
        for bad in [
            with("iss", json!("https://evil.test")),
            with("aud", json!("other")),
            with("aud", json!(["other"])),
            with("azp", json!("other")),
            with("exp", json!(now - 61)),
            with("iat", json!(now + 61)),
            with("nbf", json!(now + 61)),
            with("nonce", json!("n2")),
            with("sub", json!("")),
            with("exp", json!("soon")),
            without("exp"),
            without("iat"),
            without("nonce"),
            without("sub"),
            without("iss"),
        ] {
            assert!(check(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn pkce_scope_and_callback() {
        // RFC 7636, appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        let v = random_string();
        assert_eq!(v.len(), 43);
        assert_ne!(v, random_string());
        assert_eq!(scope(&config().scopes), "openid profile email groups");
        assert_eq!(scope(&[]), "openid");
        let cb = Callback::parse("code=a%2Bb&state=s1&state=s2&iss=https%3A%2F%2Fidp.test&x=1");
        assert_eq!(cb.code.as_deref(), Some("a+b"));
        assert_eq!(cb.state.as_deref(), Some("s1"));
        assert_eq!(cb.iss.as_deref(), Some("https://idp.test"));
        assert!(cb.error.is_none());
        assert_eq!(oauth_error_code("access_denied"), "access_denied");
        assert_eq!(oauth_error_code("<script>\n"), "script");
        assert_eq!(oauth_error_code("\u{1b}"), "error");
    }

    #[test]
    fn userinfo_adds_to_the_id_token_about_the_same_sub() {
        let mut claims = map(json!({"sub": "s-1", "email": "a@x", "groups": ["a"]}));
        merge_claims(
            &mut claims,
            map(json!({"sub": "s-1", "email": "b@x", "email_verified": true, "groups": ["b"]})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(claims.clone()),
            json!({"sub": "s-1", "email": "a@x", "email_verified": true, "groups": ["a"]})
        );
        assert!(merge_claims(&mut claims, map(json!({"sub": "s-2"}))).is_err());
        assert!(merge_claims(&mut claims, map(json!({"email": "c@x"}))).is_err());
        let c = config();
        assert!(wants_userinfo(&c, &map(json!({"sub": "s"}))));
        assert!(!wants_userinfo(
            &c,
            &map(json!({"sub": "s", "preferred_username": "p", "email": "e",
                         "email_verified": true, "groups": []}))
        ));
    }
}
