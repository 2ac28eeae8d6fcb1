//! The cost of one decision, measured through the library with no HTTP in the way.
//!
//! Every case runs against a config of 10 users and one of 100,000 users. The user that decides
//! is always the last one in config order (fillers first), so a search that scanned users instead
//! of using the name index would show up as a 10,000-fold slowdown of the 100,000 case. Each
//! request is checked to be allowed before it is timed, so no case can quietly measure a deny.
//!
//! Run: `cargo bench --bench decision` (about a minute and a half on 2 cores).

use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use futures_util::FutureExt as _;
use mtx_auth::config::Config;
use mtx_auth::credential::hash_sha256;
use mtx_auth::issued::{self, Issued, IssuedCredentials};
use mtx_auth::limiter::{Limiter, Limits};
use mtx_auth::permission::{Action, PathMatcher, Permission};
use mtx_auth::policy::{Decision, Policy};
use mtx_auth::request::Request;

/// Config sizes; the deciding user is the last of each.
const SIZES: [usize; 2] = [10, 100_000];

/// MediaMTX's test vector: the password `testpass`, argon2i, m=4096 KiB, t=3, p=1.
const ARGON2_TESTPASS: &str =
    "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo";

/// A typical body MediaMTX POSTs (v1.12.3 and later, which send `token`).
const MEDIAMTX_BODY: &[u8] = br#"{"ip":"10.0.0.1","user":"viewer","password":"viewpass","token":"viewpass","action":"read","path":"cam/1","protocol":"rtsp","id":null,"query":""}"#;

/// How the filler users (all but the last) look.
#[derive(Clone, Copy)]
enum Filler {
    /// `userN` / `passN`, reading one exact path.
    Plain,
    /// `sha256:` name and password, so the digest index holds every filler too.
    Sha256,
    /// Plain name, argon2 password: used for the 10-user config only (hashes cost milliseconds
    /// each to check but are free to write; the cost here is `Policy::new`'s decoy, done once).
    Argon2,
}

/// `n` users: `n - 1` fillers, then `last` (a complete `[[users]]` block).
fn config_text(n: usize, filler: Filler, last: &str) -> String {
    let mut text = String::with_capacity(n * 120);
    for i in 0..n - 1 {
        let (user, pass) = match filler {
            Filler::Plain => (format!("user{i}"), format!("pass{i}")),
            Filler::Sha256 => (
                hash_sha256(&format!("user{i}")),
                hash_sha256(&format!("pass{i}")),
            ),
            Filler::Argon2 => (format!("user{i}"), ARGON2_TESTPASS.to_owned()),
        };
        writeln!(
            text,
            "[[users]]\nuser = \"{user}\"\npass = \"{pass}\"\n\
             permissions = [{{ action = \"read\", path = \"cam/{i}\" }}]\n"
        )
        .unwrap();
    }
    text.push_str(last);
    text
}

fn policy(text: &str) -> Policy {
    Policy::new(Config::parse(text, "bench.toml").expect("bench config is valid"))
}

/// Asserts, outside any timed loop, that `req` is allowed by the last user of an `n`-user
/// config, and returns the decision.
fn assert_allowed_by_last(policy: &Policy, req: &Request, n: usize) -> Decision {
    let d = policy.decide(req);
    match &d {
        Decision::Allow { rule, .. } => {
            let index = rule.map(|r| r.index as usize);
            assert_eq!(index, Some(n - 1), "decided by the wrong user: {d:?}")
        }
        Decision::Deny(reason) => panic!("bench request is denied ({reason}); fix the bench"),
    }
    d
}

/// One group per case, one benchmark per config size. `filler` picks the fillers for a size.
fn decision_case(
    c: &mut Criterion,
    name: &str,
    filler: impl Fn(usize) -> Filler,
    last: &str,
    req: &Request,
    cached: bool,
) {
    let mut group = c.benchmark_group(format!("decision/{name}"));
    group
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        // Built and parsed once per size, outside the timed loop.
        let policy = policy(&config_text(n, filler(n), last));
        assert_eq!(policy.users().len(), n);
        let first = assert_allowed_by_last(&policy, req, n);
        if cached {
            // The first decision ran argon2 and cached it; every timed one must be a cache hit.
            assert!(matches!(first, Decision::Allow { cached: false, .. }));
            let again = assert_allowed_by_last(&policy, req, n);
            assert!(
                matches!(again, Decision::Allow { cached: true, .. }),
                "argon2 verification was not cached: {again:?}"
            );
        }
        group.bench_with_input(BenchmarkId::from_parameter(n), req, |b, req| {
            b.iter(|| policy.decide(black_box(req)))
        });
    }
    group.finish();
}

fn decisions(c: &mut Criterion) {
    let plain_last = "[[users]]\nuser = \"viewer\"\npass = \"viewpass\"\n\
                      permissions = [{ action = \"read\", path = \"cam/1\" }]\n";
    let plain_req = Request::new(Action::Read, "cam/1", "10.0.0.1", "viewer", "viewpass");
    decision_case(c, "plain", |_| Filler::Plain, plain_last, &plain_req, false);

    let sha_last = format!(
        "[[users]]\nuser = \"{}\"\npass = \"{}\"\n\
         permissions = [{{ action = \"read\", path = \"cam/1\" }}]\n",
        hash_sha256("viewer"),
        hash_sha256("viewpass")
    );
    decision_case(
        c,
        "sha256",
        |_| Filler::Sha256,
        &sha_last,
        &plain_req,
        false,
    );

    // 10 users: all argon2. 100,000 users: only the last (hashing is not needed to write a
    // config, but 100,000 argon2 users would make no difference to an indexed cache hit).
    let argon2_last = format!(
        "[[users]]\nuser = \"viewer\"\npass = \"{ARGON2_TESTPASS}\"\n\
         permissions = [{{ action = \"read\", path = \"cam/1\" }}]\n"
    );
    let argon2_req = Request::new(Action::Read, "cam/1", "10.0.0.1", "viewer", "testpass");
    decision_case(
        c,
        "argon2_cached",
        |n| {
            if n <= 10 {
                Filler::Argon2
            } else {
                Filler::Plain
            }
        },
        &argon2_last,
        &argon2_req,
        true,
    );

    let regex_last = "[[users]]\nuser = \"viewer\"\npass = \"viewpass\"\n\
                      permissions = [{ action = \"read\", path = \"~^cam/[0-9]+$\" }]\n";
    let regex_req = Request::new(Action::Read, "cam/42", "10.0.0.1", "viewer", "viewpass");
    decision_case(
        c,
        "regex_path",
        |_| Filler::Plain,
        regex_last,
        &regex_req,
        false,
    );

    stream_credentials(c);

    let any_last = "[[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n";
    let any_req = Request::new(Action::Read, "cam/1", "10.0.0.1", "", "");
    decision_case(c, "any", |_| Filler::Plain, any_last, &any_req, false);
}

/// A stream credential (`mtx-auth token issue`) among 10 and 100,000 issued ones, in the
/// password as an RTSP client sends it: what `/auth` runs for it (`IssuedCredentials::decide`,
/// a SHA-256 and a lookup), to set beside `decision/plain`.
fn stream_credentials(c: &mut Criterion) {
    let mut group = c.benchmark_group("decision/stream_credential");
    group
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let table = IssuedCredentials::default();
        let mut last = None;
        table.apply((0..n).map(|i| {
            let new = issued::generate();
            let credential = Issued {
                id: format!("{i:016x}").into(),
                name: format!("holder {i}"),
                permissions: vec![Permission {
                    action: Action::Read,
                    path: PathMatcher::parse(&format!("cam/{}", i % 100)).unwrap(),
                }],
                expires_at: None,
                revoked: false,
                ips: Vec::new(),
            };
            last = Some(new.token);
            (new.digest, Arc::new(credential))
        }));
        let token = last.unwrap();
        let path = format!("cam/{}", (n - 1) % 100);
        let req = Request::new(Action::Read, &path, "10.0.0.1", "viewer", &token);
        assert!(table.decide(&req).is_some_and(|d| d.is_allow()));
        group.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| {
            b.iter(|| table.decide(black_box(req)))
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let r = Request::parse(MEDIAMTX_BODY).expect("body parses");
    assert_eq!((r.user.as_ref(), r.action), ("viewer", Some(Action::Read)));
    let mut group = c.benchmark_group("parse");
    group
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("mediamtx_body", |b| {
        b.iter(|| Request::parse(black_box(MEDIAMTX_BODY)))
    });
    group.finish();
}

/// What the brute-force limiter adds to every request with credentials: a place reserved per
/// address before the decision and given back after it (`Limiter::begin`, `Attempt::finish`).
/// The future never waits here (no failures, nothing else in flight), so it is polled once.
fn limiter(c: &mut Criterion) {
    let limiter = Limiter::new(Limits::default());
    let req = Request::parse(MEDIAMTX_BODY).expect("body parses");
    let mut group = c.benchmark_group("limiter");
    group
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(2));
    group.bench_function("begin_finish_ipv4", |b| {
        b.iter(|| {
            let attempt = limiter
                .begin(black_box(&req))
                .now_or_never()
                .expect("a free place is taken at once")
                .expect("not limited");
            attempt.finish(false);
        })
    });
    group.finish();
}

/// For contrast: a decision that must run argon2 (a fresh policy each time, so nothing is
/// cached). Building the policy, which hashes a decoy, is not timed.
fn argon2_uncached(c: &mut Criterion) {
    let text = format!(
        "[[users]]\nuser = \"viewer\"\npass = \"{ARGON2_TESTPASS}\"\n\
         permissions = [{{ action = \"read\", path = \"cam/1\" }}]\n"
    );
    let req = Request::new(Action::Read, "cam/1", "10.0.0.1", "viewer", "testpass");
    assert!(matches!(
        policy(&text).decide(&req),
        Decision::Allow { cached: false, .. }
    ));
    let mut group = c.benchmark_group("argon2_uncached");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("m4096_t3_p1", |b| {
        b.iter_batched(
            || policy(&text),
            |p| {
                let d = p.decide(black_box(&req));
                (p, d)
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, decisions, parse, limiter, argon2_uncached);
criterion_main!(benches);
