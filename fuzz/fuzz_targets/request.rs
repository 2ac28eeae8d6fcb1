//! The request parser on arbitrary bytes, then a decision on the shipped config for whatever
//! parses. Checks: no panic; an error's text is one of the parser's fixed messages (it never
//! echoes the input); a parsed request came from a JSON object and holds its fields; a decision never panics and an
//! unknown action is denied.

#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mtx_auth::config::Config;
use mtx_auth::policy::{Decision, DenyReason, Policy};
use mtx_auth::request::Request;
use serde::de::IgnoredAny;

const SHIPPED: &str = include_str!("../../config/mtx-auth.toml");

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| Policy::new(Config::parse(SHIPPED, "mtx-auth.toml").unwrap()))
}

/// The error text with its numbers removed must be one of the parser's own messages.
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

fuzz_target!(|data: &[u8]| {
    match Request::parse(data) {
        Err(e) => {
            let text = e.to_string();
            assert!(is_fixed_message(&text), "unexpected error text: {text:?}");
        }
        Ok(req) => {
            // serde_json skips the values of unknown fields without fully checking them (bad
            // UTF-8 or `\u` escapes in strings, numbers out of range): such bodies parse. What
            // parses must still be an object with well-formed keys, and when it is valid JSON
            // its known fields are the request's.
            assert!(
                serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(data).is_ok(),
                "a parsed request is a JSON object"
            );
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
                let field = |k: &str| value.get(k).and_then(|v| v.as_str()).unwrap_or("");
                assert_eq!(req.user, field("user"));
                assert_eq!(req.password, field("password"));
                assert_eq!(req.token, field("token"));
                assert_eq!(req.ip_raw, field("ip"));
                assert_eq!(req.action_raw, field("action"));
                assert_eq!(req.path, field("path"));
                assert_eq!(req.query, field("query"));
            }
            let decision = policy().decide(&req);
            if req.action.is_none() {
                assert_eq!(decision, Decision::Deny(DenyReason::UnknownAction));
            }
        }
    }
});
