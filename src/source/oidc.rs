//! OIDC password login: a user name and password exchanged at the provider's token endpoint.
//!
//! RTSP and SRT clients can send only a user name and a password, yet the accounts live in
//! Keycloak or Authentik. With `[oidc]`, a login no other source claims is sent to the token
//! endpoint with the resource-owner password grant (as MediaMTX's Keycloak guide does with
//! curl); the access token that comes back is verified against the provider's keys and mapped
//! to permissions exactly like a `[jwt]` token (claim and roles). The provider's own brute-force
//! protection still applies; the shared failure limit keeps us from tripping it for a viewer.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use crate::config::reader::Secret;
use crate::config::reader::Table;
use crate::source::account::settings::AccountSettings;
use crate::source::backend::{
    AccountKind, Backend, BoxFuture, CheckError, Credentials, Identity, OwnedCredentials,
};
use crate::source::jwks::{FetchPolicy, KeySource, KeyStore};
use crate::source::jwt::{self, Jwt, JwtError};
use crate::source::upstream::{self, UpstreamError};

/// `[oidc]`: the token's claim and `[[oidc.roles]]` give permissions, not the section.
pub const OIDC: AccountKind = AccountKind {
    name: "oidc",
    default_actions: &[],
    config_permissions: false,
    portal_admins: false,
    read,
};

/// The section's own keys: the provider and client, and how its tokens are validated (the
/// keys it shares with `[jwt]`, read by `jwt::config::read_shared`).
fn read(t: &mut Table<'_>, settings: &mut AccountSettings) -> Option<Arc<dyn Backend>> {
    let errs = t.errs();
    let discovery_url = t.url("discovery_url");
    if discovery_url.is_none() && !t.has("discovery_url") {
        t.problem("[oidc] needs discovery_url".into());
    }
    let token_endpoint = t.url("token_endpoint");
    let client_id = match t.string("client_id") {
        Some(id) if !id.value.is_empty() => Some(id.value),
        Some(id) => {
            errs.push(id.span, "client_id: must not be empty".into());
            None
        }
        None => {
            if !t.has("client_id") {
                t.problem("[oidc] needs client_id".into());
            }
            None
        }
    };
    let client_secret = t.secret("client_secret", "client_secret_file", "client_secret_env");
    let scope = t
        .string("scope")
        .map_or_else(|| "openid".to_owned(), |s| s.value);
    let fetch = FetchPolicy {
        timeout: settings.timeout,
        ..FetchPolicy::default()
    };
    let config = jwt::config::read_shared(
        t,
        discovery_url.map(KeySource::Discovery),
        "preferred_username",
        fetch,
        Duration::from_secs(300),
    );
    let client = OidcClient {
        client_id: client_id?,
        client_secret: client_secret?,
        scope,
        token_endpoint,
    };
    Some(Arc::new(OidcPassword::new(
        Jwt::new(config?),
        client,
        settings.timeout,
    )))
}

/// `[oidc]`'s client settings, checked.
#[derive(Debug, Clone)]
pub struct OidcClient {
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub scope: String,
    /// Overrides the discovery document's `token_endpoint`.
    pub token_endpoint: Option<String>,
}

pub struct OidcPassword {
    pub jwt: Jwt,
    client: OidcClient,
    http: reqwest::Client,
}

impl Backend for OidcPassword {
    /// The password grant takes a user name and password only.
    fn accepts(&self, creds: &Credentials) -> bool {
        matches!(creds, Credentials::Login { .. })
    }

    fn check<'a>(
        &'a self,
        creds: &'a OwnedCredentials,
    ) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(self.check_now(creds))
    }

    /// Never called: the key refresh tells whether the provider answers.
    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn upstream(&self) -> String {
        format!("{:?}", self.jwt.keys.source())
    }

    fn key_store(&self) -> Option<&Arc<KeyStore>> {
        Some(&self.jwt.keys)
    }
}

impl OidcPassword {
    pub fn new(jwt: Jwt, client: OidcClient, timeout: std::time::Duration) -> Self {
        OidcPassword {
            jwt,
            client,
            http: upstream::client(timeout),
        }
    }

    async fn check_now(&self, creds: &OwnedCredentials) -> Result<Identity, CheckError> {
        let OwnedCredentials::Login { user, password } = creds else {
            return Err(CheckError::Rejected("not a login"));
        };
        let token = self.exchange(user, password).await?;
        let verified = match self.jwt.verify_token(&token) {
            Err(JwtError::UnknownKey) if self.jwt.keys.refetch_for_unknown_kid().await => {
                self.jwt.verify_token(&token)
            }
            other => other,
        };
        match verified {
            Ok(v) => Ok(Identity {
                id: Some(v.identity.clone()),
                name: v.identity,
                admin: false,
                remote_access: true,
                permissions: Some(v.permissions),
                extra_permissions: Vec::new(),
                valid_for: v.valid_for,
                recheck: None,
            }),
            // The account is fine but grants nothing here: a real "no".
            Err(JwtError::NoPermissions | JwtError::BadPermissions) => {
                Err(CheckError::Rejected("token grants no permissions"))
            }
            // The provider's own token failing our checks is a configuration problem (issuer,
            // audience, keys): deny, but don't hold it against the account.
            Err(e) => Err(CheckError::Unreachable(format!(
                "the provider's access token was refused: {e}"
            ))),
        }
    }

    /// The password grant. Returns the access token.
    async fn exchange(&self, user: &str, password: &str) -> Result<String, CheckError> {
        let endpoint = match &self.client.token_endpoint {
            Some(e) => e.clone(),
            None => {
                let keys = match self.jwt.keys.keys() {
                    Some(keys) => keys,
                    None => {
                        self.jwt.keys.refresh().await.map_err(|e| {
                            CheckError::Unreachable(format!("discovery failed: {e}"))
                        })?;
                        self.jwt
                            .keys
                            .keys()
                            .ok_or_else(|| CheckError::Unreachable("no key set".into()))?
                    }
                };
                keys.token_endpoint.clone().ok_or_else(|| {
                    CheckError::Unreachable("discovery document has no token_endpoint".into())
                })?
            }
        };
        let mut form = vec![
            ("grant_type", "password"),
            ("username", user),
            ("password", password),
            ("client_id", &self.client.client_id),
            ("scope", &self.client.scope),
        ];
        if let Some(secret) = &self.client.client_secret {
            form.push(("client_secret", &secret.0));
        }
        let resp = self
            .http
            .post(endpoint)
            .header("Accept", "application/json")
            .form(&form)
            .send()
            .await
            .map_err(UpstreamError::from)?;
        let status = resp.status().as_u16();
        if status >= 500 {
            return Err(UpstreamError::Status(status).into());
        }
        let body: Value = upstream::read_json(resp).await?;
        if status == 200 {
            return body["access_token"]
                .as_str()
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| {
                    UpstreamError::Invalid("token answer has no access_token".into()).into()
                });
        }
        // RFC 6749 §5.2: `invalid_grant` is a wrong user name or password (or a disabled
        // account); anything else is our client's configuration.
        match body["error"].as_str() {
            Some("invalid_grant") => Err(CheckError::Rejected("login refused")),
            Some(error) => Err(CheckError::Unreachable(format!(
                "token endpoint refused the client ({error}): check client_id, client_secret and that the password grant is enabled"
            ))),
            None => Err(UpstreamError::Status(status).into()),
        }
    }
}
