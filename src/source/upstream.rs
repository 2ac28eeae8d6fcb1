//! HTTP to the services we depend on (JWKS, Jellyfin, Emby, plex.tv, the OIDC token endpoint):
//! one way to build a client, to read a bounded JSON body and to describe a failure.
//!
//! Error texts here go to our log only, and never hold a URL: an operator knows the URL, and a
//! query string may carry a credential.

use std::time::Duration;

use serde_json::Value;

/// Largest upstream document read. A JWKS, a user object or a Plex resource list is a few KiB;
/// anything near this limit is not what we asked for.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// `mtx-auth/<version>`, sent as the User-Agent and as the client version the media servers ask
/// for.
pub const USER_AGENT: &str = concat!("mtx-auth/", env!("CARGO_PKG_VERSION"));

/// A client whose every request ends within `timeout`: MediaMTX stalls every stream while it
/// waits for us, so no upstream may hold a decision longer.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .expect("static client settings are valid")
}

/// Why talking to an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("request {0}")]
    Http(&'static str),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("document larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
    #[error("not a valid document: {0}")]
    Invalid(String),
}

impl From<reqwest::Error> for UpstreamError {
    /// reqwest's error without the URL.
    fn from(e: reqwest::Error) -> Self {
        UpstreamError::Http(if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "body could not be read"
        } else {
            "failed"
        })
    }
}

/// Reads a response body of at most `MAX_DOCUMENT` bytes as JSON, whatever its status (error
/// bodies carry reasons too). The caller looks at the status first.
pub async fn read_json(mut resp: reqwest::Response) -> Result<Value, UpstreamError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT as u64)
    {
        return Err(UpstreamError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(UpstreamError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| UpstreamError::Invalid(e.to_string()))
}

/// Reads a successful response as JSON; any other status is an error.
pub async fn success_json(resp: reqwest::Response) -> Result<Value, UpstreamError> {
    if !resp.status().is_success() {
        return Err(UpstreamError::Status(resp.status().as_u16()));
    }
    read_json(resp).await
}
