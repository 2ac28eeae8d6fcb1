//! The HTTP service: MediaMTX's auth endpoint plus health and readiness.
//!
//! This is a thin adapter. It reads at most 64 KiB of body, parses it (`request`), asks the
//! policy (through the `verifier`, which keeps argon2 off the workers), logs one line and maps
//! the outcome to a status: 200 allow, 401 deny, 400 malformed, 413 too large. Every non-2xx
//! carries `{"error": "…"}`, which MediaMTX copies into its own log. Every decision and every
//! refused request is also counted for `GET /metrics` (`crate::metrics`).

use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use serde::Serialize;

use crate::metrics::{self, Metrics};
use crate::policy::{Decision, Policy};
use crate::reload::{self, LivePolicy};
use crate::request::{Request, RequestError};
use crate::verifier::Verifier;

/// Largest body accepted on `/auth`. MediaMTX's requests are well under 1 KiB plus the path
/// and query; anything bigger is not MediaMTX.
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler shares.
pub struct AppState {
    pub live: Arc<LivePolicy>,
    pub verifier: Verifier,
    /// One set per process: unlike the policy, it is not replaced by a reload.
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(live: Arc<LivePolicy>) -> Self {
        let policy = live.load();
        let server = policy.server();
        let verifier = Verifier::new(server.argon2_concurrency, server.argon2_queue)
            .with_limits(server.limits.clone());
        let metrics = Metrics::new(Arc::clone(&live));
        AppState {
            live,
            verifier,
            metrics,
        }
    }
}

/// Everything that makes `/auth` answer something other than a decision.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("could not read body")]
    Payload,
    #[error("not found")]
    NotFound,
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::BadRequest(_) | HttpError::Payload => StatusCode::BAD_REQUEST,
            HttpError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: &self.to_string(),
        })
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

#[derive(Serialize)]
struct AllowBody<'a> {
    user: &'a str,
}

/// Starts the server with a fixed policy on an already-bound listener (tests bind port 0).
/// Returns the running server; await it to serve until SIGTERM/SIGINT, which drain in-flight
/// requests first.
pub fn start(
    listener: TcpListener,
    policy: Policy,
    workers: Option<usize>,
) -> std::io::Result<actix_web::dev::Server> {
    start_live(listener, Arc::new(LivePolicy::new(policy, None)), workers)
}

/// Starts the server with a policy that reloads (see `crate::reload`); the caller runs the
/// watchers that trigger reloads.
pub fn start_live(
    listener: TcpListener,
    live: Arc<LivePolicy>,
    workers: Option<usize>,
) -> std::io::Result<actix_web::dev::Server> {
    reload::spawn_background(&live.load());
    let state = web::Data::new(AppState::new(live));
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/auth", web::post().to(auth))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(scrape))
            .default_service(web::to(|| async { HttpError::NotFound.error_response() }))
    })
    .listen(listener)?;
    if let Some(n) = workers {
        server = server.workers(n);
    }
    Ok(server.run())
}

async fn auth(
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, HttpError> {
    let started = Instant::now();
    let refused = |e: HttpError| {
        state.metrics.record_refused(e.status_code().as_u16());
        e
    };
    let body = payload
        .to_bytes_limited(MAX_BODY)
        .await
        .map_err(|_| refused(HttpError::TooLarge))?
        .map_err(|_| refused(HttpError::Payload))?;
    let req = Request::parse(&body).map_err(|e| {
        tracing::warn!(target: "mtx_auth::decision", error = %e, "bad request");
        refused(e.into())
    })?;
    // One policy for the whole decision, even if a reload happens meanwhile.
    let policy = state.live.load();
    let decision = state.verifier.decide(&policy, &req).await;
    state
        .metrics
        .record(&policy, &req, &decision, started.elapsed());
    log_decision(&req, &decision, started);
    Ok(match &decision {
        Decision::Allow { user, .. } => HttpResponse::Ok().json(AllowBody { user }),
        Decision::Deny(reason) => HttpResponse::Unauthorized().json(ErrorBody {
            error: &reason.to_string(),
        }),
    })
}

/// One line per decision. Never a password, token or hash: only what identifies the request.
fn log_decision(req: &Request, decision: &Decision, started: Instant) {
    let latency_us = started.elapsed().as_micros() as u64;
    match decision {
        Decision::Allow {
            source,
            rule,
            cached,
            ..
        } => tracing::info!(
            target: "mtx_auth::decision",
            action = %req.action_raw,
            protocol = %req.protocol,
            path = %req.path,
            ip = %req.ip_raw,
            user = %req.user,
            outcome = "allow",
            source = source.as_str(),
            rule_line = rule.map(|r| r.line),
            cached,
            latency_us,
        ),
        Decision::Deny(reason) => tracing::info!(
            target: "mtx_auth::decision",
            action = %req.action_raw,
            protocol = %req.protocol,
            path = %req.path,
            ip = %req.ip_raw,
            user = %req.user,
            outcome = "deny",
            source = decision.source().as_str(),
            reason = %reason,
            latency_us,
        ),
    }
}

/// Prometheus scrapes this; see `crate::metrics` for what it holds.
async fn scrape(state: web::Data<AppState>) -> HttpResponse {
    match state.metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type(metrics::CONTENT_TYPE)
            .body(text),
        Err(_) => HttpResponse::InternalServerError().json(ErrorBody {
            error: "could not encode metrics",
        }),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Ready once the config is loaded (before the server accepts anything) and every remote
/// source has loaded once: until then, 503 with what is missing. The body also says how old the
/// JWT keys are and how many fetches failed, so an IdP outage is visible before keys go stale.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let mut waiting_for = Vec::new();
    let mut body = serde_json::json!({});
    let policy = state.live.load();
    if let Some(jwt) = policy.jwt() {
        if !jwt.keys.is_ready() {
            waiting_for.push("jwt");
        }
        body["jwt"] = serde_json::json!({
            "keys_age_secs": jwt.keys.age().map(|a| a.as_secs()),
            "fetches": jwt.keys.fetches.load(Ordering::Relaxed),
            "fetch_failures": jwt.keys.failures.load(Ordering::Relaxed),
        });
    }
    for source in policy.accounts() {
        let name = source.name();
        if !source.is_ready() {
            waiting_for.push(name);
        }
        let stats = &source.stats;
        let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        body[name] = serde_json::json!({
            "ready": source.is_ready(),
            "upstream_calls": n(&stats.upstream_calls),
            "upstream_errors": n(&stats.upstream_errors),
            "rejections": n(&stats.rejections),
            "cache_hits": n(&stats.cache_hits),
            "cache_misses": n(&stats.cache_misses),
            "stale_served": n(&stats.stale_served),
            "rate_limited": n(&stats.limited),
        });
    }
    let live = &state.live;
    body["config"] = serde_json::json!({
        "generation": live.generation.load(Ordering::Relaxed),
        "reloads": live.reloads.load(Ordering::Relaxed),
        "reload_failures": live.reload_failures.load(Ordering::Relaxed),
    });
    let ready = waiting_for.is_empty();
    body["ready"] = ready.into();
    body["waiting_for"] = waiting_for.into();
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
