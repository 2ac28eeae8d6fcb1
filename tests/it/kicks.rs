//! Taking access back from live sessions, end to end: the real binary, a fake MediaMTX control
//! API that authenticates every call through mtx-auth as MediaMTX does, and each of the endings
//! the contract names: a credential revoked or expired, a JWT at `exp` plus leeway, a reload that
//! changes the `[[users]]` entry that granted a session. Nothing that still has access is kicked.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::idp::{self, FakeIdp, KeyKind, TestKey};
use crate::support::mediamtx::FakeMediamtx;
use crate::support::{bin, revoke, temp_config, try_issue, Binary, TestApp};

/// A config with a store and `[mediamtx]` pointing at `api` (and whatever `extra` adds).
fn config(name: &str, api: &FakeMediamtx, extra: &str) -> PathBuf {
    temp_config(
        name,
        &format!(
            "[store]\nurl = \"sqlite://mtx-auth.db\"\n\n[server]\nmax_failures_per_ip = 0\n\n\
             [mediamtx]\napi_url = \"{}\"\n\n{extra}",
            api.url
        ),
    )
}

fn start(config: &Path, api: &FakeMediamtx) -> Binary {
    let server = Binary::start(config);
    api.set_auth(&server.base);
    server
}

/// `token issue --json`; returns (id, credential).
fn issue(config: &Path, args: &[&str]) -> (String, String) {
    try_issue(config, args).unwrap()
}

/// A request opening a session, as MediaMTX sends it.
fn session(protocol: &str, id: &str, action: &str, path: &str, user: &str, pass: &str) -> Value {
    json!({
        "ip": "10.0.0.1", "user": user, "password": pass, "token": pass,
        "action": action, "path": path, "protocol": protocol, "id": id, "query": "",
    })
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits a little and checks that `id` is still live: what a test of "not kicked" can say.
async fn still_live_after_a_while(api: &FakeMediamtx, id: &str) -> bool {
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    api.is_live(id)
}

#[actix_web::test]
async fn a_revoked_credential_is_kicked_on_every_protocol() {
    let api = FakeMediamtx::start();
    let config = config("revoke.toml", &api, "");
    let server = start(&config, &api);
    let app = server.app();
    let (id, credential) = issue(
        &config,
        &["--name", "viewer", "--allow", "read", "--allow", "publish"],
    );
    let (_, kept) = issue(&config, &["--name", "other", "--allow", "read"]);
    // The protocol decides the kind; an RTSPS session is found under the TLS twin after the
    // plain kind answers 404; RTMPS likewise.
    let cases = [
        (
            "rtsp",
            "rtspsessions",
            "read",
            "0b6bbd0e-1111-4c1a-9d2a-000000000001",
        ),
        (
            "rtsp",
            "rtspssessions",
            "read",
            "0b6bbd0e-1111-4c1a-9d2a-000000000002",
        ),
        (
            "rtmp",
            "rtmpconns",
            "publish",
            "0b6bbd0e-1111-4c1a-9d2a-000000000003",
        ),
        (
            "rtmp",
            "rtmpsconns",
            "read",
            "0b6bbd0e-1111-4c1a-9d2a-000000000004",
        ),
        (
            "srt",
            "srtconns",
            "read",
            "0b6bbd0e-1111-4c1a-9d2a-000000000005",
        ),
        (
            "webrtc",
            "webrtcsessions",
            "read",
            "0b6bbd0e-1111-4c1a-9d2a-000000000006",
        ),
        (
            "hls",
            "hlssessions",
            "read",
            "0b6bbd0e-1111-4c1a-9d2a-000000000007",
        ),
    ];
    assert!(server.eventually(
        &session("rtsp", "", "read", "cam", "", &credential).to_string(),
        200
    ));
    for (protocol, kind, action, sid) in cases {
        api.add(kind, sid, "cam");
        let (status, reply) = app
            .auth(&session(protocol, sid, action, "cam", "", &credential))
            .await;
        assert_eq!(
            (status, &reply),
            (200, &json!({"user": "viewer"})),
            "{protocol}"
        );
    }
    let other = "0b6bbd0e-2222-4c1a-9d2a-000000000001";
    api.add("rtspsessions", other, "cam");
    assert_eq!(
        app.status(&session("rtsp", other, "read", "cam", "", &kept))
            .await,
        200
    );

    revoke(&config, &id);
    for (protocol, kind, _, sid) in cases {
        assert!(
            api.wait_kicked(sid, 10).await,
            "{protocol} {sid} not kicked: {}",
            server.logs()
        );
        assert!(
            api.kicked().contains(&(kind.to_owned(), sid.to_owned())),
            "{kind}"
        );
    }
    assert!(
        still_live_after_a_while(&api, other).await,
        "a session with access was kicked"
    );
    assert_eq!(
        api.refused(),
        0,
        "mtx-auth's own API calls are let in by its secret"
    );
    assert_eq!(
        api.kicks_not_found(),
        2,
        "the plain kinds of the RTSPS and RTMPS sessions"
    );
    assert_eq!(
        metric(
            &app,
            "mtx_auth_kicks_total{reason=\"credential_revoked\",result=\"kicked\"}"
        )
        .await,
        cases.len() as f64
    );
    // Each kick is logged without the credential or the session id.
    let logs = server.logs();
    assert!(
        logs.contains("reason=credential_revoked")
            || logs.contains("reason=\"credential_revoked\""),
        "{logs}"
    );
    assert!(!logs.contains(&credential["mtxa_".len()..]));
    let kick_lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("mtx_auth::kick"))
        .collect();
    assert_eq!(kick_lines.len(), cases.len(), "{logs}");
    assert!(
        kick_lines.iter().all(|l| !l.contains(cases[0].3)),
        "{kick_lines:?}"
    );
}

#[actix_web::test]
async fn an_expired_credential_and_a_jwt_at_exp_plus_leeway_are_kicked() {
    let key = TestKey::generate(KeyKind::Ed, "k1");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let api = FakeMediamtx::start();
    let config = config(
        "expiry.toml",
        &api,
        &format!(
            "[jwt]\njwks_url = \"{}\"\nleeway_secs = 1\n",
            idp.jwks_url()
        ),
    );
    let server = start(&config, &api);
    let app = server.app();
    app.wait_ready().await;
    let (_, brief) = issue(
        &config,
        &["--name", "brief", "--allow", "read", "--ttl", "3s"],
    );
    let (_, lasting) = issue(
        &config,
        &["--name", "lasting", "--allow", "read", "--ttl", "1h"],
    );
    let now = idp::now();
    let jwt = |sub: &str, exp: u64| {
        key.sign(&idp::keycloak_claims(
            &idp.issuer(),
            sub,
            json!({"exp": exp, "mediamtx_permissions": [{"action": "read"}]}),
        ))
    };
    let short_jwt = jwt("short", now + 3);
    let long_jwt = jwt("long", now + 3600);
    let ids = [
        "5e3e0d52-0000-0000-0000-00000000000a",
        "5e3e0d52-0000-0000-0000-00000000000b",
        "5e3e0d52-0000-0000-0000-00000000000c",
        "5e3e0d52-0000-0000-0000-00000000000d",
    ];
    for id in ids {
        api.add("webrtcsessions", id, "cam");
    }
    assert!(server.eventually(
        &session("rtsp", "", "read", "cam", "", &lasting).to_string(),
        200
    ));
    for (id, pass) in ids.iter().zip([&brief, &lasting, &short_jwt, &long_jwt]) {
        assert_eq!(
            app.status(&session("webrtc", id, "read", "cam", "", pass))
                .await,
            200
        );
    }
    assert!(
        api.wait_kicked(ids[0], 10).await,
        "credential expiry: {}",
        server.logs()
    );
    assert!(
        api.wait_kicked(ids[2], 10).await,
        "jwt exp + leeway: {}",
        server.logs()
    );
    // Kicked at the instant /auth starts denying: a reconnect is not let in again.
    assert_eq!(
        app.status(&session("webrtc", "r1", "read", "cam", "", &short_jwt))
            .await,
        401
    );
    assert_eq!(
        app.status(&session("webrtc", "r2", "read", "cam", "", &brief))
            .await,
        401
    );
    assert!(
        api.is_live(ids[1]) && api.is_live(ids[3]),
        "sessions with access were kicked"
    );
    assert_eq!(
        metric(
            &app,
            "mtx_auth_kicks_total{reason=\"jwt_expired\",result=\"kicked\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            &app,
            "mtx_auth_kicks_total{reason=\"credential_expired\",result=\"kicked\"}"
        )
        .await,
        1.0
    );
}

fn user(name: &str, pass: &str, perms: &str) -> String {
    format!("[[users]]\nuser = \"{name}\"\npass = \"{pass}\"\npermissions = [{perms}]\n\n")
}

#[actix_web::test]
async fn a_reload_kicks_the_sessions_of_changed_entries_and_nothing_else() {
    let api = FakeMediamtx::start();
    let read_cam = "{ action = \"read\", path = \"cam\" }";
    let read_any = "{ action = \"read\" }";
    let users = |alice_pass: &str, bob: &str, carol_ips: &str| {
        format!(
            "{}{bob}{}[[users]]\nuser = \"carol\"\npass = \"c\"\nips = [{carol_ips}]\npermissions = [{read_any}]\n\n",
            user("alice", alice_pass, read_cam),
            user("dave", "d", read_cam),
        )
    };
    let bob_v1 = user("bob", "b", read_cam);
    let config = config("reload.toml", &api, &users("a", &bob_v1, "\"10.0.0.0/8\""));
    let server = start(&config, &api);
    let app = server.app();
    let sessions = [
        ("alice", "a", "a1"),
        ("bob", "b", "b1"),
        ("carol", "c", "c1"),
        ("dave", "d", "d1"),
    ];
    for (name, pass, sid) in sessions {
        api.add("rtspsessions", sid, "cam");
        assert_eq!(
            app.status(&session("rtsp", sid, "read", "cam", name, pass))
                .await,
            200
        );
    }
    let base = std::fs::read_to_string(&config).unwrap();
    let reload = |text: String| {
        std::fs::write(&config, text).unwrap();
        server.sighup();
    };
    // alice's password changes; bob's entry moves below a new one and gains a permission (it
    // still grants his session); carol's ips still hold her address; dave is untouched.
    let bob_v2 = user(
        "bob",
        "b",
        &format!("{read_cam}, {{ action = \"publish\" }}"),
    );
    let changed = base.replace(
        &users("a", &bob_v1, "\"10.0.0.0/8\""),
        &(user("erin", "e", read_any) + &users("a2", &bob_v2, "\"10.0.0.1\"")),
    );
    assert_ne!(changed, base);
    reload(changed.clone());
    assert!(api.wait_kicked("a1", 10).await, "{}", server.logs());
    assert!(still_live_after_a_while(&api, "b1").await);
    assert!(api.is_live("c1") && api.is_live("d1"));
    // Now carol's entry no longer admits her address, and bob loses the path.
    let bob_v3 = user("bob", "b", "{ action = \"read\", path = \"garage\" }");
    let again = changed
        .replace(&bob_v2, &bob_v3)
        .replace("ips = [\"10.0.0.1\"]", "ips = [\"192.168.0.0/16\"]");
    assert_ne!(again, changed);
    reload(again);
    assert!(api.wait_kicked("b1", 10).await, "{}", server.logs());
    assert!(api.wait_kicked("c1", 10).await, "{}", server.logs());
    assert!(still_live_after_a_while(&api, "d1").await);
    assert_eq!(
        metric(
            &app,
            "mtx_auth_kicks_total{reason=\"user_changed\",result=\"kicked\"}"
        )
        .await,
        3.0
    );
}

#[actix_web::test]
async fn an_api_that_is_down_gets_the_kick_when_it_is_back_and_decisions_go_on() {
    let api = FakeMediamtx::start();
    let config = config("down.toml", &api, "");
    let server = start(&config, &api);
    let app = server.app();
    let (id, credential) = issue(&config, &["--name", "v", "--allow", "read"]);
    let (_, other) = issue(&config, &["--name", "w", "--allow", "read"]);
    assert!(server.eventually(
        &session("rtsp", "", "read", "cam", "", &other).to_string(),
        200
    ));
    api.add("hlssessions", "h1", "cam");
    assert_eq!(
        app.status(&session("hls", "h1", "read", "cam", "", &credential))
            .await,
        200
    );
    api.set_down(true);
    let calls_before = api.calls();
    revoke(&config, &id);
    // Retried while down; decisions unaffected meanwhile.
    for _ in 0..100 {
        if api.calls() > calls_before + 1 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(api.calls() > calls_before + 1, "the kick was not retried");
    assert_eq!(
        app.status(&session("hls", "h2", "read", "cam", "", &other))
            .await,
        200
    );
    assert_eq!(
        app.status(&session("hls", "h3", "read", "cam", "", &credential))
            .await,
        401
    );
    api.set_down(false);
    assert!(api.wait_kicked("h1", 10).await, "{}", server.logs());
}

#[actix_web::test]
async fn a_restarted_server_still_kicks_what_it_let_in() {
    let api = FakeMediamtx::start();
    let config = config("restart.toml", &api, "");
    let (id, credential) = issue(&config, &["--name", "v", "--allow", "read"]);
    let server = start(&config, &api);
    let app = server.app();
    api.add("srtconns", "s1", "cam");
    assert_eq!(
        app.status(&session("srt", "s1", "read", "cam", "", &credential))
            .await,
        200
    );
    // The registry is written behind, twice a second: wait until the store has the session.
    let db = config.parent().unwrap().join("mtx-auth.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let mut stored = 0;
    for _ in 0..500 {
        stored = sqlx::query_scalar::<_, i64>("SELECT count(*) FROM sessions WHERE id = 's1'")
            .fetch_one(&pool)
            .await
            .unwrap();
        if stored == 1 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stored, 1, "the session never reached the store");
    pool.close().await;
    // `explain` shows what the identity holds, from the store.
    let out = bin()
        .args(["explain", "--config"])
        .arg(&config)
        .arg(session("srt", "", "read", "cam", "", &credential).to_string())
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(out.contains("allow (200) user=\"v\""), "{out}");
    assert!(out.contains("decided by: credential"), "{out}");
    assert!(
        out.contains("live sessions of \"v\" (as the store has them): 1"),
        "{out}"
    );
    assert!(out.contains("srt read \"cam\" since 20"), "{out}");
    assert!(!out.contains("s1"), "no session id: {out}");
    let (code, _) = server.stop();
    assert_eq!(code, Some(0));
    let server = start(&config, &api);
    assert!(
        server
            .logs()
            .contains("1 live sessions read back from the store"),
        "{}",
        server.logs()
    );
    revoke(&config, &id);
    assert!(api.wait_kicked("s1", 10).await, "{}", server.logs());
}

#[actix_web::test]
async fn at_its_bound_the_registry_denies_rather_than_tracks_nothing() {
    let api = FakeMediamtx::start();
    let config = config(
        "bound.toml",
        &api,
        "[[users]]\nuser = \"v\"\npass = \"p\"\npermissions = [{ action = \"read\" }]\n",
    );
    std::fs::write(
        &config,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("[mediamtx]\n", "[mediamtx]\nmax_sessions = 2\n"),
    )
    .unwrap();
    let server = start(&config, &api);
    let app = server.app();
    assert_eq!(
        app.status(&session("rtsp", "s1", "read", "cam", "v", "p"))
            .await,
        200
    );
    assert_eq!(
        app.status(&session("rtsp", "s2", "read", "cam", "v", "p"))
            .await,
        200
    );
    // The same session again takes no new place.
    assert_eq!(
        app.status(&session("rtsp", "s2", "read", "cam", "v", "p"))
            .await,
        200
    );
    let (status, reply) = app
        .auth(&session("rtsp", "s3", "read", "cam", "v", "p"))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        reply["error"],
        "too many live sessions tracked; try again later"
    );
    // What carries no id is not a session, and is decided as before.
    assert_eq!(
        app.status(&session("rtsp", "", "read", "cam", "v", "p"))
            .await,
        200
    );
    assert_eq!(metric(&app, "mtx_auth_sessions_refused_total").await, 1.0);
    assert_eq!(metric(&app, "mtx_auth_sessions ").await, 2.0);
}

/// The secret the kick calls carry lets in `api` and nothing else; a call without it is
/// refused by mtx-auth as any other would be.
#[actix_web::test]
async fn the_api_secret_is_good_for_api_calls_only() {
    let api = FakeMediamtx::start();
    let config = config("secret.toml", &api, "");
    let server = start(&config, &api);
    let app = server.app();
    let db = config.parent().unwrap().join("mtx-auth.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    let secret: String =
        sqlx::query_scalar("SELECT value FROM secrets WHERE name = 'mediamtx_api'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(secret.len() >= 43, "at least 256 bits");
    let call = |action: &str, pass: &str| session("", "", action, "", "mtx-auth", pass);
    let (status, reply) = app.auth(&call("api", &secret)).await;
    assert_eq!((status, reply), (200, json!({"user": "mtx-auth"})));
    for action in ["read", "publish", "metrics", "pprof", "playback"] {
        assert_eq!(app.status(&call(action, &secret)).await, 401, "{action}");
    }
    let mut near = secret.clone();
    near.pop();
    assert_eq!(app.status(&call("api", &near)).await, 401);
    // The fake refuses a call that is not ours.
    let resp = reqwest::Client::new()
        .get(format!("{}/v3/rtspsessions/list", api.url))
        .basic_auth("mtx-auth", Some("guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!server.logs().contains(&secret));
}

/// Sessions that ended on their own are forgotten: the control API's lists say which are alive.
#[actix_web::test]
async fn sessions_that_ended_are_forgotten() {
    let api = FakeMediamtx::start();
    let config = config(
        "prune.toml",
        &api,
        "[[users]]\nuser = \"v\"\npass = \"p\"\npermissions = [{ action = \"read\" }]\n",
    );
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("[mediamtx]\n", "[mediamtx]\nprune_interval_secs = 1\n"),
    )
    .unwrap();
    let server = start(&config, &api);
    let app = server.app();
    for id in ["p1", "p2"] {
        api.add("rtmpconns", id, "cam");
        assert_eq!(
            app.status(&session("rtmp", id, "read", "cam", "v", "p"))
                .await,
            200
        );
    }
    assert_eq!(metric(&app, "mtx_auth_sessions ").await, 2.0);
    api.hang_up("p1");
    let mut tracked = 2.0;
    for _ in 0..250 {
        tracked = metric(&app, "mtx_auth_sessions ").await;
        if tracked < 2.0 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(40)).await;
    }
    assert_eq!(tracked, 1.0, "{}", server.logs());
    assert!(api.is_live("p2") && api.kicked().is_empty());
}

/// An account let in by its token is asked again once its cached answer runs out — with the
/// token, never the password — and its session is kicked when the media server no longer lets
/// it in. A session let in by a login is not asked again: that would replay the password.
#[actix_web::test]
async fn an_account_that_is_no_longer_let_in_is_kicked() {
    use crate::support::media::{FakeMediaServer, Flavor, UserSpec};
    let jellyfin = FakeMediaServer::start(
        Flavor::Jellyfin,
        vec![
            UserSpec::new("alice", "alice-pw"),
            UserSpec::new("bob", "bob-pw"),
        ],
    );
    jellyfin.add_token("tok-alice", "alice");
    jellyfin.add_token("tok-bob", "bob");
    let api = FakeMediamtx::start();
    let config = config(
        "account.toml",
        &api,
        &format!(
            "[jellyfin]\nurl = \"{}\"\ncache_ttl_secs = 1\n",
            jellyfin.url()
        ),
    );
    let server = start(&config, &api);
    let app = server.app();
    app.wait_ready().await;
    let opened = [
        ("j1", "", "tok-alice"),
        ("j2", "", "tok-bob"),
        ("j3", "alice", "alice-pw"),
    ];
    for (id, user, pass) in opened {
        api.add("rtspsessions", id, "cam");
        let (status, reply) = app
            .auth(&session("rtsp", id, "read", "cam", user, pass))
            .await;
        assert_eq!(status, 200, "{id}: {reply}");
    }
    let logins = jellyfin.login_hits();
    jellyfin.set_disabled("alice", true);
    assert!(api.wait_kicked("j1", 10).await, "{}", server.logs());
    assert!(
        still_live_after_a_while(&api, "j2").await,
        "bob still has access"
    );
    assert!(api.is_live("j3"), "a login's session is not checked again");
    assert_eq!(jellyfin.login_hits(), logins, "the password was sent again");
    assert_eq!(
        metric(
            &app,
            "mtx_auth_kicks_total{reason=\"account_ended\",result=\"kicked\"}"
        )
        .await,
        1.0
    );
}

/// The machine id of the Plex server in `plex_with_a_friend`.
const PLEX_SERVER: &str = "0123456789abcdef0123456789abcdef01234567";

/// plex.tv with a server "Home" of `owner`, shared with `friend`.
fn plex_with_a_friend() -> crate::support::media::FakePlex {
    let plex = crate::support::media::FakePlex::start();
    plex.add_account("owner", "owner-token-0000000000", None);
    plex.add_account("friend", "friend-token-000000000", None);
    plex.add_server("Home", PLEX_SERVER, "owner");
    plex.share(PLEX_SERVER, "friend");
    plex
}

/// The same for Plex: a friend the server is no longer shared with is kicked once the cached
/// answer runs out, whether the token came alone or as an RTSP password beside a user name.
#[actix_web::test]
async fn a_plex_friend_the_server_is_unshared_with_is_kicked() {
    let plex = plex_with_a_friend();
    let api = FakeMediamtx::start();
    let config = config(
        "plex.toml",
        &api,
        &format!(
            "[plex]\napi_url = \"{}\"\nserver = \"Home\"\ncache_ttl_secs = 1\n",
            plex.url()
        ),
    );
    let server = start(&config, &api);
    let app = server.app();
    app.wait_ready().await;
    for (protocol, id, user, token) in [
        ("hls", "x1", "", "friend-token-000000000"),
        ("rtsp", "x3", "friend", "friend-token-000000000"),
        ("hls", "x2", "", "owner-token-0000000000"),
    ] {
        api.add(mtx_auth::sessions::kinds_of(protocol)[0], id, "cam");
        let request = session(protocol, id, "read", "cam", user, token);
        assert_eq!(app.status(&request).await, 200, "{id}");
    }
    plex.unshare(PLEX_SERVER, "friend");
    assert!(api.wait_kicked("x1", 10).await, "{}", server.logs());
    assert!(api.wait_kicked("x3", 10).await, "{}", server.logs());
    assert!(
        still_live_after_a_while(&api, "x2").await,
        "the owner still has access"
    );
}

/// With an administrator's key (`api_key`), a session opened by a login is asked about again
/// too — by the account's id, with the key, never with the password — on Jellyfin and Emby.
#[actix_web::test]
async fn with_an_api_key_the_sessions_of_a_login_are_checked_again() {
    use crate::support::media::{FakeMediaServer, Flavor, UserSpec};
    for flavor in [Flavor::Jellyfin, Flavor::Emby] {
        let server_kind = match flavor {
            Flavor::Jellyfin => "jellyfin",
            Flavor::Emby => "emby",
        };
        let media = FakeMediaServer::start(
            flavor,
            vec![
                UserSpec::new("alice", "alice-pw"),
                UserSpec::new("bob", "bob-pw"),
            ],
        );
        media.add_api_key("admin-key-0123456789");
        let api = FakeMediamtx::start();
        let config = config(
            &format!("{server_kind}-key.toml"),
            &api,
            &format!(
                "[{server_kind}]\nurl = \"{}\"\ncache_ttl_secs = 1\napi_key = \"admin-key-0123456789\"\n",
                media.url()
            ),
        );
        let server = start(&config, &api);
        let app = server.app();
        app.wait_ready().await;
        for (id, user, pass) in [("l1", "alice", "alice-pw"), ("l2", "bob", "bob-pw")] {
            api.add("rtmpconns", id, "cam");
            let (status, reply) = app
                .auth(&session("rtmp", id, "read", "cam", user, pass))
                .await;
            assert_eq!(status, 200, "{server_kind} {id}: {reply}");
        }
        let logins = media.login_hits();
        media.set_disabled("alice", true);
        assert!(
            api.wait_kicked("l1", 10).await,
            "{server_kind}: {}",
            server.logs()
        );
        assert!(
            still_live_after_a_while(&api, "l2").await,
            "{server_kind}: bob still has access"
        );
        assert_eq!(
            media.login_hits(),
            logins,
            "{server_kind}: the password was sent again"
        );
    }
}
