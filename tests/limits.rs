//! Brute-force limits through HTTP: a client address (or user name) that failed too often is
//! turned away before anything is checked, while everyone else carries on.

#![recursion_limit = "256"] // the fake servers' JSON literals are large

mod common;
#[path = "support/media.rs"]
mod media;

use common::{mtx_request, spawn};
use media::{FakeMediaServer, Flavor, UserSpec};

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
