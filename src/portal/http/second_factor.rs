//! The second factor: the code page, TOTP and recovery codes, and enrolling.

#![allow(clippy::result_large_err)]

use super::*;

pub(super) async fn mfa_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    match session_of(&portal, &req).await {
        Ok(Some(s)) if s.session.complete => see_other("/"),
        Ok(Some(_)) => html(StatusCode::OK, pages::mfa(&portal.config.title, None)),
        Ok(None) => see_other("/login"),
        Err(e) => e,
    }
}

#[derive(Deserialize)]
pub(super) struct CodeForm {
    #[serde(default)]
    code: String,
}

/// Checks a TOTP or recovery code of `person`: `Ok(true)` the one time it is good.
pub(super) async fn check_code(
    portal: &Portal,
    person: &str,
    code: &str,
) -> Result<bool, StoreError> {
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

pub(super) async fn mfa_code(
    portal: Shared,
    req: HttpRequest,
    form: web::Form<CodeForm>,
) -> HttpResponse {
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
    let metrics = &portal.service.metrics;
    let Some(attempt) = attempt(&portal, &req, &s.session.person, &form.code).await else {
        metrics.record_signin("totp", "limited");
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            pages::mfa(title, Some("Too many failed attempts; try again later.")),
        );
    };
    let good = match check_code(&portal, &s.session.person, &form.code).await {
        Ok(good) => good,
        Err(e) => {
            finish(attempt, false);
            metrics.record_signin("totp", "unavailable");
            return unavailable(e);
        }
    };
    finish(attempt, !good);
    metrics.record_signin("totp", if good { "ok" } else { "rejected" });
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
pub(super) async fn complete(portal: &Portal, s: &SignedIn, next: &str) -> HttpResponse {
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
pub(super) async fn enrolling(
    portal: &Portal,
    req: &HttpRequest,
) -> Result<(SignedIn, bool), HttpResponse> {
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

pub(super) async fn enroll_page(portal: Shared, req: HttpRequest) -> HttpResponse {
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
pub(super) fn enrollment_key(session_digest: &str) -> String {
    format!("enroll:{session_digest}")
}

#[derive(Serialize)]
pub(super) struct Enrollment {
    secret: String,
    otpauth_url: String,
    qr_svg: String,
}

pub(super) async fn enroll(
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

pub(super) async fn enroll_verify(
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
    tracing::info!(source = %s.person.source, user = %s.person.name, "portal: two-factor sign-in enrolled");
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
