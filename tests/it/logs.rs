//! What reaches the logs of the real binary.
//!
//! A client cannot forge log lines (issue 15, defect 4). Every field of a decision line (action,
//! protocol, path, ip, user) is the client's own text. The real binary, with its default text
//! logs, answers requests whose fields hold line breaks, terminal escape sequences, a whole forged
//! `outcome="allow"` line and fake `key=value` pairs. Its stderr must then hold exactly one line
//! per decision, no raw control character at all, no allow, and every line must read back
//! (logfmt: bare or quoted values) to exactly the fields that were sent.
//!
//! No secret reaches the logs (issue 5). The real binary runs with `RUST_LOG=debug` against a
//! config with plain, `sha256:` and `argon2:` users, a hashed user name, `[jwt]`, `[jellyfin]`,
//! `[plex]` and `[oidc]` (fake upstreams on loopback, `support`), and answers a full set of
//! requests: right and wrong passwords for every kind of user and source, valid, forged, expired
//! and garbage JWTs (in the token field and in the query), media-server and plex.tv tokens.
//! Then it is stopped with SIGTERM and its whole stderr is searched: no password, token, client
//! secret or configured hash may appear in it, while the user names and paths do (so the test
//! would notice if nothing were logged at all).

use std::path::PathBuf;
use std::time::Duration;

use mtx_auth::credential::{hash_argon2, hash_sha256};
use serde_json::{json, Value};

use crate::support::idp::{self, hs256_token, unsigned_token, FakeIdp, KeyKind, TestKey};
use crate::support::media::{FakeMediaServer, FakePlex, Flavor, UserSpec};
use crate::support::{temp_config, Binary};

// ---------------------------------------------------------------------------------------------
// Forged log lines
// ---------------------------------------------------------------------------------------------

const CONFIG: &str = r#"
[server]
# Every second attempt with the same user name is turned away by the limiter, so its lines
# (which carry the ip and user too) are exercised as well.
max_failures_per_ip = 0
max_failures_per_user = 1

[[users]]
user = "alice"
pass = "alice-pw-7731"
permissions = [{ action = "read" }]
"#;

/// What a client may put in a field to break the log.
fn hostile() -> Vec<String> {
    vec![
        "a\nb".into(),
        "a\r\nb".into(),
        "\x1b[2J\x1b[H\x1b]0;owned\x07".into(),
        r#"x outcome="allow" user="admin""#.into(),
        "bob outcome=allow user=alice".into(),
        "x\n2026-12-01T00:00:00.000000Z  INFO mtx_auth::decision: action=read protocol=rtsp \
         path=cam ip=10.0.0.1 user=admin outcome=\"allow\" source=\"users\" latency_us=3"
            .into(),
        "del\x7f c1\u{9b}31m nel\u{85} ls\u{2028} ps\u{2029} nul\0 back\\slash".into(),
    ]
}

const FIELDS: [&str; 5] = ["action", "protocol", "path", "ip", "user"];

#[test]
fn client_fields_cannot_forge_or_break_log_lines() {
    let path = temp_config("log-injection.toml", CONFIG);
    let server = Binary::start(&path);
    let app = server.app();

    let mut sent = Vec::new();
    for value in hostile() {
        for field in FIELDS {
            let mut req = json!({
                "action": "read", "protocol": "rtsp", "path": "cam", "ip": "10.0.0.1",
                "user": "mallory", "password": "wrong-pw-1", "token": "wrong-pw-1",
                "id": null, "query": "", "userAgent": "",
            });
            req[field] = json!(value);
            sent.push(req);
        }
    }
    // Each hostile user name once more: now the limiter logs it as well.
    for value in hostile() {
        let mut req = sent[4].clone();
        req["user"] = json!(value);
        sent.push(req);
    }
    sent.push(json!({"action": "read", "path": "cam", "ip": "10.0.0.1",
                     "user": "sentinel-end", "password": "wrong-pw-2"}));

    let statuses = actix_web::rt::System::new().block_on(async {
        let mut statuses = Vec::new();
        for req in &sent {
            statuses.push(app.auth(req).await.0);
        }
        statuses
    });
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    assert!(
        server.wait_for_log("user=sentinel-end", 15),
        "{}",
        server.logs()
    );
    let logs = server.logs();

    // Not one raw control character: nothing can end a line early or reach the terminal.
    let raw: Vec<char> = logs
        .chars()
        .filter(|c| *c != '\n' && (c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')))
        .collect();
    assert!(raw.is_empty(), "raw control characters {raw:?} in:\n{logs}");

    // One line per decision, in the order sent, each reading back to what was sent.
    let decisions: Vec<&str> = logs
        .lines()
        .filter(|l| target(l) == Some("mtx_auth::decision"))
        .collect();
    assert_eq!(decisions.len(), sent.len(), "{logs}");
    for (line, req) in decisions.iter().zip(&sent) {
        let fields = parse_fields(after(line, "mtx_auth::decision: "));
        let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "action",
                "protocol",
                "path",
                "ip",
                "user",
                "outcome",
                "source",
                "reason",
                "latency_us"
            ],
            "{line}"
        );
        for (i, field) in FIELDS.iter().enumerate() {
            let want = req[*field].as_str().unwrap_or("");
            assert_eq!(fields[i].1, want, "{field} in {line}");
        }
        assert_eq!(fields[5].1, "deny", "{line}");
    }
    for line in logs.lines() {
        // A quoted value may hold `outcome=allow` as text, never `outcome="allow"` unescaped.
        assert!(!line.contains("outcome=\"allow\""), "{line}");
        if target(line) == Some("mtx_auth::decision") {
            let fields = parse_fields(after(line, "mtx_auth::decision: "));
            let outcome = fields.into_iter().find(|(k, _)| k == "outcome");
            assert_eq!(outcome.map(|(_, v)| v).as_deref(), Some("deny"), "{line}");
        }
    }

    // The limiter's lines read back too: one per hostile user name, whole.
    let limited: Vec<Vec<(String, String)>> = logs
        .lines()
        .filter(|l| target(l) == Some("mtx_auth::limiter"))
        .map(|l| parse_fields(after(l, "denied without checking ")))
        .collect();
    for value in hostile() {
        assert!(
            limited
                .iter()
                .any(|f| f.iter().any(|(k, v)| k == "user" && *v == value)),
            "no limiter line for {value:?}:\n{logs}"
        );
    }
}

/// The target a line was logged under: `TIMESTAMP LEVEL TARGET: …`. A forged line, whatever
/// it holds, starts a line of its own only if a value could break the line.
fn target(line: &str) -> Option<&str> {
    line.split_whitespace().nth(2)?.strip_suffix(':')
}

fn after<'a>(line: &'a str, marker: &str) -> &'a str {
    line.split_once(marker)
        .unwrap_or_else(|| panic!("no {marker:?} in {line}"))
        .1
}

/// Reads `key=value key="quoted \"value\"" …` back into pairs, undoing the escapes (`\n`,
/// `\r`, `\t`, `\"`, `\\`, `\u{…}`). Panics on anything else, so a line that is not
/// unambiguous logfmt fails the test.
fn parse_fields(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return out;
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert!(
            !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad key {key:?} in {s}"
        );
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars
                    .next()
                    .unwrap_or_else(|| panic!("unterminated value in {s}"))
                {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('r') => value.push('\r'),
                        Some('t') => value.push('\t'),
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('u') => {
                            assert_eq!(chars.next(), Some('{'), "{s}");
                            let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                            let code = u32::from_str_radix(&hex, 16).expect("hex escape");
                            value.push(char::from_u32(code).expect("a char"));
                        }
                        other => panic!("unknown escape {other:?} in {s}"),
                    },
                    c => value.push(c),
                }
            }
            assert!(
                matches!(chars.peek(), None | Some(' ')),
                "text right after a quoted value in {s}"
            );
        } else {
            while let Some(c) = chars.next_if(|c| *c != ' ') {
                assert!(
                    !matches!(c, '"' | '=' | '\\'),
                    "{c:?} in a bare value in {s}"
                );
                value.push(c);
            }
        }
        out.push((key, value));
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

const MACHINE_ID: &str = "0c4f9d2e7a1b4c3d8e5f60718293a4b5c6d7e8f9";

// Secrets sent by clients or held by upstreams. Each is distinctive, so a hit is a leak.
const ALICE_PW: &str = "PlainPass.Alice-3141";
const BOB_PW: &str = "ShaPass.Bob-2718";
const CAROL_PW: &str = "ArgonPass.Carol-1618";
const DAVE_PW: &str = "DavePass-1414";
const WRONG_PWS: [&str; 6] = [
    "WrongPass.Alice-0001",
    "WrongPass.Bob-0002",
    "WrongPass.Carol-0003",
    "MalloryGuess-0004",
    "WrongJelly-0005",
    "WrongOidc-0006",
];
const JELLY_PW: &str = "JellyPass-5521";
const JELLY_TOKEN: &str = "JellyToken7a7a7a7a7a7a";
const PLEX_TOKEN: &str = "PlexToken8k2m9q4w7e1r";
const PLEX_OWNER_TOKEN: &str = "PlexOwnerToken3n5b7v9c";
const PLEX_WRONG_TOKEN: &str = "PlexWrongToken0x0y0z0w";
const PLEX_PW: &str = "PlexPass-3131";
const OIDC_PW: &str = "OidcUserPass-77ab";
const OIDC_CLIENT_SECRET: &str = "OidcClientSecret-9f3k";
const HMAC_SECRET: &str = "HmacSecret-4242";

/// Writes the config into the target dir and returns its path and the hash strings it holds.
fn write_config(idp: &FakeIdp, jelly: &FakeMediaServer, plex: &FakePlex) -> (PathBuf, Vec<String>) {
    let bob_hash = hash_sha256(BOB_PW);
    let carol_hash = hash_argon2(CAROL_PW);
    let dave_name_hash = hash_sha256("dave");
    let config = format!(
        r#"
[[users]]
user = "alice"
pass = "{ALICE_PW}"
permissions = [{{ action = "read" }}, {{ action = "publish", path = "~^alice/" }}]

[[users]]
user = "bob"
pass = "{bob_hash}"
permissions = [{{ action = "read" }}]

[[users]]
user = "carol"
pass = "{carol_hash}"
permissions = [{{ action = "read" }}]

[[users]]
user = "{dave_name_hash}"
pass = "{DAVE_PW}"
permissions = [{{ action = "playback" }}]

[[users]]
user = "any"
permissions = [{{ action = "read", path = "open-door" }}]

[jwt]
jwks_url = "{jwks}"

[jellyfin]
url = "{jelly}"

[plex]
api_url = "{plex}"
server = "{MACHINE_ID}"

[oidc]
discovery_url = "{discovery}"
client_id = "mediamtx"
client_secret = "{OIDC_CLIENT_SECRET}"
"#,
        jwks = idp.jwks_url(),
        jelly = jelly.url(),
        plex = plex.url(),
        discovery = idp.discovery_url(),
    );
    let path = temp_config("mtx-auth.toml", &config);
    (path, vec![bob_hash, carol_hash, dave_name_hash])
}

fn request(action: &str, path: &str, ip: &str, user: &str, pass: &str) -> Value {
    json!({
        "ip": ip, "user": user, "password": pass, "token": pass, "action": action, "path": path,
        "protocol": "rtsp", "id": null, "query": "", "userAgent": "log-secrets-test",
    })
}

/// A request carrying only a token, in the token field or (HLS, WebRTC) in the query.
fn with_token(path: &str, token: &str, in_query: bool) -> Value {
    let (field, query) = if in_query {
        (String::new(), format!("token={token}"))
    } else {
        (token.to_owned(), String::new())
    };
    json!({
        "ip": "10.0.0.9", "user": "", "password": "", "token": field, "action": "read",
        "path": path, "protocol": "hls", "id": null, "query": query,
    })
}

#[actix_web::test]
async fn no_secret_appears_in_debug_logs() {
    // Upstreams: an IdP (JWKS, discovery, password grant), a Jellyfin server, plex.tv.
    let key = TestKey::generate(KeyKind::Rsa, "log-secrets-key");
    let idp = FakeIdp::start_with_signer(key.clone());
    idp.set_password_client("mediamtx", OIDC_CLIENT_SECRET);
    idp.add_password_user(
        "oscar",
        OIDC_PW,
        json!({ "mediamtx_permissions": [{ "action": "read" }] }),
    );
    let jelly = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("jelly", JELLY_PW)]);
    jelly.add_token(JELLY_TOKEN, "jelly");
    let plex = FakePlex::start();
    plex.add_account("plexowner", PLEX_OWNER_TOKEN, None);
    plex.add_account("pam", PLEX_TOKEN, Some(PLEX_PW));
    plex.add_server("HomeServer", MACHINE_ID, "plexowner");
    plex.share(MACHINE_ID, "pam");

    // Tokens: valid (claim), expired, unsigned, HS256 with a secret, garbage of JWT shape.
    let now = idp::now();
    let claims = |exp: u64| json!({"sub": "jwt-viewer", "exp": exp, "mediamtx_permissions": [{"action": "read"}]});
    let valid_jwt = key.sign(&claims(now + 600));
    let expired_jwt = key.sign(&claims(now - 3600));
    let none_jwt = unsigned_token(&json!({"alg": "none"}), &claims(now + 600));
    let hs256_jwt = hs256_token(
        HMAC_SECRET.as_bytes(),
        &json!({"alg": "HS256", "kid": "log-secrets-key"}),
        &claims(now + 600),
    );
    let garbage_jwt = format!(
        "{}.eyJzdWIiOiJ4In0.R4nd0mS1gnatureG4rbage0123456789abcdef",
        idp::b64url(br#"{"alg":"RS256","kid":"nope"}"#)
    );

    let (config, hashes) = write_config(&idp, &jelly, &plex);
    // Debug logs; stderr is collected as the process writes it, so debug output never blocks it.
    let server = Binary::start_with(&config, &[("RUST_LOG", "debug")], |_| {});
    let base = server.base.clone();
    let client = reqwest::Client::new();

    // Every remote source ready (keys loaded, upstreams answered) before the requests.
    let mut ready = false;
    for _ in 0..1500 {
        let r = client.get(format!("{base}/readyz")).send().await;
        if r.is_ok_and(|r| r.status() == 200) {
            ready = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ready, "mtx-auth never became ready");

    let ip = "10.0.0.9";
    let cases: Vec<(Value, u16)> = vec![
        // TOML users: plain, sha256, argon2 (twice: verified, then cached), hashed name.
        (request("read", "path-alice", ip, "alice", ALICE_PW), 200),
        (
            request("read", "path-alice-wrong", ip, "alice", WRONG_PWS[0]),
            401,
        ),
        (request("read", "path-bob", ip, "bob", BOB_PW), 200),
        (
            request("read", "path-bob-wrong", ip, "bob", WRONG_PWS[1]),
            401,
        ),
        (request("read", "path-carol", ip, "carol", CAROL_PW), 200),
        (request("read", "path-carol", ip, "carol", CAROL_PW), 200),
        (
            request("read", "path-carol-wrong", ip, "carol", WRONG_PWS[2]),
            401,
        ),
        (request("playback", "path-dave", ip, "dave", DAVE_PW), 200),
        // An unknown user: every account source is asked, and says no.
        (
            request("read", "path-mallory", ip, "mallory", WRONG_PWS[3]),
            401,
        ),
        // JWTs, in the token field and in the query; a JWT as a TOML user's password.
        (with_token("path-jwt", &valid_jwt, false), 200),
        (with_token("path-jwt-query", &valid_jwt, true), 200),
        (with_token("path-jwt-expired", &expired_jwt, false), 401),
        (with_token("path-jwt-none", &none_jwt, false), 401),
        (with_token("path-jwt-hs256", &hs256_jwt, true), 401),
        (with_token("path-jwt-garbage", &garbage_jwt, false), 401),
        (
            request("read", "path-alice-jwt", ip, "alice", &valid_jwt),
            200,
        ),
        // Jellyfin: login (the session it creates is logged out at once), wrong, token.
        (request("read", "path-jelly", ip, "jelly", JELLY_PW), 200),
        (
            request("read", "path-jelly-wrong", ip, "jelly", WRONG_PWS[4]),
            401,
        ),
        (with_token("path-jelly-token", JELLY_TOKEN, false), 200),
        // plex.tv tokens: a shared user's, the owner's, an unknown one, one as the password.
        (with_token("path-plex", PLEX_TOKEN, false), 200),
        (with_token("path-plex-owner", PLEX_OWNER_TOKEN, false), 200),
        (with_token("path-plex-wrong", PLEX_WRONG_TOKEN, false), 401),
        (
            request("read", "path-plex-pass", ip, "pam", PLEX_TOKEN),
            200,
        ),
        // OIDC password login, right and wrong.
        (request("read", "path-oscar", ip, "oscar", OIDC_PW), 200),
        (
            request("read", "path-oscar-wrong", ip, "oscar", WRONG_PWS[5]),
            401,
        ),
        // A malformed request holding a password: 400, and the reason does not repeat it.
        (
            json!({"user": "alice", "password": ALICE_PW, "action": ["read"]}),
            400,
        ),
    ];
    for (i, (body, want)) in cases.iter().enumerate() {
        let resp = client
            .post(format!("{base}/auth"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        assert_eq!(status, *want, "case {i}: {body} -> {text}");
    }

    // SIGTERM, then everything the process wrote. (Waited for off this runtime, which serves
    // the fakes.)
    let (code, logs) = actix_web::rt::task::spawn_blocking(move || server.stop())
        .await
        .unwrap();
    assert_eq!(code, Some(0), "graceful exit");

    // The logs say what happened...
    for user in [
        "alice", "bob", "carol", "dave", "mallory", "jelly", "pam", "oscar",
    ] {
        assert!(
            logs.contains(&format!("user={user}")),
            "no line for {user}:\n{logs}"
        );
    }
    for (body, _) in &cases {
        if let Some(path) = body["path"].as_str() {
            assert!(logs.contains(path), "no line for {path}:\n{logs}");
        }
    }
    assert!(logs.contains("outcome=\"deny\"") || logs.contains("outcome=deny"));
    assert!(logs.contains("DEBUG"), "debug logging was not on:\n{logs}");

    // ...and no secret: passwords, tokens (whole and their signatures), the client secret,
    // the HMAC key, and the hashes in the config (whole and their digest part).
    let mut secrets: Vec<String> = [
        ALICE_PW,
        BOB_PW,
        CAROL_PW,
        DAVE_PW,
        JELLY_PW,
        JELLY_TOKEN,
        PLEX_TOKEN,
        PLEX_OWNER_TOKEN,
        PLEX_WRONG_TOKEN,
        PLEX_PW,
        OIDC_PW,
        OIDC_CLIENT_SECRET,
        HMAC_SECRET,
    ]
    .iter()
    .chain(WRONG_PWS.iter())
    .map(|s| s.to_string())
    .collect();
    for token in [
        &valid_jwt,
        &expired_jwt,
        &none_jwt,
        &hs256_jwt,
        &garbage_jwt,
    ] {
        secrets.push(token.clone());
        let signature = token.rsplit('.').next().unwrap();
        if signature.len() >= 16 {
            secrets.push(signature.to_owned());
        }
    }
    for hash in &hashes {
        secrets.push(hash.clone());
        // The digest itself: the part after the last `$` (argon2) or after `sha256:`.
        let digest = hash.rsplit(['$', ':']).next().unwrap();
        assert!(digest.len() >= 32, "{hash}");
        secrets.push(digest.to_owned());
    }
    // Tokens the upstreams issued during the run (a Jellyfin login's session token).
    secrets.extend(jelly.tokens_of("jelly"));
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| logs.contains(s.as_str()))
        .collect();
    assert!(leaked.is_empty(), "secrets in the logs: {leaked:?}\n{logs}");
}
