//! What a signed-in person sees and makes: `/`, `/api/me`, their links, and `/forward-auth`.

#![allow(clippy::result_large_err)]

use super::*;

#[derive(Serialize)]
pub(super) struct Me<'a> {
    user: &'a str,
    source: &'a str,
    admin: bool,
    mfa: bool,
    permissions: Vec<serde_json::Value>,
}

pub(super) async fn me(portal: Shared, req: HttpRequest) -> HttpResponse {
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
pub(super) struct LinkRequest {
    action: String,
    path: String,
    #[serde(default)]
    play: Option<String>,
}

/// Why a link cannot be made.
pub(super) enum LinkRefused {
    BadRequest(&'static str),
    Forbidden,
    Store(StoreError),
}

pub(super) async fn make_link(
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
    tracing::info!(source = %s.person.source, user = %s.person.name, id = %link.id, action = action.as_str(), path = %path, "portal: link made");
    Ok(link)
}

pub(super) async fn new_link(
    portal: Shared,
    req: HttpRequest,
    body: web::Json<LinkRequest>,
) -> HttpResponse {
    let s = match require_change(&portal, &req, false).await {
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
pub(super) async fn own_links(
    portal: &Portal,
    person: &str,
) -> Result<Vec<crate::store::CredentialRecord>, StoreError> {
    Ok(portal
        .store
        .links_in_force(Some(person), now_unix())
        .await?
        .into_iter()
        .filter(|c| LinkGrant::of(c).is_some_and(|g| g.session.is_none()))
        .collect())
}

pub(super) async fn my_links(portal: Shared, req: HttpRequest) -> HttpResponse {
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
pub(super) async fn revoke_own(
    portal: &Portal,
    person: &str,
    id: &str,
) -> Result<bool, StoreError> {
    let mine = portal
        .store
        .links_in_force(Some(person), now_unix())
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

pub(super) async fn delete_link(
    portal: Shared,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = match require_change(&portal, &req, false).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match revoke_own(&portal, &s.session.person, &id).await {
        Ok(true) => HttpResponse::Ok().json(json!({ "id": *id, "revoked": true })),
        Ok(false) => json_error(StatusCode::NOT_FOUND, "no such link of yours"),
        Err(e) => unavailable(e),
    }
}

pub(super) async fn revoke_form(
    portal: Shared,
    req: HttpRequest,
    id: web::Path<String>,
) -> HttpResponse {
    let s = match require_change(&portal, &req, true).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    match revoke_own(&portal, &s.session.person, &id).await {
        Ok(_) => see_other("/"),
        Err(e) => unavailable(e),
    }
}

/// The streams page, with what was just made.
pub(super) async fn streams_page(
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

pub(super) async fn streams(portal: Shared, req: HttpRequest) -> HttpResponse {
    match require(&portal, &req, true).await {
        Ok(s) => streams_page(&portal, &s, None, false, None).await,
        Err(e) => e,
    }
}

pub(super) async fn link_form(
    portal: Shared,
    req: HttpRequest,
    form: web::Form<LinkRequest>,
) -> HttpResponse {
    let s = match require_change(&portal, &req, true).await {
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

pub(super) async fn forward_auth(portal: Shared, req: HttpRequest) -> HttpResponse {
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
