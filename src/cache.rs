//! The hot-path cache: a concurrent map whose entries expire, for what a cached decision reads
//! (argon2 verifications, verified JWTs, account answers), and the keyed hash its keys are made
//! with.
//!
//! A cached decision has a budget of about 100 ns in all (1.5 × a plain TOML-user decision).
//! moka, used for the colder caches, measured 73–108 ns per `get` on this machine, and
//! `Instant::now()` 24 ns (`benches/accounts.rs` records the figures in BENCHMARKS.md). So reads
//! here are a lock-free papaya lookup (≈10 ns) plus a coarse monotonic clock (≈5 ns, a few
//! milliseconds of resolution: ample for lifetimes of seconds).
//!
//! Keys are already keyed hashes (uniformly random to anyone without the process's secret), so
//! the map hashes them by taking their first bytes: no second hash on the hot path, and no way
//! for a client to aim at one bucket.
//!
//! Bounded: when an insert finds the map at capacity, expired entries are swept; if that frees
//! nothing, an arbitrary half is dropped. Evicting an entry only costs a later upstream call.

use std::cell::RefCell;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coarsetime::Instant;
use siphasher::sip128::{Hasher128 as _, SipHasher13};

/// Keyed 128-bit hashes of secrets, for cache keys: SipHash-1-3 (a PRF) with 128-bit output,
/// under a key random per process. Nothing kept in memory lets anyone test a password guess
/// offline, and a guess that lands on a cached entry would take ~2^128 tries.
#[derive(Clone)]
pub struct SecretHasher {
    k0: u64,
    k1: u64,
}

impl SecretHasher {
    pub fn random() -> Self {
        let (k0, k1) = rand::random();
        SecretHasher { k0, k1 }
    }

    /// A hasher with a key kept elsewhere (the store), for digests that must mean the same
    /// after a restart.
    pub fn with_key(key: [u8; 16]) -> Self {
        let (k0, k1) = key.split_at(8);
        SecretHasher {
            k0: u64::from_le_bytes(k0.try_into().unwrap_or_default()),
            k1: u64::from_le_bytes(k1.try_into().unwrap_or_default()),
        }
    }

    /// Hashes `parts` under a `domain` tag; each part but the last is length-prefixed, so
    /// ("ab", "c") and ("a", "bc") differ.
    pub fn hash(&self, domain: u8, parts: &[&[u8]]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.k0, self.k1);
        h.write_u8(domain);
        if let Some((last, rest)) = parts.split_last() {
            for part in rest {
                h.write_usize(part.len());
                h.write(part);
            }
            h.write(last);
        }
        h.finish128().as_u128()
    }
}

/// A hasher for keys that are already uniformly random: the first 8 bytes written.
#[derive(Default, Clone, Copy)]
pub struct PrehashedKey(u64);

impl Hasher for PrehashedKey {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }

    fn write_usize(&mut self, _: usize) {
        // Arrays hash their length first; it is the same for every key.
    }
}

struct Entry<V> {
    value: V,
    expires: Instant,
}

/// A bounded map of `K` (a keyed hash) to `V`, each entry living `ttl`.
pub struct TtlMap<K, V> {
    map: papaya::HashMap<K, Entry<V>, BuildHasherDefault<PrehashedKey>>,
    ttl: coarsetime::Duration,
    capacity: usize,
    /// Bumped after entries leave the map before their time is up (an eviction at capacity, a
    /// removal): what a copy of an entry kept elsewhere checks it is still the map's
    /// (`RecentTallies`).
    removals: AtomicU64,
}

impl<K: Hash + Eq + Send + Sync, V: Clone + Send + Sync> TtlMap<K, V> {
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        TtlMap {
            map: papaya::HashMap::builder()
                .hasher(BuildHasherDefault::default())
                .build(),
            ttl: ttl.into(),
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            removals: AtomicU64::new(0),
        }
    }

    /// The live value for `key`, if any.
    pub fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        self.map
            .pin()
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.value.clone())
    }

    /// The live value for `key` unless `replace` says it must go; otherwise a new value from
    /// `make`, inserted. Atomic: concurrent callers get the same value.
    pub fn get_or_replace(&self, key: K, make: impl Fn() -> V, replace: impl Fn(&V) -> bool) -> V {
        self.get_or_replace_until(key, make, replace).0
    }

    /// [`TtlMap::get_or_replace`], with the moment the value expires.
    fn get_or_replace_until(
        &self,
        key: K,
        make: impl Fn() -> V,
        replace: impl Fn(&V) -> bool,
    ) -> (V, Instant) {
        let now = Instant::now();
        let map = self.map.pin();
        // The common case, a live value to keep, is a plain read; `compute` below settles the
        // rest atomically (and looks again, so a value replaced in between is not missed).
        if let Some(e) = map
            .get(&key)
            .filter(|e| e.expires > now && !replace(&e.value))
        {
            return (e.value.clone(), e.expires);
        }
        self.make_room();
        let result = map.compute(key, |entry| match entry {
            Some((_, e)) if e.expires > now && !replace(&e.value) => {
                papaya::Operation::Abort((e.value.clone(), e.expires))
            }
            _ => papaya::Operation::Insert(Entry {
                value: make(),
                expires: now + self.ttl,
            }),
        });
        match result {
            papaya::Compute::Aborted(kept) => kept,
            papaya::Compute::Inserted(_, e)
            | papaya::Compute::Updated { new: (_, e), .. }
            // `compute` above never removes.
            | papaya::Compute::Removed(_, e) => (e.value.clone(), e.expires),
        }
    }

    /// Inserts or replaces the value for `key`.
    pub fn insert(&self, key: K, value: V) {
        self.make_room();
        let expires = Instant::now() + self.ttl;
        self.map.pin().insert(key, Entry { value, expires });
    }

    pub fn remove(&self, key: &K) {
        self.map.pin().remove(key);
        self.removals.fetch_add(1, Ordering::Release);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn make_room(&self) {
        if self.map.len() < self.capacity {
            return;
        }
        let now = Instant::now();
        let map = self.map.pin();
        map.retain(|_, e| e.expires > now);
        if map.len() >= self.capacity {
            let mut keep = false;
            map.retain(|_, _| {
                keep = !keep;
                keep
            });
        }
        // After the removals: a copy taken while they ran is stale by the time this is seen.
        self.removals.fetch_add(1, Ordering::Release);
    }
}

/// Failures counted per key (an address, a user name) over a window that starts with the first
/// attempt, together with the attempts still in flight: what the brute-force limiter and the
/// account sources' per-name limit both keep. Keys are stored as keyed hashes, so a client cannot
/// aim at one bucket of the map.
///
/// A limit checked by reading a count before the work and writing it after is overshot by every
/// attempt that starts in between: 100 concurrent guesses all read "0 failures". So an attempt
/// *reserves* its place first ([`FailureCounts::reserve`]): failures and attempts in flight
/// together stay within the limit, checked and taken in one atomic step, and the reservation then
/// becomes a failure or is given back. An attempt that finds the limit taken up by attempts still
/// in flight waits for them to settle rather than being turned away: if they fail, it is denied;
/// if they succeed (a household's viewers opening streams together), it goes on.
pub struct FailureCounts {
    map: TtlMap<u128, Arc<Tally>>,
    hasher: SecretHasher,
    /// Tells this instance's entries apart in each thread's [`RecentTallies`].
    id: u64,
}

/// One key's failures (high 32 bits) and attempts in flight (low 32 bits), in one word so that
/// checking both against a limit and reserving is a single atomic update; and the signal that an
/// attempt settled, for those waiting for a place.
///
/// The signal takes a lock (tokio's `Notify` keeps its waiters in a locked list), so it is only
/// used when someone waits: a settlement looks at `waiting` first. Every request from one
/// address shares its tally, and without this each of them took that lock three times.
/// `waiting` and `word` are written and read in sequentially consistent order, so either a
/// waiter sees the settlement when it looks again, or the settlement sees the waiter.
#[derive(Default)]
pub struct Tally {
    word: AtomicU64,
    waiting: AtomicU32,
    settled: tokio::sync::Notify,
}

const IN_FLIGHT: u64 = 0xFFFF_FFFF;
const ONE_FAILURE: u64 = 1 << 32;

/// What a look at a tally found, for an attempt that wants a place under `max`.
enum Take {
    Taken,
    /// `max` failures: denied.
    Full,
    /// Below `max` failures, but attempts in flight fill the rest: wait for one to settle.
    Wait,
}

impl Tally {
    fn split(word: u64) -> (u32, u32) {
        ((word >> 32) as u32, (word & IN_FLIGHT) as u32)
    }

    /// Failures plus attempts in flight.
    fn total(&self) -> u32 {
        let (failed, in_flight) = Tally::split(self.word.load(Ordering::Acquire));
        failed.saturating_add(in_flight)
    }

    fn try_take(&self, max: u32) -> Take {
        let mut outcome = Take::Full;
        let _ = self
            .word
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |word| {
                let (failed, in_flight) = Tally::split(word);
                if failed >= max {
                    outcome = Take::Full;
                    None
                } else if failed.saturating_add(in_flight) >= max || in_flight == u32::MAX {
                    outcome = Take::Wait;
                    None
                } else {
                    outcome = Take::Taken;
                    Some(word + 1)
                }
            });
        outcome
    }

    /// Wakes the attempts waiting for a place, if there are any.
    fn settle(&self) {
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.settled.notify_waiters();
        }
    }
}

/// An attempt counted in [`Tally::waiting`] while it exists.
struct Waiting<'a>(&'a AtomicU32);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicU32) -> Self {
        waiting.fetch_add(1, Ordering::SeqCst);
        Waiting(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A place taken under a limit by an attempt in flight. [`Reservation::release`] gives it back
/// (the attempt did not fail); anything else, including dropping it (a client that went away,
/// a task cancelled mid-call), turns it into a failure: an attempt whose outcome we never
/// learned may still have reached the upstream.
pub struct Reservation(Option<Arc<Tally>>);

impl Reservation {
    /// The attempt did not fail: its place is free again.
    pub fn release(mut self) {
        if let Some(t) = self.0.take() {
            t.word.fetch_sub(1, Ordering::SeqCst);
            t.settle();
        }
    }

    /// The attempt failed: it stays counted, as a failure, for the rest of the window.
    pub fn fail(self) {
        drop(self);
    }

    /// A reservation that holds nothing (the limit is off).
    pub fn none() -> Self {
        Reservation(None)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            // One less in flight, one more failure; in flight is at least one (ours).
            t.word.fetch_add(ONE_FAILURE - 1, Ordering::SeqCst);
            t.settle();
        }
    }
}

/// The tallies a thread used last, so that the requests of one busy client (MediaMTX opening
/// streams for a household behind one address) reach theirs without the keyed hash and the map
/// lookup: half of what the limiter cost a keep-alive request (BENCHMARKS.md, issue 16).
///
/// A copy is only used while it is the map's entry: until the entry's own expiry (the same
/// instant the map goes by, read on the same coarse clock), and while the map has removed
/// nothing since it was taken (`TtlMap::removals`). Otherwise an evicted tally could live on
/// here while the map starts a new one, and the limit would count failures in two places.
/// Keys longer than [`RecentTally::MAX_KEY`] (long user names) always take the map.
struct RecentTallies {
    slots: [Option<RecentTally>; 4],
    /// The slot the next copy replaces, round robin.
    next: usize,
}

struct RecentTally {
    /// The `FailureCounts` it belongs to.
    owner: u64,
    domain: u8,
    len: u8,
    key: [u8; RecentTally::MAX_KEY],
    tally: Arc<Tally>,
    expires: Instant,
    /// `TtlMap::removals` when it was taken from the map.
    removals: u64,
}

impl RecentTally {
    /// An IPv6 /64 is 8 bytes, an IPv4 address 4.
    const MAX_KEY: usize = 16;
}

thread_local! {
    static RECENT_TALLIES: RefCell<RecentTallies> = const {
        RefCell::new(RecentTallies { slots: [None, None, None, None], next: 0 })
    };
}

impl RecentTallies {
    fn find(&self, owner: u64, domain: u8, key: &[u8], removals: u64) -> Option<Arc<Tally>> {
        let now = Instant::now();
        self.slots.iter().flatten().find_map(|r| {
            let same = r.owner == owner
                && r.domain == domain
                && usize::from(r.len) == key.len()
                && r.key[..key.len()] == *key;
            (same && r.expires > now && r.removals == removals).then(|| Arc::clone(&r.tally))
        })
    }

    fn keep(
        &mut self,
        owner: u64,
        domain: u8,
        key: &[u8],
        tally: &Arc<Tally>,
        expires: Instant,
        removals: u64,
    ) {
        if key.len() > RecentTally::MAX_KEY {
            return;
        }
        let mut copy = [0; RecentTally::MAX_KEY];
        copy[..key.len()].copy_from_slice(key);
        self.slots[self.next] = Some(RecentTally {
            owner,
            domain,
            len: key.len() as u8,
            key: copy,
            tally: Arc::clone(tally),
            expires,
            removals,
        });
        self.next = (self.next + 1) % self.slots.len();
    }
}

impl FailureCounts {
    pub fn new(capacity: u64, window: Duration) -> Self {
        static INSTANCES: AtomicU64 = AtomicU64::new(0);
        FailureCounts {
            map: TtlMap::new(capacity, window),
            hasher: SecretHasher::random(),
            id: INSTANCES.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// `key`'s tally, the one in the map: from this thread's [`RecentTallies`] while the copy
    /// there is the map's, else from the map (and kept there).
    fn tally(&self, domain: u8, key: &[u8]) -> Arc<Tally> {
        let from_map = || {
            self.map.get_or_replace_until(
                self.hasher.hash(domain, &[key]),
                Default::default,
                |_| false,
            )
        };
        let recent = RECENT_TALLIES.try_with(|recent| {
            let mut recent = recent.try_borrow_mut().ok()?;
            // Read before the map is: a removal that runs meanwhile bumps it after.
            let removals = self.map.removals.load(Ordering::Acquire);
            if let Some(tally) = recent.find(self.id, domain, key, removals) {
                return Some(tally);
            }
            let (tally, expires) = from_map();
            recent.keep(self.id, domain, key, &tally, expires, removals);
            Some(tally)
        });
        match recent {
            Ok(Some(tally)) => tally,
            _ => from_map().0,
        }
    }

    /// Failures recorded for `key` (in the namespace `domain`) in its current window, plus the
    /// attempts for it in flight.
    pub fn count(&self, domain: u8, key: &[u8]) -> u32 {
        self.map
            .get(&self.hasher.hash(domain, &[key]))
            .map_or(0, |t| t.total())
    }

    /// Takes a place for one attempt under `max`: at once while failures and attempts in flight
    /// are below it; `None` once `max` attempts have failed. In between (the rest of the places
    /// held by attempts in flight) it waits until one of them settles, and looks again.
    pub async fn reserve(&self, domain: u8, key: &[u8], max: u32) -> Option<Reservation> {
        let tally = self.tally(domain, key);
        loop {
            match tally.try_take(max) {
                Take::Taken => break,
                Take::Full => return None,
                Take::Wait => {}
            }
            // The places are held by attempts in flight. Counted as waiting and registered for
            // the signal before looking again, so a settlement in between is not missed.
            let taken = {
                let _waiting = Waiting::enter(&tally.waiting);
                let settled = tally.settled.notified();
                let mut settled = std::pin::pin!(settled);
                settled.as_mut().enable();
                match tally.try_take(max) {
                    Take::Taken => true,
                    Take::Full => return None,
                    Take::Wait => {
                        settled.await;
                        false
                    }
                }
            };
            if taken {
                break;
            }
        }
        Some(Reservation(Some(tally)))
    }

    /// Counts one failure that had no reservation.
    pub fn add(&self, domain: u8, key: &[u8]) {
        let tally = self.tally(domain, key);
        let _ = tally
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                (word >> 32 < u64::from(u32::MAX)).then_some(word + ONE_FAILURE)
            });
    }

    /// Forgets `key`'s failures (a success). Attempts still in flight stay counted.
    pub fn clear(&self, domain: u8, key: &[u8]) {
        if let Some(t) = self.map.get(&self.hasher.hash(domain, &[key])) {
            t.word.fetch_and(IN_FLIGHT, Ordering::SeqCst);
            t.settle();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let m = TtlMap::new(10, Duration::from_millis(50));
        assert_eq!(m.get_or_replace(1u128, || "a", |_| false), "a");
        assert_eq!(m.get(&1), Some("a"));
        assert_eq!(m.get_or_replace(1u128, || "b", |_| false), "a");
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(m.get(&1), None);
        assert_eq!(m.get_or_replace(1u128, || "b", |_| false), "b");
    }

    #[test]
    fn replace_if_asked() {
        let m = TtlMap::new(10, Duration::from_secs(60));
        m.get_or_replace(7u128, || 1, |_| false);
        assert_eq!(m.get_or_replace(7u128, || 2, |v| *v == 1), 2);
        assert_eq!(m.get_or_replace(7u128, || 3, |v| *v == 1), 2);
    }

    #[test]
    fn stays_bounded() {
        let m = TtlMap::new(100, Duration::from_secs(60));
        for k in 0..1000u128 {
            m.get_or_replace(k * 0x9E37_79B9_7F4A_7C15, || k, |_| false);
            assert!(m.len() <= 100, "{}", m.len());
        }
        // The latest entry is always there.
        assert_eq!(m.get(&(999 * 0x9E37_79B9_7F4A_7C15)), Some(999));
    }

    #[test]
    fn failure_counts_per_key_and_domain() {
        let f = FailureCounts::new(100, Duration::from_secs(60));
        f.add(0, b"alice");
        f.add(0, b"alice");
        f.add(1, b"alice");
        assert_eq!((f.count(0, b"alice"), f.count(1, b"alice")), (2, 1));
        assert_eq!(f.count(0, b"bob"), 0);
        f.clear(0, b"alice");
        assert_eq!((f.count(0, b"alice"), f.count(1, b"alice")), (0, 1));
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn reservations_count_while_in_flight_and_settle() {
        let f = FailureCounts::new(100, Duration::from_secs(60));
        block_on(async {
            let a = f.reserve(0, b"ip", 3).await.unwrap();
            let b = f.reserve(0, b"ip", 3).await.unwrap();
            let c = f.reserve(0, b"ip", 3).await.unwrap();
            assert_eq!(f.count(0, b"ip"), 3);
            a.release();
            assert_eq!(f.count(0, b"ip"), 2);
            b.fail();
            drop(c); // dropped without an outcome: a failure
            assert_eq!(f.count(0, b"ip"), 2);
            f.clear(0, b"ip");
            assert_eq!(f.count(0, b"ip"), 0);
            let d = f.reserve(0, b"ip", 3).await.unwrap();
            f.clear(0, b"ip");
            assert_eq!(
                f.count(0, b"ip"),
                1,
                "a success clears failures, not attempts in flight"
            );
            d.release();
            for _ in 0..3 {
                f.reserve(0, b"ip", 3).await.unwrap().fail();
            }
            assert!(
                f.reserve(0, b"ip", 3).await.is_none(),
                "three failures fill a limit of 3"
            );
        });
    }

    #[test]
    fn a_full_limit_of_attempts_in_flight_makes_the_next_wait_for_their_outcome() {
        let f = Arc::new(FailureCounts::new(100, Duration::from_secs(60)));
        let waiter = |f: &Arc<FailureCounts>| {
            let f = Arc::clone(f);
            std::thread::spawn(move || block_on(f.reserve(0, b"k", 2)).map(Reservation::fail))
        };
        // Two places, both taken; a third attempt waits. One success: it goes on.
        let first = block_on(f.reserve(0, b"k", 2)).unwrap();
        let second = block_on(f.reserve(0, b"k", 2)).unwrap();
        let third = waiter(&f);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!third.is_finished(), "waits while the places are held");
        first.release();
        assert!(
            third.join().unwrap().is_some(),
            "a place freed by a success"
        );
        // One failure (the third's) and one in flight: the next waits, and is denied once the
        // one in flight fails too.
        let fourth = waiter(&f);
        second.fail();
        assert!(fourth.join().unwrap().is_none(), "two failures: denied");
    }

    #[test]
    fn a_threads_recent_tallies_are_the_maps_own() {
        let f = FailureCounts::new(8, Duration::from_secs(60));
        let other = FailureCounts::new(8, Duration::from_secs(60));
        block_on(async {
            f.reserve(0, b"a", 10).await.unwrap().fail();
            other.reserve(0, b"a", 10).await.unwrap().release();
            assert_eq!((f.count(0, b"a"), other.count(0, b"a")), (1, 0));
            // Evicted from the map at capacity (inserted directly, so this thread's copy of
            // "a" stays where it is): a new attempt counts in the map's new tally, not in the
            // copy of the old one.
            let mut k = 1u128;
            while f.count(0, b"a") != 0 {
                f.map
                    .insert(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), Arc::default());
                k += 1;
            }
            f.reserve(0, b"a", 10).await.unwrap().fail();
            assert_eq!(f.count(0, b"a"), 1);
        });
    }

    #[test]
    fn a_threads_recent_tally_ends_with_the_window() {
        let f = FailureCounts::new(100, Duration::from_millis(50));
        block_on(async {
            f.reserve(0, b"a", 10).await.unwrap().fail();
            assert_eq!(f.count(0, b"a"), 1);
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(f.count(0, b"a"), 0);
            f.reserve(0, b"a", 10).await.unwrap().fail();
            assert_eq!(f.count(0, b"a"), 1, "a new window, counted in the map");
        });
    }

    #[test]
    fn reservations_hold_under_concurrency() {
        let f = FailureCounts::new(100, Duration::from_secs(60));
        let admitted = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    block_on(async {
                        for _ in 0..25 {
                            if let Some(r) = f.reserve(0, b"ip", 20).await {
                                admitted.fetch_add(1, Ordering::Relaxed);
                                r.fail();
                            }
                        }
                    })
                });
            }
        });
        assert_eq!(admitted.load(Ordering::Relaxed), 20);
        assert_eq!(f.count(0, b"ip"), 20);
    }
}
