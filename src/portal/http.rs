//! The portal's routes (`shared/CONTRACTS.md`, "The viewer portal"), on their own listener.
//!
//! Every answer carries the same protective headers (no framing, no sniffing, a CSP without
//! inline script, no caching); every state change must come from the portal's own origin;
//! sign-in and code attempts go through `/auth`'s brute-force limiter; nothing secret is logged.
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
use crate::portal::people::{self, Person, SignInError};
use crate::portal::{Portal, Profile, SecondFactor, SignedIn, PENDING_COOKIE, SESSION_COOKIE};
use crate::request::Request;
use crate::store::StoreError;
use crate::time::{now_unix, rfc3339};

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

fn choices(portal: &Portal) -> LoginChoices<'_> {
    let policy = portal.service.live.load();
    let password = !policy.users().is_empty()
        || policy.accounts().iter().any(|a| {
            a.pin_flow().is_none()
                && a.accepts(&crate::source::account::Credentials::Login {
                    user: "x",
                    password: "x",
                })
        });
    LoginChoices {
        password,
        oidc: portal.config.oidc.as_ref().map(|o| o.name.as_str()),
        plex: plex_source(&policy).is_some(),
    }
}

async fn login_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    if let Ok(Some(s)) = session_of(&portal, &req).await {
        return see_other(if s.session.complete { "/" } else { "/mfa" });
    }
    html(
        StatusCode::OK,
        pages::login(&portal.config.title, &choices(&portal), None),
    )
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login(portal: Shared, req: HttpRequest, form: web::Form<LoginForm>) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let page = |status, message: &str| {
        html(
            status,
            pages::login(&portal.config.title, &choices(&portal), Some(message)),
        )
    };
    let Some(attempt) = attempt(&portal, &req, &form.username, &form.password).await else {
        return page(
            StatusCode::TOO_MANY_REQUESTS,
            &SignInError::Limited.to_string(),
        );
    };
    let policy = portal.service.live.load();
    let outcome = people::with_password(
        &policy,
        &portal.service.verifier,
        &portal.service.grant_key,
        &form.username,
        &form.password,
    )
    .await;
    finish(attempt, outcome == Err(SignInError::Rejected));
    match outcome {
        Ok(mut person) => {
            person.admin = portal.is_admin(&person);
            let digests = person
                .holds
                .iter()
                .filter_map(|h| match &h.grant {
                    people::Grant::User { digest } => Some(digest.clone()),
                    _ => None,
                })
                .collect::<std::collections::BTreeSet<_>>();
            let mut digests: Vec<String> = digests.into_iter().collect();
            if person.source == "users" && digests.is_empty() {
                // Entries without stream permissions: still the entries the password matched.
                digests = users_digests(&portal, &policy, &person, &form.password).await;
            }
            tracing::info!(source = %person.source, user = %&person.name, "portal: signed in");
            signed_in(&portal, &req, Profile { person, digests }).await
        }
        Err(SignInError::Rejected) => {
            tracing::info!(user = %&form.username, "portal: sign-in refused");
            page(StatusCode::UNAUTHORIZED, &SignInError::Rejected.to_string())
        }
        Err(SignInError::Limited) => page(
            StatusCode::TOO_MANY_REQUESTS,
            &SignInError::Limited.to_string(),
        ),
        Err(SignInError::Unavailable) => page(
            StatusCode::SERVICE_UNAVAILABLE,
            &SignInError::Unavailable.to_string(),
        ),
    }
}

/// The digests of the entries a `[[users]]` password matched, for a person who holds no stream
/// permission through them (so that a reload that removes them still ends the session).
async fn users_digests(
    portal: &Portal,
    policy: &crate::policy::Policy,
    person: &Person,
    password: &str,
) -> Vec<String> {
    let users = policy.users();
    users
        .entries_named(&person.id)
        .into_iter()
        .filter(|&i| users.get(i).credentials_match(&person.id, password) == Some(false))
        .map(|i| crate::sessions::user_digest(&portal.service.grant_key, policy, i))
        .collect()
}

/// `GET /login/oidc`: a pending sign-in bound to this browser (the pre-sign-in cookie), and off
/// to the provider's authorization endpoint. 503 while the provider cannot be reached.
async fn oidc_login(portal: Shared) -> HttpResponse {
    let Some(provider) = &portal.oidc else {
        return json_error(StatusCode::NOT_FOUND, "not found");
    };
    match provider.begin(&portal.store).await {
        Ok(started) => HttpResponse::Found()
            .insert_header((header::LOCATION, started.location))
            .append_header((
                header::SET_COOKIE,
                set_cookie(
                    &portal,
                    PENDING_COOKIE,
                    Some(&started.cookie),
                    crate::portal::PENDING_SECS,
                ),
            ))
            .finish(),
        Err(e) => oidc_refused(&portal, &e),
    }
}

/// `GET /login/oidc/callback`: the provider sends the browser back with a code; the sign-in
/// finishes as `POST /login`'s does.
async fn oidc_callback(portal: Shared, req: HttpRequest) -> HttpResponse {
    let Some(provider) = &portal.oidc else {
        return json_error(StatusCode::NOT_FOUND, "not found");
    };
    let callback = crate::portal::oidc::Callback::parse(req.query_string());
    let pending = cookie(&req, PENDING_COOKIE);
    match provider.finish(&portal.store, pending, &callback).await {
        Ok(mut person) => {
            person.admin = portal.is_admin(&person);
            tracing::info!(source = %person.source, user = %&person.name, "portal: signed in");
            let profile = Profile {
                person,
                digests: Vec::new(),
            };
            signed_in(&portal, &req, profile).await
        }
        Err(e) => oidc_refused(&portal, &e),
    }
}

/// The sign-in page again, saying why an OIDC sign-in did not happen; the pre-sign-in cookie
/// is cleared.
fn oidc_refused(portal: &Portal, e: &crate::portal::oidc::OidcError) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST))
        .append_header((
            header::SET_COOKIE,
            set_cookie(portal, PENDING_COOKIE, None, 0),
        ))
        .content_type("text/html; charset=utf-8")
        .body(pages::login(
            &portal.config.title,
            &choices(portal),
            Some(&e.to_string()),
        ))
}

/// A sign-in succeeded: a new session (the cookie changes), complete or waiting for its second
/// factor; 303 to `/` or `/mfa`.
async fn signed_in(portal: &Portal, req: &HttpRequest, mut profile: Profile) -> HttpResponse {
    profile.person.admin = portal.is_admin(&profile.person);
    portal.remember_recheck(&profile.person);
    // Whatever session this browser had ends: a sign-in always starts a new one.
    if let Ok(Some(old)) = session_of(portal, req).await {
        let _ = portal.end_session(&old.session).await;
    }
    let factor = match portal.second_factor(&profile.person).await {
        Ok(f) => f,
        Err(e) => return unavailable(e),
    };
    let complete = factor == SecondFactor::None;
    let cookie = match portal.begin_session(&profile, complete, None, 0).await {
        Ok(Some(c)) => c,
        Ok(None) => return json_error(StatusCode::CONFLICT, "sign in again"),
        Err(e) => return unavailable(e),
    };
    let max_age = portal.config.session_ttl.as_secs() as i64;
    let next = match factor {
        SecondFactor::None => "/",
        SecondFactor::Code => "/mfa",
        SecondFactor::Enroll => "/mfa/enroll",
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, next))
        .append_header((
            header::SET_COOKIE,
            set_cookie(portal, SESSION_COOKIE, Some(&cookie), max_age),
        ))
        .append_header((
            header::SET_COOKIE,
            set_cookie(portal, PENDING_COOKIE, None, 0),
        ))
        .finish()
}

#[derive(Deserialize)]
struct LogoutForm {
    #[serde(default)]
    everywhere: Option<String>,
}

async fn logout(
    portal: Shared,
    req: HttpRequest,
    form: Option<web::Form<LogoutForm>>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let session = match session_of(&portal, &req).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    if let Some(s) = session {
        let everywhere = form.is_some_and(|f| f.everywhere.is_some()) && s.session.complete;
        let ended = match everywhere {
            true => portal.end_person(&s.session.person).await.map(|_| ()),
            false => portal.end_session(&s.session).await,
        };
        if let Err(e) = ended {
            return unavailable(e);
        }
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/login"))
        .append_header((
            header::SET_COOKIE,
            set_cookie(&portal, SESSION_COOKIE, None, 0),
        ))
        .finish()
}

async fn mfa_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    match session_of(&portal, &req).await {
        Ok(Some(s)) if s.session.complete => see_other("/"),
        Ok(Some(_)) => html(StatusCode::OK, pages::mfa(&portal.config.title, None)),
        Ok(None) => see_other("/login"),
        Err(e) => e,
    }
}

#[derive(Deserialize)]
struct CodeForm {
    #[serde(default)]
    code: String,
}

/// Checks a TOTP or recovery code of `person`: `Ok(true)` the one time it is good.
async fn check_code(portal: &Portal, person: &str, code: &str) -> Result<bool, StoreError> {
    let now = now_unix();
    if mfa::looks_like_recovery_code(code) {
        return portal
            .store
            .use_recovery_code(person, &mfa::recovery_digest(code), now)
            .await;
    }
    let (Some(sealer), Some(record)) = (portal.sealer(), portal.store.mfa(person).await?) else {
        return Ok(false);
    };
    let Some(secret) = sealer.open(person, &record.secret) else {
        tracing::warn!(
            "portal: an MFA secret does not open with the configured key; was the key changed?"
        );
        return Ok(false);
    };
    match mfa::verify(&secret, code, now) {
        Some(step) => portal.store.take_totp_step(person, step).await,
        None => Ok(false),
    }
}

async fn mfa_code(portal: Shared, req: HttpRequest, form: web::Form<CodeForm>) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let title = &portal.config.title;
    let s = match session_of(&portal, &req).await {
        Ok(Some(s)) => s,
        Ok(None) => return see_other("/login"),
        Err(e) => return e,
    };
    if s.session.complete {
        return see_other("/");
    }
    let Some(attempt) = attempt(&portal, &req, &s.session.person, &form.code).await else {
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::mfa(title, Some("Too many failed attempts; try again later.")),
        );
    };
    let good = match check_code(&portal, &s.session.person, &form.code).await {
        Ok(good) => good,
        Err(e) => {
            finish(attempt, false);
            return unavailable(e);
        }
    };
    finish(attempt, !good);
    if !good {
        let failures = match portal
            .store
            .count_mfa_failure(&s.session.digest, mfa::MAX_CODE_FAILURES)
            .await
        {
            Ok(n) => n,
            Err(e) => return unavailable(e),
        };
        if failures >= mfa::MAX_CODE_FAILURES {
            tracing::info!("portal: a pending sign-in ended after {failures} wrong codes");
            return HttpResponse::build(StatusCode::UNAUTHORIZED)
                .append_header((
                    header::SET_COOKIE,
                    set_cookie(&portal, SESSION_COOKIE, None, 0),
                ))
                .content_type("text/html; charset=utf-8")
                .body(pages::login(
                    title,
                    &choices(&portal),
                    Some("Too many wrong codes. Sign in again."),
                ));
        }
        return html(
            StatusCode::UNAUTHORIZED,
            pages::mfa(title, Some("That code is not right (or was used already).")),
        );
    }
    // The second factor passed: the cookie changes again.
    complete(&portal, &s, "/").await
}

/// Replaces a half-signed-in session with a complete one and sends the browser on to `next`.
async fn complete(portal: &Portal, s: &SignedIn, next: &str) -> HttpResponse {
    match portal
        .begin_session(&s.profile, true, Some(&s.session.digest), 0)
        .await
    {
        Ok(Some(cookie)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, next))
            .append_header((
                header::SET_COOKIE,
                set_cookie(
                    portal,
                    SESSION_COOKIE,
                    Some(&cookie),
                    portal.config.session_ttl.as_secs() as i64,
                ),
            ))
            .finish(),
        Ok(None) => see_other("/login"),
        Err(e) => unavailable(e),
    }
}

/// The session that may enroll: a complete one, or one waiting to enroll (`mfa = "required"`).
async fn enrolling(portal: &Portal, req: &HttpRequest) -> Result<(SignedIn, bool), HttpResponse> {
    if portal.sealer().is_none() {
        return Err(json_error(
            StatusCode::NOT_FOUND,
            "two-factor sign-in is off",
        ));
    }
    let s = match session_of(portal, req).await? {
        Some(s) => s,
        None if wants_html(req) => return Err(see_other("/login")),
        None => return Err(json_error(StatusCode::UNAUTHORIZED, "not signed in")),
    };
    let enrolled = portal
        .store
        .mfa(&s.session.person)
        .await
        .map_err(unavailable)?
        .is_some();
    if !s.session.complete && enrolled {
        // Half signed in with a factor enrolled: the code comes first.
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "second factor required",
        ));
    }
    Ok((s, enrolled))
}

async fn enroll_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    match enrolling(&portal, &req).await {
        Ok((s, enrolled)) => html(
            StatusCode::OK,
            pages::enroll(
                &portal.config.title,
                s.session.complete.then_some(&s.person),
                enrolled,
                None,
                None,
            ),
        ),
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => see_other("/mfa"),
        Err(e) => e,
    }
}

/// The store key of an enrollment under way: bound to the session that started it.
fn enrollment_key(session_digest: &str) -> String {
    format!("enroll:{session_digest}")
}

#[derive(Serialize)]
struct Enrollment {
    secret: String,
    otpauth_url: String,
    qr_svg: String,
}

async fn enroll(
    portal: Shared,
    req: HttpRequest,
    form: Option<web::Form<CodeForm>>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let (s, enrolled) = match enrolling(&portal, &req).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let page = wants_html(&req);
    let person = s.session.person.clone();
    if enrolled {
        // Enrolling again replaces the factor: it takes a current code (or a recovery code).
        let code = form.map(|f| f.code.clone()).unwrap_or_default();
        let Some(attempt) = attempt(&portal, &req, &person, &code).await else {
            return json_error(StatusCode::TOO_MANY_REQUESTS, "too many failed attempts");
        };
        let good = match check_code(&portal, &person, &code).await {
            Ok(g) => g,
            Err(e) => return unavailable(e),
        };
        finish(attempt, !good);
        if !good {
            return match page {
                true => html(
                    StatusCode::UNAUTHORIZED,
                    pages::enroll(
                        &portal.config.title,
                        Some(&s.person),
                        true,
                        None,
                        Some("That code is not right."),
                    ),
                ),
                false => json_error(
                    StatusCode::UNAUTHORIZED,
                    "a current code or a recovery code is needed to enroll again",
                ),
            };
        }
    }
    let Some(sealer) = portal.sealer() else {
        return json_error(StatusCode::NOT_FOUND, "two-factor sign-in is off");
    };
    let secret = mfa::new_secret();
    let sealed = sealer.seal(&person, &secret);
    let expires = now_unix() + crate::portal::PENDING_SECS;
    if let Err(e) = portal
        .store
        .put_pending(
            &enrollment_key(&s.session.digest),
            "mfa_enroll",
            &sealed,
            expires,
        )
        .await
    {
        return unavailable(e);
    }
    let account = format!("{} ({})", s.person.name, s.person.source);
    let otpauth_url = mfa::otpauth_url(&secret, &portal.config.title, &account);
    let enrollment = Enrollment {
        secret: mfa::secret_base32(&secret),
        qr_svg: mfa::qr_svg(&otpauth_url),
        otpauth_url,
    };
    match page {
        true => html(
            StatusCode::OK,
            pages::enroll(
                &portal.config.title,
                s.session.complete.then_some(&s.person),
                enrolled,
                Some((&enrollment.secret, &enrollment.qr_svg)),
                None,
            ),
        ),
        false => HttpResponse::Ok().json(enrollment),
    }
}

async fn enroll_verify(
    portal: Shared,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let (s, _) = match enrolling(&portal, &req).await {
        Ok(x) => x,
        Err(e) => return e,
    };
    let person = s.session.person.clone();
    let Some(sealer) = portal.sealer() else {
        return json_error(StatusCode::NOT_FOUND, "two-factor sign-in is off");
    };
    let key = enrollment_key(&s.session.digest);
    let now = now_unix();
    let sealed = match portal.store.pending(&key, "mfa_enroll", now).await {
        Ok(Some(sealed)) => sealed,
        Ok(None) => {
            return json_error(
                StatusCode::CONFLICT,
                "no enrollment under way: POST /mfa/enroll first",
            )
        }
        Err(e) => return unavailable(e),
    };
    let Some(attempt) = attempt(&portal, &req, &person, &form.code).await else {
        return json_error(StatusCode::TOO_MANY_REQUESTS, "too many failed attempts");
    };
    let step = sealer
        .open(&person, &sealed)
        .and_then(|secret| mfa::verify(&secret, &form.code, now));
    finish(attempt, step.is_none());
    let Some(step) = step else {
        return match wants_html(&req) {
            true => html(
                StatusCode::UNAUTHORIZED,
                pages::enroll(
                    &portal.config.title,
                    s.session.complete.then_some(&s.person),
                    false,
                    None,
                    Some("That code is not right; set up again."),
                ),
            ),
            false => json_error(StatusCode::UNAUTHORIZED, "that code is not right"),
        };
    };
    // Used up: the same enrollment cannot be finished twice.
    match portal.store.take_pending(&key, "mfa_enroll", now).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return json_error(StatusCode::CONFLICT, "this enrollment was already finished")
        }
        Err(e) => return unavailable(e),
    }
    let codes = mfa::new_recovery_codes();
    let digests: Vec<String> = codes.iter().map(|c| mfa::recovery_digest(c)).collect();
    if let Err(e) = portal
        .store
        .enroll_mfa(&person, &sealed, step, &digests, now)
        .await
    {
        return unavailable(e);
    }
    tracing::info!(source = %s.person.source, user = %&s.person.name, "portal: two-factor sign-in enrolled");
    let page = wants_html(&req);
    if !s.session.complete {
        // Enrolled as the second factor of this sign-in: the session is complete now (and
        // its cookie changes).
        let mut resp = complete(&portal, &s, "/").await;
        if resp.status() != StatusCode::SEE_OTHER {
            return resp;
        }
        let cookies: Vec<HeaderValue> = resp
            .headers()
            .get_all(header::SET_COOKIE)
            .cloned()
            .collect();
        resp = match page {
            true => html(
                StatusCode::OK,
                pages::recovery_codes(&portal.config.title, Some(&s.person), &codes),
            ),
            false => HttpResponse::Ok().json(json!({ "recovery_codes": codes })),
        };
        for c in cookies {
            resp.headers_mut().append(header::SET_COOKIE, c);
        }
        return resp;
    }
    match page {
        true => html(
            StatusCode::OK,
            pages::recovery_codes(&portal.config.title, Some(&s.person), &codes),
        ),
        false => HttpResponse::Ok().json(json!({ "recovery_codes": codes })),
    }
}

#[derive(Serialize)]
struct Me<'a> {
    user: &'a str,
    source: &'a str,
    admin: bool,
    mfa: bool,
    permissions: Vec<serde_json::Value>,
}

async fn me(portal: Shared, req: HttpRequest) -> HttpResponse {
    let s = match require(&portal, &req, false).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    let mfa = match portal.store.mfa(&s.session.person).await {
        Ok(m) => m.is_some(),
        Err(e) => return unavailable(e),
    };
    HttpResponse::Ok().json(Me {
        user: &s.person.name,
        source: &s.person.source,
        admin: s.person.admin,
        mfa,
        permissions: s
            .person
            .holds
            .iter()
            .map(|h| json!({ "action": h.action, "path": h.path }))
            .collect(),
    })
}

#[derive(Deserialize)]
struct LinkRequest {
    action: String,
    path: String,
    #[serde(default)]
    play: Option<String>,
}

/// Why a link cannot be made.
enum LinkRefused {
    BadRequest(&'static str),
    Forbidden,
    Store(StoreError),
}

async fn make_link(
    portal: &Portal,
    s: &SignedIn,
    action: &str,
    path: &str,
) -> Result<links::NewLink, LinkRefused> {
    let action = match action.parse::<Action>() {
        Ok(a) if a.has_path() => a,
        _ => {
            return Err(LinkRefused::BadRequest(
                "action: one of publish, read, playback",
            ))
        }
    };
    if !links::valid_path(path) {
        return Err(LinkRefused::BadRequest(
            "path: a MediaMTX path name (letters, digits, _-.~/)",
        ));
    }
    let Some(holding) = s.person.holding_for(action, path) else {
        return Err(LinkRefused::Forbidden);
    };
    let now = now_unix();
    let expires_at = now + portal.config.link_ttl.as_secs() as i64;
    let link = links::mint(
        &portal.store,
        &portal.service.verifier.issued,
        &s.person,
        holding,
        action,
        path,
        expires_at,
        None,
        now,
    )
    .await
    .map_err(LinkRefused::Store)?;
    tracing::info!(source = %s.person.source, user = %&s.person.name, id = %link.id, action = action.as_str(), path = %path, "portal: link made");
    Ok(link)
}

async fn new_link(portal: Shared, req: HttpRequest, body: web::Json<LinkRequest>) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let s = match require(&portal, &req, false).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match make_link(&portal, &s, &body.action, &body.path).await {
        Ok(link) => {
            let urls = links::urls(&portal.config.urls, &link.action, &link.path, &link.token);
            HttpResponse::Ok().json(json!({
                "id": link.id,
                "token": link.token,
                "expires_at": rfc3339(link.expires_at),
                "urls": urls,
            }))
        }
        Err(LinkRefused::BadRequest(why)) => bad_request(why),
        Err(LinkRefused::Forbidden) => {
            json_error(StatusCode::FORBIDDEN, "you do not hold that permission")
        }
        Err(LinkRefused::Store(e)) => unavailable(e),
    }
}

/// The person's own links in force (not the ones `/forward-auth` makes).
async fn own_links(
    portal: &Portal,
    person: &str,
) -> Result<Vec<crate::store::CredentialRecord>, StoreError> {
    Ok(portal
        .store
        .credentials_of(person, now_unix())
        .await?
        .into_iter()
        .filter(|c| LinkGrant::of(c).is_some_and(|g| g.session.is_none()))
        .collect())
}

async fn my_links(portal: Shared, req: HttpRequest) -> HttpResponse {
    let s = match require(&portal, &req, false).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match own_links(&portal, &s.session.person).await {
        Ok(list) => HttpResponse::Ok().json(
            list.iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "name": c.name,
                        "permissions": c.permissions,
                        "created_at": rfc3339(c.created_at),
                        "expires_at": c.expires_at.and_then(rfc3339),
                    })
                })
                .collect::<Vec<_>>(),
        ),
        Err(e) => unavailable(e),
    }
}

/// Revokes one of the person's own links (its live sessions are kicked). `Ok(false)`: no such
/// link of theirs.
async fn revoke_own(portal: &Portal, person: &str, id: &str) -> Result<bool, StoreError> {
    let mine = portal
        .store
        .credentials_of(person, now_unix())
        .await?
        .iter()
        .any(|c| c.id == id);
    if mine {
        portal
            .store
            .revoke_credentials(&[id.to_owned()], now_unix())
            .await?;
    }
    Ok(mine)
}

async fn delete_link(portal: Shared, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let s = match require(&portal, &req, false).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match revoke_own(&portal, &s.session.person, &id).await {
        Ok(true) => HttpResponse::Ok().json(json!({ "id": *id, "revoked": true })),
        Ok(false) => json_error(StatusCode::NOT_FOUND, "no such link of yours"),
        Err(e) => unavailable(e),
    }
}

async fn revoke_form(portal: Shared, req: HttpRequest, id: web::Path<String>) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let s = match require(&portal, &req, true).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match revoke_own(&portal, &s.session.person, &id).await {
        Ok(_) => see_other("/"),
        Err(e) => unavailable(e),
    }
}

/// The streams page, with what was just made.
async fn streams_page(
    portal: &Portal,
    s: &SignedIn,
    made: Option<links::NewLink>,
    play: bool,
    note: Option<String>,
) -> HttpResponse {
    let person = &s.person;
    let mut paths: std::collections::BTreeMap<String, pages::Stream> = Default::default();
    let mut add = |path: &str, action: &str| {
        let e = paths
            .entry(path.to_owned())
            .or_insert_with(|| pages::Stream {
                path: path.to_owned(),
                read: false,
                publish: false,
            });
        match action {
            "publish" => e.publish = true,
            _ => e.read = true,
        }
    };
    let mut patterns = Vec::new();
    for h in &person.holds {
        if h.path.is_empty() || h.path.starts_with('~') {
            patterns.push((h.action.clone(), h.path.clone()));
        } else if h.action != "playback" {
            add(&h.path, &h.action);
        }
    }
    // With MediaMTX's API, the paths it has now that the person may read or publish.
    let mut note = note;
    if let Some(watch) = &portal.service.sessions {
        if let Some(api) = watch
            .config
            .api_url
            .as_deref()
            .or_else(|| watch.config.apis().first().map(|a| &***a))
        {
            match watch.api.paths(api).await {
                Ok(names) => {
                    for name in names {
                        for action in [Action::Read, Action::Publish] {
                            if person.holding_for(action, &name).is_some() {
                                add(&name, action.as_str());
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "portal: cannot list MediaMTX's paths");
                    note.get_or_insert_with(|| {
                        "MediaMTX's list of paths is not available; showing your permissions."
                            .into()
                    });
                }
            }
        }
    }
    let links = match own_links(portal, &s.session.person).await {
        Ok(l) => l,
        Err(e) => return unavailable(e),
    };
    let mfa_enrolled = match portal.store.mfa(&s.session.person).await {
        Ok(m) => m.is_some(),
        Err(e) => return unavailable(e),
    };
    let new_link = made.map(|l| {
        let urls = links::urls(&portal.config.urls, &l.action, &l.path, &l.token);
        (l, urls)
    });
    let player = new_link
        .as_ref()
        .filter(|_| play)
        .and_then(|(_, urls)| urls.webrtc.clone().or_else(|| urls.hls.clone()));
    let page = pages::StreamsPage {
        person,
        streams: paths.into_values().collect(),
        patterns,
        links: links
            .iter()
            .map(|c| pages::LinkRow {
                id: c.id.clone(),
                action: c
                    .permissions
                    .first()
                    .map(|p| p.action.clone())
                    .unwrap_or_default(),
                path: c
                    .permissions
                    .first()
                    .map(|p| p.path.clone())
                    .unwrap_or_default(),
                expires_at: c.expires_at.and_then(rfc3339),
            })
            .collect(),
        new_link,
        player,
        mfa_offered: portal.sealer().is_some(),
        mfa_enrolled,
        note,
    };
    html(StatusCode::OK, pages::streams(&portal.config.title, &page))
}

async fn streams(portal: Shared, req: HttpRequest) -> HttpResponse {
    match require(&portal, &req, true).await {
        Ok(s) => streams_page(&portal, &s, None, false, None).await,
        Err(e) => e,
    }
}

async fn link_form(portal: Shared, req: HttpRequest, form: web::Form<LinkRequest>) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let s = match require(&portal, &req, true).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match make_link(&portal, &s, &form.action, form.path.trim()).await {
        Ok(link) => streams_page(&portal, &s, Some(link), form.play.is_some(), None).await,
        Err(LinkRefused::BadRequest(why)) => {
            streams_page(&portal, &s, None, false, Some(why.into())).await
        }
        Err(LinkRefused::Forbidden) => {
            streams_page(
                &portal,
                &s,
                None,
                false,
                Some("You do not hold that permission.".into()),
            )
            .await
        }
        Err(LinkRefused::Store(e)) => unavailable(e),
    }
}

/// The MediaMTX path and action a proxied URI is about: the path without its leading slash
/// and without a last segment that is one of MediaMTX's HLS/WebRTC resources (a playlist or
/// segment, `whep`/`whip` and their session URLs, the reader or publisher page's trailing
/// slash). `/cam1/index.m3u8`, `/cam1/whep`, `/cam1/` and `/cam1` all mean `cam1`.
pub fn proxied_path(uri: &str) -> Option<(String, Action)> {
    let path = uri.split(['?', '#']).next()?.trim_start_matches('/');
    let mut segments: Vec<&str> = path.split('/').collect();
    let mut action = Action::Read;
    if segments.last() == Some(&"") {
        segments.pop();
    }
    // `/cam1/whep/<session>`: WHEP's and WHIP's own session URLs (PATCH, DELETE).
    if segments.len() >= 3 && matches!(segments[segments.len() - 2], "whep" | "whip") {
        segments.pop();
    }
    if let Some(&last) = segments.last() {
        let resource = last.ends_with(".m3u8")
            || last.ends_with(".mp4")
            || last.ends_with(".ts")
            || matches!(last, "whep" | "whip" | "publish");
        if resource && segments.len() > 1 {
            if matches!(last, "whip" | "publish") {
                action = Action::Publish;
            }
            segments.pop();
        }
    }
    let path = segments.join("/");
    links::valid_path(&path).then_some((path, action))
}

async fn forward_auth(portal: Shared, req: HttpRequest) -> HttpResponse {
    let unauthorized = || {
        json_error(
            StatusCode::UNAUTHORIZED,
            "not signed in, or not allowed this path",
        )
    };
    let headers = req.headers();
    let uri = header_str(headers, header::HeaderName::from_static("x-forwarded-uri"))
        .or_else(|| header_str(headers, header::HeaderName::from_static("x-original-uri")));
    let Some((path, action)) = uri.and_then(proxied_path) else {
        return unauthorized();
    };
    let s = match session_of(&portal, &req).await {
        Ok(Some(s)) if s.session.complete => s,
        Ok(_) => return unauthorized(),
        Err(e) => return e,
    };
    let Some(holding) = s.person.holding_for(action, &path) else {
        return unauthorized();
    };
    let token = match portal.forward_cached(&s.session.digest, &path, action.as_str()) {
        Some(token) => token,
        None => {
            let now = now_unix();
            let minted = links::mint(
                &portal.store,
                &portal.service.verifier.issued,
                &s.person,
                holding,
                action,
                &path,
                // As long as the web session: its sessions are kicked when it ends (logout).
                s.session.expires_at,
                Some(s.session.digest.clone()),
                now,
            )
            .await;
            match minted {
                Ok(link) => {
                    portal.forward_remember(
                        &s.session.digest,
                        &path,
                        action.as_str(),
                        link.token.clone(),
                    );
                    link.token
                }
                Err(e) => return unavailable(e),
            }
        }
    };
    HttpResponse::Ok()
        .insert_header((header::AUTHORIZATION, format!("Bearer {token}")))
        .finish()
}

async fn require_admin(portal: &Portal, req: &HttpRequest) -> Result<SignedIn, HttpResponse> {
    let s = require(portal, req, true).await?;
    if !s.person.admin {
        return Err(html(
            StatusCode::FORBIDDEN,
            pages::error(
                &portal.config.title,
                "Not allowed",
                "This page is for administrators.",
            ),
        ));
    }
    Ok(s)
}

async fn admin_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    let s = match require_admin(&portal, &req).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    admin_view(&portal, &s, None).await
}

async fn admin_view(portal: &Portal, s: &SignedIn, note: Option<String>) -> HttpResponse {
    let now = now_unix();
    let time = |t: i64| rfc3339(t).unwrap_or_default();
    let sessions = match portal.store.web_sessions(now).await {
        Ok(v) => v,
        Err(e) => return unavailable(e),
    };
    let signed_in = sessions
        .iter()
        .filter(|w| w.complete)
        .filter_map(|w| {
            let p: Profile = serde_json::from_str(&w.profile).ok()?;
            Some((
                w.person.clone(),
                p.person.name,
                p.person.source,
                time(w.created_at),
            ))
        })
        .collect();
    let watching = portal
        .service
        .sessions
        .as_ref()
        .map(|w| {
            let mut list = w.registry.select(|_| true);
            list.sort_by_key(|s| std::cmp::Reverse(s.created_at));
            list.iter()
                .take(500)
                .map(|s| {
                    (
                        s.identity.to_string(),
                        s.protocol.to_string(),
                        s.action.as_str().to_owned(),
                        s.path.to_string(),
                        time(s.created_at),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let links = match portal.store.portal_credentials(now).await {
        Ok(v) => v
            .iter()
            .filter(|c| LinkGrant::of(c).is_some_and(|g| g.session.is_none()))
            .map(|c| {
                let p = c.permissions.first();
                (
                    c.owner.clone().unwrap_or_default(),
                    c.name.clone(),
                    p.map(|p| p.action.clone()).unwrap_or_default(),
                    p.map(|p| p.path.clone()).unwrap_or_default(),
                    c.expires_at.map(time).unwrap_or_else(|| "never".into()),
                )
            })
            .collect(),
        Err(e) => return unavailable(e),
    };
    html(
        StatusCode::OK,
        pages::admin(
            &portal.config.title,
            &pages::AdminPage {
                person: &s.person,
                signed_in,
                watching,
                links,
                note,
            },
        ),
    )
}

#[derive(Deserialize)]
struct RevokeForm {
    person: String,
}

async fn admin_revoke(
    portal: Shared,
    req: HttpRequest,
    form: web::Form<RevokeForm>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let s = match require_admin(&portal, &req).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match portal.end_person(&form.person).await {
        Ok((sessions, links)) => {
            tracing::info!(by = %&s.person.name, person = %&form.person, sessions, links, "portal: an administrator revoked a person's access");
            let note = format!(
                "{}: {sessions} web sessions ended, {links} links revoked.",
                form.person
            );
            admin_view(&portal, &s, Some(note)).await
        }
        Err(e) => unavailable(e),
    }
}

/// The account source whose upstream has a PIN sign-in (`[plex]`).
fn plex_source(
    policy: &crate::policy::Policy,
) -> Option<Arc<crate::source::account::AccountSource>> {
    policy
        .accounts()
        .iter()
        .find(|a| a.pin_flow().is_some())
        .cloned()
}

/// What the store keeps of a Plex sign-in under way: our handle (what the page polls with) and
/// plex.tv's PIN id.
#[derive(Serialize, Deserialize)]
struct PendingPin {
    handle: String,
    pin: u64,
}

/// `POST /login/plex`: makes a strong PIN at plex.tv and answers where to send the person;
/// the PIN stays here, bound to this browser by the pending cookie.
async fn plex_start(portal: Shared, req: HttpRequest) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let policy = portal.service.live.load();
    let Some(source) = plex_source(&policy) else {
        return json_error(StatusCode::NOT_FOUND, "Plex sign-in is not configured");
    };
    let Some(flow) = source.pin_flow() else {
        return json_error(StatusCode::NOT_FOUND, "Plex sign-in is not configured");
    };
    let pin = match flow.start().await {
        Ok(pin) => pin,
        Err(e) => {
            tracing::warn!(error = %e, "portal: cannot make a Plex PIN");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "plex.tv is not answering; try again shortly",
            );
        }
    };
    let (cookie, digest) = crate::portal::new_session_id();
    let (handle, _) = crate::portal::new_session_id();
    let pending = PendingPin {
        handle: handle.clone(),
        pin: pin.id,
    };
    let data = serde_json::to_string(&pending).unwrap_or_default();
    let expires = now_unix() + crate::portal::PENDING_SECS;
    if let Err(e) = portal
        .store
        .put_pending(&digest, "plex", &data, expires)
        .await
    {
        return unavailable(e);
    }
    HttpResponse::Ok()
        .append_header((
            header::SET_COOKIE,
            set_cookie(
                &portal,
                PENDING_COOKIE,
                Some(&cookie),
                crate::portal::PENDING_SECS,
            ),
        ))
        .json(json!({ "auth_url": pin.auth_url, "id": handle }))
}

#[derive(Deserialize)]
struct PollQuery {
    id: String,
}

/// `GET /login/plex/poll?id=…`: `pending` until the person approved the PIN at plex.tv; then
/// the token is checked like any Plex token on `/auth` (the account must have the server) and
/// the session starts (`ok`, with the cookie), or `denied`.
async fn plex_poll(portal: Shared, req: HttpRequest, query: web::Query<PollQuery>) -> HttpResponse {
    let status = |s: &str| HttpResponse::Ok().json(json!({ "status": s }));
    let Some(cookie) = cookie(&req, PENDING_COOKIE) else {
        return status("denied");
    };
    let digest = crate::portal::digest(cookie);
    let now = now_unix();
    let pending: PendingPin = match portal.store.pending(&digest, "plex", now).await {
        Ok(Some(data)) => match serde_json::from_str(&data) {
            Ok(p) => p,
            Err(_) => return status("denied"),
        },
        Ok(None) => return status("denied"),
        Err(e) => return unavailable(e),
    };
    if !crate::credential::ct_eq(pending.handle.as_bytes(), query.id.as_bytes()) {
        return status("denied");
    }
    let policy = portal.service.live.load();
    let Some(source) = plex_source(&policy) else {
        return status("denied");
    };
    let Some(flow) = source.pin_flow() else {
        return status("denied");
    };
    let token = match flow.poll(pending.pin).await {
        Ok(None) => return status("pending"),
        Ok(Some(token)) => token,
        Err(crate::source::account::CheckError::Rejected(_)) => {
            let _ = portal.store.take_pending(&digest, "plex", now).await;
            return status("denied");
        }
        Err(e) => {
            tracing::warn!(error = %e, "portal: cannot ask plex.tv about a PIN");
            return json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "plex.tv is not answering; try again shortly",
            );
        }
    };
    // Used once: a second poll cannot start a second session.
    match portal.store.take_pending(&digest, "plex", now).await {
        Ok(Some(_)) => {}
        Ok(None) => return status("denied"),
        Err(e) => return unavailable(e),
    }
    let creds = crate::source::account::Credentials::Token(&token);
    let person = match people::with_token(&source, &creds).await {
        Ok(person) => person,
        Err(SignInError::Rejected) => {
            tracing::info!("portal: a Plex account without access to the server was refused");
            return status("denied");
        }
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    };
    tracing::info!(source = %person.source, user = %person.name, "portal: signed in");
    let redirect = signed_in(
        &portal,
        &req,
        Profile {
            person,
            digests: Vec::new(),
        },
    )
    .await;
    if redirect.status() != StatusCode::SEE_OTHER {
        return redirect;
    }
    let next = redirect
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("/")
        .to_owned();
    let mut answer = HttpResponse::Ok().json(json!({ "status": "ok", "next": next }));
    for c in redirect.headers().get_all(header::SET_COOKIE) {
        answer.headers_mut().append(header::SET_COOKIE, c.clone());
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxied_uris_name_their_path() {
        for (uri, path) in [
            ("/cam1/index.m3u8", "cam1"),
            ("/cam1/whep", "cam1"),
            ("/cam1/", "cam1"),
            ("/cam1", "cam1"),
            ("/cam1/index.m3u8?token=x", "cam1"),
            ("/live/a/stream.m3u8", "live/a"),
            ("/cam1/seg7.mp4", "cam1"),
            ("/cam1/whep/3f1c-aa", "cam1"),
        ] {
            assert_eq!(
                proxied_path(uri).map(|p| p.0),
                Some(path.to_owned()),
                "{uri}"
            );
        }
        assert_eq!(proxied_path("/cam1/whip").unwrap().1, Action::Publish);
        assert_eq!(proxied_path("/cam1/index.m3u8").unwrap().1, Action::Read);
        for bad in ["", "/", "/../etc", "/a b/x.m3u8"] {
            assert_eq!(proxied_path(bad), None, "{bad}");
        }
    }
}
