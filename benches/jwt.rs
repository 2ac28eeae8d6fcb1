//! JWT decisions: a first verification (signature check) for RS256, ES256 and EdDSA, and a
//! repeated one answered from the verified-token cache, next to a plain TOML-user decision for
//! the ratio the issue targets (cached JWT ≤ 1.5 × plain user).

#[allow(dead_code)] // the tests' fixtures; this bench uses a few of them
#[path = "../tests/it/support/idp.rs"]
mod idp;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use idp::{KeyKind, TestKey};
use mtx_auth::config::Config;
use mtx_auth::policy::{Decision, Policy, Source};
use mtx_auth::request::Request;
use mtx_auth::source::jwks::{parse_jwks, KeySet};
use serde_json::json;

const ISSUER: &str = "http://127.0.0.1/realms/mediamtx";

fn policy(keys: &[TestKey]) -> Policy {
    // The JWKS URL is never fetched: keys are installed directly below.
    let config = Config::parse(
        "[[users]]\nuser = \"viewer\"\npass = \"viewpass\"\npermissions = [{ action = \"read\" }]\n\
         [jwt]\njwks_url = \"http://127.0.0.1:9/jwks\"\n",
        "bench.toml",
    )
    .unwrap();
    let policy = Policy::new(config);
    let doc = json!({ "keys": keys.iter().map(TestKey::jwk).collect::<Vec<_>>() });
    policy.jwt().unwrap().keys.install(KeySet {
        keys: parse_jwks(&doc).unwrap(),
        discovered_issuer: None,
        token_endpoint: None,
        fetched_at: Instant::now(),
    });
    policy
}

fn token(key: &TestKey) -> String {
    // A fresh jti makes every token distinct, so none is answered from the cache.
    key.sign(&idp::keycloak_claims(
        ISSUER,
        "alice",
        json!({ "mediamtx_permissions": [{ "action": "read", "path": "~^cam/" }] }),
    ))
}

fn decide(policy: &Policy, token: &str) -> Decision {
    let mut req = Request::new(
        mtx_auth::permission::Action::Read,
        "cam/1",
        "10.0.0.1",
        "",
        "",
    );
    req.token = token.into();
    req.password = token.into();
    policy.decide(&req)
}

fn benches(c: &mut Criterion) {
    let keys: Vec<TestKey> = KeyKind::ALL
        .iter()
        .map(|k| TestKey::generate(*k, k.alg_name()))
        .collect();
    let policy = policy(&keys);

    let plain = Request::new(
        mtx_auth::permission::Action::Read,
        "cam/1",
        "10.0.0.1",
        "viewer",
        "viewpass",
    );
    assert!(policy.decide(&plain).is_allow());
    c.bench_function("jwt/plain_user_for_comparison", |b| {
        b.iter(|| policy.decide(&plain))
    });

    let mut group = c.benchmark_group("jwt");
    group.sample_size(30);
    for key in &keys {
        let probe = decide(&policy, &token(key));
        assert_eq!(probe.source(), Source::Jwt, "{probe:?}");
        group.bench_function(format!("first_verification/{}", key.alg_name()), |b| {
            b.iter_batched(
                || token(key),
                |t| decide(&policy, &t),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    for key in &keys {
        let t = token(key);
        assert!(decide(&policy, &t).is_allow());
        assert!(matches!(
            decide(&policy, &t),
            Decision::Allow { cached: true, .. }
        ));
        c.bench_function(&format!("jwt/cached/{}", key.alg_name()), |b| {
            b.iter(|| decide(&policy, &t))
        });
    }
}

criterion_group! {
    name = jwt;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_secs(1))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = benches
}
criterion_main!(jwt);
