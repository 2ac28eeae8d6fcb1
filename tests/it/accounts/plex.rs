//! Plex accounts through HTTP, against a fake plex.tv.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::media::{FakePlex, Mode};
use crate::support::{error_of, mtx_request, spawn, TestApp};

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
