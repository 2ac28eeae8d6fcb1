//! Watching the registry: when what let a session in ends, the session is kicked.
//!
//! One task ticks every [`TICK`]: it kicks sessions whose credential or JWT has reached its end
//! (the instant `/auth` starts denying it, so a reconnect is not let in and kicked again), the
//! sessions of credentials the store feed reports revoked, and, after a reload, the sessions of
//! `[[users]]` entries that no longer grant them. Every [`RECHECK_EVERY`] the accounts behind
//! sessions let in by a token are asked again, once their cached answer has run out. From the tick to the API call is at most a
//! tick, well inside the contract's two seconds. Kicks run as their own tasks, a few at a time,
//! retried with backoff when the API is down; a 404 means the session had ended already.
//!
//! Now and then the API's session lists are read and the sessions no longer live are forgotten.
//! A second task writes the registry's changes to the store, batched.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::issued::Issued;
use crate::metrics::KickCounters;
use crate::reload::LivePolicy;
use crate::request::Request;
use crate::sessions::api::{ApiError, MediamtxApi};
use crate::sessions::{
    kinds_of, Change, Ending, Held, MediamtxConfig, Registry, Session, ALL_KINDS,
};
use crate::source::account::Lookup;
use crate::store::{SessionRecord, Store};
use crate::time::now_unix;

/// How often the registry is looked at.
pub const TICK: Duration = Duration::from_millis(250);

/// Attempts per kick before it is given up (with 0.25, 0.5, 1, 2 s between them).
const ATTEMPTS: u32 = 5;

/// Kicks in flight at once: a mass revocation must not flood MediaMTX's API.
const KICKS_AT_ONCE: usize = 16;

/// How often the accounts behind live sessions are looked at again. Each look asks the source's
/// cache; only an answer that ran out goes to the upstream, with the client's token.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// How often the registry's changes are written to the store.
const WRITE_EVERY: Duration = Duration::from_millis(500);

/// The registry and what acts on it.
pub struct Watch {
    pub registry: Arc<Registry>,
    pub config: MediamtxConfig,
    pub api: MediamtxApi,
    live: Arc<LivePolicy>,
    counters: KickCounters,
    kicks: Arc<Semaphore>,
    /// A round of account re-checks is under way.
    rechecking: AtomicBool,
}

impl Watch {
    pub fn new(
        registry: Arc<Registry>,
        config: MediamtxConfig,
        api: MediamtxApi,
        live: Arc<LivePolicy>,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        Watch {
            registry,
            config,
            api,
            live,
            counters: metrics.kicks.clone(),
            kicks: Arc::new(Semaphore::new(KICKS_AT_ONCE)),
            rechecking: AtomicBool::new(false),
        }
    }

    /// Runs forever. `credentials` brings the credentials the store feed saw change.
    pub async fn run(self: Arc<Self>, mut credentials: mpsc::UnboundedReceiver<Vec<Arc<Issued>>>) {
        let mut generation = self.live.generation.load(Ordering::Acquire);
        let mut next_prune = tokio::time::Instant::now() + self.config.prune_interval;
        let mut next_recheck = tokio::time::Instant::now() + RECHECK_EVERY;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                Some(changed) = credentials.recv() => self.credentials_changed(&changed),
            }
            let now = now_unix();
            self.expired(now);
            let current = self.live.generation.load(Ordering::Acquire);
            if current != generation {
                generation = current;
                self.users_changed();
            }
            if tokio::time::Instant::now() >= next_recheck {
                next_recheck = tokio::time::Instant::now() + RECHECK_EVERY;
                if !self.rechecking.swap(true, Ordering::AcqRel) {
                    let watch = Arc::clone(&self);
                    tokio::spawn(async move {
                        watch.recheck_accounts().await;
                        watch.rechecking.store(false, Ordering::Release);
                    });
                }
            }
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + self.config.prune_interval;
                let watch = Arc::clone(&self);
                tokio::spawn(async move { watch.prune(now).await });
            }
        }
    }

    /// Sessions whose credential or JWT reached its end.
    fn expired(&self, now: i64) {
        for session in self
            .registry
            .select(|s| s.held.ends_at().is_some_and(|at| at <= now))
        {
            let ending = match session.held {
                Held::Jwt { .. } => Ending::JwtExpired,
                _ => Ending::CredentialExpired,
            };
            self.kick(session, ending);
        }
    }

    /// Sessions of credentials that were revoked. (A credential's expiry never changes: the
    /// session's `ends_at` already holds it.)
    fn credentials_changed(&self, changed: &[Arc<Issued>]) {
        let ended: HashSet<&str> = changed
            .iter()
            .filter(|c| c.revoked)
            .map(|c| &*c.id)
            .collect();
        for session in self.registry.select(|s| match &s.held {
            Held::Credential { id, .. } => ended.contains(id.as_str()),
            _ => false,
        }) {
            self.kick(session, Ending::CredentialRevoked);
        }
    }

    /// After a reload: the sessions of `[[users]]` entries that no longer grant them. The
    /// registry kept no password, so this is decided from the entry: a session stays while some
    /// entry with the same name and pass (the same digest) still admits its address, action and
    /// path.
    fn users_changed(&self) {
        let sessions = self
            .registry
            .select(|s| matches!(s.held, Held::User { .. }));
        if sessions.is_empty() {
            return;
        }
        let policy = self.live.load();
        let users = policy.users();
        let mut by_digest: HashMap<String, Vec<u32>> = HashMap::new();
        for index in 0..users.len() as u32 {
            by_digest
                .entry(self.registry.user_digest(&policy, index))
                .or_default()
                .push(index);
        }
        for session in sessions {
            let Held::User { digest } = &session.held else {
                continue;
            };
            let still = by_digest.get(digest).is_some_and(|entries| {
                entries.iter().any(|&i| {
                    users
                        .get(i)
                        .admits(session.ip, session.action, &session.path)
                })
            });
            if !still {
                self.kick(session, Ending::UserChanged);
            }
        }
    }

    /// Sessions let in by an account source that can ask again: the account is asked (its
    /// answer is remembered for the source's `cache_ttl`, so the upstream hears of it once per
    /// period, and never with a password), and the session is kicked when the account is no
    /// longer let in — rejected, gone, or without the permission or remote access it needs.
    /// An upstream that cannot answer kicks nothing.
    async fn recheck_accounts(&self) {
        let sessions = self.registry.select(|s| {
            matches!(
                &s.held,
                Held::Account {
                    recheck: Some(_),
                    ..
                }
            )
        });
        if sessions.is_empty() {
            return;
        }
        let policy = self.live.load();
        for session in sessions {
            let Held::Account {
                source,
                recheck: Some(handle),
            } = &session.held
            else {
                continue;
            };
            let Some(account) = policy.accounts().iter().find(|a| a.name() == source) else {
                // A reload removed the source: nothing lets the session in any more.
                self.kick(session, Ending::AccountEnded);
                continue;
            };
            let answer = account.recheck(&handle.0).await;
            let ended = match answer {
                Lookup::Granted { grant, .. } => {
                    let ip = session.ip.map(|ip| ip.to_string()).unwrap_or_default();
                    let req = Request::new(session.action, &session.path, &ip, "", "");
                    account.permits(&grant, &req).is_err()
                }
                Lookup::Rejected => true,
                Lookup::Limited | Lookup::Unreachable | Lookup::Miss(_) => false,
            };
            if ended {
                self.kick(session, Ending::AccountEnded);
            }
        }
    }

    /// Takes the session out of the registry and kicks it in the background.
    fn kick(&self, session: Arc<Session>, ending: Ending) {
        if !self.registry.remove(&session.id) {
            return; // already being kicked, or pruned
        }
        let api = self.api.clone();
        let counters = self.counters.clone();
        let slots = Arc::clone(&self.kicks);
        tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let kinds = kinds_of(&session.protocol);
            let mut delay = Duration::from_millis(250);
            let mut attempt = 1;
            let result = loop {
                match api.kick(&session.api, kinds, &session.id).await {
                    Ok(done) => break Ok(done),
                    Err(e) if attempt >= ATTEMPTS => break Err(e),
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                        attempt += 1;
                    }
                }
            };
            let result_label = match &result {
                Ok(done) => done.as_str(),
                Err(_) => "failed",
            };
            counters.count(ending.as_str(), result_label);
            match result {
                Ok(done) => tracing::info!(
                    target: "mtx_auth::kick",
                    reason = ending.as_str(),
                    result = done.as_str(),
                    protocol = %session.protocol,
                    action = session.action.as_str(),
                    path = %session.path,
                    user = %session.identity,
                    "session ended"
                ),
                Err(e) => tracing::warn!(
                    target: "mtx_auth::kick",
                    reason = ending.as_str(),
                    protocol = %session.protocol,
                    action = session.action.as_str(),
                    path = %session.path,
                    user = %session.identity,
                    attempts = ATTEMPTS,
                    error = %e,
                    "could not kick a session whose access ended"
                ),
            }
        });
    }

    /// Forgets sessions MediaMTX no longer lists. An API that cannot be listed completely
    /// forgets nothing this round, and a session younger than one prune interval is kept:
    /// MediaMTX may list it only once the request we allowed has completed.
    async fn prune(&self, now: i64) {
        let grace = self.config.prune_interval.as_secs() as i64;
        for api in self.config.apis() {
            let mut alive = HashSet::new();
            let mut complete = true;
            for kind in ALL_KINDS {
                match self.api.list(api, kind).await {
                    Ok(ids) => alive.extend(ids),
                    Err(e) => {
                        complete = false;
                        log_list_failure(api, &e);
                        break;
                    }
                }
            }
            if !complete {
                continue;
            }
            for session in self.registry.select(|s| {
                *s.api == **api && s.created_at <= now - grace && !alive.contains(&*s.id)
            }) {
                self.registry.remove(&session.id);
            }
        }
    }
}

fn log_list_failure(api: &str, e: &ApiError) {
    tracing::debug!(target: "mtx_auth::kick", api = %api, error = %e, "cannot list sessions; keeping all");
}

/// Writes the registry's changes to the store every [`WRITE_EVERY`], so that a restarted
/// server can still kick what it let in. A failed write is retried with the next batch.
pub async fn write_behind(store: Store, mut changes: mpsc::UnboundedReceiver<Change>) {
    let mut added: HashMap<Arc<str>, Arc<Session>> = HashMap::new();
    let mut removed: HashSet<Arc<str>> = HashSet::new();
    let mut failing = false;
    loop {
        tokio::time::sleep(WRITE_EVERY).await;
        loop {
            match changes.try_recv() {
                Ok(Change::Added(s)) => {
                    removed.remove(&s.id);
                    added.insert(s.id.clone(), s);
                }
                Ok(Change::Removed(id)) => {
                    added.remove(&id);
                    removed.insert(id);
                }
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        if added.is_empty() && removed.is_empty() {
            continue;
        }
        let records: Vec<_> = added.values().map(|s| record(s)).collect();
        let gone: Vec<String> = removed.iter().map(|id| id.to_string()).collect();
        match store.save_sessions(&records, &gone).await {
            Ok(()) => {
                added.clear();
                removed.clear();
                failing = false;
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot write live sessions to the store; retrying");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// A session as the store keeps it.
pub fn record(s: &Session) -> SessionRecord {
    SessionRecord {
        id: s.id.to_string(),
        api_url: s.api.to_string(),
        protocol: s.protocol.to_string(),
        action: s.action.as_str().to_owned(),
        path: s.path.to_string(),
        ip: s.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        identity: s.identity.to_string(),
        grant: serde_json::to_string(&s.held).unwrap_or_default(),
        created_at: s.created_at,
    }
}

/// A stored session back in memory; `None` for a row this version cannot read.
pub fn session(r: &SessionRecord) -> Option<Session> {
    Some(Session {
        id: r.id.as_str().into(),
        api: r.api_url.as_str().into(),
        protocol: r.protocol.as_str().into(),
        action: r.action.parse().ok()?,
        path: r.path.as_str().into(),
        ip: crate::request::parse_ip(&r.ip),
        identity: r.identity.as_str().into(),
        held: serde_json::from_str(&r.grant).ok()?,
        created_at: r.created_at,
    })
}
