//! Jellyfin and Emby accounts through HTTP, against fake servers on loopback that answer like
//! the real ones (support/media.rs): logins, tokens, administrators, overrides, caching,
//! coalescing, outages and the failure limit that protects household accounts from lockout.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::media::{self, FakeMediaServer, Flavor, Mode, UserSpec};
use crate::support::{error_of, mtx_request, spawn, TestApp};

/// A server with one `[jellyfin]` (or `[emby]`) section pointing at `fake`, plus `extra` lines
/// inside that section, plus `after` (further sections).
async fn app_for(fake: &FakeMediaServer, extra: &str, after: &str) -> TestApp {
    let section = match fake.flavor() {
        Flavor::Jellyfin => "jellyfin",
        Flavor::Emby => "emby",
    };
    let app = spawn(&format!(
        "[{section}]\nurl = \"{}\"\n{extra}\n{after}\n",
        fake.url()
    ));
    app.wait_ready().await;
    app
}

fn household() -> Vec<UserSpec> {
    vec![
        UserSpec::new("Alice", "alice-pw"),
        UserSpec::new("bob", "bob-pw"),
        UserSpec::new("root", "root-pw").admin(),
        UserSpec::new("carol", "carol-pw").disabled(),
        UserSpec::new("dave", "dave-pw").no_remote_access(),
    ]
}

fn read(user: &str, pass: &str) -> Value {
    mtx_request("read", "cam", "10.0.0.1", user, pass)
}

fn publish(path: &str, user: &str, pass: &str) -> Value {
    mtx_request("publish", path, "10.0.0.1", user, pass)
}

/// A request carrying only a token, as MediaMTX sends `Authorization: Bearer <token>`.
fn with_token(token: &str) -> Value {
    json!({"ip":"10.0.0.1","user":"","password":"","token":token,"action":"read","path":"cam","protocol":"hls","id":null,"query":""})
}

#[actix_web::test]
async fn jellyfin_login_right_and_wrong_password() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(&jf, "", "").await;
    let (s, b) = app.auth(&read("alice", "alice-pw")).await;
    // The name as Jellyfin spells it.
    assert_eq!((s, b["user"].as_str()), (200, Some("Alice")));
    assert_eq!(
        error_of(&app, &read("alice", "wrong")).await,
        "no user matches these credentials for this action, path and ip"
    );
    assert_eq!(app.status(&read("nobody", "x")).await, 401);
    // Default permissions are read and playback.
    assert_eq!(
        error_of(&app, &publish("cam", "alice", "alice-pw")).await,
        "jellyfin: account not permitted this action and path"
    );
    assert_eq!(
        app.status(&mtx_request(
            "playback", "cam", "10.0.0.1", "alice", "alice-pw"
        ))
        .await,
        200
    );
    assert!(!jf.saw_legacy_headers(), "only Authorization: MediaBrowser");
}

#[actix_web::test]
async fn jellyfin_sessions_are_ours_stable_and_logged_out() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(&jf, "cache_ttl_secs = 1", "").await;
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.status(&read("ALICE", "alice-pw")).await, 200);
    assert_eq!(app.status(&read("bob", "bob-pw")).await, 200);
    assert_eq!(jf.login_hits(), 3);
    let ids = jf.device_ids();
    assert_eq!(ids.len(), 3);
    assert_eq!(ids[0], ids[1], "one stable device id per user");
    assert_ne!(ids[0], ids[2], "another user, another device id");
    assert!(ids.iter().all(|d| d.starts_with("mtx-auth-")));
    assert!(!ids[0].to_lowercase().contains("alice"));
    assert!(jf.wait_for_logouts(3, Duration::from_secs(5)).await);
    assert_eq!(
        jf.active_sessions(),
        0,
        "every session we created was ended"
    );
}

#[actix_web::test]
async fn disabled_accounts_and_administrators() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(
        &jf,
        "permissions = [{ action = \"read\" }]\nadmin_permissions = [{ action = \"publish\" }, { action = \"api\" }]",
        "",
    )
    .await;
    assert_eq!(app.status(&read("carol", "carol-pw")).await, 401);
    app.expect(&[
        (publish("any/path", "root", "root-pw"), 200),
        (mtx_request("api", "", "10.0.0.1", "root", "root-pw"), 200),
        (read("root", "root-pw"), 200),
        (publish("any/path", "bob", "bob-pw"), 401),
        (mtx_request("api", "", "10.0.0.1", "bob", "bob-pw"), 401),
    ])
    .await;
}

#[actix_web::test]
async fn per_user_overrides_add_or_replace() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let extra = r#"
[[jellyfin.overrides]]
user = "alice"
permissions = [{ action = "publish", path = "~^alice/" }]

[[jellyfin.overrides]]
user = "BOB"
replace = true
permissions = [{ action = "read", path = "kids" }]
"#;
    let app = app_for(&jf, "", extra).await;
    app.expect(&[
        (publish("alice/cam", "alice", "alice-pw"), 200),
        (publish("bob/cam", "alice", "alice-pw"), 401),
        (read("alice", "alice-pw"), 200),
        (
            mtx_request("read", "kids", "10.0.0.1", "bob", "bob-pw"),
            200,
        ),
        (read("bob", "bob-pw"), 401),
        (publish("alice/cam", "bob", "bob-pw"), 401),
    ])
    .await;
}

#[actix_web::test]
async fn jellyfin_access_tokens() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    jf.add_token("0123456789abcdef0123456789abcdef", "bob");
    jf.add_token("fedcba9876543210fedcba9876543210", "carol");
    jf.add_api_key("aaaaaaaabbbbbbbbccccccccdddddddd");
    let app = app_for(&jf, "", "").await;
    let (s, b) = app
        .auth(&with_token("0123456789abcdef0123456789abcdef"))
        .await;
    assert_eq!((s, b["user"].as_str()), (200, Some("bob")));
    // As a password without a user name (rtsp://:TOKEN@host/cam).
    assert_eq!(
        app.status(&read("", "0123456789abcdef0123456789abcdef"))
            .await,
        200
    );
    for bad in [
        "fedcba9876543210fedcba9876543210", // a disabled user's
        "aaaaaaaabbbbbbbbccccccccdddddddd", // an API key names no user
        "00000000000000000000000000000000",
        "with\"quote",
    ] {
        assert_eq!(app.status(&with_token(bad)).await, 401, "{bad}");
    }
    // The viewer's own session is not ours to end.
    assert_eq!(jf.logout_hits(), 0);
}

#[actix_web::test]
async fn successes_and_failures_are_cached() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    jf.set_lockout(None);
    let app = app_for(&jf, "", "").await;
    for _ in 0..5 {
        assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    }
    assert_eq!(jf.login_hits(), 1);
    for _ in 0..3 {
        assert_eq!(app.status(&read("bob", "not-bob")).await, 401);
    }
    assert_eq!(jf.login_hits(), 2, "a wrong password is remembered briefly");
    // A cached success for one password says nothing about another.
    assert_eq!(app.status(&read("alice", "alice-pw2")).await, 401);
    assert_eq!(jf.login_hits(), 3);
}

#[actix_web::test]
async fn hundred_identical_concurrent_requests_make_one_login() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    // Slow enough that all requests arrive while the first login is under way.
    jf.set_mode(Mode::Slow(Duration::from_millis(300)));
    let app = app_for(&jf, "", "").await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (client, base) = (app.client.clone(), app.base.clone());
            actix_web::rt::spawn(async move {
                let r = client
                    .post(format!("{base}/auth"))
                    .json(&read("alice", "alice-pw"))
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(jf.login_hits(), 1);
}

#[actix_web::test]
async fn failed_logins_are_limited_before_the_media_server_locks_the_account() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(&jf, "", "").await;
    // Alice watches with a cached login...
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    // ...while someone guesses her password.
    for guess in ["a", "b", "c", "d", "e", "f"] {
        assert_eq!(app.status(&read("alice", guess)).await, 401);
    }
    assert_eq!(
        error_of(&app, &read("alice", "g")).await,
        "jellyfin: too many failed logins for this user; try again later"
    );
    assert_eq!(jf.login_hits(), 1 + 2, "only two guesses reached Jellyfin");
    assert!(
        !jf.is_disabled("alice"),
        "Jellyfin never saw a third failure"
    );
    // The cached login still works.
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    // Other users are not affected.
    assert_eq!(app.status(&read("bob", "bob-pw")).await, 200);
}

#[actix_web::test]
async fn a_toml_user_wins_over_an_account_of_the_same_name() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let toml =
        "[[users]]\nuser = \"alice\"\npass = \"toml-pw\"\npermissions = [{ action = \"read\" }]\n";
    let app = app_for(&jf, "", toml).await;
    assert_eq!(app.status(&read("alice", "toml-pw")).await, 200);
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 401);
    assert_eq!(jf.login_hits(), 0);
    assert_eq!(app.status(&read("bob", "bob-pw")).await, 200);
}

#[actix_web::test]
async fn accounts_without_remote_access_only_from_local_networks() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(
        &jf,
        "local_networks = [\"192.168.0.0/16\", \"fd00::/8\"]",
        "",
    )
    .await;
    let from = |ip: &str, user: &str, pass: &str| mtx_request("read", "cam", ip, user, pass);
    app.expect(&[
        (from("192.168.1.20", "dave", "dave-pw"), 200),
        (from("fd00::5", "dave", "dave-pw"), 200),
        (from("203.0.113.9", "dave", "dave-pw"), 401),
        (from("203.0.113.9", "bob", "bob-pw"), 200),
    ])
    .await;
    assert_eq!(
        error_of(&app, &from("203.0.113.9", "dave", "dave-pw")).await,
        "jellyfin: account has no remote access and the client is not on a local network"
    );
}

#[actix_web::test]
async fn broken_upstream_answers_deny_as_unreachable() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(&jf, "timeout_secs = 1", "").await;
    for (i, mode) in [
        Mode::Status(500),
        Mode::Garbage,
        Mode::WrongShape,
        Mode::Slow(Duration::from_secs(3)),
    ]
    .into_iter()
    .enumerate()
    {
        jf.set_mode(mode.clone());
        // Each round another user, so nothing is cached; and after the source's retry pause.
        actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
        let user = ["alice", "bob", "root", "dave"][i];
        assert_eq!(
            error_of(&app, &read(user, &format!("{user}-pw"))).await,
            "jellyfin unreachable",
            "{mode:?}"
        );
    }
    // An outage is not a wrong password: nothing was counted against the accounts.
    jf.set_mode(Mode::Normal);
    actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    let (_, ready) = app.get("/readyz").await;
    assert!(
        ready["jellyfin"]["upstream_errors"].as_u64().unwrap() >= 4,
        "{ready}"
    );
}

#[actix_web::test]
async fn outage_serves_a_recent_success_and_denies_everything_else() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(&jf, "cache_ttl_secs = 1\nstale_grace_secs = 600", "").await;
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    jf.stop().await;
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    // The fresh entry expired; the upstream is down; the success is recent enough.
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    // No cached success: fail closed.
    assert_eq!(
        error_of(&app, &read("bob", "bob-pw")).await,
        "jellyfin unreachable"
    );
    // A wrong password for a cached user is not served from the stale entry.
    assert_eq!(app.status(&read("alice", "alice-wrong")).await, 401);
    let (_, ready) = app.get("/readyz").await;
    assert!(
        ready["jellyfin"]["stale_served"].as_u64().unwrap() >= 2,
        "{ready}"
    );
    jf.restart();
    actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(app.status(&read("bob", "bob-pw")).await, 200);
}

#[actix_web::test]
async fn stale_grace_zero_never_serves_stale() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, household());
    let app = app_for(&jf, "cache_ttl_secs = 1\nstale_grace_secs = 0", "").await;
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    jf.stop().await;
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        error_of(&app, &read("alice", "alice-pw")).await,
        "jellyfin unreachable"
    );
}

#[actix_web::test]
async fn readiness_waits_for_the_media_server() {
    let url = media::unused_url();
    let app = spawn(&format!("[jellyfin]\nurl = \"{url}\"\n"));
    let (s, b) = app.get("/readyz").await;
    assert_eq!(s, 503);
    assert_eq!(b["waiting_for"], json!(["jellyfin"]));
    assert_eq!(b["jellyfin"]["ready"], json!(false));
    assert_eq!(
        error_of(&app, &read("alice", "alice-pw")).await,
        "jellyfin unreachable"
    );
}

#[actix_web::test]
async fn emby_logins_use_emby_headers() {
    let emby = FakeMediaServer::start(Flavor::Emby, household());
    let app = app_for(&emby, "admin_permissions = [{ action = \"publish\" }]", "").await;
    let (s, b) = app.auth(&read("alice", "alice-pw")).await;
    assert_eq!((s, b["user"].as_str()), (200, Some("Alice")));
    app.expect(&[
        (read("alice", "nope"), 401),
        (read("carol", "carol-pw"), 401),
        (publish("x", "root", "root-pw"), 200),
        (publish("x", "bob", "bob-pw"), 401),
    ])
    .await;
    assert!(emby.wait_for_logouts(3, Duration::from_secs(5)).await);
    // Emby can't say whose a token is: token-only requests are not sent to it.
    let hits = emby.token_hits() + emby.login_hits();
    assert_eq!(
        app.status(&with_token("0123456789abcdef0123456789abcdef"))
            .await,
        401
    );
    assert_eq!(emby.token_hits() + emby.login_hits(), hits);
}

#[actix_web::test]
async fn jellyfin_then_emby_in_config_order() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("alice", "jf-pw")]);
    let emby = FakeMediaServer::start(Flavor::Emby, vec![UserSpec::new("erin", "emby-pw")]);
    let app = app_for(&jf, "", &format!("[emby]\nurl = \"{}\"\n", emby.url())).await;
    assert_eq!(app.status(&read("erin", "emby-pw")).await, 200);
    assert_eq!(jf.login_hits(), 1, "jellyfin was asked first");
    assert_eq!(app.status(&read("alice", "jf-pw")).await, 200);
    assert_eq!(
        emby.login_hits(),
        1,
        "emby not asked once jellyfin said yes"
    );
}
