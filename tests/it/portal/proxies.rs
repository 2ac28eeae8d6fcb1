//! The reverse proxies of `deploy/proxies/` (nginx, Caddy, Traefik), each started with its
//! shipped file, in front of the real portal and a fake MediaMTX (`support::proxies`): a person
//! signs in through the proxy's portal address, and the proxy's HLS and WebRTC addresses let
//! them reach what they hold, with the portal's credential in place of their cookie.
//!
//! The portal's `public_url` is the proxy's portal address, as in a deployment (the same-origin
//! rule compares the browser's `Origin` with it), so the proxy is started first, in front of a
//! portal port that is chosen then and listened on once the config names the proxy.
//!
//! A missing proxy binary skips its test (printing why), and fails it when `CI` is set.

use serde_json::json;

use super::{config, free_port, start, Browser};
use crate::support::proxies::{Kind, Proxy, Stub, Upstreams, FAKE_PLAYLIST, FAKE_SDP_ANSWER};

/// The port of a `http://127.0.0.1:PORT` base URL.
fn port_of(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

/// What MediaMTX's `/auth` call carries for a request that came with `Authorization: Bearer`.
fn bearer_read(path: &str, token: &str) -> serde_json::Value {
    json!({"ip": "127.0.0.1", "user": "", "password": "", "token": token, "action": "read",
        "path": path, "protocol": "hls", "id": null, "query": ""})
}

async fn signed_in_person_reaches_mediamtx_through(kind: Kind) {
    let mediamtx = Stub::mediamtx();
    let portal_port = free_port();
    let Some(proxy) = Proxy::start(
        kind,
        &Upstreams {
            portal: format!("127.0.0.1:{portal_port}"),
            hls: mediamtx.addr.clone(),
            webrtc: mediamtx.addr.clone(),
        },
    ) else {
        return;
    };
    let name = format!("portal-{}.toml", kind.name());
    let path = config(&name, portal_port, "mfa = \"off\"", "");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        &format!("public_url = \"http://127.0.0.1:{portal_port}\""),
        &format!(
            "public_url = \"{}\"\ntrusted_proxies = [\"127.0.0.1/32\"]",
            proxy.portal
        ),
    );
    std::fs::write(&path, text).unwrap();
    let server = start(&path);
    let app = server.app();
    let logs = |what: &str| format!("{what}\n--- {}:\n{}", kind.name(), proxy.logs());

    // Signed in at the proxy's portal address, as a browser there would.
    let mut b = Browser::new(port_of(&proxy.portal));
    let login = b.get("/login").await;
    assert_eq!(login.status, 200, "{}", logs(&login.text));
    let ok = b.sign_in("alice", "alice-pw").await;
    assert_eq!((ok.status, ok.location()), (303, "/"), "{}", logs(&ok.text));
    let cookie = format!("mtx_auth_session={}", b.session().unwrap());
    let page = b.get("/").await;
    assert!(page.text.contains("cam1"), "{}", page.text);

    let client = reqwest::Client::new();
    let get = |url: String, cookie: Option<&str>| {
        let req = client.get(url);
        match cookie {
            Some(c) => req.header("cookie", c.to_owned()),
            None => req,
        }
    };

    // HLS with the cookie: MediaMTX gets the portal's credential, which /auth takes for cam1,
    // and never the cookie.
    let playlist = get(format!("{}/cam1/index.m3u8", proxy.hls), Some(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(playlist.status(), 200, "{}", logs(""));
    assert_eq!(playlist.text().await.unwrap(), FAKE_PLAYLIST);
    let seen = mediamtx.requests_to("/cam1/index.m3u8");
    assert_eq!(seen.len(), 1, "{seen:?}");
    let bearer = seen[0].header("authorization").unwrap_or_default();
    let token = bearer
        .strip_prefix("Bearer mtxa_")
        .map(|t| format!("mtxa_{t}"))
        .unwrap_or_else(|| panic!("MediaMTX got {bearer:?}"));
    assert_eq!(seen[0].cookie("mtx_auth_session"), None, "{seen:?}");
    let (status, body) = app.auth(&bearer_read("cam1", &token)).await;
    assert_eq!(
        (status, body["user"].as_str()),
        (200, Some("alice")),
        "{body}"
    );
    assert_eq!(app.status(&bearer_read("cam2", &token)).await, 401);

    // WebRTC (WHEP) with the cookie: the offer passes, with the same credential.
    mediamtx.clear();
    let whep = client
        .post(format!("{}/cam1/whep", proxy.webrtc))
        .header("cookie", cookie.clone())
        .header("content-type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(whep.status(), 201, "{}", logs(""));
    assert_eq!(whep.text().await.unwrap(), FAKE_SDP_ANSWER);
    let seen = mediamtx.requests_to("/cam1/whep");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some(bearer));

    // No cookie, or a path alice does not hold: 401, and MediaMTX hears nothing.
    mediamtx.clear();
    for (uri, cookie) in [
        ("/cam1/index.m3u8", None),
        ("/cam1/index.m3u8", Some("mtx_auth_session=forged")),
        ("/cam2/index.m3u8", Some(cookie.as_str())),
    ] {
        let answer = get(format!("{}{uri}", proxy.hls), cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{uri} with {cookie:?}: {}", logs(""));
    }
    assert!(mediamtx.requests().is_empty(), "{:?}", mediamtx.requests());

    // Signing out through the proxy ends what the cookie opened.
    let out = b.post_form("/logout", &[]).await;
    assert_eq!(
        (out.status, out.location()),
        (303, "/login"),
        "{}",
        out.text
    );
    let after = get(format!("{}/cam1/index.m3u8", proxy.hls), Some(&cookie))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    assert!(mediamtx.requests().is_empty());
}

#[actix_web::test]
async fn nginx_in_front_of_the_portal() {
    signed_in_person_reaches_mediamtx_through(Kind::Nginx).await;
}

#[actix_web::test]
async fn caddy_in_front_of_the_portal() {
    signed_in_person_reaches_mediamtx_through(Kind::Caddy).await;
}

#[actix_web::test]
async fn traefik_in_front_of_the_portal() {
    signed_in_person_reaches_mediamtx_through(Kind::Traefik).await;
}
