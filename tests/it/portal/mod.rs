//! The viewer portal through HTTP, as a browser and a reverse proxy use it: the real binary
//! with a store, its `/auth` beside it, and the portal on its own port. Every route of the
//! contract and every refusal: wrong passwords (one message), the brute-force limit, the
//! same-origin rule, half-signed-in sessions, TOTP replay and the fifth wrong code, recovery
//! codes, links that grant exactly what their maker holds and die with the grant,
//! `/forward-auth`, logout on the server side.
//!
//! Beside this file: the pages in headless Chromium (`browser`), and the reverse proxies in
//! front of the real portal (`proxies`).

mod browser;
mod oidc;
mod plex;
mod proxies;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::media::{FakeMediaServer, Flavor, UserSpec};
use crate::support::{mtx_request, temp_config, Binary, TestApp};

pub const MFA_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

pub use crate::support::free_port;

/// A config with a store, two `[[users]]` and a `[portal]` on `port` (plus `extra`).
pub fn config(name: &str, port: u16, portal_extra: &str, extra: &str) -> PathBuf {
    temp_config(
        name,
        &format!(
            r#"[store]
url = "sqlite://mtx-auth.db"

[server]
max_failures_per_ip = 0

[[users]]
user = "alice"
pass = "alice-pw"
permissions = [{{ action = "read", path = "cam1" }}, {{ action = "publish", path = "~^live/" }}]

[[users]]
user = "bob"
pass = "argon2:$argon2id$v=19$m=19456,t=2,p=1$EWlH2QlOY9/fRHYEB3PGQQ$x7rbya5ncU6fnzme1vbAi+Uhn17WmWXnUQz9oZ8NHh4"
ips = ["10.0.0.0/8"]
permissions = [{{ action = "read", path = "cam2" }}]

{extra}

[portal]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
admin_users = ["alice"]
{portal_extra}

[portal.urls]
rtsp = "rtsp://streams.test:8554"
hls = "https://streams.test:8888"
webrtc = "https://streams.test:8889"
srt = "srt://streams.test:8890"
rtmp = "rtmp://streams.test:1935"
"#
        ),
    )
}

/// A browser: one cookie jar (the session and pending cookies), the portal's origin on every
/// state change unless told otherwise, redirects not followed.
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
    pub cookies: std::collections::BTreeMap<String, String>,
    /// The last `Set-Cookie` headers seen.
    pub set_cookies: Vec<String>,
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

impl Browser {
    pub fn new(port: u16) -> Browser {
        Browser {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: Default::default(),
            set_cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub async fn send(&mut self, req: reqwest::RequestBuilder) -> Answer {
        let req = if self.cookies.is_empty() {
            req
        } else {
            req.header("cookie", self.cookie_header())
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        self.set_cookies = headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for c in &self.set_cookies {
            let pair = c.split(';').next().unwrap_or_default();
            if let Some((k, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        Answer {
            status,
            headers,
            text: resp.text().await.unwrap_or_default(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Answer {
        let req = self.client.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub async fn post_form(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("origin", self.base.clone())
            .form(form);
        self.send(req).await
    }

    pub async fn post_json(&mut self, path: &str, body: &Value) -> Answer {
        let req = self
            .client
            .post(format!("{}{path}", self.base))
            .header("origin", self.base.clone())
            .json(body);
        self.send(req).await
    }

    pub async fn delete(&mut self, path: &str) -> Answer {
        let req = self
            .client
            .delete(format!("{}{path}", self.base))
            .header("origin", self.base.clone());
        self.send(req).await
    }

    pub fn session(&self) -> Option<&str> {
        self.cookies.get("mtx_auth_session").map(String::as_str)
    }

    /// Makes a link (`POST /api/links`) and returns its credential.
    pub async fn link(&mut self, action: &str, path: &str) -> String {
        let made = self
            .post_json("/api/links", &json!({"action": action, "path": path}))
            .await;
        assert_eq!(made.status, 200, "{}", made.text);
        made.json()["token"].as_str().unwrap().to_owned()
    }

    pub async fn sign_in(&mut self, user: &str, pass: &str) -> Answer {
        self.post_form("/login", &[("username", user), ("password", pass)])
            .await
    }
}

pub fn start(config: &Path) -> Binary {
    Binary::start_with(config, &[("MTX_AUTH_MFA_KEY", MFA_KEY)], |_| {})
}

/// Waits until `/auth` answers `want` for `body` (a revocation reaches memory through the
/// store feed within a second).
async fn eventually(app: &TestApp, body: &Value, want: u16) -> bool {
    for _ in 0..60 {
        if app.status(body).await == want {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

fn read(path: &str, token: &str) -> Value {
    mtx_request("read", path, "10.0.0.1", "viewer", token)
}

#[actix_web::test]
async fn sign_in_links_and_logout_with_a_toml_user() {
    let port = free_port();
    let server = start(&config("portal.toml", port, "mfa = \"off\"", ""));
    let app = server.app();
    let mut b = Browser::new(port);

    let login = b.get("/login").await;
    assert_eq!(login.status, 200);
    assert!(login.text.contains("name=\"username\""), "{}", login.text);
    for (header, want) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(login.headers.get(header).unwrap(), want);
    }
    let csp = login.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // One message whether or not the name exists; no cookie.
    let wrong = b.sign_in("alice", "nope").await;
    let unknown = b.sign_in("mallory", "nope").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(wrong.text.contains("wrong name or password"));
    assert!(unknown.text.contains("wrong name or password"));
    assert!(b.session().is_none());

    // Not signed in: pages go to the sign-in, the API says 401.
    assert_eq!(b.get("/").await.location(), "/login");
    assert_eq!(b.get("/api/me").await.status, 401);

    let ok = b.sign_in("alice", "alice-pw").await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    assert_eq!(ok.location(), "/");
    let cookie = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("mtx_auth_session="))
        .unwrap()
        .clone();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "http public_url: no Secure flag"
    );
    assert!(b.session().unwrap().len() >= 22, "128 bits at least");

    let me = b.get("/api/me").await.json();
    assert_eq!(
        me,
        json!({"user": "alice", "source": "users", "admin": true, "mfa": false,
               "permissions": [{"action": "read", "path": "cam1"}, {"action": "publish", "path": "~^live/"}]})
    );
    let page = b.get("/").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("cam1"), "{}", page.text);

    // A state change from another origin, or with no origin at all, is refused.
    let mut foreign = b
        .client
        .post(format!("{}/api/links", b.base))
        .json(&json!({"action": "read", "path": "cam1"}));
    foreign = foreign.header("origin", "https://evil.example");
    assert_eq!(b.send(foreign).await.status, 403);
    let bare = b
        .client
        .post(format!("{}/api/links", b.base))
        .json(&json!({"action": "read", "path": "cam1"}));
    assert_eq!(b.send(bare).await.status, 403);

    // A link for what she holds; it works on /auth for that path only.
    let link = b
        .post_json("/api/links", &json!({"action": "read", "path": "cam1"}))
        .await;
    assert_eq!(link.status, 200, "{}", link.text);
    let link = link.json();
    let token = link["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("mtxa_"));
    assert_eq!(
        link["urls"]["rtsp"],
        json!(format!("rtsp://viewer:{token}@streams.test:8554/cam1"))
    );
    assert_eq!(
        link["urls"]["srt"],
        json!(format!(
            "srt://streams.test:8890?streamid=read:cam1:viewer:{token}"
        ))
    );
    assert_eq!(
        link["urls"]["hls"],
        json!(format!("https://streams.test:8888/cam1/?token={token}"))
    );
    assert!(link["expires_at"].is_string());
    let (status, body) = app.auth(&read("cam1", &token)).await;
    assert_eq!((status, body["user"].as_str()), (200, Some("alice")));
    assert_eq!(app.status(&read("cam2", &token)).await, 401);
    let hls = json!({"ip": "10.0.0.1", "user": "", "password": "", "token": "", "action": "read",
        "path": "cam1", "protocol": "hls", "id": null, "query": format!("token={token}")});
    assert_eq!(
        app.status(&hls).await,
        200,
        "the HLS page forwards its query"
    );

    // Never more than she holds.
    for (action, path, want) in [
        ("read", "cam2", 403),
        ("publish", "cam1", 403),
        ("api", "", 400),
        ("read", "../x", 400),
        ("publish", "live/party", 200),
    ] {
        let a = b
            .post_json("/api/links", &json!({"action": action, "path": path}))
            .await;
        assert_eq!(a.status, want, "{action} {path}: {}", a.text);
    }

    let mine = b.get("/api/links").await.json();
    assert_eq!(mine.as_array().unwrap().len(), 2);
    assert!(!mine.to_string().contains(&token), "a link is shown once");
    let id = link["id"].as_str().unwrap();
    assert_eq!(b.delete("/api/links/nope").await.status, 404);
    assert_eq!(b.delete(&format!("/api/links/{id}")).await.status, 200);
    assert!(
        eventually(&app, &read("cam1", &token), 401).await,
        "revoked on /auth"
    );
    assert_eq!(
        b.get("/api/links").await.json().as_array().unwrap().len(),
        1
    );

    // Logout ends the session on the server: the old cookie is worthless.
    let old = b.session().unwrap().to_owned();
    let out = b.post_form("/logout", &[]).await;
    assert_eq!((out.status, out.location()), (303, "/login"));
    b.cookies.insert("mtx_auth_session".into(), old);
    assert_eq!(b.get("/api/me").await.status, 401);

    let logs = server.logs();
    assert!(
        !logs.contains("alice-pw") && !logs.contains(&token),
        "no secret in logs"
    );
}

#[actix_web::test]
async fn argon2_users_and_another_bobs_session() {
    let port = free_port();
    let server = start(&config("portal-argon2.toml", port, "mfa = \"off\"", ""));
    let app = server.app();
    let mut b = Browser::new(port);
    assert_eq!(b.sign_in("bob", "wrong").await.status, 401);
    assert_eq!(b.sign_in("bob", "bob-pw").await.status, 303);
    let me = b.get("/api/me").await.json();
    assert_eq!(me["admin"], json!(false));
    // bob's entry admits 10.0.0.0/8 only: his links keep that rule.
    let token = b.link("read", "cam2").await;
    assert_eq!(app.status(&read("cam2", &token)).await, 200);
    let elsewhere = mtx_request("read", "cam2", "192.0.2.1", "viewer", &token);
    let (status, body) = app.auth(&elsewhere).await;
    assert_eq!(status, 401);
    assert!(
        body["error"].as_str().unwrap().contains("address"),
        "{body}"
    );
    // Not an administrator.
    assert_eq!(b.get("/admin").await.status, 403);
}

#[actix_web::test]
async fn sign_in_attempts_share_the_brute_force_limit() {
    let port = free_port();
    let path = config("portal-limit.toml", port, "mfa = \"off\"", "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_failures_per_ip = 0", "max_failures_per_ip = 3");
    std::fs::write(&path, text).unwrap();
    let server = start(&path);
    let mut b = Browser::new(port);
    // Concurrent guesses: attempts in flight count, so no more than three are checked.
    let mut handles = Vec::new();
    for i in 0..8 {
        let client = b.client.clone();
        let base = b.base.clone();
        handles.push(actix_web::rt::spawn(async move {
            client
                .post(format!("{base}/login"))
                .header("origin", base.clone())
                .form(&[("username", "alice"), ("password", &format!("guess{i}"))])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for h in handles {
        statuses.push(h.await.unwrap());
    }
    statuses.sort();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        5,
        "{statuses:?}"
    );
    // Past the limit even the right password is turned away, and /auth shares the count.
    assert_eq!(b.sign_in("alice", "alice-pw").await.status, 429);
    assert_eq!(
        server
            .app()
            .status(&mtx_request(
                "read",
                "cam1",
                "127.0.0.1",
                "alice",
                "alice-pw"
            ))
            .await,
        401
    );
    // Counted by method and result: three refused, six turned away by the limit.
    let metrics = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (result, n) in [("rejected", 3), ("limited", 6)] {
        let line =
            format!("mtx_auth_portal_signins_total{{method=\"password\",result=\"{result}\"}} {n}");
        assert!(metrics.contains(&line), "{line} not in\n{metrics}");
    }
}

#[actix_web::test]
async fn totp_enrollment_second_factor_replay_and_recovery_codes() {
    let port = free_port();
    let server = start(&config(
        "portal-mfa.toml",
        port,
        "mfa = \"optional\"\nmfa_key_env = \"MTX_AUTH_MFA_KEY\"",
        "",
    ));
    let mut b = Browser::new(port);
    assert_eq!(
        b.sign_in("alice", "alice-pw").await.location(),
        "/",
        "not enrolled: no code asked"
    );
    let first_cookie = b.session().unwrap().to_owned();

    let enrollment = b.post_form("/mfa/enroll", &[]).await;
    assert_eq!(enrollment.status, 200, "{}", enrollment.text);
    let e = enrollment.json();
    let secret = e["secret"].as_str().unwrap().to_owned();
    assert!(e["otpauth_url"]
        .as_str()
        .unwrap()
        .starts_with("otpauth://totp/"));
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let now = mtx_auth::time::now_unix();
    let code = |t: i64| mtx_auth::portal::mfa::code_for_base32(&secret, t).unwrap();
    assert_eq!(
        b.post_form("/mfa/enroll/verify", &[("code", "000000")])
            .await
            .status,
        401
    );
    let verified = b
        .post_form("/mfa/enroll/verify", &[("code", &code(now - 30))])
        .await;
    assert_eq!(verified.status, 200, "{}", verified.text);
    let recovery: Vec<String> = verified.json()["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);
    assert_eq!(b.get("/api/me").await.json()["mfa"], json!(true));
    assert_eq!(b.session().unwrap(), first_cookie);
    b.post_form("/logout", &[]).await;

    // Now a sign-in stops half way: only /mfa* and /logout.
    let half = b.sign_in("alice", "alice-pw").await;
    assert_eq!(half.location(), "/mfa");
    let half_cookie = b.session().unwrap().to_owned();
    assert_eq!(b.get("/api/me").await.status, 401);
    assert_eq!(b.get("/").await.location(), "/mfa");
    assert_eq!(
        b.post_json("/api/links", &json!({"action": "read", "path": "cam1"}))
            .await
            .status,
        401
    );
    assert_eq!(b.get("/mfa").await.status, 200);
    // The step the enrollment used is spent: its code is refused (replay).
    assert_eq!(
        b.post_form("/mfa", &[("code", &code(now - 30))])
            .await
            .status,
        401
    );
    let passed = b.post_form("/mfa", &[("code", &code(now))]).await;
    assert_eq!((passed.status, passed.location()), (303, "/"));
    assert_ne!(
        b.session().unwrap(),
        half_cookie,
        "the cookie changes after the second factor"
    );
    assert_eq!(b.get("/api/me").await.status, 200);
    b.post_form("/logout", &[]).await;

    // The same code again, in a new sign-in: refused.
    b.sign_in("alice", "alice-pw").await;
    assert_eq!(
        b.post_form("/mfa", &[("code", &code(now))]).await.status,
        401
    );
    // A recovery code works once.
    assert_eq!(
        b.post_form("/mfa", &[("code", &recovery[0].to_uppercase())])
            .await
            .status,
        303
    );
    b.post_form("/logout", &[]).await;
    b.sign_in("alice", "alice-pw").await;
    assert_eq!(
        b.post_form("/mfa", &[("code", &recovery[0])]).await.status,
        401
    );
    // Five wrong codes end the pending sign-in (this was the second).
    for _ in 0..3 {
        assert_eq!(b.post_form("/mfa", &[("code", "123456")]).await.status, 401);
    }
    let cookie = b.session().unwrap().to_owned();
    let fifth = b.post_form("/mfa", &[("code", "123456")]).await;
    assert_eq!(fifth.status, 401);
    assert!(b.session().is_none(), "the cookie is cleared");
    b.cookies.insert("mtx_auth_session".into(), cookie);
    assert_eq!(
        b.post_form("/mfa", &[("code", &recovery[1])])
            .await
            .location(),
        "/login",
        "ended on the server"
    );

    // Enrolling again takes a current code.
    b.cookies.clear();
    b.sign_in("alice", "alice-pw").await;
    assert_eq!(
        b.post_form("/mfa", &[("code", &recovery[2])]).await.status,
        303
    );
    assert_eq!(b.post_form("/mfa/enroll", &[]).await.status, 401);
    assert_eq!(
        b.post_form("/mfa/enroll", &[("code", &recovery[3])])
            .await
            .status,
        200
    );

    let logs = server.logs();
    assert!(
        !logs.contains(&secret) && !logs.contains(&recovery[4]),
        "no secret in logs"
    );
}

#[actix_web::test]
async fn mfa_required_enrolls_before_anything_else() {
    let port = free_port();
    let _server = start(&config(
        "portal-required.toml",
        port,
        "mfa = \"required\"\nmfa_key_env = \"MTX_AUTH_MFA_KEY\"",
        "",
    ));
    let mut b = Browser::new(port);
    assert_eq!(
        b.sign_in("alice", "alice-pw").await.location(),
        "/mfa/enroll"
    );
    let pending = b.session().unwrap().to_owned();
    assert_eq!(b.get("/api/me").await.status, 401);
    let secret = b.post_form("/mfa/enroll", &[]).await.json()["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = mtx_auth::portal::mfa::code_for_base32(&secret, mtx_auth::time::now_unix()).unwrap();
    let done = b.post_form("/mfa/enroll/verify", &[("code", &code)]).await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_ne!(
        b.session().unwrap(),
        pending,
        "complete now, under a new cookie"
    );
    assert_eq!(b.get("/api/me").await.status, 200);
}

#[actix_web::test]
async fn forward_auth_hands_a_proxy_a_credential_for_the_session() {
    let port = free_port();
    let server = start(&config("portal-forward.toml", port, "mfa = \"off\"", ""));
    let app = server.app();
    let mut b = Browser::new(port);
    let ask = |b: &Browser, header: &'static str, uri: &str| {
        b.client
            .get(format!("{}/forward-auth", b.base))
            .header(header, uri.to_owned())
    };
    assert_eq!(
        b.send(ask(&b, "x-forwarded-uri", "/cam1/index.m3u8"))
            .await
            .status,
        401
    );
    b.sign_in("alice", "alice-pw").await;
    let a = b.send(ask(&b, "x-forwarded-uri", "/cam1/index.m3u8")).await;
    assert_eq!(a.status, 200);
    let bearer = a.headers["authorization"].to_str().unwrap().to_owned();
    let token = bearer.strip_prefix("Bearer ").unwrap().to_owned();
    // The same credential for the same path while it is fresh (proxies ask per segment).
    for uri in ["/cam1/", "/cam1", "/cam1/whep", "/cam1/seg1.mp4?x=1"] {
        let again = b.send(ask(&b, "x-original-uri", uri)).await;
        assert_eq!(again.status, 200, "{uri}");
        assert_eq!(
            again.headers["authorization"].to_str().unwrap(),
            bearer,
            "{uri}"
        );
    }
    let with_bearer = json!({"ip": "127.0.0.1", "user": "", "password": "", "token": token,
        "action": "read", "path": "cam1", "protocol": "hls", "id": null, "query": ""});
    assert_eq!(app.status(&with_bearer).await, 200);
    assert_eq!(
        b.send(ask(&b, "x-forwarded-uri", "/cam2/index.m3u8"))
            .await
            .status,
        401
    );
    assert_eq!(b.send(ask(&b, "x-forwarded-uri", "")).await.status, 401);
    // Not one of the person's links.
    assert_eq!(b.get("/api/links").await.json(), json!([]));
    // Logging out revokes it.
    b.post_form("/logout", &[]).await;
    assert!(eventually(&app, &with_bearer, 401).await);
}

#[actix_web::test]
async fn a_reload_that_removes_the_entry_ends_its_links_and_sessions() {
    let port = free_port();
    let path = config("portal-reload.toml", port, "mfa = \"off\"", "");
    let server = start(&path);
    let app = server.app();
    let mut b = Browser::new(port);
    b.sign_in("alice", "alice-pw").await;
    let token = b
        .post_json(
            "/api/links",
            &json!({"action": "publish", "path": "live/a"}),
        )
        .await
        .json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let publish = mtx_request("publish", "live/a", "10.0.0.1", "p", &token);
    assert_eq!(app.status(&publish).await, 200);
    // Same name and pass, the publish permission gone: the link goes, the session stays.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace(", { action = \"publish\", path = \"~^live/\" }", ""),
    )
    .unwrap();
    server.sighup();
    assert!(
        eventually(&app, &publish, 401).await,
        "link revoked after the reload"
    );
    let me = b.get("/api/me").await.json();
    assert_eq!(
        me["permissions"],
        json!([{"action": "read", "path": "cam1"}])
    );
    // A new password: the entry that granted the session is gone, and so is the session.
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("pass = \"alice-pw\"", "pass = \"changed\""),
    )
    .unwrap();
    server.sighup();
    let mut ended = false;
    for _ in 0..50 {
        if b.get("/api/me").await.status == 401 {
            ended = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ended, "session ended after the entry changed");
}

#[actix_web::test]
async fn jellyfin_people_are_not_toml_people() {
    let jf = FakeMediaServer::start(
        Flavor::Jellyfin,
        vec![
            UserSpec::new("Alice", "jelly-pw"),
            UserSpec::new("jane", "jane-pw"),
        ],
    );
    let port = free_port();
    let extra = format!(
        "[jellyfin]\nurl = \"{}\"\npermissions = [{{ action = \"read\", path = \"cam9\" }}]\n",
        jf.url()
    );
    let path = config("portal-jellyfin.toml", port, "mfa = \"off\"", &extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "admin_users = [\"alice\"]",
        "admin_users = [\"alice\", \"jellyfin:jane\"]",
    );
    std::fs::write(&path, text).unwrap();
    let server = start(&path);
    let mut b = Browser::new(port);
    let ok = b.sign_in("jane", "jane-pw").await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    let me = b.get("/api/me").await.json();
    assert_eq!(
        me,
        json!({"user": "jane", "source": "jellyfin", "admin": true, "mfa": false,
               "permissions": [{"action": "read", "path": "cam9"}]})
    );
    let token = b.link("read", "cam9").await;
    assert_eq!(server.app().status(&read("cam9", &token)).await, 200);
    assert_eq!(b.sign_in("jane", "wrong").await.status, 401);
    // "alice" is a [[users]] name: never sent to Jellyfin, whose Alice has another password.
    let mut other = Browser::new(port);
    assert_eq!(other.sign_in("alice", "jelly-pw").await.status, 401);
    // The administrator sees who is signed in and can end it.
    let admin = b.get("/admin").await;
    assert_eq!(admin.status, 200);
    assert!(admin.text.contains("jane"));
}

#[test]
fn config_problems_are_named() {
    let port = free_port();
    let no_key = config("portal-nokey.toml", port, "mfa = \"optional\"", "");
    let (code, _, err) = crate::support::run(
        crate::support::bin()
            .args(["check", "--config"])
            .arg(&no_key),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("mfa_key_env") && err.contains("openssl rand -base64 32"),
        "{err}"
    );
    let bad_key = config(
        "portal-badkey.toml",
        port,
        "mfa = \"optional\"\nmfa_key = \"c2hvcnQ=\"",
        "",
    );
    let (code, _, err) = crate::support::run(
        crate::support::bin()
            .args(["check", "--config"])
            .arg(&bad_key),
    );
    assert_eq!(code, 1);
    assert!(err.contains("not 32"), "{err}");
    let text =
        std::fs::read_to_string(config("portal-nostore.toml", port, "mfa = \"off\"", "")).unwrap();
    let no_store = temp_config(
        "portal-nostore2.toml",
        &text.replace("[store]\nurl = \"sqlite://mtx-auth.db\"\n", ""),
    );
    let (code, _, err) = crate::support::run(
        crate::support::bin()
            .args(["check", "--config"])
            .arg(&no_store),
    );
    assert_eq!(code, 1);
    assert!(err.contains("add [store]"), "{err}");
}

#[actix_web::test]
async fn an_account_that_is_disabled_loses_its_links_and_sessions() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("jane", "jane-pw")]);
    jf.add_api_key("admin-key-0123456789");
    let port = free_port();
    let extra = format!(
        "[jellyfin]\nurl = \"{}\"\napi_key = \"admin-key-0123456789\"\ncache_ttl_secs = 1\n\
         permissions = [{{ action = \"read\", path = \"cam9\" }}]\n",
        jf.url()
    );
    let server = start(&config(
        "portal-jf-recheck.toml",
        port,
        "mfa = \"off\"",
        &extra,
    ));
    let app = server.app();
    let mut b = Browser::new(port);
    assert_eq!(b.sign_in("jane", "jane-pw").await.status, 303);
    let token = b.link("read", "cam9").await;
    assert_eq!(app.status(&read("cam9", &token)).await, 200);
    let logins = jf.login_hits();
    jf.set_disabled("jane", true);
    let mut revoked = false;
    for _ in 0..150 {
        if app.status(&read("cam9", &token)).await == 401 {
            revoked = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "the link of a disabled account is revoked");
    assert_eq!(
        b.get("/api/me").await.status,
        401,
        "and its web session ended"
    );
    assert_eq!(
        jf.login_hits(),
        logins,
        "asked with the administrator's key, never the password"
    );
}

#[actix_web::test]
async fn signing_out_everywhere_ends_every_session_and_link() {
    let port = free_port();
    let server = start(&config("portal-everywhere.toml", port, "mfa = \"off\"", ""));
    let app = server.app();
    let (mut phone, mut laptop) = (Browser::new(port), Browser::new(port));
    phone.sign_in("alice", "alice-pw").await;
    laptop.sign_in("alice", "alice-pw").await;
    let token = laptop.link("read", "cam1").await;
    assert_eq!(app.status(&read("cam1", &token)).await, 200);
    let out = phone.post_form("/logout", &[("everywhere", "1")]).await;
    assert_eq!(out.location(), "/login");
    assert_eq!(
        laptop.get("/api/me").await.status,
        401,
        "the other browser is signed out"
    );
    assert!(
        eventually(&app, &read("cam1", &token), 401).await,
        "and the links revoked"
    );
}

#[actix_web::test]
async fn the_streams_page_lists_mediamtx_paths_the_person_may_use() {
    let api = crate::support::mediamtx::FakeMediamtx::start();
    for path in ["cam1", "cam2", "live/alice", "other"] {
        api.add_path(path);
    }
    let port = free_port();
    let extra = format!("[mediamtx]\napi_url = \"{}\"\n", api.url);
    let server = start(&config("portal-paths.toml", port, "mfa = \"off\"", &extra));
    api.set_auth(&server.base);
    let mut b = Browser::new(port);
    assert_eq!(
        b.get("/healthz").await.status,
        200,
        "/healthz on the portal too"
    );
    b.sign_in("alice", "alice-pw").await;
    let page = b.get("/").await.text;
    assert!(page.contains("<code>cam1</code>"), "{page}");
    assert!(
        page.contains("<code>live/alice</code>"),
        "MediaMTX's path under her pattern"
    );
    assert!(!page.contains("<code>cam2</code>") && !page.contains("<code>other</code>"));
    // Without the API, her permissions are what the page shows, and it says why.
    api.set_down(true);
    let page = b.get("/").await.text;
    assert!(page.contains("<code>cam1</code>") && !page.contains("<code>live/alice</code>"));
    assert!(page.contains("not available"), "{page}");
}
