//! `[server]`: where to listen and how much argon2 work, memory and guessing to allow.

use std::time::Duration;

use crate::config::reader::Table;
use crate::limiter::Limits;

/// Where the service listens unless `[server] listen` or `--listen` says otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9000";

/// `[server]`, checked.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    /// argon2 verifications running at once (each uses one core and its `m` KiB of memory).
    pub argon2_concurrency: usize,
    /// argon2 verifications allowed to wait; beyond this, requests are denied at once.
    pub argon2_queue: usize,
    /// Entries in the cache of successful argon2 verifications.
    pub cache_capacity: u64,
    /// How long a successful argon2 verification is remembered.
    pub cache_ttl: Duration,
    /// Brute-force limits.
    pub limits: Limits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        ServerConfig {
            listen: DEFAULT_LISTEN.to_owned(),
            argon2_concurrency: cores,
            argon2_queue: 64,
            cache_capacity: 100_000,
            cache_ttl: Duration::from_secs(3600),
            limits: Limits::default(),
        }
    }
}

pub fn read(mut t: Table<'_>) -> ServerConfig {
    let mut s = ServerConfig::default();
    if let Some(listen) = t.string("listen") {
        s.listen = listen.value;
    }
    if let Some(n) = t.int("argon2_concurrency", 1, 1024) {
        s.argon2_concurrency = n as usize;
    }
    if let Some(n) = t.int("argon2_queue", 1, 1_000_000) {
        s.argon2_queue = n as usize;
    }
    if let Some(n) = t.int("cache_capacity", 1, 100_000_000) {
        s.cache_capacity = n;
    }
    if let Some(d) = t.secs("cache_ttl_secs", 1, 30 * 24 * 3600) {
        s.cache_ttl = d;
    }
    if let Some(d) = t.secs("failure_window_secs", 1, 24 * 3600) {
        s.limits.failure_window = d;
    }
    if let Some(n) = t.int("max_failures_per_ip", 0, 1_000_000) {
        s.limits.max_failures_per_ip = n as u32;
    }
    if let Some(n) = t.int("max_failures_per_user", 0, 1_000_000) {
        s.limits.max_failures_per_user = n as u32;
    }
    t.finish();
    s
}
