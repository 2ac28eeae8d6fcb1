//! Property tests over the library's input handling (issue 5, hostile input): the request
//! parser, the config loader, the permission matcher, the JWT shape check and `Policy::decide`.
//! Each property asserts that nothing panics and that anything malformed is an error or a deny;
//! where the right answer is simple to state, the answer itself is checked against a small model
//! written here, independently of the code under test.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, TcpListener};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ipnet::IpNet;
use mtx_auth::config::{Config, ConfigError};
use mtx_auth::credential::hash_sha256;
use mtx_auth::permission::{any_matches, Action, PathMatcher, Permission};
use mtx_auth::policy::{Decision, DenyReason, Grant, Policy, Source};
use mtx_auth::request::{parse_ip, Request};
use mtx_auth::source::jwks::{parse_jwks, KeySet};
use mtx_auth::source::jwt::{looks_like_jwt, JwtError};
use proptest::prelude::*;
use serde::de::IgnoredAny;
use serde_json::{json, Map, Value};

use crate::support::idp::{self, KeyKind, TestKey};

const SHIPPED: &str = include_str!("../../config/mtx-auth.toml");

/// The request's known fields, as MediaMTX names them.
const FIELDS: [&str; 9] = [
    "user", "password", "token", "ip", "action", "path", "protocol", "id", "query",
];

/// `n` cases, without a regressions file (a failure prints its minimal input instead).
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------------

/// Any JSON value, nested a few levels.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from), // non-finite becomes null
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(".{0,8}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for one of the request's fields: mostly the right type, often not.
fn arb_field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => "\\PC{0,16}".prop_map(Value::String),
        1 => Just(Value::Null),
        2 => arb_json(),
    ]
}

/// A JSON object with some known fields (any type) and some unknown ones.
fn arb_request_object() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::collection::btree_map(prop::sample::select(&FIELDS[..]), arb_field_value(), 0..9),
        prop::collection::btree_map("[a-zA-Z]{1,10}", arb_json(), 0..4),
    )
        .prop_map(|(known, unknown)| {
            let mut m = Map::new();
            for (k, v) in unknown {
                m.insert(k, v);
            }
            for (k, v) in known {
                m.insert(k.to_owned(), v);
            }
            m
        })
}

/// Strings that never occur in the parser's fixed error messages, to look for in them.
fn arb_secret() -> impl Strategy<Value = String> {
    "zq[A-Za-z0-9]{8,16}"
}

/// The parser's error text with its numbers removed must be one of its fixed messages.
fn is_fixed_message(e: &str) -> bool {
    let shape: String = e.chars().filter(|c| !c.is_ascii_digit()).collect();
    [
        "body is not a JSON object: expected a JSON object",
        "body is not a JSON object: unexpected end of input at line  column ",
        "body is not a JSON object: invalid JSON at line  column ",
        "body is not a JSON object: expected an object whose fields are strings at line  column ",
    ]
    .contains(&shape.as_str())
}

/// What `Request::parse` must make of a JSON value: the strings of its known fields, or `None`
/// when it is not a request (not an object, or a known field neither a string nor null).
fn expected_fields(v: &Value) -> Option<[String; 9]> {
    let obj = v.as_object()?;
    let mut out: [String; 9] = Default::default();
    for (i, f) in FIELDS.iter().enumerate() {
        match obj.get(*f) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => out[i] = s.clone(),
            Some(_) => return None,
        }
    }
    Some(out)
}

fn fields_of(r: &Request) -> [String; 9] {
    [
        &r.user,
        &r.password,
        &r.token,
        &r.ip_raw,
        &r.action_raw,
        &r.path,
        &r.protocol,
        &r.id,
        &r.query,
    ]
    .map(|c| c.to_string())
}

/// Checks a parse against what the JSON value says it must be.
fn check_parse_of_value(v: &Value) -> Result<(), TestCaseError> {
    let body = serde_json::to_vec(v).unwrap();
    match (Request::parse(&body), expected_fields(v)) {
        (Ok(r), Some(want)) => {
            prop_assert_eq!(fields_of(&r), want);
            prop_assert_eq!(r.action, r.action_raw.parse::<Action>().ok());
            prop_assert_eq!(r.ip, parse_ip(&r.ip_raw));
        }
        (Err(e), None) => prop_assert!(is_fixed_message(&e.to_string()), "{}", e),
        (Ok(_), None) => prop_assert!(false, "accepted a non-request: {}", v),
        (Err(e), Some(_)) => prop_assert!(false, "refused a request ({}): {}", e, v),
    }
    Ok(())
}

/// Checks a parse of arbitrary bytes: an error with a fixed message, or a request whose fields
/// are those of the JSON object the bytes hold.
fn check_parse_of_bytes(body: &[u8]) -> Result<(), TestCaseError> {
    match Request::parse(body) {
        Err(e) => prop_assert!(is_fixed_message(&e.to_string()), "{}", e),
        Ok(r) => match serde_json::from_slice::<Value>(body) {
            Ok(v) => prop_assert_eq!(expected_fields(&v), Some(fields_of(&r))),
            // serde_json skips the values of fields it ignores without fully checking them
            // (invalid UTF-8 or a bad `\u` escape in a string, a number out of range), so such
            // a body parses; the field is ignored anyway. It must still be an object, with
            // well-formed keys, as serde itself reads one while ignoring every value.
            Err(e) => prop_assert!(
                serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(body).is_ok(),
                "accepted a body that is not an object ({}): {:?}",
                e,
                String::from_utf8_lossy(body)
            ),
        },
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The request parser
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary bytes: an error with a fixed message, or a request that really was a JSON
    /// object whose known fields are strings.
    #[test]
    fn request_parse_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..256)) {
        check_parse_of_bytes(&body)?;
    }

    /// A valid body with bytes flipped, cut or inserted: never a panic, and whatever parses is
    /// a JSON object whose known fields are the request's.
    #[test]
    fn request_parse_mutated_bodies(
        fields in prop::collection::vec("\\PC{0,12}", 9),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let obj: Map<String, Value> = FIELDS.iter().zip(&fields)
            .map(|(k, v)| (k.to_string(), Value::String(v.clone()))).collect();
        let mut body = serde_json::to_vec(&obj).unwrap();
        for (at, byte, how) in edits {
            let i = at.index(body.len() + 1);
            match how {
                0 if i < body.len() => body[i] = byte,
                1 if i < body.len() => { body.remove(i); }
                _ => body.insert(i, byte),
            }
        }
        check_parse_of_bytes(&body)?;
    }

    /// Any JSON value: a request exactly when it is an object whose known fields are strings or
    /// null; everything else (arrays, strings, numbers, null, wrong field types) is an error.
    #[test]
    fn request_parse_arbitrary_json(v in arb_json()) {
        check_parse_of_value(&v)?;
    }

    /// Objects whose known fields have random types, among unknown fields of any type.
    #[test]
    fn request_parse_random_field_types(obj in arb_request_object()) {
        check_parse_of_value(&Value::Object(obj))?;
    }

    /// A well-formed request, with any strings (quotes, escapes, unicode, NUL) in every field
    /// and unknown fields around, parses to exactly its fields.
    #[test]
    fn request_parse_valid_object(
        fields in prop::collection::vec("\\PC{0,24}|[\\x00-\\x1f\"\\\\]{0,4}", 9),
        unknown in prop::collection::btree_map("[a-z]{11,14}", arb_json(), 0..4),
    ) {
        let mut obj: Map<String, Value> = unknown.into_iter().collect();
        for (k, v) in FIELDS.iter().zip(&fields) {
            obj.insert(k.to_string(), Value::String(v.clone()));
        }
        let body = serde_json::to_vec(&obj).unwrap();
        let r = Request::parse(&body).expect("a valid request parses");
        prop_assert_eq!(fields_of(&r).to_vec(), fields);
    }

    /// A malformed body never shows the string values it carried in its error: not for a wrong
    /// type, not for a body cut short, not for a stray byte.
    #[test]
    fn request_errors_never_echo_values(
        secrets in prop::collection::vec(arb_secret(), 9),
        wrong in 0..9usize,
        how in 0..4u8,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut obj: Map<String, Value> = FIELDS.iter().zip(&secrets)
            .map(|(k, v)| (k.to_string(), Value::String(v.clone()))).collect();
        let body = match how {
            // A known field of the wrong type, holding a secret.
            0 => {
                obj.insert(FIELDS[wrong].into(), json!([secrets[wrong]]));
                serde_json::to_vec(&obj).unwrap()
            }
            1 => {
                obj.insert(FIELDS[wrong].into(), json!({ "v": secrets[wrong] }));
                serde_json::to_vec(&obj).unwrap()
            }
            // Cut short.
            2 => {
                let full = serde_json::to_vec(&obj).unwrap();
                full[..cut.index(full.len())].to_vec()
            }
            // A stray byte after a secret.
            _ => {
                let text = serde_json::to_string(&obj).unwrap();
                text.replacen(&format!("{}\"", secrets[wrong]), &format!("{}\" x", secrets[wrong]), 1)
                    .into_bytes()
            }
        };
        let e = Request::parse(&body).expect_err("malformed").to_string();
        for s in &secrets {
            prop_assert!(!e.contains(s.as_str()), "{} in {}", s, e);
        }
        prop_assert!(is_fixed_message(&e), "{}", e);
    }
}

// ---------------------------------------------------------------------------------------------
// The config loader
// ---------------------------------------------------------------------------------------------

/// Every problem is located inside the file and displays as `f.toml:LINE:COL: message`.
fn check_problems(text: &str, e: &ConfigError) -> Result<(), TestCaseError> {
    prop_assert!(!e.problems.is_empty());
    let lines = text.split('\n').count();
    for p in &e.problems {
        prop_assert!(
            p.line >= 1 && p.line <= lines,
            "line {} of {}: {} in {:?}",
            p.line,
            lines,
            p,
            text
        );
        let line = text.split('\n').nth(p.line - 1).unwrap_or_default();
        prop_assert!(p.col >= 1, "{:?} on line {:?}", p, line);
        prop_assert!(!p.message.trim().is_empty(), "{:?} on line {:?}", p, line);
        // A message, not a piece of toml's source excerpt ("1 | …", "  ^").
        let excerpt = p.message.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with('|')
                || l.starts_with('^')
                || l.split_once(" |")
                    .is_some_and(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
        });
        prop_assert!(!excerpt, "{:?} on line {:?}", p, line);
        prop_assert_eq!(p.file.as_str(), "f.toml");
        prop_assert_eq!(
            p.to_string(),
            format!("f.toml:{}:{}: {}", p.line, p.col, p.message)
        );
    }
    let display = e.to_string();
    prop_assert_eq!(display.lines().count() >= e.problems.len(), true);
    Ok(())
}

/// Lines a mutation may insert: valid and invalid pieces of every section.
const CONFIG_LINES: &[&str] = &[
    "[server]",
    "listen = \"127.0.0.1:0\"",
    "argon2_queue = 0",
    "cache_ttl_secs = -5",
    "cache_capacity = 99999999999999999999",
    "[[users]]",
    "user = \"alice\"",
    "user = \"\"",
    "user = \"any\"",
    "user = \"sha256:abc\"",
    "pass = \"wonder land\"",
    "pass = \"argon2:$argon2id$v=19$m=4096\"",
    "pass = \"argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo\"",
    "ips = [\"10.0.0.0/8\", \"::1\"]",
    "ips = [\"10.0.0.0/40\"]",
    "ips = \"10.0.0.1\"",
    "permissions = [{ action = \"read\" }]",
    "permissions = [{ action = \"write\" }]",
    "permissions = [{ action = \"read\", path = \"~(\" }]",
    "permissions = [{ action = \"read\", path = \"~^(a+)+$\" }]",
    "permissions = [{ action = \"api\", extra = 1 }]",
    "[jwt]",
    "jwks_url = \"http://127.0.0.1:1/certs\"",
    "jwks_url = \"ftp://x\"",
    "discovery_url = \"http://127.0.0.1:1/.well-known/openid-configuration\"",
    "leeway_secs = 99999",
    "[[jwt.roles]]",
    "claim = \"realm_access..roles\"",
    "value = \"x\"",
    "[jellyfin]",
    "url = \"http://127.0.0.1:1\"",
    "[plex]",
    "server = \"\"",
    "[oidc]",
    "client_id = \"mediamtx\"",
    "client_secret = \"\"",
    "client_secret_env = \"MTX_AUTH_PROPTEST_UNSET_VARIABLE\"",
    "[[users]",
    "= \"x\"",
    "\"unterminated",
    "key = 'literal'",
    "x.y.z = 1",
    "[users]",
    "",
    "# comment",
    "\u{feff}",
    "\t\r",
];

#[derive(Debug, Clone)]
enum Edit {
    Delete(prop::sample::Index),
    Insert(prop::sample::Index, prop::sample::Index),
    FlipBit(prop::sample::Index, u8),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), any::<prop::sample::Index>())
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<prop::sample::Index>(), 0..8u8).prop_map(|(a, b)| Edit::FlipBit(a, b)),
    ]
}

/// Requests to decide with a policy built from a mutated config: one per action, an unknown
/// action, with and without credentials.
fn probe_requests() -> Vec<Request<'static>> {
    let mut reqs: Vec<Request<'static>> = Action::ALL
        .iter()
        .map(|&a| Request::new(a, "cam", "10.0.0.1", "alice", "wonderland"))
        .collect();
    reqs.push(Request::new(Action::Read, "", "::1", "", ""));
    let mut unknown = Request::new(Action::Read, "cam", "127.0.0.1", "", "");
    unknown.action = None;
    unknown.action_raw = "write".into();
    reqs.push(unknown);
    reqs
}

#[test]
fn config_read_error_is_line_zero() {
    let e = Config::load(Path::new("/nonexistent/mtx-auth-proptests.toml")).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert_eq!((p.line, p.col), (0, 0));
    assert!(p.message.starts_with("cannot read config"), "{p}");
    assert!(p
        .to_string()
        .starts_with("/nonexistent/mtx-auth-proptests.toml:0:0: "));
}

#[test]
fn shipped_config_parses() {
    assert!(Config::parse(SHIPPED, "f.toml").is_ok());
}

proptest! {
    #![proptest_config(cases(256))]

    /// Arbitrary text: never a panic; every problem located and displayed.
    #[test]
    fn config_arbitrary_text(text in "\\PC{0,160}|[\\[\\]=\"a-z_. \n#{},0-9~:$-]{0,160}") {
        if let Err(e) = Config::parse(&text, "f.toml") {
            check_problems(&text, &e)?;
        }
    }

    /// Pieces of real configs in random order.
    #[test]
    fn config_random_lines(picks in prop::collection::vec(any::<prop::sample::Index>(), 0..24)) {
        let text: Vec<&str> = picks.iter().map(|i| *i.get(CONFIG_LINES)).collect();
        let text = text.join("\n");
        if let Err(e) = Config::parse(&text, "f.toml") {
            check_problems(&text, &e)?;
        }
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// The shipped config with lines deleted, lines inserted and bits flipped: never a panic,
    /// every problem located; a config that still loads makes a policy that decides the probe
    /// requests without panicking, and denies the unknown action.
    #[test]
    fn config_mutated_shipped(edits in prop::collection::vec(arb_edit(), 1..8)) {
        let mut lines: Vec<Vec<u8>> = SHIPPED.split('\n').map(|l| l.as_bytes().to_vec()).collect();
        for edit in edits {
            match edit {
                Edit::Delete(i) if !lines.is_empty() => {
                    let at = i.index(lines.len());
                    lines.remove(at);
                }
                Edit::Delete(_) => {}
                Edit::Insert(at, what) => {
                    let at = at.index(lines.len() + 1);
                    lines.insert(at, what.get(CONFIG_LINES).as_bytes().to_vec());
                }
                Edit::FlipBit(at, bit) => {
                    let total: usize = lines.iter().map(Vec::len).sum();
                    if total > 0 {
                        let mut n = at.index(total);
                        for line in lines.iter_mut() {
                            if n < line.len() {
                                line[n] ^= 1 << bit;
                                break;
                            }
                            n -= line.len();
                        }
                    }
                }
            }
        }
        let bytes = lines.join(&b'\n');
        // The loader takes text: a flip that broke UTF-8 is replaced, as a reader would.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match Config::parse(&text, "f.toml") {
            Err(e) => check_problems(&text, &e)?,
            Ok(config) => {
                // Account sources would need a runtime to be asked; the decision core is what
                // is under test here.
                if config.accounts.is_empty() {
                    let policy = Policy::new(config);
                    for req in probe_requests() {
                        let d = policy.decide(&req);
                        if req.action.is_none() {
                            prop_assert_eq!(d, Decision::Deny(DenyReason::UnknownAction));
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The permission matcher
// ---------------------------------------------------------------------------------------------

fn arb_action() -> impl Strategy<Value = Action> {
    prop::sample::select(&Action::ALL[..])
}

/// Patterns: plain strings, regex-looking strings (many of which do not compile), empty.
fn arb_pattern() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "\\PC{1,20}",
        "~[a-z0-9()|*+?^$.\\[\\]{}\\\\,-]{0,20}",
        "~\\PC{0,12}",
    ]
}

proptest! {
    #![proptest_config(cases(256))]

    /// Any pattern either fails to parse or answers for any path, and a permission with it
    /// grants exactly its own action (on any path for api, metrics, pprof).
    #[test]
    fn permission_any_pattern(pattern in arb_pattern(), path in "\\PC{0,40}", a in arb_action(), b in arb_action()) {
        let Ok(m) = PathMatcher::parse(&pattern) else {
            prop_assert!(pattern.starts_with('~'), "only a regex can fail: {:?}", pattern);
            return Ok(());
        };
        let hit = m.matches(&path);
        let _ = m.to_string();
        let perm = Permission { action: a, path: m };
        prop_assert_eq!(perm.matches(b, &path), a == b && (!b.has_path() || hit));
    }

    /// An exact pattern matches its own string and nothing else.
    #[test]
    fn permission_exact_pattern(pattern in "[^~]\\PC{0,30}", path in "\\PC{0,31}") {
        let m = PathMatcher::parse(&pattern).unwrap();
        prop_assert!(matches!(m, PathMatcher::Exact(_)));
        prop_assert!(m.matches(&pattern));
        prop_assert_eq!(m.matches(&path), path == pattern);
        let longer = format!("{pattern}/");
        prop_assert!(!m.matches(&longer));
        prop_assert!(!m.matches(&pattern[..pattern.len() - pattern.chars().last().unwrap().len_utf8()]));
    }

    /// An empty pattern matches every path.
    #[test]
    fn permission_empty_pattern(path in "\\PC{0,40}|[\\x00-\\x7f]{0,40}") {
        prop_assert!(PathMatcher::parse("").unwrap().matches(&path));
    }

    /// `~` + an escaped string is an unanchored search for it; with `^…$` it is equality.
    #[test]
    fn permission_regex_semantics(prefix in "\\PC{0,8}", middle in "\\PC{1,12}", suffix in "\\PC{0,8}") {
        let escaped = regex::escape(&middle);
        let search = PathMatcher::parse(&format!("~{escaped}")).unwrap();
        let full = format!("{prefix}{middle}{suffix}");
        prop_assert!(search.matches(&full));
        prop_assert_eq!(search.matches(&format!("{prefix}{suffix}")), format!("{prefix}{suffix}").contains(&middle));
        let exact = PathMatcher::parse(&format!("~^{escaped}$")).unwrap();
        prop_assert!(exact.matches(&middle));
        prop_assert_eq!(exact.matches(&full), full == middle);
    }

    /// api, metrics and pprof ignore the path, whatever the pattern; `any_matches` is "some
    /// permission matches".
    #[test]
    fn permission_pathless_actions(
        patterns in prop::collection::vec((arb_action(), arb_pattern()), 0..6),
        path in "\\PC{0,30}",
        a in arb_action(),
    ) {
        let perms: Vec<Permission> = patterns
            .iter()
            .filter_map(|(action, p)| Some(Permission { action: *action, path: PathMatcher::parse(p).ok()? }))
            .collect();
        let want = perms.iter().any(|p| p.action == a && (!a.has_path() || p.path.matches(&path)));
        prop_assert_eq!(any_matches(&perms, a, &path), want);
        if !a.has_path() {
            prop_assert_eq!(any_matches(&perms, a, &path), perms.iter().any(|p| p.action == a));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The token parser and the JWT source
// ---------------------------------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A loopback port nothing listens on.
fn unused_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A policy with a `[jwt]` source whose key set never loads (no server runs, nothing listens).
fn jwt_policy_without_keys() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let config = format!(
            "[jwt]\njwks_url = \"http://127.0.0.1:{}/certs\"\n",
            unused_port()
        );
        Policy::new(Config::parse(&config, "f.toml").unwrap())
    })
}

/// A policy with a `[jwt]` source whose key set (an RSA and an Ed25519 key) is installed, and
/// the keys' private halves, to sign tokens with.
fn jwt_policy_with_keys() -> &'static (Policy, TestKey, TestKey) {
    static POLICY: OnceLock<(Policy, TestKey, TestKey)> = OnceLock::new();
    POLICY.get_or_init(|| {
        let config = format!(
            "[jwt]\njwks_url = \"http://127.0.0.1:{}/certs\"\n",
            unused_port()
        );
        let policy = Policy::new(Config::parse(&config, "f.toml").unwrap());
        let rsa = TestKey::generate(KeyKind::Rsa, "rsa1");
        let ed = TestKey::generate(KeyKind::Ed, "ed1");
        policy.jwt().unwrap().keys.install(KeySet {
            keys: parse_jwks(&json!({"keys": [rsa.jwk(), ed.jwk()]})).unwrap(),
            discovered_issuer: None,
            token_endpoint: None,
            fetched_at: Instant::now(),
        });
        (policy, rsa, ed)
    })
}

/// A read request carrying `token` as MediaMTX sends it: in the password and the token field,
/// or (HLS, WebRTC) in the query.
fn token_request(token: &str, in_query: bool) -> Request<'_> {
    let mut req = Request::new(Action::Read, "cam", "10.0.0.1", "", "");
    if in_query {
        req.query = Cow::Owned(form_urlencoded_pair("token", token));
    } else {
        req.password = Cow::Borrowed(token);
        req.token = Cow::Borrowed(token);
    }
    req
}

fn form_urlencoded_pair(key: &str, value: &str) -> String {
    let mut out = format!("{key}=");
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Headers: allowed, forbidden and made-up algorithms; known, unknown and malformed key ids.
fn arb_header() -> impl Strategy<Value = Value> {
    let alg = prop_oneof![
        Just(json!("RS256")),
        Just(json!("EdDSA")),
        Just(json!("ES256")),
        Just(json!("PS512")),
        Just(json!("HS256")),
        Just(json!("none")),
        Just(json!("rs256")),
        "[A-Za-z0-9]{0,8}".prop_map(Value::String),
        arb_json(),
    ];
    let kid = prop_oneof![
        Just(None),
        Just(Some(json!("rsa1"))),
        Just(Some(json!("ed1"))),
        Just(Some(json!("unknown"))),
        Just(Some(Value::Null)),
        arb_json().prop_map(Some),
    ];
    (
        prop::option::weighted(0.95, alg),
        kid,
        prop::collection::btree_map("[a-z]{2,5}", arb_json(), 0..3),
    )
        .prop_map(|(alg, kid, extra)| {
            let mut h: Map<String, Value> = extra.into_iter().collect();
            if let Some(alg) = alg {
                h.insert("alg".into(), alg);
            }
            if let Some(kid) = kid {
                h.insert("kid".into(), kid);
            }
            Value::Object(h)
        })
}

/// Permission claims that are never valid: keys and strings that cannot spell `action`, `path`
/// or a JSON array, so the value is malformed or grants nothing.
fn arb_bad_claim() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[A-Z ]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[A-Z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Permission claims that are valid, as MediaMTX writes them.
fn arb_good_claim() -> impl Strategy<Value = (Value, bool)> {
    let perm = (
        prop::sample::select(&["publish", "read", "playback", "api"][..]),
        prop::option::of(prop_oneof![
            Just("cam"),
            Just(""),
            Just("~^ca"),
            Just("other")
        ]),
    );
    (prop::collection::vec(perm, 1..4), any::<bool>()).prop_map(|(perms, as_string)| {
        // Granted for a read of "cam"?
        let grants = perms
            .iter()
            .any(|(a, p)| *a == "read" && matches!(p, None | Some("cam" | "" | "~^ca")));
        let list: Vec<Value> = perms
            .iter()
            .map(|(a, p)| match p {
                Some(p) => json!({"action": a, "path": p}),
                None => json!({ "action": a }),
            })
            .collect();
        let v = Value::Array(list);
        (
            if as_string {
                Value::String(v.to_string())
            } else {
                v
            },
            grants,
        )
    })
}

proptest! {
    #![proptest_config(cases(256))]

    /// `looks_like_jwt` on any string: no panic, and "yes" only for three base64url segments.
    #[test]
    fn jwt_shape_any_string(s in "\\PC{0,64}|[A-Za-z0-9_.=+/-]{0,64}") {
        if looks_like_jwt(&s) {
            let parts: Vec<&str> = s.split('.').collect();
            prop_assert_eq!(parts.len(), 3);
            prop_assert!(s.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)));
            prop_assert!(!parts[0].is_empty() && !parts[1].is_empty());
        }
    }

    /// Three base64url segments look like a JWT exactly when the first decodes to a JSON
    /// object and the second is not empty.
    #[test]
    fn jwt_shape_three_segments(
        header in prop_oneof![arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()), prop::collection::vec(any::<u8>(), 0..24)],
        payload in prop::collection::vec(any::<u8>(), 0..24),
        signature in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let token = format!("{}.{}.{}", b64(&header), b64(&payload), b64(&signature));
        let object = serde_json::from_slice::<Map<String, Value>>(&header).is_ok();
        prop_assert_eq!(looks_like_jwt(&token), object && !payload.is_empty());
    }

    /// A `[jwt]` source that has no keys yet: any token is denied, a JWT-shaped one by the JWT
    /// source ("key set unavailable"), anything else as unmatched credentials.
    #[test]
    fn jwt_without_keys_denies_every_token(
        token in prop_oneof![
            "\\PC{0,48}",
            (arb_header(), prop::collection::vec(any::<u8>(), 0..32), prop::collection::vec(any::<u8>(), 0..32))
                .prop_map(|(h, p, s)| format!("{}.{}.{}", b64(&serde_json::to_vec(&h).unwrap()), b64(&p), b64(&s))),
        ],
        in_query in any::<bool>(),
    ) {
        let req = token_request(&token, in_query);
        let d = jwt_policy_without_keys().decide(&req);
        let want = if looks_like_jwt(&token) {
            DenyReason::Jwt(JwtError::KeysUnavailable)
        } else if req.has_credentials() {
            DenyReason::NoMatch
        } else {
            DenyReason::NoCredentials
        };
        prop_assert_eq!(d, Decision::Deny(want));
    }

    /// With keys loaded, random three-segment tokens (any header, payload and signature) are
    /// always denied by the JWT source: a forbidden algorithm as such, an unknown key id as
    /// such, and never an allow.
    #[test]
    fn jwt_random_tokens_are_denied(
        header in arb_header(),
        payload in prop_oneof![arb_json().prop_map(|v| serde_json::to_vec(&v).unwrap()), prop::collection::vec(any::<u8>(), 1..48)],
        signature in prop::collection::vec(any::<u8>(), 0..300),
        in_query in any::<bool>(),
    ) {
        let token = format!("{}.{}.{}", b64(&serde_json::to_vec(&header).unwrap()), b64(&payload), b64(&signature));
        prop_assume!(looks_like_jwt(&token));
        let d = jwt_policy_with_keys().0.decide(&token_request(&token, in_query));
        let Decision::Deny(DenyReason::Jwt(e)) = d else {
            return Err(TestCaseError::fail(format!("{d:?} for {token}")));
        };
        prop_assert_ne!(e, JwtError::KeysUnavailable);
        let alg = header.get("alg").and_then(Value::as_str);
        let allowed = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"];
        if alg.is_some_and(|a| !allowed.contains(&a)) {
            prop_assert_eq!(e, JwtError::Algorithm);
        }
        if alg.is_some_and(|a| allowed.contains(&a)) && header.get("kid") == Some(&json!("unknown")) {
            prop_assert_eq!(e, JwtError::UnknownKey);
        }
    }
}

proptest! {
    #![proptest_config(cases(128))]

    /// Correctly signed tokens with hostile claims: an allow needs a non-empty `sub`, an
    /// unexpired numeric `exp` and a valid permission claim that grants the request; a token
    /// signed by the wrong key (or re-signed payload) is refused.
    #[test]
    fn jwt_signed_tokens_with_hostile_claims(
        sub in prop_oneof![Just(json!("viewer")), Just(json!("")), arb_json()],
        exp in prop_oneof![
            Just(None),
            (3600u64..100_000).prop_map(|d| Some(json!(idp::now() + d))),
            (3600u64..100_000).prop_map(|d| Some(json!(idp::now() - d))),
            arb_json().prop_map(Some),
        ],
        claim in prop_oneof![
            arb_good_claim().prop_map(|(v, g)| (Some(v), g)),
            arb_bad_claim().prop_map(|v| (Some(v), false)),
            Just((None, false)),
        ],
        use_rsa in any::<bool>(),
    ) {
        let (policy, rsa, ed) = jwt_policy_with_keys();
        let key = if use_rsa { rsa } else { ed };
        let mut claims = Map::new();
        claims.insert("sub".into(), sub.clone());
        if let Some(exp) = &exp {
            claims.insert("exp".into(), exp.clone());
        }
        let (claim, grants) = claim;
        if let Some(c) = claim {
            claims.insert("mediamtx_permissions".into(), c);
        }
        let claims = Value::Object(claims);
        let token = key.sign(&claims);
        let d = policy.decide(&token_request(&token, false));
        let exp_ok = exp
            .as_ref()
            .and_then(Value::as_u64)
            .is_some_and(|e| e > idp::now());
        let sub_ok = sub.as_str().is_some_and(|s| !s.is_empty());
        if exp_ok && sub_ok && grants {
            let user = sub.as_str().unwrap().to_owned();
            // `comparable`: the same claims may have been signed (identically) in an earlier
            // case, and then the answer comes from the cache.
            prop_assert_eq!(
                comparable(d),
                Decision::Allow { user, source: Source::Jwt, rule: None, cached: false, grant: Grant::Jwt { ends_at: None } }
            );
        } else {
            prop_assert!(matches!(d, Decision::Deny(DenyReason::Jwt(_))), "{:?} for {}", d, claims);
        }
        // The same claims under the other key's id, or with another payload, never pass.
        let other = if use_rsa { ed } else { rsa };
        let forged = other.sign_with_header(&json!({"alg": other.alg_name(), "kid": key.kid}), &claims);
        let d = policy.decide(&token_request(&forged, false));
        prop_assert!(matches!(d, Decision::Deny(DenyReason::Jwt(_))), "{:?}", d);
        let mut parts: Vec<&str> = token.split('.').collect();
        let tampered = b64(br#"{"sub":"admin","mediamtx_permissions":[{"action":"read"}]}"#);
        parts[1] = &tampered;
        let d = policy.decide(&token_request(&parts.join("."), true));
        prop_assert_eq!(d, Decision::Deny(DenyReason::Jwt(JwtError::Signature)));
    }
}

// ---------------------------------------------------------------------------------------------
// Policy::decide
// ---------------------------------------------------------------------------------------------

/// MediaMTX's IP reading, written independently: the zone dropped, IPv4-mapped as IPv4.
fn model_ip(raw: &str) -> Option<IpAddr> {
    let addr = raw.split('%').next().unwrap_or("");
    match addr.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// Which paths a model permission grants.
type PathRule = fn(&str) -> bool;

/// One `[[users]]` entry of a model config.
struct ModelUser {
    /// `None` for `any`.
    name: Option<&'static str>,
    pass: Option<&'static str>,
    ips: Vec<IpNet>,
    perms: Vec<(Action, PathRule)>,
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter()
        .map(|s| {
            s.parse::<IpNet>()
                .unwrap_or_else(|_| IpNet::from(s.parse::<IpAddr>().unwrap()))
        })
        .collect()
}

/// MediaMTX's rule: the first user whose IPs, permissions and credentials match allows, with
/// the name the client gave.
fn model_decide(users: &[ModelUser], req: &Value) -> Decision {
    let field = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("");
    let Ok(action) = field("action").parse::<Action>() else {
        return Decision::Deny(DenyReason::UnknownAction);
    };
    let (user, pass, path) = (field("user"), field("password"), field("path"));
    let ip = model_ip(field("ip"));
    for u in users {
        let ip_ok = u.ips.is_empty() || ip.is_some_and(|ip| u.ips.iter().any(|n| n.contains(&ip)));
        let perm_ok = u
            .perms
            .iter()
            .any(|(a, p)| *a == action && (!action.has_path() || p(path)));
        let cred_ok = match u.name {
            None => true,
            Some(name) => name == user && u.pass.is_none_or(|p| p == pass),
        };
        if ip_ok && perm_ok && cred_ok {
            return Decision::Allow {
                user: user.to_owned(),
                source: Source::Users,
                rule: None,
                cached: false,
                grant: Grant::User,
            };
        }
    }
    Decision::Deny(if user.is_empty() && pass.is_empty() {
        DenyReason::NoCredentials
    } else {
        DenyReason::NoMatch
    })
}

/// The decision without what the model does not know (which rule, cached or not, when a
/// token's access ends).
fn comparable(d: Decision) -> Decision {
    match d {
        Decision::Allow {
            user,
            source,
            grant,
            ..
        } => Decision::Allow {
            user,
            source,
            rule: None,
            cached: false,
            grant: match grant {
                Grant::Jwt { .. } => Grant::Jwt { ends_at: None },
                other => other,
            },
        },
        deny => deny,
    }
}

fn any_path(_: &str) -> bool {
    true
}

fn shipped_model() -> Vec<ModelUser> {
    vec![
        ModelUser {
            name: None,
            pass: None,
            ips: vec![],
            perms: vec![
                (Action::Publish, any_path),
                (Action::Read, any_path),
                (Action::Playback, any_path),
            ],
        },
        ModelUser {
            name: None,
            pass: None,
            ips: nets(&["127.0.0.1", "::1"]),
            perms: vec![
                (Action::Api, any_path),
                (Action::Metrics, any_path),
                (Action::Pprof, any_path),
            ],
        },
    ]
}

/// Users with plain and sha256 credentials, IP lists (v4, v6, link-local) and regex paths,
/// including one that backtracks catastrophically in a backtracking engine.
fn rich_config() -> String {
    format!(
        r#"
[[users]]
user = "alice"
pass = "{alice_pass}"
ips = ["10.0.0.0/8"]
permissions = [{{ action = "publish", path = "~^alice/" }}, {{ action = "read" }}]

[[users]]
user = "{bob}"
pass = "builder"
permissions = [{{ action = "read", path = "cam" }}, {{ action = "playback", path = "~^rec/[0-9]+$" }}]

[[users]]
user = "carol"
ips = ["192.168.0.0/16", "::1"]
permissions = [{{ action = "api" }}, {{ action = "metrics", path = "ignored" }}]

[[users]]
user = "any"
ips = ["fe80::/10"]
permissions = [{{ action = "read", path = "~(a+)+$" }}]

[[users]]
user = "alice"
pass = "second"
permissions = [{{ action = "playback" }}, {{ action = "pprof" }}]

[[users]]
user = "any"
permissions = [{{ action = "read", path = "public" }}]
"#,
        alice_pass = hash_sha256("wonderland"),
        bob = hash_sha256("bob"),
    )
}

fn rich_model() -> Vec<ModelUser> {
    vec![
        ModelUser {
            name: Some("alice"),
            pass: Some("wonderland"),
            ips: nets(&["10.0.0.0/8"]),
            perms: vec![
                (Action::Publish, |p| p.starts_with("alice/")),
                (Action::Read, any_path),
            ],
        },
        ModelUser {
            name: Some("bob"),
            pass: Some("builder"),
            ips: vec![],
            perms: vec![
                (Action::Read, |p| p == "cam"),
                (Action::Playback, |p| {
                    p.strip_prefix("rec/")
                        .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                }),
            ],
        },
        ModelUser {
            name: Some("carol"),
            pass: None,
            ips: nets(&["192.168.0.0/16", "::1"]),
            perms: vec![(Action::Api, any_path), (Action::Metrics, any_path)],
        },
        ModelUser {
            name: None,
            pass: None,
            ips: nets(&["fe80::/10"]),
            perms: vec![(Action::Read, |p| p.ends_with('a'))],
        },
        ModelUser {
            name: Some("alice"),
            pass: Some("second"),
            ips: vec![],
            perms: vec![(Action::Playback, any_path), (Action::Pprof, any_path)],
        },
        ModelUser {
            name: None,
            pass: None,
            ips: vec![],
            perms: vec![(Action::Read, |p| p == "public")],
        },
    ]
}

fn arb_ip() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(
            &[
                "",
                "10.1.2.3",
                "10.0.0.1",
                "::ffff:10.0.0.1",
                "::ffff:a00:1",
                "::10.0.0.1",
                "11.0.0.1",
                "192.168.7.7",
                "::ffff:192.168.7.7",
                "::1",
                "127.0.0.1",
                "fe80::1%eth0",
                "fe80::1",
                "fe80::1%",
                "%eth0",
                "febf::1",
                "fec0::1",
                "10.0.0.1%eth0",
                "[::1]",
                "::1:80",
                "010.0.0.1",
                "10.0.0.256",
                "garbage",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<[u8; 4]>().prop_map(|b| std::net::Ipv4Addr::from(b).to_string()),
        any::<[u8; 4]>().prop_map(|b| format!("::ffff:{}", std::net::Ipv4Addr::from(b))),
        any::<u128>().prop_map(|b| format!("{}%{}", std::net::Ipv6Addr::from(b), b % 7)),
        "\\PC{0,16}",
    ]
}

fn arb_action_name() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.95,
        prop_oneof![
            4 => prop::sample::select(&["publish", "read", "playback", "api", "metrics", "pprof"][..]).prop_map(str::to_owned),
            1 => prop::sample::select(&["", "READ", "Read", "read ", "write", "delete", "publish\0"][..]).prop_map(str::to_owned),
            1 => "\\PC{0,10}",
        ],
    )
}

fn arb_decide_request() -> impl Strategy<Value = Value> {
    let user = prop_oneof![
        prop::sample::select(
            &["", "alice", "bob", "carol", "mallory", "any", "alice\0", "Alice"][..]
        )
        .prop_map(str::to_owned),
        "\\PC{0,12}",
    ];
    let pass = prop_oneof![
        prop::sample::select(&["", "wonderland", "builder", "second", "wonderland ", "x"][..])
            .prop_map(str::to_owned),
        "\\PC{0,12}",
    ];
    let path = prop_oneof![
        prop::sample::select(
            &[
                "", "cam", "cam/", "alice/", "alice/x", "xalice/", "rec/12", "rec/", "rec/1a",
                "public", "public\0", "aaaa", "aaab", "ignored"
            ][..]
        )
        .prop_map(str::to_owned),
        (1..3000usize, any::<bool>()).prop_map(|(n, b)| format!(
            "{}{}",
            "a".repeat(n),
            if b { "b" } else { "" }
        )),
        "\\PC{0,20}",
    ];
    (
        user,
        pass,
        arb_ip(),
        arb_action_name(),
        path,
        prop::option::of(arb_json()),
    )
        .prop_map(|(user, pass, ip, action, path, extra)| {
            let mut obj = json!({
                "user": user, "password": pass, "token": pass, "ip": ip, "path": path,
                "protocol": "rtsp", "id": null, "query": "",
            });
            if let Some(a) = action {
                obj["action"] = json!(a);
            }
            if let Some(x) = extra {
                obj["userAgent"] = x;
            }
            obj
        })
}

fn shipped_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::new(Config::parse(SHIPPED, "f.toml").unwrap()))
}

fn rich_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::new(Config::parse(&rich_config(), "f.toml").unwrap()))
}

proptest! {
    #![proptest_config(cases(256))]

    /// The shipped config decides every request as MediaMTX's default users do.
    #[test]
    fn decide_shipped_config(req in arb_decide_request()) {
        let body = serde_json::to_vec(&req).unwrap();
        let parsed = Request::parse(&body).unwrap();
        let d = shipped_policy().decide(&parsed);
        prop_assert_eq!(comparable(d), model_decide(&shipped_model(), &req), "{}", req);
    }

    /// Users with credentials, IP lists and regex paths decide every request as the model of
    /// MediaMTX's rules does; an unknown action is always denied.
    #[test]
    fn decide_users_ips_regexes(req in arb_decide_request()) {
        let body = serde_json::to_vec(&req).unwrap();
        let parsed = Request::parse(&body).unwrap();
        let d = rich_policy().decide(&parsed);
        if parsed.action.is_none() {
            prop_assert_eq!(&d, &Decision::Deny(DenyReason::UnknownAction));
        }
        prop_assert_eq!(comparable(d), model_decide(&rich_model(), &req), "{}", req);
    }
}

#[test]
fn models_agree_on_known_cases() {
    // The models themselves, on cases whose answer is known, so a wrong model cannot make the
    // properties above vacuous.
    let req = |user: &str, pass: &str, ip: &str, action: &str, path: &str| json!({"user": user, "password": pass, "ip": ip, "action": action, "path": path});
    let cases = [
        (
            req("alice", "wonderland", "::ffff:10.0.0.1", "read", "x"),
            true,
        ),
        (req("alice", "wonderland", "11.0.0.1", "read", "x"), false),
        (req("alice", "second", "11.0.0.1", "playback", "x"), true),
        (req("bob", "builder", "1.2.3.4", "playback", "rec/42"), true),
        (
            req("bob", "builder", "1.2.3.4", "playback", "rec/4a"),
            false,
        ),
        (req("", "", "fe80::1%eth0", "read", &"a".repeat(5000)), true),
        (
            req(
                "",
                "",
                "fe80::1%eth0",
                "read",
                &format!("{}b", "a".repeat(5000)),
            ),
            false,
        ),
        (req("carol", "whatever", "::1", "metrics", "anything"), true),
        (req("", "", "1.2.3.4", "read", "public"), true),
        (req("", "", "1.2.3.4", "READ", "public"), false),
    ];
    for (r, allow) in cases {
        let body = serde_json::to_vec(&r).unwrap();
        let d = rich_policy().decide(&Request::parse(&body).unwrap());
        assert_eq!(d.is_allow(), allow, "{r}: {d:?}");
        assert_eq!(
            model_decide(&rich_model(), &r).is_allow(),
            allow,
            "model: {r}"
        );
    }
}
