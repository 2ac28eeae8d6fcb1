//! A real OpenID provider for interop tests: panva's `oidc-provider` (Node), run from
//! `tests/oidc/provider.mjs` as a child process on a random loopback port. See that file for what
//! it is configured with.
//!
//! Needs `node` (>= 20.19) and, the first time, `npm` and the npm registry: `start` runs
//! `npm ci` in tests/oidc when tests/oidc/node_modules is missing.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

/// The client of the JWT and `[oidc]` tests (confidential, client_credentials only).
pub const CLIENT_ID: &str = "mtx-auth";
pub const CLIENT_SECRET: &str = "mtx-auth-test-secret";
/// The portal's client (confidential, authorization code with PKCE; its redirect URIs are
/// [`PortalOptions::redirect_uris`]).
pub const PORTAL_CLIENT_ID: &str = "mtx-portal";
pub const PORTAL_CLIENT_SECRET: &str = "mtx-portal-test-secret";
/// The resource indicator (and the access tokens' `aud`).
pub const RESOURCE: &str = "urn:mediamtx";

/// How long `start` waits for the provider's READY line (npm ci, if needed, is not counted).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct OidcProvider {
    child: Child,
    /// Held open: the provider exits when its stdin closes, so it cannot outlive this process.
    _stdin: Option<ChildStdin>,
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub issuer: String,
    output: Arc<Mutex<String>>,
}

/// Options for [`OidcProvider::start_with`].
#[derive(Debug, Clone, Default)]
pub struct OidcOptions {
    /// Replaces the default `mediamtx_permissions` claim
    /// (`[{"action":"read","path":"cam"},{"action":"publish","path":"~^live/"}]`).
    pub permissions: Option<Value>,
    /// Sign access tokens with ES256 instead of RS256.
    pub es256: bool,
}

/// The portal client's settings, for [`OidcProvider::start_for_portal`].
#[derive(Debug, Clone, Default)]
pub struct PortalOptions {
    /// Its redirect URIs (e.g. `http://127.0.0.1:PORT/login/oidc/callback`).
    pub redirect_uris: Vec<String>,
    /// Hold it to `client_secret_post`: Basic credentials get `invalid_client` (by default it
    /// may use either).
    pub secret_post: bool,
    /// No userinfo endpoint: the scopes' claims (e-mail, names, groups) are in its ID tokens.
    /// By default only userinfo has them.
    pub claims_in_id_token: bool,
    /// Replaces the accounts: a JSON object, login name → claims (with `sub`). The defaults:
    /// `jane` (verified jane@example.com, groups viewers and streamers), `mallory`
    /// (jane@example.com unverified, group viewers), `anon` (a `sub` only). The login name
    /// `deny` ends the sign-in with `error=access_denied`.
    pub accounts: Option<Value>,
}

fn oidc_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("oidc")
}

/// Runs `npm ci` in tests/oidc unless node_modules is there; once per process.
fn ensure_installed() -> Result<(), String> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = oidc_dir();
    if dir.join("node_modules").join("oidc-provider").is_dir() {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run npm (is it installed?): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "npm ci in {} failed ({}):\n{}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Copies a child's stream into `sink`, line by line; the first `READY <url>` line goes to
/// `ready` as well.
fn drain(
    stream: impl Read + Send + 'static,
    sink: Arc<Mutex<String>>,
    ready: mpsc::Sender<String>,
) {
    std::thread::spawn(move || {
        let mut ready = Some(ready);
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("READY ") {
                if let Some(tx) = ready.take() {
                    let _ = tx.send(url.trim().to_string());
                }
            }
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            sink.push_str(&line);
            sink.push('\n');
        }
    });
}

impl OidcProvider {
    /// Starts the provider with its defaults (RS256, the default permissions). Panics, with
    /// the provider's output, if it does not come up. Blocks the calling thread until it is ready
    /// (about a second; longer the first time, for `npm ci`).
    pub fn start() -> OidcProvider {
        Self::start_with(OidcOptions::default())
    }

    pub fn start_with(options: OidcOptions) -> OidcProvider {
        Self::try_start_with(options).unwrap_or_else(|e| panic!("OIDC provider: {e}"))
    }

    /// As [`OidcProvider::start_with`], but an error instead of a panic (e.g. to skip a test
    /// where node is missing).
    pub fn try_start_with(options: OidcOptions) -> Result<OidcProvider, String> {
        Self::try_start_full(options, &PortalOptions::default())
    }

    /// Starts the provider with its defaults and the portal client as `portal` says. Panics,
    /// with the provider's output, if it does not come up.
    pub fn start_for_portal(portal: &PortalOptions) -> OidcProvider {
        Self::try_start_full(OidcOptions::default(), portal)
            .unwrap_or_else(|e| panic!("OIDC provider: {e}"))
    }

    /// As [`OidcProvider::try_start_with`], with the portal client's settings too.
    ///
    /// A provider that has not said READY within [`READY_TIMEOUT`] is killed and started once
    /// more: once in a CI run, on a loaded machine, one printed its start-up warning and then
    /// nothing for a minute (where it usually takes half a second). A second silence fails,
    /// with both outputs.
    pub fn try_start_full(
        options: OidcOptions,
        portal: &PortalOptions,
    ) -> Result<OidcProvider, String> {
        ensure_installed()?;
        Self::start_once(&options, portal).or_else(|first| {
            eprintln!("OIDC provider: starting again: {first}");
            Self::start_once(&options, portal)
                .map_err(|second| format!("{second}\n--- the first attempt: {first}"))
        })
    }

    fn start_once(options: &OidcOptions, portal: &PortalOptions) -> Result<OidcProvider, String> {
        let mut cmd = Command::new("node");
        cmd.arg(oidc_dir().join("provider.mjs"))
            .arg("0")
            .current_dir(oidc_dir())
            .env("NODE_NO_WARNINGS", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = &options.permissions {
            cmd.env("OIDC_MEDIAMTX_PERMISSIONS", p.to_string());
        }
        if options.es256 {
            cmd.env("OIDC_ALG", "ES256");
        }
        if !portal.redirect_uris.is_empty() {
            cmd.env("OIDC_PORTAL_REDIRECT_URIS", portal.redirect_uris.join(","));
        }
        if portal.secret_post {
            cmd.env("OIDC_PORTAL_AUTH_METHOD", "client_secret_post");
        }
        if portal.claims_in_id_token {
            cmd.env("OIDC_PORTAL_ID_TOKEN_CLAIMS", "1");
        }
        if let Some(a) = &portal.accounts {
            cmd.env("OIDC_PORTAL_ACCOUNTS", a.to_string());
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run node (is it installed?): {e}"))?;
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        drain(child.stdout.take().unwrap(), output.clone(), tx.clone());
        drain(child.stderr.take().unwrap(), output.clone(), tx);
        let stdin = child.stdin.take();
        let mut provider = OidcProvider {
            child,
            _stdin: stdin,
            issuer: String::new(),
            output,
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(issuer) => {
                provider.issuer = issuer;
                Ok(provider)
            }
            Err(_) => {
                let state = match provider.child.try_wait() {
                    Ok(Some(status)) => format!("it exited ({status})"),
                    _ => "it was still running".to_string(),
                };
                let _ = provider.child.kill();
                let _ = provider.child.wait();
                Err(format!(
                    "no READY line within {READY_TIMEOUT:?} ({state}); its output:\n{}",
                    provider.output()
                ))
            }
        }
    }

    /// `<issuer>/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.issuer)
    }

    /// `<issuer>/jwks` (what the discovery document's jwks_uri says).
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.issuer)
    }

    /// `<issuer>/token`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.issuer)
    }

    /// Everything the provider printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The discovery document.
    pub async fn discovery(&self) -> Value {
        reqwest::get(self.discovery_url())
            .await
            .expect("discovery answers")
            .error_for_status()
            .expect("discovery succeeds")
            .json()
            .await
            .expect("discovery is JSON")
    }

    /// A fresh access token (a JWT: typ "at+jwt", aud urn:mediamtx, with mediamtx_permissions)
    /// from the client_credentials grant.
    pub async fn client_credentials_token(&self) -> String {
        let body = self
            .token_request(&[
                ("grant_type", "client_credentials"),
                ("client_id", CLIENT_ID),
                ("client_secret", CLIENT_SECRET),
                ("resource", RESOURCE),
            ])
            .await;
        body["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("token response has no access_token: {body}"))
            .to_string()
    }

    /// POSTs `form` to the token endpoint; returns the JSON answer (success or OAuth error).
    pub async fn token_request(&self, form: &[(&str, &str)]) -> Value {
        reqwest::Client::new()
            .post(self.token_url())
            .form(form)
            .send()
            .await
            .expect("token endpoint answers")
            .json()
            .await
            .expect("token endpoint answers JSON")
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
