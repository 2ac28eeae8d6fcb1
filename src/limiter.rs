//! Brute-force protection: failed attempts counted per client address and per user name.
//!
//! After `max_failures_per_ip` failed attempts from one address within `failure_window`, every
//! further attempt with credentials from it is denied at once, for the rest of the window:
//! no argon2, no upstream call, no signature check. The same can apply per user name
//! (`max_failures_per_user`, off by default: it lets anyone lock a user out by guessing).
//! Requests without credentials are never limited, so `any` rules keep working.
//!
//! A request with credentials reserves its place under each limit before anything is checked,
//! and holds it while it is decided (`Limiter::begin`): failures and attempts in flight together
//! stay within the limit, so concurrent guesses cannot overshoot it; one that finds the places
//! held by attempts in flight waits for their outcome. A deny that the operator's
//! config causes (no source accepts credentials for the action at all) is not a failure.
//!
//! IPv6 clients are counted per /64, the block one host usually gets; requests whose `ip` does
//! not parse share one count. The limiter lives beside the policy, not in it, so its counts
//! survive config reloads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::cache::{FailureCounts, Reservation, SecretHasher, TtlMap};
use crate::decision::Decision;
use crate::request::Request;

/// `[server]`'s limits, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// 0 turns the per-address limit off.
    pub max_failures_per_ip: u32,
    /// 0 turns the per-user limit off.
    pub max_failures_per_user: u32,
    pub failure_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        // A household behind one address, with a device retrying a stale password, stays well
        // below 20 failures in 5 minutes; a password spray does not.
        Limits {
            max_failures_per_ip: 20,
            max_failures_per_user: 0,
            failure_window: Duration::from_secs(300),
        }
    }
}

pub struct Limiter {
    limits: Limits,
    /// Failures and attempts in flight per address (domain 0), per user name (domain 1) and for
    /// every request whose `ip` does not parse (domain 2, one shared key), each living one
    /// window from its first attempt.
    failures: FailureCounts,
    /// Requests denied by the limiter.
    pub denied: AtomicU64,
    /// With a store: the failures other replicas counted, and ours they have yet to hear of.
    shared: OnceLock<Arc<SharedCounts>>,
}

/// The limits' counts across replicas. Each replica counts its own failures in memory, as
/// without a store; the store's sync task (`store::replicas`) writes them in batches and reads
/// back what the others counted, which lowers the places left here. Keys are a keyed hash
/// under a key every replica reads from the store, so they agree on keys without ever writing
/// an address or a user name.
pub struct SharedCounts {
    hasher: SecretHasher,
    /// Failures the other replicas counted, per key, and until when (Unix seconds).
    others: TtlMap<u128, (u32, i64)>,
    /// Whether `others` may hold anything: the common case (no spray anywhere) costs one load.
    any_others: AtomicBool,
    /// This replica's failures not yet written.
    pending: Mutex<HashMap<u128, u32>>,
}

impl SharedCounts {
    pub fn new(key: [u8; 16], window: Duration) -> Self {
        SharedCounts {
            hasher: SecretHasher::with_key(key),
            others: TtlMap::new(1_000_000, window),
            any_others: AtomicBool::new(false),
            pending: Mutex::default(),
        }
    }

    fn key(&self, domain: u8, bytes: &[u8]) -> u128 {
        self.hasher.hash(domain, &[bytes])
    }

    fn others(&self, key: u128) -> u32 {
        if !self.any_others.load(Ordering::Relaxed) {
            return 0;
        }
        match self.others.get(&key) {
            Some((n, until)) if until > crate::time::now_unix() => n,
            _ => 0,
        }
    }

    fn failed(&self, key: u128) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        *pending.entry(key).or_default() += 1;
    }

    /// This replica's failures since the last call, for the store.
    pub fn take_pending(&self) -> Vec<(u128, u32)> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.drain().collect()
    }

    /// Puts back failures the store could not take: they are written with the next batch.
    pub fn restore_pending(&self, failures: Vec<(u128, u32)>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (key, n) in failures {
            *pending.entry(key).or_default() += n;
        }
    }

    /// What the other replicas counted for `key`, good until `until` (Unix seconds).
    pub fn set_others(&self, key: u128, failures: u32, until: i64) {
        self.others.insert(key, (failures, until));
        self.any_others.store(true, Ordering::Relaxed);
    }
}

/// The places one request holds under the limits while it is decided; see
/// [`Limiter::begin`]. Dropped without [`Attempt::finish`], it counts as a failed attempt.
pub struct Attempt {
    by_ip: Reservation,
    by_user: Reservation,
    /// The shared keys of the places held, to tell the other replicas of a failure.
    shared: Option<(Arc<SharedCounts>, [Option<u128>; 2])>,
}

impl Attempt {
    /// Settles the attempt: a failed one stays counted, any other gives its places back.
    pub fn finish(self, failed: bool) {
        if failed {
            if let Some((shared, keys)) = &self.shared {
                keys.iter().flatten().for_each(|k| shared.failed(*k));
            }
            self.by_ip.fail();
            self.by_user.fail();
        } else {
            self.by_ip.release();
            self.by_user.release();
        }
    }
}

/// Where a request's address is counted.
enum AddressKey {
    /// All of IPv4.
    V4([u8; 4]),
    /// The /64 of IPv6.
    V6([u8; 8]),
    /// An `ip` that does not parse (empty, `010.1.2.3`): all such requests share one count,
    /// so a malformed address never switches the limit off.
    Unparsable,
}

impl AddressKey {
    fn of(req: &Request) -> Self {
        match req.ip {
            Some(IpAddr::V4(v4)) => AddressKey::V4(v4.octets()),
            Some(IpAddr::V6(v6)) => {
                let mut prefix = [0; 8];
                prefix.copy_from_slice(&v6.octets()[..8]);
                AddressKey::V6(prefix)
            }
            None => AddressKey::Unparsable,
        }
    }

    fn domain_and_bytes(&self) -> (u8, &[u8]) {
        match self {
            AddressKey::V4(b) => (0, b),
            AddressKey::V6(b) => (0, b),
            AddressKey::Unparsable => (2, &[]),
        }
    }
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            failures: FailureCounts::new(1_000_000, limits.failure_window),
            limits,
            denied: AtomicU64::new(0),
            shared: OnceLock::new(),
        }
    }

    /// Counts failures across replicas from now on (once; later calls change nothing).
    pub fn share(&self, counts: Arc<SharedCounts>) {
        let _ = self.shared.set(counts);
    }

    /// Takes this request's places under the limits, before anything is checked: `None` when
    /// its address (or user name) already has `max` failed attempts, and the request is to be
    /// denied at once. Requests without credentials are never limited and hold nothing.
    ///
    /// Reserving first, in one atomic step per limit, is what makes the limit hold under
    /// concurrency: a hundred simultaneous guesses get exactly `max` evaluations. A request that
    /// finds the remaining places held by attempts still in flight waits for their outcome
    /// (`FailureCounts::reserve`), so a burst of good logins from one address is not turned away.
    pub async fn begin(&self, req: &Request<'_>) -> Option<Attempt> {
        if !req.has_credentials() {
            return Some(Attempt {
                by_ip: Reservation::none(),
                by_user: Reservation::none(),
                shared: None,
            });
        }
        let l = &self.limits;
        let shared = self.shared.get();
        let mut keys = [None, None];
        let by_ip = if l.max_failures_per_ip > 0 {
            let key = AddressKey::of(req);
            let (domain, bytes) = key.domain_and_bytes();
            let max = self.places(shared, domain, bytes, l.max_failures_per_ip, &mut keys[0]);
            self.failures.reserve(domain, bytes, max).await
        } else {
            Some(Reservation::none())
        };
        let by_user = match by_ip {
            Some(_) if l.max_failures_per_user > 0 && !req.user.is_empty() => {
                let bytes = req.user.as_bytes();
                let max = self.places(shared, 1, bytes, l.max_failures_per_user, &mut keys[1]);
                self.failures.reserve(1, bytes, max).await
            }
            _ => Some(Reservation::none()),
        };
        match (by_ip, by_user) {
            (Some(by_ip), Some(by_user)) => Some(Attempt {
                by_ip,
                by_user,
                shared: shared.map(|s| (Arc::clone(s), keys)),
            }),
            (by_ip, by_user) => {
                // Give back whatever was taken: a limited request is not an attempt.
                let limited_by_ip = by_ip.is_none();
                for taken in [by_ip, by_user].into_iter().flatten() {
                    taken.release();
                }
                self.denied.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    target: "mtx_auth::limiter",
                    ip = %req.ip_raw,
                    user = %req.user,
                    by_ip = limited_by_ip,
                    by_user = !limited_by_ip,
                    "too many failed attempts: denied without checking"
                );
                None
            }
        }
    }

    /// The places under `max` this replica may fill: what the other replicas' failures left.
    /// Notes the key the others know this one by in `shared_key`.
    fn places(
        &self,
        shared: Option<&Arc<SharedCounts>>,
        domain: u8,
        bytes: &[u8],
        max: u32,
        shared_key: &mut Option<u128>,
    ) -> u32 {
        let Some(shared) = shared else {
            return max;
        };
        let key = shared.key(domain, bytes);
        *shared_key = Some(key);
        max.saturating_sub(shared.others(key))
    }

    /// Whether a decision was a failed attempt: credentials that didn't check out. Denials for
    /// other reasons (no permission for a path with a valid token, an upstream outage, a full
    /// argon2 queue) are not the client's guess. `guessable` is false when the config itself
    /// accepts no credentials for this request's action (see `Policy::accepts_credentials`):
    /// then every request is denied by the operator's config, and counting those denials would
    /// turn legitimate clients away once the config is fixed.
    pub fn is_failure(req: &Request, decision: &Decision, guessable: bool) -> bool {
        let failed = match decision {
            Decision::Deny(reason) => reason.is_failed_attempt(),
            Decision::Allow { .. } => false,
        };
        failed && guessable && req.has_credentials()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Action;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn attempt(l: &Limiter, req: &Request, failed: bool) -> bool {
        match block_on(l.begin(req)) {
            Some(a) => {
                a.finish(failed);
                true
            }
            None => false,
        }
    }

    #[test]
    fn counts_failures_per_address_and_ipv6_prefix() {
        let l = Limiter::new(Limits {
            max_failures_per_ip: 2,
            ..Limits::default()
        });
        let wrong = Request::new(Action::Read, "cam", "2001:db8::1", "u", "x");
        let neighbour = Request::new(Action::Read, "cam", "2001:db8::2", "v", "y");
        let elsewhere = Request::new(Action::Read, "cam", "2001:db9::1", "u", "x");
        let anonymous = Request::new(Action::Read, "cam", "2001:db8::1", "", "");
        assert!(attempt(&l, &wrong, true));
        assert!(
            attempt(&l, &anonymous, true),
            "no credentials: holds nothing"
        );
        assert!(attempt(&l, &wrong, false), "a success gives its place back");
        assert!(attempt(&l, &wrong, true));
        assert!(!attempt(&l, &wrong, true));
        assert!(!attempt(&l, &neighbour, false), "same /64");
        assert!(attempt(&l, &elsewhere, false));
        assert!(
            attempt(&l, &anonymous, false),
            "no credentials, never limited"
        );
    }

    #[test]
    fn unparsable_addresses_share_one_count() {
        let l = Limiter::new(Limits {
            max_failures_per_ip: 2,
            ..Limits::default()
        });
        for ip in ["", "010.1.2.3"] {
            let req = Request::new(Action::Read, "cam", ip, "u", "x");
            assert!(attempt(&l, &req, true));
        }
        let req = Request::new(Action::Read, "cam", "not an ip", "u", "x");
        assert!(!attempt(&l, &req, true));
        let fine = Request::new(Action::Read, "cam", "10.0.0.1", "u", "x");
        assert!(attempt(&l, &fine, true));
    }

    #[test]
    fn per_user_limit_is_off_by_default_and_works_when_set() {
        fn from(ip: &str) -> Request<'_> {
            Request::new(Action::Read, "cam", ip, "bob", "guess")
        }
        let off = Limiter::new(Limits::default());
        for i in 0..10 {
            let ip = format!("10.0.0.{i}");
            assert!(attempt(&off, &from(&ip), true));
        }
        assert!(attempt(&off, &from("10.0.1.1"), true));
        let on = Limiter::new(Limits {
            max_failures_per_user: 3,
            ..Limits::default()
        });
        for i in 0..3 {
            let ip = format!("10.0.0.{i}");
            assert!(attempt(&on, &from(&ip), true));
        }
        assert!(!attempt(&on, &from("10.0.1.1"), true));
        // The address's place taken before the user limit refused was given back.
        let other = Request::new(Action::Read, "cam", "10.0.1.1", "carol", "x");
        for _ in 0..20 {
            assert!(attempt(&on, &other, false));
        }
    }
}
