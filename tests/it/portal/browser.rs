//! The portal in a real browser: headless Chromium driven through chromedriver (WebDriver, with
//! fantoccini), as a person uses it, through the pages only: sign in, turn on two-factor
//! sign-in (the key read off the page, the code typed in), keep the recovery codes, sign out,
//! sign in again with a fresh code, make a link for `cam1`, copy it, watch `cam1` in the player,
//! open the administration page. What the browser was given is then checked where it matters:
//! the credential in the link's URL opens `cam1` on `/auth`.
//!
//! What a person never sees but would suffer from is checked too: the stylesheet and the script
//! were let in by the Content-Security-Policy (the script's copy button works; the browser's
//! console has no CSP complaint).
//!
//! Needs `chromedriver` and Chromium (Debian: `apt-get install -y chromium chromium-driver`), found
//! as `MTX_AUTH_CHROMEDRIVER` / `MTX_AUTH_CHROMIUM` if set, else on `PATH` and in `/usr/bin`.
//! Without them the test prints `skipped: …` and passes, unless `CI` is set: then it fails,
//! saying what to install.
//!
//! With `MTX_AUTH_SCREENSHOTS=<dir>`, it also saves each page as PNGs at a phone's and a
//! desktop's width (`docs/portal/` holds the ones the docs show):
//!
//! ```sh
//! MTX_AUTH_SCREENSHOTS=docs/portal cargo test --test it portal::browser
//! ```

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WebDriverCompatibleCommand};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

use super::{config, free_port, start};
use crate::support::mtx_request;
use crate::support::proxies::{Reply, Stub};

/// The install line the CI message names.
const INSTALL: &str = "apt-get install -y chromium chromium-driver";

/// The binary named by the environment variable `env` if set (None when that is not a file),
/// else the first of `names` on `PATH`, else the first of `paths`, that is a file.
fn find(env: &str, names: &[&str], paths: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    names
        .iter()
        .flat_map(|n| on_path.iter().map(move |d| d.join(n)))
        .chain(paths.iter().map(PathBuf::from))
        .find(|p| p.is_file())
}

/// chromedriver and Chromium, or None after printing `skipped: <why>`; under CI (`CI` set)
/// missing ones fail the test instead, saying what to install.
fn require() -> Option<(PathBuf, PathBuf)> {
    let driver = find(
        "MTX_AUTH_CHROMEDRIVER",
        &["chromedriver"],
        &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
    );
    let browser = find(
        "MTX_AUTH_CHROMIUM",
        &["chromium", "chromium-browser", "google-chrome"],
        &["/usr/bin/chromium", "/usr/lib/chromium/chromium"],
    );
    match (driver, browser) {
        (Some(d), Some(b)) => Some((d, b)),
        (d, _) => {
            let missing = if d.is_none() {
                "chromedriver"
            } else {
                "Chromium"
            };
            let why = format!(
                "no {missing} (set MTX_AUTH_CHROMEDRIVER / MTX_AUTH_CHROMIUM, or install with `{INSTALL}`)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{why}: CI is set, so the browser test must run");
            }
            eprintln!("skipped: {why}");
            None
        }
    }
}

/// chromedriver as a child process on a free loopback port, in a process group of its own: on
/// drop the group (chromedriver and the Chromium it started) is ended.
struct Driver {
    child: Child,
    /// `http://127.0.0.1:PORT/`
    url: String,
    /// Chromium's profile and chromedriver's log.
    dir: tempfile::TempDir,
}

impl Driver {
    fn start(binary: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::Builder::new()
            .prefix("chromium-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("chromedriver.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}/"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = driver.child.try_wait() {
                panic!("chromedriver exited with {status}:\n{}", driver.log());
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not listening after 20 s:\n{}",
                driver.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        driver
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// A headless Chromium session: its own profile, no sandbox (containers), `/tmp` rather
    /// than a small `/dev/shm`, and `streams.example.com`'s HLS and WebRTC ports sent to
    /// `player` (the fake MediaMTX page the player frames).
    async fn connect(&self, browser: &Path, player: &str) -> Client {
        let profile = self.dir.path().join("profile");
        let rules =
            format!("MAP streams.example.com:8889 {player}, MAP streams.example.com:8888 {player}");
        let caps: Capabilities = serde_json::from_value(json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": browser,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-extensions",
                    "--disable-background-networking",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--lang=en-US",
                    "--window-size=1000,800",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--host-resolver-rules={rules}"),
                ],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }))
        .unwrap();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("no browser session: {e}\n{}", self.log()))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        for signal in ["-TERM", "-KILL"] {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
            if signal == "-TERM" {
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        let _ = self.child.wait();
    }
}

/// A command of chromedriver's beyond fantoccini's: `POST /session/{id}/{path}` with `body`.
#[derive(Debug)]
struct Extension {
    path: &'static str,
    body: Value,
}

impl WebDriverCompatibleCommand for Extension {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (reqwest::Method, Option<String>) {
        (reqwest::Method::POST, Some(self.body.to_string()))
    }
}

/// Everything the browser's console said since the last call (`goog:loggingPrefs`).
async fn console(c: &Client) -> Vec<String> {
    let log = Extension {
        path: "se/log",
        body: json!({"type": "browser"}),
    };
    let entries = c.issue_cmd(log).await.expect("the browser's log");
    entries
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| format!("{} {}", e["level"], e["message"]))
        .collect()
}

/// Lets the page read the clipboard (WebDriver's Permissions extension), so that the test can
/// see what a copy button put there. Err where the browser does not offer it.
async fn allow_clipboard_read(c: &Client) -> Result<(), fantoccini::error::CmdError> {
    let grant = Extension {
        path: "permissions",
        body: json!({"descriptor": {"name": "clipboard-read"}, "state": "granted"}),
    };
    c.issue_cmd(grant).await.map(|_| ())
}

/// A person's browser: the session and where screenshots go.
struct Page {
    c: Client,
    base: String,
    shots: Option<PathBuf>,
}

impl Page {
    async fn find(&self, css: &str) -> Element {
        match self.c.find(Locator::Css(css)).await {
            Ok(e) => e,
            Err(e) => panic!("no {css}: {e}\n{}", self.text().await),
        }
    }

    /// The button (or link styled as one) whose text is `label`, in `within` (an XPath).
    async fn button(&self, within: &str, label: &str) -> Element {
        let xpath = format!("{within}//*[self::button or self::a][normalize-space()='{label}']");
        match self.c.find(Locator::XPath(&xpath)).await {
            Ok(e) => e,
            Err(e) => panic!("no {label:?} button: {e}\n{}", self.text().await),
        }
    }

    async fn press(&self, within: &str, label: &str) {
        self.button(within, label).await.click().await.unwrap();
    }

    /// Waits (up to 30 s) for an element, on a page that keeps its heading.
    async fn appears(&self, css: &str) -> Element {
        let found = self
            .c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(e) => e,
            Err(e) => panic!("no {css} after 30 s: {e}\n{}", self.text().await),
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        self.find(css).await.send_keys(text).await.unwrap();
    }

    /// The page's text, for failure messages.
    async fn text(&self) -> String {
        match self.c.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Waits (up to 30 s: CI runs every test at once) for a page whose heading is `heading`;
    /// returns its path.
    async fn landed_on(&self, heading: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(h1) = self.c.find(Locator::Css("main h1")).await {
                if h1.text().await.is_ok_and(|t| t == heading) {
                    return self.c.current_url().await.unwrap().path().to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "not on {heading:?} after 30 s; the page says:\n{}",
                self.text().await
            );
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn js(&self, script: &str) -> Value {
        self.c.execute(script, vec![]).await.unwrap()
    }

    /// With `MTX_AUTH_SCREENSHOTS`, the page as `NAME-phone.png` (390 px wide) and
    /// `NAME-desktop.png` (1000 px), each as tall as the page (at most 2000 px).
    async fn shoot(&self, name: &str) {
        let Some(dir) = &self.shots else { return };
        for (label, width) in [("phone", 390), ("desktop", 1000)] {
            self.c.set_window_size(width, 800).await.unwrap();
            let frame = self
                .js("return window.outerHeight - window.innerHeight")
                .await
                .as_u64()
                .unwrap_or(0) as u32;
            let tall = self
                .js("return Math.ceil(document.documentElement.scrollHeight)")
                .await
                .as_u64()
                .unwrap_or(800) as u32;
            self.c
                .set_window_size(width, (tall + frame).clamp(400, 2000))
                .await
                .unwrap();
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            let png = self.c.screenshot().await.unwrap();
            let path = dir.join(format!("{name}-{label}.png"));
            std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        self.c.set_window_size(1000, 800).await.unwrap();
    }
}

/// The stream credential in a URL: `mtxa_` and what follows of its alphabet.
fn credential_in(url: &str) -> String {
    let at = url
        .find(mtx_auth::issued::PREFIX)
        .unwrap_or_else(|| panic!("no credential in {url}"));
    url[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// What MediaMTX's WebRTC reader page stands in for in the player: a page of colour bars.
fn fake_player() -> Stub {
    Stub::start(|req| {
        let bars = [
            "#c0c0c0", "#c0c000", "#00c0c0", "#00c000", "#c000c0", "#c00000", "#0000c0",
        ]
        .iter()
        .map(|c| format!("<div style=\"flex:1;background:{c}\"></div>"))
        .collect::<String>();
        match req.path().ends_with('/') {
            true => Reply::new(200)
                .header("Content-Type", "text/html")
                .body(format!(
                    "<!doctype html><html><body style=\"margin:0;height:100vh;display:flex\">{bars}</body></html>"
                )),
            false => Reply::new(404),
        }
    })
}

#[actix_web::test]
async fn a_person_signs_in_turns_on_two_factor_and_links_a_stream() {
    let Some((chromedriver, chromium)) = require() else {
        return;
    };
    let shots = std::env::var_os("MTX_AUTH_SCREENSHOTS")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    if let Some(dir) = &shots {
        std::fs::create_dir_all(dir).unwrap();
    }
    let player = fake_player();
    let port = free_port();
    let path = config(
        "portal-browser.toml",
        port,
        "mfa = \"optional\"\nmfa_key_env = \"MTX_AUTH_MFA_KEY\"",
        "",
    );
    // The links as the docs show them; the browser is sent to the fake player for the two
    // addresses it frames (`Driver::connect`).
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("streams.test", "streams.example.com")
        .replace(
            "https://streams.example.com:888",
            "http://streams.example.com:888",
        );
    std::fs::write(&path, text).unwrap();
    let server = start(&path);
    let app = server.app();

    let driver = Driver::start(&chromedriver);
    let c = driver.connect(&chromium, &player.addr).await;
    let p = Page {
        c,
        base: format!("http://127.0.0.1:{port}"),
        shots,
    };

    // Sign in.
    p.c.goto(&format!("{}/login", p.base)).await.unwrap();
    assert_eq!(p.landed_on("Sign in").await, "/login");
    // The stylesheet was let in (the page's background is its --bg, not the browser's white).
    assert_eq!(
        p.js("return getComputedStyle(document.body).backgroundColor")
            .await,
        json!("rgb(247, 247, 248)"),
        "portal.css did not apply"
    );
    p.shoot("login").await;
    p.type_into("input[name=username]", "alice").await;
    p.type_into("input[name=password]", "alice-pw").await;
    p.press("//form", "Sign in").await;
    assert_eq!(p.landed_on("Your streams").await, "/");

    // Two-factor sign-in: the key from the page, the code an app would show.
    p.press("//header", "Two-factor").await;
    assert_eq!(p.landed_on("Two-factor sign-in").await, "/mfa/enroll");
    p.press("//main", "Set up").await;
    let secret = p.appears("#secret").await.text().await.unwrap();
    assert!(secret.len() >= 16, "{secret:?}");
    p.find("figure.qr svg").await;
    p.shoot("enroll").await;
    let now = mtx_auth::time::now_unix();
    let code = |t: i64| mtx_auth::portal::mfa::code_for_base32(&secret, t).unwrap();
    p.type_into("input[name=code]", &code(now)).await;
    p.press("//main", "Turn on").await;
    assert_eq!(p.landed_on("Recovery codes").await, "/mfa/enroll/verify");
    let mut codes = Vec::new();
    for li in p.c.find_all(Locator::Css("ol.codes li")).await.unwrap() {
        codes.push(li.text().await.unwrap());
    }
    assert_eq!(codes.len(), 10, "{codes:?}");
    codes.sort();
    codes.dedup();
    assert_eq!(codes.len(), 10, "ten different codes");
    p.shoot("recovery-codes").await;

    // Sign out; signing in again now asks for a code. The enrollment's time step is spent
    // (a code is accepted once), so the next step's code.
    p.press("//header", "Sign out").await;
    assert_eq!(p.landed_on("Sign in").await, "/login");
    p.type_into("input[name=username]", "alice").await;
    p.type_into("input[name=password]", "alice-pw").await;
    p.press("//form", "Sign in").await;
    assert_eq!(p.landed_on("Second factor").await, "/mfa");
    p.shoot("mfa").await;
    let fresh = code(mtx_auth::time::now_unix() + 30);
    p.type_into("input[name=code]", &fresh).await;
    p.press("//main", "Continue").await;
    assert_eq!(p.landed_on("Your streams").await, "/");

    // A link for cam1: its URLs carry a credential that opens cam1 on /auth, and only cam1.
    let cam1 = "//tr[td/code[normalize-space()='cam1']]";
    p.press(cam1, "Link").await;
    p.appears("section.new-link").await;
    let rtsp = p
        .find("input.copy[aria-label=RTSP]")
        .await
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        rtsp.starts_with("rtsp://viewer:mtxa_") && rtsp.ends_with("@streams.example.com:8554/cam1"),
        "{rtsp}"
    );
    let token = credential_in(&rtsp);
    let inputs = p.c.find_all(Locator::Css("input.copy")).await.unwrap();
    assert_eq!(inputs.len(), 5, "RTSP, HLS, WebRTC, SRT, RTMP");
    for input in inputs {
        let url = input.prop("value").await.unwrap().unwrap_or_default();
        assert_eq!(
            credential_in(&url),
            token,
            "one credential in every URL: {url}"
        );
    }
    let read = |path: &str| mtx_request("read", path, "10.0.0.1", "viewer", &token);
    let (status, body) = app.auth(&read("cam1")).await;
    assert_eq!(
        (status, body["user"].as_str()),
        (200, Some("alice")),
        "{body}"
    );
    assert_eq!(app.status(&read("cam2")).await, 401);

    // The copy button (portal.js, let in by the CSP): it says "Copied", or, where the browser
    // refuses the clipboard, selects the URL for the person to copy.
    p.find("dl.urls dd button.copy")
        .await
        .click()
        .await
        .unwrap();
    let copy_state = "const b = document.querySelector('dl.urls dd button.copy');\
        const i = b.parentElement.querySelector('input.copy');\
        return {text: b.textContent, selected: document.activeElement === i\
          && i.selectionStart === 0 && i.selectionEnd === i.value.length && i.value.length > 0};";
    let mut state = Value::Null;
    for _ in 0..20 {
        state = p.js(copy_state).await;
        if state["text"] == json!("Copied") || state["selected"] == json!(true) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        state["text"] == json!("Copied") || state["selected"] == json!(true),
        "the copy button did nothing (did the CSP block portal.js?): {state}"
    );
    if state["text"] == json!("Copied") && allow_clipboard_read(&p.c).await.is_ok() {
        // What was copied, where the browser lets the page read it back.
        let read_back = "const done = arguments[arguments.length - 1];\
            navigator.clipboard.readText().then(done, () => done(null));";
        let copied = p.c.execute_async(read_back, vec![]).await.unwrap();
        if let Some(copied) = copied.as_str() {
            assert_eq!(copied, rtsp, "the clipboard holds the RTSP URL");
        }
    }

    // Watch: another link, and the player frames MediaMTX's reader page with it.
    p.press(cam1, "Watch").await;
    let frame = p.appears("iframe.player").await.attr("src").await.unwrap();
    let frame = frame.unwrap_or_default();
    assert!(
        frame.starts_with("http://streams.example.com:8889/cam1/?token=mtxa_"),
        "{frame}"
    );
    assert_ne!(credential_in(&frame), token, "a new link for the player");
    assert_eq!(app.status(&read("cam1")).await, 200);
    assert_eq!(
        p.c.find_all(Locator::Css("table.links tbody tr"))
            .await
            .unwrap()
            .len(),
        2,
        "both links are listed"
    );
    p.shoot("streams").await;

    // The administrator's page: who is signed in, and the links in force.
    p.press("//header", "Admin").await;
    assert_eq!(p.landed_on("Administration").await, "/admin");
    let admin = p.text().await;
    assert!(admin.contains("alice") && admin.contains("cam1"), "{admin}");
    p.shoot("admin").await;

    // Nothing the pages use was refused by the Content-Security-Policy.
    let said = console(&p.c).await;
    let csp: Vec<&String> = said
        .iter()
        .filter(|l| l.contains("Content Security Policy") || l.contains("Content-Security-Policy"))
        .collect();
    assert!(csp.is_empty(), "the console: {csp:#?}");

    p.c.close().await.unwrap();
    let logs = server.logs();
    assert!(
        !logs.contains(&secret) && !logs.contains(&token),
        "no secret in logs"
    );
}
