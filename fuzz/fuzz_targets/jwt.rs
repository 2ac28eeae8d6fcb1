//! The JWT path: `looks_like_jwt`, then `Policy::decide` with a `[jwt]` source whose key set (an
//! RSA and an Ed25519 public key) is installed, so tokens reach the header parse and the
//! signature check. Nobody holds the private keys, so no input may ever be allowed. Checks: no
//! panic; never an allow; a JWT-shaped token is denied by the JWT source, anything else is left
//! to the other sources (none here: a deny).

#![no_main]

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use mtx_auth::config::Config;
use mtx_auth::permission::Action;
use mtx_auth::policy::{Decision, DenyReason, Policy};
use mtx_auth::request::Request;
use mtx_auth::source::jwks::{parse_jwks, KeySet};
use mtx_auth::source::jwt::looks_like_jwt;

const RSA_N: &str = "-DY1fH3e-rIAm4JYLHJOdOJ5cdxxIctpjMapsQ954FzyeROMMpkXQVL--W11YXAupLDcDHXjrr9Xe7t7pshqhbYjbRrFigH9wE9CSqadwmeZ0mVbGwgH1tt9G4vVOXXzEjFerE4woBag2Y5O07kbsO0tLxGdPup0HBDBUuvAnNpnU2R4ZTjU26_8n7eFDwo73rk8533RzKAgmAfZ76ckEu609IJrAmv_KE0r8O3BoYHoTSPaJmp8W_w4Evz_BdMO3LHnDsFNldTndUFnCAaM_VgMn13NwXQvs5-DxgihrsHtVrUigI4BGpc46mIG3dfhmTjQULaHVEsN8LTItXNsgw";
const ED_X: &str = "laXhY94exHR6o39mSLSPC7Vu8oXAEBtzHjlTD1GJ8X8";

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        // Port 1 on loopback: nothing listens, and nothing fetches (no server runs here).
        let config = "[jwt]\njwks_url = \"http://127.0.0.1:1/certs\"\n\
                      [[jwt.roles]]\nclaim = \"groups\"\nvalue = \"viewers\"\n\
                      permissions = [{ action = \"read\" }]\n";
        let policy = Policy::new(Config::parse(config, "f.toml").unwrap());
        let jwks = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "rsa1", "alg": "RS256", "use": "sig", "n": RSA_N, "e": "AQAB"},
            {"kty": "OKP", "kid": "ed1", "crv": "Ed25519", "x": ED_X},
        ]});
        policy.jwt().unwrap().keys.install(KeySet {
            keys: parse_jwks(&jwks).unwrap(),
            discovered_issuer: None,
            token_endpoint: None,
            fetched_at: Instant::now(),
        });
        policy
    })
}

/// `data` cut in three, each base64url-encoded: a token shaped like a JWT. A header that is not
/// a JSON object becomes one naming a real key, so the signature check runs.
fn shaped(data: &[u8]) -> String {
    let a = data.len() / 3;
    let (header, rest) = data.split_at(a);
    let (payload, signature) = rest.split_at(rest.len() / 2);
    let header = match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(header)
    {
        Ok(_) => header.to_vec(),
        Err(_) => {
            let (alg, kid) = if header.first().is_some_and(|b| b & 1 == 1) {
                ("EdDSA", "ed1")
            } else {
                ("RS256", "rsa1")
            };
            serde_json::to_vec(&serde_json::json!({"alg": alg, "kid": kid})).unwrap()
        }
    };
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let token = match mode % 3 {
        0 | 1 => String::from_utf8_lossy(data).into_owned(),
        _ => shaped(data),
    };
    let jwt_shaped = looks_like_jwt(&token);
    let mut req = Request::new(Action::Read, "cam", "10.0.0.1", "", "");
    if mode % 3 == 1 {
        // HLS and WebRTC: the token in the query, as MediaMTX forwards it.
        let query: String = form_urlencoded_pair("token", &token);
        req.query = Cow::Owned(query);
    } else {
        req.password = Cow::Borrowed(&token);
        req.token = Cow::Borrowed(&token);
    }
    let decision = policy().decide(&req);
    assert!(!decision.is_allow(), "allowed a token nobody could sign");
    if jwt_shaped {
        assert!(
            matches!(decision, Decision::Deny(DenyReason::Jwt(_))),
            "{decision:?}"
        );
    }
});

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
