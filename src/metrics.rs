//! `GET /metrics`: what the service decided and how its sources are doing, in the OpenMetrics
//! text format that Prometheus scrapes, built on the official `prometheus-client` crate.
//!
//! Two kinds of values, kept apart on purpose:
//!
//! - **Per decision**, counted by the server as it answers ([`Metrics::record`]): decisions by
//!   action, protocol, source and outcome, denials by reason, the latency histogram, malformed
//!   requests, and the hit/miss counts of the argon2 (`users`) and JWT verification caches.
//!   They live here, once per process, so a config reload (which builds a new `Policy`) does not
//!   reset them.
//! - **Read at scrape time** from the policy in use ([`Scrape`], a `prometheus-client`
//!   collector): the account sources' upstream calls, errors and caches, the JWT key sets' age
//!   and fetches, readiness, and the reload counters. Nothing on the decision path pays for them:
//!   the sources already keep these counters for `/readyz`. A reload carries them over for an
//!   upstream that did not change (see `AccountSource::adopt`, `KeyStore::adopt`).
//!
//! Label values come from fixed sets (`&'static str`), never from what a client sent: a client
//! cannot grow the number of series, and no user name, password or token can appear. The
//! protocol is MediaMTX's when it is one of the protocols MediaMTX names, else `other`.
//!
//! Cost per decision: the decision counter's handle is looked up once per label combination and
//! kept (`OnceLock`), so recording is an atomic increment, plus one for a denial's reason and one
//! for a verification cache, plus two for the latency histogram (`LatencyHistogram`): no lock
//! anywhere.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::permission::Action;
use crate::policy::{Decision, Policy, Source};
use crate::reload::LivePolicy;
use crate::request::Request;
use crate::source::jwks::KeyStore;
use crate::source::ACCOUNT_KINDS;

/// What `/metrics` answers with: OpenMetrics text, which Prometheus scrapes natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the latency buckets, in seconds: 1–2.5–5 per decade from 10 µs to 5 s.
/// Log-spaced so both a cached decision (tens of µs) and an upstream timeout (seconds) land in a
/// useful bucket; decade-aligned so an objective such as "p99 under 5 ms" is a bucket edge.
pub const LATENCY_BUCKETS: [f64; 18] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// The `action` label: MediaMTX's actions, and `unknown` for anything else.
const ACTIONS: [&str; 7] = [
    "publish", "read", "playback", "api", "metrics", "pprof", "unknown",
];

/// The `protocol` label: MediaMTX's protocols, empty (api, metrics and pprof requests have
/// none), and `other` for anything else a client might send.
const PROTOCOLS: [&str; 8] = ["rtsp", "rtmp", "hls", "webrtc", "srt", "moq", "", "other"];

/// How many values the `source` label has: `users`, `jwt`, each registered account kind
/// (`crate::source::ACCOUNT_KINDS`), `none`.
const SOURCES: usize = ACCOUNT_KINDS.len() + 5;

const OUTCOMES: [&str; 2] = ["allow", "deny"];

/// Deny reasons known here, for a cached counter handle each (`DenyReason::kind`). A kind not
/// in the list is still counted, through the family's slower lookup.
const DENY_KINDS: [&str; 10] = [
    "no_credentials",
    "no_match",
    "unknown_action",
    "busy",
    "jwt",
    "credential",
    "unreachable",
    "account",
    "rate_limited",
    "sessions_full",
];

const DECISION_SERIES: usize = ACTIONS.len() * PROTOCOLS.len() * SOURCES * OUTCOMES.len();

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    action: &'static str,
    protocol: &'static str,
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignInLabels {
    method: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KickLabels {
    reason: &'static str,
    result: &'static str,
}

/// Kicks of live sessions by why access ended (`crate::sessions::Ending`) and how the kick went
/// (`kicked`, `gone`: the session had ended already, `failed`: the API could not be reached
/// after every attempt). Handed to the sessions' watcher; counted once per process.
#[derive(Clone, Default)]
pub struct KickCounters(Family<KickLabels, Counter>);

impl KickCounters {
    pub fn count(&self, reason: &'static str, result: &'static str) {
        self.0.get_or_create(&KickLabels { reason, result }).inc();
    }
}

/// The registry of live sessions as `/metrics` shows it.
#[derive(Clone, Default)]
pub struct SessionGauges {
    /// Sessions tracked now.
    pub tracked: prometheus_client::metrics::gauge::Gauge,
    /// Sessions denied because the registry was full.
    pub refused: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Every metric of the process. Created once with the server; survives config reloads.
pub struct Metrics {
    registry: Registry,
    /// Handed to the sessions' watcher (`crate::sessions::watch`).
    pub kicks: KickCounters,
    pub sessions: SessionGauges,
    decisions: Family<DecisionLabels, Counter>,
    /// One slot per label combination, filled on first use: the hot path skips the family's
    /// lock and label hashing.
    decision_handles: Box<[OnceLock<Counter>]>,
    denials: Family<ReasonLabels, Counter>,
    denial_handles: [OnceLock<Counter>; DENY_KINDS.len()],
    latency: LatencyHistogram,
    bad_request: Counter,
    timed_out: Counter,
    too_large: Counter,
    verification: Arc<VerificationCaches>,
    signins: Family<SignInLabels, Counter>,
}

/// The decision latency histogram, without a lock: an atomic counter per bucket and the sum in
/// nanoseconds. prometheus-client's `Histogram` takes a process-wide mutex on every `observe`,
/// which every decision on every worker would contend for. A scrape reads the counters one by
/// one; the count is their total, so `_count` and the buckets always agree.
/// Clones share the counters: one is registered, one records.
#[derive(Debug, Default, Clone)]
struct LatencyHistogram(Arc<LatencyCounts>);

#[derive(Debug, Default)]
struct LatencyCounts {
    /// Observations per bucket (not cumulative), the last one for above the highest bound.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl LatencyHistogram {
    fn observe(&self, elapsed: Duration) {
        let counts = &self.0;
        let secs = elapsed.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        counts.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        counts.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

impl EncodeMetric for LatencyHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let bounds = LATENCY_BUCKETS.iter().copied().chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds
            .zip(self.0.buckets.iter().map(|b| b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.0.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Hits and misses of the caches that live inside a `Policy` and are rebuilt by every reload,
/// counted here instead, from the decisions, so they survive reloads.
#[derive(Debug, Default)]
struct VerificationCaches {
    /// Allowed by an argon2 user: from the cache, or after an argon2 verification.
    users_hits: AtomicU64,
    users_misses: AtomicU64,
    /// Allowed by a JWT: from the cache, or after a signature check.
    jwt_hits: AtomicU64,
    jwt_misses: AtomicU64,
}

impl Metrics {
    /// Registers every metric; `live` is read at each scrape for the per-source values.
    pub fn new(live: Arc<LivePolicy>) -> Self {
        let mut registry = Registry::with_prefix("mtx_auth");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decisions",
            "Decisions answered on /auth, by action, MediaMTX protocol (other: not one MediaMTX \
             sends), deciding source (none for a deny) and outcome",
            decisions.clone(),
        );
        let denials = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "denials",
            "Denied decisions by reason (rate_limited: too many failed attempts)",
            denials.clone(),
        );
        let latency = LatencyHistogram::default();
        registry.register_with_unit(
            "decision_duration",
            "Time from receiving an /auth request to its decision, argon2 and upstream calls \
             included",
            Unit::Seconds,
            latency.clone(),
        );
        let bad_requests = Family::<StatusLabels, Counter>::default();
        registry.register(
            "bad_requests",
            "/auth requests refused before a decision: 400 malformed body, 408 body not sent in \
             time, 413 body too large",
            bad_requests.clone(),
        );
        let bad_request = bad_requests
            .get_or_create(&StatusLabels { status: "400" })
            .clone();
        let timed_out = bad_requests
            .get_or_create(&StatusLabels { status: "408" })
            .clone();
        let too_large = bad_requests
            .get_or_create(&StatusLabels { status: "413" })
            .clone();
        let signins = Family::<SignInLabels, Counter>::default();
        registry.register(
            "portal_signins",
            "Sign-ins to the viewer portal by method (password, plex, oidc, and totp for the \
             second factor) and result (ok; rejected: wrong credentials, a refused account or \
             code; limited: too many failed attempts; unavailable: the store or an upstream \
             could not be reached)",
            signins.clone(),
        );
        let kicks = KickCounters::default();
        registry.register(
            "kicks",
            "Live MediaMTX sessions kicked because what let them in ended, by reason \
             (credential_revoked, credential_expired, jwt_expired, user_changed, account_ended) and result \
             (kicked; gone: it had ended already; failed: the API could not be reached)",
            kicks.0.clone(),
        );
        let sessions = SessionGauges::default();
        registry.register(
            "sessions",
            "Live MediaMTX sessions tracked so that they can be kicked",
            sessions.tracked.clone(),
        );
        registry.register(
            "sessions_refused",
            "Sessions denied because the registry of live sessions was full \
             ([mediamtx] max_sessions)",
            sessions.refused.clone(),
        );
        let verification = Arc::new(VerificationCaches::default());
        registry.register_collector(Box::new(Scrape {
            live,
            verification: Arc::clone(&verification),
        }));
        Metrics {
            registry,
            kicks,
            sessions,
            decisions,
            decision_handles: (0..DECISION_SERIES).map(|_| OnceLock::new()).collect(),
            denials,
            denial_handles: Default::default(),
            latency,
            bad_request,
            timed_out,
            too_large,
            verification,
            signins,
        }
    }

    /// Counts one portal sign-in step: `method` is `password`, `plex`, `oidc` or `totp`;
    /// `result` is `ok`, `rejected`, `limited` or `unavailable`.
    pub fn record_signin(&self, method: &'static str, result: &'static str) {
        self.signins
            .get_or_create(&SignInLabels { method, result })
            .inc();
    }

    /// Counts one decision, made with `policy` for `req` in `elapsed`.
    pub fn record(&self, policy: &Policy, req: &Request, decision: &Decision, elapsed: Duration) {
        let action = match req.action {
            Some(a) => action_index(a),
            None => ACTIONS.len() - 1,
        };
        let protocol = protocol_index(&req.protocol);
        let source = source_index(decision.source());
        let outcome = usize::from(!decision.is_allow());
        let index =
            ((action * PROTOCOLS.len() + protocol) * SOURCES + source) * OUTCOMES.len() + outcome;
        self.decision_handles[index]
            .get_or_init(|| {
                let labels = DecisionLabels {
                    action: ACTIONS[action],
                    protocol: PROTOCOLS[protocol],
                    source: decision.source().as_str(),
                    outcome: OUTCOMES[outcome],
                };
                self.decisions.get_or_create(&labels).clone()
            })
            .inc();
        self.latency.observe(elapsed);
        let caches = &self.verification;
        match decision {
            Decision::Deny(reason) => self.count_denial(reason.kind()),
            Decision::Allow {
                source: Source::Users,
                rule: Some(rule),
                cached,
                ..
            } if policy.users().get(rule.index).needs_argon2() => {
                let counter = if *cached {
                    &caches.users_hits
                } else {
                    &caches.users_misses
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Allow {
                source: Source::Jwt,
                cached,
                ..
            } => {
                let counter = if *cached {
                    &caches.jwt_hits
                } else {
                    &caches.jwt_misses
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Allow { .. } => {}
        }
    }

    fn count_denial(&self, kind: &'static str) {
        let labels = || ReasonLabels { reason: kind };
        match DENY_KINDS.iter().position(|k| *k == kind) {
            Some(i) => self.denial_handles[i]
                .get_or_init(|| self.denials.get_or_create(&labels()).clone())
                .inc(),
            None => self.denials.get_or_create(&labels()).inc(),
        };
    }

    /// Counts a request refused before any decision, by its status (400, 408 or 413).
    pub fn record_refused(&self, status: u16) {
        match status {
            408 => self.timed_out.inc(),
            413 => self.too_large.inc(),
            _ => self.bad_request.inc(),
        };
    }

    /// Reports the store's state from now on: `mtx_auth_store_up{engine}` and
    /// `mtx_auth_store_sync_age_seconds{engine}`.
    pub fn watch_store(&mut self, health: Arc<crate::store::Health>, engine: &'static str) {
        self.registry
            .register_collector(Box::new(StoreScrape { health, engine }));
    }

    /// Everything, as OpenMetrics text.
    pub fn encode(&self) -> Result<String, fmt::Error> {
        let mut text = String::with_capacity(8 * 1024);
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn action_index(action: Action) -> usize {
    match action {
        Action::Publish => 0,
        Action::Read => 1,
        Action::Playback => 2,
        Action::Api => 3,
        Action::Metrics => 4,
        Action::Pprof => 5,
    }
}

fn protocol_index(protocol: &str) -> usize {
    match protocol {
        "rtsp" => 0,
        "rtmp" => 1,
        "hls" => 2,
        "webrtc" => 3,
        "srt" => 4,
        "moq" => 5,
        "" => 6,
        _ => 7,
    }
}

/// The `source` label's slot: users, jwt, the account kinds in registration order, none.
fn source_index(source: Source) -> usize {
    match source {
        Source::Users => 0,
        Source::Jwt => 1,
        Source::Credential => 2,
        Source::Internal => 3,
        Source::Account(name) => ACCOUNT_KINDS
            .iter()
            .position(|k| k.name == name)
            .map_or(SOURCES - 1, |i| i + 4),
        Source::None => SOURCES - 1,
    }
}

/// The values read from the policy in use at each scrape.
struct Scrape {
    live: Arc<LivePolicy>,
    verification: Arc<VerificationCaches>,
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape").finish_non_exhaustive()
    }
}

/// The store's state, read at each scrape.
#[derive(Debug)]
struct StoreScrape {
    health: Arc<crate::store::Health>,
    engine: &'static str,
}

impl Collector for StoreScrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let mut up = gauge::<i64>(
            "store_up",
            "1 while the store answers (as the last read of it found), else 0: decisions go on \
             from memory meanwhile; new sign-ins and new credentials fail.",
            None,
            "engine",
        );
        up.samples
            .push((self.engine, ConstGauge::new(i64::from(self.health.is_up()))));
        up.encode(&mut encoder)?;
        let mut age = gauge::<f64>(
            "store_sync_age",
            "Time since the memory decisions read (stream credentials, revocations) was last \
             brought in step with the store; absent until it first was.",
            Some(&Unit::Seconds),
            "engine",
        );
        if let Some(a) = self.health.sync_age(crate::time::now_unix()) {
            age.samples.push((self.engine, ConstGauge::new(a as f64)));
        }
        age.encode(&mut encoder)
    }
}

/// One metric family with a single label, written only if it has samples.
struct Series<'a, V> {
    name: &'static str,
    help: &'static str,
    unit: Option<&'a Unit>,
    label: &'static str,
    samples: Vec<(&'static str, V)>,
}

impl<V: EncodeMetric> Series<'_, V> {
    fn encode(self, encoder: &mut DescriptorEncoder) -> fmt::Result {
        let Some((_, first)) = self.samples.first() else {
            return Ok(());
        };
        let metric_type = first.metric_type();
        let mut family = encoder.encode_descriptor(self.name, self.help, self.unit, metric_type)?;
        for (value, metric) in &self.samples {
            metric.encode(family.encode_family(&[(self.label, *value)])?)?;
        }
        Ok(())
    }
}

fn counter<'a>(
    name: &'static str,
    help: &'static str,
    label: &'static str,
) -> Series<'a, ConstCounter<u64>> {
    Series {
        name,
        help,
        unit: None,
        label,
        samples: Vec::new(),
    }
}

fn gauge<'a, N>(
    name: &'static str,
    help: &'static str,
    unit: Option<&'a Unit>,
    label: &'static str,
) -> Series<'a, ConstGauge<N>> {
    Series {
        name,
        help,
        unit,
        label,
        samples: Vec::new(),
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let policy = self.live.load();
        let n = |c: &AtomicU64| ConstCounter::new(c.load(Ordering::Relaxed));

        let mut hits = counter(
            "cache_hits",
            "Answers served from a cache: users = argon2 verifications, jwt = verified tokens \
             (both counted on allowed decisions), otherwise an account source's cache of \
             upstream answers (successes and recent rejections).",
            "cache",
        );
        let mut misses = counter(
            "cache_misses",
            "Lookups the cache could not answer: users = argon2 verifications run, jwt = \
             signatures checked (both counted on allowed decisions), otherwise account lookups \
             not answered from the cache.",
            "cache",
        );
        let v = &self.verification;
        hits.samples.push(("users", n(&v.users_hits)));
        misses.samples.push(("users", n(&v.users_misses)));
        if policy.jwt().is_some() {
            hits.samples.push(("jwt", n(&v.jwt_hits)));
            misses.samples.push(("jwt", n(&v.jwt_misses)));
        }

        let mut calls = counter(
            "upstream_calls",
            "Calls to an account source's upstream (media server or OIDC token endpoint).",
            "source",
        );
        let mut errors = counter(
            "upstream_errors",
            "Upstream calls that failed (timeout, connection error, 5xx, unreadable answer); \
             never counted as wrong credentials.",
            "source",
        );
        let mut rejections = counter(
            "upstream_rejections",
            "Upstream calls that answered: wrong credentials, disabled account or no access.",
            "source",
        );
        let mut stale = counter(
            "upstream_stale_answers",
            "Answers taken from a recent success while the upstream was failing.",
            "source",
        );
        let mut ready = gauge::<i64>(
            "upstream_ready",
            "1 once the account source's upstream has answered (see /readyz), else 0.",
            None,
            "source",
        );
        let mut key_stores: Vec<(&'static str, &KeyStore)> = Vec::new();
        if let Some(jwt) = policy.jwt() {
            key_stores.push((Source::Jwt.as_str(), &jwt.keys));
        }
        for source in policy.accounts() {
            let name = source.name();
            let s = &source.stats;
            hits.samples.push((name, n(&s.cache_hits)));
            misses.samples.push((name, n(&s.cache_misses)));
            calls.samples.push((name, n(&s.upstream_calls)));
            errors.samples.push((name, n(&s.upstream_errors)));
            rejections.samples.push((name, n(&s.rejections)));
            stale.samples.push((name, n(&s.stale_served)));
            ready
                .samples
                .push((name, ConstGauge::new(i64::from(source.is_ready()))));
            if let Some(keys) = source.key_store() {
                key_stores.push((name, keys));
            }
        }
        for series in [hits, misses, calls, errors, rejections, stale] {
            series.encode(&mut encoder)?;
        }
        ready.encode(&mut encoder)?;

        let mut keys_ready = gauge::<i64>(
            "jwks_ready",
            "1 while a usable key set is loaded (not older than max_stale_secs), else 0.",
            None,
            "source",
        );
        let mut age = gauge::<f64>(
            "jwks_age",
            "Age of the last key set fetched successfully; absent until one is.",
            Some(&Unit::Seconds),
            "source",
        );
        let mut fetches = counter(
            "jwks_fetches",
            "Key set fetches (the discovery document first, if configured).",
            "source",
        );
        let mut failures = counter(
            "jwks_fetch_failures",
            "Key set fetches that failed; the last good keys stay in use for max_stale_secs.",
            "source",
        );
        for (name, keys) in key_stores {
            keys_ready
                .samples
                .push((name, ConstGauge::new(i64::from(keys.is_ready()))));
            if let Some(a) = keys.age() {
                age.samples.push((name, ConstGauge::new(a.as_secs_f64())));
            }
            fetches.samples.push((name, n(&keys.fetches)));
            failures.samples.push((name, n(&keys.failures)));
        }
        keys_ready.encode(&mut encoder)?;
        age.encode(&mut encoder)?;
        fetches.encode(&mut encoder)?;
        failures.encode(&mut encoder)?;

        let live = &self.live;
        let mut reloads = counter(
            "config_reloads",
            "Config reloads (SIGHUP or file change): ok = swapped in, error = invalid file, \
             previous config kept.",
            "result",
        );
        reloads.samples.push(("ok", n(&live.reloads)));
        reloads.samples.push(("error", n(&live.reload_failures)));
        reloads.encode(&mut encoder)?;
        let generation = encoder.encode_descriptor(
            "config_generation",
            "Config in use: 1 at start, +1 per successful reload.",
            None,
            MetricType::Gauge,
        )?;
        let g = live.generation.load(Ordering::Relaxed);
        ConstGauge::new(i64::try_from(g).unwrap_or(i64::MAX)).encode(generation)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn label_tables_match_the_index_functions() {
        for a in Action::ALL {
            assert_eq!(ACTIONS[action_index(a)], a.as_str());
        }
        let mut sources = vec![
            Source::Users,
            Source::Jwt,
            Source::Credential,
            Source::Internal,
        ];
        sources.extend(ACCOUNT_KINDS.iter().map(|k| Source::Account(k.name)));
        sources.push(Source::None);
        assert_eq!(sources.len(), SOURCES);
        for (i, s) in sources.into_iter().enumerate() {
            assert_eq!(source_index(s), i, "{s:?}");
        }
        assert_eq!(source_index(Source::Account("unregistered")), SOURCES - 1);
        for p in &PROTOCOLS[..PROTOCOLS.len() - 1] {
            assert_eq!(PROTOCOLS[protocol_index(p)], *p);
        }
        for p in ["RTSP", "gopher", "rtsp ", "other", "\u{0}"] {
            assert_eq!(PROTOCOLS[protocol_index(p)], "other", "{p:?}");
        }
    }

    #[test]
    fn every_decision_lands_in_exactly_one_series() {
        let policy = Policy::new(
            Config::parse(
                "[[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n",
                "t.toml",
            )
            .unwrap(),
        );
        let live = Arc::new(LivePolicy::new(policy, None));
        let metrics = Metrics::new(Arc::clone(&live));
        let policy = live.load();
        let mut n = 0;
        for action in ["read", "publish", "nope"] {
            for protocol in ["rtsp", "webrtc", "", "zzz"] {
                let body = format!(r#"{{"action":"{action}","protocol":"{protocol}"}}"#);
                let req = Request::parse(body.as_bytes()).unwrap();
                let decision = policy.decide(&req);
                for _ in 0..=n {
                    metrics.record(&policy, &req, &decision, Duration::from_micros(30));
                }
                n += 1;
            }
        }
        let text = metrics.encode().unwrap();
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("mtx_auth_decisions_total{"))
            .collect();
        // 12 combinations, each counted a different number of times: all distinct series.
        assert_eq!(series.len(), 12, "{text}");
        let total: u64 = series
            .iter()
            .map(|l| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        assert_eq!(total, (1..=12).sum::<u64>());
        assert!(text.contains(
            "mtx_auth_decisions_total{action=\"unknown\",protocol=\"other\",source=\"none\",outcome=\"deny\"} 12"
        ));
        assert!(text.contains("mtx_auth_denials_total{reason=\"unknown_action\"} "));
        assert!(!text.contains("zzz") && !text.contains("nope"));
    }
}
