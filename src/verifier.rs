//! Runs argon2 work off the async workers, with bounded concurrency and a bounded queue.
//!
//! An argon2 verification takes milliseconds of CPU. Run on an actix worker it would stall every
//! other request on that worker, including cached and plain ones; unbounded, a password spray
//! would queue without limit. So at most `concurrency` verifications run at once on tokio's
//! blocking threads, at most `queue` more wait, and beyond that a request is denied at once.
//! Before any of that, the brute-force limiter (`crate::limiter`) may deny a client that has
//! failed too often.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::credential;
use crate::issued::IssuedCredentials;
use crate::limiter::{Limiter, Limits};
use crate::permission::Action;
use crate::policy::{Argon2Work, Decision, DenyReason, Grant, Policy, Source, Step};
use crate::request::Request;

pub struct Verifier {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Brute-force limits; `None` for callers that decide one request (`explain`, benches).
    pub limiter: Option<Limiter>,
    /// The stream credentials mtx-auth issued, asked before any source (empty without a store).
    pub issued: Arc<IssuedCredentials>,
    /// The secret mtx-auth's own calls to MediaMTX's API carry (kicks): good for `api` only.
    pub api_secret: Option<crate::sessions::api::ApiSecret>,
}

/// The queue was full, or the verification thread died; either way the answer is deny.
#[derive(Debug, thiserror::Error)]
#[error("argon2 verification not available")]
pub struct Busy;

impl Verifier {
    pub fn new(concurrency: usize, queue: usize) -> Self {
        Verifier {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: queue,
            limiter: None,
            issued: Arc::default(),
            api_secret: None,
        }
    }

    /// With brute-force limits, as the server runs it.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limiter = Some(Limiter::new(limits));
        self
    }

    /// Runs `work` on a blocking thread once a slot is free.
    pub async fn run(&self, work: Argon2Work) -> Result<bool, Busy> {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let _slot = QueueSlot::take(&self.waiting, self.max_waiting).ok_or(Busy)?;
                Arc::clone(&self.permits)
                    .acquire_owned()
                    .await
                    .map_err(|_| Busy)?
            }
        };
        // The permit moves into the thread: if the client goes away and this future is dropped,
        // the slot stays taken until the computation really ends.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            lower_thread_priority();
            work.run()
        })
        .await
        .map_err(|_| Busy)
    }

    /// Drives a decision to its end: a stream credential from memory; otherwise the policy,
    /// running argon2 steps here, key refetches when a JWT
    /// names an unknown key, and account sources' upstream calls.
    pub async fn decide(&self, policy: &Policy, req: &Request<'_>) -> Decision {
        let Some(limiter) = &self.limiter else {
            return self.drive(policy, req).await;
        };
        // The attempt holds its place under the limits while it runs (and, if this future is
        // dropped mid-way, counts as failed): concurrent guesses cannot overshoot the limit.
        // One that finds the places taken by attempts in flight waits for their outcome.
        let Some(attempt) = limiter.begin(req).await else {
            return Decision::Deny(DenyReason::RateLimited);
        };
        let decision = self.drive(policy, req).await;
        // A stream credential is always something to guess, whatever sources the config has.
        let guessable = matches!(decision, Decision::Deny(DenyReason::Credential(_)))
            || policy.accepts_credentials(req);
        attempt.finish(Limiter::is_failure(req, &decision, guessable));
        decision
    }

    async fn drive(&self, policy: &Policy, req: &Request<'_>) -> Decision {
        if self.is_own_api_call(req) {
            return Decision::Allow {
                user: crate::sessions::api::API_USER.to_owned(),
                source: Source::Internal,
                rule: None,
                cached: false,
                grant: Grant::Internal,
            };
        }
        // A stream credential is decided by the credential table alone, before any source: a
        // revoked one must never reach another source as a password.
        if let Some(decision) = self.issued.decide(req) {
            return decision;
        }
        let mut step = policy.begin(req);
        loop {
            match step {
                Step::Done(d) => return d,
                Step::Verify(work, resume) => match self.run(work).await {
                    Ok(passed) => step = policy.resume(req, resume, passed),
                    Err(Busy) => return Decision::Deny(DenyReason::Busy),
                },
                Step::RefetchKeys => {
                    let changed = match policy.jwt() {
                        Some(jwt) => jwt.keys.refetch_for_unknown_kid().await,
                        None => false,
                    };
                    step = policy.resume_after_refetch(req, changed);
                }
                Step::Account(call) => {
                    let source = &policy.accounts()[call.source];
                    let answer = source.fetch(call.key, &call.creds).await;
                    step = policy.resume_account(req, call, answer);
                }
            }
        }
    }

    /// An `api` request carrying mtx-auth's own secret (as a password, or a bearer token): the
    /// calls MediaMTX makes to check our kicks. Compared in constant time; any other action
    /// with the secret is not let in by it.
    fn is_own_api_call(&self, req: &Request) -> bool {
        let (Some(secret), Some(Action::Api)) = (&self.api_secret, req.action) else {
            return false;
        };
        let secret = secret.load();
        let secret = secret.as_bytes();
        credential::ct_eq(secret, req.password.as_bytes())
            | credential::ct_eq(secret, req.token.as_bytes())
    }
}

/// A place in the wait queue, given back on drop (also when the waiting future is dropped).
struct QueueSlot<'a>(&'a AtomicUsize);

impl<'a> QueueSlot<'a> {
    fn take(waiting: &'a AtomicUsize, max: usize) -> Option<Self> {
        waiting
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| QueueSlot(waiting))
    }
}

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes the calling (blocking-pool) thread yield the CPU to the async workers: an argon2
/// verification may wait a little longer, but a cached or plain decision never waits behind a
/// password spray's verifications for a CPU. Linux nice values are per thread; once per thread.
fn lower_thread_priority() {
    thread_local! {
        static LOWERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    LOWERED.with(|lowered| {
        if lowered.replace(true) {
            return;
        }
        #[cfg(target_os = "linux")]
        // SAFETY: plain system calls on the calling thread, with no pointers involved.
        unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, 10);
        }
    });
}
