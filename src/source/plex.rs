//! Plex accounts, checked against plex.tv.
//!
//! A plex.tv token identifies the account (`GET /api/v2/user`); the account's resource list
//! (`GET /api/v2/resources`) says whether it may use the configured server, and whether it owns
//! it. The token comes in the `token` field or as the password (any user name: RTSP clients need
//! one). With `password_login = true`, a user name and password are instead exchanged for a token
//! at `POST /api/v2/users/signin` first; Plex discourages that for third-party apps, hence opt-in.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::config::reader::Table;
use crate::decision::AccountToken;
use crate::permission::Action;
use crate::source::account::settings::AccountSettings;
use crate::source::backend::{
    device_id, AccountKind, Backend, BoxFuture, CheckError, Credentials, Identity, NewPin,
    OwnedCredentials, PinFlow,
};
use crate::source::upstream::{self, UpstreamError};

pub const DEFAULT_API_URL: &str = "https://plex.tv";

/// `[plex]`.
pub const PLEX: AccountKind = AccountKind {
    name: "plex",
    default_actions: &[Action::Read, Action::Playback],
    config_permissions: true,
    portal_admins: false,
    read,
};

/// Where the portal sends people to approve a PIN (`[plex] app_url`).
pub const DEFAULT_APP_URL: &str = "https://app.plex.tv";

/// Our `X-Plex-Product`: what plex.tv shows the person approving a PIN.
const PRODUCT: &str = "mtx-auth";

/// The section's own keys: `server` (required), `api_url`, `app_url`, `password_login`.
fn read(t: &mut Table<'_>, settings: &mut AccountSettings) -> Option<Arc<dyn Backend>> {
    let server = match t.string("server") {
        Some(s) if !s.value.is_empty() => Some(s.value),
        Some(s) => {
            t.errs().push(s.span, "server: must not be empty".into());
            None
        }
        None => {
            if !t.has("server") {
                t.problem("[plex] needs server (the server's machine identifier or name)".into());
            }
            None
        }
    };
    let api_url = match t.url("api_url") {
        Some(u) => u,
        None if t.has("api_url") => return None,
        None => DEFAULT_API_URL.to_owned(),
    };
    let app_url = match t.url("app_url") {
        Some(u) => u.trim_end_matches('/').to_owned(),
        None if t.has("app_url") => return None,
        None => DEFAULT_APP_URL.to_owned(),
    };
    let password_login = t.bool("password_login").unwrap_or(false);
    let mut plex = Plex::new(&api_url, &server?, password_login, settings.timeout);
    plex.app_url = app_url;
    Some(Arc::new(plex))
}

pub struct Plex {
    /// Without a trailing slash.
    api_url: String,
    /// Machine identifier or name of the server whose users are let in.
    server: String,
    password_login: bool,
    /// The sign-in page of the PIN flow, without a trailing slash.
    app_url: String,
    /// Our `X-Plex-Client-Identifier`: stable, ours alone.
    client_id: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct PlexUser {
    /// plex.tv's account id (a number).
    #[serde(default)]
    id: Option<serde_json::Value>,
    #[serde(default)]
    username: String,
    #[serde(default)]
    title: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Resource {
    #[serde(default)]
    name: String,
    #[serde(default)]
    client_identifier: String,
    #[serde(default)]
    provides: String,
    #[serde(default)]
    owned: bool,
}

impl Backend for Plex {
    fn accepts(&self, _: &Credentials) -> bool {
        true
    }

    /// Without `password_login` the name is ignored (the password is a token): counting it
    /// would let two typos by anyone turn away everyone typing that name.
    fn names_accounts(&self) -> bool {
        self.password_login
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
        self.api_url.clone()
    }

    fn pin_flow(&self) -> Option<&dyn PinFlow> {
        Some(self)
    }

    fn recheck<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(async move {
            self.check_now(&OwnedCredentials::Token(handle.to_owned()))
                .await
        })
    }
}

/// plex.tv's PIN flow (`POST /api/v2/pins?strong=true`, then `GET /api/v2/pins/{id}` until
/// it carries an `authToken`): the person signs in at plex.tv, never here, and we get a token
/// that is checked like any other (the account must have the configured server).
impl PinFlow for Plex {
    fn start(&self) -> BoxFuture<'_, Result<NewPin, CheckError>> {
        Box::pin(async move {
            let resp = self
                .request(reqwest::Method::POST, "/api/v2/pins")
                .query(&[("strong", "true")])
                .send()
                .await
                .map_err(UpstreamError::from)?;
            if !matches!(resp.status().as_u16(), 200 | 201) {
                return Err(UpstreamError::Status(resp.status().as_u16()).into());
            }
            let body: PlexPin = serde_json::from_value(upstream::read_json(resp).await?)
                .map_err(|e| CheckError::from(UpstreamError::Invalid(e.to_string())))?;
            let mut auth_url = reqwest::Url::parse(&self.app_url)
                .map_err(|e| CheckError::Unreachable(format!("app_url: {e}")))?;
            auth_url.set_path("/auth");
            let fragment: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("clientID", &self.client_id)
                .append_pair("code", &body.code)
                .append_pair("context[device][product]", PRODUCT)
                .finish();
            auth_url.set_fragment(Some(&format!("?{fragment}")));
            Ok(NewPin {
                id: body.id,
                auth_url: auth_url.into(),
            })
        })
    }

    fn poll(&self, id: u64) -> BoxFuture<'_, Result<Option<String>, CheckError>> {
        Box::pin(async move {
            let resp = self
                .request(reqwest::Method::GET, &format!("/api/v2/pins/{id}"))
                .send()
                .await
                .map_err(UpstreamError::from)?;
            match resp.status().as_u16() {
                200 => {}
                // Expired, or not made by this client identifier.
                404 => return Err(CheckError::Rejected("PIN expired")),
                status => return Err(UpstreamError::Status(status).into()),
            }
            let body: PlexPin = serde_json::from_value(upstream::read_json(resp).await?)
                .map_err(|e| CheckError::from(UpstreamError::Invalid(e.to_string())))?;
            Ok(body.auth_token.filter(|t| !t.is_empty()))
        })
    }
}

/// What plex.tv says of a PIN.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PlexPin {
    id: u64,
    #[serde(default)]
    code: String,
    #[serde(default)]
    auth_token: Option<String>,
}

impl Plex {
    pub fn new(
        api_url: &str,
        server: &str,
        password_login: bool,
        timeout: std::time::Duration,
    ) -> Self {
        Plex {
            api_url: api_url.trim_end_matches('/').to_owned(),
            server: server.to_owned(),
            password_login,
            app_url: DEFAULT_APP_URL.to_owned(),
            client_id: device_id(api_url, server),
            http: upstream::client(timeout),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.api_url))
            .header("Accept", "application/json")
            .header("X-Plex-Client-Identifier", &self.client_id)
            .header("X-Plex-Product", PRODUCT)
            .header("X-Plex-Version", env!("CARGO_PKG_VERSION"))
    }

    async fn check_now(&self, creds: &OwnedCredentials) -> Result<Identity, CheckError> {
        let signed_in;
        let token = match creds {
            OwnedCredentials::Token(token) => token.as_str(),
            OwnedCredentials::Login { user, password } if self.password_login => {
                signed_in = self.sign_in(user, password).await?;
                signed_in.as_str()
            }
            OwnedCredentials::Login { password, .. } => password.as_str(),
        };
        if token.len() > 512 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CheckError::Rejected("malformed token"));
        }
        let user: PlexUser = self.get(token, "/api/v2/user").await?;
        let resources: Vec<Resource> = self
            .get(token, "/api/v2/resources?includeHttps=1&includeRelay=1")
            .await?;
        let server = resources
            .iter()
            .filter(|r| r.provides.split(',').any(|p| p.trim() == "server"))
            .find(|r| r.client_identifier == self.server || r.name == self.server)
            .ok_or(CheckError::Rejected("no access to the configured server"))?;
        let name = if user.username.is_empty() {
            user.title
        } else {
            user.username
        };
        if name.is_empty() {
            return Err(CheckError::from(UpstreamError::Invalid(
                "user has no username".into(),
            )));
        }
        Ok(Identity {
            id: user.id.as_ref().map(|id| match id {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
            name,
            admin: server.owned,
            remote_access: true,
            permissions: None,
            extra_permissions: Vec::new(),
            valid_for: None,
            // The plex.tv token (the client's, or the one a password sign-in returned) asks
            // again whether the account still has the server.
            recheck: Some(AccountToken(token.into())),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
    ) -> Result<T, CheckError> {
        let resp = self
            .request(reqwest::Method::GET, path)
            .header("X-Plex-Token", token)
            .send()
            .await
            .map_err(UpstreamError::from)?;
        match resp.status().as_u16() {
            200 => {}
            401 | 403 => return Err(CheckError::Rejected("token refused")),
            status => return Err(UpstreamError::Status(status).into()),
        }
        let body = upstream::read_json(resp).await?;
        serde_json::from_value(body)
            .map_err(|e| CheckError::from(UpstreamError::Invalid(e.to_string())))
    }

    async fn sign_in(&self, user: &str, password: &str) -> Result<String, CheckError> {
        let resp = self
            .request(reqwest::Method::POST, "/api/v2/users/signin")
            .form(&[("login", user), ("password", password)])
            .send()
            .await
            .map_err(UpstreamError::from)?;
        match resp.status().as_u16() {
            200 | 201 => {}
            // 401: wrong login; 422/400: e.g. a two-factor code is needed.
            400 | 401 | 403 | 422 => return Err(CheckError::Rejected("sign-in refused")),
            status => return Err(UpstreamError::Status(status).into()),
        }
        let body: Value = upstream::read_json(resp).await?;
        body["authToken"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| {
                CheckError::from(UpstreamError::Invalid(
                    "sign-in answer has no authToken".into(),
                ))
            })
    }

    /// Any HTTP answer from the user call without a token (plex.tv says 401) shows the API is
    /// there.
    async fn probe_now(&self) -> Result<(), String> {
        let resp = self
            .request(reqwest::Method::GET, "/api/v2/user")
            .send()
            .await
            .map_err(|e| UpstreamError::from(e).to_string())?;
        match resp.status().as_u16() {
            200 | 401 | 403 => Ok(()),
            status => Err(UpstreamError::Status(status).to_string()),
        }
    }
}
