//! What every account source (Jellyfin, Emby, Plex, OIDC password login) shares, written once:
//! which credentials a request carries, the cache, coalescing, outages and failure limits.
//!
//! A source's own module only knows how to ask its upstream "who is this?"; this module turns
//! the answer into a decision and keeps the upstream out of the hot path:
//!
//! - **Cache.** An answer is kept per (source, kind, user, secret), keyed by a keyed hash so the
//!   secret is never stored: a success for `cache_ttl`, a wrong password for `failure_ttl`.
//! - **Coalescing.** Concurrent identical checks share one upstream call: 100 viewers opening a
//!   stream with the same account make one login.
//! - **Outages.** A timeout, 5xx or garbage never counts as wrong credentials. The source is
//!   then skipped for a couple of seconds (so a hanging upstream doesn't cost every request the
//!   full timeout), a success younger than `stale_grace` is served, and otherwise the request is
//!   denied as unreachable.
//! - **Failure limit.** Media servers lock an account after a few failed logins. Anyone who can
//!   reach MediaMTX could lock a household's account through us by guessing, so once
//!   `max_failures` logins for a user name within `failure_window` were rejected *or are still
//!   in flight*, further logins for that name are denied here without calling the upstream: a
//!   login reserves its place before the call. A cached success still works.
//!
//! The lookup (`AccountSource::lookup`) is synchronous and allocation-free, for the policy's hot
//! path; the upstream call (`AccountSource::fetch`) is async and run by the verifier.

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use moka::sync::Cache;
use tokio::sync::OnceCell;

use crate::cache::{FailureCounts, SecretHasher, TtlMap};
use crate::config::reader::Table;
pub use crate::decision::AccountDeny;
use crate::decision::{AccountToken, Source};
use crate::permission::{self, Permission};
use crate::request::Request;
pub use crate::source::backend::{
    device_id, AccountKind, Backend, BoxFuture, CheckError, Credentials, Identity, OwnedCredentials,
};
use crate::source::jwks::KeyStore;
pub use settings::{AccountSettings, Override};

pub mod settings;

/// How long a source is skipped after its upstream failed.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Where per-name attempts are reserved across replicas that share a store, so that together
/// they never send an upstream more wrong passwords than `max_failures` (each replica's own
/// count is not enough: three replicas with two places each reach Jellyfin's lockout). The
/// store implements it; a source without one counts in memory only.
pub trait NameLedger: Send + Sync {
    /// Reserves one attempt for `name` at `upstream` under `max` within `window`:
    /// `Ok(false)` when the failed and in-flight attempts of every replica reached it; `Err`
    /// when the ledger cannot be asked, and the login must not go ahead.
    fn reserve<'a>(
        &'a self,
        upstream: &'a str,
        name: &'a str,
        max: u32,
        window: Duration,
    ) -> BoxFuture<'a, Result<bool, String>>;
    /// The attempt did not fail (the upstream could not say): its place is free again.
    fn release(&self, upstream: &str, name: &str);
    /// A good login: the name's attempts start again, as the media server's do.
    fn clear(&self, upstream: &str, name: &str);
}

/// A checked account, as cached.
#[derive(Debug)]
pub struct Grant {
    pub name: String,
    /// The upstream's stable id (`Identity::id`).
    pub id: Option<String>,
    /// Server administrator or owner, as the upstream says.
    pub admin: bool,
    pub permissions: Vec<Permission>,
    pub remote_access: bool,
    /// Set when the upstream's grant ends before the cache entry does (an OIDC token's
    /// `exp`); otherwise the cache's time-to-live is the limit.
    pub expires: Option<Instant>,
    /// What asks about the account again, for the sessions it opens (`Identity::recheck`).
    pub recheck: Option<AccountToken>,
}

impl Grant {
    fn is_live(&self) -> bool {
        self.expires.is_none_or(|t| t > Instant::now())
    }
}

/// An account section, checked: its kind, where it is, its shared settings and its backend.
pub struct AccountConfig {
    pub kind: &'static AccountKind,
    /// The section's line in the file.
    pub line: usize,
    pub settings: AccountSettings,
    pub backend: Arc<dyn Backend>,
}

impl fmt::Debug for AccountConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccountConfig")
            .field("kind", &self.kind.name)
            .field("line", &self.line)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Reads the account section `[kind.name]`: the shared keys here, the kind's own keys by its
/// `read`; any key neither took is reported as not the section's.
pub fn read_section(kind: &'static AccountKind, mut t: Table<'_>) -> Option<AccountConfig> {
    let errs = t.errs();
    let before = errs.count();
    let line = t.line();
    let mut settings = settings::read(
        &mut t,
        kind.name,
        kind.default_actions,
        kind.config_permissions,
    );
    let backend = (kind.read)(&mut t, &mut settings);
    t.finish_with(|key| format!("{key} is not a [{}] key", kind.name));
    if errs.count() > before {
        return None;
    }
    Some(AccountConfig {
        kind,
        line,
        settings,
        backend: backend?,
    })
}

/// Counters for `/readyz` and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub upstream_calls: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub rejections: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_misses: AtomicU64,
    pub stale_served: AtomicU64,
    pub limited: AtomicU64,
}

impl Stats {
    /// Adds `old`'s counts to these, so counters continue across a config reload.
    fn carry_over(&self, old: &Stats) {
        let pairs = [
            (&self.upstream_calls, &old.upstream_calls),
            (&self.upstream_errors, &old.upstream_errors),
            (&self.rejections, &old.rejections),
            (&self.cache_hits, &old.cache_hits),
            (&self.cache_misses, &old.cache_misses),
            (&self.stale_served, &old.stale_served),
            (&self.limited, &old.limited),
        ];
        for (new, old) in pairs {
            new.fetch_add(old.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }
}

/// An upstream's answer, as cached.
#[derive(Debug, Clone)]
enum Answer {
    Granted(Arc<Grant>),
    Rejected,
    Unreachable,
    /// Not asked: the name's failed logins and logins in flight had reached `max_failures`.
    Limited,
}

/// One cache entry. Concurrent callers for the same key wait on the same cell, so one of them
/// calls the upstream.
#[derive(Default)]
struct Slot {
    answer: OnceCell<(Answer, Instant)>,
}

/// What the cache knows, without calling anyone.
#[derive(Debug)]
pub enum Lookup {
    /// A valid answer: decide with it. `stale` when served during an outage.
    Granted { grant: Arc<Grant>, stale: bool },
    /// These credentials were rejected moments ago.
    Rejected,
    /// Too many rejected logins for this user name recently.
    Limited,
    /// The upstream is failing and no recent success covers these credentials.
    Unreachable,
    /// The upstream must be asked: `AccountSource::fetch` with this key.
    Miss(u128),
}

/// A configured account source.
pub struct AccountSource {
    pub kind: Source,
    /// The section's line in the config, for `explain`.
    pub line: usize,
    backend: Arc<dyn Backend>,
    settings: AccountSettings,
    /// The hot cache: read by every cached decision.
    slots: TtlMap<u128, Arc<Slot>>,
    /// Answers about accounts asked again (`recheck`), for `cache_ttl`.
    rechecks: TtlMap<u128, Option<Arc<Grant>>>,
    /// Successes kept for `stale_grace`, used only while the upstream fails.
    last_good: Cache<u128, Arc<Grant>>,
    /// Rejected logins per lower-cased user name, counted from the first for `failure_window`.
    failures: FailureCounts,
    hasher: SecretHasher,
    /// Milliseconds since `started` until which the upstream is considered down.
    down_until: AtomicU64,
    started: Instant,
    answered: AtomicBool,
    pub stats: Stats,
    /// `AccountKind::portal_admins`: the upstream's administrators administer the portal.
    portal_admins: bool,
    /// With a shared store: where logins also reserve their per-name place.
    ledger: OnceLock<Arc<dyn NameLedger>>,
}

impl AccountSource {
    pub fn from_config(config: AccountConfig) -> Self {
        let mut source = AccountSource::new(
            Source::Account(config.kind.name),
            config.line,
            config.backend,
            config.settings,
        );
        source.portal_admins = config.kind.portal_admins;
        source
    }

    pub fn new(
        kind: Source,
        line: usize,
        backend: Arc<dyn Backend>,
        settings: AccountSettings,
    ) -> Self {
        AccountSource {
            kind,
            line,
            backend,
            slots: TtlMap::new(settings.cache_capacity, settings.cache_ttl),
            rechecks: TtlMap::new(settings.cache_capacity, settings.cache_ttl),
            last_good: Cache::builder()
                .max_capacity(settings.cache_capacity)
                .time_to_live(settings.stale_grace.max(Duration::from_millis(1)))
                .build(),
            failures: FailureCounts::new(settings.cache_capacity, settings.failure_window),
            settings,
            hasher: SecretHasher::random(),
            down_until: AtomicU64::new(0),
            started: Instant::now(),
            answered: AtomicBool::new(false),
            stats: Stats::default(),
            portal_admins: false,
            ledger: OnceLock::new(),
        }
    }

    /// Reserves per-name attempts in `ledger` too from now on (see [`NameLedger`]).
    pub fn use_ledger(&self, ledger: Arc<dyn NameLedger>) {
        let _ = self.ledger.set(ledger);
    }

    pub fn name(&self) -> &'static str {
        self.kind.as_str()
    }

    pub fn accepts(&self, creds: &Credentials) -> bool {
        self.backend.accepts(creds)
    }

    /// Whether an account this source calls an administrator is the portal's administrator
    /// (`AccountKind::portal_admins`).
    pub fn portal_admins(&self) -> bool {
        self.portal_admins
    }

    /// The upstream's own sign-in site, if it has one (Plex's PIN flow, for the portal).
    pub fn pin_flow(&self) -> Option<&dyn crate::source::backend::PinFlow> {
        self.backend.pin_flow()
    }

    /// The key set this source's tokens are verified against, if it has one.
    pub fn key_store(&self) -> Option<&Arc<KeyStore>> {
        self.backend.key_store()
    }

    /// True once the upstream has answered anything (a probe or a check), or for a source
    /// with a key set, while its keys are usable.
    pub fn is_ready(&self) -> bool {
        match self.backend.key_store() {
            Some(keys) => keys.is_ready(),
            None => self.answered.load(Ordering::Relaxed),
        }
    }

    /// Keyed hash of what a cached answer vouches for.
    fn key(&self, creds: &Credentials) -> u128 {
        match creds {
            Credentials::Login { user, password } => {
                self.hasher.hash(0, &[user.as_bytes(), password.as_bytes()])
            }
            Credentials::Token(t) => self.hasher.hash(1, &[t.as_bytes()]),
        }
    }

    /// Answers from memory if it can. Never calls the upstream.
    pub fn lookup(&self, creds: &Credentials) -> Lookup {
        let key = self.key(creds);
        if let Some(slot) = self.slots.get(&key) {
            match slot.answer.get() {
                Some((Answer::Granted(grant), _)) if grant.is_live() => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Granted {
                        grant: Arc::clone(grant),
                        stale: false,
                    };
                }
                Some((Answer::Rejected, at)) if at.elapsed() < self.settings.failure_ttl => {
                    self.stats.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Lookup::Rejected;
                }
                _ => {}
            }
        }
        self.stats.cache_misses.fetch_add(1, Ordering::Relaxed);
        if self.is_down() {
            return self.stale(key);
        }
        if let Credentials::Login { user, .. } = creds {
            if self.backend.names_accounts()
                && self.failures_for(user) >= self.settings.max_failures
            {
                self.stats.limited.fetch_add(1, Ordering::Relaxed);
                return Lookup::Limited;
            }
        }
        Lookup::Miss(key)
    }

    /// Asks the upstream (or waits for an identical call already under way) and returns what
    /// the cache now knows. Only the caller that runs the call counts it.
    pub async fn fetch(&self, key: u128, creds: &OwnedCredentials) -> Lookup {
        let failure_ttl = self.settings.failure_ttl;
        let slot = self
            .slots
            .get_or_replace(key, Default::default, |slot: &Arc<Slot>| {
                match slot.answer.get() {
                    Some((Answer::Granted(g), _)) => !g.is_live(),
                    Some((Answer::Rejected, at)) => at.elapsed() >= failure_ttl,
                    Some((Answer::Unreachable | Answer::Limited, _)) => true,
                    // A call is under way: wait for it.
                    None => false,
                }
            });
        let (answer, _) = slot
            .answer
            .get_or_init(|| async { (self.call(key, creds).await, Instant::now()) })
            .await;
        match answer {
            Answer::Granted(grant) => Lookup::Granted {
                grant: Arc::clone(grant),
                stale: false,
            },
            Answer::Rejected => Lookup::Rejected,
            Answer::Unreachable => self.stale(key),
            Answer::Limited => Lookup::Limited,
        }
    }

    /// One upstream call, with its effects on counters, the failure limit and the stale store.
    ///
    /// A login for a name that counts (see `Backend::names_accounts`) first reserves its place
    /// under `max_failures`: rejected logins *and logins still in flight* for the name must stay
    /// within it, in one atomic step; a login that finds the places held by logins in flight
    /// waits for their outcome. Reading the count before the call and writing it after would let
    /// six simultaneous guesses from six addresses all reach a media server that locks the
    /// account at the third.
    async fn call(&self, key: u128, creds: &OwnedCredentials) -> Answer {
        let name = match creds {
            OwnedCredentials::Login { user, .. } if self.backend.names_accounts() => {
                Some(self.backend.failure_key(user))
            }
            _ => None,
        };
        let reservation = match &name {
            Some(name) => {
                match self
                    .failures
                    .reserve(0, name.as_bytes(), self.settings.max_failures)
                    .await
                {
                    Some(r) => Some(r),
                    None => {
                        self.stats.limited.fetch_add(1, Ordering::Relaxed);
                        return Answer::Limited;
                    }
                }
            }
            None => None,
        };
        // Across replicas too, after the place here (which makes this replica's own logins for
        // the name wait for each other rather than race to the database).
        let shared = match (&name, self.ledger.get()) {
            (Some(name), Some(ledger)) => {
                let upstream = self.upstream();
                let max = self.settings.max_failures;
                let window = self.settings.failure_window;
                let refused = match ledger.reserve(&upstream, name, max, window).await {
                    Ok(true) => None,
                    Ok(false) => {
                        self.stats.limited.fetch_add(1, Ordering::Relaxed);
                        Some(Answer::Limited)
                    }
                    Err(e) => {
                        // Not the upstream's fault: it is not marked down.
                        tracing::warn!(source = self.name(), error = %e, "cannot reserve this login's attempt in the store; denied without asking the upstream");
                        Some(Answer::Unreachable)
                    }
                };
                if let Some(answer) = refused {
                    if let Some(r) = reservation {
                        r.release();
                    }
                    return answer;
                }
                Some((ledger, upstream, name))
            }
            _ => None,
        };
        self.stats.upstream_calls.fetch_add(1, Ordering::Relaxed);
        let result = self.backend.check(creds).await;
        if !matches!(result, Err(CheckError::Unreachable(_))) {
            self.answered.store(true, Ordering::Relaxed);
        }
        match result {
            Ok(identity) => {
                if let (Some(name), Some(r)) = (&name, reservation) {
                    r.release();
                    // The media server forgets failed logins after a good one; so do we.
                    self.failures.clear(0, name.as_bytes());
                }
                if let Some((ledger, upstream, name)) = shared {
                    ledger.clear(&upstream, name);
                }
                let grant = Arc::new(self.grant(identity));
                self.last_good.insert(key, Arc::clone(&grant));
                Answer::Granted(grant)
            }
            Err(CheckError::Rejected(why)) => {
                self.stats.rejections.fetch_add(1, Ordering::Relaxed);
                if let Some(r) = reservation {
                    r.fail();
                }
                tracing::debug!(source = self.name(), reason = why, "account rejected");
                Answer::Rejected
            }
            Err(CheckError::Unreachable(why)) => {
                // Never read as wrong credentials: the place is given back.
                if let Some(r) = reservation {
                    r.release();
                }
                if let Some((ledger, upstream, name)) = shared {
                    ledger.release(&upstream, name);
                }
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                self.mark_down();
                tracing::warn!(source = self.name(), error = %why, "upstream unavailable; denying unless a recent success is cached");
                Answer::Unreachable
            }
        }
    }

    /// The permissions an identity gets: the upstream's own (OIDC), else `permissions`, what
    /// the upstream adds for this account (`Identity::extra_permissions`: LDAP groups) and
    /// `admin_permissions` for administrators; then the account's override.
    fn grant(&self, identity: Identity) -> Grant {
        let s = &self.settings;
        let extra = identity.extra_permissions;
        let mut permissions = identity.permissions.unwrap_or_else(|| {
            let mut p = s.permissions.clone();
            p.extend(extra);
            if identity.admin {
                p.extend(s.admin_permissions.iter().cloned());
            }
            p
        });
        let name = identity.name.to_lowercase();
        if let Some(o) = s.overrides.iter().find(|o| o.user == name) {
            if o.replace {
                permissions.clear();
            }
            permissions.extend(o.permissions.iter().cloned());
        }
        Grant {
            name: identity.name,
            id: identity.id,
            admin: identity.admin,
            permissions,
            remote_access: identity.remote_access,
            recheck: identity.recheck,
            expires: identity
                .valid_for
                .filter(|v| *v < s.cache_ttl)
                .map(|v| Instant::now() + v),
        }
    }

    /// Asks about an account again by the handle its grant carried (`Grant::recheck`): from
    /// what the last ask answered while it is younger than `cache_ttl`, else from the upstream.
    /// `Granted` or `Rejected`; `Unreachable` when the upstream could not say.
    pub async fn recheck(&self, handle: &str) -> Lookup {
        let key = self.hasher.hash(2, &[handle.as_bytes()]);
        if let Some(known) = self.rechecks.get(&key) {
            return match known {
                Some(grant) => Lookup::Granted {
                    grant,
                    stale: false,
                },
                None => Lookup::Rejected,
            };
        }
        self.stats.upstream_calls.fetch_add(1, Ordering::Relaxed);
        match self.backend.recheck(handle).await {
            Ok(identity) => {
                let grant = Arc::new(self.grant(identity));
                self.rechecks.insert(key, Some(Arc::clone(&grant)));
                Lookup::Granted {
                    grant,
                    stale: false,
                }
            }
            Err(CheckError::Rejected(_)) => {
                self.stats.rejections.fetch_add(1, Ordering::Relaxed);
                self.rechecks.insert(key, None);
                Lookup::Rejected
            }
            Err(CheckError::Unreachable(why)) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(source = self.name(), error = %why, "cannot ask about an account again; its sessions stay");
                Lookup::Unreachable
            }
        }
    }

    /// During an outage: the last success for these credentials, if recent enough.
    fn stale(&self, key: u128) -> Lookup {
        match self.last_good.get(&key) {
            Some(grant) => {
                self.stats.stale_served.fetch_add(1, Ordering::Relaxed);
                Lookup::Granted { grant, stale: true }
            }
            None => Lookup::Unreachable,
        }
    }

    fn failures_for(&self, user: &str) -> u32 {
        self.failures
            .count(0, self.backend.failure_key(user).as_bytes())
    }

    fn is_down(&self) -> bool {
        let until = self.down_until.load(Ordering::Relaxed);
        until != 0 && (self.started.elapsed().as_millis() as u64) < until
    }

    fn mark_down(&self) {
        let until = (self.started.elapsed() + RETRY_AFTER).as_millis() as u64;
        self.down_until.store(until, Ordering::Relaxed);
    }

    /// Whether a grant lets this request through: its permissions, and remote access.
    pub fn permits(&self, grant: &Grant, req: &Request) -> Result<(), AccountDeny> {
        if !grant.remote_access
            && !self.settings.local_networks.is_empty()
            && !req
                .ip
                .is_some_and(|ip| in_networks(&self.settings.local_networks, ip))
        {
            return Err(AccountDeny::RemoteAccess);
        }
        match req.action {
            Some(action) if permission::any_matches(&grant.permissions, action, &req.path) => {
                Ok(())
            }
            _ => Err(AccountDeny::NotPermitted),
        }
    }

    /// What runs beside the server: the OIDC provider's key refresh, or for a media server a
    /// probe every few seconds until it answers once (for `/readyz`). Ends when a config
    /// reload has dropped the source.
    pub async fn run_background(source: Weak<AccountSource>) {
        loop {
            let Some(this) = source.upgrade() else { return };
            if let Some(keys) = this.backend.key_store() {
                let keys = Arc::downgrade(keys);
                drop(this);
                return KeyStore::run_refresh_loop(keys).await;
            }
            if this.is_ready() {
                return;
            }
            match this.backend.probe().await {
                Ok(()) => {
                    this.answered.store(true, Ordering::Relaxed);
                    tracing::info!(source = this.name(), "upstream answered");
                }
                Err(e) => {
                    tracing::warn!(source = this.name(), error = %e, "upstream not answering yet");
                    drop(this);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
            }
        }
    }

    /// Where this source's answers come from; equal for two sources that ask the same upstream.
    fn upstream(&self) -> String {
        format!("{}:{}", self.name(), self.backend.upstream())
    }

    /// Takes over what a source from the previous config knew about the same upstream: that it
    /// answers, an OIDC provider's keys, and the counters (so metrics do not restart at zero).
    /// Not its caches: the permissions they hold came from the old config.
    pub fn adopt(&self, old: &AccountSource) {
        if self.upstream() != old.upstream() {
            return;
        }
        if old.answered.load(Ordering::Relaxed) {
            self.answered.store(true, Ordering::Relaxed);
        }
        self.stats.carry_over(&old.stats);
        if let (Some(new), Some(old)) = (self.backend.key_store(), old.backend.key_store()) {
            new.adopt(old);
        }
    }
}

fn in_networks(nets: &[IpNet], ip: IpAddr) -> bool {
    nets.iter().any(|n| n.contains(&ip))
}
