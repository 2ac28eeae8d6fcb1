//! Self-tests of the identity-provider fixtures (tests/support/idp.rs, tests/support/oidc.rs):
//! the keys sign what their JWKs verify, the fake IdP serves what each mode says and answers the
//! password grant as Keycloak does, and a real OpenID provider issues JWT access tokens that
//! verify against its own JWKS.

#[path = "support/idp.rs"]
mod idp;
#[path = "support/oidc.rs"]
mod oidc;

use std::time::{Duration, Instant};

use base64::Engine as _;
use idp::{
    authentik_claims, authentik_issuer, basic_authorization, hs256_token, keycloak_claims, merged,
    token_claims, token_header, unsigned_token, FakeIdp, JwksMode, KeyKind, TestKey, TokenMode,
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

// ---------------------------------------------------------------------------------------------
// The fake IdP's token endpoint (password grant)
// ---------------------------------------------------------------------------------------------

const CLIENT: &str = "mediamtx";
const SECRET: &str = "s3cret";

/// A fake IdP signing with a fresh key of `kind`, with client `mediamtx`/`s3cret` and user
/// alice/wonderland (with permissions and realm roles), bob/builder (no extra claims).
fn password_idp(kind: KeyKind) -> (FakeIdp, TestKey) {
    let key = TestKey::generate(kind, "signer");
    let idp = FakeIdp::start_with_signer(key.clone());
    idp.set_password_client(CLIENT, SECRET);
    idp.add_password_user(
        "alice",
        "wonderland",
        json!({
            "mediamtx_permissions": permissions(),
            "realm_access": {"roles": ["streamer"]},
        }),
    );
    idp.add_password_user("bob", "builder", json!({}));
    (idp, key)
}

/// The status, headers and JSON body (`Value::Null` when empty or not JSON) of a token request.
struct TokenAnswer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn post_form(
    idp: &FakeIdp,
    form: &[(&str, &str)],
    authorization: Option<&str>,
) -> TokenAnswer {
    let mut request = reqwest::Client::new().post(idp.token_url()).form(form);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let resp = request.send().await.expect("the fake IdP answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    TokenAnswer {
        status,
        headers,
        body,
    }
}

/// A password grant for `username`/`password` with the client secret in the form.
async fn password_login(idp: &FakeIdp, username: &str, password: &str) -> TokenAnswer {
    post_form(
        idp,
        &[
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", username),
            ("password", password),
            ("scope", "openid"),
        ],
        None,
    )
    .await
}

fn assert_refused(answer: &TokenAnswer, status: u16, error: &str, description: &str) {
    assert_eq!(
        (answer.status, &answer.body),
        (
            status,
            &json!({"error": error, "error_description": description})
        ),
    );
    assert_eq!(answer.headers["cache-control"], "no-store");
    assert_eq!(answer.headers["pragma"], "no-cache");
    assert!(answer.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
}

#[actix_web::test]
async fn fake_idp_password_grant_issues_keycloak_shaped_tokens() {
    for kind in KeyKind::ALL {
        let (idp, key) = password_idp(kind);
        assert_eq!(idp.token_url(), format!("{}/token", idp.base()));
        let (_, _, doc) = get(&idp.discovery_url()).await;
        let doc: Value = serde_json::from_str(&doc).unwrap();
        assert_eq!(doc["token_endpoint"], idp.token_url());
        let jwks: Value = reqwest::get(idp.jwks_url())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            jwks,
            json!({"keys": [key.jwk()]}),
            "the signer is published"
        );

        let before = idp::now();
        let answer = password_login(&idp, "alice", "wonderland").await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.headers["content-type"], "application/json");
        assert_eq!(answer.headers["cache-control"], "no-store");
        assert_eq!(answer.headers["pragma"], "no-cache");
        let body = answer.body.as_object().unwrap();
        let mut members: Vec<&str> = body.keys().map(String::as_str).collect();
        members.sort_unstable();
        assert_eq!(
            members,
            [
                "access_token",
                "expires_in",
                "id_token",
                "not-before-policy",
                "refresh_expires_in",
                "refresh_token",
                "scope",
                "session_state",
                "token_type",
            ]
        );
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["refresh_expires_in"], 1800);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["not-before-policy"], 0);
        assert_eq!(body["scope"], "openid profile email");
        let session = body["session_state"].as_str().unwrap();
        assert_eq!(session.len(), 36);

        // The access token verifies against the published JWK, with Keycloak's claims.
        let access = body["access_token"].as_str().unwrap();
        assert_eq!(
            token_header(access),
            json!({"alg": kind.alg_name(), "typ": "JWT", "kid": "signer"})
        );
        let claims = verify(
            access,
            &key.jwk(),
            kind.algorithm(),
            "account",
            &idp.issuer(),
        )
        .unwrap_or_else(|e| panic!("{kind:?} access token does not verify: {e}"));
        let sub = idp.password_user_sub("alice");
        assert_eq!(sub.len(), 36);
        assert_eq!(claims["sub"], sub);
        assert_eq!(claims["iss"], idp.issuer());
        assert_eq!(claims["preferred_username"], "alice");
        assert_eq!(claims["azp"], CLIENT);
        assert_eq!(claims["typ"], "Bearer");
        assert_eq!(claims["aud"], "account");
        assert_eq!(claims["scope"], "openid profile email");
        assert_eq!(claims["session_state"], session);
        assert_eq!(claims["sid"], session);
        assert_eq!(claims["mediamtx_permissions"], permissions());
        assert_eq!(claims["realm_access"]["roles"], json!(["streamer"]));
        let iat = claims["iat"].as_u64().unwrap();
        assert!(iat >= before && iat <= idp::now());
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);

        // The id token is for the client; the refresh token is no access token.
        let id_token = body["id_token"].as_str().unwrap();
        let id = verify(
            id_token,
            &key.jwk(),
            kind.algorithm(),
            CLIENT,
            &idp.issuer(),
        )
        .unwrap();
        assert_eq!(
            (&id["typ"], &id["sub"], &id["azp"]),
            (&json!("ID"), &json!(sub), &json!(CLIENT))
        );
        assert_eq!(id["at_hash"], idp::at_hash(access));
        let refresh = body["refresh_token"].as_str().unwrap();
        assert_eq!(token_header(refresh)["alg"], "HS256");
        assert_eq!(token_claims(refresh)["typ"], "Refresh");
        assert_eq!(token_claims(refresh)["exp"].as_u64().unwrap(), iat + 1800);
        assert!(verify(
            refresh,
            &key.jwk(),
            kind.algorithm(),
            "account",
            &idp.issuer()
        )
        .is_err());

        // The same user gets the same sub and a new session; another user another sub.
        let again = password_login(&idp, "ALICE", "wonderland").await.body;
        let again_claims = token_claims(again["access_token"].as_str().unwrap());
        assert_eq!(again_claims["sub"], sub);
        assert_eq!(again_claims["preferred_username"], "alice", "lower-cased");
        assert_ne!(again["session_state"], body["session_state"]);
        let bob = password_login(&idp, "bob", "builder").await.body;
        let bob = token_claims(bob["access_token"].as_str().unwrap());
        assert_eq!(bob["sub"], idp.password_user_sub("bob"));
        assert_ne!(bob["sub"], sub);
        assert!(bob.get("mediamtx_permissions").is_none());
        assert_eq!(
            bob["realm_access"]["roles"],
            keycloak_claims("x", "y", json!({}))["realm_access"]["roles"],
            "Keycloak's default roles"
        );
    }
}

#[actix_web::test]
async fn fake_idp_password_grant_scope_issuer_claims_and_signer() {
    let key = TestKey::generate(KeyKind::Ec, "ec-1");
    let idp = FakeIdp::start(vec![]);
    idp.set_password_client(CLIENT, SECRET);
    idp.add_password_user("carol", "pw", json!({"exp": null, "extra": [1, 2]}));
    let form = |scope: &'static str| {
        vec![
            ("grant_type", "password"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
            ("username", "carol"),
            ("password", "pw"),
            ("scope", scope),
        ]
    };

    // No signing key yet: a 500 that says so.
    let answer = post_form(&idp, &form("openid"), None).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body["error_description"]
        .as_str()
        .unwrap()
        .contains("no signing key"));

    // A signer that is not published: its tokens verify only against its own JWK.
    idp.set_signing_key(key.clone());
    assert_eq!(idp.signing_key().unwrap().kid, "ec-1");
    assert!(idp.keys().is_empty());

    // Without openid: "profile email" and no id token; other scopes are listed after.
    let answer = post_form(&idp, &form(""), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["scope"], "profile email");
    assert!(answer.body.get("id_token").is_none());
    let answer = post_form(&idp, &form("email offline_access openid"), None).await;
    assert_eq!(answer.body["scope"], "openid profile email offline_access");
    let access = answer.body["access_token"].as_str().unwrap();
    assert_eq!(
        token_claims(access)["scope"],
        "openid profile email offline_access"
    );

    // The user's claims: null removes exp, the rest is added.
    let claims = token_claims(access);
    assert!(claims.get("exp").is_none());
    assert_eq!(claims["extra"], json!([1, 2]));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.set_audience(&["account"]);
    let jwk: Jwk = serde_json::from_value(key.jwk()).unwrap();
    decode::<Value>(access, &DecodingKey::from_jwk(&jwk).unwrap(), &validation).unwrap();

    // The issuer in force when the token is issued.
    idp.set_issuer("https://sso.example.com/realms/other");
    let answer = post_form(&idp, &form("openid"), None).await;
    let access = answer.body["access_token"].as_str().unwrap();
    assert_eq!(
        token_claims(access)["iss"],
        "https://sso.example.com/realms/other"
    );
    let id = token_claims(answer.body["id_token"].as_str().unwrap());
    assert_eq!(id["iss"], "https://sso.example.com/realms/other");
    assert_eq!(id["extra"], json!([1, 2]));

    // Rotation: sign with a new key.
    let rsa = TestKey::generate(KeyKind::Rsa, "rsa-2");
    idp.set_signing_key(rsa.clone());
    idp.add_key(rsa.jwk());
    let answer = post_form(&idp, &form("openid"), None).await;
    let access = answer.body["access_token"].as_str().unwrap();
    assert_eq!(token_header(access)["kid"], "rsa-2");
    verify(
        access,
        &rsa.jwk(),
        Algorithm::RS256,
        "account",
        "https://sso.example.com/realms/other",
    )
    .unwrap_err(); // exp was removed, which Validation requires by default ...
    let mut validation = Validation::new(Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.set_audience(&["account"]);
    let jwk: Jwk = serde_json::from_value(rsa.jwk()).unwrap();
    decode::<Value>(access, &DecodingKey::from_jwk(&jwk).unwrap(), &validation)
        .expect("... but the signature is the new key's");
}

#[actix_web::test]
async fn fake_idp_password_grant_client_authentication() {
    let (idp, key) = password_idp(KeyKind::Ec);
    let user = [
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "wonderland"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut form = user.to_vec();
        form.extend_from_slice(extra);
        form
    };
    const BAD: &str = "Invalid client or Invalid client credentials";

    // HTTP Basic, no client fields in the form.
    let basic = basic_authorization(CLIENT, SECRET);
    assert_eq!(
        basic,
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("mediamtx:s3cret")
        )
    );
    let answer = post_form(&idp, &user, Some(&basic)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let access = answer.body["access_token"].as_str().unwrap();
    let claims = verify(
        access,
        &key.jwk(),
        Algorithm::ES256,
        "account",
        &idp.issuer(),
    )
    .unwrap();
    assert_eq!(claims["azp"], CLIENT);
    assert_eq!(claims["preferred_username"], "alice");
    assert_eq!(answer.body["scope"], "profile email");
    let recorded = idp.last_token_request().unwrap();
    assert_eq!(recorded.method, "POST");
    assert_eq!(
        recorded.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(recorded.authorization.as_deref(), Some(basic.as_str()));
    assert_eq!(
        recorded.basic_credentials(),
        Some((CLIENT.to_string(), SECRET.to_string()))
    );
    assert_eq!(recorded.field("username"), Some("alice"));
    assert_eq!(recorded.field("client_secret"), None);

    // The scheme is case-insensitive; a client_id field may repeat the header's.
    let lower = basic.replacen("Basic", "basic", 1);
    assert_eq!(post_form(&idp, &user, Some(&lower)).await.status, 200);
    assert_eq!(
        post_form(&idp, &with(&[("client_id", CLIENT)]), Some(&basic))
            .await
            .status,
        200
    );

    // Wrong or missing secret, by Basic or in the form.
    let wrong = basic_authorization(CLIENT, "nope");
    assert_refused(
        &post_form(&idp, &user, Some(&wrong)).await,
        401,
        "unauthorized_client",
        BAD,
    );
    let no_secret = with(&[("client_id", CLIENT)]);
    assert_refused(
        &post_form(&idp, &no_secret, None).await,
        401,
        "unauthorized_client",
        BAD,
    );
    let wrong_form = with(&[("client_id", CLIENT), ("client_secret", "nope")]);
    assert_refused(
        &post_form(&idp, &wrong_form, None).await,
        401,
        "unauthorized_client",
        BAD,
    );
    let empty = with(&[("client_id", CLIENT), ("client_secret", "")]);
    assert_refused(
        &post_form(&idp, &empty, None).await,
        401,
        "unauthorized_client",
        BAD,
    );
    // A form field wins over the header.
    let right_form = with(&[("client_secret", SECRET)]);
    assert_eq!(post_form(&idp, &right_form, Some(&wrong)).await.status, 200);
    let wrong_over_right = with(&[("client_secret", "nope")]);
    assert_refused(
        &post_form(&idp, &wrong_over_right, Some(&basic)).await,
        401,
        "unauthorized_client",
        BAD,
    );

    // Unknown client; no client at all.
    let unknown = basic_authorization("someone", SECRET);
    assert_refused(
        &post_form(&idp, &user, Some(&unknown)).await,
        401,
        "invalid_client",
        BAD,
    );
    assert_refused(
        &post_form(&idp, &user, None).await,
        400,
        "invalid_client",
        "Missing client_id parameter",
    );

    // An Authorization header that is not Basic, without client_id: Keycloak's bare challenge.
    let answer = post_form(&idp, &user, Some("Bearer abc")).await;
    assert_eq!((answer.status, &answer.body), (401, &Value::Null));
    assert_eq!(
        answer.headers["www-authenticate"],
        "Basic realm=\"mediamtx\""
    );
    // ... and with one, the form is used.
    let answer = post_form(
        &idp,
        &with(&[("client_id", CLIENT), ("client_secret", SECRET)]),
        Some("Bearer abc"),
    )
    .await;
    assert_eq!(answer.status, 200);

    // Secrets are form-decoded after base64 (RFC 6749 §2.3.1): one with '+', '%' or ':' must be
    // form-encoded, or it reads as another secret.
    let odd = "a+b%2:c d";
    idp.set_password_client("odd client", odd);
    let encoded = basic_authorization("odd client", odd);
    assert_eq!(
        idp::parse_basic(&encoded),
        Some(("odd client".to_string(), odd.to_string()))
    );
    assert_eq!(post_form(&idp, &user, Some(&encoded)).await.status, 200);
    let raw = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("odd client:{odd}"))
    );
    assert_refused(
        &post_form(&idp, &user, Some(&raw)).await,
        401,
        "unauthorized_client",
        BAD,
    );
    let with_odd = with(&[("client_id", "odd client"), ("client_secret", odd)]);
    assert_eq!(
        post_form(&idp, &with_odd, None).await.status,
        200,
        "the form is plain"
    );

    // A public client sends no secret (and any it sends is ignored).
    idp.set_public_client("cli");
    assert_eq!(
        post_form(&idp, &with(&[("client_id", "cli")]), None)
            .await
            .status,
        200
    );
    let answer = post_form(
        &idp,
        &with(&[("client_id", "cli"), ("client_secret", "x")]),
        None,
    )
    .await;
    assert_eq!(
        token_claims(answer.body["access_token"].as_str().unwrap())["azp"],
        "cli"
    );

    // A client without direct access grants.
    idp.set_direct_access_grants(CLIENT, false);
    assert_refused(
        &post_form(&idp, &user, Some(&basic)).await,
        400,
        "unauthorized_client",
        "Client not allowed for direct access grants",
    );
    idp.set_direct_access_grants(CLIENT, true);
    assert_eq!(post_form(&idp, &user, Some(&basic)).await.status, 200);
}

#[actix_web::test]
async fn fake_idp_password_grant_refusals() {
    let (idp, _key) = password_idp(KeyKind::Ec);
    const BAD_USER: &str = "Invalid user credentials";

    assert_refused(
        &password_login(&idp, "alice", "wrong").await,
        401,
        "invalid_grant",
        BAD_USER,
    );
    assert_refused(
        &password_login(&idp, "alice", "").await,
        401,
        "invalid_grant",
        BAD_USER,
    );
    assert_refused(
        &password_login(&idp, "alice", "Wonderland").await,
        401,
        "invalid_grant",
        BAD_USER,
    );
    assert_refused(
        &password_login(&idp, "nobody", "wonderland").await,
        401,
        "invalid_grant",
        BAD_USER,
    );
    assert_refused(
        &password_login(&idp, "", "x").await,
        401,
        "invalid_grant",
        BAD_USER,
    );

    // A disabled user is told so, whatever the password; enabled again, it logs in.
    idp.set_user_disabled("alice", true);
    assert_refused(
        &password_login(&idp, "alice", "wonderland").await,
        400,
        "invalid_grant",
        "Account disabled",
    );
    assert_refused(
        &password_login(&idp, "Alice", "wrong").await,
        400,
        "invalid_grant",
        "Account disabled",
    );
    assert_eq!(password_login(&idp, "bob", "builder").await.status, 200);
    idp.set_user_disabled("ALICE", false);
    assert_eq!(
        password_login(&idp, "alice", "wonderland").await.status,
        200
    );

    let client = [("client_id", CLIENT), ("client_secret", SECRET)];
    let form = |fields: &[(&'static str, &'static str)]| {
        let mut form = client.to_vec();
        form.extend_from_slice(fields);
        form
    };
    assert_refused(
        &post_form(
            &idp,
            &form(&[("grant_type", "password"), ("password", "wonderland")]),
            None,
        )
        .await,
        401,
        "invalid_request",
        "Missing parameter: username",
    );
    assert_refused(
        &post_form(
            &idp,
            &form(&[("username", "alice"), ("password", "wonderland")]),
            None,
        )
        .await,
        400,
        "invalid_request",
        "Missing form parameter: grant_type",
    );
    for grant in [
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "PASSWORD",
        "nonsense",
    ] {
        assert_refused(
            &post_form(
                &idp,
                &form(&[
                    ("grant_type", grant),
                    ("username", "alice"),
                    ("password", "wonderland"),
                ]),
                None,
            )
            .await,
            400,
            "unsupported_grant_type",
            "Unsupported grant_type",
        );
    }
    // The grant type is checked before the client.
    assert_refused(
        &post_form(&idp, &[("grant_type", "client_credentials")], None).await,
        400,
        "unsupported_grant_type",
        "Unsupported grant_type",
    );
    assert_refused(
        &post_form(
            &idp,
            &form(&[
                ("grant_type", "password"),
                ("username", "alice"),
                ("username", "bob"),
                ("password", "wonderland"),
            ]),
            None,
        )
        .await,
        400,
        "invalid_request",
        "duplicated parameter",
    );

    // Not a form, not a POST.
    let resp = reqwest::Client::new()
        .post(idp.token_url())
        .json(&json!({"grant_type": "password", "username": "alice", "password": "wonderland"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let (status, _, body) = get(&idp.token_url()).await;
    assert_eq!((status, body.as_str()), (405, ""));
    let recorded = idp.last_token_request().unwrap();
    assert_eq!((recorded.method.as_str(), recorded.form.len()), ("GET", 0));
}

#[actix_web::test]
async fn fake_idp_token_modes_and_counter() {
    let (idp, key) = password_idp(KeyKind::Ec);
    assert_eq!(idp.token_hits(), 0);
    assert!(idp.last_token_request().is_none());

    for code in [500, 502, 503, 404, 429] {
        idp.set_token_mode(TokenMode::Status(code));
        let answer = password_login(&idp, "alice", "wonderland").await;
        assert_eq!(answer.status, code);
        assert_eq!(answer.body, json!({"error": format!("status {code}")}));
    }

    idp.set_token_mode(TokenMode::Garbage);
    let answer = password_login(&idp, "alice", "wrong").await;
    assert_eq!(
        answer.status, 200,
        "no mode but Normal and Slow looks at the request"
    );
    assert_eq!(answer.headers["content-type"], "application/json");
    assert_eq!(
        answer.body,
        json!({"access_token": 5, "token_type": "Bearer"})
    );

    idp.set_token_mode(TokenMode::Html);
    let resp = reqwest::Client::new()
        .post(idp.token_url())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(resp.text().await.unwrap().starts_with("<!DOCTYPE html>"));

    idp.set_token_mode(TokenMode::Raw {
        status: 200,
        content_type: "application/json".into(),
        body: r#"{"access_token":"not-a-jwt","token_type":"Bearer","expires_in":300}"#.into(),
    });
    let answer = password_login(&idp, "alice", "wonderland").await;
    assert_eq!(
        (answer.status, &answer.body["access_token"]),
        (200, &json!("not-a-jwt"))
    );

    idp.set_token_mode(TokenMode::Slow(Duration::from_millis(300)));
    let started = Instant::now();
    let answer = password_login(&idp, "alice", "wonderland").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(answer.status, 200);
    let access = answer.body["access_token"].as_str().unwrap();
    verify(
        access,
        &key.jwk(),
        Algorithm::ES256,
        "account",
        &idp.issuer(),
    )
    .unwrap();
    let started = Instant::now();
    assert_eq!(
        password_login(&idp, "alice", "wrong").await.status,
        401,
        "slow, then Keycloak"
    );
    assert!(started.elapsed() >= Duration::from_millis(300));
    let timeout = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap()
        .post(idp.token_url())
        .form(&[("grant_type", "password")])
        .send()
        .await
        .unwrap_err();
    assert!(timeout.is_timeout(), "{timeout}");

    idp.set_token_mode(TokenMode::Normal);
    assert_eq!(
        password_login(&idp, "alice", "wonderland").await.status,
        200
    );
    assert_eq!(idp.token_hits(), 12);
    let requests = idp.token_requests();
    assert_eq!(requests.len(), 12);
    assert_eq!(requests[0].field("password"), Some("wonderland"));
    assert_eq!(requests[5].field("password"), Some("wrong"));
    assert_eq!(requests[0].field("scope"), Some("openid"));
    assert_eq!(
        (idp.jwks_hits(), idp.discovery_hits()),
        (0, 0),
        "counted apart"
    );

    idp.reset_hits();
    assert_eq!(idp.token_hits(), 0);
    assert!(idp.token_requests().is_empty());
    assert_eq!(password_login(&idp, "bob", "builder").await.status, 200);
    assert_eq!(idp.token_hits(), 1);
    assert_eq!(
        idp.last_token_request().unwrap().field("username"),
        Some("bob")
    );
}
