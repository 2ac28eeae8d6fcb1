//! The HTTP service: MediaMTX's auth endpoint plus health and readiness.
//!
//! This is a thin adapter. It reads at most 64 KiB of body, parses it (`request`), asks the
//! policy (through the `verifier`, which keeps argon2 off the workers), logs one line and maps
//! the outcome to a status: 200 allow, 401 deny, 400 malformed, 408 body too slow, 413 too
//! large. Every non-2xx carries `{"error": "…"}`, which MediaMTX copies into its own log. Every
//! decision and every refused request is also counted for `GET /metrics` (`crate::metrics`).
//!
//! No client can hold a connection for long (issue 15): its first head must arrive within
//! [`HEAD_TIMEOUT`], each body within [`body::BODY_TIMEOUT`], and on a kept-alive connection
//! each further head within [`body::NEXT_HEAD_TIMEOUT`] of the previous answer (see
//! [`start_live`]). The connections held at once stay within the file descriptor limit
//! ([`connections_per_worker`]). Nothing is limited per client address: every call comes from
//! MediaMTX's one address.

use std::cell::Cell;
use std::net::{IpAddr, TcpListener};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use actix_http::HttpService;
use actix_service::{
    fn_factory, map_config, IntoServiceFactory, Service as _, ServiceFactory as _,
    ServiceFactoryExt,
};
use actix_web::dev::{fn_service, AppConfig, ServiceRequest};
use actix_web::error::PayloadError;
use actix_web::http::header::{HeaderValue, CONTENT_TYPE};
use actix_web::http::{Method, StatusCode};
use actix_web::rt::net::TcpStream;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{web, App, HttpMessage, HttpResponse, ResponseError};
use futures_core::Stream;
use serde::Serialize;
use tracing::Level;

use crate::body::{self, Answered, Deadlined, Held, HeldRequest, NextHead};
use crate::logging::{self, FieldSink, Value};
use crate::metrics;
use crate::policy::{Decision, DenyReason, Policy};
use crate::reload::{self, LivePolicy};
use crate::request::{Request, RequestError};
use crate::state::Service;

/// Largest body accepted on `/auth`. MediaMTX's requests are well under 1 KiB plus the path
/// and query; anything bigger is not MediaMTX.
pub const MAX_BODY: usize = 64 * 1024;

/// How long a client has, once connected, to send a request's head. MediaMTX sends it at once,
/// right after connecting. (actix answers a late head with a bare 408 and closes.)
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a kept-alive connection may sit idle between requests before actix closes it
/// (actix's own default). A head begun in that time has until [`body::NEXT_HEAD_TIMEOUT`].
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The target of the decision line, as `RUST_LOG` names it (`mtx_auth::decision=warn` turns
/// decision lines off).
const DECISION_TARGET: &str = "mtx_auth::decision";

/// After answering a request whose body was not read to its end (a 408, a 413), how long the
/// client gets to close the connection before we do. Closing with unread data would send a
/// reset that can destroy the answer before the client reads it; this waits a little for it.
pub const LINGER: Duration = Duration::from_secs(1);

/// File descriptors kept out of reach of client connections, for everything else the service
/// opens: the listener, each worker's event loop, connections to account sources and JWKS
/// servers, the config file on a reload, stderr.
const FD_RESERVE: u64 = 128;

/// actix's own default of connections per worker, kept as the ceiling.
const MAX_CONNECTIONS_PER_WORKER: usize = 25_000;

/// Everything that makes `/auth` answer something other than a decision.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("body larger than {MAX_BODY} bytes")]
    TooLarge,
    #[error(transparent)]
    BadRequest(#[from] RequestError),
    #[error("could not read body")]
    Payload,
    #[error("body not received within {secs} s", secs = body::BODY_TIMEOUT.as_secs())]
    Timeout,
    #[error("not found")]
    NotFound,
}

impl ResponseError for HttpError {
    fn status_code(&self) -> StatusCode {
        match self {
            HttpError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::Timeout => StatusCode::REQUEST_TIMEOUT,
            HttpError::BadRequest(_) | HttpError::Payload => StatusCode::BAD_REQUEST,
            HttpError::NotFound => StatusCode::NOT_FOUND,
        }
    }

    fn error_response(&self) -> HttpResponse {
        json_response(
            self.status_code(),
            &ErrorBody {
                error: &self.to_string(),
            },
        )
    }
}

/// `200 {"user": "…"}`, the answer to nearly every request. A name with nothing JSON escapes
/// (nearly all of them) is copied between the quotes as it is: serde_json's general path costs
/// as much again as the rest of building the answer.
fn allow_response(user: &str) -> HttpResponse {
    let plain = user.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\');
    if !plain {
        return json_response(StatusCode::OK, &AllowBody { user });
    }
    // Exactly the length: `Bytes` takes a full `Vec` over as it is, and allocates a header of
    // its own for one with room to spare.
    let mut body = Vec::with_capacity(user.len() + 11);
    body.extend_from_slice(b"{\"user\":\"");
    body.extend_from_slice(user.as_bytes());
    body.extend_from_slice(b"\"}");
    json_body(StatusCode::OK, body)
}

/// A JSON answer. What `HttpResponse::build(status).json(body)` sends, without the builder's
/// detour through parsing `application/json` as a MIME type for the header on every answer.
fn json_response(status: StatusCode, body: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(body) {
        Ok(body) => json_body(status, body),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

fn json_body(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut res = HttpResponse::with_body(status, body).map_into_boxed_body();
    res.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    res
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
///
/// Connections are kept alive, but none can be held open by a client that sends nothing:
/// actix closes an idle one after [`KEEP_ALIVE`] and times out the *first* head of each
/// connection ([`HEAD_TIMEOUT`]), but once a kept-alive connection has received one byte of its
/// next request, nothing in actix ends it (a client could hold it forever with one quick
/// `/healthz` and one byte). So each connection's socket is wrapped in [`Deadlined`], which
/// fails the connection's reads once the next head is [`body::NEXT_HEAD_TIMEOUT`] late.
/// That is why this builds the HTTP service itself (`HttpServer` has no place to wrap the
/// socket); everything else is as `HttpServer` sets it up.
pub fn start_live(
    listener: TcpListener,
    live: Arc<LivePolicy>,
    workers: Option<usize>,
) -> std::io::Result<actix_web::dev::Server> {
    start_service(listener, Arc::new(Service::new(live)), workers)
}

/// Starts the server around a process-long state the caller built (with its store).
pub fn start_service(
    listener: TcpListener,
    service: Arc<Service>,
    workers: Option<usize>,
) -> std::io::Result<actix_web::dev::Server> {
    reload::spawn_background(&service.live.load());
    let state = web::Data::from(service);
    // actix's own default, named so the connection limit can be divided among the workers.
    let workers = workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, NonZeroUsize::get));
    let per_worker = connections_per_worker(workers);
    tracing::info!(
        "at most {} connections at once (file descriptor limit {})",
        per_worker * workers,
        fd_limit().map_or("unknown".into(), |n| n.to_string())
    );
    let local = listener.local_addr()?;
    let builder = actix_web::dev::Server::build()
        .workers(workers)
        .max_concurrent_connections(per_worker);
    // Lets kept-alive connections close at once when the server stops, as `HttpServer` does.
    let stopping = builder.graceful_shutdown_signal();
    let server = builder.listen("mtx-auth", listener, move || {
        let state = state.clone();
        let stopping = stopping.clone();
        // The app's `/auth`: the `POST`s `auth_direct` below leaves to actix-web's routing (the
        // path spelled unusually, such as `/%61uth`), decided the same way.
        let service = state.clone().into_inner();
        let auth_route = Arc::clone(&service);
        let auth = fn_service(move |mut req: ServiceRequest| {
            let service = Arc::clone(&auth_route);
            async move {
                let started = Instant::now();
                let mut payload = req.take_payload();
                let read = read_body(&mut payload).await;
                let peer = req.peer_addr().map(|a| a.ip());
                let res = auth(&service, peer, read, started, None)
                    .await
                    .unwrap_or_else(|e| e.error_response());
                Ok::<_, actix_web::Error>(req.into_response(res))
            }
        });
        let app = App::new()
            .wrap(body::Bounded)
            .app_data(state)
            .route("/auth", web::post().service(auth))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(scrape))
            .default_service(web::to(|| async { HttpError::NotFound.error_response() }))
            .into_factory()
            .map_err(|e| e.error_response());
        let app = map_config(app, |_| AppConfig::default());
        // `POST /auth` goes straight to `auth_direct`; everything else, to the app.
        let front = fn_factory(move || {
            let app = app.new_service(());
            // Counted per worker, not per request: an `Rc` clone is a plain increment, an
            // `Arc` clone an atomic one.
            let service = Rc::new(Arc::clone(&service));
            async move {
                let app = Rc::new(app.await?);
                Ok::<_, ()>(fn_service(move |req: actix_http::Request| {
                    let (app, service) = (Rc::clone(&app), Rc::clone(&service));
                    async move {
                        if req.method() == Method::POST && req.path() == "/auth" {
                            Ok(auth_direct(&service, req).await)
                        } else {
                            app.call(req).await.map(actix_http::Response::from)
                        }
                    }
                }))
            }
        });
        let http = HttpService::build()
            .keep_alive(KEEP_ALIVE)
            .client_request_timeout(HEAD_TIMEOUT)
            .client_disconnect_timeout(LINGER)
            .local_addr(local)
            .graceful_shutdown_signal(move || {
                let stopping = stopping.clone();
                async move { stopping.notified().await }
            })
            .on_connect_ext(|io: &Deadlined<TcpStream>, data| {
                data.insert(io.next_head());
            })
            // The app's host and address are only used to build URLs, which nothing here does.
            .h1(front);
        fn_service(|io: TcpStream| async move {
            let peer = io.peer_addr().ok();
            Ok((Deadlined::new(io), peer))
        })
        .and_then(http)
    })?;
    Ok(server.run())
}

/// Client connections each worker may hold at once, so that all of them together stay
/// [`FD_RESERVE`] below the process's file descriptor limit. At the limit actix stops accepting
/// until a connection closes, and new ones wait in the listen backlog (which holds no
/// descriptor). Without it, accept() would fail with EMFILE (actix then logs an error and
/// pauses accepting for half a second, over and over), and the descriptors the service needs
/// for its own work (upstream calls, key-set fetches, reading the config on a reload) would be
/// taken by clients.
pub fn connections_per_worker(workers: usize) -> usize {
    let usable = fd_limit().unwrap_or(1024).saturating_sub(FD_RESERVE);
    let per_worker = usable / workers.max(1) as u64;
    per_worker.clamp(1, MAX_CONNECTIONS_PER_WORKER as u64) as usize
}

/// The soft limit on open file descriptors.
#[cfg(unix)]
pub fn fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    #[allow(clippy::unnecessary_cast)] // rlim_t is u64 here, but u32 on 32-bit Linux
    ok.then_some(limit.rlim_cur as u64)
}

#[cfg(not(unix))]
pub fn fd_limit() -> Option<u64> {
    None
}

/// Raises the soft limit on open files to the hard limit, as every Go program (MediaMTX among
/// them) does at start. Many systems start services with a soft limit of 1,024 and a far
/// higher hard limit; the soft one is only there for programs that still use select(2), and
/// actix uses epoll. Failure changes nothing: the limit in force is the one reported.
#[cfg(unix)]
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct they are given.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        // Linux refuses an unlimited soft limit for open files; 2^20 is its usual ceiling
        // (fs.nr_open).
        let target = match limit.rlim_max {
            libc::RLIM_INFINITY => 1 << 20,
            max => max,
        };
        if limit.rlim_cur < target {
            limit.rlim_cur = target;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(not(unix))]
pub fn raise_fd_limit() {}

/// `POST /auth` as the connection's own service sees it, ahead of actix-web's routing: the
/// path MediaMTX's every call takes. It does what the app's `/auth` route and [`body::Bounded`]
/// do together (the same answers, deadlines and held body), without the app's request object,
/// route matching and middleware, and with one clock read for the head's arrival, the body's
/// deadline and the decision's latency.
async fn auth_direct(state: &Service, mut req: actix_http::Request) -> actix_http::Response<Held> {
    let started = Instant::now();
    let answered = Answered::start(req.conn_data::<Rc<NextHead>>());
    let mut payload = body::Deadline::new(req.take_payload(), started.into());
    let read = read_body(&mut payload).await;
    // A body not read to its end is held until the answer is written (see `crate::body`).
    let unread = read.is_err().then_some(payload);
    let peer = req.peer_addr().map(|a| a.ip());
    let res = match auth(state, peer, read, started, Some(&answered)).await {
        Ok(res) => res,
        Err(e) => e.error_response(),
    };
    actix_http::Response::from(res)
        .map_body(|_, b| Held::new(b, unread.map(HeldRequest::Owned), answered))
}

/// A body of at most [`MAX_BODY`] bytes, read to its end. The stream is left with the caller,
/// who holds it until its answer is written when this fails. (actix's `to_bytes_limited` would
/// take the stream, and copies every body into a 32 KiB buffer it allocates first; a body that
/// arrives in one chunk, as MediaMTX's does, is kept here as it came.)
async fn read_body(
    stream: &mut (impl Stream<Item = Result<Bytes, PayloadError>> + Unpin),
) -> Result<Bytes, HttpError> {
    // The first chunk as it came, until a second one joins it in `joined`.
    let mut first: Option<Bytes> = None;
    let mut joined = BytesMut::new();
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut *stream).poll_next(cx)).await {
        let chunk = chunk.map_err(|e| match body::is_timeout(&e) {
            true => HttpError::Timeout,
            false => HttpError::Payload,
        })?;
        let held = first.as_ref().map_or(joined.len(), Bytes::len);
        if held + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        match first.take() {
            None if joined.is_empty() => first = Some(chunk),
            earlier => {
                joined.extend_from_slice(earlier.as_deref().unwrap_or_default());
                joined.extend_from_slice(&chunk);
            }
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// Decides on a body read (or not) by one of the two ways to `/auth`: [`auth_direct`], or the
/// app's route for the `POST`s it leaves to actix-web (the path spelled unusually, such as
/// `/%61uth`). `started` is when the request's head arrived; `answered`, when given, learns
/// when the decision was made.
async fn auth(
    state: &Service,
    peer: Option<IpAddr>,
    read: Result<Bytes, HttpError>,
    started: Instant,
    answered: Option<&Answered>,
) -> Result<HttpResponse, HttpError> {
    let refused = |e: HttpError| {
        state.metrics.record_refused(e.status_code().as_u16());
        e
    };
    let bytes = read.map_err(refused)?;
    let req = Request::parse(&bytes).map_err(|e| {
        tracing::warn!(target: "mtx_auth::decision", error = %e, "bad request");
        refused(e.into())
    })?;
    // One policy for the whole decision, even if a reload happens meanwhile.
    let policy = state.live.load();
    let mut decision = state.verifier.decide(&policy, &req).await;
    if let Some(watch) = state.sessions.as_deref().filter(|_| decision.is_allow()) {
        // The MediaMTX that asked is the one whose API can kick the session.
        if let Some(api) = watch.config.api_for(peer) {
            let now = crate::time::now_unix();
            if let Err(full) = watch.registry.admit(&policy, &req, &decision, api, now) {
                tracing::warn!(target: DECISION_TARGET, sessions = watch.registry.len(), "{full}");
                state.metrics.sessions.refused.inc();
                decision = Decision::Deny(DenyReason::SessionsFull);
            }
        }
    }
    let decided = Instant::now();
    if let Some(answered) = answered {
        answered.ready_at(decided.into());
    }
    let latency = decided - started;
    state.metrics.record(&policy, &req, &decision, latency);
    if log_decision(&req, &decision, decided, latency) {
        wake_log_flusher();
    }
    Ok(match &decision {
        Decision::Allow { user, .. } => allow_response(user),
        Decision::Deny(reason) => json_response(
            StatusCode::UNAUTHORIZED,
            &ErrorBody {
                error: &reason.to_string(),
            },
        ),
    })
}

/// One line per decision. Never a password, token or hash: only what identifies the request.
///
/// Written by hand (`logging::Lines`), reading exactly as the tracing event below would print;
/// that event is still what is logged when there is no such writer (a terminal, tests, benches
/// without `logging::init`). `decided` is when the decision was made, the line's timestamp.
/// Returns true when the line was queued as the first of a batch: the caller arranges a
/// `logging::flush` (`wake_log_flusher`). Public for `benches/log_line.rs`, which measures
/// what this line costs a decision.
pub fn log_decision(
    req: &Request,
    decision: &Decision,
    decided: Instant,
    latency: Duration,
) -> bool {
    let latency_us = latency.as_micros() as u64;
    match logging::direct_format() {
        Some(format) if decision_lines_wanted() => {
            let fields = DecisionFields {
                req,
                decision,
                latency_us,
            };
            logging::queue(format, Level::INFO, DECISION_TARGET, decided, &fields)
        }
        Some(_) => false,
        None => {
            trace_decision(req, decision, latency_us);
            false
        }
    }
}

/// Whether `RUST_LOG` lets decision lines through, for the hand-written lines: asked of
/// tracing once. Those are only written under the process's own subscriber
/// (`logging::init`), whose filter is read from `RUST_LOG` at start and never changes, so the
/// answer cannot change either; asking tracing per decision cost ~25 ns of the ~12 µs a
/// keep-alive request costs in all (perf, BENCHMARKS.md).
fn decision_lines_wanted() -> bool {
    static WANTED: OnceLock<bool> = OnceLock::new();
    *WANTED.get_or_init(|| tracing::enabled!(target: DECISION_TARGET, Level::INFO))
}

/// The decision line's fields, in the order the tracing event has them, named in code rather
/// than listed in a table (see `logging::Fields`: a third less time formatting the line).
/// Public for `benches/log_line.rs`.
pub struct DecisionFields<'a> {
    pub req: &'a Request<'a>,
    pub decision: &'a Decision,
    pub latency_us: u64,
}

impl logging::Fields for DecisionFields<'_> {
    #[inline]
    fn visit(&self, sink: &mut impl FieldSink) {
        let req = self.req;
        sink.field("action", Value::Text(&req.action_raw));
        sink.field("protocol", Value::Text(&req.protocol));
        sink.field("path", Value::Text(&req.path));
        sink.field("ip", Value::Text(&req.ip_raw));
        sink.field("user", Value::Text(&req.user));
        match self.decision {
            Decision::Allow {
                source,
                rule,
                cached,
                ..
            } => {
                sink.field("outcome", Value::Str("allow"));
                sink.field("source", Value::Str(source.as_str()));
                if let Some(rule) = rule {
                    sink.field("rule_line", Value::U64(rule.line as u64));
                }
                sink.field("cached", Value::Bool(*cached));
            }
            Decision::Deny(reason) => {
                sink.field("outcome", Value::Str("deny"));
                sink.field("source", Value::Str(self.decision.source().as_str()));
                sink.field("reason", Value::Display(reason));
            }
        }
        sink.field("latency_us", Value::U64(self.latency_us));
    }
}

/// The decision line as a tracing event: what the hand-written line reads like, field for
/// field (a test compares them). Public for `benches/log_line.rs` (the line before issue 16).
pub fn trace_decision(req: &Request, decision: &Decision, latency_us: u64) {
    match decision {
        Decision::Allow {
            source,
            rule,
            cached,
            ..
        } => tracing::info!(
            target: DECISION_TARGET,
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
            target: DECISION_TARGET,
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

/// How long a worker's decision lines may wait to be written. Gathered over this long, they go
/// out in large writes: the kernel's cost of a write to a file is mostly per call and per page
/// touched, and lines written one burst at a time (a few lines per call) cost about as much
/// again as formatting them. A line is never later than this, nor than the exit of its worker
/// (see `crate::logging`), and an answer never waits for its line.
const LOG_DELAY: Duration = Duration::from_millis(10);

thread_local! {
    /// This worker's log flusher, while it waits for a batch to start; `None` until it first
    /// runs and while it waits out [`LOG_DELAY`].
    static LOG_FLUSHER: Cell<Option<Waker>> = const { Cell::new(None) };
    static LOG_FLUSHER_STARTED: Cell<bool> = const { Cell::new(false) };
}

/// Has this worker's queued decision lines written [`LOG_DELAY`] after the first of them was
/// queued, together with every line queued meanwhile (`logging::queue` writes at once past its
/// size limit). The flusher is one task per worker, started on first use and woken for each
/// batch (a wake-up on the same thread, no allocation); a batch's first line wakes it.
fn wake_log_flusher() {
    if let Some(waker) = LOG_FLUSHER.take() {
        waker.wake();
    } else if !LOG_FLUSHER_STARTED.replace(true) {
        actix_web::rt::spawn(async {
            loop {
                actix_web::rt::time::sleep(LOG_DELAY).await;
                logging::flush();
                // Until the next batch's first line. Registered in the same poll as the flush
                // above: no line can be queued on this thread in between.
                let mut woken = false;
                std::future::poll_fn(|cx| match std::mem::replace(&mut woken, true) {
                    true => Poll::Ready(()),
                    false => {
                        LOG_FLUSHER.set(Some(cx.waker().clone()));
                        Poll::Pending
                    }
                })
                .await;
            }
        });
    }
    // Otherwise it is waiting out the delay, and writes this line with the rest of its batch.
}

/// Prometheus scrapes this; see `crate::metrics` for what it holds.
async fn scrape(state: web::Data<Service>) -> HttpResponse {
    match state.metrics.encode() {
        Ok(text) => HttpResponse::Ok()
            .content_type(metrics::CONTENT_TYPE)
            .body(text),
        Err(_) => json_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ErrorBody {
                error: "could not encode metrics",
            },
        ),
    }
}

async fn healthz() -> HttpResponse {
    json_response(StatusCode::OK, &serde_json::json!({ "status": "ok" }))
}

/// Ready once the config is loaded (before the server accepts anything) and every remote
/// source has loaded once: until then, 503 with what is missing. The body also says how old the
/// JWT keys are and how many fetches failed, so an IdP outage is visible before keys go stale.
async fn readyz(state: web::Data<Service>) -> HttpResponse {
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
    // The store's state is reported, never waited for: decisions go on from memory while it is
    // down, and a readiness probe must not take MediaMTX's only auth service out for that.
    if let Some(store) = &state.store {
        let up = store.health.is_up();
        body["store"] = serde_json::json!({
            "engine": store.engine().as_str(),
            "state": if up { "up" } else { "down" },
            "sync_age_secs": store.health.sync_age(crate::time::now_unix()),
        });
    }
    let ready = waiting_for.is_empty();
    body["ready"] = ready.into();
    body["waiting_for"] = waiting_for.into();
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    json_response(status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{DenyReason, Source, UserRule};
    use crate::logging::tests::{hand_line, hostile_samples, tracing_line};
    use crate::logging::LogFormat;

    /// The allow answer written by hand is byte for byte serde_json's, escapes included.
    #[test]
    fn the_allow_body_is_serde_jsons() {
        use actix_web::body::MessageBody;
        let mut names: Vec<String> = ["viewer", "", "a b", "é"].map(String::from).to_vec();
        names.extend(hostile_samples());
        for user in names {
            let res = allow_response(&user);
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.headers().get(CONTENT_TYPE).unwrap(), "application/json");
            let body = res.into_body().try_into_bytes().unwrap();
            assert_eq!(
                body,
                serde_json::to_vec(&AllowBody { user: &user }).unwrap(),
                "{user:?}"
            );
        }
    }

    /// The hand-written decision line reads exactly as the tracing event did, in both formats,
    /// for allows (with and without a rule line) and denies, whatever the client sent.
    #[test]
    fn the_decision_line_is_the_tracing_events_line() {
        let decisions = [
            Decision::Allow {
                user: "viewer".into(),
                source: Source::Users,
                rule: Some(UserRule { index: 3, line: 12 }),
                cached: true,
                grant: crate::decision::Grant::User,
            },
            Decision::Allow {
                user: "".into(),
                source: Source::Jwt,
                rule: None,
                cached: false,
                grant: crate::decision::Grant::Jwt { ends_at: None },
            },
            Decision::Deny(DenyReason::NoMatch),
            Decision::Deny(DenyReason::RateLimited),
        ];
        for text in hostile_samples() {
            let body = serde_json::json!({
                "action": text, "protocol": text, "path": text, "ip": text, "user": text,
            })
            .to_string();
            let req = Request::parse(body.as_bytes()).unwrap();
            for decision in &decisions {
                for format in [LogFormat::Text, LogFormat::Json] {
                    let want = tracing_line(format, || trace_decision(&req, decision, 41));
                    let fields = DecisionFields {
                        req: &req,
                        decision,
                        latency_us: 41,
                    };
                    let got = hand_line(format, &fields);
                    assert_eq!(got, want, "{format:?} {decision:?} {text:?}");
                }
            }
        }
    }
}
