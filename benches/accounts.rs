//! Account decisions answered from the cache (Jellyfin login, Jellyfin token, a Plex token behind
//! Jellyfin), next to a plain TOML-user decision for the ratio the issue targets (cached account
//! ≤ 1.5 × plain user), and the cost of a coalesced login: 100 identical concurrent requests
//! against a fake Jellyfin on loopback.
//!
//! The caches are filled through the real path: a fake server on loopback answers the first
//! request, exactly as in the tests.

#![recursion_limit = "256"]

#[allow(dead_code)] // the tests' fixtures; this bench uses a few of them
#[path = "../tests/it/support/media.rs"]
mod media;

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use media::{FakeMediaServer, FakePlex, Flavor, UserSpec};
use mtx_auth::config::Config;
use mtx_auth::permission::Action;
use mtx_auth::policy::{Decision, Policy, Source};
use mtx_auth::request::Request;
use mtx_auth::verifier::Verifier;

const MACHINE_ID: &str = "bench-machine-id";

fn request<'a>(user: &'a str, pass: &'a str) -> Request<'a> {
    let mut req = Request::new(Action::Read, "cam/1", "10.0.0.1", user, pass);
    req.token = pass.into();
    req
}

fn benches(c: &mut Criterion) {
    let system = actix_web::rt::System::new();
    let (policy, jellyfin) = system.block_on(async {
        let jf = FakeMediaServer::start(
            Flavor::Jellyfin,
            vec![UserSpec::new("alice", "alice-pw")],
        );
        jf.add_token("0123456789abcdef0123456789abcdef", "alice");
        let plex = FakePlex::start();
        plex.add_account("owner", "owner-token-0000000000", None);
        plex.add_server("Home", MACHINE_ID, "owner");
        let config = Config::parse(
            &format!(
                "[[users]]\nuser = \"viewer\"\npass = \"viewpass\"\npermissions = [{{ action = \"read\" }}]\n\
                 [jellyfin]\nurl = \"{}\"\n[plex]\napi_url = \"{}\"\nserver = \"{MACHINE_ID}\"\n",
                jf.url(),
                plex.url()
            ),
            "bench.toml",
        )
        .unwrap();
        let policy = Policy::new(config);
        let verifier = Verifier::new(1, 1);
        for (user, pass) in [
            ("alice", "alice-pw"),
            ("", "0123456789abcdef0123456789abcdef"),
            ("", "owner-token-0000000000"),
        ] {
            let d = verifier.decide(&policy, &request(user, pass)).await;
            assert!(d.is_allow(), "{d:?}");
        }
        (Arc::new(policy), jf)
    });

    // Coalescing: 100 concurrent identical first requests for an account not cached yet (a new
    // password each iteration), through the verifier as the server runs it. First, while the
    // client's pooled connection to the fake is fresh: the runtime that owns it only runs
    // inside `block_on`.
    let mut group = c.benchmark_group("accounts");
    group.sample_size(10);
    let mut round = 0u32;
    group.bench_function("coalesced_login_100_concurrent", |b| {
        b.iter(|| {
            round += 1;
            let pass = format!("pw-{round}");
            jellyfin.add_user(UserSpec::new(&format!("u{round}"), &pass));
            let user = format!("u{round}");
            let before = jellyfin.login_hits();
            system.block_on(async {
                let verifier = Verifier::new(1, 1);
                let requests: Vec<_> = (0..100).map(|_| request(&user, &pass)).collect();
                let decisions = futures_util::future::join_all(
                    requests.iter().map(|r| verifier.decide(&policy, r)),
                )
                .await;
                assert!(decisions.iter().all(Decision::is_allow));
            });
            assert_eq!(jellyfin.login_hits() - before, 1);
        })
    });
    group.finish();

    let plain = request("viewer", "viewpass");
    assert!(policy.decide(&plain).is_allow());
    c.bench_function("accounts/plain_user_for_comparison", |b| {
        b.iter(|| policy.decide(&plain))
    });
    for (name, user, pass, source) in [
        (
            "jellyfin_login",
            "alice",
            "alice-pw",
            Source::Account("jellyfin"),
        ),
        (
            "jellyfin_token",
            "",
            "0123456789abcdef0123456789abcdef",
            Source::Account("jellyfin"),
        ),
        // Jellyfin is asked first and does not know the token: two sources per decision.
        (
            "plex_token_after_jellyfin",
            "",
            "owner-token-0000000000",
            Source::Account("plex"),
        ),
    ] {
        let req = request(user, pass);
        let d = policy.decide(&req);
        assert!(
            matches!(d, Decision::Allow { cached: true, source: s, .. } if s == source),
            "{d:?}"
        );
        c.bench_function(&format!("accounts/cached/{name}"), |b| {
            b.iter(|| policy.decide(&req))
        });
    }
}

criterion_group! {
    name = accounts;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = benches
}
criterion_main!(accounts);
