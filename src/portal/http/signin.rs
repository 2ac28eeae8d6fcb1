//! Signing in and out: the password form (`[[users]]` and account sources), Plex's PIN flow,
//! OpenID Connect's code flow, and what every successful sign-in ends with (`signed_in`).

#![allow(clippy::result_large_err)]

use super::*;

pub(super) fn choices(portal: &Portal) -> LoginChoices<'_> {
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

pub(super) async fn login_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    if let Ok(Some(s)) = session_of(&portal, &req).await {
        return see_other(if s.session.complete { "/" } else { "/mfa" });
    }
    html(
        StatusCode::OK,
        pages::login(&portal.config.title, &choices(&portal), None),
    )
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
}

pub(super) async fn login(
    portal: Shared,
    req: HttpRequest,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    if let Err(refused) = same_origin(&portal, &req) {
        return refused;
    }
    let page = |status, message: &str| {
        html(
            status,
            pages::login(&portal.config.title, &choices(&portal), Some(message)),
        )
    };
    let metrics = &portal.service.metrics;
    let Some(attempt) = attempt(&portal, &req, &form.username, &form.password).await else {
        metrics.record_signin("password", "limited");
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
    metrics.record_signin("password", signin_result(&outcome));
    match outcome {
        Ok((person, digests)) => {
            tracing::info!(source = %person.source, user = %person.name, "portal: signed in");
            signed_in(&portal, &req, Profile { person, digests }).await
        }
        Err(SignInError::Rejected) => {
            tracing::info!(user = %form.username, "portal: sign-in refused");
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

/// The `result` label of `mtx_auth_portal_signins_total` for a sign-in's outcome.
fn signin_result<T>(outcome: &Result<T, SignInError>) -> &'static str {
    match outcome {
        Ok(_) => "ok",
        Err(SignInError::Rejected) => "rejected",
        Err(SignInError::Limited) => "limited",
        Err(SignInError::Unavailable) => "unavailable",
    }
}

/// `GET /login/oidc`: a pending sign-in bound to this browser (the pre-sign-in cookie), and off
/// to the provider's authorization endpoint. 503 while the provider cannot be reached.
pub(super) async fn oidc_login(portal: Shared) -> HttpResponse {
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
pub(super) async fn oidc_callback(portal: Shared, req: HttpRequest) -> HttpResponse {
    let Some(provider) = &portal.oidc else {
        return json_error(StatusCode::NOT_FOUND, "not found");
    };
    let callback = crate::portal::oidc::Callback::parse(req.query_string());
    let pending = cookie(&req, PENDING_COOKIE);
    let finished = provider.finish(&portal.store, pending, &callback).await;
    let result = match &finished {
        Ok(_) => "ok",
        Err(e) if e.status() >= 500 => "unavailable",
        Err(_) => "rejected",
    };
    portal.service.metrics.record_signin("oidc", result);
    match finished {
        Ok(mut person) => {
            person.admin = portal.is_admin(&person);
            tracing::info!(source = %person.source, user = %person.name, "portal: signed in");
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
pub(super) fn oidc_refused(portal: &Portal, e: &crate::portal::oidc::OidcError) -> HttpResponse {
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
pub(super) async fn signed_in(
    portal: &Portal,
    req: &HttpRequest,
    mut profile: Profile,
) -> HttpResponse {
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
pub(super) struct LogoutForm {
    #[serde(default)]
    everywhere: Option<String>,
}

pub(super) async fn logout(
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

/// The account source whose upstream has a PIN sign-in (`[plex]`).
pub(super) fn plex_source(
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
pub(super) struct PendingPin {
    handle: String,
    pin: u64,
}

/// `POST /login/plex`: makes a strong PIN at plex.tv and answers where to send the person;
/// the PIN stays here, bound to this browser by the pending cookie.
pub(super) async fn plex_start(portal: Shared, req: HttpRequest) -> HttpResponse {
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
pub(super) struct PollQuery {
    id: String,
}

/// `GET /login/plex/poll?id=…`: `pending` until the person approved the PIN at plex.tv; then
/// the token is checked like any Plex token on `/auth` (the account must have the server) and
/// the session starts (`ok`, with the cookie), or `denied`.
pub(super) async fn plex_poll(
    portal: Shared,
    req: HttpRequest,
    query: web::Query<PollQuery>,
) -> HttpResponse {
    let status = |s: &str| HttpResponse::Ok().json(json!({ "status": s }));
    let Some(cookie) = cookie(&req, PENDING_COOKIE) else {
        return status("denied");
    };
    let digest = crate::portal::digest(cookie);
    let now = now_unix();
    // The store failing at either end of the poll makes the sign-in unavailable, as plex.tv
    // not answering does.
    let store_down = |e| {
        portal.service.metrics.record_signin("plex", "unavailable");
        unavailable(e)
    };
    let pending: PendingPin = match portal.store.pending(&digest, "plex", now).await {
        Ok(Some(data)) => match serde_json::from_str(&data) {
            Ok(p) => p,
            Err(_) => return status("denied"),
        },
        Ok(None) => return status("denied"),
        Err(e) => return store_down(e),
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
            portal.service.metrics.record_signin("plex", "rejected");
            return status("denied");
        }
        Err(e) => {
            portal.service.metrics.record_signin("plex", "unavailable");
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
        Err(e) => return store_down(e),
    }
    let creds = crate::source::account::Credentials::Token(&token);
    let outcome = people::with_token(&source, &creds).await;
    portal
        .service
        .metrics
        .record_signin("plex", signin_result(&outcome));
    let person = match outcome {
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
