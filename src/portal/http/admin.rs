//! The administrators' page: who is signed in, who is watching, which links are in force.

#![allow(clippy::result_large_err)]

use super::*;

pub(super) async fn require_admin(
    portal: &Portal,
    req: &HttpRequest,
) -> Result<SignedIn, HttpResponse> {
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

pub(super) async fn admin_page(portal: Shared, req: HttpRequest) -> HttpResponse {
    let s = match require_admin(&portal, &req).await {
        Ok(s) => s,
        Err(e) => return e,
    };
    admin_view(&portal, &s, None).await
}

pub(super) async fn admin_view(
    portal: &Portal,
    s: &SignedIn,
    note: Option<String>,
) -> HttpResponse {
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
    let links = match portal.store.links_in_force(None, now).await {
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
pub(super) struct RevokeForm {
    person: String,
}

pub(super) async fn admin_revoke(
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
            tracing::info!(by = %s.person.name, person = %form.person, sessions, links, "portal: an administrator revoked a person's access");
            let note = format!(
                "{}: {sessions} web sessions ended, {links} links revoked.",
                form.person
            );
            admin_view(&portal, &s, Some(note)).await
        }
        Err(e) => unavailable(e),
    }
}
