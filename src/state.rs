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

use crate::metrics::Metrics;
use crate::reload::LivePolicy;
use crate::verifier::Verifier;

/// The process-long state every handler shares.
pub struct Service {
    /// The policy in use, swapped by reloads.
    pub live: Arc<LivePolicy>,
    /// argon2 on a bounded pool, and the brute-force limiter.
    pub verifier: Verifier,
    /// One set per process: unlike the policy, it is not replaced by a reload.
    pub metrics: Metrics,
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
        }
    }
}
