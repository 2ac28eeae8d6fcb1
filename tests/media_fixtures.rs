//! Self-tests of the media-server fixtures (tests/support/media.rs): the fake Jellyfin, Emby and
//! plex.tv answer each route as the real servers do, keep their state (sessions, lockout,
//! disabled users, shares), and honour their modes, counters and stop/restart.

#[path = "support/media.rs"]
mod media;

use std::time::{Duration, Instant};

use media::{FakeMediaServer, FakePlex, Flavor, Mode, UserSpec, GARBAGE_BODY, JELLYFIN_ERROR_BODY};
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

struct Answer {
    status: u16,
    content_type: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

async fn send(request: reqwest::RequestBuilder) -> Answer {
    let resp = request.send().await.expect("the fake answers");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    Answer {
        status,
        content_type,
        body: resp.text().await.unwrap(),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// `MediaBrowser Client="mtx-auth", Device="mtx-auth", DeviceId="<device>", Version="0.1.0"`.
fn mb(device: &str) -> String {
    format!(
        r#"MediaBrowser Client="mtx-auth", Device="mtx-auth", DeviceId="{device}", Version="0.1.0""#
    )
}

fn mb_token(token: &str) -> String {
    format!(r#"MediaBrowser Token="{token}""#)
}

async fn login_with(
    server: &FakeMediaServer,
    path: &str,
    header: (&str, &str),
    user: &str,
    pw: &str,
) -> Answer {
    send(
        client()
            .post(format!("{}{path}", server.url()))
            .header(header.0, header.1)
            .json(&json!({"Username": user, "Pw": pw})),
    )
    .await
}

/// A Jellyfin login with the modern header and this DeviceId.
async fn jf_login(server: &FakeMediaServer, device: &str, user: &str, pw: &str) -> Answer {
    login_with(
        server,
        "/Users/AuthenticateByName",
        ("Authorization", &mb(device)),
        user,
        pw,
    )
    .await
}

async fn me(server: &FakeMediaServer, header: (&str, &str)) -> Answer {
    send(
        client()
            .get(format!("{}/Users/Me", server.url()))
            .header(header.0, header.1),
    )
    .await
}

fn jellyfin() -> FakeMediaServer {
    FakeMediaServer::start(
        Flavor::Jellyfin,
        vec![
            UserSpec::new("alice", "secret"),
            UserSpec::new("root", "toor").admin(),
            UserSpec::new("bob", "hunter2").no_remote_access(),
            UserSpec::new("carol", "pw").disabled(),
        ],
    )
}

fn is_hex32(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

// ---------------------------------------------------------------------------------------------
// Jellyfin
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn jellyfin_login_answers_an_authentication_result() {
    let jf = jellyfin();
    assert!(jf.url().starts_with("http://127.0.0.1:"));
    let a = jf_login(&jf, "dev-1", "ALICE", "secret").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let r = a.json();
    assert!(is_hex32(r["AccessToken"].as_str().unwrap()), "{r}");
    assert_eq!(r["ServerId"], jf.server_id());
    let user = &r["User"];
    assert_eq!(user["Name"], "alice", "the stored name, not the typed one");
    assert_eq!(user["Id"], jf.user_id("alice"));
    assert!(is_hex32(user["Id"].as_str().unwrap()));
    assert_eq!(user["ServerId"], jf.server_id());
    assert_eq!(user["HasPassword"], true);
    assert!(user["LastLoginDate"].as_str().unwrap().ends_with('Z'));
    let policy = &user["Policy"];
    for (k, v) in [
        ("IsAdministrator", false),
        ("IsDisabled", false),
        ("EnableRemoteAccess", true),
        ("EnableMediaPlayback", true),
        ("EnableLiveTvAccess", true),
    ] {
        assert_eq!(policy[k], v, "{k}");
    }
    assert_eq!(policy["LoginAttemptsBeforeLockout"], 3);
    let session = &r["SessionInfo"];
    assert_eq!(session["DeviceId"], "dev-1");
    assert_eq!(session["Client"], "mtx-auth");
    assert_eq!(session["UserId"], jf.user_id("alice"));

    let root = jf_login(&jf, "dev-1", "root", "toor").await.json();
    assert_eq!(root["User"]["Policy"]["IsAdministrator"], true);
    assert_eq!(root["User"]["Policy"]["LoginAttemptsBeforeLockout"], 5);
    let bob = jf_login(&jf, "dev-1", "bob", "hunter2").await.json();
    assert_eq!(
        bob["User"]["Policy"]["EnableRemoteAccess"], false,
        "local caller: allowed"
    );

    assert_eq!(jf.login_hits(), 3);
    assert_eq!(jf.device_ids(), vec!["dev-1", "dev-1", "dev-1"]);
    assert_eq!(jf.active_sessions(), 3);
    assert!(!jf.saw_legacy_headers());
}

#[actix_web::test]
async fn jellyfin_login_failures() {
    let jf = jellyfin();
    for (user, pw) in [
        ("alice", "wrong"),
        ("nobody", "secret"),
        ("alice", "SECRET"),
    ] {
        let a = jf_login(&jf, "dev-1", user, pw).await;
        assert_eq!(a.status, 401, "{user}/{pw}");
        assert_eq!(a.content_type, "text/plain");
        assert_eq!(a.body, JELLYFIN_ERROR_BODY);
    }
    // Every one of the four header fields is required: 400 before the password is looked at.
    let full = [
        ("Client", "mtx-auth"),
        ("Device", "mtx-auth"),
        ("DeviceId", "dev-1"),
        ("Version", "0.1.0"),
    ];
    for missing in 0..full.len() {
        let fields: Vec<String> = full
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != missing)
            .map(|(_, (k, v))| format!(r#"{k}="{v}""#))
            .collect();
        let header = format!("MediaBrowser {}", fields.join(", "));
        let a = login_with(
            &jf,
            "/Users/AuthenticateByName",
            ("Authorization", &header),
            "alice",
            "wrong",
        )
        .await;
        assert_eq!(a.status, 400, "without {}", full[missing].0);
        assert_eq!(a.body, JELLYFIN_ERROR_BODY);
    }
    let a = send(
        client()
            .post(format!("{}/Users/AuthenticateByName", jf.url()))
            .json(&json!({"Username": "alice", "Pw": "secret"})),
    )
    .await;
    assert_eq!(a.status, 400, "no header at all");
    let a = login_with(
        &jf,
        "/Users/AuthenticateByName",
        ("Authorization", &mb("d")),
        " ",
        "x",
    )
    .await;
    assert_eq!(a.status, 400, "blank user name");
    let a = send(
        client()
            .post(format!("{}/Users/AuthenticateByName", jf.url()))
            .header("Authorization", mb("d"))
            .header("content-type", "application/json")
            .body("not json"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(
        a.content_type.starts_with("application/problem+json"),
        "{}",
        a.content_type
    );

    assert_eq!(
        jf.invalid_attempts("alice"),
        2,
        "only the wrong passwords counted"
    );
    assert_eq!(jf.active_sessions(), 0);
    assert_eq!(jf.login_hits(), 10);
}

#[actix_web::test]
async fn jellyfin_lockout_disables_after_failed_logins() {
    let jf = jellyfin();
    // Users: 3 failures; a success in between resets the count.
    for _ in 0..2 {
        assert_eq!(jf_login(&jf, "d", "alice", "x").await.status, 401);
    }
    assert_eq!(jf_login(&jf, "d", "alice", "secret").await.status, 200);
    assert_eq!(jf.invalid_attempts("alice"), 0);
    for _ in 0..3 {
        assert_eq!(jf_login(&jf, "d", "alice", "x").await.status, 401);
    }
    assert!(jf.is_disabled("alice"));
    let a = jf_login(&jf, "d", "alice", "secret").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (403, JELLYFIN_ERROR_BODY),
        "locked out"
    );

    // Admins: 5.
    for _ in 0..4 {
        assert_eq!(jf_login(&jf, "d", "root", "x").await.status, 401);
    }
    assert!(!jf.is_disabled("root"));
    assert_eq!(jf_login(&jf, "d", "root", "x").await.status, 401);
    assert!(jf.is_disabled("root"));

    // Unlocking clears the count; None never locks; Some(1) locks at once.
    jf.set_disabled("alice", false);
    assert_eq!(jf.invalid_attempts("alice"), 0);
    jf.set_lockout(None);
    for _ in 0..10 {
        assert_eq!(jf_login(&jf, "d", "alice", "x").await.status, 401);
    }
    assert!(!jf.is_disabled("alice"));
    let me = jf_login(&jf, "d", "alice", "secret").await.json();
    assert_eq!(me["User"]["Policy"]["LoginAttemptsBeforeLockout"], -1);
    jf.set_lockout(Some(1));
    assert_eq!(jf_login(&jf, "d", "alice", "x").await.status, 401);
    assert!(jf.is_disabled("alice"));
    jf.set_documented_lockout();
    jf.set_disabled("alice", false);
    assert_eq!(
        jf_login(&jf, "d", "alice", "secret").await.json()["User"]["Policy"]
            ["LoginAttemptsBeforeLockout"],
        3
    );
}

#[actix_web::test]
async fn jellyfin_disabled_users_get_403_and_are_not_counted() {
    let jf = jellyfin();
    for pw in ["pw", "wrong"] {
        let a = jf_login(&jf, "d", "carol", pw).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (403, JELLYFIN_ERROR_BODY),
            "{pw}"
        );
    }
    assert_eq!(jf.invalid_attempts("carol"), 0);
    jf.set_disabled("carol", false);
    let token = jf_login(&jf, "d", "carol", "pw").await.json()["AccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(&token))).await.status,
        200
    );
    // A disabled user's token no longer authenticates.
    jf.set_disabled("carol", true);
    let a = me(&jf, ("Authorization", &mb_token(&token))).await;
    assert_eq!((a.status, a.body.as_str()), (401, ""));
}

#[actix_web::test]
async fn jellyfin_users_me() {
    let jf = jellyfin();
    let login = jf_login(&jf, "d", "alice", "secret").await.json();
    let token = login["AccessToken"].as_str().unwrap();
    let a = me(&jf, ("Authorization", &mb_token(token))).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    assert_eq!(a.json(), login["User"]);
    // The full header with the token works too, and so does ?ApiKey=.
    let full = format!(r#"{}, Token="{token}""#, mb("d"));
    assert_eq!(me(&jf, ("Authorization", &full)).await.status, 200);
    let a = send(client().get(format!("{}/Users/Me?ApiKey={token}", jf.url()))).await;
    assert_eq!(a.status, 200);

    for header in [
        mb_token("0123456789abcdef0123456789abcdef"),
        mb("d"),
        "Bearer x".into(),
    ] {
        let a = me(&jf, ("Authorization", &header)).await;
        assert_eq!((a.status, a.body.as_str()), (401, ""), "{header}");
    }
    assert_eq!(
        send(client().get(format!("{}/Users/Me", jf.url())))
            .await
            .status,
        401
    );

    jf.add_api_key("apikey0123");
    let a = me(&jf, ("Authorization", &mb_token("apikey0123"))).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    assert_eq!(a.json()["title"], "Bad Request");

    jf.add_token("elsewhere", "Bob");
    let a = me(&jf, ("Authorization", &mb_token("elsewhere"))).await;
    assert_eq!(a.json()["Name"], "bob");
    assert_eq!(
        jf.active_sessions(),
        1,
        "add_token is not one of our sessions"
    );
    assert_eq!(jf.tokens_of("bob"), vec!["elsewhere"]);

    // /Users/{id}: any valid token or API key; unknown id 404.
    let bob = jf.user_id("bob");
    let a = send(
        client()
            .get(format!("{}/Users/{bob}", jf.url()))
            .header("Authorization", mb_token("apikey0123")),
    )
    .await;
    assert_eq!((a.status, a.json()["Name"].clone()), (200, json!("bob")));
    let a = send(
        client()
            .get(format!("{}/Users/{}", jf.url(), "f".repeat(32)))
            .header("Authorization", mb_token(token)),
    )
    .await;
    assert_eq!(a.status, 404);
    assert_eq!(jf.token_hits(), 11);
}

#[actix_web::test]
async fn jellyfin_ignores_legacy_headers() {
    let jf = jellyfin();
    let auth = mb("d").replacen("MediaBrowser", "Emby", 1);
    let a = login_with(
        &jf,
        "/Users/AuthenticateByName",
        ("X-Emby-Authorization", &auth),
        "alice",
        "secret",
    )
    .await;
    assert_eq!(a.status, 400, "as anonymous: no client fields");
    assert!(jf.saw_legacy_headers());
    let a = login_with(
        &jf,
        "/Users/AuthenticateByName",
        ("Authorization", &auth),
        "alice",
        "secret",
    )
    .await;
    assert_eq!(a.status, 400, "the Emby scheme is legacy too");

    let token = jf_login(&jf, "d", "alice", "secret").await.json()["AccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    for header in ["X-Emby-Token", "X-MediaBrowser-Token"] {
        assert_eq!(me(&jf, (header, &token)).await.status, 401, "{header}");
    }
    assert_eq!(
        me(&jf, ("X-Emby-Authorization", &mb_token(&token)))
            .await
            .status,
        401
    );
    assert_eq!(
        me(&jf, ("Authorization", &format!(r#"Emby Token="{token}""#)))
            .await
            .status,
        401
    );
    let a = send(client().get(format!("{}/Users/Me?api_key={token}", jf.url()))).await;
    assert_eq!(a.status, 401);
    let a = send(
        client()
            .post(format!("{}/Sessions/Logout", jf.url()))
            .header("X-Emby-Token", &token),
    )
    .await;
    assert_eq!(a.status, 401);
    assert_eq!(jf.active_sessions(), 1, "the legacy logout did nothing");

    // Jellyfin 10.8–10.11 (legacy authorization on) accepts them.
    jf.set_legacy_authorization(true);
    assert_eq!(me(&jf, ("X-Emby-Token", &token)).await.status, 200);
    let a = login_with(
        &jf,
        "/Users/AuthenticateByName",
        ("X-Emby-Authorization", &auth),
        "alice",
        "secret",
    )
    .await;
    assert_eq!(a.status, 200);
}

#[actix_web::test]
async fn jellyfin_sessions_and_logout() {
    let jf = jellyfin();
    let first = jf_login(&jf, "ours", "alice", "secret").await.json()["AccessToken"].clone();
    let second = jf_login(&jf, "ours", "alice", "secret").await.json()["AccessToken"].clone();
    assert_ne!(first, second, "a fresh token each time");
    assert_eq!(jf.active_sessions(), 1, "same DeviceId and user: replaced");
    let (first, second) = (first.as_str().unwrap(), second.as_str().unwrap());
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(first))).await.status,
        401
    );
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(second))).await.status,
        200
    );
    let other = jf_login(&jf, "theirs", "alice", "secret").await.json()["AccessToken"].clone();
    jf_login(&jf, "ours", "root", "toor").await;
    assert_eq!(jf.active_sessions(), 3, "another device, another user");
    assert_eq!(jf.device_ids(), vec!["ours", "ours", "theirs", "ours"]);

    let logout = |token: String| {
        send(
            client()
                .post(format!("{}/Sessions/Logout", jf.url()))
                .header("Authorization", mb_token(&token)),
        )
    };
    let a = logout(second.to_string()).await;
    assert_eq!((a.status, a.body.as_str()), (204, ""));
    assert!(jf.wait_for_logouts(1, Duration::from_secs(1)).await);
    assert_eq!(jf.active_sessions(), 2);
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(second))).await.status,
        401
    );
    assert_eq!(logout(second.to_string()).await.status, 401, "already gone");
    assert_eq!(logout("nope".into()).await.status, 401);
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(other.as_str().unwrap())))
            .await
            .status,
        200
    );
    assert_eq!((jf.logout_hits(), jf.logouts()), (3, 1));
    assert!(!jf.wait_for_logouts(2, Duration::from_millis(50)).await);
}

#[actix_web::test]
async fn jellyfin_remote_access_is_judged_on_the_caller() {
    let jf = jellyfin();
    let token = jf_login(&jf, "d", "bob", "hunter2").await.json()["AccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    jf.set_remote_caller(true);
    let a = jf_login(&jf, "d", "bob", "hunter2").await;
    assert_eq!((a.status, a.body.as_str()), (403, JELLYFIN_ERROR_BODY));
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(&token))).await.status,
        403
    );
    assert_eq!(jf_login(&jf, "d", "alice", "secret").await.status, 200);
    jf.set_remote_access("bob", true);
    assert_eq!(jf_login(&jf, "d", "bob", "hunter2").await.status, 200);
}

#[actix_web::test]
async fn jellyfin_public_system_info() {
    let jf = jellyfin();
    let a = send(client().get(format!("{}/System/Info/Public", jf.url()))).await;
    assert_eq!(a.status, 200);
    let info = a.json();
    assert_eq!(info["Id"], jf.server_id());
    assert_eq!(info["ProductName"], "Jellyfin Server");
    assert_eq!(info["Version"], "12.0.0");
    assert_eq!(info["LocalAddress"], jf.url());
    assert_eq!(info["StartupWizardCompleted"], true);
    assert!(info["ServerName"].is_string());
    jf.set_version("10.11.5");
    // set_mode leaves it alone; set_info_mode does not.
    jf.set_mode(Mode::Status(503));
    let a = send(client().get(format!("{}/system/info/public", jf.url()))).await;
    assert_eq!(
        (a.status, a.json()["Version"].clone()),
        (200, json!("10.11.5"))
    );
    jf.set_info_mode(Mode::Status(502));
    assert_eq!(
        send(client().get(format!("{}/System/Info/Public", jf.url())))
            .await
            .status,
        502
    );
    assert_eq!(jf.info_hits(), 3);
    assert_eq!(
        send(client().get(format!("{}/emby/System/Info/Public", jf.url())))
            .await
            .status,
        502
    );
    assert_eq!(
        send(client().get(format!("{}/nope", jf.url())))
            .await
            .status,
        404
    );
}

#[actix_web::test]
async fn media_server_modes() {
    let jf = jellyfin();
    jf.add_api_key("key");
    let login = || jf_login(&jf, "d", "alice", "secret");

    jf.set_mode(Mode::Status(500));
    let a = login().await;
    assert_eq!((a.status, a.content_type.as_str()), (500, "text/plain"));
    assert_eq!(
        me(&jf, ("Authorization", &mb_token("key"))).await.status,
        500
    );
    jf.set_mode(Mode::Status(502));
    assert_eq!(login().await.status, 502);

    jf.set_mode(Mode::Garbage);
    let a = login().await;
    assert_eq!(
        (a.status, a.content_type.as_str(), a.body.as_str()),
        (200, "application/json; charset=utf-8", GARBAGE_BODY)
    );
    assert!(serde_json::from_str::<Value>(&a.body).is_err());

    jf.set_mode(Mode::WrongShape);
    assert_eq!(login().await.json(), json!({"User": 5}));
    assert_eq!(
        me(&jf, ("Authorization", &mb_token("nope"))).await.json(),
        json!({"User": 5})
    );

    jf.set_mode(Mode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let a = login().await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(a.status, 200);
    let err = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .post(format!("{}/Users/AuthenticateByName", jf.url()))
        .header("Authorization", mb("d"))
        .json(&json!({"Username": "alice", "Pw": "secret"}))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");

    jf.set_mode(Mode::Normal);
    assert_eq!(login().await.status, 200);
    // Every request counted, whatever the mode.
    assert_eq!((jf.login_hits(), jf.token_hits()), (7, 2));
    jf.reset_hits();
    assert_eq!(
        (
            jf.login_hits(),
            jf.token_hits(),
            jf.logout_hits(),
            jf.info_hits()
        ),
        (0, 0, 0, 0)
    );
}

#[actix_web::test]
async fn media_server_stop_and_restart() {
    let err = reqwest::get(format!(
        "{}/System/Info/Public",
        FakeMediaServer::unused_url()
    ))
    .await
    .unwrap_err();
    assert!(err.is_connect(), "{err}");

    let jf = jellyfin();
    let token = jf_login(&jf, "d", "alice", "secret").await.json()["AccessToken"]
        .as_str()
        .unwrap()
        .to_string();
    jf.stop().await;
    let err = client()
        .get(format!("{}/Users/Me", jf.url()))
        .header("Authorization", mb_token(&token))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    jf.restart();
    assert_eq!(
        me(&jf, ("Authorization", &mb_token(&token))).await.status,
        200,
        "same state"
    );
    assert_eq!(jf.login_hits(), 1);
}

// ---------------------------------------------------------------------------------------------
// Emby
// ---------------------------------------------------------------------------------------------

fn emby() -> FakeMediaServer {
    FakeMediaServer::start(
        Flavor::Emby,
        vec![
            UserSpec::new("alice", "secret"),
            UserSpec::new("root", "toor").admin(),
            UserSpec::new("carol", "pw").disabled(),
        ],
    )
}

fn emby_auth(device: &str) -> String {
    format!(
        r#"Emby UserId="", Client="mtx-auth", Device="mtx-auth", DeviceId="{device}", Version="0.1.0""#
    )
}

#[actix_web::test]
async fn emby_login_and_token_check() {
    let emby = emby();
    let a = login_with(
        &emby,
        "/emby/Users/AuthenticateByName",
        ("X-Emby-Authorization", &emby_auth("d1")),
        "Alice",
        "secret",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let r = a.json();
    let token = r["AccessToken"].as_str().unwrap().to_string();
    let id = emby.user_id("alice");
    assert_eq!(r["User"]["Id"], id);
    assert_eq!(r["User"]["Policy"]["IsAdministrator"], false);
    assert_eq!(r["User"]["Policy"]["IsDisabled"], false);
    assert_eq!(r["ServerId"], emby.server_id());
    // Also without /emby, with the Authorization header, and with no device fields at all.
    let a = login_with(
        &emby,
        "/Users/AuthenticateByName",
        ("Authorization", &mb("d2")),
        "root",
        "toor",
    )
    .await;
    assert_eq!(a.json()["User"]["Policy"]["IsAdministrator"], true);
    let a = login_with(
        &emby,
        "/Users/AuthenticateByName",
        ("X-Emby-Authorization", "Emby Client=\"x\""),
        "alice",
        "secret",
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(emby.device_ids(), vec!["d1", "d2"]);

    // Token check: GET /Users/{id} with X-Emby-Token (header or query). No /Users/Me on Emby.
    let get = |path: String, token: &str| {
        send(
            client()
                .get(format!("{}{path}", emby.url()))
                .header("X-Emby-Token", token),
        )
    };
    let a = get(format!("/emby/Users/{id}"), &token).await;
    assert_eq!((a.status, a.json()["Name"].clone()), (200, json!("alice")));
    assert_eq!(get(format!("/Users/{id}"), &token).await.status, 200);
    let a = send(client().get(format!(
        "{}/emby/Users/{id}?X-Emby-Token={token}",
        emby.url()
    )))
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(get(format!("/Users/{id}"), "bad").await.status, 401);
    assert_eq!(get("/Users/Me".into(), &token).await.status, 404);
    assert_eq!(emby.token_hits(), 5);

    // Wrong password and disabled: 401 (Emby answers a SecurityException with 401).
    let auth = emby_auth("d1");
    assert_eq!(
        login_with(
            &emby,
            "/Users/AuthenticateByName",
            ("X-Emby-Authorization", &auth),
            "alice",
            "x"
        )
        .await
        .status,
        401
    );
    assert_eq!(
        login_with(
            &emby,
            "/Users/AuthenticateByName",
            ("X-Emby-Authorization", &auth),
            "carol",
            "pw"
        )
        .await
        .status,
        401
    );
    emby.set_disabled("alice", true);
    assert_eq!(get(format!("/Users/{id}"), &token).await.status, 401);
    emby.set_disabled("alice", false);

    // No lockout by default.
    for _ in 0..6 {
        login_with(
            &emby,
            "/Users/AuthenticateByName",
            ("X-Emby-Authorization", &auth),
            "alice",
            "x",
        )
        .await;
    }
    assert!(!emby.is_disabled("alice"));

    // Logout with X-Emby-Token: 204, and the token is gone.
    let a = send(
        client()
            .post(format!("{}/emby/Sessions/Logout", emby.url()))
            .header("X-Emby-Token", &token),
    )
    .await;
    assert_eq!(a.status, 204);
    assert_eq!(get(format!("/Users/{id}"), &token).await.status, 401);
    assert_eq!((emby.logouts(), emby.active_sessions()), (1, 2));
    let info = send(client().get(format!("{}/emby/System/Info/Public", emby.url())))
        .await
        .json();
    assert_eq!(info["Id"], emby.server_id());
}

// ---------------------------------------------------------------------------------------------
// plex.tv
// ---------------------------------------------------------------------------------------------

fn plex_get(plex: &FakePlex, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let mut req = client()
        .get(format!("{}{path}", plex.url()))
        .header("X-Plex-Client-Identifier", "mtx-auth-test")
        .header("X-Plex-Product", "mtx-auth")
        .header("X-Plex-Version", "0.1.0")
        .header("Accept", "application/json");
    if let Some(token) = token {
        req = req.header("X-Plex-Token", token);
    }
    req
}

fn signin(plex: &FakePlex, form: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    client()
        .post(format!("{}/api/v2/users/signin", plex.url()))
        .header("X-Plex-Client-Identifier", "mtx-auth-test")
        .header("Accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
}

#[actix_web::test]
async fn plex_user() {
    let plex = FakePlex::start();
    let alice = plex.add_account("alice", "tok-alice", None);
    let a = send(plex_get(&plex, "/api/v2/user", Some("tok-alice"))).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.content_type, "application/json; charset=utf-8");
    let u = a.json();
    assert_eq!(u["id"], alice.id);
    assert_eq!(u["uuid"], alice.uuid);
    assert_eq!(alice.uuid.len(), 16);
    assert_eq!(u["username"], "alice");
    assert_eq!(u["title"], "alice");
    assert_eq!(u["email"], "alice@example.com");
    assert_eq!(u["authToken"], "tok-alice");

    let a = send(plex_get(&plex, "/api/v2/user", Some("bad"))).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.json(),
        json!({"errors": [{"code": 1001, "message": "User could not be authenticated", "status": 401}]})
    );
    assert_eq!(
        send(plex_get(&plex, "/api/v2/user", None)).await.status,
        401
    );
    let a = send(
        client()
            .get(format!(
                "{}/api/v2/user?X-Plex-Token=tok-alice&X-Plex-Client-Identifier=q",
                plex.url()
            ))
            .header("Accept", "application/json"),
    )
    .await;
    assert_eq!(a.status, 200, "token and client id as query parameters");

    // XML without Accept: application/json.
    let a = send(
        client()
            .get(format!("{}/api/v2/user", plex.url()))
            .header("X-Plex-Client-Identifier", "c")
            .header("X-Plex-Token", "tok-alice"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(
        a.content_type.starts_with("application/xml"),
        "{}",
        a.content_type
    );
    assert!(
        a.body.contains("<user ") && a.body.contains(r#"username="alice""#),
        "{}",
        a.body
    );

    assert!(!plex.saw_missing_client_identifier());
    let a = send(
        client()
            .get(format!("{}/api/v2/user", plex.url()))
            .header("X-Plex-Token", "tok-alice")
            .header("Accept", "application/json"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["errors"][0],
        json!({"code": 1000, "message": "X-Plex-Client-Identifier is missing", "status": 400})
    );
    assert!(plex.saw_missing_client_identifier());
    plex.set_require_client_identifier(false);
    let a = send(
        client()
            .get(format!("{}/api/v2/user", plex.url()))
            .header("X-Plex-Token", "tok-alice")
            .header("Accept", "application/json"),
    )
    .await;
    assert_eq!(a.status, 200);
    assert_eq!(plex.user_hits(), 7);
}

#[actix_web::test]
async fn plex_resources_owned_and_shared() {
    let plex = FakePlex::start();
    let owner = plex.add_account("owner", "tok-owner", None);
    plex.add_account("friend", "tok-friend", None);
    plex.add_account("stranger", "tok-stranger", None);
    plex.add_player("Chrome", "player-1", "friend");
    plex.add_server("Home", "machine-1", "owner");
    plex.share("machine-1", "friend");
    let path = "/api/v2/resources?includeHttps=1&includeRelay=1";

    let mine = send(plex_get(&plex, path, Some("tok-owner"))).await.json();
    let mine = mine.as_array().unwrap();
    assert_eq!(mine.len(), 1);
    let server = &mine[0];
    assert_eq!(server["name"], "Home");
    assert_eq!(server["product"], "Plex Media Server");
    assert_eq!(server["provides"], "server");
    assert_eq!(server["clientIdentifier"], "machine-1");
    assert_eq!(server["owned"], true);
    assert_eq!(server["accessToken"], "tok-owner");
    assert!(server["ownerId"].is_null());
    assert!(server["productVersion"].is_string());
    let connections = server["connections"].as_array().unwrap();
    assert_eq!(connections.len(), 3, "local, remote, relay");
    assert!(connections[0]["uri"]
        .as_str()
        .unwrap()
        .starts_with("https://192-168-1-"));
    assert!(connections[0]["uri"]
        .as_str()
        .unwrap()
        .contains(".machine-1.plex.direct:32400"));
    assert_eq!(connections[0]["local"], true);
    assert_eq!(connections[2]["relay"], true);

    let theirs = send(plex_get(&plex, path, Some("tok-friend"))).await.json();
    let theirs = theirs.as_array().unwrap();
    assert_eq!(theirs.len(), 2);
    assert_eq!(theirs[0]["provides"], "client,player");
    assert_eq!(theirs[0]["owned"], true);
    let shared = &theirs[1];
    assert_eq!(shared["clientIdentifier"], "machine-1");
    assert_eq!(shared["owned"], false);
    assert_eq!(shared["ownerId"], owner.id);
    assert_eq!(shared["sourceTitle"], "owner");
    let share_token = shared["accessToken"].as_str().unwrap();
    assert!(share_token != "tok-friend" && share_token != "tok-owner");

    assert_eq!(
        send(plex_get(&plex, path, Some("tok-stranger")))
            .await
            .json(),
        json!([])
    );
    let plain = send(plex_get(&plex, "/api/v2/resources", Some("tok-owner")))
        .await
        .json();
    let plain = plain[0]["connections"].as_array().unwrap().clone();
    assert_eq!(plain.len(), 2, "no relay");
    assert!(plain[0]["uri"]
        .as_str()
        .unwrap()
        .starts_with("http://192.168.1."));

    plex.unshare("machine-1", "friend");
    assert_eq!(
        send(plex_get(&plex, path, Some("tok-friend")))
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(send(plex_get(&plex, path, Some("bad"))).await.status, 401);
    let xml = send(
        client()
            .get(format!("{}{path}", plex.url()))
            .header("X-Plex-Client-Identifier", "c")
            .header("X-Plex-Token", "tok-owner"),
    )
    .await;
    assert!(xml.body.contains(r#"<resources size="1">"#), "{}", xml.body);
    assert_eq!(plex.resources_hits(), 7);
}

#[actix_web::test]
async fn plex_signin() {
    let plex = FakePlex::start();
    let alice = plex.add_account("alice", "tok-alice", Some("secret"));
    plex.add_account("tokenonly", "tok-2", None);
    let a = send(signin(&plex, &[("login", "alice"), ("password", "secret")])).await;
    assert_eq!(a.status, 201);
    let u = a.json();
    assert_eq!(u["authToken"], "tok-alice");
    assert_eq!(u["username"], "alice");
    assert_eq!(u["id"], alice.id);
    assert_eq!(
        send(signin(
            &plex,
            &[("login", "ALICE@example.com"), ("password", "secret")]
        ))
        .await
        .status,
        201,
        "the e-mail address works as login"
    );
    for form in [
        vec![("login", "alice"), ("password", "wrong")],
        vec![("login", "nobody"), ("password", "secret")],
        vec![("login", "tokenonly"), ("password", "")],
        vec![],
    ] {
        let a = send(signin(&plex, &form)).await;
        assert_eq!(a.status, 401, "{form:?}");
        assert_eq!(a.json()["errors"][0]["code"], 1001);
    }
    plex.set_two_factor("alice", Some("123456"));
    let a = send(signin(&plex, &[("login", "alice"), ("password", "secret")])).await;
    assert_eq!(
        (a.status, a.json()["errors"][0]["code"].clone()),
        (401, json!(1029))
    );
    let form = [
        ("login", "alice"),
        ("password", "secret"),
        ("verificationCode", "000000"),
    ];
    assert_eq!(send(signin(&plex, &form)).await.status, 401);
    let form = [
        ("login", "alice"),
        ("password", "secret"),
        ("verificationCode", "123456"),
    ];
    let a = send(signin(&plex, &form)).await;
    assert_eq!(
        (a.status, a.json()["twoFactorEnabled"].clone()),
        (201, json!(true))
    );
    assert_eq!(plex.signin_hits(), 9);
}

#[actix_web::test]
async fn plex_modes_counters_and_restart() {
    let plex = FakePlex::start();
    plex.add_account("alice", "tok", Some("pw"));
    plex.set_mode(Mode::Status(503));
    assert_eq!(
        send(plex_get(&plex, "/api/v2/user", Some("tok")))
            .await
            .status,
        503
    );
    plex.set_mode(Mode::Garbage);
    let a = send(plex_get(&plex, "/api/v2/resources", Some("tok"))).await;
    assert_eq!((a.status, a.body.as_str()), (200, GARBAGE_BODY));
    plex.set_mode(Mode::WrongShape);
    assert_eq!(
        send(plex_get(&plex, "/api/v2/user", Some("tok")))
            .await
            .json(),
        json!({"username": 5})
    );
    assert_eq!(
        send(plex_get(&plex, "/api/v2/resources", Some("tok")))
            .await
            .json(),
        json!({"resources": 5})
    );
    assert_eq!(
        send(signin(&plex, &[("login", "alice"), ("password", "pw")]))
            .await
            .json(),
        json!({"authToken": 5})
    );
    plex.set_mode(Mode::Slow(Duration::from_millis(200)));
    let started = Instant::now();
    assert_eq!(
        send(plex_get(&plex, "/api/v2/user", Some("tok")))
            .await
            .status,
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    plex.set_mode(Mode::Normal);
    assert_eq!(
        (plex.user_hits(), plex.resources_hits(), plex.signin_hits()),
        (3, 2, 1)
    );
    assert!(plex.wait_for_user_hits(3, Duration::from_millis(10)).await);
    plex.reset_hits();
    assert_eq!(
        (plex.user_hits(), plex.resources_hits(), plex.signin_hits()),
        (0, 0, 0)
    );
    assert_eq!(
        send(plex_get(&plex, "/api/v2/nope", Some("tok")))
            .await
            .status,
        404
    );

    plex.stop().await;
    let err = plex_get(&plex, "/api/v2/user", Some("tok"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    plex.restart();
    assert_eq!(
        send(plex_get(&plex, "/api/v2/user", Some("tok")))
            .await
            .status,
        200
    );
    assert_eq!(plex.user_hits(), 1);
    let err = reqwest::get(format!("{}/api/v2/user", FakePlex::unused_url()))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
}
