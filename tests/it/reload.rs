//! Hot reload through HTTP: a new config takes effect on the next request, an invalid one
//! changes nothing, cached verifications don't outlive the config that made them, and reloading
//! under load loses no request and makes no wrong decision.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::support::idp::{self, FakeIdp, KeyKind, TestKey};
use crate::support::{mtx_request, spawn_live, temp_config, Binary};

/// `testpass`, argon2i.
const ARGON2_TESTPASS: &str =
    "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo";
/// `testuser`, argon2id: a hash of a different password, for `bob` after the change.
const ARGON2_OTHER: &str =
    "argon2:$argon2id$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$Ux/LWeTgJQPyfMMJo1myR64+o8rALHoPmlE1i/TR+58";

fn user(name: &str, pass: &str) -> String {
    format!("[[users]]\nuser = \"{name}\"\npass = \"{pass}\"\npermissions = [{{ action = \"read\" }}]\n\n")
}

fn read(u: &str, p: &str) -> serde_json::Value {
    mtx_request("read", "cam", "10.0.0.1", u, p)
}

#[actix_web::test]
async fn changed_and_removed_users_are_denied_on_the_next_request() {
    let path = temp_config(
        "change.toml",
        &(user("alice", "one") + &user("bob", ARGON2_TESTPASS)),
    );
    let (app, live) = spawn_live(&path);
    assert_eq!(app.status(&read("alice", "one")).await, 200);
    // bob's argon2 verification is cached from here on.
    assert_eq!(app.status(&read("bob", "testpass")).await, 200);
    assert_eq!(app.status(&read("bob", "testpass")).await, 200);

    std::fs::write(&path, user("alice", "two") + &user("bob", ARGON2_OTHER)).unwrap();
    assert_eq!(live.reload().unwrap(), 2);
    app.expect(&[
        (read("alice", "one"), 401),
        (read("alice", "two"), 200),
        (read("bob", "testpass"), 401),
        (read("bob", "testuser"), 200),
    ])
    .await;

    std::fs::write(&path, user("alice", "two")).unwrap();
    live.reload().unwrap();
    assert_eq!(app.status(&read("bob", "testuser")).await, 401);
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready["config"]["generation"], json!(3));
    assert_eq!(ready["config"]["reloads"], json!(2));
}

#[actix_web::test]
async fn an_invalid_config_changes_nothing() {
    let path = temp_config("invalid.toml", &user("alice", "one"));
    let (app, live) = spawn_live(&path);
    std::fs::write(
        &path,
        "[[users]]\nuser = \"alice\"\npass = \"two\"\npermissions = [{ action = \"fly\" }]\n",
    )
    .unwrap();
    let err = live.reload().unwrap_err();
    assert_eq!(err.problems.len(), 1);
    assert!(
        err.to_string().ends_with("invalid.toml:4:27: action \"fly\": unknown action (expected one of publish, read, playback, api, metrics, pprof)"),
        "{err}"
    );
    assert_eq!(app.status(&read("alice", "one")).await, 200);
    assert_eq!(app.status(&read("alice", "two")).await, 401);
    std::fs::remove_file(&path).unwrap();
    assert!(
        live.reload().is_err(),
        "a missing file changes nothing either"
    );
    assert_eq!(app.status(&read("alice", "one")).await, 200);
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready["config"]["reload_failures"], json!(2));
    assert_eq!(ready["config"]["generation"], json!(1));
}

#[actix_web::test]
async fn reloading_under_load_loses_nothing_and_keeps_jwt_keys() {
    let key = TestKey::generate(KeyKind::Ed, "k1");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let token = key.sign(&idp::keycloak_claims(
        &idp.issuer(),
        "carol",
        json!({ "mediamtx_permissions": [{ "action": "read" }] }),
    ));
    let jwt = format!("[jwt]\njwks_url = \"{}\"\n", idp.jwks_url());
    // Two configs that agree on alice, dave (absent) and the JWT, and differ elsewhere. dave's
    // failures would trip the per-address limit: off here.
    let server = "[server]\nmax_failures_per_ip = 0\n\n";
    let a = server.to_owned() + &user("alice", "pw") + &user("filler", "x") + &jwt;
    let b = server.to_owned() + &user("other", "y") + &user("alice", "pw") + &jwt;
    let path = temp_config("storm.toml", &a);
    let (app, live) = spawn_live(&path);
    app.wait_ready().await;

    let stop = Arc::new(AtomicBool::new(false));
    let wrong = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for i in 0..4 {
        let (client, base) = (app.client.clone(), app.base.clone());
        let (stop, wrong, answered) = (stop.clone(), wrong.clone(), answered.clone());
        let token = token.clone();
        clients.push(actix_web::rt::spawn(async move {
            let cases = [
                (read("alice", "pw"), 200),
                (read("dave", "pw"), 401),
                (json!({"ip":"10.0.0.1","user":"","password":"","token":token,"action":"read","path":"cam","protocol":"hls","id":null,"query":""}), 200),
            ];
            let mut n = i;
            while !stop.load(Ordering::Relaxed) {
                let (body, want) = &cases[n % cases.len()];
                n += 1;
                let status = client
                    .post(format!("{base}/auth"))
                    .json(body)
                    .send()
                    .await
                    .expect("every request is answered")
                    .status()
                    .as_u16();
                answered.fetch_add(1, Ordering::Relaxed);
                if status != *want {
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for round in 0..100 {
        std::fs::write(&path, if round % 2 == 0 { &b } else { &a }).unwrap();
        live.reload().unwrap();
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(wrong.load(Ordering::Relaxed), 0);
    assert!(answered.load(Ordering::Relaxed) >= 100, "the clients ran");
    assert_eq!(live.generation.load(Ordering::Relaxed), 101);
    // The keys were carried over: no reload refetched them.
    assert_eq!(idp.jwks_hits(), 1);
    assert_eq!(app.get("/readyz").await.0, 200);
}

// ---- Files caught half-written (issue 15), through the real binary and its file watcher ----

const ALICE_LOCAL: &str = "[[users]]\nuser = \"alice\"\npass = \"pw\"\nips = [\"10.0.0.0/8\"]\npermissions = [{ action = \"read\" }]\n";

#[actix_web::test]
async fn a_truncated_file_is_not_loaded() {
    let path = temp_config("truncated.toml", ALICE_LOCAL);
    let server = Binary::start(&path);
    let app = server.app();
    assert_eq!(app.status(&read("alice", "pw")).await, 200);
    // `>` or an editor's first step: the file is empty for a while.
    std::fs::write(&path, "").unwrap();
    assert!(
        server.wait_for_log("grants nothing", 30),
        "the empty file is refused: {}",
        server.logs()
    );
    assert_eq!(app.status(&read("alice", "pw")).await, 200);
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready["config"]["reload_failures"], json!(1));
    assert_eq!(ready["config"]["generation"], json!(1));
    // A file cut off before its users, keeping a section that grants something, is refused too.
    std::fs::write(&path, "[jwt]\njwks_url = \"http://127.0.0.1:9/keys\"\n").unwrap();
    assert!(
        server.wait_for_log("has no [[users]]", 30),
        "{}",
        server.logs()
    );
    assert_eq!(app.status(&read("alice", "pw")).await, 200);
    // The finished file is loaded.
    std::fs::write(&path, ALICE_LOCAL.replace("\"pw\"", "\"pw2\"")).unwrap();
    assert!(
        server.wait_for_log("config reloaded", 30),
        "{}",
        server.logs()
    );
    assert_eq!(app.status(&read("alice", "pw2")).await, 200);
    assert_eq!(app.status(&read("alice", "pw")).await, 401);
}

#[actix_web::test]
async fn a_file_written_in_steps_is_loaded_once_it_settles() {
    let path = temp_config("steps.toml", ALICE_LOCAL);
    let server = Binary::start(&path);
    let app = server.app();
    assert_eq!(app.status(&read("alice", "pw")).await, 200);
    // Before mtx-auth took the file's stamp before reading it, a change made in the first
    // moments was taken for the file in use; this pause keeps the test about settling alone.
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    // A client from outside 10.0.0.0/8, asking all the time while the file is rewritten.
    let outside = mtx_request("read", "cam", "203.0.113.5", "alice", "pw");
    let stop = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(AtomicUsize::new(0));
    let asker = {
        let (app, stop, allowed, outside) = (
            server.app(),
            Arc::clone(&stop),
            Arc::clone(&allowed),
            outside.clone(),
        );
        actix_web::rt::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if app.status(&outside).await == 200 {
                    allowed.fetch_add(1, Ordering::Relaxed);
                }
                actix_web::rt::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // Written in two steps, a second or so apart (longer than the watcher's poll): first the
    // user without its `ips` line, then the line. Only the finished file may take effect.
    let without_ips =
        "[[users]]\nuser = \"alice\"\npass = \"pw\"\npermissions = [{ action = \"read\" }]\n";
    std::fs::write(&path, without_ips).unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(1200)).await;
    std::fs::write(
        &path,
        format!("{without_ips}ips = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n"),
    )
    .unwrap();
    assert!(
        server.wait_for_log("config reloaded", 30),
        "{}",
        server.logs()
    );
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    asker.await.unwrap();
    assert_eq!(
        allowed.load(Ordering::Relaxed),
        0,
        "the half-written config (no ips) was never in force"
    );
    assert_eq!(
        server.logs().matches("config reloaded").count(),
        1,
        "{}",
        server.logs()
    );
    assert_eq!(
        app.status(&mtx_request("read", "cam", "192.168.1.1", "alice", "pw"))
            .await,
        200
    );
}

#[actix_web::test]
async fn denials_by_a_config_that_grants_nothing_are_not_counted_against_clients() {
    // The service starts on a config that grants nothing (as after a bad deploy): every request
    // is denied. Those denials are the operator's, not failed guesses: once the config is fixed,
    // the clients that kept trying are let in at once, not turned away as brute-forcers.
    let path = temp_config("nothing.toml", "[server]\nmax_failures_per_ip = 3\n");
    let server = Binary::start(&path);
    assert!(
        server.logs().contains("grants nothing"),
        "{}",
        server.logs()
    );
    let app = server.app();
    for _ in 0..10 {
        let (status, body) = app.auth(&read("alice", "pw")).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (
                401,
                Some("no user matches these credentials for this action, path and ip")
            )
        );
    }
    std::fs::write(
        &path,
        format!("[server]\nmax_failures_per_ip = 3\n\n{ALICE_LOCAL}"),
    )
    .unwrap();
    server.sighup();
    assert!(
        server.wait_for_log("config reloaded", 30),
        "{}",
        server.logs()
    );
    assert_eq!(app.status(&read("alice", "pw")).await, 200);
    // Real guesses are still counted.
    for _ in 0..3 {
        assert_eq!(app.status(&read("alice", "guess")).await, 401);
    }
    let (_, body) = app.auth(&read("alice", "pw")).await;
    assert_eq!(body["error"], "too many failed attempts; try again later");
}
