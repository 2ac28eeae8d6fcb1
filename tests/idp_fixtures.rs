//! Self-tests of the identity-provider fixtures (tests/support/idp.rs, tests/support/oidc.rs):
//! the keys sign what their JWKs verify, the fake IdP serves what each mode says, and a real
//! OpenID provider issues JWT access tokens that verify against its own JWKS.

#[path = "support/idp.rs"]
mod idp;
#[path = "support/oidc.rs"]
mod oidc;

use std::time::{Duration, Instant};

use base64::Engine as _;
use idp::{
    authentik_claims, authentik_issuer, hs256_token, keycloak_claims, merged, token_claims,
    token_header, unsigned_token, FakeIdp, JwksMode, KeyKind, TestKey,
};
use jsonwebtoken::{decode, jwk::Jwk, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};

const ISSUER: &str = "https://sso.example.com/realms/mediamtx";

fn permissions() -> Value {
    json!([
        {"action": "read", "path": "cam"},
        {"action": "publish", "path": "~^live/"},
    ])
}

/// Verifies `token` with jsonwebtoken against a public JWK, as a relying party would.
fn verify(
    token: &str,
    jwk: &Value,
    alg: Algorithm,
    aud: &str,
    iss: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).expect("a JWK jsonwebtoken understands");
    let key = DecodingKey::from_jwk(&jwk)?;
    let mut validation = Validation::new(alg);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[iss]);
    decode::<Value>(token, &key, &validation).map(|data| data.claims)
}

#[test]
fn every_key_kind_signs_tokens_that_its_jwk_verifies() {
    for kind in KeyKind::ALL {
        let kid = format!("{kind:?}-1");
        let key = TestKey::generate(kind, &kid);
        let jwk = key.jwk();

        assert_eq!(jwk["kid"], kid);
        assert_eq!(jwk["alg"], kind.alg_name());
        assert_eq!(jwk["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(jwk.get(private).is_none(), "{kind:?} JWK leaks {private}");
        }
        let b64_len = |member: &str| jwk[member].as_str().unwrap().len();
        match kind {
            KeyKind::Rsa => {
                assert_eq!(jwk["kty"], "RSA");
                assert_eq!(jwk["e"], "AQAB");
                assert_eq!(b64_len("n"), 342, "2048-bit modulus");
            }
            KeyKind::Ec => {
                assert_eq!(jwk["kty"], "EC");
                assert_eq!(jwk["crv"], "P-256");
                assert_eq!((b64_len("x"), b64_len("y")), (43, 43));
            }
            KeyKind::Ed => {
                assert_eq!(jwk["kty"], "OKP");
                assert_eq!(jwk["crv"], "Ed25519");
                assert_eq!(b64_len("x"), 43);
                assert!(jwk.get("y").is_none());
            }
        }
        for member in ["n", "e", "x", "y"] {
            if let Some(v) = jwk.get(member) {
                let v = v.as_str().unwrap();
                assert!(
                    !v.contains(['=', '+', '/']),
                    "{member} is base64url, unpadded"
                );
            }
        }

        let claims = keycloak_claims(
            ISSUER,
            "alice",
            json!({"mediamtx_permissions": permissions()}),
        );
        let token = key.sign(&claims);
        assert_eq!(
            token_header(&token),
            json!({"alg": kind.alg_name(), "typ": "JWT", "kid": kid})
        );
        assert_eq!(token_claims(&token), claims);
        let verified = verify(&token, &jwk, kind.algorithm(), "account", ISSUER)
            .unwrap_or_else(|e| panic!("{kind:?} token does not verify: {e}"));
        assert_eq!(verified, claims);

        // A tampered payload, or another key of the same kind, does not verify.
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut evil = claims.clone();
        evil["sub"] = json!("mallory");
        parts[1] = idp::b64url(&serde_json::to_vec(&evil).unwrap());
        assert!(verify(&parts.join("."), &jwk, kind.algorithm(), "account", ISSUER).is_err());
        if kind != KeyKind::Rsa {
            // (one RSA generation per test is enough; the RSA case is covered below)
            let other = TestKey::generate(kind, &kid);
            assert!(verify(&token, &other.jwk(), kind.algorithm(), "account", ISSUER).is_err());
        }

        // An arbitrary header is signed as given, with the key's own algorithm.
        let header = json!({"alg": kind.alg_name(), "typ": "at+jwt", "kid": kid, "x-test": 1});
        let token = key.sign_with_header(&header, &claims);
        assert_eq!(token_header(&token), header);
        verify(&token, &jwk, kind.algorithm(), "account", ISSUER).unwrap();
        // ... even one that lies about the algorithm.
        let token = key.sign_with_header(&json!({"alg": "HS256", "kid": kid}), &claims);
        assert_eq!(token_header(&token)["alg"], "HS256");
    }
}

#[test]
fn hs256_forgery_with_the_rsa_public_key_and_unsigned_tokens() {
    let key = TestKey::generate(KeyKind::Rsa, "rsa-1");
    let other = TestKey::generate(KeyKind::Rsa, "rsa-1");
    let claims = keycloak_claims(ISSUER, "mallory", json!({}));
    assert!(verify(
        &key.sign(&claims),
        &other.jwk(),
        Algorithm::RS256,
        "account",
        ISSUER
    )
    .is_err());

    let pem = key.rsa_public_pem();
    assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    assert_eq!(der, key.rsa_public_der());
    assert!(key.rsa_public_pkcs1_der().len() < der.len());

    // The forged token is a real HS256 token under the PEM as secret...
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"});
    let forged = hs256_token(pem.as_bytes(), &header, &claims);
    assert_eq!(token_header(&forged), header);
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["account"]);
    let accepted = decode::<Value>(
        &forged,
        &DecodingKey::from_secret(pem.as_bytes()),
        &validation,
    )
    .expect("HS256 under the PEM verifies");
    assert_eq!(accepted.claims, claims);
    // ... which a verifier keyed on the JWK's own algorithm refuses.
    assert!(verify(&forged, &key.jwk(), Algorithm::RS256, "account", ISSUER).is_err());
    let jwk: Jwk = serde_json::from_value(key.jwk()).unwrap();
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&["account"]);
    assert!(decode::<Value>(&forged, &DecodingKey::from_jwk(&jwk).unwrap(), &validation).is_err());

    let unsigned = unsigned_token(&json!({"alg": "none", "typ": "JWT"}), &claims);
    assert!(unsigned.ends_with('.'));
    assert_eq!(unsigned.split('.').count(), 3);
    assert_eq!(token_header(&unsigned)["alg"], "none");
    assert_eq!(token_claims(&unsigned), claims);
    assert!(verify(&unsigned, &key.jwk(), Algorithm::RS256, "account", ISSUER).is_err());
}

#[test]
#[should_panic(expected = "not an RSA key")]
fn rsa_public_pem_of_an_ec_key_panics() {
    TestKey::generate(KeyKind::Ec, "ec").rsa_public_pem();
}

#[test]
fn claim_builders() {
    let before = idp::now();
    let kc = keycloak_claims(
        ISSUER,
        "alice",
        json!({
            "mediamtx_permissions": permissions(),
            "resource_access": {"mediamtx": {"roles": ["publisher"]}},
            "exp": null,
        }),
    );
    assert_eq!(kc["iss"], ISSUER);
    assert_eq!(kc["sub"], "alice");
    assert_eq!(kc["preferred_username"], "alice");
    assert_eq!(kc["aud"], "account");
    assert_eq!(kc["azp"], "mediamtx");
    assert_eq!(kc["typ"], "Bearer");
    assert_eq!(kc["mediamtx_permissions"], permissions());
    assert!(kc.get("exp").is_none(), "null removes a claim");
    assert_eq!(
        kc["resource_access"]["mediamtx"]["roles"],
        json!(["publisher"])
    );
    assert_eq!(
        kc["resource_access"]["account"]["roles"][0], "manage-account",
        "objects merge"
    );
    assert!(kc["realm_access"]["roles"].as_array().unwrap().len() == 3);
    assert!(kc["iat"].as_u64().unwrap() >= before);
    assert_eq!(kc["jti"].as_str().unwrap().len(), 36);
    let kc = keycloak_claims(ISSUER, "alice", json!({}));
    assert_eq!(
        kc["exp"].as_u64().unwrap(),
        kc["iat"].as_u64().unwrap() + 300
    );
    assert!(kc.get("mediamtx_permissions").is_none());
    assert_ne!(
        keycloak_claims(ISSUER, "a", json!({}))["jti"],
        kc["jti"],
        "fresh jti"
    );

    let issuer = authentik_issuer("https://auth.example.com", "mediamtx");
    assert_eq!(issuer, "https://auth.example.com/application/o/mediamtx/");
    let ak = authentik_claims(
        &issuer,
        "bob",
        &["streamers", "viewers"],
        json!({"aud": "x"}),
    );
    assert_eq!(ak["iss"], issuer);
    assert_eq!(ak["sub"], "bob");
    assert_eq!(ak["aud"], "x");
    assert_eq!(ak["azp"], idp::AUTHENTIK_CLIENT_ID);
    assert_eq!(ak["groups"], json!(["streamers", "viewers"]));
    assert_eq!(ak["email"], "bob@example.com");
    assert_eq!(ak["preferred_username"], "bob");
    assert_eq!(
        ak["exp"].as_u64().unwrap(),
        ak["iat"].as_u64().unwrap() + 300
    );

    assert_eq!(
        merged(
            json!({"a": [1, 2], "b": {"c": 1}}),
            json!({"a": [3], "b": {"d": 2}})
        ),
        json!({"a": [3], "b": {"c": 1, "d": 2}})
    );
}

async fn get(url: &str) -> (u16, String, String) {
    let resp = reqwest::get(url).await.expect("the fake IdP answers");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

#[actix_web::test]
async fn fake_idp_serves_jwks_and_discovery() {
    let rsa = TestKey::generate(KeyKind::Rsa, "rsa");
    let ec = TestKey::generate(KeyKind::Ec, "ec");
    let idp = FakeIdp::start(vec![rsa.jwk(), ec.jwk()]);
    let base = idp.base();
    assert!(base.starts_with("http://127.0.0.1:"));
    assert_eq!(idp.issuer(), format!("{base}/realms/mediamtx"));
    assert_eq!(idp.jwks_url(), format!("{base}/jwks"));
    assert_eq!(
        idp.discovery_url(),
        format!("{base}/realms/mediamtx/.well-known/openid-configuration")
    );
    assert_eq!((idp.jwks_hits(), idp.discovery_hits()), (0, 0));

    let (status, ct, body) = get(&idp.jwks_url()).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let jwks: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(jwks, json!({"keys": [rsa.jwk(), ec.jwk()]}));
    assert_eq!(idp.jwks_hits(), 1);

    for url in [idp.discovery_url(), idp.root_discovery_url()] {
        let (status, _, body) = get(&url).await;
        assert_eq!(status, 200);
        let doc: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(doc["issuer"], idp.issuer());
        assert_eq!(doc["jwks_uri"], idp.jwks_url());
        assert_eq!(doc["token_endpoint"], format!("{base}/token"));
        assert_eq!(doc, idp.discovery_document());
    }
    assert_eq!((idp.jwks_hits(), idp.discovery_hits()), (1, 2));
    assert_eq!(get(&format!("{base}/nope")).await.0, 404);

    // Rotation, issuer, overridden discovery, extra headers.
    let ed = TestKey::generate(KeyKind::Ed, "ed");
    idp.set_keys(vec![ed.jwk()]);
    idp.add_key(ec.jwk());
    let jwks: Value = serde_json::from_str(&get(&idp.jwks_url()).await.2).unwrap();
    assert_eq!(jwks["keys"], json!([ed.jwk(), ec.jwk()]));
    assert_eq!(idp.keys(), vec![ed.jwk(), ec.jwk()]);
    idp.set_issuer("https://elsewhere.example");
    assert_eq!(idp.discovery_url(), idp.root_discovery_url());
    let doc: Value = serde_json::from_str(&get(&idp.discovery_url()).await.2).unwrap();
    assert_eq!(doc["issuer"], "https://elsewhere.example");
    idp.set_discovery(Some(json!({"issuer": "x"})));
    assert_eq!(get(&idp.discovery_url()).await.2, r#"{"issuer":"x"}"#);
    idp.set_jwks_headers(&[("cache-control", "max-age=60")]);
    let resp = reqwest::get(idp.jwks_url()).await.unwrap();
    assert_eq!(resp.headers()["cache-control"], "max-age=60");
    assert_eq!((idp.jwks_hits(), idp.discovery_hits()), (3, 4));
    idp.reset_hits();
    assert_eq!((idp.jwks_hits(), idp.discovery_hits()), (0, 0));
}

#[actix_web::test]
async fn fake_idp_modes() {
    let key = TestKey::generate(KeyKind::Ec, "ec");
    let idp = FakeIdp::start(vec![key.jwk()]);
    let url = idp.jwks_url();

    idp.set_mode(JwksMode::Down);
    assert_eq!(get(&url).await.0, 500);

    for code in [404, 401, 503, 302, 204] {
        idp.set_mode(JwksMode::Status(code));
        let resp = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(&url)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), code);
    }

    idp.set_mode(JwksMode::Html);
    let (status, ct, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/html"), "{ct}");
    assert!(body.starts_with("<!DOCTYPE html>"));
    assert!(serde_json::from_str::<Value>(&body).is_err());

    idp.set_mode(JwksMode::Garbage);
    let (status, ct, body) = get(&url).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"keys": 5})
    );

    idp.set_mode(JwksMode::Huge);
    let (status, _, body) = get(&url).await;
    assert_eq!(status, 200);
    assert!(body.len() > 2 * 1024 * 1024, "{}", body.len());
    let doc: Value = serde_json::from_str(&body).expect("huge but valid JSON");
    assert_eq!(doc["keys"], json!([key.jwk()]));

    idp.set_mode(JwksMode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let (status, _, body) = get(&url).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"keys": [key.jwk()]})
    );
    // A client with a shorter timeout gives up.
    let timeout = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap_err();
    assert!(timeout.is_timeout(), "{timeout}");

    idp.set_mode(JwksMode::Raw {
        status: 200,
        content_type: "application/jwk-set+json".into(),
        body: "{\"keys\":[]}".into(),
    });
    let (status, ct, body) = get(&url).await;
    assert_eq!(
        (status, ct.as_str(), body.as_str()),
        (200, "application/jwk-set+json", "{\"keys\":[]}")
    );

    idp.set_mode(JwksMode::Normal);
    assert_eq!(get(&url).await.0, 200);
    assert_eq!(idp.jwks_hits(), 13);

    idp.set_discovery_mode(JwksMode::Status(503));
    assert_eq!(get(&idp.discovery_url()).await.0, 503);
    assert_eq!(get(&url).await.0, 200, "the JWKS mode is separate");

    assert!(idp.wait_for_jwks_hits(14, Duration::from_secs(1)).await);
    assert!(!idp.wait_for_jwks_hits(15, Duration::from_millis(50)).await);
}

#[actix_web::test]
async fn unreachable_idps() {
    let err = reqwest::get(format!("{}/jwks", FakeIdp::unused_url()))
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");

    let idp = FakeIdp::start(vec![]);
    assert_eq!(get(&idp.jwks_url()).await.0, 200);
    idp.stop().await;
    // A fresh client: a pooled connection would only show the stop on its next use.
    let err = reqwest::Client::new()
        .get(idp.jwks_url())
        .send()
        .await
        .unwrap_err();
    assert!(err.is_connect(), "{err}");
    idp.restart();
    assert_eq!(get(&idp.jwks_url()).await.0, 200);
    assert_eq!(idp.jwks_hits(), 2);
}

#[actix_web::test]
async fn real_openid_provider_issues_jwt_access_tokens() {
    let started = Instant::now();
    let provider = oidc::OidcProvider::start();
    eprintln!("oidc-provider up in {:?}", started.elapsed());
    assert!(provider.issuer.starts_with("http://127.0.0.1:"));

    let discovery = provider.discovery().await;
    assert_eq!(discovery["issuer"], provider.issuer);
    let jwks_uri = discovery["jwks_uri"].as_str().unwrap();
    assert_eq!(jwks_uri, provider.jwks_url());
    assert_eq!(discovery["token_endpoint"], provider.token_url());
    let jwks: Value = reqwest::get(jwks_uri).await.unwrap().json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2, "{jwks}");

    let token = provider.client_credentials_token().await;
    assert_eq!(token.split('.').count(), 3, "a JWS: {token}");
    let header = token_header(&token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt", "RFC 9068 access token");
    let claims = token_claims(&token);
    assert_eq!(claims["mediamtx_permissions"], permissions());
    assert_eq!(claims["iss"], provider.issuer);
    assert_eq!(claims["aud"], oidc::RESOURCE);
    assert_eq!(claims["client_id"], oidc::CLIENT_ID);
    assert_eq!(claims["sub"], oidc::CLIENT_ID);

    let jwk = keys
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .unwrap_or_else(|| panic!("kid {} not in {jwks}", header["kid"]));
    assert_eq!(jwk["kty"], "RSA");
    let verified = verify(
        &token,
        jwk,
        Algorithm::RS256,
        oidc::RESOURCE,
        &provider.issuer,
    )
    .expect("the provider's token verifies against its JWKS");
    assert_eq!(verified, claims);

    // The same token request without the resource (it is the default) and with basic auth
    // would work too; a wrong secret does not.
    let refused = provider
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", oidc::CLIENT_ID),
            ("client_secret", "wrong"),
        ])
        .await;
    assert_eq!(refused["error"], "invalid_client");
}

#[actix_web::test]
async fn real_openid_provider_es256_and_custom_permissions() {
    let custom = json!([{"action": "playback", "path": "~^rec/"}]);
    let provider = oidc::OidcProvider::start_with(oidc::OidcOptions {
        permissions: Some(custom.clone()),
        es256: true,
    });
    let token = provider.client_credentials_token().await;
    let header = token_header(&token);
    assert_eq!(header["alg"], "ES256");
    assert_eq!(token_claims(&token)["mediamtx_permissions"], custom);
    let jwks: Value = reqwest::get(provider.jwks_url())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("kid in the JWKS");
    assert_eq!(jwk["crv"], "P-256");
    verify(
        &token,
        jwk,
        Algorithm::ES256,
        oidc::RESOURCE,
        &provider.issuer,
    )
    .expect("verifies");
}
