//! The JWT source through HTTP, against a real JWKS server on loopback with real RSA, EC and
//! Ed25519 signatures; and interoperability with a real OpenID provider written by others.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::idp::{self, FakeIdp, JwksMode, KeyKind, TestKey};
use crate::support::oidc::{self, OidcOptions, OidcProvider};
use crate::support::tls::TlsFront;
use crate::support::{bin, error_of, mtx_request, spawn, temp_config, TestApp};

/// A server whose `[jwt]` reads `idp`'s JWKS, plus `extra` TOML lines inside `[jwt]`.
async fn app_for(idp: &FakeIdp, extra: &str) -> TestApp {
    let app = spawn(&format!(
        "[jwt]\njwks_url = \"{}\"\n{extra}\n",
        idp.jwks_url()
    ));
    app.wait_ready().await;
    app
}

fn perms(list: Value) -> Value {
    json!({ "mediamtx_permissions": list })
}

/// A read request for `path` carrying `token` as MediaMTX sends it (password = token = jwt).
fn with_token(token: &str, path: &str) -> Value {
    json!({"ip":"10.0.0.1","user":"","password":token,"token":token,"action":"read","path":path,"protocol":"rtsp","id":null,"query":""})
}

#[actix_web::test]
async fn rsa_ec_and_ed25519_tokens_with_claim_as_array_or_string() {
    let keys: Vec<TestKey> = KeyKind::ALL
        .iter()
        .map(|k| TestKey::generate(*k, &format!("{k:?}")))
        .collect();
    let idp = FakeIdp::start(keys.iter().map(TestKey::jwk).collect());
    let app = app_for(&idp, "").await;
    let iss = idp.issuer();
    for key in &keys {
        let claim = json!([{"action": "read", "path": "cam"}]);
        for form in [claim.clone(), Value::String(claim.to_string())] {
            let token = key.sign(&idp::keycloak_claims(&iss, "alice", perms(form)));
            let (s, b) = app.auth(&with_token(&token, "cam")).await;
            assert_eq!(
                (s, b["user"].as_str()),
                (200, Some("alice")),
                "{:?}",
                key.alg_name()
            );
            let e = error_of(&app, &with_token(&token, "other")).await;
            assert_eq!(e, "jwt: token does not permit this action and path");
        }
    }
}

#[actix_web::test]
async fn token_in_query_for_every_protocol_exactly_once() {
    let key = TestKey::generate(KeyKind::Ec, "k1");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = app_for(&idp, "").await;
    let token = key.sign(&idp::keycloak_claims(
        &idp.issuer(),
        "bob",
        perms(json!([{"action":"read"}])),
    ));
    for (protocol, query) in [
        ("hls", format!("jwt={token}")),
        ("webrtc", format!("a=1&token={token}")),
        ("rtsp", format!("token={token}")),
    ] {
        let body =
            json!({"ip":"10.0.0.1","action":"read","path":"cam","protocol":protocol,"query":query});
        let (s, b) = app.auth(&body).await;
        assert_eq!((s, b["user"].as_str()), (200, Some("bob")), "{protocol}");
    }
    // MediaMTX before v1.12.3 sends no `token` field: the password carries it.
    let old = json!({"ip":"10.0.0.1","user":"","password":token,"action":"read","path":"cam","protocol":"rtsp"});
    assert_eq!(app.status(&old).await, 200);
    // Twice is ambiguous, as in MediaMTX: not used.
    let body = json!({"ip":"10.0.0.1","action":"read","path":"cam","query":format!("jwt={token}&token={token}")});
    assert_eq!(error_of(&app, &body).await, "credentials required");
}

#[actix_web::test]
async fn non_jwt_passwords_still_reach_toml_users() {
    let key = TestKey::generate(KeyKind::Ed, "k1");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = spawn(&format!(
        "[[users]]\nuser = \"alice\"\npass = \"pw\"\npermissions = [{{ action = \"read\" }}]\n\
         [jwt]\njwks_url = \"{}\"\n",
        idp.jwks_url()
    ));
    app.wait_ready().await;
    let (s, b) = app
        .auth(&mtx_request("read", "cam", "1.2.3.4", "alice", "pw"))
        .await;
    assert_eq!((s, b["user"].as_str()), (200, Some("alice")));
    assert_eq!(
        error_of(
            &app,
            &mtx_request("read", "cam", "1.2.3.4", "alice", "nope")
        )
        .await,
        "no user matches these credentials for this action, path and ip"
    );
}

#[actix_web::test]
async fn refused_tokens_each_with_a_clear_reason() {
    let rsa = TestKey::generate(KeyKind::Rsa, "rsa");
    let other = TestKey::generate(KeyKind::Rsa, "rsa"); // same kid, different key
    let idp = FakeIdp::start(vec![rsa.jwk()]);
    let app = app_for(&idp, "").await;
    let iss = idp.issuer();
    let now = idp::now();
    let read = perms(json!([{"action": "read"}]));
    // Merged after building, so that `null` in `extra` removes a claim.
    let claims =
        |extra: Value| idp::merged(idp::keycloak_claims(&iss, "alice", read.clone()), extra);

    let good = rsa.sign(&claims(json!({})));
    assert_eq!(app.status(&with_token(&good, "cam")).await, 200);

    // alg none, and HS256 "signed" with the RSA public key (algorithm confusion).
    let none = idp::unsigned_token(
        &json!({"alg": "none", "typ": "JWT", "kid": "rsa"}),
        &claims(json!({})),
    );
    let hs = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa"});
    let confused_pem = idp::hs256_token(rsa.rsa_public_pem().as_bytes(), &hs, &claims(json!({})));
    let confused_der = idp::hs256_token(&rsa.rsa_public_der(), &hs, &claims(json!({})));
    // A payload swapped after signing.
    let parts: Vec<&str> = good.split('.').collect();
    let evil = idp::b64url(
        claims(json!({"sub": "admin", "mediamtx_permissions": [{"action": "publish"}]}))
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    let big = rsa.sign(&claims(json!({"padding": "x".repeat(17 * 1024)})));

    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            none,
            "jwt: token algorithm not allowed (asymmetric algorithms only)",
        ),
        (
            "HS256 with PEM",
            confused_pem,
            "jwt: token algorithm not allowed (asymmetric algorithms only)",
        ),
        (
            "HS256 with DER",
            confused_der,
            "jwt: token algorithm not allowed (asymmetric algorithms only)",
        ),
        ("tampered payload", tampered, "jwt: token signature invalid"),
        (
            "other key, same kid",
            other.sign(&claims(json!({}))),
            "jwt: token signature invalid",
        ),
        (
            "expired",
            rsa.sign(&claims(json!({"exp": now - 120}))),
            "jwt: token expired",
        ),
        (
            "nbf in the future",
            rsa.sign(&claims(json!({"nbf": now + 600}))),
            "jwt: token not yet valid",
        ),
        (
            "no exp",
            rsa.sign(&claims(json!({"exp": null}))),
            "jwt: token has no exp",
        ),
        (
            "no sub",
            rsa.sign(&claims(json!({"sub": null}))),
            "jwt: token has no identity claim",
        ),
        (
            "unknown claim field",
            rsa.sign(&claims(
                json!({"mediamtx_permissions": [{"action": "read", "paths": "x"}]}),
            )),
            "jwt: token permissions claim is malformed",
        ),
        (
            "null path",
            rsa.sign(&claims(
                json!({"mediamtx_permissions": [{"action": "read", "path": null}]}),
            )),
            "jwt: token permissions claim is malformed",
        ),
        (
            "unknown action",
            rsa.sign(&claims(
                json!({"mediamtx_permissions": [{"action": "write"}]}),
            )),
            "jwt: token permissions claim is malformed",
        ),
        (
            "no permissions",
            rsa.sign(&claims(json!({"mediamtx_permissions": null}))),
            "jwt: token grants no permissions",
        ),
        ("over 16 KiB", big, "jwt: token larger than 16 KiB"),
        (
            "bad header JSON",
            format!("{}.{}.{}", idp::b64url(b"{\"alg\":"), parts[1], parts[2]),
            // Not JWT-shaped (the header isn't JSON): a token nobody recognises.
            "no user matches these credentials for this action, path and ip",
        ),
    ];
    for (name, token, want) in cases {
        let body = json!({"ip":"10.0.0.1","action":"read","path":"cam","token":token});
        assert_eq!(error_of(&app, &body).await, want, "{name}");
    }
    // Shapes that are not JWTs at all are passwords for the other sources: here, none match.
    for token in ["a.b", "a.b.c.d", "!!.??.##", "eyJhbGciOiJSUzI1NiJ9.%%%.sig"] {
        let e = error_of(&app, &with_token(token, "cam")).await;
        assert_eq!(
            e, "no user matches these credentials for this action, path and ip",
            "{token}"
        );
    }
    // Within the 30 s default leeway, an expired token is still fine.
    let grace = rsa.sign(&claims(json!({"exp": now - 10})));
    assert_eq!(app.status(&with_token(&grace, "cam")).await, 200);
    assert_eq!(app.get("/healthz").await.0, 200);
}

/// RFC 7515 §4.1.11: a `crit` header names extensions the recipient must understand, and we
/// understand none. A token issued in the future (beyond the leeway) is not believed either.
#[actix_web::test]
async fn crit_header_and_future_iat_are_refused() {
    let key = TestKey::generate(KeyKind::Rsa, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = app_for(&idp, "").await;
    let now = idp::now();
    let claims = |extra: Value| {
        idp::merged(
            idp::keycloak_claims(&idp.issuer(), "alice", perms(json!([{"action": "read"}]))),
            extra,
        )
    };
    let header = |extra: Value| {
        idp::merged(
            json!({"alg": key.alg_name(), "typ": "JWT", "kid": "k"}),
            extra,
        )
    };
    // Signed correctly, without crit: allowed.
    let plain = key.sign_with_header(&header(json!({})), &claims(json!({})));
    assert_eq!(app.status(&with_token(&plain, "cam")).await, 200);
    for crit in [
        // RFC 7515's own example, and RFC 7797's unencoded payload.
        json!({"crit": ["http://example.invalid/UNDEFINED"], "http://example.invalid/UNDEFINED": true}),
        json!({"crit": ["b64"], "b64": true}),
        json!({"crit": []}),
    ] {
        let token = key.sign_with_header(&header(crit.clone()), &claims(json!({})));
        assert_eq!(
            error_of(&app, &with_token(&token, "cam")).await,
            "jwt: token header has crit: no extension is understood",
            "{crit}"
        );
    }
    let future = key.sign(&claims(json!({"iat": now + 600, "exp": now + 1200})));
    assert_eq!(
        error_of(&app, &with_token(&future, "cam")).await,
        "jwt: token issued in the future"
    );
    // Within the 30 s leeway, a clock a little ahead is fine.
    let ahead = key.sign(&claims(json!({"iat": now + 10})));
    assert_eq!(app.status(&with_token(&ahead, "cam")).await, 200);
}

#[actix_web::test]
async fn exp_can_be_optional_and_leeway_set() {
    let key = TestKey::generate(KeyKind::Ec, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = app_for(&idp, "require_exp = false\nleeway_secs = 0").await;
    let claims = |extra| {
        idp::merged(
            idp::keycloak_claims(&idp.issuer(), "a", perms(json!([{"action": "read"}]))),
            extra,
        )
    };
    assert_eq!(
        app.status(&with_token(&key.sign(&claims(json!({"exp": null}))), "c"))
            .await,
        200
    );
    let just_expired = key.sign(&claims(json!({"exp": idp::now() - 5})));
    assert_eq!(
        error_of(&app, &with_token(&just_expired, "c")).await,
        "jwt: token expired"
    );
}

#[actix_web::test]
async fn issuer_and_audience_must_match_when_configured() {
    let key = TestKey::generate(KeyKind::Rsa, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let iss = idp.issuer();
    let app = app_for(
        &idp,
        &format!("issuer = \"{iss}\"\naudience = \"mediamtx\""),
    )
    .await;
    let claims = |extra| {
        idp::merged(
            idp::keycloak_claims(&iss, "a", perms(json!([{"action": "read"}]))),
            extra,
        )
    };
    let ok = key.sign(&claims(json!({"aud": ["account", "mediamtx"]})));
    assert_eq!(app.status(&with_token(&ok, "c")).await, 200);
    let ok = key.sign(&claims(json!({"aud": "mediamtx"})));
    assert_eq!(app.status(&with_token(&ok, "c")).await, 200);
    let bad_aud = key.sign(&claims(json!({"aud": "account"})));
    assert_eq!(
        error_of(&app, &with_token(&bad_aud, "c")).await,
        "jwt: token audience does not match"
    );
    let no_aud = key.sign(&claims(json!({"aud": null})));
    assert_eq!(
        error_of(&app, &with_token(&no_aud, "c")).await,
        "jwt: token audience does not match"
    );
    let bad_iss = key.sign(&claims(
        json!({"aud": "mediamtx", "iss": "https://evil.example/realms/mediamtx"}),
    ));
    assert_eq!(
        error_of(&app, &with_token(&bad_iss, "c")).await,
        "jwt: token issuer does not match"
    );
    let no_iss = key.sign(&claims(json!({"aud": "mediamtx", "iss": null})));
    assert_eq!(
        error_of(&app, &with_token(&no_iss, "c")).await,
        "jwt: token issuer does not match"
    );
}

#[actix_web::test]
async fn keycloak_roles_and_authentik_groups_grant_permissions() {
    let key = TestKey::generate(KeyKind::Rsa, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = app_for(
        &idp,
        r#"
[[jwt.roles]]
claim = "realm_access.roles"
value = "streamer"
permissions = [{ action = "publish", path = "~^live/" }]

[[jwt.roles]]
claim = "resource_access.mediamtx.roles"
value = "viewer"
permissions = [{ action = "read" }]

[[jwt.roles]]
claim = "groups"
value = "mediamtx-admins"
permissions = [{ action = "api" }, { action = "publish" }]
"#,
    )
    .await;
    let iss = idp.issuer();
    let req = |token: &str, action: &str, path: &str| json!({"ip":"10.0.0.1","action":action,"path":path,"token":token,"password":token});
    // Keycloak: the default fixture has client role "viewer"; add realm role "streamer".
    let kc = key.sign(&idp::keycloak_claims(
        &iss,
        "kcuser",
        json!({"realm_access": {"roles": ["offline_access", "streamer"]}}),
    ));
    assert_eq!(app.status(&req(&kc, "read", "any/thing")).await, 200);
    assert_eq!(app.status(&req(&kc, "publish", "live/cam")).await, 200);
    assert_eq!(app.status(&req(&kc, "publish", "other")).await, 401);
    assert_eq!(app.status(&req(&kc, "api", "")).await, 401);
    // Roles add to the claim.
    let both = key.sign(&idp::keycloak_claims(
        &iss,
        "kc2",
        json!({"mediamtx_permissions": [{"action": "playback", "path": "rec"}]}),
    ));
    assert_eq!(app.status(&req(&both, "playback", "rec")).await, 200);
    assert_eq!(app.status(&req(&both, "read", "cam")).await, 200);
    // Authentik: groups.
    let ak = key.sign(&idp::authentik_claims(
        &iss,
        "akuser",
        &["users", "mediamtx-admins"],
        json!({}),
    ));
    assert_eq!(app.status(&req(&ak, "api", "")).await, 200);
    assert_eq!(app.status(&req(&ak, "read", "cam")).await, 401);
    // Neither a claim nor a mapped role: refused.
    let bare = key.sign(&idp::authentik_claims(
        &iss,
        "nobody",
        &["users"],
        json!({}),
    ));
    assert_eq!(
        error_of(&app, &req(&bare, "read", "c")).await,
        "jwt: token grants no permissions"
    );
}

#[actix_web::test]
async fn key_rotation_refetches_once_per_interval() {
    let old = TestKey::generate(KeyKind::Rsa, "old");
    let new = TestKey::generate(KeyKind::Ec, "new");
    let idp = FakeIdp::start(vec![old.jwk()]);
    let app = app_for(&idp, "refetch_interval_secs = 3600").await;
    let iss = idp.issuer();
    let claims = idp::keycloak_claims(&iss, "a", perms(json!([{"action": "read"}])));
    assert_eq!(app.status(&with_token(&old.sign(&claims), "c")).await, 200);
    let hits = idp.jwks_hits();

    // The IdP rotates: a token with the new kid makes mtx-auth refetch, and it is accepted
    // (at once unless the fetch outlasts the wait for it, then as soon as it is done).
    idp.set_keys(vec![old.jwk(), new.jwk()]);
    assert!(until_allowed(&app, &new.sign(&claims)).await);
    assert_eq!(idp.jwks_hits(), hits + 1);

    // A storm of tokens with unknown kids, from many addresses (so the per-address failure
    // limit doesn't turn them away first): no further fetch within the interval.
    for i in 0..50 {
        let stranger = TestKey::generate(KeyKind::Ec, &format!("unknown{i}"));
        let mut body = with_token(&stranger.sign(&claims), "c");
        body["ip"] = json!(format!("10.9.0.{i}"));
        let e = error_of(&app, &body).await;
        assert_eq!(e, "jwt: token signed with an unknown key id");
    }
    assert_eq!(
        idp.jwks_hits(),
        hits + 1,
        "unknown kids caused no fetch storm"
    );
}

#[actix_web::test]
async fn outage_keeps_last_good_keys_and_never_allows_on_error() {
    let key = TestKey::generate(KeyKind::Ed, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = app_for(&idp, "refetch_interval_secs = 1").await;
    let claims = idp::keycloak_claims(&idp.issuer(), "a", perms(json!([{"action": "read"}])));
    let token = key.sign(&claims);
    for mode in [
        JwksMode::Down,
        JwksMode::Status(503),
        JwksMode::Html,
        JwksMode::Garbage,
        JwksMode::Huge,
    ] {
        idp.set_mode(mode.clone());
        // An unknown kid forces a fetch, which fails...
        let stranger = TestKey::generate(KeyKind::Ed, &format!("{mode:?}"));
        let before = idp.jwks_hits();
        actix_web::rt::time::sleep(Duration::from_millis(1100)).await; // past the refetch interval
        let e = error_of(&app, &with_token(&stranger.sign(&claims), "c")).await;
        assert_eq!(e, "jwt: token signed with an unknown key id", "{mode:?}");
        assert!(
            idp.wait_for_jwks_hits(before + 1, Duration::from_secs(10))
                .await,
            "{mode:?}: a fetch was attempted"
        );
        // ...and the last good keys keep working.
        assert_eq!(app.status(&with_token(&token, "c")).await, 200, "{mode:?}");
    }
    // The last fetch may still be running in the background (see `UNKNOWN_KID_WAIT`).
    let mut ready = app.get("/readyz").await;
    for _ in 0..200 {
        if ready.1["jwt"]["fetch_failures"].as_u64() >= Some(5) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        ready = app.get("/readyz").await;
    }
    let (s, body) = ready;
    assert_eq!(s, 200, "stale keys still serve: {body}");
    assert!(body["jwt"]["fetch_failures"].as_u64() >= Some(5), "{body}");
    assert!(body["jwt"]["keys_age_secs"].as_u64() >= Some(5), "{body}");
}

/// Sends `token` from a new address each time (so that the failure limiter never turns the
/// attempts away) until it is allowed; false if it never was within about 15 s.
async fn until_allowed(app: &TestApp, token: &str) -> bool {
    for i in 0..300u32 {
        let mut body = with_token(token, "c");
        body["ip"] = json!(format!("10.77.{}.{}", i / 200, i % 200 + 1));
        if app.status(&body).await == 200 {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// A verified token is cached, but only while the key that verified it is in the key set: once
/// a refresh brings a set without it, the token is checked again, and refused.
#[actix_web::test]
async fn a_cached_token_stops_working_when_its_key_leaves_the_key_set() {
    let old = TestKey::generate(KeyKind::Rsa, "old");
    let new = TestKey::generate(KeyKind::Ec, "new");
    let idp = FakeIdp::start(vec![old.jwk()]);
    let app = app_for(&idp, "").await;
    let claims = idp::keycloak_claims(&idp.issuer(), "a", perms(json!([{"action": "read"}])));
    let token = old.sign(&claims);
    assert_eq!(app.status(&with_token(&token, "c")).await, 200);
    assert_eq!(app.status(&with_token(&token, "c")).await, 200);

    // The IdP withdraws the old key. A token with the new kid makes mtx-auth refetch; once it
    // is accepted, the new key set is in use.
    idp.set_keys(vec![new.jwk()]);
    assert!(until_allowed(&app, &new.sign(&claims)).await);
    assert_eq!(
        error_of(&app, &with_token(&token, "c")).await,
        "jwt: token signed with an unknown key id"
    );
}

/// An unknown kid makes mtx-auth refetch the keys, but a request does not wait long for a key
/// server that hangs: MediaMTX checks path requests one at a time, so a stall would hold up
/// every stream. The key server here holds each answer for 3 s (within the 30 s fetch timeout):
/// waiting for it would allow the token, so a deny shows that the request did not wait. The
/// fetch goes on in the background, and once the server has answered, its keys serve the same
/// token without another fetch.
#[actix_web::test]
async fn an_unknown_kid_does_not_wait_for_a_hanging_key_server() {
    let old = TestKey::generate(KeyKind::Ec, "old");
    let new = TestKey::generate(KeyKind::Ec, "new");
    let idp = FakeIdp::start(vec![old.jwk()]);
    let app = app_for(&idp, "fetch_timeout_secs = 30").await;
    let claims = idp::keycloak_claims(&idp.issuer(), "a", perms(json!([{"action": "read"}])));
    let hits = idp.jwks_hits();

    idp.set_keys(vec![old.jwk(), new.jwk()]);
    idp.set_mode(JwksMode::Slow(Duration::from_secs(3)));
    let token = new.sign(&claims);
    assert_eq!(
        error_of(&app, &with_token(&token, "c")).await,
        "jwt: token signed with an unknown key id"
    );
    assert!(
        idp.wait_for_jwks_hits(hits + 1, Duration::from_secs(10))
            .await,
        "the refetch was started"
    );
    // The server answers again; the fetch that was left running brings the new key.
    idp.set_mode(JwksMode::Normal);
    assert!(until_allowed(&app, &token).await);
    assert_eq!(idp.jwks_hits(), hits + 1, "no second fetch was needed");
    assert_eq!(app.status(&with_token(&old.sign(&claims), "c")).await, 200);
}

/// The mechanism behind the HTTP test above: a cached token stays a cache hit across refreshes
/// that keep its key (as most refreshes do), and stops being one when a set without its key is
/// installed.
#[actix_web::test]
async fn key_sets_that_keep_a_key_keep_its_cached_tokens() {
    use mtx_auth::policy::{Decision, DenyReason, Policy};
    use mtx_auth::source::jwks::{parse_jwks, KeySet};
    use mtx_auth::source::jwt::JwtError;
    let (a, b) = (
        TestKey::generate(KeyKind::Ed, "a"),
        TestKey::generate(KeyKind::Rsa, "b"),
    );
    let policy = Policy::new(
        mtx_auth::config::Config::parse(
            &format!("[jwt]\njwks_url = \"{}/jwks\"\n", FakeIdp::unused_url()),
            "t.toml",
        )
        .unwrap(),
    );
    let install = |keys: Vec<Value>| {
        policy.jwt().unwrap().keys.install(KeySet {
            keys: parse_jwks(&json!({ "keys": keys })).unwrap(),
            discovered_issuer: None,
            token_endpoint: None,
            fetched_at: std::time::Instant::now(),
        })
    };
    let claims = idp::keycloak_claims("x", "alice", perms(json!([{"action": "read"}])));
    let token = a.sign(&claims);
    let decide = || {
        let mut r = mtx_auth::request::Request::new(
            mtx_auth::permission::Action::Read,
            "cam",
            "10.0.0.1",
            "",
            "",
        );
        r.token = token.clone().into();
        policy.decide(&r)
    };
    install(vec![a.jwk()]);
    assert!(matches!(decide(), Decision::Allow { cached: false, .. }));
    assert!(matches!(decide(), Decision::Allow { cached: true, .. }));
    // A refresh with the same key, or with a key added: still cached.
    install(vec![a.jwk()]);
    install(vec![a.jwk(), b.jwk()]);
    assert!(matches!(decide(), Decision::Allow { cached: true, .. }));
    // Another key withdrawn: every cached token is checked again once, then cached again.
    install(vec![a.jwk()]);
    assert!(matches!(decide(), Decision::Allow { cached: false, .. }));
    assert!(matches!(decide(), Decision::Allow { cached: true, .. }));
    // Its own key withdrawn: refused.
    install(vec![b.jwk()]);
    assert_eq!(
        decide(),
        Decision::Deny(DenyReason::Jwt(JwtError::UnknownKey))
    );
}

#[actix_web::test]
async fn unreachable_slow_or_bad_jwks_at_start_denies_and_is_not_ready() {
    let key = TestKey::generate(KeyKind::Rsa, "k");
    let claims = idp::keycloak_claims("x", "a", perms(json!([{"action": "read"}])));
    let token = key.sign(&claims);

    let down = spawn(&format!(
        "[jwt]\njwks_url = \"{}/jwks\"\n",
        FakeIdp::unused_url()
    ));
    let idp = FakeIdp::start(vec![key.jwk()]);
    idp.set_mode(JwksMode::Slow(Duration::from_secs(5)));
    let slow = spawn(&format!(
        "[jwt]\njwks_url = \"{}\"\nfetch_timeout_secs = 1\n",
        idp.jwks_url()
    ));
    for app in [&down, &slow] {
        let (s, b) = app.get("/readyz").await;
        assert_eq!((s, &b["waiting_for"]), (503, &json!(["jwt"])));
        assert_eq!(
            error_of(app, &with_token(&token, "c")).await,
            "jwt: jwt key set unavailable"
        );
        assert_eq!(app.get("/healthz").await.0, 200);
    }
    // The IdP recovers: the retry loop loads the keys and tokens verify.
    idp.set_mode(JwksMode::Normal);
    slow.wait_ready().await;
    assert_eq!(slow.status(&with_token(&token, "c")).await, 200);
}

#[actix_web::test]
async fn discovery_document_gives_keys_and_issuer() {
    let key = TestKey::generate(KeyKind::Ec, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = spawn(&format!(
        "[jwt]\ndiscovery_url = \"{}\"\n",
        idp.discovery_url()
    ));
    app.wait_ready().await;
    let claims = |iss: &str| idp::keycloak_claims(iss, "a", perms(json!([{"action": "read"}])));
    assert_eq!(
        app.status(&with_token(&key.sign(&claims(&idp.issuer())), "c"))
            .await,
        200
    );
    // The document's issuer is enforced when none is configured.
    let e = error_of(&app, &with_token(&key.sign(&claims("https://other/")), "c")).await;
    assert_eq!(e, "jwt: token issuer does not match");

    // A configured issuer that the document contradicts: no keys are trusted.
    let mismatch = spawn(&format!(
        "[jwt]\ndiscovery_url = \"{}\"\nissuer = \"https://elsewhere/\"\n",
        idp.discovery_url()
    ));
    assert_eq!(mismatch.get("/readyz").await.0, 503);
    let e = error_of(
        &mismatch,
        &with_token(&key.sign(&claims("https://elsewhere/")), "c"),
    )
    .await;
    assert_eq!(e, "jwt: jwt key set unavailable");
}

#[actix_web::test]
async fn a_cached_token_is_remembered_but_its_signature_opens_nothing_else() {
    use mtx_auth::policy::{Decision, Policy};
    let key = TestKey::generate(KeyKind::Ec, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let config = mtx_auth::config::Config::parse(
        &format!("[jwt]\njwks_url = \"{}\"\n", idp.jwks_url()),
        "t.toml",
    )
    .unwrap();
    let policy = Policy::new(config);
    policy.jwt().unwrap().keys.refresh().await.unwrap();
    let read = perms(json!([{"action": "read"}]));
    let token = key.sign(&idp::keycloak_claims(&idp.issuer(), "alice", read));
    let req = |t: &str| {
        let mut r = mtx_auth::request::Request::new(
            mtx_auth::permission::Action::Read,
            "cam",
            "10.0.0.1",
            "",
            "",
        );
        r.token = t.to_owned().into();
        policy.decide(&r)
    };
    assert!(matches!(req(&token), Decision::Allow { cached: false, .. }));
    assert!(matches!(req(&token), Decision::Allow { cached: true, .. }));
    // The cached token's signature on another payload: not a cache hit, and not valid.
    let (_, signature) = token.rsplit_once('.').unwrap();
    let other = idp::keycloak_claims(
        &idp.issuer(),
        "mallory",
        perms(json!([{"action": "publish"}])),
    );
    let forged = format!(
        "{}.{}.{signature}",
        token.split('.').next().unwrap(),
        idp::b64url(other.to_string().as_bytes())
    );
    assert_eq!(
        req(&forged),
        Decision::Deny(mtx_auth::policy::DenyReason::Jwt(
            mtx_auth::source::jwt::JwtError::Signature
        ))
    );
}

#[actix_web::test]
async fn identity_can_come_from_another_claim() {
    let key = TestKey::generate(KeyKind::Ed, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let app = app_for(&idp, "identity_claim = \"preferred_username\"").await;
    let claims =
        json!({"preferred_username": "alice", "mediamtx_permissions": [{"action": "read"}]});
    let token = key.sign(&idp::keycloak_claims(
        &idp.issuer(),
        "f81d4fae-7dec",
        claims,
    ));
    let (s, b) = app.auth(&with_token(&token, "c")).await;
    assert_eq!((s, b["user"].as_str()), (200, Some("alice")));
}

#[actix_web::test]
async fn explain_fetches_the_keys_and_names_the_jwt_source() {
    let key = TestKey::generate(KeyKind::Ec, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let config = temp_config(
        "explain-jwt.toml",
        &format!("[jwt]\njwks_url = \"{}\"\n", idp.jwks_url()),
    );
    let claims = perms(json!([{"action": "read", "path": "cam"}]));
    let token = key.sign(&idp::keycloak_claims(&idp.issuer(), "alice", claims));
    let run = |path: &'static str| {
        let (config, token) = (config.clone(), token.clone());
        // The fake IdP serves on this test's runtime: run the binary off it.
        actix_web::rt::task::spawn_blocking(move || {
            let body = with_token(&token, path).to_string();
            let out = bin()
                .arg("explain")
                .arg("--config")
                .arg(&config)
                .arg(body)
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap()
        })
    };
    let out = run("cam").await.unwrap();
    assert!(
        out.contains("allow (200) user=\"alice\"") && out.contains("decided by: jwt"),
        "{out}"
    );
    let out = run("other").await.unwrap();
    assert!(
        out.contains("deny (401): jwt: token does not permit this action and path"),
        "{out}"
    );
    assert!(out.contains("then jwt"), "{out}");
    assert!(!out.contains(&token), "explain never prints the token");
}

#[actix_web::test]
async fn keys_and_tokens_without_kid() {
    let key = TestKey::generate(KeyKind::Ed, "k");
    // The JWKS omits the kid: a token naming any kid is checked against it.
    let idp = FakeIdp::start(vec![key.jwk_with(json!({"kid": null}))]);
    let app = app_for(&idp, "").await;
    let claims = idp::keycloak_claims(&idp.issuer(), "a", perms(json!([{"action": "read"}])));
    assert_eq!(app.status(&with_token(&key.sign(&claims), "c")).await, 200);
    // A token without a kid is checked against every key that allows its algorithm.
    let no_kid = key.sign_with_header(&json!({"alg": "EdDSA", "typ": "JWT"}), &claims);
    assert_eq!(app.status(&with_token(&no_kid, "c")).await, 200);
    let other = TestKey::generate(KeyKind::Ed, "x");
    let forged = other.sign_with_header(&json!({"alg": "EdDSA", "typ": "JWT"}), &claims);
    let e = error_of(&app, &with_token(&forged, "c")).await;
    assert_eq!(e, "jwt: token signature invalid");
}

/// MediaMTX's `authJWTJWKSFingerprint`: a key server with a self-signed certificate is trusted
/// when, and only when, its certificate is the pinned one. Without the pin, or with another
/// certificate's, no key is ever fetched and every token is denied.
#[actix_web::test]
async fn a_self_signed_key_server_is_trusted_by_its_pinned_fingerprint_only() {
    let key = TestKey::generate(KeyKind::Rsa, "k");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let backend = idp.base().trim_start_matches("http://").parse().unwrap();
    let front = TlsFront::start(backend);
    let url = front.https(&idp.jwks_url());
    let claims = idp::keycloak_claims(&idp.issuer(), "alice", perms(json!([{"action": "read"}])));
    let token = key.sign(&claims);
    let config = |pin: &str| format!("[jwt]\njwks_url = \"{url}\"\n{pin}\n");

    // MediaMTX's spelling and openssl's (`openssl x509 -fingerprint -sha256`).
    let openssl = front
        .sha256
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    for pin in [front.fingerprint(), openssl] {
        let app = spawn(&config(&format!("jwks_fingerprint = \"{pin}\"")));
        app.wait_ready().await;
        let (s, b) = app.auth(&with_token(&token, "cam")).await;
        assert_eq!((s, b["user"].as_str()), (200, Some("alice")), "{b}");
    }
    let fetched = idp.jwks_hits();
    assert!(
        fetched >= 2,
        "each pinned server fetched the keys: {fetched}"
    );

    let impostor = TlsFront::start(backend).fingerprint();
    for pin in [String::new(), format!("jwks_fingerprint = \"{impostor}\"")] {
        let app = spawn(&config(&pin));
        // Wait until the first fetch has failed, so that the deny below is the refusal of the
        // certificate, not a server still starting.
        let mut ready = Value::Null;
        for _ in 0..200 {
            ready = app.get("/readyz").await.1;
            if ready["jwt"]["fetch_failures"].as_u64() >= Some(1) {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(25)).await;
        }
        assert!(
            ready["jwt"]["fetch_failures"].as_u64() >= Some(1),
            "{ready}"
        );
        assert_eq!(ready["waiting_for"], json!(["jwt"]), "{ready}");
        assert_eq!(
            error_of(&app, &with_token(&token, "cam")).await,
            "jwt: jwt key set unavailable"
        );
    }
    // The refused connections never reached the key server behind the front.
    assert_eq!(idp.jwks_hits(), fetched);
}

// ---------------------------------------------------------------------------------------------
// Interoperability with a real OpenID provider written by others: panva's `oidc-provider` (npm),
// started on loopback. mtx-auth is configured with nothing but its discovery URL.
// ---------------------------------------------------------------------------------------------

fn request(token: &str, action: &str, path: &str) -> serde_json::Value {
    json!({"ip":"127.0.0.1","user":"","password":token,"token":token,"action":action,"path":path,"protocol":"rtsp","id":null,"query":""})
}

#[actix_web::test]
async fn oidc_provider_access_tokens_are_accepted_through_discovery() {
    for options in [
        OidcOptions::default(),
        OidcOptions {
            es256: true,
            ..Default::default()
        },
    ] {
        let provider = OidcProvider::start_with(options.clone());
        let app = spawn(&format!(
            "[jwt]\ndiscovery_url = \"{}\"\naudience = \"{}\"\n",
            provider.discovery_url(),
            oidc::RESOURCE
        ));
        app.wait_ready().await;
        let token = provider.client_credentials_token().await;

        // The provider's claim: read "cam", publish "~^live/". The identity is `sub`, which for
        // a client_credentials token is the client id.
        let (s, b) = app.auth(&request(&token, "read", "cam")).await;
        assert_eq!(
            s,
            200,
            "{options:?}: {b}\nprovider output:\n{}",
            provider.output()
        );
        assert_eq!(b["user"], oidc::CLIENT_ID);
        assert_eq!(app.status(&request(&token, "publish", "live/x")).await, 200);
        assert_eq!(app.status(&request(&token, "read", "other")).await, 401);
        // The same token in an HLS query string.
        let hls = json!({"ip":"127.0.0.1","action":"read","path":"cam","protocol":"hls","query":format!("jwt={token}")});
        assert_eq!(app.status(&hls).await, 200);

        // Tampering with any part breaks it.
        let parts: Vec<&str> = token.split('.').collect();
        let mut sig = parts[2].to_owned().into_bytes();
        sig[5] = if sig[5] == b'A' { b'B' } else { b'A' };
        let forged_sig = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            String::from_utf8(sig).unwrap()
        );
        let claims = format!(
            "{}.{}.{}",
            parts[0],
            &parts[1][..parts[1].len() - 2],
            parts[2]
        );
        for bad in [forged_sig, claims] {
            let (s, b) = app.auth(&request(&bad, "read", "cam")).await;
            assert_eq!(s, 401, "{b}");
        }
    }
}
