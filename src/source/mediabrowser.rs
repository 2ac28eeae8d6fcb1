//! Jellyfin and Emby accounts. Jellyfin is a fork of Emby ("MediaBrowser"): the same login and
//! user objects, different headers.
//!
//! - A user name and password go to `POST /Users/AuthenticateByName`. The session that login
//!   creates is ours: it carries a `DeviceId` derived from the user name (so the server's device
//!   list holds one mtx-auth entry per user, and a new login replaces the last one instead of
//!   adding to the list), and it is logged out at once.
//! - An access token is checked with Jellyfin's current-user call (`GET /Users/Me`), and left
//!   alone: it is the viewer's. Emby has no such call (only `GET /Users/{id}`, and a token
//!   alone doesn't say whose it is), so Emby accounts log in with a name and password only.
//! - Jellyfin 10.12 ignores the legacy `X-Emby-*` headers and answers such requests as
//!   anonymous, so only `Authorization: MediaBrowser …` is sent to Jellyfin. Emby gets its own
//!   `X-Emby-Authorization` / `X-Emby-Token`.
//!
//! A disabled account is a rejection even if the server let the login through.

use std::sync::Arc;

use serde::Deserialize;

use crate::config::reader::Table;
use crate::decision::AccountToken;
use crate::permission::Action;
use crate::source::account::settings::AccountSettings;
use crate::source::backend::{
    device_id, AccountKind, Backend, BoxFuture, CheckError, Credentials, Identity, OwnedCredentials,
};
use crate::source::upstream::{self, UpstreamError};

/// `[jellyfin]`.
pub const JELLYFIN: AccountKind = AccountKind {
    name: "jellyfin",
    default_actions: &[Action::Read, Action::Playback],
    config_permissions: true,
    portal_admins: false,
    read: |t, settings| read(Flavor::Jellyfin, t, settings),
};

/// `[emby]`.
pub const EMBY: AccountKind = AccountKind {
    name: "emby",
    default_actions: &[Action::Read, Action::Playback],
    config_permissions: true,
    portal_admins: false,
    read: |t, settings| read(Flavor::Emby, t, settings),
};

/// The section's own keys: `url` (required) and `local_networks` (the server knows which
/// accounts may stream from outside; it sees our address, not the viewer's, so we enforce it).
fn read(
    flavor: Flavor,
    t: &mut Table<'_>,
    settings: &mut AccountSettings,
) -> Option<Arc<dyn Backend>> {
    settings.local_networks = t.networks("local_networks");
    let url = t.url("url");
    if url.is_none() && !t.has("url") {
        t.problem(format!("[{}] needs url", flavor.name()));
    }
    // An administrator's API key: lets the sessions of a login be checked again (the login's
    // own session is logged out at once, and the password is never sent twice).
    let api_key = t.secret("api_key", "api_key_file", "api_key_env")?;
    let mut backend = MediaBrowser::new(flavor, &url?, settings.timeout);
    backend.api_key = api_key.map(|k| k.0);
    Some(Arc::new(backend))
}

/// Which of the two servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Jellyfin,
    Emby,
}

impl Flavor {
    /// The config section and the name in logs.
    fn name(self) -> &'static str {
        match self {
            Flavor::Jellyfin => "jellyfin",
            Flavor::Emby => "emby",
        }
    }
}

pub struct MediaBrowser {
    flavor: Flavor,
    /// Without a trailing slash.
    url: String,
    http: reqwest::Client,
    /// `api_key`: an administrator's key, to ask about an account again by its id.
    api_key: Option<String>,
}

/// `AuthenticateByName`'s answer (`AuthenticationResult`), the fields we read.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AuthResult {
    user: UserDto,
    access_token: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserDto {
    name: String,
    #[serde(default)]
    id: String,
    policy: UserPolicy,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UserPolicy {
    is_administrator: bool,
    is_disabled: bool,
    #[serde(default = "yes")]
    enable_remote_access: bool,
}

fn yes() -> bool {
    true
}

impl Backend for MediaBrowser {
    fn accepts(&self, creds: &Credentials) -> bool {
        self.checks_tokens() || matches!(creds, Credentials::Login { .. })
    }

    fn check<'a>(
        &'a self,
        creds: &'a OwnedCredentials,
    ) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(self.check_now(creds))
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.probe_now())
    }

    fn upstream(&self) -> String {
        self.url.clone()
    }

    fn recheck<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(async move {
            match handle.strip_prefix(USER_ID) {
                Some(id) => self.user_by_id(id).await,
                None => self.current_user(handle).await,
            }
        })
    }
}

/// Marks a recheck handle that is an account's id (asked with the administrator's key), not a
/// token.
const USER_ID: &str = "id:";

impl MediaBrowser {
    pub fn new(flavor: Flavor, url: &str, timeout: std::time::Duration) -> Self {
        MediaBrowser {
            flavor,
            url: url.trim_end_matches('/').to_owned(),
            http: upstream::client(timeout),
            api_key: None,
        }
    }

    fn server_name(&self) -> &'static str {
        self.flavor.name()
    }

    /// Jellyfin can tell whose a token is; Emby cannot.
    pub fn checks_tokens(&self) -> bool {
        self.flavor == Flavor::Jellyfin
    }

    async fn check_now(&self, creds: &OwnedCredentials) -> Result<Identity, CheckError> {
        match creds {
            OwnedCredentials::Login { user, password } => self.login(user, password).await,
            OwnedCredentials::Token(token) if self.checks_tokens() => {
                self.current_user(token).await
            }
            OwnedCredentials::Token(_) => Err(CheckError::Rejected("emby cannot check tokens")),
        }
    }

    /// `GET /System/Info/Public`: answers without credentials on both servers.
    async fn probe_now(&self) -> Result<(), String> {
        let resp = self
            .http
            .get(format!("{}/System/Info/Public", self.url))
            .send()
            .await
            .map_err(|e| UpstreamError::from(e).to_string())?;
        upstream::success_json(resp)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The client description the servers require on every call. `"` cannot occur in any of
    /// our values (the device id is hex, the token is checked by the caller).
    fn authorization(&self, device: &str, token: Option<&str>) -> (&'static str, String) {
        let (header, scheme) = match self.flavor {
            Flavor::Jellyfin => ("Authorization", "MediaBrowser"),
            Flavor::Emby => ("X-Emby-Authorization", "Emby"),
        };
        let mut value = format!(
            r#"{scheme} Client="mtx-auth", Device="mtx-auth", DeviceId="{device}", Version="{}""#,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(token) = token {
            value.push_str(&format!(r#", Token="{token}""#));
        }
        (header, value)
    }

    async fn login(&self, user: &str, password: &str) -> Result<Identity, CheckError> {
        let device = device_id(&self.url, user);
        let (header, value) = self.authorization(&device, None);
        let resp = self
            .http
            .post(format!("{}/Users/AuthenticateByName", self.url))
            .header(header, value)
            .json(&serde_json::json!({ "Username": user, "Pw": password }))
            .send()
            .await
            .map_err(UpstreamError::from)?;
        match resp.status().as_u16() {
            200 => {}
            // 401: wrong name or password. 403: the account is disabled or locked out.
            401 | 403 => return Err(CheckError::Rejected("login refused")),
            status => return Err(UpstreamError::Status(status).into()),
        }
        let body = upstream::read_json(resp).await?;
        let auth: AuthResult = serde_json::from_value(body)
            .map_err(|e| CheckError::from(UpstreamError::Invalid(e.to_string())))?;
        self.spawn_logout(device, auth.access_token);
        let id = auth.user.id.clone();
        let mut identity = identity(auth.user)?;
        if self.api_key.is_some() && !id.is_empty() {
            identity.recheck = Some(AccountToken(format!("{USER_ID}{id}").into()));
        }
        Ok(identity)
    }

    /// `GET /Users/{id}` with the administrator's key: the account as the server has it now.
    async fn user_by_id(&self, id: &str) -> Result<Identity, CheckError> {
        let Some(key) = &self.api_key else {
            return Err(CheckError::Unreachable("no api_key".into()));
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(CheckError::Rejected("malformed account id"));
        }
        let resp = self.get_with_token(&format!("/Users/{id}"), key).await?;
        match resp.status().as_u16() {
            200 => {}
            // The account is gone.
            404 => return Err(CheckError::Rejected("account removed")),
            // The key itself is refused: say nothing about the account (nothing is kicked).
            status => return Err(UpstreamError::Status(status).into()),
        }
        identity(read_user(resp).await?)
    }

    /// A `GET` carrying `token` as each server expects it.
    async fn get_with_token(
        &self,
        path: &str,
        token: &str,
    ) -> Result<reqwest::Response, CheckError> {
        let device = device_id(&self.url, "");
        let mut request = self.http.get(format!("{}{path}", self.url));
        request = match self.flavor {
            Flavor::Jellyfin => {
                let (header, value) = self.authorization(&device, Some(token));
                request.header(header, value)
            }
            Flavor::Emby => {
                let (header, value) = self.authorization(&device, None);
                request.header(header, value).header("X-Emby-Token", token)
            }
        };
        Ok(request.send().await.map_err(UpstreamError::from)?)
    }

    /// Ends the session our login created, in the background: the decision doesn't wait.
    fn spawn_logout(&self, device: String, token: String) {
        let url = format!("{}/Sessions/Logout", self.url);
        let mut request = self.http.post(url);
        request = match self.flavor {
            Flavor::Jellyfin => {
                let (header, value) = self.authorization(&device, Some(&token));
                request.header(header, value)
            }
            Flavor::Emby => {
                let (header, value) = self.authorization(&device, None);
                request.header(header, value).header("X-Emby-Token", token)
            }
        };
        let server = self.server_name();
        tokio::spawn(async move {
            match request.send().await {
                Ok(resp) if resp.status().is_success() => {}
                Ok(resp) => {
                    tracing::debug!(server, status = resp.status().as_u16(), "logout refused")
                }
                Err(e) => tracing::debug!(server, error = %UpstreamError::from(e), "logout failed"),
            }
        });
    }

    /// Jellyfin's `GET /Users/Me` with the viewer's token.
    async fn current_user(&self, token: &str) -> Result<Identity, CheckError> {
        // A quote or control character would break out of the header value: not a token.
        if token.is_empty()
            || token.len() > 512
            || !token.bytes().all(|b| b.is_ascii_graphic() && b != b'"')
        {
            return Err(CheckError::Rejected("malformed token"));
        }
        let resp = self.get_with_token("/Users/Me", token).await?;
        match resp.status().as_u16() {
            200 => {}
            // 401: unknown token or disabled account. 400: an API key, which names no user.
            // 403: no remote access from where we call.
            400 | 401 | 403 => return Err(CheckError::Rejected("token refused")),
            status => return Err(UpstreamError::Status(status).into()),
        }
        let mut identity = identity(read_user(resp).await?)?;
        // The client's own token asks again.
        identity.recheck = Some(AccountToken(token.into()));
        Ok(identity)
    }
}

async fn read_user(resp: reqwest::Response) -> Result<UserDto, CheckError> {
    let body = upstream::read_json(resp).await?;
    serde_json::from_value(body)
        .map_err(|e| CheckError::from(UpstreamError::Invalid(e.to_string())))
}

fn identity(user: UserDto) -> Result<Identity, CheckError> {
    if user.policy.is_disabled {
        return Err(CheckError::Rejected("account disabled"));
    }
    Ok(Identity {
        id: (!user.id.is_empty()).then(|| user.id.to_lowercase()),
        name: user.name,
        admin: user.policy.is_administrator,
        remote_access: user.policy.enable_remote_access,
        permissions: None,
        extra_permissions: Vec::new(),
        valid_for: None,
        recheck: None,
    })
}
