//! Hot reload: the policy in use, swapped atomically when the config file changes or on SIGHUP.
//!
//! A request loads the current policy once and decides with it to the end, so requests in
//! flight finish on the old config while the next ones use the new one. A new config is parsed
//! and checked in full first; if it has problems, nothing changes: they are logged as
//! `FILE:LINE:COL: message` and counted, and the old policy keeps serving.
//!
//! Files are caught half-written: a change to the file is loaded only once it has stayed the
//! same for [`SETTLE`], and a config that looks truncated (one granting nothing, or one without
//! `[[users]]`, replacing a config that has them) is refused like an invalid one.
//!
//! Every reload builds a new `Policy` with empty caches, so a user removed or a password changed
//! is denied on the very next request even if the old policy had verified it. What is not tied to
//! the config's content carries over: JWT keys fetched from the same URL, and whether each
//! upstream has answered, so a reload never makes the service unready or denies while keys are
//! refetched.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError, Problem};
use crate::policy::Policy;
use crate::source::account::{AccountSource, NameLedger};
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
    /// Where account sources also reserve per-name attempts, with a shared store; handed to
    /// the sources of every policy from now on.
    ledger: OnceLock<Arc<dyn NameLedger>>,
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
            ledger: OnceLock::new(),
        }
    }

    /// Has every account source, of this policy and of those reloads bring, reserve its
    /// per-name attempts in `ledger` too (once; later calls change nothing).
    pub fn use_ledger(&self, ledger: Arc<dyn NameLedger>) {
        if self.ledger.set(ledger).is_ok() {
            self.hand_ledger(&self.load());
        }
    }

    fn hand_ledger(&self, policy: &Policy) {
        if let Some(ledger) = self.ledger.get() {
            for source in policy.accounts() {
                source.use_ledger(Arc::clone(ledger));
            }
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
        let old = self.current.load_full();
        let config = Config::load(path)
            .and_then(|c| refuse_suspicious(c, &old, path))
            .inspect_err(|e| {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                for problem in &e.problems {
                    tracing::error!("{problem}");
                }
                tracing::error!(
                    problems = e.problems.len(),
                    "config reload failed; still serving the previous config"
                );
            })?;
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
        if new.process_sections() != old.process_sections() {
            tracing::warn!("[store], [mediamtx] and [portal] take effect on restart");
        }
        adopt(&new, &old);
        self.hand_ledger(&new);
        spawn_background(&new);
        self.current.store(Arc::new(new));
        self.reloads.fetch_add(1, Ordering::Relaxed);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(generation, file = %path.display(), "config reloaded");
        Ok(generation)
    }
}

/// Refuses a config that looks like a file caught mid-write rather than a decision: one that
/// grants nothing (an empty file, as `>` or an editor leaves it for a moment) while the config in
/// use grants something, or one without `[[users]]` while the config in use has some (a file cut
/// off before its users). Both are valid TOML, and swapping either in would turn every client
/// away. An operator who really means it restarts the service, which accepts any valid config.
fn refuse_suspicious(config: Config, old: &Policy, path: &Path) -> Result<Config, ConfigError> {
    let why = if config.grants_nothing() && !old.grants_nothing() {
        "the new config grants nothing (no user with a permission, no [jwt], no account source, no [store]) while the one in use does: taken for a file caught half-written; restart mtx-auth to deny everything on purpose"
    } else if config.users.is_empty() && !old.users().is_empty() {
        "the new config has no [[users]] while the one in use has some: taken for a file caught half-written; restart mtx-auth to remove every user on purpose"
    } else {
        return Ok(config);
    };
    Err(ConfigError {
        problems: vec![Problem {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            message: why.to_owned(),
        }],
    })
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

/// How long the config file must stay unchanged before a change is loaded. Editors, `>`
/// redirections and deploy scripts write a file in steps (truncate, then write; write, then
/// append); loading between the steps would put a half-written config in force, such as a user
/// whose `ips` line has not arrived yet, let in from any address. Writing the file elsewhere
/// and renaming it over the config is atomic and needs no settling, but not everyone does.
pub const SETTLE: Duration = Duration::from_secs(2);

/// What identifies one version of the config file: modification time, size and inode.
pub type Stamp = Option<(SystemTime, u64, u64)>;

/// The file's stamp now; `None` while it cannot be read.
pub fn file_stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len(), file_id(&meta)))
}

/// Reloads when the file's stamp changes and then stays unchanged for [`SETTLE`], checked every
/// `every`. `loaded` is the stamp of the file the policy in use was read from, taken before it
/// was read (so a change made while the service started is not mistaken for the file in use).
/// Polling sees every way editors and deploy tools replace a file (in place, rename, symlink swap
/// of a Kubernetes ConfigMap).
pub async fn watch_file(live: Arc<LivePolicy>, every: Duration, mut loaded: Stamp) {
    let Some(path) = live.path.clone() else {
        return;
    };
    // The stamp last seen and since when it has not changed.
    let mut seen = (loaded, Instant::now());
    loop {
        tokio::time::sleep(every).await;
        let now = file_stamp(&path);
        if now != seen.0 {
            seen = (now, Instant::now());
            continue;
        }
        if now != loaded && now.is_some() && seen.1.elapsed() >= SETTLE {
            loaded = now;
            tracing::info!(file = %path.display(), "config file changed");
            reload_off_runtime(&live).await;
        }
    }
}

/// Runs a reload on a blocking thread. Reading a large file, compiling its regexes, building
/// the user index and a decoy argon2 hash take from milliseconds to seconds; on the runtime's
/// thread they would hold up everything else it runs (key refreshes, upstream probes, and in a
/// single-threaded runtime the requests themselves). The new policy's background tasks are
/// still spawned onto the runtime: a blocking thread carries the runtime's handle.
async fn reload_off_runtime(live: &Arc<LivePolicy>) {
    let live = Arc::clone(live);
    // The outcome is logged and counted by `reload` itself.
    let _ = tokio::task::spawn_blocking(move || {
        let outcome = live.reload();
        // Whether or not it was swapped in, the new file's parse is garbage now, and so is the
        // old policy unless a request in flight still holds it.
        release_freed_memory();
        outcome
    })
    .await;
}

/// Hands the memory that loading a config freed back to the system. Parsing a large file
/// allocates many times what the policy keeps (the whole TOML document); glibc's allocator keeps
/// freed memory for reuse and returns only what lies at the top of its heaps, so without this a
/// sidecar would go on holding the peak of its last load. Elsewhere it does nothing: other
/// allocators return memory on their own terms.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes the allocator's own lock and only releases free pages; it
    // touches no memory that is in use.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The file's inode, so that a file replaced by another of the same size and time is noticed.
#[cfg(unix)]
fn file_id(meta: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(meta)
}

#[cfg(not(unix))]
fn file_id(_: &std::fs::Metadata) -> u64 {
    0
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
        reload_off_runtime(&live).await;
    }
}
