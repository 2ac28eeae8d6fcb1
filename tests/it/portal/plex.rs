//! "Sign in with Plex" through the portal: plex.tv's PIN flow against a fake plex.tv that
//! serves the PIN endpoints, then the same server-access check as `/auth` makes.

use serde_json::json;

use super::{config, free_port, start, Browser};
use crate::support::media::FakePlex;

const MACHINE_ID: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

/// The PIN's code in the URL the person is sent to (`…/auth#?clientID=…&code=…&…`).
fn pin_code(auth_url: &str) -> String {
    let query = auth_url.split_once("#?").map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[actix_web::test]
async fn a_plex_pin_signs_in_owners_and_friends_and_nobody_else() {
    let plex = FakePlex::start();
    plex.add_account("owner", "owner-token-0000000000", None);
    plex.add_account("stranger", "stranger-token-0000000", None);
    plex.add_server("Home", MACHINE_ID, "owner");
    let port = free_port();
    let extra = format!(
        "[plex]\napi_url = \"{}\"\napp_url = \"https://app.plex.test\"\nserver = \"{MACHINE_ID}\"\n\
         permissions = [{{ action = \"read\", path = \"cam1\" }}]\n",
        plex.url()
    );
    let path = config("portal-plex.toml", port, "mfa = \"off\"", &extra);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "admin_users = [\"alice\"]",
        "admin_users = [\"plex:owner\"]",
    );
    std::fs::write(&path, text).unwrap();
    let server = start(&path);
    let mut b = Browser::new(port);
    assert!(
        b.get("/login").await.text.contains("id=\"plex\""),
        "the page offers Plex"
    );

    // Another site cannot start a PIN for this browser.
    let foreign = b
        .client
        .post(format!("{}/login/plex", b.base))
        .header("origin", "https://evil.example");
    assert_eq!(b.send(foreign).await.status, 403);

    let started = b.post_json("/login/plex", &json!({})).await;
    assert_eq!(started.status, 200, "{}", started.text);
    let started = started.json();
    let auth_url = started["auth_url"].as_str().unwrap().to_owned();
    let handle = started["id"].as_str().unwrap().to_owned();
    assert!(
        auth_url.starts_with("https://app.plex.test/auth#?"),
        "{auth_url}"
    );
    let code = pin_code(&auth_url);
    assert!(code.len() >= 20, "a strong PIN");
    assert!(!handle.contains(&code), "the handle is ours, not the PIN");
    assert!(b.cookies.contains_key("mtx_auth_pending"));
    let poll = format!("/login/plex/poll?id={handle}");
    assert_eq!(b.get(&poll).await.json(), json!({"status": "pending"}));
    // The handle alone, without this browser's pending cookie, is worth nothing.
    let mut other = Browser::new(port);
    assert_eq!(other.get(&poll).await.json(), json!({"status": "denied"}));
    assert_eq!(
        b.get("/login/plex/poll?id=guess").await.json(),
        json!({"status": "denied"})
    );

    assert!(plex.approve_pin(&code, "owner"));
    let ok = b.get(&poll).await;
    assert_eq!(
        ok.json(),
        json!({"status": "ok", "next": "/"}),
        "{}",
        ok.text
    );
    assert!(b.session().is_some());
    let me = b.get("/api/me").await.json();
    assert_eq!(me["source"], json!("plex"));
    assert_eq!(me["user"], json!("owner"));
    assert_eq!(me["admin"], json!(true));
    assert_eq!(
        me["permissions"],
        json!([{"action": "read", "path": "cam1"}])
    );
    // Used once: polling again does not start another session.
    let mut again = Browser::new(port);
    again.cookies = b.cookies.clone();
    again.cookies.remove("mtx_auth_session");
    assert_eq!(again.get(&poll).await.json(), json!({"status": "denied"}));

    // An account without the server is refused after approving.
    let mut s = Browser::new(port);
    let started = s.post_json("/login/plex", &json!({})).await.json();
    let code = pin_code(started["auth_url"].as_str().unwrap());
    plex.approve_pin(&code, "stranger");
    let denied = s
        .get(&format!(
            "/login/plex/poll?id={}",
            started["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(denied.json(), json!({"status": "denied"}));
    assert!(s.session().is_none());
    assert_eq!(plex.pins_made(), 2);
    assert!(!server.logs().contains("owner-token"), "no token in logs");
}
