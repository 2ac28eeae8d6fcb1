//! "Sign in with …" (`[portal.oidc]`) against a real OpenID provider (panva's oidc-provider,
//! tests/oidc/provider.mjs): the authorization code flow with PKCE followed by hand, as a
//! browser follows it — the portal's redirect, the provider's login and consent (its own cookie
//! jar), the callback — then what the person holds, a link that works on `/auth`, and every
//! refusal: a wrong `state`, a replayed callback, a callback in a browser that did not start the
//! sign-in, the provider's own "no", an unverified e-mail, a provider that cannot be reached.

use serde_json::json;

use super::{config, free_port, start, Answer, Browser};
use crate::support::mtx_request;
use crate::support::oidc::{OidcProvider, PortalOptions, PORTAL_CLIENT_ID, PORTAL_CLIENT_SECRET};
use crate::support::Binary;

const PENDING: &str = "mtx_auth_pending";

/// `[portal.oidc]` for `discovery_url`, with `admin_emails` naming jane's address, a permission
/// for everyone and one for the group `streamers`.
fn oidc_section(discovery_url: &str) -> String {
    format!(
        r#"mfa = "off"
admin_emails = ["Jane@Example.com"]

[portal.oidc]
discovery_url = "{discovery_url}"
client_id = "{PORTAL_CLIENT_ID}"
client_secret = "{PORTAL_CLIENT_SECRET}"
name = "Test IdP"
scopes = ["profile", "email", "groups"]
permissions = [{{ action = "read", path = "lobby" }}]
[[portal.oidc.roles]]
claim = "groups"
value = "streamers"
permissions = [{{ action = "publish", path = "~^live/" }}]
"#
    )
}

/// A provider whose portal client sends people back to a portal on a free port, and that
/// portal, configured for it.
fn setup(name: &str, mut portal: PortalOptions) -> (OidcProvider, Binary, u16) {
    let port = free_port();
    portal.redirect_uris = vec![format!("http://127.0.0.1:{port}/login/oidc/callback")];
    let provider = OidcProvider::start_for_portal(&portal);
    let path = config(name, port, &oidc_section(&provider.discovery_url()), "");
    // A name a person may choose at the provider is never an administrator's name.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "admin_users = [\"alice\"]",
        "admin_users = [\"alice\", \"portal_oidc:mallory\"]",
    );
    std::fs::write(&path, text).unwrap();
    let server = start(&path);
    (provider, server, port)
}

/// A browser at the provider: its own cookie jar (the provider's interaction and session
/// cookies).
fn at_provider(provider: &OidcProvider) -> Browser {
    let port = reqwest::Url::parse(&provider.issuer)
        .unwrap()
        .port()
        .unwrap();
    Browser::new(port)
}

fn absolute(base: &str, location: &str) -> String {
    if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location.to_owned()
    }
}

/// `GET /login/oidc`: checks the redirect to the authorization endpoint and the pending cookie;
/// returns the authorization URL.
async fn start_sign_in(b: &mut Browser, provider: &OidcProvider) -> reqwest::Url {
    let go = b.get("/login/oidc").await;
    assert!(matches!(go.status, 302 | 303), "{} {}", go.status, go.text);
    let url = reqwest::Url::parse(go.location()).unwrap();
    assert!(
        url.as_str()
            .starts_with(&format!("{}/auth?", provider.issuer)),
        "{url}"
    );
    let set = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with(&format!("{PENDING}=")))
        .expect("a pending cookie")
        .clone();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Lax") && set.contains("Path=/"),
        "{set}"
    );
    url
}

fn param(url: &reqwest::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The provider's side, as `account` (or `deny`): its login form, then the consent it grants at
/// once. Returns the URL it sends the browser back to (the portal's callback).
async fn sign_in_at_provider(idp: &mut Browser, authorize: &reqwest::Url, account: &str) -> String {
    let first = idp.send(idp.client.get(authorize.as_str())).await;
    assert_eq!(first.status, 303, "{}", first.text);
    let interaction = absolute(&idp.base, first.location());
    let form = idp.send(idp.client.get(&interaction)).await;
    assert_eq!(form.status, 200, "{}", form.text);
    assert!(form.text.contains("name=\"account\""), "{}", form.text);
    let login_path = format!(
        "{}/login",
        interaction.strip_prefix(&idp.base).unwrap_or(&interaction)
    );
    let mut answer: Answer = idp.post_form(&login_path, &[("account", account)]).await;
    for _ in 0..8 {
        assert_eq!(answer.status, 303, "{}", answer.text);
        let next = absolute(&idp.base, answer.location());
        if !next.starts_with(&idp.base) {
            return next;
        }
        answer = idp.send(idp.client.get(&next)).await;
    }
    panic!("the provider never sent the browser back");
}

/// The callback URL as a path on the portal.
fn on_portal<'u>(b: &Browser, callback: &'u str) -> &'u str {
    callback
        .strip_prefix(&b.base)
        .unwrap_or_else(|| panic!("{callback} is not on the portal {}", b.base))
}

/// A whole sign-in as `account`; returns the callback's answer and the callback path.
async fn sign_in(b: &mut Browser, provider: &OidcProvider, account: &str) -> (Answer, String) {
    let authorize = start_sign_in(b, provider).await;
    let mut idp = at_provider(provider);
    let callback = sign_in_at_provider(&mut idp, &authorize, account).await;
    let path = on_portal(b, &callback).to_owned();
    (b.get(&path).await, path)
}

#[actix_web::test]
async fn a_person_signs_in_with_the_provider_and_makes_a_link() {
    let (provider, server, port) = setup("portal-oidc.toml", PortalOptions::default());
    let app = server.app();
    let mut b = Browser::new(port);

    let login = b.get("/login").await;
    assert!(
        login.text.contains("href=\"/login/oidc\"") && login.text.contains("Sign in with Test IdP"),
        "{}",
        login.text
    );

    // The redirect: code flow, PKCE S256, state, nonce, our callback.
    let authorize = start_sign_in(&mut b, &provider).await;
    let redirect_uri = format!("http://127.0.0.1:{port}/login/oidc/callback");
    for (name, want) in [
        ("response_type", "code"),
        ("client_id", PORTAL_CLIENT_ID),
        ("redirect_uri", redirect_uri.as_str()),
        ("scope", "openid profile email groups"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(param(&authorize, name).as_deref(), Some(want), "{name}");
    }
    let state = param(&authorize, "state").unwrap();
    let nonce = param(&authorize, "nonce").unwrap();
    let challenge = param(&authorize, "code_challenge").unwrap();
    assert!(state.len() >= 43 && nonce.len() >= 43, "256 random bits");
    assert_ne!(state, nonce);
    assert_eq!(challenge.len(), 43, "base64url of a SHA-256");
    let pending = b.cookies[PENDING].clone();
    assert!(
        !authorize.as_str().contains(&pending),
        "the handle stays ours"
    );

    let mut idp = at_provider(&provider);
    let callback = sign_in_at_provider(&mut idp, &authorize, "jane").await;
    let callback = reqwest::Url::parse(&callback).unwrap();
    assert_eq!(param(&callback, "state").as_deref(), Some(state.as_str()));
    let code = param(&callback, "code").expect("a code");
    let path = on_portal(&b, callback.as_str()).to_owned();
    let done = b.get(&path).await;
    assert_eq!(done.status, 303, "{}", done.text);
    assert_eq!(done.location(), "/");
    let session = b
        .set_cookies
        .iter()
        .find(|c| c.starts_with("mtx_auth_session="))
        .expect("a session cookie")
        .clone();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(
        !b.cookies.contains_key(PENDING),
        "the pending cookie is cleared"
    );

    // Named by preferred_username; an administrator by her verified e-mail; the section's
    // permission and her group's.
    let me = b.get("/api/me").await;
    assert_eq!(me.status, 200, "{}", me.text);
    assert_eq!(
        me.json(),
        json!({"user": "jane", "source": "portal_oidc", "admin": true, "mfa": false,
               "permissions": [{"action": "read", "path": "lobby"},
                               {"action": "publish", "path": "~^live/"}]})
    );
    assert_eq!(b.get("/admin").await.status, 200);

    // A link for what she holds works on /auth, for that path only.
    let link = b
        .post_json(
            "/api/links",
            &json!({"action": "publish", "path": "live/jane"}),
        )
        .await;
    assert_eq!(link.status, 200, "{}", link.text);
    let token = link.json()["token"].as_str().unwrap().to_owned();
    let (status, body) = app
        .auth(&mtx_request(
            "publish",
            "live/jane",
            "10.0.0.1",
            "publisher",
            &token,
        ))
        .await;
    assert_eq!((status, body["user"].as_str()), (200, Some("jane")));
    assert_eq!(
        app.status(&mtx_request(
            "publish",
            "cam1",
            "10.0.0.1",
            "publisher",
            &token
        ))
        .await,
        401
    );
    let refused = b
        .post_json("/api/links", &json!({"action": "publish", "path": "cam1"}))
        .await;
    assert_eq!(refused.status, 403, "never more than she holds");

    // The same callback again, in a browser holding the same pending cookie: used up.
    let mut replay = Browser::new(port);
    replay.cookies.insert(PENDING.into(), pending);
    let again = replay.get(&path).await;
    assert_eq!(again.status, 400, "{}", again.text);
    assert!(again.text.contains("sign in again"), "{}", again.text);
    assert!(replay.session().is_none());

    // Nothing secret reached the log.
    let logs = server.logs();
    assert!(
        logs.contains("portal: signed in") && logs.contains("portal_oidc"),
        "{logs}"
    );
    for secret in [&code, &state, &nonce, &token] {
        assert!(!logs.contains(secret.as_str()), "{secret} in the logs");
    }
    drop(provider);
}

#[actix_web::test]
async fn callbacks_that_do_not_belong_to_the_browser_are_refused() {
    let (provider, _server, port) = setup("portal-oidc-refusals.toml", PortalOptions::default());

    // A wrong state: refused, and the pending sign-in is used up (the right one fails too).
    let mut b = Browser::new(port);
    let authorize = start_sign_in(&mut b, &provider).await;
    let mut idp = at_provider(&provider);
    let callback = sign_in_at_provider(&mut idp, &authorize, "jane").await;
    let mut forged = reqwest::Url::parse(&callback).unwrap();
    let pairs: Vec<(String, String)> = forged
        .query_pairs()
        .map(|(k, v)| {
            let v = if k == "state" {
                format!("{v}x")
            } else {
                v.into_owned()
            };
            (k.into_owned(), v)
        })
        .collect();
    forged.query_pairs_mut().clear().extend_pairs(pairs);
    let pending = b.cookies[PENDING].clone();
    let wrong = b.get(on_portal(&b, forged.as_str())).await;
    assert_eq!(wrong.status, 400, "{}", wrong.text);
    assert!(wrong.text.contains("does not match"), "{}", wrong.text);
    assert!(b.session().is_none());
    b.cookies.insert(PENDING.into(), pending);
    let late = b.get(on_portal(&b, &callback)).await;
    assert_eq!(late.status, 400, "{}", late.text);
    assert!(b.session().is_none());

    // A callback in a browser that did not start the sign-in (login CSRF): no pending cookie.
    let mut victim = Browser::new(port);
    let mut attacker = Browser::new(port);
    let authorize = start_sign_in(&mut attacker, &provider).await;
    let mut idp = at_provider(&provider);
    let callback = sign_in_at_provider(&mut idp, &authorize, "mallory").await;
    let planted = victim.get(on_portal(&victim, &callback)).await;
    assert_eq!(planted.status, 400, "{}", planted.text);
    assert!(victim.session().is_none());
    // Another browser's pending cookie of its own does not help either.
    let _ = start_sign_in(&mut victim, &provider).await;
    let planted = victim.get(on_portal(&victim, &callback)).await;
    assert_eq!(planted.status, 400, "{}", planted.text);
    assert!(victim.session().is_none());

    // The provider says no: 401, its error named, no session.
    let mut b = Browser::new(port);
    let (denied, _) = sign_in(&mut b, &provider, "deny").await;
    assert_eq!(denied.status, 401, "{}", denied.text);
    assert!(denied.text.contains("access_denied"), "{}", denied.text);
    assert!(b.session().is_none());

    // A callback with no pending sign-in at all.
    let mut b = Browser::new(port);
    let bare = b.get("/login/oidc/callback?code=x&state=y").await;
    assert_eq!(bare.status, 400, "{}", bare.text);
    assert!(b.session().is_none());
}

#[actix_web::test]
async fn an_unverified_email_makes_no_administrator() {
    let (provider, _server, port) = setup("portal-oidc-mallory.toml", PortalOptions::default());
    let mut b = Browser::new(port);
    let (done, _) = sign_in(&mut b, &provider, "mallory").await;
    assert_eq!(done.status, 303, "{}", done.text);
    // Her claimed address is an administrator's, unverified, and `portal_oidc:mallory` in
    // admin_users names a sub, not her chosen name; her group grants nothing more.
    assert_eq!(
        b.get("/api/me").await.json(),
        json!({"user": "mallory", "source": "portal_oidc", "admin": false, "mfa": false,
               "permissions": [{"action": "read", "path": "lobby"}]})
    );
    assert_eq!(b.get("/admin").await.status, 403);

    // Nothing but a sub: named by it.
    let mut b = Browser::new(port);
    let (done, _) = sign_in(&mut b, &provider, "anon").await;
    assert_eq!(done.status, 303, "{}", done.text);
    let me = b.get("/api/me").await.json();
    assert_eq!(
        (&me["user"], &me["admin"]),
        (&json!("c0ffee00-anon"), &json!(false))
    );
}

#[actix_web::test]
async fn claims_in_the_id_token_and_a_secret_in_the_body() {
    // The client is held to client_secret_post: the portal's Basic is refused, then the secret
    // in the body works (and is remembered). The provider has no userinfo endpoint: the claims
    // come in the ID token.
    let (provider, server, port) = setup(
        "portal-oidc-post.toml",
        PortalOptions {
            secret_post: true,
            claims_in_id_token: true,
            accounts: Some(json!({
                "kim": {"sub": "k-1", "email": "kim@example.com", "email_verified": true,
                        "groups": "streamers"}
            })),
            ..Default::default()
        },
    );
    for _ in 0..2 {
        let mut b = Browser::new(port);
        let (done, _) = sign_in(&mut b, &provider, "kim").await;
        assert_eq!(done.status, 303, "{}", done.text);
        assert_eq!(
            b.get("/api/me").await.json(),
            json!({"user": "kim@example.com", "source": "portal_oidc", "admin": false,
                   "mfa": false, "permissions": [{"action": "read", "path": "lobby"},
                                                 {"action": "publish", "path": "~^live/"}]})
        );
    }
    let logs = server.logs();
    assert_eq!(
        logs.matches("takes the client secret in the body").count(),
        1,
        "learnt once: {logs}"
    );
}

#[actix_web::test]
async fn no_sign_in_while_the_provider_cannot_be_reached() {
    // Never reachable: the button is there, the sign-in does not start.
    let port = free_port();
    let dead = format!(
        "http://127.0.0.1:{}/.well-known/openid-configuration",
        free_port()
    );
    let _server = start(&config(
        "portal-oidc-dead.toml",
        port,
        &oidc_section(&dead),
        "",
    ));
    let mut b = Browser::new(port);
    assert!(b.get("/login").await.text.contains("Sign in with Test IdP"));
    let go = b.get("/login/oidc").await;
    assert_eq!(go.status, 503, "{}", go.text);
    assert!(go.location().is_empty());
    assert!(!b.cookies.contains_key(PENDING));

    // Gone between the redirect and the callback: the code cannot be exchanged, no session.
    let (provider, _server, port) = setup("portal-oidc-gone.toml", PortalOptions::default());
    let mut b = Browser::new(port);
    let authorize = start_sign_in(&mut b, &provider).await;
    let mut idp = at_provider(&provider);
    let callback = sign_in_at_provider(&mut idp, &authorize, "jane").await;
    drop(provider);
    let failed = b.get(on_portal(&b, &callback)).await;
    assert_eq!(failed.status, 503, "{}", failed.text);
    assert!(b.session().is_none());
    assert_eq!(b.get("/login/oidc").await.status, 503);
}
