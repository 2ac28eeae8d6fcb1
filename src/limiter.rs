//! Brute-force protection: failed attempts counted per client address and per user name.
//!
//! After `max_failures_per_ip` failed attempts from one address within `failure_window`, every
//! further attempt with credentials from it is denied at once, for the rest of the window:
//! no argon2, no upstream call, no signature check. The same can apply per user name
//! (`max_failures_per_user`, off by default: it lets anyone lock a user out by guessing).
//! Requests without credentials are never limited, so `any` rules keep working.
//!
//! IPv6 clients are counted per /64, the block one host usually gets. The limiter lives beside
//! the policy, not in it, so its counts survive config reloads.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::FailureCounts;
use crate::policy::{Decision, DenyReason};
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
    /// Failure counts per address (domain 0) and per user name (domain 1), each living one
    /// window from its first failure.
    failures: FailureCounts,
    /// Requests denied by the limiter.
    pub denied: AtomicU64,
}

impl Limiter {
    pub fn new(limits: Limits) -> Self {
        Limiter {
            failures: FailureCounts::new(1_000_000, limits.failure_window),
            limits,
            denied: AtomicU64::new(0),
        }
    }

    /// The counted part of the client's address: all of IPv4, the /64 of IPv6.
    fn ip_bytes(req: &Request) -> Option<Vec<u8>> {
        Some(match req.ip? {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets()[..8].to_vec(),
        })
    }

    /// Whether this request is to be denied before anything is checked.
    pub fn is_blocked(&self, req: &Request) -> bool {
        if !req.has_credentials() {
            return false;
        }
        let l = &self.limits;
        let by_ip = l.max_failures_per_ip > 0
            && Self::ip_bytes(req)
                .is_some_and(|ip| self.failures.count(0, &ip) >= l.max_failures_per_ip);
        let by_user = l.max_failures_per_user > 0
            && !req.user.is_empty()
            && self.failures.count(1, req.user.as_bytes()) >= l.max_failures_per_user;
        if by_ip || by_user {
            self.denied.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "mtx_auth::limiter",
                ip = %req.ip_raw,
                user = %req.user,
                by_ip,
                by_user,
                "too many failed attempts: denied without checking"
            );
        }
        by_ip || by_user
    }

    /// Counts a decision if it was a failed attempt: credentials that didn't check out.
    /// Denials for other reasons (no permission for a path with a valid token, an upstream
    /// outage, a full argon2 queue) are not the client's guess and are not counted.
    pub fn record(&self, req: &Request, decision: &Decision) {
        let failed = match decision {
            Decision::Deny(DenyReason::NoMatch) => true,
            Decision::Deny(DenyReason::Jwt(e)) => !matches!(
                e,
                crate::source::jwt::JwtError::KeysUnavailable
                    | crate::source::jwt::JwtError::NotPermitted
            ),
            _ => false,
        };
        if !failed || !req.has_credentials() {
            return;
        }
        if self.limits.max_failures_per_ip > 0 {
            if let Some(ip) = Self::ip_bytes(req) {
                self.failures.add(0, &ip);
            }
        }
        if self.limits.max_failures_per_user > 0 && !req.user.is_empty() {
            self.failures.add(1, req.user.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Action;

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
        let deny = Decision::Deny(DenyReason::NoMatch);
        assert!(!l.is_blocked(&wrong));
        l.record(&wrong, &deny);
        l.record(&anonymous, &Decision::Deny(DenyReason::NoCredentials));
        l.record(&wrong, &Decision::Deny(DenyReason::Busy));
        assert!(!l.is_blocked(&wrong));
        l.record(&wrong, &deny);
        assert!(l.is_blocked(&wrong));
        assert!(l.is_blocked(&neighbour), "same /64");
        assert!(!l.is_blocked(&elsewhere));
        assert!(!l.is_blocked(&anonymous), "no credentials, never limited");
    }

    #[test]
    fn per_user_limit_is_off_by_default_and_works_when_set() {
        fn from(ip: &str) -> Request<'_> {
            Request::new(Action::Read, "cam", ip, "bob", "guess")
        }
        let deny = Decision::Deny(DenyReason::NoMatch);
        let off = Limiter::new(Limits::default());
        for i in 0..10 {
            let ip = format!("10.0.0.{i}");
            off.record(&from(&ip), &deny);
        }
        assert!(!off.is_blocked(&from("10.0.1.1")));
        let on = Limiter::new(Limits {
            max_failures_per_user: 3,
            ..Limits::default()
        });
        for i in 0..3 {
            let ip = format!("10.0.0.{i}");
            on.record(&from(&ip), &deny);
        }
        assert!(on.is_blocked(&from("10.0.1.1")));
    }
}
