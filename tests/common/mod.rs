//! Test helpers: the real server on a random loopback port, and a client for it.

#![allow(dead_code)] // each test file uses a different part of this module

use std::net::TcpListener;

use mtx_auth::config::Config;
use mtx_auth::policy::Policy;
use mtx_auth::reload::LivePolicy;
use serde_json::Value;

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
}

/// Starts the same server `mtx-auth serve` runs, with `config` as the TOML file. Must be called
/// from an actix runtime (`#[actix_web::test]`); the server lives as long as the test.
pub fn spawn(config: &str) -> TestApp {
    let config = Config::parse(config, "test.toml").expect("test config is valid");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = mtx_auth::server::start(listener, Policy::new(config), Some(1)).unwrap();
    actix_web::rt::spawn(server);
    TestApp {
        base,
        client: reqwest::Client::new(),
    }
}

/// Like `spawn`, but the policy comes from the file at `path` and reloads when the test calls
/// `LivePolicy::reload` (no file watcher runs: the test decides when).
pub fn spawn_live(path: &std::path::Path) -> (TestApp, std::sync::Arc<LivePolicy>) {
    let config = Config::load(path).expect("test config is valid");
    let live = std::sync::Arc::new(LivePolicy::new(
        Policy::new(config),
        Some(path.to_path_buf()),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server =
        mtx_auth::server::start_live(listener, std::sync::Arc::clone(&live), Some(1)).unwrap();
    actix_web::rt::spawn(server);
    (
        TestApp {
            base,
            client: reqwest::Client::new(),
        },
        live,
    )
}

impl TestApp {
    /// POSTs a JSON value to /auth; returns the status and the JSON body.
    pub async fn auth(&self, body: &Value) -> (u16, Value) {
        self.auth_raw(serde_json::to_vec(body).unwrap(), Some("application/json"))
            .await
    }

    /// POSTs a JSON value to /auth; returns the status only.
    pub async fn status(&self, body: &Value) -> u16 {
        self.auth(body).await.0
    }

    /// POSTs each request and asserts its status, naming the failing case.
    pub async fn expect(&self, cases: &[(Value, u16)]) {
        for (i, (body, want)) in cases.iter().enumerate() {
            assert_eq!(self.status(body).await, *want, "case {i}: {body}");
        }
    }

    /// POSTs raw bytes to /auth, with an optional Content-Type.
    pub async fn auth_raw(&self, body: Vec<u8>, content_type: Option<&str>) -> (u16, Value) {
        let mut req = self.client.post(format!("{}/auth", self.base)).body(body);
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.expect("server answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("body is not JSON: status {status}, {text:?}"));
        (status, json)
    }

    /// Waits until `/readyz` answers 200 (remote sources loaded); panics after 15 s.
    pub async fn wait_ready(&self) {
        for _ in 0..1500 {
            if self.get("/readyz").await.0 == 200 {
                return;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("mtx-auth never became ready");
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }
}

/// A MediaMTX request body as MediaMTX v1.20 sends it (every field present, token = password).
pub fn mtx_request(action: &str, path: &str, ip: &str, user: &str, pass: &str) -> Value {
    serde_json::json!({
        "ip": ip,
        "user": user,
        "password": pass,
        "token": pass,
        "action": action,
        "path": path,
        "protocol": if action == "api" || action == "metrics" || action == "pprof" { "" } else { "rtsp" },
        "id": null,
        "query": "",
        "userAgent": "",
    })
}
