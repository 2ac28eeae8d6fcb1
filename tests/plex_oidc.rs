//! Plex accounts (against a fake plex.tv) and OIDC password login (against a fake Keycloak-like
//! token endpoint that signs real RS256 tokens), through HTTP.

#![recursion_limit = "256"] // the fake servers' JSON literals are large

mod common;
#[path = "support/idp.rs"]
mod idp;
#[path = "support/media.rs"]
mod media;

use std::time::Duration;

use common::{mtx_request, spawn, TestApp};
use idp::{FakeIdp, KeyKind, TestKey, TokenMode};
use media::{FakePlex, Mode};
use serde_json::{json, Value};

const MACHINE_ID: &str = "7f4c1a9e2b3d4c5e6f708192a3b4c5d6e7f80912";

/// plex.tv with a server "Home" owned by `owner`, shared with `friend`; `stranger` has an
/// account but no access; `stranger` owns a player named "Home" too.
fn plex_household() -> FakePlex {
    let plex = FakePlex::start();
    plex.add_account("owner", "owner-token-0000000000", Some("owner-pw"));
    plex.add_account("friend", "friend-token-000000000", Some("friend-pw"));
    plex.add_account("stranger", "stranger-token-0000000", Some("stranger-pw"));
    plex.add_server("Home", MACHINE_ID, "owner");
    plex.share(MACHINE_ID, "friend");
    plex.add_player("Home", "player-client-id", "stranger");
    plex
}

async fn plex_app(plex: &FakePlex, extra: &str) -> TestApp {
    let app = spawn(&format!(
        "[plex]\napi_url = \"{}\"\nserver = \"{MACHINE_ID}\"\nadmin_permissions = [{{ action = \"publish\" }}]\n{extra}\n",
        plex.url()
    ));
    app.wait_ready().await;
    app
}

fn with_token(action: &str, token: &str) -> Value {
    json!({"ip":"10.0.0.1","user":"","password":"","token":token,"action":action,"path":"cam","protocol":"hls","id":null,"query":""})
}

async fn error_of(app: &TestApp, body: &Value) -> String {
    let (s, b) = app.auth(body).await;
    assert_eq!(s, 401, "expected a deny, got {s} {b}");
    b["error"].as_str().unwrap().to_owned()
}

#[actix_web::test]
async fn plex_owner_shared_user_and_stranger() {
    let plex = plex_household();
    let app = plex_app(&plex, "").await;
    let (s, b) = app
        .auth(&with_token("read", "owner-token-0000000000"))
        .await;
    assert_eq!((s, b["user"].as_str()), (200, Some("owner")));
    app.expect(&[
        (with_token("publish", "owner-token-0000000000"), 200),
        (with_token("read", "friend-token-000000000"), 200),
        (with_token("playback", "friend-token-000000000"), 200),
        (with_token("publish", "friend-token-000000000"), 401),
        (with_token("read", "stranger-token-0000000"), 401),
        (with_token("read", "no-such-token-00000000"), 401),
    ])
    .await;
    assert_eq!(
        error_of(&app, &with_token("publish", "friend-token-000000000")).await,
        "plex: account not permitted this action and path"
    );
    assert!(!plex.saw_missing_client_identifier());
}

#[actix_web::test]
async fn plex_token_as_password_and_server_by_name() {
    let plex = plex_household();
    let app = spawn(&format!(
        "[plex]\napi_url = \"{}\"\nserver = \"Home\"\n",
        plex.url()
    ));
    app.wait_ready().await;
    // rtsp://plex:TOKEN@host/cam: the user name is only a label.
    app.expect(&[
        (
            mtx_request("read", "cam", "10.0.0.1", "plex", "friend-token-000000000"),
            200,
        ),
        (
            mtx_request("read", "cam", "10.0.0.1", "", "friend-token-000000000"),
            200,
        ),
        // The stranger's player is called "Home" too, but it is no server.
        (
            mtx_request("read", "cam", "10.0.0.1", "x", "stranger-token-0000000"),
            401,
        ),
    ])
    .await;
    assert_eq!(plex.signin_hits(), 0, "no password sign-in unless enabled");
    // The name is only a label, so wrong tokens typed under it are not counted against it: a
    // household all typing "plex" is not locked out by two typos.
    for typo in [
        "typo-token-0000000001",
        "typo-token-0000000002",
        "typo-token-0000000003",
    ] {
        let body = mtx_request("read", "cam", "10.0.0.1", "plex", typo);
        assert_eq!(app.status(&body).await, 401);
    }
    let owner = mtx_request("read", "cam", "10.0.0.2", "plex", "owner-token-0000000000");
    assert_eq!(app.status(&owner).await, 200);
}

#[actix_web::test]
async fn plex_password_sign_in_is_opt_in() {
    let plex = plex_household();
    let app = plex_app(&plex, "password_login = true").await;
    let (s, b) = app
        .auth(&mtx_request(
            "read",
            "cam",
            "10.0.0.1",
            "friend",
            "friend-pw",
        ))
        .await;
    assert_eq!((s, b["user"].as_str()), (200, Some("friend")));
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "friend", "nope"))
            .await,
        401
    );
    assert_eq!(plex.signin_hits(), 2);
    // Tokens still work.
    assert_eq!(
        app.status(&with_token("read", "owner-token-0000000000"))
            .await,
        200
    );
}

#[actix_web::test]
async fn plex_unshared_access_ends_with_the_cache() {
    let plex = plex_household();
    let app = plex_app(&plex, "cache_ttl_secs = 1").await;
    let friend = with_token("read", "friend-token-000000000");
    assert_eq!(app.status(&friend).await, 200);
    plex.unshare(MACHINE_ID, "friend");
    assert_eq!(app.status(&friend).await, 200, "cached");
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.status(&friend).await, 401);
}

#[actix_web::test]
async fn plex_outages_deny_as_unreachable() {
    let plex = plex_household();
    let app = plex_app(&plex, "timeout_secs = 1\nstale_grace_secs = 0").await;
    for (i, mode) in [
        Mode::Status(502),
        Mode::Garbage,
        Mode::Slow(Duration::from_secs(3)),
    ]
    .into_iter()
    .enumerate()
    {
        plex.set_mode(mode.clone());
        actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
        let token = [
            "owner-token-0000000000",
            "friend-token-000000000",
            "owner-token-0000000000",
        ][i];
        // A different request each time (the owner twice, but after a 2 s retry pause).
        let body = json!({"ip":"10.0.0.1","user":"","password":"","token":token,"action":"read","path":format!("cam{i}"),"protocol":"hls","id":null,"query":""});
        assert_eq!(error_of(&app, &body).await, "plex unreachable", "{mode:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// OIDC password login
// ---------------------------------------------------------------------------------------------

fn keycloak() -> FakeIdp {
    let idp = FakeIdp::start_with_signer(TestKey::generate(KeyKind::Rsa, "rsa-1"));
    idp.set_password_client("mediamtx", "s3cret-client");
    idp.add_password_user(
        "alice",
        "alice-pw",
        json!({ "mediamtx_permissions": [{ "action": "publish", "path": "alice" }, { "action": "read" }] }),
    );
    idp.add_password_user(
        "bob",
        "bob-pw",
        json!({ "realm_access": { "roles": ["viewer", "offline_access"] } }),
    );
    idp.add_password_user("nobody", "nobody-pw", json!({}));
    idp
}

async fn oidc_app(idp: &FakeIdp, extra: &str) -> TestApp {
    let app = spawn(&format!(
        r#"[oidc]
discovery_url = "{}"
client_id = "mediamtx"
client_secret = "s3cret-client"
{extra}

[[oidc.roles]]
claim = "realm_access.roles"
value = "viewer"
permissions = [{{ action = "read" }}, {{ action = "playback" }}]
"#,
        idp.discovery_url()
    ));
    app.wait_ready().await;
    app
}

#[actix_web::test]
async fn oidc_password_login_maps_the_claim_and_roles() {
    let idp = keycloak();
    let app = oidc_app(&idp, "").await;
    let alice =
        |action: &str, path: &str| mtx_request(action, path, "10.0.0.1", "alice", "alice-pw");
    let (s, b) = app.auth(&alice("publish", "alice")).await;
    assert_eq!((s, b["user"].as_str()), (200, Some("alice")));
    app.expect(&[
        (alice("read", "anything"), 200),
        (alice("publish", "bob"), 401),
        (mtx_request("read", "cam", "10.0.0.1", "bob", "bob-pw"), 200),
        (
            mtx_request("publish", "cam", "10.0.0.1", "bob", "bob-pw"),
            401,
        ),
        (
            mtx_request("read", "cam", "10.0.0.1", "alice", "wrong"),
            401,
        ),
        (mtx_request("read", "cam", "10.0.0.1", "ghost", "x"), 401),
        // Valid credentials, but the token grants nothing.
        (
            mtx_request("read", "cam", "10.0.0.1", "nobody", "nobody-pw"),
            401,
        ),
    ])
    .await;
    // Alice's two first requests differ only in action and path: one exchange.
    let alice_exchanges = idp
        .token_requests()
        .iter()
        .filter(|r| r.field("username") == Some("alice") && r.field("password") == Some("alice-pw"))
        .count();
    assert_eq!(alice_exchanges, 1);
    let last = idp.last_token_request().unwrap();
    assert_eq!(last.field("grant_type"), Some("password"));
    assert_eq!(last.field("client_id"), Some("mediamtx"));
}

#[actix_web::test]
async fn oidc_disabled_account_wrong_client_and_outage() {
    let idp = keycloak();
    idp.set_user_disabled("bob", true);
    let app = oidc_app(&idp, "timeout_secs = 1").await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "bob", "bob-pw"))
            .await,
        401
    );
    // A wrong client secret is our configuration's fault, not the viewer's.
    idp.set_password_client("mediamtx", "another-secret");
    assert_eq!(
        error_of(
            &app,
            &mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw")
        )
        .await,
        "oidc unreachable"
    );
    idp.set_password_client("mediamtx", "s3cret-client");
    for mode in [
        TokenMode::Status(503),
        TokenMode::Html,
        TokenMode::Garbage,
        TokenMode::Slow(Duration::from_secs(3)),
    ] {
        idp.set_token_mode(mode.clone());
        actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
        assert_eq!(
            error_of(
                &app,
                &mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw")
            )
            .await,
            "oidc unreachable",
            "{mode:?}"
        );
    }
    idp.set_token_mode(TokenMode::Normal);
    actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw"))
            .await,
        200
    );
}

#[actix_web::test]
async fn oidc_tokens_signed_by_an_unpublished_key_are_refused() {
    let idp = keycloak();
    let app = oidc_app(&idp, "").await;
    idp.set_signing_key(TestKey::generate(KeyKind::Rsa, "rsa-rogue"));
    assert_eq!(
        error_of(
            &app,
            &mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw")
        )
        .await,
        "oidc unreachable"
    );
}

#[actix_web::test]
async fn oidc_client_secret_from_file_and_environment() {
    let idp = keycloak();
    let dir = std::env::temp_dir().join(format!("mtx-auth-oidc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("secret");
    std::fs::write(&file, "s3cret-client\n").unwrap();
    let config = |secret_line: String| {
        format!(
            "[oidc]\ndiscovery_url = \"{}\"\nclient_id = \"mediamtx\"\n{secret_line}\n",
            idp.discovery_url()
        )
    };
    let app = spawn(&config(format!(
        "client_secret_file = {:?}",
        file.display().to_string()
    )));
    app.wait_ready().await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw"))
            .await,
        200
    );
    std::env::set_var("MTX_AUTH_TEST_OIDC_SECRET", "s3cret-client");
    let app = spawn(&config(
        "client_secret_env = \"MTX_AUTH_TEST_OIDC_SECRET\"".into(),
    ));
    app.wait_ready().await;
    assert_eq!(
        app.status(&mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw"))
            .await,
        200
    );
    let _ = std::fs::remove_dir_all(dir);
}
