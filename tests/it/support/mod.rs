//! Test helpers: the real server on a random loopback port (in this process, or the binary as a
//! child process), a client for it, temp configs; and the fakes of the services mtx-auth talks
//! to, one module each.

pub mod idp;
pub mod ldap;
pub mod media;
pub mod mediamtx;
pub mod oidc;
pub mod postgres;
pub mod proxies;
pub mod tls;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Command;

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

/// POSTs `body`, asserts a 401 and returns its `error` text.
pub async fn error_of(app: &TestApp, body: &Value) -> String {
    let (s, b) = app.auth(body).await;
    assert_eq!(s, 401, "expected a deny, got {s} {b}");
    b["error"].as_str().unwrap().to_owned()
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

/// Runs a command to its end: its exit code (-1 for a signal), stdout and stderr.
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let std::process::Output {
        status,
        stdout,
        stderr,
    } = cmd.output().unwrap();
    (
        status.code().unwrap_or(-1),
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(stderr).unwrap(),
    )
}

/// The `mtx-auth` binary Cargo built for these tests, as a command to add arguments to.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mtx-auth"))
}

/// `mtx-auth serve` as a child process on a free loopback port: the real binary, its file
/// watcher, signal handling and log output. Its stderr is collected continuously into `logs`
/// (so a chatty server never blocks on a full pipe); the process is killed on drop.
pub struct Binary {
    pub child: std::process::Child,
    pub addr: String,
    pub base: String,
    logs: std::sync::Arc<std::sync::Mutex<String>>,
    /// The thread that collects stderr; it ends when the process has exited.
    collector: Option<std::thread::JoinHandle<()>>,
    pub client: reqwest::Client,
}

impl Binary {
    /// Starts `mtx-auth serve --config PATH --listen 127.0.0.1:0` with `RUST_LOG=info`.
    pub fn start(path: &std::path::Path) -> Binary {
        Binary::start_with(path, &[], |_| {})
    }

    /// Like `start`, with extra environment variables and a last say over the command (to wrap
    /// it, e.g. in `prlimit`, use `start_command`).
    pub fn start_with(
        path: &std::path::Path,
        env: &[(&str, &str)],
        adjust: impl FnOnce(&mut Command),
    ) -> Binary {
        let mut cmd = bin();
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(path)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        adjust(&mut cmd);
        Binary::start_command(cmd)
    }

    /// Runs `cmd` (which must end up running `mtx-auth serve` on port 0) and waits for its
    /// "listening on" line.
    pub fn start_command(mut cmd: Command) -> Binary {
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start mtx-auth");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let logs = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let addr = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                panic!("mtx-auth exited before listening: {}", logs.lock().unwrap());
            }
            logs.lock().unwrap().push_str(&line);
            if let Some(rest) = line.split("listening on http://").nth(1) {
                break rest.split(['/', ' ', '\n']).next().map(str::to_owned);
            }
        };
        let sink = std::sync::Arc::clone(&logs);
        let collector = std::thread::spawn(move || loop {
            let mut line = String::new();
            match stderr.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => sink.lock().unwrap().push_str(&line),
            }
        });
        let addr = addr.unwrap();
        Binary {
            base: format!("http://{addr}"),
            addr,
            child,
            logs,
            collector: Some(collector),
            client: reqwest::Client::new(),
        }
    }

    /// Everything the process wrote to stderr so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (up to `secs` seconds) until the logs contain `needle`; returns whether they did.
    pub fn wait_for_log(&self, needle: &str, secs: u64) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if self.logs().contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    /// An HTTP client for the process, as for an in-process server.
    pub fn app(&self) -> TestApp {
        TestApp {
            base: self.base.clone(),
            client: self.client.clone(),
        }
    }

    /// The status of a POST /auth of `body`, over a plain TCP connection (no runtime needed).
    pub fn status(&self, body: &str) -> u16 {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp[9..12].parse().unwrap()
    }

    /// Polls until `body` gets `want`, for up to 10 s.
    pub fn eventually(&self, body: &str, want: u16) -> bool {
        for _ in 0..200 {
            if self.status(body) == want {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }

    /// Sends a signal with `kill`, e.g. `-HUP`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGHUP (a reload).
    pub fn sighup(&self) {
        self.signal("-HUP");
    }

    /// SIGTERM; waits for the process to exit and returns its exit code and everything it
    /// logged.
    pub fn stop(mut self) -> (Option<i32>, String) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        if let Some(collector) = self.collector.take() {
            collector.join().unwrap();
        }
        (status.code(), self.logs())
    }
}

/// A test that fails midway leaves no server running behind it.
impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `text` to `name` in a fresh folder of the target dir's temp space; returns the path.
/// Every call has its own folder, so tests running at once never share a file.
/// A free loopback port, for a server whose address must be known before it starts (the
/// portal's `public_url`, slapd's URL). Another process could take it meanwhile; on a test
/// machine's loopback that does not happen in practice.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "cfg-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// The environment variables the tests' configs name (`client_secret_env`), set to fixed
/// values. All tests share this process's environment, so the variables are set once, here, and
/// no test changes or removes one; call this before loading a config that needs them.
pub fn test_env() {
    static SET: std::sync::Once = std::sync::Once::new();
    SET.call_once(|| {
        // deploy/kubernetes/mtx-auth.toml reads its OIDC secret from the environment, as in the
        // pod.
        std::env::set_var("MTX_AUTH_OIDC_CLIENT_SECRET", "test-value");
        // accounts::oidc's client_secret_env.
        std::env::set_var("MTX_AUTH_TEST_OIDC_SECRET", "s3cret-client");
        // The LDAP service account's password: config/examples/ldap.toml, docs/ldap.md and
        // accounts::ldap's bind_password_env (support::ldap::READER_PW).
        std::env::set_var("MTX_AUTH_LDAP_PASSWORD", "reader-pw");
        // config/examples/portal.toml's mfa_key_env (32 bytes, base64).
        std::env::set_var(
            "MTX_AUTH_MFA_KEY",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
        );
    });
}

/// `mtx-auth token issue --json --config CONFIG ARGS…`: (id, credential), or what it printed
/// on stderr when it failed.
pub fn try_issue(config: &std::path::Path, args: &[&str]) -> Result<(String, String), String> {
    let out = bin()
        .args(["token", "issue", "--json", "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok((
        v["id"].as_str().unwrap().to_owned(),
        v["token"].as_str().unwrap().to_owned(),
    ))
}

/// `mtx-auth token revoke --config CONFIG ID`, which must succeed.
pub fn revoke(config: &std::path::Path, id: &str) {
    let out = bin()
        .args(["token", "revoke", "--config"])
        .arg(config)
        .arg(id)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
