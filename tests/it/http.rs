//! The HTTP contract: bodies from every MediaMTX version, 400/413 with JSON reasons, health.

use serde_json::json;

use crate::support::{mtx_request, spawn};

const DEFAULTS: &str = include_str!("../../config/mtx-auth.toml");

#[actix_web::test]
async fn bodies_of_every_mediamtx_version_are_accepted() {
    let app =
        spawn("[[users]]\nuser = \"u\"\npass = \"p\"\npermissions = [{ action = \"read\" }]\n");
    // Before v1.12.3: no token; before v1.19: no userAgent; unknown fields from the future.
    let old = json!({"ip":"10.0.0.1","user":"u","password":"p","action":"read","path":"cam","protocol":"rtsp","id":null,"query":""});
    assert_eq!(app.status(&old).await, 200);
    let future = json!({"ip":"10.0.0.1","user":"u","password":"p","action":"read","path":"cam","newField":{"x":[1,2]},"id":"6e9b8a3c-6f5b-4b8e-9d0a-1f2e3d4c5b6a"});
    assert_eq!(app.status(&future).await, 200);
    // No Content-Type, and a wrong one.
    let body = serde_json::to_vec(&old).unwrap();
    assert_eq!(app.auth_raw(body.clone(), None).await.0, 200);
    assert_eq!(app.auth_raw(body, Some("text/plain")).await.0, 200);
    // Missing fields are empty: no credentials, so a deny that asks for them.
    let (s, b) = app.auth(&json!({"action":"read","path":"cam"})).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("credentials required"))
    );
    assert_eq!(app.status(&json!({})).await, 401);
}

#[actix_web::test]
async fn malformed_bodies_get_400_with_a_reason() {
    let app = spawn(DEFAULTS);
    let bodies: [&[u8]; 9] = [
        b"",
        b"not json",
        b"[]",
        b"[\"u\",\"p\"]",
        b"\"string\"",
        b"null",
        b"{\"user\": 5}",
        b"{\"user\": \"a\"",
        b"{\"user\": \"\xff\xfe\"}",
    ];
    for body in bodies {
        let (s, b) = app.auth_raw(body.to_vec(), Some("application/json")).await;
        assert_eq!(s, 400, "{body:?}");
        assert!(
            b["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{body:?}: {b}"
        );
    }
    // As deep as 64 KiB allows: in a known field it is a 400, in an unknown (ignored) field a
    // normal decision; the server survives both.
    let deep = |field: &str| {
        let n = 32_000;
        format!("{{\"{field}\":{}{}}}", "[".repeat(n), "]".repeat(n)).into_bytes()
    };
    assert_eq!(app.auth_raw(deep("user"), None).await.0, 400);
    assert_eq!(app.auth_raw(deep("x"), None).await.0, 401);
    assert_eq!(app.get("/healthz").await.0, 200);
    // The reason never echoes what the client sent.
    let (_, b) = app
        .auth_raw(
            br#"{"password":"hunter2","user":["hunter2"]}"#.to_vec(),
            None,
        )
        .await;
    assert!(!b.to_string().contains("hunter2"), "{b}");
}

#[actix_web::test]
async fn bodies_over_64_kib_get_413() {
    let app = spawn(DEFAULTS);
    let path = "a".repeat(64 * 1024);
    let (s, b) = app
        .auth(&json!({"action":"read","path":path,"ip":"1.2.3.4"}))
        .await;
    assert_eq!(s, 413);
    assert!(b["error"].as_str().unwrap().contains("larger than"));
    // Just under the limit is a normal request (allowed by the default `any` user).
    let path = "a".repeat(60 * 1024);
    let (s, b) = app
        .auth(&json!({"action":"read","path":path,"ip":"1.2.3.4"}))
        .await;
    assert_eq!((s, b["user"].as_str()), (200, Some("")));
}

#[actix_web::test]
async fn shipped_config_gives_mediamtx_defaults() {
    let app = spawn(DEFAULTS);
    let r = |action: &str, ip: &str| mtx_request(action, "cam", ip, "", "");
    for action in ["publish", "read", "playback"] {
        assert_eq!(app.status(&r(action, "203.0.113.9")).await, 200, "{action}");
    }
    for action in ["api", "metrics", "pprof"] {
        assert_eq!(app.status(&r(action, "127.0.0.1")).await, 200, "{action}");
        assert_eq!(app.status(&r(action, "::1")).await, 200, "{action}");
        assert_eq!(app.status(&r(action, "192.168.1.2")).await, 401, "{action}");
    }
}

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn(DEFAULTS);
    assert_eq!(app.get("/healthz").await.0, 200);
    let (s, b) = app.get("/readyz").await;
    assert_eq!((s, &b["ready"]), (200, &json!(true)));
    let (s, b) = app.get("/nope").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not found")));
}

/// `POST /auth` is answered ahead of actix-web's routing (`server::auth_direct`); the app's own
/// `/auth` route answers the spellings it leaves (a percent-encoded letter; a query is still
/// `/auth`). Both ways give the same answers, refusals included.
#[actix_web::test]
async fn every_way_to_auth_answers_alike() {
    let app =
        spawn("[[users]]\nuser = \"u\"\npass = \"p\"\npermissions = [{ action = \"read\" }]\n");
    let allow = json!({"ip":"10.0.0.1","user":"u","password":"p","action":"read","path":"cam"});
    let deny = json!({"ip":"10.0.0.1","user":"u","password":"wrong","action":"read","path":"cam"});
    let big = json!({"action":"read","path":"a".repeat(64 * 1024)});
    let post = |path: &str, body: &serde_json::Value| {
        let req = app
            .client
            .post(format!("{}{path}", app.base))
            .body(serde_json::to_vec(body).unwrap());
        async move {
            let res = req.send().await.unwrap();
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.unwrap())
        }
    };
    for path in ["/auth", "/auth?x=1", "/%61uth"] {
        assert_eq!(
            post(path, &allow).await,
            (200, json!({"user":"u"})),
            "{path}"
        );
        let (s, b) = post(path, &deny).await;
        assert_eq!(
            (s, b["error"].as_str()),
            (
                401,
                Some("no user matches these credentials for this action, path and ip")
            ),
            "{path}"
        );
        let (s, b) = post(path, &big).await;
        assert_eq!(s, 413, "{path}: {b}");
        let (s, b) = post(path, &json!([])).await;
        assert_eq!(s, 400, "{path}: {b}");
    }
    // Another method is the app's, as any unknown route: 404 with a reason.
    let (s, b) = app.get("/auth").await;
    assert_eq!((s, b["error"].as_str()), (404, Some("not found")));
}
