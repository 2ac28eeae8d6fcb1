//! Hostile requests through HTTP (issue 5): invalid UTF-8, wrong JSON types in every field,
//! bodies at and over the 64 KiB limit, deep nesting, NUL bytes, IPv6 zone ids, IPv4-mapped
//! IPv6, regexes that backtrack catastrophically in a backtracking engine, huge numbers of fields,
//! duplicate keys and bodies that are not objects. Each gets a clear 4xx with a JSON
//! `{"error": …}` body or the decision MediaMTX's rules give; after each sweep the service still
//! answers `/healthz` and decides a valid request correctly.

use std::io::{Read, Write};
use std::net::TcpStream;

use serde_json::{json, Value};

use crate::support::{mtx_request as req, spawn, TestApp};

/// alice: a password, the 10.0.0.0/8 network, publish under alice/ and read anything.
/// Anyone on a link-local IPv6 address: read paths made only of `a` (a regex that backtracks
/// exponentially in a backtracking engine). Anyone: read "public", read anything matching two
/// more such regexes, play back paths of `a`s.
const CONFIG: &str = r#"
[[users]]
user = "alice"
pass = "wonderland"
ips = ["10.0.0.0/8"]
permissions = [{ action = "publish", path = "~^alice/" }, { action = "read" }]

[[users]]
user = "any"
ips = ["fe80::/10"]
permissions = [{ action = "read", path = "~^(a+)+$" }]

[[users]]
user = "any"
permissions = [
  { action = "read", path = "public" },
  { action = "read", path = "~(x+x+)+y" },
  { action = "playback", path = "~^(a|aa)+$" },
]
"#;

/// The limit of `/auth` bodies (src/server.rs `MAX_BODY`).
const MAX_BODY: usize = 64 * 1024;

fn body(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

/// POSTs `raw` and asserts a refusal with `status` and a non-empty JSON `error`; returns it.
async fn refused(app: &TestApp, raw: Vec<u8>, status: u16, what: &str) -> String {
    let (s, b) = app.auth_raw(raw, Some("application/json")).await;
    assert_eq!(s, status, "{what}: {b}");
    let error = b["error"].as_str().unwrap_or_default();
    assert!(!error.is_empty(), "{what}: no error text in {b}");
    error.to_owned()
}

/// POSTs `raw` and asserts the decision: `Ok(user)` for a 200 `{"user": user}`, `Err(reason)`
/// for a 401 `{"error": reason}`.
async fn decided(app: &TestApp, raw: Vec<u8>, want: Result<&str, &str>, what: &str) {
    let (s, b) = app.auth_raw(raw, Some("application/json")).await;
    match want {
        Ok(user) => assert_eq!((s, b["user"].as_str()), (200, Some(user)), "{what}: {b}"),
        Err(reason) => assert_eq!((s, b["error"].as_str()), (401, Some(reason)), "{what}: {b}"),
    }
}

const NO_CREDENTIALS: &str = "credentials required";
const NO_MATCH: &str = "no user matches these credentials for this action, path and ip";

/// The service is still up and still right: health, an allowed login, an allowed anonymous
/// read, a wrong password. Each from an address no sweep used, so no failure limit interferes.
async fn still_serves(app: &TestApp, ip: &str) {
    assert_eq!(app.get("/healthz").await.0, 200);
    let login = req("read", "cam", ip, "alice", "wonderland");
    decided(
        app,
        body(&login),
        Ok("alice"),
        "valid login after the sweep",
    )
    .await;
    let anonymous = req("read", "public", "203.0.113.1", "", "");
    decided(
        app,
        body(&anonymous),
        Ok(""),
        "anonymous read after the sweep",
    )
    .await;
    let wrong = req("read", "cam", ip, "alice", "wonderlanD");
    decided(
        app,
        body(&wrong),
        Err(NO_MATCH),
        "wrong password after the sweep",
    )
    .await;
}

/// Sends raw bytes over a new connection and returns the response's status and body. For what
/// reqwest will not send: chunked bodies of our making, odd headers.
async fn raw_http(app: &TestApp, head: String, body: Vec<u8>) -> (u16, String) {
    let addr = app.base.trim_start_matches("http://").to_owned();
    actix_web::rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        // The server may answer and close before reading everything (413): ignore write errors.
        let _ = s.write_all(&body);
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        let resp = String::from_utf8_lossy(&resp).into_owned();
        let status = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {resp:?}"));
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    })
    .await
    .unwrap()
}

/// The `error` of a JSON error body; panics on anything else.
fn json_error(text: &str) -> String {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    v["error"]
        .as_str()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| panic!("no error text: {text:?}"))
        .to_owned()
}

#[actix_web::test]
async fn invalid_utf8_is_refused_in_known_fields() {
    let app = spawn(CONFIG);
    let cases: &[&[u8]] = &[
        b"\xff\xfe\xfd",
        b"{\"user\":\"\xff\",\"action\":\"read\"}",
        b"{\"path\":\"caf\xc3\",\"action\":\"read\"}",
        // An overlong encoding of '/', a classic filter bypass.
        b"{\"path\":\"alice\xc0\xafx\",\"action\":\"publish\"}",
        // A surrogate half encoded directly in UTF-8 (CESU-8).
        b"{\"user\":\"\xed\xa0\x80\",\"action\":\"read\"}",
        b"{\"\xff\":\"x\",\"action\":\"read\"}",
        // UTF-16 with a byte-order mark.
        b"\xff\xfe{\x00}\x00",
        // Lone surrogates as escapes.
        br#"{"user":"\ud800","action":"read"}"#,
        br#"{"password":"\udc00x","action":"read"}"#,
    ];
    for (i, raw) in cases.iter().enumerate() {
        let error = refused(&app, raw.to_vec(), 400, &format!("case {i}")).await;
        assert!(error.starts_with("body is not a JSON object"), "{error}");
    }
    // A UTF-8 byte-order mark before the object: not JSON, refused.
    let mut bom = b"\xef\xbb\xbf".to_vec();
    bom.extend(body(&req("read", "public", "203.0.113.1", "", "")));
    refused(&app, bom, 400, "byte-order mark").await;
    // In a field mtx-auth ignores, serde_json skips the string without checking it: the request
    // is decided on its known fields (MediaMTX never sends invalid UTF-8; Go's encoder replaces
    // it).
    decided(
        &app,
        b"{\"action\":\"read\",\"path\":\"public\",\"userAgent\":\"\xff\xfe\"}".to_vec(),
        Ok(""),
        "invalid UTF-8 in an unknown field",
    )
    .await;
    decided(
        &app,
        br#"{"action":"read","path":"public","x":"\ud800"}"#.to_vec(),
        Ok(""),
        "lone surrogate in an unknown field",
    )
    .await;
    // Valid UTF-8 of any plane is just a string that matches nothing.
    let exotic = req("read", "p\u{fffd}ublic\u{10ffff}", "203.0.113.1", "", "");
    decided(&app, body(&exotic), Err(NO_CREDENTIALS), "exotic unicode").await;
    still_serves(&app, "10.200.0.1").await;
}

#[actix_web::test]
async fn wrong_json_types_in_every_field_are_refused() {
    let app = spawn(CONFIG);
    let wrong = [
        json!(5),
        json!(-1.5e300),
        json!(true),
        json!(false),
        json!([]),
        json!(["alice"]),
        json!({}),
        json!({"user": "alice"}),
        json!([[[[["deep"]]]]]),
    ];
    for field in [
        "user", "password", "token", "ip", "action", "path", "protocol", "id", "query",
    ] {
        for value in &wrong {
            // Wrong in an otherwise valid, allowed request: the type alone is refused.
            let mut r = req("read", "cam", "10.201.0.1", "alice", "wonderland");
            r[field] = value.clone();
            let what = format!("{field} = {value}");
            let error = refused(&app, body(&r), 400, &what).await;
            assert!(
                error.contains("expected an object whose fields are strings"),
                "{what}: {error}"
            );
            // The reason says where, never what.
            assert!(
                !error.contains("alice") && !error.contains("wonderland"),
                "{error}"
            );
        }
        // null reads as an empty field: a decision.
        let mut r = req("read", "public", "203.0.113.1", "", "");
        r[field] = Value::Null;
        let want = match field {
            "action" => Err("unknown action"),
            "path" => Err(NO_CREDENTIALS),
            _ => Ok(""),
        };
        decided(&app, body(&r), want, &format!("{field} = null")).await;
    }
    // Unknown fields may have any type.
    let mut r = req("read", "public", "203.0.113.1", "", "");
    r["userAgent"] = json!({"a": [1, 2.5, null, true, {"b": []}]});
    r["newField"] = json!(-0.0);
    decided(&app, body(&r), Ok(""), "unknown fields of any type").await;
    still_serves(&app, "10.202.0.1").await;
}

#[actix_web::test]
async fn bodies_near_and_over_64_kib() {
    let app = spawn(CONFIG);
    // A 60 KiB path is a path like any other: decided, not refused.
    let long = "a".repeat(60 * 1024);
    let r = req("read", &long, "203.0.113.1", "", "");
    decided(
        &app,
        body(&r),
        Err(NO_CREDENTIALS),
        "60 KiB path, anonymous",
    )
    .await;
    let r = req("read", &long, "10.203.0.1", "alice", "wonderland");
    decided(&app, body(&r), Ok("alice"), "60 KiB path, alice reads").await;
    let r = req(
        "publish",
        &format!("alice/{long}"),
        "10.203.0.1",
        "alice",
        "wonderland",
    );
    decided(&app, body(&r), Ok("alice"), "60 KiB path, alice publishes").await;
    let r = req(
        "publish",
        &format!("bob/{long}"),
        "10.203.0.1",
        "alice",
        "wonderland",
    );
    decided(&app, body(&r), Err(NO_MATCH), "60 KiB path outside alice/").await;
    let r = req("read", &long, "fe80::1", "", "");
    decided(&app, body(&r), Ok(""), "60 KiB of a, link-local").await;
    // 60 KiB user names and passwords: no match, no error.
    let r = req("read", "cam", "10.203.0.2", &long, "wonderland");
    decided(&app, body(&r), Err(NO_MATCH), "60 KiB user").await;
    let mut r = req("read", "cam", "10.203.0.2", "alice", &long);
    r["token"] = json!(""); // MediaMTX copies the password here: that would be 120 KiB
    decided(&app, body(&r), Err(NO_MATCH), "60 KiB password").await;

    // Exactly at the limit: decided. One byte over: 413.
    let sized = |len: usize| {
        let mut v = json!({"action": "read", "path": "public", "pad": ""});
        let base = body(&v).len();
        v["pad"] = json!("p".repeat(len - base));
        let b = body(&v);
        assert_eq!(b.len(), len);
        b
    };
    decided(&app, sized(MAX_BODY), Ok(""), "exactly 64 KiB").await;
    let error = refused(&app, sized(MAX_BODY + 1), 413, "64 KiB + 1").await;
    assert!(error.contains("larger than"), "{error}");
    refused(&app, sized(256 * 1024), 413, "256 KiB").await;
    // Without a Content-Length (chunked), the limit holds as the body streams in.
    let chunk = vec![b' '; 16 * 1024];
    let mut chunked = Vec::new();
    for _ in 0..8 {
        chunked.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend(&chunk);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let head = "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                Transfer-Encoding: chunked\r\n\r\n"
        .to_owned();
    let (status, text) = raw_http(&app, head, chunked).await;
    assert_eq!(status, 413, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    assert!(
        v["error"]
            .as_str()
            .is_some_and(|e| e.contains("larger than")),
        "{v}"
    );
    still_serves(&app, "10.204.0.1").await;
}

#[actix_web::test]
async fn deep_nesting() {
    let app = spawn(CONFIG);
    let n = 30_000;
    let arrays = format!("{}{}", "[".repeat(n), "]".repeat(n));
    let objects = format!("{}1{}", "{\"a\":".repeat(n / 4), "}".repeat(n / 4));
    for (name, nested) in [("arrays", &arrays), ("objects", &objects)] {
        // In a known field: refused (serde_json's recursion limit, or the type).
        let raw = format!("{{\"action\":\"read\",\"user\":{nested}}}");
        refused(&app, raw.into_bytes(), 400, &format!("{name} in user")).await;
        // In an unknown field: skipped without recursion, and the request is decided.
        let raw = format!("{{\"action\":\"read\",\"path\":\"public\",\"x\":{nested}}}");
        decided(
            &app,
            raw.into_bytes(),
            Ok(""),
            &format!("{name} in an unknown field"),
        )
        .await;
    }
    // As the body itself: arrays are not an object; nested objects are an object whose only
    // (unknown) field is skipped, so an anonymous request without an action.
    refused(&app, arrays.into_bytes(), 400, "arrays as the body").await;
    decided(
        &app,
        objects.into_bytes(),
        Err("unknown action"),
        "objects as the body",
    )
    .await;
    // Opened and never closed.
    let raw = format!("{{\"action\":\"read\",\"x\":{}", "[{\"a\":".repeat(10_000));
    refused(&app, raw.into_bytes(), 400, "never closed").await;
    still_serves(&app, "10.205.0.1").await;
}

#[actix_web::test]
async fn nul_bytes() {
    let app = spawn(CONFIG);
    let ip = "10.206.0.1";
    // Escaped NUL: part of the string, which then matches nothing it did not match before.
    let r = req("read", "cam", ip, "alice\u{0}", "wonderland");
    decided(&app, body(&r), Err(NO_MATCH), "NUL after the user name").await;
    let r = req("read", "cam", ip, "alice", "wonderland\u{0}");
    decided(&app, body(&r), Err(NO_MATCH), "NUL after the password").await;
    let r = req("read", "cam", ip, "\u{0}alice", "wonderland");
    decided(&app, body(&r), Err(NO_MATCH), "NUL before the user name").await;
    let r = req("read", "public\u{0}", "203.0.113.1", "", "");
    decided(&app, body(&r), Err(NO_CREDENTIALS), "NUL after the path").await;
    let r = req("read\u{0}", "public", "203.0.113.1", "", "");
    decided(
        &app,
        body(&r),
        Err("unknown action"),
        "NUL after the action",
    )
    .await;
    let r = req("publish", "alice/\u{0}../../etc", ip, "alice", "wonderland");
    decided(&app, body(&r), Ok("alice"), "NUL inside an allowed path").await;
    let r = req("read", "cam", "10.206.0.2\u{0}", "alice", "wonderland");
    decided(
        &app,
        body(&r),
        Err(NO_MATCH),
        "NUL after the IP (not an IP)",
    )
    .await;
    // A raw NUL byte: inside a string it is an unescaped control character, outside it is not
    // JSON. Both refused.
    refused(
        &app,
        b"{\"user\":\"ali\0ce\",\"action\":\"read\"}".to_vec(),
        400,
        "raw NUL in a string",
    )
    .await;
    refused(
        &app,
        b"{\"action\":\"read\",\0\"path\":\"public\"}".to_vec(),
        400,
        "raw NUL between fields",
    )
    .await;
    refused(&app, b"\0".to_vec(), 400, "a NUL body").await;
    still_serves(&app, "10.207.0.1").await;
}

#[actix_web::test]
async fn ipv6_zone_ids_and_ipv4_mapped_addresses() {
    let app = spawn(CONFIG);
    let aaa = "aaaa";
    // Zone ids are dropped: fe80::1%eth0 is fe80::1, in fe80::/10.
    for ip in [
        "fe80::1%eth0",
        "fe80::1%25eth0",
        "fe80::1%",
        "fe80::abcd%1",
        "febf::1%lo",
    ] {
        let r = req("read", aaa, ip, "", "");
        decided(&app, body(&r), Ok(""), ip).await;
    }
    // Not link-local, or not an address at all: no match for the link-local user.
    for ip in [
        "fec0::1%eth0",
        "[fe80::1]",
        "%eth0",
        "fe80::1 ",
        "fe80:::1",
        "",
    ] {
        let r = req("read", aaa, ip, "", "");
        decided(&app, body(&r), Err(NO_CREDENTIALS), ip).await;
    }
    // IPv4-mapped IPv6 is IPv4, as in MediaMTX (Go's IPNet.Contains): ::ffff:10.0.0.1 is in
    // 10.0.0.0/8, in either notation; so is a zone-suffixed IPv4.
    for ip in [
        "::ffff:10.0.0.1",
        "::FFFF:10.1.2.3",
        "::ffff:a00:1",
        "0:0:0:0:0:ffff:10.0.0.1",
        "::ffff:10.0.0.1%eth0",
        "10.0.0.1%eth0",
    ] {
        let r = req("read", "cam", ip, "alice", "wonderland");
        decided(&app, body(&r), Ok("alice"), ip).await;
    }
    // Outside 10.0.0.0/8, IPv4-compatible (not mapped, as in Go), with a port, or not parsable.
    for ip in [
        "::ffff:11.0.0.1",
        "::10.0.0.1",
        "::ffff:0a00:0001:1",
        "10.0.0.1:5000",
        " 10.0.0.1",
        "010.0.0.1",
        "10.0.0.256",
        "10.0.0",
    ] {
        let r = req("read", "cam", ip, "alice", "wonderland");
        decided(&app, body(&r), Err(NO_MATCH), ip).await;
    }
    still_serves(&app, "10.208.0.1").await;
}

#[actix_web::test]
async fn catastrophic_backtracking_regexes_answer() {
    // Rust's regex engine is linear in the input; these would take exponential time in a
    // backtracking engine. The assertion is simply that the right answer arrives.
    let app = spawn(CONFIG);
    let a = "a".repeat(30_000);
    let ab = format!("{a}b");
    decided(
        &app,
        body(&req("read", &a, "fe80::1%eth0", "", "")),
        Ok(""),
        "(a+)+$ on a…a",
    )
    .await;
    decided(
        &app,
        body(&req("read", &ab, "fe80::1%eth0", "", "")),
        Err(NO_CREDENTIALS),
        "(a+)+$ on a…ab",
    )
    .await;
    let x = "x".repeat(30_000);
    decided(
        &app,
        body(&req("read", &x, "203.0.113.1", "", "")),
        Err(NO_CREDENTIALS),
        "(x+x+)+y on x…x",
    )
    .await;
    decided(
        &app,
        body(&req("read", &format!("{x}y"), "203.0.113.1", "", "")),
        Ok(""),
        "(x+x+)+y on x…xy",
    )
    .await;
    decided(
        &app,
        body(&req("playback", &a, "203.0.113.1", "", "")),
        Ok(""),
        "^(a|aa)+$ on a…a",
    )
    .await;
    decided(
        &app,
        body(&req("playback", &ab, "203.0.113.1", "", "")),
        Err(NO_CREDENTIALS),
        "^(a|aa)+$ on a…ab",
    )
    .await;
    still_serves(&app, "10.209.0.1").await;
}

#[actix_web::test]
async fn many_fields_and_duplicate_keys() {
    let app = spawn(CONFIG);
    // Thousands of unknown fields (under 64 KiB): ignored.
    let mut fields: Vec<String> = (0..4000).map(|i| format!("\"f{i}\":{i}")).collect();
    fields.push("\"action\":\"read\"".into());
    fields.push("\"path\":\"public\"".into());
    let raw = format!("{{{}}}", fields.join(","));
    assert!(raw.len() < MAX_BODY);
    decided(&app, raw.into_bytes(), Ok(""), "4000 unknown fields").await;
    // The same unknown key thousands of times: ignored too.
    let raw = format!(
        "{{{}\"action\":\"read\",\"path\":\"public\"}}",
        "\"x\":1,".repeat(8000)
    );
    decided(&app, raw.into_bytes(), Ok(""), "one unknown key 8000 times").await;
    // A known key twice is refused, whichever value comes first: there is no "first wins" or
    // "last wins" for a proxy and mtx-auth to disagree on.
    for raw in [
        r#"{"user":"alice","user":"mallory","password":"wonderland","action":"read","ip":"10.210.0.1"}"#,
        r#"{"user":"alice","password":"x","password":"wonderland","action":"read","ip":"10.210.0.1"}"#,
        r#"{"action":"read","action":"publish","path":"alice/x","user":"alice","password":"wonderland","ip":"10.210.0.1"}"#,
        r#"{"action":"read","path":"public","path":"public"}"#,
        r#"{"action":"read","path":"public","ip":"1.2.3.4","ip":"10.210.0.1"}"#,
    ] {
        let error = refused(&app, raw.as_bytes().to_vec(), 400, raw).await;
        assert!(
            !error.contains("alice") && !error.contains("wonderland"),
            "{error}"
        );
    }
    // Keys match exactly. (Go's decoder would also take "User" for "user"; MediaMTX always
    // sends the lowercase keys.) "User" is an unknown field here: the request is anonymous.
    let raw = r#"{"User":"alice","Password":"wonderland","action":"read","path":"cam","ip":"10.210.0.2"}"#;
    decided(
        &app,
        raw.as_bytes().to_vec(),
        Err(NO_CREDENTIALS),
        "keys in another case",
    )
    .await;
    still_serves(&app, "10.211.0.1").await;
}

#[actix_web::test]
async fn bodies_that_are_not_objects() {
    let app = spawn(CONFIG);
    for raw in [
        "\"{\\\"action\\\":\\\"read\\\",\\\"path\\\":\\\"public\\\"}\"",
        "[]",
        "[{\"action\":\"read\",\"path\":\"public\"}]",
        "[\"read\",\"public\"]",
        "42",
        "-1e999",
        "null",
        "true",
        "",
        "   ",
        "{} {}",
        "{}x",
        "{\"action\":\"read\",}",
        "{'action':'read'}",
        "{action:\"read\"}",
        "action=read&path=public",
    ] {
        let error = refused(&app, raw.as_bytes().to_vec(), 400, raw).await;
        assert!(
            error.starts_with("body is not a JSON object"),
            "{raw}: {error}"
        );
    }
    // Whitespace around an object is fine; an empty object is an anonymous request with no
    // action.
    decided(
        &app,
        b" \n\t{\"action\":\"read\",\"path\":\"public\"} \r\n".to_vec(),
        Ok(""),
        "whitespace",
    )
    .await;
    decided(&app, b"{}".to_vec(), Err("unknown action"), "empty object").await;
    still_serves(&app, "10.212.0.1").await;
}

#[actix_web::test]
async fn odd_http_around_the_body() {
    let app = spawn(CONFIG);
    let valid = body(&req("read", "public", "203.0.113.1", "", ""));
    // Any Content-Type (or none): the body is read as MediaMTX's JSON.
    for ct in [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain; charset=utf-16",
        "application/json; charset=latin1",
    ] {
        let (s, b) = app.auth_raw(valid.clone(), Some(ct)).await;
        assert_eq!((s, b["user"].as_str()), (200, Some("")), "{ct}: {b}");
    }
    // A body announced as compressed is not decompressed (no decoder is built in): gzip bytes
    // are not JSON.
    let gzip =
        b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xab\xae\x05\x00\x43\xbf\xa6\xa3\x02\x00\x00\x00"
            .to_vec();
    let head = format!(
        "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Encoding: gzip\r\n\
         Content-Length: {}\r\n\r\n",
        gzip.len()
    );
    let (status, text) = raw_http(&app, head, gzip).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        json_error(&text).starts_with("body is not a JSON object"),
        "{text}"
    );
    // Other methods on /auth and other paths: 404 with a JSON reason, and the server goes on.
    for (method, path) in [
        ("GET", "/auth"),
        ("PUT", "/auth"),
        ("POST", "/"),
        ("POST", "/auth/../auth2"),
    ] {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 2\r\n\r\n"
        );
        let (status, text) = raw_http(&app, head, b"{}".to_vec()).await;
        eprintln!("DEBUG {method} {path}: {status} {text:?}");
        assert!(
            (400..500).contains(&status),
            "{method} {path}: {status} {text}"
        );
    }
    still_serves(&app, "10.213.0.1").await;
}
