//! The portal's routes (`shared/CONTRACTS.md`, "The viewer portal"), on their own listener.
//!
//! Every answer carries the same protective headers (no framing, no sniffing, a CSP without
//! inline script, no caching); every state change must come from the portal's own origin;
//! sign-in and code attempts go through `/auth`'s brute-force limiter; nothing secret is logged.
//!
//! Here: the server, the headers and the helpers every route uses (cookies, the origin rule,
//! the limiter, the session); the routes, by what they are about: `signin`, `second_factor`,
//! `viewer` (the streams page, links, `/forward-auth`), `admin`.
//!
//! Helpers return `Result<_, HttpResponse>`: the refusal is the answer itself, handed straight
//! back by the handler. Its size does not matter off `/auth`'s path.
#![allow(clippy::result_large_err)]

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::limiter::Attempt;
use crate::permission::Action;
use crate::portal::links::{self, LinkGrant};
use crate::portal::mfa;
use crate::portal::pages::{self, LoginChoices};
use crate::portal::people::{self, SignInError};
use crate::portal::{Portal, Profile, SecondFactor, SignedIn, PENDING_COOKIE, SESSION_COOKIE};
use crate::request::Request;
use crate::store::StoreError;
use crate::time::{now_unix, rfc3339};

mod admin;
mod second_factor;
mod signin;
mod viewer;

use admin::*;
use second_factor::*;
use signin::*;
pub use viewer::proxied_path;
use viewer::*;

/// Largest form or JSON body the portal reads.
const MAX_BODY: usize = 16 * 1024;

type Shared = web::Data<Portal>;

/// Starts the portal's server on `listener`.
pub fn start(
    listener: TcpListener,
    portal: Arc<Portal>,
) -> std::io::Result<actix_web::dev::Server> {
    let csp = content_security_policy(&portal);
    let data = web::Data::from(portal);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(
                web::FormConfig::default()
                    .limit(MAX_BODY)
                    .error_handler(|e, _| {
                        let text = e.to_string();
                        actix_web::error::InternalError::from_response(e, bad_request(&text)).into()
                    }),
            )
            .app_data(
                web::JsonConfig::default()
                    .limit(MAX_BODY)
                    .error_handler(|e, _| {
                        let text = e.to_string();
                        actix_web::error::InternalError::from_response(e, bad_request(&text)).into()
                    }),
            )
            .wrap(
                middleware::DefaultHeaders::new()
                    .add(("X-Frame-Options", "DENY"))
                    .add(("X-Content-Type-Options", "nosniff"))
                    .add(("Referrer-Policy", "same-origin"))
                    .add(("Cache-Control", "no-store"))
                    .add(("Content-Security-Policy", csp.clone())),
            )
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok\n") }),
            )
            .route(
                "/static/portal.css",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/css; charset=utf-8")
                        .body(pages::STYLESHEET)
                }),
            )
            .route(
                "/static/portal.js",
                web::get().to(|| async {
                    HttpResponse::Ok()
                        .content_type("text/javascript; charset=utf-8")
                        .body(pages::SCRIPT)
                }),
            )
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/login/oidc", web::get().to(oidc_login))
            .route("/login/oidc/callback", web::get().to(oidc_callback))
            .route("/logout", web::post().to(logout))
            .route("/login/plex", web::post().to(plex_start))
            .route("/login/plex/poll", web::get().to(plex_poll))
            .route("/mfa", web::get().to(mfa_page))
            .route("/mfa", web::post().to(mfa_code))
            .route("/mfa/enroll", web::get().to(enroll_page))
            .route("/mfa/enroll", web::post().to(enroll))
            .route("/mfa/enroll/verify", web::post().to(enroll_verify))
            .route("/", web::get().to(streams))
            .route("/links", web::post().to(link_form))
            .route("/links/{id}/revoke", web::post().to(revoke_form))
            .route("/api/me", web::get().to(me))
            .route("/api/links", web::post().to(new_link))
            .route("/api/links", web::get().to(my_links))
            .route("/api/links/{id}", web::delete().to(delete_link))
            .route("/forward-auth", web::get().to(forward_auth))
            .route("/admin", web::get().to(admin_page))
            .route("/admin/revoke", web::post().to(admin_revoke))
            .default_service(web::to(|| async {
                json_error(StatusCode::NOT_FOUND, "not found")
            }))
    })
    .workers(2)
    .client_request_timeout(Duration::from_secs(5))
    .keep_alive(Duration::from_secs(30))
    .listen(listener)?;
    Ok(server.run())
}

/// No inline script or style; frames only from MediaMTX's own HLS and WebRTC pages (the player).
fn content_security_policy(portal: &Portal) -> String {
    let urls = &portal.config.urls;
    let frames: Vec<String> = [&urls.hls, &urls.webrtc]
        .into_iter()
        .flatten()
        .filter_map(|u| reqwest::Url::parse(u).ok())
        .map(|u| u.origin().ascii_serialization())
        .collect();
    let frame_src = if frames.is_empty() {
        "'none'".to_owned()
    } else {
        frames.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
         frame-src {frame_src}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

fn json_error(status: StatusCode, error: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({ "error": error }))
}

fn bad_request(error: &str) -> HttpResponse {
    json_error(StatusCode::BAD_REQUEST, error)
}

fn html(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(body)
}

fn see_other(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, to))
        .finish()
}

/// A store error: logged (it carries no secret), and the request fails closed.
fn unavailable(e: StoreError) -> HttpResponse {
    tracing::warn!(error = %e, "portal: store unavailable");
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "store unavailable; try again shortly",
    )
}

/// The browser asked for a page (a form's submission), not JSON.
fn wants_html(req: &HttpRequest) -> bool {
    header_str(req.headers(), header::ACCEPT).is_some_and(|a| a.contains("text/html"))
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'r>(req: &'r HttpRequest, name: &str) -> Option<&'r str> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for `name`: HttpOnly, SameSite=Lax, Secure behind https; `None` clears it.
fn set_cookie(portal: &Portal, name: &str, value: Option<&str>, max_age: i64) -> HeaderValue {
    let secure = if portal.config.secure { "; Secure" } else { "" };
    let text = match value {
        Some(v) => format!("{name}={v}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"),
        None => format!("{name}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The same-origin rule of every state change: `Origin`, else `Referer`, must be the portal's
/// own origin (`public_url`). Neither header: refused too.
fn same_origin(portal: &Portal, req: &HttpRequest) -> Result<(), HttpResponse> {
    let headers = req.headers();
    let origin = match header_str(headers, header::ORIGIN) {
        Some(o) => Some(o.to_owned()),
        None => header_str(headers, header::REFERER)
            .and_then(|r| reqwest::Url::parse(r).ok())
            .map(|u| u.origin().ascii_serialization()),
    };
    match origin {
        Some(o) if o == portal.config.origin => Ok(()),
        _ => Err(json_error(
            StatusCode::FORBIDDEN,
            "cross-origin request refused: state changes must come from the portal's own pages",
        )),
    }
}

/// The client's address as the limiter counts it.
fn client(portal: &Portal, req: &HttpRequest) -> String {
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .collect();
    portal
        .client_ip(req.peer_addr().map(|a| a.ip()), &forwarded)
        .map(|ip| ip.to_string())
        .unwrap_or_default()
}

/// Takes a place under `/auth`'s brute-force limits for an attempt by `user` (with a secret
/// `guess`) from the request's client. `None`: past the limit.
async fn attempt(
    portal: &Portal,
    req: &HttpRequest,
    user: &str,
    guess: &str,
) -> Option<Option<Attempt>> {
    let Some(limiter) = &portal.service.verifier.limiter else {
        return Some(None);
    };
    let ip = client(portal, req);
    let probe = Request::new(Action::Read, "", &ip, user, guess);
    limiter.begin(&probe).await.map(Some)
}

fn finish(attempt: Option<Attempt>, failed: bool) {
    if let Some(a) = attempt {
        a.finish(failed);
    }
}

/// The session a request's cookie names; `None` when it names none.
async fn session_of(portal: &Portal, req: &HttpRequest) -> Result<Option<SignedIn>, HttpResponse> {
    match cookie(req, SESSION_COOKIE) {
        Some(c) => portal.signed_in(c).await.map_err(unavailable),
        None => Ok(None),
    }
}

/// A complete session, or the answer for a request without one: for a page, to the sign-in (or
/// the second factor); for the API, 401.
async fn require(portal: &Portal, req: &HttpRequest, page: bool) -> Result<SignedIn, HttpResponse> {
    match session_of(portal, req).await? {
        Some(s) if s.session.complete => Ok(s),
        Some(_) if page => Err(see_other("/mfa")),
        None if page => Err(see_other("/login")),
        _ => Err(json_error(StatusCode::UNAUTHORIZED, "not signed in")),
    }
}

/// A state change by a signed-in person: the same-origin rule, then `require`.
async fn require_change(
    portal: &Portal,
    req: &HttpRequest,
    page: bool,
) -> Result<SignedIn, HttpResponse> {
    same_origin(portal, req)?;
    require(portal, req, page).await
}
