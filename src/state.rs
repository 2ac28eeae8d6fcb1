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
use std::time::Duration;

use arc_swap::ArcSwap;
use base64::Engine as _;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::cache::SecretHasher;
use crate::credential::{from_hex, hex};
use crate::issued::IssuedCredentials;
use crate::limiter::SharedCounts;
use crate::metrics::Metrics;
use crate::reload::LivePolicy;
use crate::sessions::api::{ApiSecret, MediamtxApi};
use crate::sessions::watch::{write_behind, Watch};
use crate::sessions::{MediamtxConfig, Registry};
use crate::store::feed::CredentialFeed;
use crate::store::replicas::{bounded, share_failures, StoreLedger, GONE_AFTER, HEARTBEAT};
use crate::store::{Engine, SessionRecord, Store, StoreConfig, StoreError};
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
    /// (the store feed, the watcher, the store writer, the replicas' sharing) run on the
    /// current runtime.
    ///
    /// A PostgreSQL store that cannot be reached does not keep the service from starting: it
    /// decides what needs no store (stream credentials are denied, they are unknown) and
    /// reaches the store in the background, then catches up. A SQLite file that cannot be
    /// opened is a refusal to start: nothing will fix it by waiting.
    pub async fn open(
        live: Arc<LivePolicy>,
        store: Option<&StoreConfig>,
        mediamtx: Option<MediamtxConfig>,
    ) -> Result<Arc<Service>, StoreError> {
        let mut service = Service::new(Arc::clone(&live));
        let store = store.map(Store::new).transpose()?;
        if let Some(store) = &store {
            let engine = store.engine().as_str();
            service
                .metrics
                .watch_store(Arc::clone(&store.health), engine);
        }
        let start = match &store {
            Some(store) => match StoreStart::read(store, &service.verifier.issued).await {
                Ok(start) => Some(start),
                Err(e) if store.engine() == Engine::Postgres => {
                    store.health.failed();
                    tracing::error!(store = %store.describe(), error = %e, "store unreachable at start: deciding what needs no store, reaching it in the background");
                    None
                }
                Err(e) => return Err(e),
            },
            None => None,
        };
        match &start {
            Some(start) => service.grant_key = SecretHasher::with_key(start.registry_key),
            None if store.is_some() => tracing::warn!("until the store is reached, the sessions this process tracks are keyed by a key of its own: a reload after a restart may kick them"),
            None => {}
        }
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        if let Some(mediamtx) = mediamtx {
            let secret = start
                .as_ref()
                .map_or_else(new_api_secret, |s| s.api_secret.clone());
            let secret: ApiSecret = Arc::new(ArcSwap::from_pointee(secret));
            let (changes_tx, changes_rx) = mpsc::unbounded_channel();
            let tracked = service.metrics.sessions.tracked.clone();
            let registry = Arc::new(Registry::new(
                mediamtx.max_sessions,
                service.grant_key.clone(),
                changes_tx,
                tracked,
            ));
            if let Some(store) = &store {
                tokio::spawn(write_behind(store.clone(), changes_rx));
            }
            service.verifier.api_secret = Some(Arc::clone(&secret));
            let api = MediamtxApi::new(secret, mediamtx.timeout);
            let watch = Arc::new(Watch::new(registry, mediamtx, api, live, &service.metrics));
            tokio::spawn(Arc::clone(&watch).run(changed_rx));
            service.sessions = Some(watch);
        }
        service.store = store.clone();
        let service = Arc::new(service);
        match (store, start) {
            (Some(store), Some(start)) => service.follow(store, start, changed_tx),
            (Some(store), None) => {
                let service = Arc::clone(&service);
                tokio::spawn(async move {
                    let start = StoreStart::reach(&store, &service.verifier.issued).await;
                    // From now on kicks carry the secret every replica recognises.
                    if let Some(secret) = &service.verifier.api_secret {
                        secret.store(Arc::new(start.api_secret.clone()));
                    }
                    tracing::info!(store = %store.describe(), "store reached: stream credentials and shared limits in force");
                    service.follow(store, start, changed_tx);
                });
            }
            _ => {}
        }
        Ok(service)
    }

    /// Puts what the store said at start to work and keeps following it: the sessions read
    /// back go into the registry; failures are shared with the other replicas, account logins
    /// reserve their per-name place in the store; the credential feed, the heartbeat (and the
    /// adoption of gone replicas' sessions) run from here on.
    fn follow(
        &self,
        store: Store,
        start: StoreStart,
        changed: mpsc::UnboundedSender<Vec<Arc<crate::issued::Issued>>>,
    ) {
        let registry = self.sessions.as_ref().map(|w| Arc::clone(&w.registry));
        let adopted = Adopted {
            issued: Arc::clone(&self.verifier.issued),
            changed: changed.clone(),
        };
        if let Some(registry) = &registry {
            adopted.restore(registry, &start.sessions);
        }
        if let Some(limiter) = &self.verifier.limiter {
            let window = self.live.load().server().limits.failure_window;
            let counts = Arc::new(SharedCounts::new(start.limits_key, window));
            limiter.share(Arc::clone(&counts));
            tokio::spawn(share_failures(store.clone(), counts, window));
        }
        self.live
            .use_ledger(Arc::new(StoreLedger::new(store.clone(), start.limits_key)));
        tokio::spawn(start.feed.run(move |c| {
            let _ = changed.send(c);
        }));
        tokio::spawn(heartbeat(store, registry, adopted));
    }
}

/// What the store holds that the process needs before it follows the store.
struct StoreStart {
    registry_key: [u8; 16],
    limits_key: [u8; 16],
    api_secret: String,
    feed: CredentialFeed,
    /// Live sessions this process takes over: with SQLite, every one a previous run wrote;
    /// with PostgreSQL, those of replicas gone quiet (the others are still theirs).
    sessions: Vec<SessionRecord>,
}

impl StoreStart {
    /// Connects, migrates, reads the keys every replica shares and the stream credentials.
    async fn read(store: &Store, issued: &Arc<IssuedCredentials>) -> Result<Self, StoreError> {
        store.prepare().await?;
        let now = now_unix();
        // Kept in the store, so that every replica agrees on them and a restart keeps them.
        let key = |name: &'static str, value: String| {
            from_hex::<16>(&value)
                .ok_or_else(|| StoreError::Corrupt(format!("{name} is not 32 hex digits")))
        };
        let registry_key = key(
            "registry_key",
            store.secret("registry_key", now, new_key).await?,
        )?;
        let limits_key = key(
            "limits_key",
            store.secret("limits_key", now, new_key).await?,
        )?;
        let api_secret = store.secret("mediamtx_api", now, new_api_secret).await?;
        let feed = CredentialFeed::load(store.clone(), Arc::clone(issued)).await?;
        tracing::info!(
            "store: {} ({} stream credentials)",
            store.describe(),
            issued.len()
        );
        let alive_since = match store.engine() {
            Engine::Sqlite => i64::MAX,
            Engine::Postgres => now - GONE_AFTER,
        };
        store.heartbeat(now).await?;
        let sessions = store.adopt_sessions(alive_since).await?;
        Ok(StoreStart {
            registry_key,
            limits_key,
            api_secret,
            feed,
            sessions,
        })
    }

    /// [`StoreStart::read`] until it succeeds, every 1 s, then every 2 s: the service catches up
    /// within the contract's 3 s of the store's return.
    async fn reach(store: &Store, issued: &Arc<IssuedCredentials>) -> Self {
        let mut wait = Duration::from_secs(1);
        loop {
            tokio::time::sleep(wait).await;
            match bounded(StoreStart::read(store, issued)).await {
                Ok(start) => return start,
                Err(e) => {
                    tracing::debug!(error = %e, "store still unreachable");
                    wait = Duration::from_secs(2);
                }
            }
        }
    }
}

/// Where sessions taken over (from a previous run, or a replica gone quiet) go through the
/// same check as a revocation: one whose credential was revoked meanwhile is kicked at once.
struct Adopted {
    issued: Arc<IssuedCredentials>,
    changed: mpsc::UnboundedSender<Vec<Arc<crate::issued::Issued>>>,
}

impl Adopted {
    /// Puts sessions read from the store into the registry.
    fn restore(&self, registry: &Registry, records: &[SessionRecord]) {
        let restored = records
            .iter()
            .filter_map(crate::sessions::watch::session)
            .filter(|s| registry.insert(s.clone()).is_ok())
            .count();
        if restored > 0 {
            tracing::info!("{restored} live sessions read back from the store");
            let _ = self.changed.send(self.issued.revoked());
        }
    }
}

/// Says this replica is alive every [`HEARTBEAT`], and takes over the sessions of replicas
/// that went quiet: they are kicked from here when their grant ends.
async fn heartbeat(store: Store, registry: Option<Arc<Registry>>, adopted: Adopted) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        let now = now_unix();
        if bounded(store.heartbeat(now)).await.is_err() {
            continue;
        }
        if let Some(registry) = &registry {
            match bounded(store.adopt_sessions(now - GONE_AFTER)).await {
                Ok(sessions) if !sessions.is_empty() => {
                    tracing::info!(
                        "taking over {} live sessions of a replica gone quiet",
                        sessions.len()
                    );
                    adopted.restore(registry, &sessions);
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "cannot look for sessions to adopt"),
            }
        }
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

/// A key of the store's (the registry's `[[users]]` digests, the shared limits): 128 random
/// bits, hex.
fn new_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}
