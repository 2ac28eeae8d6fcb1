//! Brute-force limits through HTTP: a client address (or user name) that failed too often is
//! turned away before anything is checked, while everyone else carries on.

use crate::support::idp::{self, FakeIdp, KeyKind, TestKey};
use crate::support::media::{self, FakeMediaServer, Flavor, UserSpec};
use crate::support::{self, mtx_request, spawn};

const USERS: &str = "[[users]]\nuser = \"alice\"\npass = \"right\"\npermissions = [{ action = \"read\" }]\n\n\
                     [[users]]\nuser = \"any\"\npermissions = [{ action = \"read\", path = \"public\" }]\n";

fn read(ip: &str, user: &str, pass: &str) -> serde_json::Value {
    mtx_request("read", "cam", ip, user, pass)
}

#[actix_web::test]
async fn an_address_that_failed_too_often_is_turned_away() {
    let app = spawn(&format!("[server]\nmax_failures_per_ip = 3\n\n{USERS}"));
    for guess in ["a", "b", "c"] {
        assert_eq!(app.status(&read("203.0.113.7", "alice", guess)).await, 401);
    }
    let (status, body) = app.auth(&read("203.0.113.7", "alice", "right")).await;
    assert_eq!(
        status, 401,
        "even the right password, for the rest of the window"
    );
    assert_eq!(body["error"], "too many failed attempts; try again later");
    // Other addresses are not affected; nor are requests without credentials.
    assert_eq!(
        app.status(&read("203.0.113.8", "alice", "right")).await,
        200
    );
    assert_eq!(
        app.status(&mtx_request("read", "public", "203.0.113.7", "", ""))
            .await,
        200
    );
    // A denial that isn't a failed guess is not counted: no credentials.
    for _ in 0..5 {
        assert_eq!(app.status(&read("198.51.100.1", "", "")).await, 401);
    }
    assert_eq!(
        app.status(&read("198.51.100.1", "alice", "right")).await,
        200
    );
}

#[actix_web::test]
async fn the_default_limit_lets_a_household_retry() {
    let app = spawn(USERS);
    for i in 0..19 {
        assert_eq!(
            app.status(&read("192.0.2.1", "alice", &format!("w{i}")))
                .await,
            401
        );
    }
    assert_eq!(app.status(&read("192.0.2.1", "alice", "right")).await, 200);
    assert_eq!(app.status(&read("192.0.2.1", "alice", "w19")).await, 401);
    assert_eq!(
        app.status(&read("192.0.2.1", "alice", "right")).await,
        401,
        "20 failures"
    );
}

#[actix_web::test]
async fn per_user_limit_across_addresses() {
    let app = spawn(&format!("[server]\nmax_failures_per_user = 2\n\n{USERS}"));
    assert_eq!(app.status(&read("10.0.0.1", "alice", "x")).await, 401);
    assert_eq!(app.status(&read("10.0.0.2", "alice", "y")).await, 401);
    assert_eq!(app.status(&read("10.0.0.3", "alice", "right")).await, 401);
    assert_eq!(app.status(&read("10.0.0.3", "bob", "right")).await, 401);
}

#[actix_web::test]
async fn a_limited_address_never_reaches_the_media_server() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("carol", "pw")]);
    jf.set_lockout(None);
    let app = spawn(&format!(
        "[server]\nmax_failures_per_ip = 2\n\n[jellyfin]\nurl = \"{}\"\nmax_failures = 100\n",
        jf.url()
    ));
    app.wait_ready().await;
    for guess in ["g1", "g2"] {
        assert_eq!(app.status(&read("203.0.113.9", "carol", guess)).await, 401);
    }
    assert_eq!(jf.login_hits(), 2);
    for guess in ["g3", "g4", "pw"] {
        assert_eq!(app.status(&read("203.0.113.9", "carol", guess)).await, 401);
    }
    assert_eq!(jf.login_hits(), 2, "no login for a limited address");
    assert_eq!(app.status(&read("203.0.113.10", "carol", "pw")).await, 200);
}

// ---- Races and bypasses found by an attacker's test (issue 15), through the real binary ----

/// POSTs `body` to the binary's /auth from its own task; returns the status and the reason.
async fn post(app: &support::TestApp, body: serde_json::Value) -> (u16, String) {
    let (status, reply) = app.auth(&body).await;
    (status, reply["error"].as_str().unwrap_or("").to_owned())
}

/// Sends every body at once (one task each) and returns the answers.
async fn all_at_once(app: &support::TestApp, bodies: Vec<serde_json::Value>) -> Vec<(u16, String)> {
    let tasks: Vec<_> = bodies
        .into_iter()
        .map(|body| {
            let app = support::TestApp {
                base: app.base.clone(),
                client: app.client.clone(),
            };
            actix_web::rt::spawn(async move { post(&app, body).await })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    answers
}

const LIMITED: &str = "too many failed attempts; try again later";

#[actix_web::test]
async fn concurrent_guesses_never_lock_the_media_server_account() {
    // Jellyfin locks an account at its third failed login; we allow two per name. Six guesses
    // for alice at once, from six addresses, while Jellyfin takes its time to answer: before,
    // all six reached Jellyfin (the count was read before the call and written after it).
    let jf = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("alice", "right")]);
    let path = support::temp_config(
        "jf.toml",
        &format!(
            "[jellyfin]\nurl = \"{}\"\npermissions = [{{ action = \"read\" }}]\n",
            jf.url()
        ),
    );
    let server = support::Binary::start(&path);
    let app = server.app();
    app.wait_ready().await;
    jf.set_mode(media::Mode::Slow(std::time::Duration::from_millis(400)));
    jf.reset_hits();
    let guesses = (0..6)
        .map(|i| {
            read(
                &format!("198.51.100.{}", 10 + i),
                "alice",
                &format!("guess{i}"),
            )
        })
        .collect();
    let answers = all_at_once(&app, guesses).await;
    assert!(answers.iter().all(|(s, _)| *s == 401), "{answers:?}");
    assert_eq!(
        jf.login_hits(),
        2,
        "only the per-name limit's two logins reach Jellyfin"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|(_, e)| e.contains("too many failed logins"))
            .count(),
        4,
        "{answers:?}"
    );
    assert!(!jf.is_disabled("alice"), "the account is not locked");
    assert_eq!(jf.invalid_attempts("alice"), 2);
}

#[actix_web::test]
async fn tokens_in_the_query_are_limited_like_tokens_in_the_token_field() {
    // 40 forged JWTs in an HLS request's query from one address: before, every one was
    // signature-checked and none was limited.
    let key = TestKey::generate(KeyKind::Ec, "k1");
    let forger = TestKey::generate(KeyKind::Ec, "k1");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let path = support::temp_config(
        "jwt.toml",
        &format!(
            "[server]\nmax_failures_per_ip = 5\n\n[jwt]\njwks_url = \"{}\"\n",
            idp.jwks_url()
        ),
    );
    let server = support::Binary::start(&path);
    let app = server.app();
    app.wait_ready().await;
    for (param, ip) in [("jwt", "203.0.113.20"), ("token", "203.0.113.21")] {
        let mut answers = Vec::new();
        for i in 0..40 {
            let claims =
                idp::keycloak_claims(&idp.issuer(), &format!("u{i}"), serde_json::json!({}));
            let forged = forger.sign(&claims);
            let body = serde_json::json!({
                "ip": ip, "user": "", "password": "", "token": "", "action": "read",
                "path": "cam", "protocol": "hls", "id": null,
                "query": format!("{param}={forged}"),
            });
            answers.push(post(&app, body).await);
        }
        let limited = answers.iter().filter(|(_, e)| e == LIMITED).count();
        assert!(answers.iter().all(|(s, _)| *s == 401));
        assert_eq!(
            limited, 35,
            "{param}=: the first 5 were checked, the rest limited: {answers:?}"
        );
        assert!(
            answers[..5].iter().all(|(_, e)| e.starts_with("jwt:")),
            "{answers:?}"
        );
    }
    // A genuine token from another address is unaffected.
    let good = key.sign(&idp::keycloak_claims(
        &idp.issuer(),
        "viewer",
        serde_json::json!({"mediamtx_permissions": [{"action": "read", "path": "cam"}]}),
    ));
    let body = serde_json::json!({
        "ip": "203.0.113.99", "user": "", "password": "", "token": "", "action": "read",
        "path": "cam", "protocol": "hls", "id": null, "query": format!("jwt={good}"),
    });
    assert_eq!(post(&app, body).await.0, 200);
}

#[actix_web::test]
async fn concurrent_guesses_from_one_address_get_exactly_the_limit() {
    // One argon2 user, so wrong names pay a decoy verification too: 100 wrong passwords at
    // once from one address. Before, 72–79 of them were evaluated against a limit of 20.
    let hash = mtx_auth::credential::hash_argon2("right-password");
    let path = support::temp_config(
        "argon2.toml",
        &format!(
            "[server]\nargon2_queue = 200\n\n[[users]]\nuser = \"alice\"\npass = \"{hash}\"\npermissions = [{{ action = \"read\" }}]\n"
        ),
    );
    let server = support::Binary::start(&path);
    let app = server.app();
    let guesses = (0..100)
        .map(|i| {
            read(
                "192.0.2.50",
                if i % 2 == 0 { "alice" } else { "mallory" },
                &format!("w{i}"),
            )
        })
        .collect();
    let answers = all_at_once(&app, guesses).await;
    let evaluated = answers.iter().filter(|(_, e)| e != LIMITED).count();
    assert!(answers.iter().all(|(s, _)| *s == 401));
    assert_eq!(evaluated, 20, "{answers:?}");
    assert_eq!(
        post(&app, read("192.0.2.50", "alice", "right-password"))
            .await
            .0,
        401
    );
    assert_eq!(
        post(&app, read("192.0.2.51", "alice", "right-password"))
            .await
            .0,
        200
    );
}

#[actix_web::test]
async fn an_unparsable_address_does_not_switch_the_limit_off() {
    let path = support::temp_config(
        "ip.toml",
        &format!("[server]\nmax_failures_per_ip = 3\n\n{USERS}"),
    );
    let server = support::Binary::start(&path);
    let app = server.app();
    let mut answers = Vec::new();
    for (i, ip) in ["", "010.1.2.3", "not-an-ip", "", "1.2.3.4.5", "::ffff:zz"]
        .iter()
        .enumerate()
    {
        answers.push(post(&app, read(ip, "alice", &format!("w{i}"))).await);
    }
    let limited = answers.iter().filter(|(_, e)| e == LIMITED).count();
    assert_eq!(
        limited, 3,
        "all unparsable addresses share one count: {answers:?}"
    );
    assert_eq!(post(&app, read("10.1.2.3", "alice", "right")).await.0, 200);
}

#[actix_web::test]
async fn a_toml_name_shadows_every_case_variant_at_the_media_server() {
    // TOML `admin`; Jellyfin has its own `admin` (a server administrator) and `bob`.
    let jf = FakeMediaServer::start(
        Flavor::Jellyfin,
        vec![
            UserSpec::new("admin", "jf-admin-pw").admin(),
            UserSpec::new("bob", "bob-pw"),
        ],
    );
    jf.set_lockout(None);
    let path = support::temp_config(
        "shadow.toml",
        &format!(
            "[[users]]\nuser = \"admin\"\npass = \"toml-pw\"\npermissions = [{{ action = \"read\", path = \"toml\" }}]\n\n\
             [jellyfin]\nurl = \"{}\"\npermissions = [{{ action = \"read\" }}]\nadmin_permissions = [{{ action = \"publish\" }}]\n",
            jf.url()
        ),
    );
    let server = support::Binary::start(&path);
    let app = server.app();
    app.wait_ready().await;
    jf.reset_hits();
    let publish = |user: &str, pass: &str| mtx_request("publish", "cam", "10.0.0.1", user, pass);
    for user in ["ADMIN", "Admin", "aDmIn"] {
        assert_eq!(
            post(&app, publish(user, "jf-admin-pw")).await.0,
            401,
            "{user} with Jellyfin's admin password is the TOML admin's name"
        );
        assert_eq!(post(&app, read("10.0.0.1", user, "toml-pw")).await.0, 401);
    }
    assert_eq!(
        jf.login_hits(),
        0,
        "no TOML name, in any case, was sent to Jellyfin"
    );
    assert_eq!(
        post(
            &app,
            mtx_request("read", "toml", "10.0.0.1", "admin", "toml-pw")
        )
        .await
        .0,
        200
    );
    assert_eq!(post(&app, read("10.0.0.1", "BOB", "bob-pw")).await.0, 200);
    assert_eq!(jf.login_hits(), 1, "other names still reach Jellyfin");
}
