//! What lives as long as the process, apart from what a reload replaces.
//!
//! A `Policy` (the users, key sets, account sources and their caches) is rebuilt by every
//! config reload. Some things must not be: the brute-force limiter's counts (a reload must not
//! forgive a spray), the argon2 pool and its queue, the metrics (counters do not restart at zero).
//! They live here, built once when the server starts, beside the live policy they read. This is
//! also the home for what is to come and must outlive a reload the same way: the store's
//! connection pool, signing keys, the registry of live MediaMTX sessions and the client for
//! MediaMTX's control API.
//!
//! Nothing here knows HTTP: the server hands a `Service` to its handlers.

use std::sync::Arc;

use base64::Engine;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::cache::SecretHasher;
use crate::credential::{from_hex, hex};
use crate::metrics::Metrics;
use crate::reload::LivePolicy;
use crate::sessions::api::MediamtxApi;
use crate::sessions::watch::{write_behind, Watch};
use crate::sessions::{MediamtxConfig, Registry};
use crate::store::feed::CredentialFeed;
use crate::store::{Store, StoreConfig, StoreError};
use crate::time::now_unix;
use crate::verifier::Verifier;

/// The process-long state every handler shares.
pub struct Service {
    /// The policy in use, swapped by reloads.
    pub live: Arc<LivePolicy>,
    /// argon2 on a bounded pool, the brute-force limiter, and the stream credentials the store
    /// feeds.
    pub verifier: Verifier,
    /// One set per process: unlike the policy, it is not replaced by a reload.
    pub metrics: Metrics,
    /// The store's pool, when the config has `[store]` (read once at start, like `[server]`).
    pub store: Option<Store>,
    /// The registry of live sessions and its watcher, when `[mediamtx]` names an API.
    pub sessions: Option<Arc<Watch>>,
    /// Keys the digests of `[[users]]` entries that granted something (a live session, a
    /// portal link): the store's `registry_key`, so digests survive a restart.
    pub grant_key: SecretHasher,
}

impl Service {
    /// Builds the process-long state around `live`. `[server]`'s argon2 and limiter settings
    /// are read once, here: a reload that changes them says so and they apply on restart.
    pub fn new(live: Arc<LivePolicy>) -> Self {
        let policy = live.load();
        let server = policy.server();
        let verifier = Verifier::new(server.argon2_concurrency, server.argon2_queue)
            .with_limits(server.limits.clone());
        let metrics = Metrics::new(Arc::clone(&live));
        Service {
            live,
            verifier,
            metrics,
            store: None,
            sessions: None,
            grant_key: SecretHasher::random(),
        }
    }
}

impl Service {
    /// Builds the process-long state for `serve`: the store opened (created, migrated) and its
    /// credentials read before the first request, so a credential issued before the start is
    /// good from the first answer; with `[mediamtx]`, the registry of live sessions (what a
    /// previous run let in, read back from the store) and its watcher. The background tasks
    /// (the store feed, the watcher, the store writer) run on the current runtime.
    pub async fn open(
        live: Arc<LivePolicy>,
        store: Option<&StoreConfig>,
        mediamtx: Option<MediamtxConfig>,
    ) -> Result<Service, StoreError> {
        let mut service = Service::new(Arc::clone(&live));
        let store = match store {
            Some(config) => Some(Store::open(config).await?),
            None => None,
        };
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        if let Some(store) = &store {
            let issued = Arc::clone(&service.verifier.issued);
            let feed = CredentialFeed::load(store.clone(), issued).await?;
            tracing::info!(
                "store: {} ({} stream credentials)",
                store.describe(),
                service.verifier.issued.len()
            );
            tokio::spawn(feed.run(move |changed| {
                let _ = changed_tx.send(changed);
            }));
        }
        let now = now_unix();
        if let Some(store) = &store {
            // Kept in the store, so that every replica agrees on it and a restart keeps it.
            let key = store.secret("registry_key", now, new_registry_key).await?;
            let key = from_hex::<16>(&key)
                .ok_or_else(|| StoreError::Corrupt("registry_key is not 32 hex digits".into()))?;
            service.grant_key = SecretHasher::with_key(key);
        }
        if let Some(mediamtx) = mediamtx {
            // Kept in the store, so that every replica recognises it and a restart keeps it.
            let secret = match &store {
                Some(store) => store.secret("mediamtx_api", now, new_api_secret).await?,
                None => new_api_secret(),
            };
            let hasher = service.grant_key.clone();
            let (changes_tx, changes_rx) = mpsc::unbounded_channel();
            let tracked = service.metrics.sessions.tracked.clone();
            let registry = Arc::new(Registry::new(
                mediamtx.max_sessions,
                hasher,
                changes_tx,
                tracked,
            ));
            if let Some(store) = &store {
                let mut restored = 0;
                for record in store.sessions().await? {
                    if let Some(session) = crate::sessions::watch::session(&record) {
                        restored += usize::from(registry.insert(session).is_ok());
                    }
                }
                if restored > 0 {
                    tracing::info!("{restored} live sessions read back from the store");
                }
                tokio::spawn(write_behind(store.clone(), changes_rx));
            }
            let secret: Arc<str> = secret.into();
            service.verifier.api_secret = Some(Arc::clone(&secret));
            let api = MediamtxApi::new(secret, mediamtx.timeout);
            let watch = Arc::new(Watch::new(registry, mediamtx, api, live, &service.metrics));
            tokio::spawn(Arc::clone(&watch).run(changed_rx));
            service.sessions = Some(watch);
        }
        service.store = store;
        Ok(service)
    }
}

/// mtx-auth's own secret for MediaMTX's API: 256 random bits.
fn new_api_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "mtxk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The key of the registry's `[[users]]` digests: 128 random bits, hex.
fn new_registry_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}
