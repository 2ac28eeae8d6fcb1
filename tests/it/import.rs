//! `mtx-auth import-mediamtx` through the binary: each `mediamtx.yml` in tests/data/mediamtx is
//! imported, the printed config is served, and requests are replayed over HTTP. The decisions
//! must be MediaMTX's: its own test rows (tests/data/internal-users.json) for the files that
//! carry those suites, and tables written from MediaMTX's rules for the others.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{json, Value};

use crate::support::tls::TlsFront;
use crate::support::{bin, idp, mtx_request as req, spawn, TestApp};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/mediamtx")
        .join(name)
}

fn run_import(path: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("import-mediamtx")
        .arg(path)
        .args(extra)
        .output()
        .expect("run mtx-auth")
}

/// Imports `path` and returns the printed TOML, which must also pass `mtx-auth check`.
fn import(path: &Path) -> String {
    let out = run_import(path, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "import failed: {stderr}");
    let toml = String::from_utf8(out.stdout).expect("UTF-8 output");
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("imported.toml");
    std::fs::write(&file, &toml).unwrap();
    let check = bin()
        .args(["check", "--config"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "check refused the imported config: {}\n{toml}",
        String::from_utf8_lossy(&check.stderr)
    );
    toml
}

fn allowed(status: u16) -> bool {
    (200..300).contains(&status)
}

/// Replays `(name, request, allow)` rows and lists every row decided the other way.
async fn replay(app: &TestApp, rows: &[(&str, Value, bool)]) {
    let mut wrong = Vec::new();
    for (name, request, want) in rows {
        let (status, body) = app.auth(request).await;
        if allowed(status) != *want {
            wrong.push(format!("{name}: wanted allow={want}, got {status} {body}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[actix_web::test]
async fn conformance_suites_give_mediamtx_decisions_after_import() {
    let data: Value =
        serde_json::from_str(include_str!("../data/internal-users.json")).expect("valid JSON");
    let files: &[(&str, &[&str])] = &[
        ("TestAuthInternal/plain", &["plain.yml"]),
        ("TestAuthInternal/sha256", &["sha256.yml"]),
        ("TestAuthInternal/argon2", &["argon2.yml"]),
        // MediaMTX's shipped block, and a file without the key (MediaMTX's defaults apply).
        ("MediaMTX default users", &["default.yml", "absent.yml"]),
    ];
    let mut replayed = 0;
    for suite in data["suites"].as_array().unwrap() {
        let name = suite["name"].as_str().unwrap();
        let (_, names) = files
            .iter()
            .find(|(s, _)| *s == name)
            .unwrap_or_else(|| panic!("no mediamtx.yml for suite {name}"));
        for file in *names {
            let app = spawn(&import(&fixture(file)));
            let rows: Vec<(&str, Value, bool)> = suite["cases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| {
                    (
                        c["name"].as_str().unwrap(),
                        c["request"].clone(),
                        c["allow"].as_bool().unwrap(),
                    )
                })
                .collect();
            replayed += rows.len();
            replay(&app, &rows).await;
        }
    }
    assert_eq!(replayed, 33, "every suite replayed against every file");
}

#[actix_web::test]
async fn hashed_users_ip_lists_and_regex_paths() {
    let toml = import(&fixture("household.yml"));
    // The imported file says where each user came from.
    assert!(toml.contains("# authInternalUsers[2] ("), "{toml}");
    let app = spawn(&toml);
    let cam =
        |action: &str, path: &str, ip: &str, pass: &str| req(action, path, ip, "camera", pass);
    let family =
        |action: &str, path: &str, pass: &str| req(action, path, "8.8.8.8", "testuser", pass);
    let anon = |path: &str, ip: &str| req("read", path, ip, "", "");
    let admin =
        |action: &str, path: &str, ip: &str, pass: &str| req(action, path, ip, "admin", pass);
    replay(
        &app,
        &[
            (
                "camera publishes under cam/",
                cam("publish", "cam/front", "192.168.20.7", "testpass"),
                true,
            ),
            (
                "camera as IPv4-mapped IPv6",
                cam("publish", "cam/front", "::ffff:192.168.20.7", "testpass"),
                true,
            ),
            (
                "camera off its VLAN",
                cam("publish", "cam/front", "192.168.30.7", "testpass"),
                false,
            ),
            (
                "camera outside cam/",
                cam("publish", "tv/front", "192.168.20.7", "testpass"),
                false,
            ),
            (
                "^ anchors the camera prefix",
                cam("publish", "xcam/front", "192.168.20.7", "testpass"),
                false,
            ),
            (
                "camera wrong password",
                cam("publish", "cam/front", "192.168.20.7", "testuser"),
                false,
            ),
            (
                "camera cannot read",
                cam("read", "cam/front", "192.168.20.7", "testpass"),
                false,
            ),
            (
                "family reads cam/ (argon2)",
                family("read", "cam/1", "testpass"),
                true,
            ),
            (
                "family reads tv/",
                family("read", "tv/news", "testpass"),
                true,
            ),
            (
                "family not private/",
                family("read", "private/1", "testpass"),
                false,
            ),
            (
                "family plays back anything",
                family("playback", "private/1", "testpass"),
                true,
            ),
            (
                "family wrong password",
                family("read", "cam/1", "wrong"),
                false,
            ),
            (
                "family cannot publish",
                family("publish", "cam/1", "testpass"),
                false,
            ),
            (
                "LAN reads *live* (unanchored)",
                anon("tv/live1", "192.168.1.10"),
                true,
            ),
            ("LAN over IPv6", anon("golive", "fd00::1"), true),
            ("not from the internet", anon("golive", "8.8.8.8"), false),
            (
                "LAN, path without live",
                anon("tv/news", "192.168.1.10"),
                false,
            ),
            (
                "admin API from its host",
                admin("api", "", "10.0.0.5", "s3cr3t!"),
                true,
            ),
            (
                "admin API from elsewhere",
                admin("api", "", "10.0.0.6", "s3cr3t!"),
                false,
            ),
            (
                "admin publishes studio",
                admin("publish", "studio", "10.0.0.5", "s3cr3t!"),
                true,
            ),
            (
                "studio is exact",
                admin("publish", "studio2", "10.0.0.5", "s3cr3t!"),
                false,
            ),
            (
                "admin wrong password",
                admin("api", "", "10.0.0.5", "s3cr3t"),
                false,
            ),
            (
                "nobody else has the API",
                req("api", "", "127.0.0.1", "", ""),
                false,
            ),
        ],
    )
    .await;
}

#[actix_web::test]
async fn legacy_per_path_credentials_are_converted_like_mediamtx() {
    let out = run_import(&fixture("legacy.yml"), &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("legacy per-path credentials"));
    let app = spawn(&import(&fixture("legacy.yml")));
    replay(
        &app,
        &[
            (
                "anyone plays back",
                req("playback", "cam", "1.2.3.4", "", ""),
                true,
            ),
            ("API from this machine", req("api", "", "::1", "", ""), true),
            (
                "API from elsewhere",
                req("api", "", "1.2.3.4", "", ""),
                false,
            ),
            (
                "cam publisher from its network",
                req("publish", "cam", "192.168.20.4", "cam", "lens"),
                true,
            ),
            (
                "viewer (from pathDefaults) reads cam",
                req("read", "cam", "1.2.3.4", "viewer", "watch"),
                true,
            ),
            (
                "anonymous cannot read cam",
                req("read", "cam", "1.2.3.4", "", ""),
                false,
            ),
            (
                "viewer reads other paths (all_others)",
                req("read", "x/y", "1.2.3.4", "viewer", "watch"),
                true,
            ),
            (
                "open: an explicit empty readUser is anyone",
                req("read", "open", "1.2.3.4", "", ""),
                true,
            ),
            // all_others has no publishUser: MediaMTX lets anyone publish anywhere (over IPv4).
            (
                "all_others publish is open",
                req("publish", "cam", "1.2.3.4", "", ""),
                true,
            ),
            // The legacy default IPs are 0.0.0.0/0: IPv4 only.
            (
                "legacy users are IPv4 only",
                req("read", "open", "2001:db8::1", "", ""),
                false,
            ),
        ],
    )
    .await;
}

/// Both over plain HTTP and over HTTPS from a self-signed key server pinned by
/// `authJWTJWKSFingerprint`, which must come over as `jwks_fingerprint`.
#[actix_web::test]
async fn jwt_method_imports_key_set_claim_key_fingerprint_and_exclusions() {
    let key = idp::TestKey::generate(idp::KeyKind::Rsa, "k1");
    let server = idp::FakeIdp::start(vec![key.jwk()]);
    let front = TlsFront::start(server.base().trim_start_matches("http://").parse().unwrap());
    for (url, fingerprint) in [
        (server.jwks_url(), String::new()),
        (front.https(&server.jwks_url()), front.fingerprint()),
    ] {
        let text = std::fs::read_to_string(fixture("jwt.yml"))
            .unwrap()
            .replace("JWKS_URL", &url)
            .replace("FINGERPRINT", &fingerprint);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let yml = dir.path().join("mediamtx.yml");
        std::fs::write(&yml, text).unwrap();
        let toml = import(&yml);
        assert_eq!(
            toml.contains(&format!("jwks_fingerprint = \"{fingerprint}\"")),
            !fingerprint.is_empty(),
            "{toml}"
        );
        jwt_decisions_are_mediamtx_s(&key, &spawn(&toml)).await;
    }
}

/// The decisions of tests/data/mediamtx/jwt.yml under MediaMTX.
async fn jwt_decisions_are_mediamtx_s(key: &idp::TestKey, app: &TestApp) {
    app.wait_ready().await;

    // MediaMTX checks exp only when present: a token without one is accepted.
    let token =
        key.sign(&json!({"sub": "alice", "mtx_perms": [{"action": "read", "path": "cam"}]}));
    let other_claim =
        key.sign(&json!({"sub": "bob", "mediamtx_permissions": [{"action": "read"}]}));
    let expired = key
        .sign(&json!({"sub": "carol", "exp": idp::now() - 60, "mtx_perms": [{"action": "read"}]}));
    let bearer = |t: &str, path: &str| req("read", path, "10.0.0.1", "", t);
    replay(
        app,
        &[
            (
                "excluded path without a token",
                req("read", "public/lobby", "10.0.0.1", "", ""),
                true,
            ),
            (
                "not excluded without a token",
                req("read", "cam", "10.0.0.1", "", ""),
                false,
            ),
            (
                "internal users are ignored under jwt",
                req("publish", "cam", "10.0.0.1", "", ""),
                false,
            ),
            ("token granting cam", bearer(&token, "cam"), true),
            ("token not granting other", bearer(&token, "other"), false),
            (
                "claim under another key",
                bearer(&other_claim, "cam"),
                false,
            ),
            ("expired token", bearer(&expired, "cam"), false),
        ],
    )
    .await;
}

fn stderr_of(yaml: &str, extra: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let file = dir.path().join("mediamtx.yml");
    std::fs::write(&file, yaml).unwrap();
    let out = run_import(&file, extra);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn problems_point_at_the_yaml_and_never_echo_secrets() {
    // A bad address, a regex that does not compile and an unknown action: each at its line.
    let (ok, stdout, stderr) = stderr_of(
        "authInternalUsers:\n\
         - user: alice\n  pass: hunter2-secret\n  ips: ['10.0.0.300']\n  permissions:\n  - action: read\n    path: '~(('\n  - action: watch\n",
        &[],
    );
    assert!(!ok && stdout.is_empty(), "{stdout}");
    assert!(stderr.contains("mediamtx.yml:4:9: "), "{stderr}");
    assert!(stderr.contains("mediamtx.yml:7:11: path: "), "{stderr}");
    assert!(stderr.contains("mediamtx.yml:8:13: action "), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // Malformed YAML on a line holding a password: the message has no excerpt of the file.
    let (ok, _, stderr) = stderr_of(
        "authInternalUsers:\n- user: bob\n  pass: [hunter2-secret\n",
        &[],
    );
    assert!(!ok);
    assert!(stderr.contains("mediamtx.yml: "), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // MediaMTX refuses unknown fields in a user, and so does the import.
    let (ok, _, stderr) = stderr_of("authInternalUsers:\n- user: any\n  paths: [cam]\n", &[]);
    assert!(!ok && stderr.contains("paths"), "{stderr}");

    // `any` with a password is a MediaMTX config error.
    let (ok, _, stderr) = stderr_of(
        "authInternalUsers:\n- user: any\n  pass: x\n  permissions: [{action: read}]\n",
        &[],
    );
    assert!(!ok && stderr.contains("mediamtx.yml:3:9: "), "{stderr}");
}

#[test]
fn method_choices_and_notes() {
    let users = "authInternalUsers:\n- user: any\n  permissions: [{action: read}]\n";
    // Already http: both sets are unused; the operator must say which to import.
    let (ok, _, stderr) = stderr_of(&format!("authMethod: http\n{users}"), &[]);
    assert!(!ok && stderr.contains("--method"), "{stderr}");
    let (ok, stdout, _) = stderr_of(
        &format!("authMethod: http\n{users}"),
        &["--method", "internal"],
    );
    assert!(ok && stdout.contains("[[users]]"), "{stdout}");
    // The pre-v1.8 key counts as http too.
    let (ok, _, _) = stderr_of(
        &format!("externalAuthenticationURL: http://x/auth\n{users}"),
        &[],
    );
    assert!(!ok);

    // jwt without a key set is a MediaMTX error.
    let (ok, _, stderr) = stderr_of("authMethod: jwt\n", &[]);
    assert!(!ok && stderr.contains("authJWTJWKS"), "{stderr}");

    // Under internal, JWT settings are written commented out.
    let (ok, stdout, _) = stderr_of(&format!("authJWTJWKS: http://idp/jwks\n{users}"), &[]);
    assert!(
        ok && stdout.contains("# [jwt]") && !stdout.contains("\n[jwt]"),
        "{stdout}"
    );

    // What cannot be carried over is said on stderr and in the file: a fingerprint on a
    // plain-http key server (which MediaMTX never uses), and two protocol differences.
    let (ok, stdout, stderr) = stderr_of(
        &format!("authMethod: jwt\nauthJWTJWKS: http://idp/jwks\nauthJWTJWKSFingerprint: {}\nauthJWTInHTTPQuery: false\nrtspAuthMethods: [digest]\n", "ab".repeat(32)),
        &[],
    );
    assert!(ok, "{stderr}");
    for needle in ["authJWTJWKSFingerprint", "authJWTInHTTPQuery", "digest"] {
        assert!(stderr.contains(needle), "{needle}: {stderr}");
    }
    assert!(
        stdout.contains("# Note: authJWTJWKSFingerprint") && !stdout.contains("jwks_fingerprint"),
        "{stdout}"
    );

    // A fingerprint that is not one: refused at its place (MediaMTX would fail every fetch).
    let (ok, _, stderr) = stderr_of(
        "authMethod: jwt\nauthJWTJWKS: https://idp/jwks\nauthJWTJWKSFingerprint: abcd\n",
        &[],
    );
    assert!(
        !ok && stderr.contains("mediamtx.yml:3:25: jwks_fingerprint: not a SHA-256"),
        "{stderr}"
    );

    // Legacy keys beside custom users: MediaMTX refuses the file.
    let (ok, _, stderr) = stderr_of(&format!("{users}paths:\n  cam:\n    readUser: u\n"), &[]);
    assert!(
        !ok && stderr.contains("cannot be used together"),
        "{stderr}"
    );

    // An empty list denies everything, in MediaMTX and here.
    let (ok, stdout, stderr) = stderr_of("authInternalUsers: []\n", &[]);
    assert!(
        ok && !stdout.contains("[[users]]") && stderr.contains("denies every request"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Any users list: the import of its YAML decides like the same list written as TOML by hand.
// ---------------------------------------------------------------------------------------------

mod roundtrip {
    use mtx_auth::config::Config;
    use mtx_auth::credential::hash_sha256;
    use mtx_auth::policy::{Decision, Policy};
    use mtx_auth::request::Request;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct User {
        user: String,
        pass: String,
        ips: Vec<&'static str>,
        perms: Vec<(&'static str, &'static str)>,
    }

    fn arb_user() -> impl Strategy<Value = User> {
        let name = prop_oneof![
            Just("any".to_owned()),
            Just("alice".to_owned()),
            Just("bob".to_owned()),
            Just(hash_sha256("carol")),
        ];
        let pass = prop_oneof![
            Just(String::new()),
            Just("pw1".to_owned()),
            Just("pw2".to_owned()),
            Just(hash_sha256("pw1")),
        ];
        let ips =
            prop::sample::subsequence(vec!["10.0.0.0/8", "192.168.1.5", "fd00::/8", "::1"], 0..=2);
        let perm = (
            prop::sample::select(vec!["publish", "read", "playback", "api"]),
            prop::sample::select(vec!["", "cam", "~^cam", "~live"]),
        );
        (name, pass, ips, prop::collection::vec(perm, 0..3)).prop_map(|(user, pass, ips, perms)| {
            // MediaMTX refuses a password on `any`.
            let pass = if user == "any" { String::new() } else { pass };
            User {
                user,
                pass,
                ips,
                perms,
            }
        })
    }

    /// How a YAML scalar is written: plain, single- or double-quoted.
    fn scalar(v: &str, style: u8) -> String {
        match style % 3 {
            // A plain scalar may not start with ':' or be empty.
            0 if !v.is_empty() && !v.starts_with(':') => v.to_owned(),
            1 => format!("'{v}'"),
            _ => format!("\"{v}\""),
        }
    }

    fn yaml(users: &[User], styles: &[u8], flow: bool) -> String {
        let mut out = String::from("logLevel: info\nauthInternalUsers:");
        if users.is_empty() {
            return out + " []\n";
        }
        out.push('\n');
        let mut s = styles.iter().cycle();
        let mut q = |v: &str| scalar(v, *s.next().unwrap());
        for u in users {
            let ips: Vec<String> = u.ips.iter().map(|ip| q(ip)).collect();
            let perms: Vec<String> = u
                .perms
                .iter()
                .map(|(a, p)| {
                    if p.is_empty() {
                        format!("{{action: {a}}}")
                    } else {
                        format!("{{action: {a}, path: {}}}", q(p))
                    }
                })
                .collect();
            let pass = if u.pass.is_empty() {
                String::new()
            } else {
                q(&u.pass)
            };
            if flow {
                out += &format!(
                    "- {{user: {}, pass: {pass}, ips: [{}], permissions: [{}]}}\n",
                    q(&u.user),
                    ips.join(", "),
                    perms.join(", ")
                );
            } else {
                out += &format!("- user: {}\n  pass: {pass}\n  ips:\n", q(&u.user));
                for ip in &ips {
                    out += &format!("  - {ip}\n");
                }
                out += "  permissions:\n";
                for p in &perms {
                    out += &format!("  - {p}\n");
                }
            }
        }
        out
    }

    fn toml(users: &[User]) -> String {
        let mut out = String::new();
        for u in users {
            let ips: Vec<String> = u.ips.iter().map(|ip| format!("{ip:?}")).collect();
            let perms: Vec<String> = u
                .perms
                .iter()
                .map(|(a, p)| format!("{{ action = {a:?}, path = {p:?} }}"))
                .collect();
            out += &format!(
                "[[users]]\nuser = {:?}\npass = {:?}\nips = [{}]\npermissions = [{}]\n\n",
                u.user,
                u.pass,
                ips.join(", "),
                perms.join(", ")
            );
        }
        out
    }

    fn outcome(d: Decision) -> Option<String> {
        match d {
            Decision::Allow { user, .. } => Some(user),
            Decision::Deny(_) => None,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn imported_yaml_decides_like_the_same_users_in_toml(
            users in prop::collection::vec(arb_user(), 0..5),
            styles in prop::collection::vec(any::<u8>(), 1..8),
            flow in any::<bool>(),
        ) {
            let text = yaml(&users, &styles, flow);
            let imported = mtx_auth::import::import(&text, "mediamtx.yml", None)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let from_yaml = Policy::new(Config::parse(&imported.toml, "imported.toml").unwrap());
            let by_hand = Policy::new(Config::parse(&toml(&users), "hand.toml").unwrap());
            for user in ["", "alice", "bob", "carol", "eve"] {
                for pass in ["", "pw1", "pw2"] {
                    for ip in ["10.1.2.3", "192.168.1.5", "fd00::1", "::1", "8.8.8.8"] {
                        for action in ["publish", "read", "playback", "api"] {
                            for path in ["cam", "cam/1", "live", "x"] {
                                let body = serde_json::json!({"user": user, "password": pass, "token": pass, "ip": ip, "action": action, "path": path});
                                let body = body.to_string();
                                let req = Request::parse(body.as_bytes()).unwrap();
                                prop_assert_eq!(
                                    outcome(from_yaml.decide(&req)),
                                    outcome(by_hand.decide(&req)),
                                    "{}\n{}", body, text
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}
