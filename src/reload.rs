//! Hot reload: the policy in use, swapped atomically when the config file changes or on SIGHUP.
//!
//! A request loads the current policy once and decides with it to the end, so requests in
//! flight finish on the old config while the next ones use the new one. A new config is parsed
//! and checked in full first; if it has problems, nothing changes: they are logged as
//! `FILE:LINE:COL: message` and counted, and the old policy keeps serving.
//!
//! Every reload builds a new `Policy` with empty caches, so a user removed or a password changed
//! is denied on the very next request even if the old policy had verified it. What is not tied to
//! the config's content carries over: JWT keys fetched from the same URL, and whether each
//! upstream has answered, so a reload never makes the service unready or denies while keys are
//! refetched.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError};
use crate::policy::Policy;
use crate::source::account::AccountSource;
use crate::source::jwks::KeyStore;

/// The policy in use, and where it came from.
pub struct LivePolicy {
    current: ArcSwap<Policy>,
    /// The config file; `None` for a policy built in memory (tests), which cannot reload.
    path: Option<PathBuf>,
    /// One reload at a time.
    reloading: Mutex<()>,
    pub generation: AtomicU64,
    pub reloads: AtomicU64,
    pub reload_failures: AtomicU64,
}

impl LivePolicy {
    pub fn new(policy: Policy, path: Option<PathBuf>) -> Self {
        LivePolicy {
            current: ArcSwap::from_pointee(policy),
            path,
            reloading: Mutex::new(()),
            generation: AtomicU64::new(1),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        }
    }

    /// The policy to decide a request with, from start to end.
    pub fn load(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    /// Reads the config file again and swaps the new policy in. Must run inside a tokio
    /// runtime: the new policy's background tasks (key refresh, upstream probes) start here.
    pub fn reload(&self) -> Result<u64, ConfigError> {
        let _one = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = &self.path else {
            return Ok(self.generation.load(Ordering::Relaxed));
        };
        let config = Config::load(path).inspect_err(|e| {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
            for problem in &e.problems {
                tracing::error!("{problem}");
            }
            tracing::error!(
                problems = e.problems.len(),
                "config reload failed; still serving the previous config"
            );
        })?;
        let old = self.current.load_full();
        if config.server.listen != old.server().listen
            || config.server.argon2_concurrency != old.server().argon2_concurrency
            || config.server.argon2_queue != old.server().argon2_queue
            || config.server.limits != old.server().limits
        {
            tracing::warn!(
                "[server] listen, argon2_concurrency, argon2_queue and the failure limits take effect on restart"
            );
        }
        let new = Policy::new(config);
        adopt(&new, &old);
        spawn_background(&new);
        self.current.store(Arc::new(new));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(generation, file = %path.display(), "config reloaded");
        Ok(generation)
    }
}

/// Carries over from `old` what doesn't depend on the config's content.
fn adopt(new: &Policy, old: &Policy) {
    if let (Some(new), Some(old)) = (new.jwt(), old.jwt()) {
        new.keys.adopt(&old.keys);
    }
    for source in new.accounts() {
        for previous in old.accounts() {
            source.adopt(previous);
        }
    }
}

/// Starts a policy's background tasks: JWT key refresh and upstream probes. They hold weak
/// references and end when the policy is dropped after a reload.
pub fn spawn_background(policy: &Policy) {
    if let Some(jwt) = policy.jwt() {
        tokio::spawn(KeyStore::run_refresh_loop(Arc::downgrade(&jwt.keys)));
    }
    for source in policy.accounts() {
        tokio::spawn(AccountSource::run_background(Arc::downgrade(source)));
    }
}

/// Reloads when the file's modification time or size changes, checked every `every`.
/// Polling sees every way editors and deploy tools replace a file (in place, rename, symlink
/// swap of a Kubernetes ConfigMap).
pub async fn watch_file(live: Arc<LivePolicy>, every: Duration) {
    let Some(path) = live.path.clone() else {
        return;
    };
    let stamp = |p: &PathBuf| -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(p).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    };
    let mut last = stamp(&path);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&path);
        if now != last {
            last = now;
            if now.is_some() {
                tracing::info!(file = %path.display(), "config file changed");
                let _ = live.reload();
            }
        }
    }
}

/// Reloads on every SIGHUP (`systemctl reload`, `kill -HUP`).
#[cfg(unix)]
pub async fn on_sighup(live: Arc<LivePolicy>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reload by editing the config file");
        return;
    };
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading the config");
        let _ = live.reload();
    }
}
