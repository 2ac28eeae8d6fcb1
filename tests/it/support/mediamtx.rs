//! A fake MediaMTX control API (`/v3/<kind>/list|get|kick`), answering as the real one does
//! (shared/MEDIAMTX.md): paged lists of `{id, created, remoteAddr, state, path, query, user}`,
//! 404 for an unknown id or kind, and **every call authenticated first** by POSTing
//! `action: "api"` with the call's credentials to the auth backend (mtx-auth), as MediaMTX does.
//! A call the backend refuses gets 401.
//!
//! Tests add sessions (`add`), read what was kicked (`kicked`), and take the API down
//! (`set_down`: every call answers 503) to see kicks retried.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::Engine;
use serde_json::{json, Value};

#[derive(Default)]
struct State {
    /// Sessions by kind, in the order they were added.
    sessions: Mutex<BTreeMap<String, Vec<Value>>>,
    /// (kind, id) of every successful kick, in order.
    kicked: Mutex<Vec<(String, String)>>,
    /// Kick calls answered 404.
    kicks_not_found: AtomicUsize,
    /// Calls the auth backend refused.
    refused: AtomicUsize,
    /// Calls of any kind that reached the fake.
    calls: AtomicUsize,
    down: AtomicBool,
    /// mtx-auth's `/auth`.
    auth_url: Mutex<String>,
}

pub struct FakeMediamtx {
    state: Arc<State>,
    pub url: String,
    handle: ServerHandle,
}

impl FakeMediamtx {
    /// Starts on a free loopback port; call from within an actix runtime. Set the backend with
    /// `set_auth` before the first call.
    pub fn start() -> FakeMediamtx {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let data = web::Data::from(Arc::clone(&state));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(route))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        FakeMediamtx { state, url, handle }
    }

    /// Where to authenticate calls: mtx-auth's base URL.
    pub fn set_auth(&self, base: &str) {
        *self.state.auth_url.lock().unwrap() = format!("{base}/auth");
    }

    /// Adds a live session of `kind` (`rtspsessions`, `webrtcsessions`, …).
    pub fn add(&self, kind: &str, id: &str, path: &str) {
        self.state
            .sessions
            .lock()
            .unwrap()
            .entry(kind.to_owned())
            .or_default()
            .push(json!({
                "id": id,
                "created": "2026-12-01T10:00:00Z",
                "remoteAddr": "10.0.0.1:50000",
                "state": "read",
                "path": path,
                "query": "",
                "user": "",
                "userAgent": "test",
                "inboundBytes": 0,
                "outboundBytes": 0,
            }));
    }

    /// Ends a session as a client hanging up would.
    /// A path MediaMTX has (listed by `GET /v3/paths/list`).
    pub fn add_path(&self, name: &str) {
        self.state
            .sessions
            .lock()
            .unwrap()
            .entry("paths".into())
            .or_default()
            .push(json!({"name": name, "confName": "all_others", "ready": true, "readers": []}));
    }

    pub fn hang_up(&self, id: &str) {
        for list in self.state.sessions.lock().unwrap().values_mut() {
            list.retain(|s| s["id"] != id);
        }
    }

    pub fn is_live(&self, id: &str) -> bool {
        self.state
            .sessions
            .lock()
            .unwrap()
            .values()
            .any(|l| l.iter().any(|s| s["id"] == id))
    }

    /// (kind, id) of the sessions kicked so far.
    pub fn kicked(&self) -> Vec<(String, String)> {
        self.state.kicked.lock().unwrap().clone()
    }

    pub fn kicks_not_found(&self) -> usize {
        self.state.kicks_not_found.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::Relaxed)
    }

    pub fn calls(&self) -> usize {
        self.state.calls.load(Ordering::Relaxed)
    }

    /// While down, every call answers 503.
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::Relaxed);
    }

    /// Waits up to `secs` for `id` to be kicked; true if it was.
    pub async fn wait_kicked(&self, id: &str, secs: u64) -> bool {
        for _ in 0..secs * 50 {
            if self.kicked().iter().any(|(_, k)| k == id) {
                return true;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }
}

impl Drop for FakeMediamtx {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// The credentials of a call as MediaMTX reads them: Basic user and password, or a Bearer token.
fn credentials(req: &HttpRequest) -> (String, String, String) {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if let Some(basic) = header.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let (user, pass) = decoded.split_once(':').unwrap_or((&decoded, ""));
        return (user.to_owned(), pass.to_owned(), String::new());
    }
    if let Some(token) = header.strip_prefix("Bearer ") {
        return (String::new(), String::new(), token.to_owned());
    }
    Default::default()
}

async fn route(req: HttpRequest, state: web::Data<State>) -> HttpResponse {
    state.calls.fetch_add(1, Ordering::Relaxed);
    if state.down.load(Ordering::Relaxed) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    // MediaMTX asks its auth backend about every API call.
    let (user, password, token) = credentials(&req);
    let auth_url = state.auth_url.lock().unwrap().clone();
    let allowed = reqwest::Client::new()
        .post(&auth_url)
        .json(&json!({
            "user": user, "password": password, "token": token,
            "ip": "127.0.0.1", "action": "api", "path": "", "protocol": "",
            "id": null, "query": "",
        }))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !allowed {
        state.refused.fetch_add(1, Ordering::Relaxed);
        return HttpResponse::Unauthorized()
            .json(json!({"status": "error", "error": "authentication error"}));
    }
    let parts: Vec<&str> = req.path().trim_start_matches('/').split('/').collect();
    let known = |kind: &str| {
        [
            "rtspsessions",
            "rtspssessions",
            "rtmpconns",
            "rtmpsconns",
            "srtconns",
            "webrtcsessions",
            "hlssessions",
            "moqsessions",
        ]
        .contains(&kind)
    };
    let not_found =
        || HttpResponse::NotFound().json(json!({"status": "error", "error": "not found"}));
    match (req.method().as_str(), parts.as_slice()) {
        ("GET", ["v3", kind, "list"]) if known(kind) || *kind == "paths" => {
            let query: Vec<(String, String)> =
                form_urlencoded::parse(req.query_string().as_bytes())
                    .into_owned()
                    .collect();
            let param = |k: &str, d: usize| {
                query
                    .iter()
                    .find(|(n, _)| n == k)
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(d)
            };
            let (page, per_page) = (param("page", 0), param("itemsPerPage", 100).max(1));
            let sessions = state.sessions.lock().unwrap();
            let all = sessions.get(*kind).cloned().unwrap_or_default();
            let items: Vec<Value> = all
                .iter()
                .skip(page * per_page)
                .take(per_page)
                .cloned()
                .collect();
            HttpResponse::Ok().json(json!({
                "itemCount": all.len(),
                "pageCount": all.len().div_ceil(per_page),
                "items": items,
            }))
        }
        ("GET", ["v3", kind, "get", id]) if known(kind) => {
            let sessions = state.sessions.lock().unwrap();
            match sessions
                .get(*kind)
                .and_then(|l| l.iter().find(|s| s["id"] == *id))
            {
                Some(s) => HttpResponse::Ok().json(s),
                None => not_found(),
            }
        }
        ("POST", ["v3", kind, "kick", id]) if known(kind) => {
            let mut sessions = state.sessions.lock().unwrap();
            let list = sessions.entry(kind.to_string()).or_default();
            match list.iter().position(|s| s["id"] == *id) {
                Some(i) => {
                    list.remove(i);
                    state
                        .kicked
                        .lock()
                        .unwrap()
                        .push((kind.to_string(), id.to_string()));
                    HttpResponse::Ok().finish()
                }
                None => {
                    state.kicks_not_found.fetch_add(1, Ordering::Relaxed);
                    not_found()
                }
            }
        }
        _ => not_found(),
    }
}
