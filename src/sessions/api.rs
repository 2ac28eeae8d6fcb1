//! MediaMTX's control API, as far as taking access back needs it: kick a session, list the
//! sessions of a kind.
//!
//! MediaMTX authenticates every API call through its auth backend, mtx-auth itself
//! (`action: "api"`). The calls carry mtx-auth's own secret as a Basic password; `/auth` lets
//! that secret in for `api` only (`crate::verifier`), so the operator writes no user for it. The
//! secret is sent only where `[mediamtx]` allows it (https, or plain http to loopback).

use std::collections::HashSet;
use std::time::Duration;

use serde::Deserialize;

use crate::source::upstream::UpstreamError;

/// The user name mtx-auth's API calls carry beside the secret (MediaMTX logs it).
pub const API_USER: &str = "mtx-auth";

/// Why a call failed. A 404 is not a failure: the session is already gone.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("MediaMTX's API unreachable: {0}")]
    Unreachable(String),
    #[error("MediaMTX's API answered {0}")]
    Status(u16),
    #[error("MediaMTX's API answered an unreadable list: {0}")]
    Malformed(String),
}

/// How a kick ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kicked {
    /// The API ended the session.
    Ended,
    /// No kind knew the id: it had ended already.
    Gone,
}

impl Kicked {
    pub fn as_str(self) -> &'static str {
        match self {
            Kicked::Ended => "kicked",
            Kicked::Gone => "gone",
        }
    }
}

/// mtx-auth's own secret for MediaMTX's API, shared by the client that sends it and the
/// verifier that recognises it. Replaced once when a PostgreSQL store that was down at start
/// comes up (until then a secret of this process's own).
pub type ApiSecret = std::sync::Arc<arc_swap::ArcSwap<String>>;

/// A client for one or more MediaMTX APIs.
#[derive(Clone)]
pub struct MediamtxApi {
    http: reqwest::Client,
    secret: ApiSecret,
}

impl MediamtxApi {
    pub fn new(secret: ApiSecret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        MediamtxApi { http, secret }
    }

    /// `POST {api}/v3/{kind}/kick/{id}` for each kind in turn until one knows the id.
    pub async fn kick(&self, api: &str, kinds: &[&str], id: &str) -> Result<Kicked, ApiError> {
        if !super::is_session_id(id) {
            return Ok(Kicked::Gone);
        }
        for kind in kinds {
            let status = self
                .http
                .post(format!("{api}/v3/{kind}/kick/{id}"))
                .basic_auth(API_USER, Some(self.secret.load().as_str()))
                .send()
                .await
                .map_err(|e| ApiError::Unreachable(without_url(e)))?
                .status();
            match status.as_u16() {
                200..=299 => return Ok(Kicked::Ended),
                404 => continue,
                other => return Err(ApiError::Status(other)),
            }
        }
        Ok(Kicked::Gone)
    }

    /// The ids of every session of `kind` (all pages). A kind this MediaMTX does not have
    /// (404) lists nothing.
    pub async fn list(&self, api: &str, kind: &str) -> Result<HashSet<String>, ApiError> {
        self.all_pages(api, kind, "id").await
    }

    /// The names of every path MediaMTX has (`/v3/paths/list`): what the portal lists.
    pub async fn paths(&self, api: &str) -> Result<HashSet<String>, ApiError> {
        self.all_pages(api, "paths", "name").await
    }

    /// `field` of every item of `GET {api}/v3/{list}/list`, all pages.
    async fn all_pages(
        &self,
        api: &str,
        list: &str,
        field: &str,
    ) -> Result<HashSet<String>, ApiError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Page {
            page_count: u64,
            items: Vec<serde_json::Map<String, serde_json::Value>>,
        }
        let mut out = HashSet::new();
        let mut page = 0;
        loop {
            let resp = self
                .http
                .get(format!(
                    "{api}/v3/{list}/list?page={page}&itemsPerPage=1000"
                ))
                .basic_auth(API_USER, Some(self.secret.load().as_str()))
                .send()
                .await
                .map_err(|e| ApiError::Unreachable(without_url(e)))?;
            match resp.status().as_u16() {
                200 => {}
                404 => return Ok(out),
                other => return Err(ApiError::Status(other)),
            }
            let body: Page = resp
                .json()
                .await
                .map_err(|e| ApiError::Malformed(without_url(e)))?;
            out.extend(
                body.items
                    .into_iter()
                    .filter_map(|i| i.get(field)?.as_str().map(str::to_owned)),
            );
            page += 1;
            if page >= body.page_count || page >= 10_000 {
                return Ok(out);
            }
        }
    }
}

/// reqwest's error without the URL (it holds a session id, which names a live session).
fn without_url(e: reqwest::Error) -> String {
    UpstreamError::from(e).to_string()
}
