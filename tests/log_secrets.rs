//! No secret reaches the logs (issue 5). The real binary runs with `RUST_LOG=debug` against a
//! config with plain, `sha256:` and `argon2:` users, a hashed user name, `[jwt]`, `[jellyfin]`,
//! `[plex]` and `[oidc]` (fake upstreams on loopback, tests/support), and answers a full set of
//! requests: right and wrong passwords for every kind of user and source, valid, forged, expired
//! and garbage JWTs (in the token field and in the query), media-server and plex.tv tokens.
//! Then it is stopped with SIGTERM and its whole stderr is searched: no password, token, client
//! secret or configured hash may appear in it, while the user names and paths do (so the test
//! would notice if nothing were logged at all).

#![recursion_limit = "256"] // the fake servers' JSON literals are large

#[path = "support/idp.rs"]
mod idp;
#[path = "support/media.rs"]
mod media;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use idp::{hs256_token, unsigned_token, FakeIdp, KeyKind, TestKey};
use media::{FakeMediaServer, FakePlex, Flavor, UserSpec};
use mtx_auth::credential::{hash_argon2, hash_sha256};
use serde_json::{json, Value};

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
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("log-secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mtx-auth.toml");
    std::fs::write(&path, config).unwrap();
    (path, vec![bob_hash, carol_hash, dave_name_hash])
}

/// The server process; killed if the test fails before stopping it.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts `mtx-auth serve` with debug logs; returns the child, its address, and a thread that
/// collects the rest of its stderr (drained continuously, so debug output never blocks it).
fn start(config: &PathBuf) -> (Server, String, std::thread::JoinHandle<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mtx-auth"))
        .arg("serve")
        .arg("--config")
        .arg(config)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let child = Server(Some(child));
    let mut head = String::new();
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening: {head}"
        );
        head.push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split(['/', ' ', '\n']).next().unwrap().to_owned();
        }
    };
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        head + &rest
    });
    (child, addr, rest)
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
    let (mut server, addr, logs) = start(&config);
    let base = format!("http://{addr}");
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

    // SIGTERM, then everything the process wrote.
    let mut child = server.0.take().unwrap();
    let pid = child.id().to_string();
    let status = actix_web::rt::task::spawn_blocking(move || {
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0), "graceful exit");
    let logs = logs.join().unwrap();

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
