//! The JWT key set: fetched from a JWKS URL (or found through an OIDC discovery document), kept
//! in memory, refreshed in the background, and refetched on demand when a token names an
//! unknown key id.
//!
//! MediaMTX's failure modes are what this module is for: it never refetches on an unknown `kid`
//! (so key rotation breaks logins for up to an hour) and forgets its keys when a fetch fails.
//! Here an unknown `kid` triggers at most one refetch per `refetch_interval`, however many such
//! tokens arrive (so a client cannot cause a fetch storm), and the last good keys keep working
//! through an outage for `max_stale`, with a warning per failed fetch. Nothing here ever allows a
//! token: an error only means fewer keys.
//!
//! A request that triggers such a refetch waits for it at most `UNKNOWN_KID_WAIT`: MediaMTX
//! authenticates path requests inside one loop, so a hanging key server must not stall every
//! stream for a fetch timeout. The fetch goes on in the background and its keys serve later
//! requests.
//!
//! `generation` changes whenever a new key set lacks a key that the one it replaces had, so
//! that tokens cached as verified by a key that is gone stop working at that refresh.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::source::upstream::{self, UpstreamError};

pub use crate::source::upstream::MAX_DOCUMENT;

/// Longest a request waits for the key refetch its unknown `kid` caused. MediaMTX checks path
/// requests one at a time in its path manager, so a key server that hangs for the whole fetch
/// timeout would stall every stream on the server; a deny now is better. The fetch itself goes
/// on, and the keys it brings serve later requests.
pub const UNKNOWN_KID_WAIT: Duration = Duration::from_millis(250);

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Jwks(String),
    /// An OIDC discovery document; its `jwks_uri` holds the keys and its `issuer` is used when
    /// no issuer is configured.
    Discovery(String),
}

/// Timing of fetches.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Timeout of one HTTP fetch.
    pub timeout: Duration,
    /// Regular refresh.
    pub refresh_interval: Duration,
    /// Minimum time between fetches caused by unknown key ids.
    pub refetch_interval: Duration,
    /// How long the last good keys are used when fetches fail.
    pub max_stale: Duration,
    /// `jwks_fingerprint`: the SHA-256 of the one certificate the key server may present.
    pub pinned_certificate: Option<[u8; 32]>,
}

impl Default for FetchPolicy {
    /// `[jwt]`'s defaults.
    fn default() -> Self {
        FetchPolicy {
            timeout: Duration::from_secs(3),
            refresh_interval: Duration::from_secs(15 * 60),
            refetch_interval: Duration::from_secs(60),
            max_stale: Duration::from_secs(24 * 3600),
            pinned_certificate: None,
        }
    }
}

/// One usable verification key.
pub struct Key {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// Algorithms this key may verify: from the JWK's `alg`, else everything its type allows.
    pub algorithms: Vec<Algorithm>,
    /// SHA-256 of the JWK as published: two key sets hold the same key when these are equal.
    /// (Any change to the JWK counts as another key: at worst cached tokens are verified again.)
    pub id: [u8; 32],
}

/// A fetched key set.
pub struct KeySet {
    pub keys: Vec<Key>,
    /// The discovery document's issuer, if keys came through one.
    pub discovered_issuer: Option<String>,
    /// The discovery document's `token_endpoint`, for the OIDC password source.
    pub token_endpoint: Option<String>,
    pub fetched_at: Instant,
}

/// Why a fetch failed; logged, never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("not a valid document: {0}")]
    Invalid(String),
    #[error(
        "discovery document issuer {found:?} differs from the configured issuer {configured:?}"
    )]
    IssuerMismatch { found: String, configured: String },
    #[error("no usable signing key (RSA, EC P-256/P-384 or Ed25519) in the key set")]
    NoKeys,
}

/// The keys and the machinery that keeps them fresh.
pub struct KeyStore {
    source: KeySource,
    configured_issuer: Option<String>,
    policy: FetchPolicy,
    http: reqwest::Client,
    current: ArcSwapOption<KeySet>,
    /// Serialises fetches, so concurrent unknown-kid tokens share one.
    fetching: tokio::sync::Mutex<()>,
    last_on_demand: Mutex<Option<Instant>>,
    /// Counts finished fetches, successful or not: a request waiting for an on-demand fetch
    /// watches it.
    fetched: tokio::sync::watch::Sender<u64>,
    /// Bumped whenever an installed key set lacks a key of the set it replaces (see
    /// `generation`).
    generation: AtomicU64,
    /// Fetches that failed since start; for `/readyz` and metrics.
    pub failures: AtomicU64,
    pub fetches: AtomicU64,
}

impl KeyStore {
    pub fn new(source: KeySource, configured_issuer: Option<String>, policy: FetchPolicy) -> Self {
        let http = match policy.pinned_certificate {
            Some(pin) => upstream::pinned_client(policy.timeout, pin),
            None => upstream::client(policy.timeout),
        };
        KeyStore {
            source,
            configured_issuer,
            policy,
            http,
            current: ArcSwapOption::empty(),
            fetching: tokio::sync::Mutex::new(()),
            last_on_demand: Mutex::new(None),
            fetched: tokio::sync::watch::Sender::new(0),
            generation: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
        }
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    /// The keys to verify with, unless none were ever loaded or the last good ones are older
    /// than `max_stale`.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.current
            .load_full()
            .filter(|k| k.fetched_at.elapsed() <= self.policy.max_stale)
    }

    /// Age of the last good key set, stale or not.
    pub fn age(&self) -> Option<Duration> {
        self.current.load().as_ref().map(|k| k.fetched_at.elapsed())
    }

    /// True once a key set has loaded.
    pub fn is_ready(&self) -> bool {
        self.keys().is_some()
    }

    /// Changes whenever a key that verified tokens may have left the key set. A token verified
    /// while this had one value must not be trusted from a cache once it has another: its key
    /// may be gone (rotated out, or withdrawn because it leaked). One atomic load, for the
    /// cached hot path. Read it *before* `keys()`: a change after that read then invalidates
    /// what was verified with the keys read.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Installs a key set (a fetch's, or directly in tests and benches that run without a
    /// server). If it lacks a key of the set it replaces, `generation` changes.
    pub fn install(&self, keys: KeySet) {
        let new = Arc::new(keys);
        let old = self.current.swap(Some(Arc::clone(&new)));
        let dropped = old.is_some_and(|old| {
            old.keys
                .iter()
                .any(|k| !new.keys.iter().any(|n| n.id == k.id))
        });
        if dropped {
            // After the swap: whoever reads the new generation then loads the new keys.
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// Fetches now and installs the result. On failure the old keys stay.
    pub async fn refresh(&self) -> Result<(), FetchError> {
        let _one_at_a_time = self.fetching.lock().await;
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let result = self.fetch().await;
        // Still holding the lock: a waiter that saw the lock taken is sure to see this.
        self.fetched.send_modify(|n| *n += 1);
        match result {
            Ok(set) => {
                tracing::info!(keys = set.keys.len(), "jwt: key set loaded");
                self.install(set);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                let age = self
                    .current
                    .load()
                    .as_ref()
                    .map(|k| k.fetched_at.elapsed().as_secs());
                tracing::warn!(error = %e, last_good_age_secs = ?age, "jwt: key set fetch failed; keeping the last good keys");
                Err(e)
            }
        }
    }

    /// Called when a token names a key id we do not have. Starts a fetch unless one such fetch
    /// started within `refetch_interval`, then waits for the running fetch (this one or
    /// another) at most `UNKNOWN_KID_WAIT`. Returns true when the keys changed meanwhile, so the
    /// token is worth checking again. The fetch runs as its own task: when the wait ends first,
    /// it goes on and its keys serve later requests.
    pub async fn refetch_for_unknown_kid(self: &Arc<Self>) -> bool {
        let installed = || self.current.load().as_ref().map(|k| k.fetched_at);
        let before = installed();
        // Subscribed before anything starts, so that no fetch can finish unseen.
        let mut finished = self.fetched.subscribe();
        if self.may_fetch_on_demand() {
            let store = Arc::clone(self);
            tokio::spawn(async move {
                // A failure is logged and counted by `refresh`.
                let _ = store.refresh().await;
            });
        } else if self.fetching.try_lock().is_ok() {
            // No fetch running and none may start: nothing to wait for.
            return installed() != before;
        }
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, finished.changed()).await;
        installed() != before
    }

    /// Claims the on-demand fetch slot, unless it was used within `refetch_interval`.
    fn may_fetch_on_demand(&self) -> bool {
        let mut last = self
            .last_on_demand
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_some_and(|t| t.elapsed() < self.policy.refetch_interval) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Keeps the keys fresh while the store is in use: retries every few seconds until the
    /// first set loads (and while fetches fail), then every `refresh_interval`. Holds only a
    /// weak reference between fetches, so the loop ends once a config reload has dropped the
    /// store.
    pub async fn run_refresh_loop(store: Weak<KeyStore>) {
        // Keys taken over from the previous config are refreshed on their own schedule.
        let first_wait = store
            .upgrade()
            .and_then(|this| Some(this.policy.refresh_interval.saturating_sub(this.age()?)));
        if let Some(wait) = first_wait {
            tokio::time::sleep(wait).await;
        }
        loop {
            let Some(this) = store.upgrade() else { return };
            let retry = Duration::from_secs(5).min(this.policy.refresh_interval);
            let wait = match this.refresh().await {
                Ok(()) => this.policy.refresh_interval,
                Err(_) => retry,
            };
            drop(this);
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes over another store's current keys (a config reload with the same key source), so
    /// the new store is ready at once, and its fetch counters, so metrics count since start.
    pub fn adopt(&self, other: &KeyStore) {
        if self.source == other.source && self.configured_issuer == other.configured_issuer {
            self.current.store(other.current.load_full());
            let carry = |new: &AtomicU64, old: &AtomicU64| {
                new.fetch_add(old.load(Ordering::Relaxed), Ordering::Relaxed);
            };
            carry(&self.fetches, &other.fetches);
            carry(&self.failures, &other.failures);
        }
    }

    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let (jwks_url, discovered_issuer, token_endpoint) = match &self.source {
            KeySource::Jwks(url) => (url.clone(), None, None),
            KeySource::Discovery(url) => {
                let doc = self.get_json(url).await?;
                let jwks_uri = doc["jwks_uri"]
                    .as_str()
                    .ok_or_else(|| {
                        FetchError::Invalid("discovery document has no jwks_uri".into())
                    })?
                    .to_owned();
                let issuer = doc["issuer"]
                    .as_str()
                    .ok_or_else(|| FetchError::Invalid("discovery document has no issuer".into()))?
                    .to_owned();
                if let Some(configured) = &self.configured_issuer {
                    if *configured != issuer {
                        return Err(FetchError::IssuerMismatch {
                            found: issuer,
                            configured: configured.clone(),
                        });
                    }
                }
                let token_endpoint = doc["token_endpoint"].as_str().map(str::to_owned);
                (jwks_uri, Some(issuer), token_endpoint)
            }
        };
        let doc = self.get_json(&jwks_url).await?;
        let keys = parse_jwks(&doc)?;
        Ok(KeySet {
            keys,
            discovered_issuer,
            token_endpoint,
            fetched_at: Instant::now(),
        })
    }

    /// GETs a JSON document of at most `MAX_DOCUMENT` bytes.
    async fn get_json(&self, url: &str) -> Result<Value, FetchError> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(UpstreamError::from)?;
        Ok(upstream::success_json(resp).await?)
    }
}

/// The usable signing keys of a JWKS document. Keys we cannot use (symmetric, encryption,
/// unknown curves) are skipped; a set with none left is an error.
pub fn parse_jwks(doc: &Value) -> Result<Vec<Key>, FetchError> {
    let list = doc["keys"]
        .as_array()
        .ok_or_else(|| FetchError::Invalid("no \"keys\" array".into()))?;
    let keys: Vec<Key> = list.iter().filter_map(key_from_jwk).collect();
    if keys.is_empty() {
        return Err(FetchError::NoKeys);
    }
    Ok(keys)
}

fn key_from_jwk(value: &Value) -> Option<Key> {
    let jwk: Jwk = serde_json::from_value(value.clone()).ok()?;
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return None;
    }
    // What the key's type allows. Symmetric keys (`oct`) never: accepting them is how
    // algorithm-confusion attacks start.
    let by_type: &[Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => &[Algorithm::EdDSA],
            _ => return None,
        },
        AlgorithmParameters::OctetKey(_) => return None,
    };
    let algorithms = match jwk.common.key_algorithm {
        None => by_type.to_vec(),
        Some(declared) => {
            let declared = key_algorithm(declared)?;
            if !by_type.contains(&declared) {
                return None;
            }
            vec![declared]
        }
    };
    Some(Key {
        kid: jwk.common.key_id.clone(),
        key: DecodingKey::from_jwk(&jwk).ok()?,
        algorithms,
        id: Sha256::digest(value.to_string()).into(),
    })
}

fn key_algorithm(k: KeyAlgorithm) -> Option<Algorithm> {
    Some(match k {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn skips_symmetric_and_encryption_keys() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB", "kid": "enc"},
            {"kty": "RSA", "alg": "HS256", "n": "AQAB", "e": "AQAB", "kid": "lies"},
            {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "ed"},
        ]});
        let keys = parse_jwks(&doc).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("ed"));
        assert_eq!(keys[0].algorithms, vec![Algorithm::EdDSA]);
    }

    #[test]
    fn empty_or_shapeless_sets_are_errors() {
        assert!(matches!(
            parse_jwks(&json!({"keys": []})),
            Err(FetchError::NoKeys)
        ));
        assert!(matches!(
            parse_jwks(&json!({"keys": 5})),
            Err(FetchError::Invalid(_))
        ));
        assert!(matches!(
            parse_jwks(&json!([1])),
            Err(FetchError::Invalid(_))
        ));
    }
}
