//! Identity-provider fixtures for the JWT tests: signing keys of every supported kind, tokens
//! (well-formed, forged and unsigned), claim sets shaped like Keycloak's and Authentik's, and a
//! fake IdP — a real HTTP server on a loopback port serving a JWKS, a discovery document and a
//! Keycloak-like token endpoint for the password grant, whose behaviour a test can change while it
//! runs.
//!
//! `crate::support::idp` in the tests; `benches/jwt.rs` includes the file with `#[path]`.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpMessage as _, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Keys and tokens
// ---------------------------------------------------------------------------------------------

/// The kinds of signing key an IdP publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA 2048, RS256.
    Rsa,
    /// EC P-256, ES256.
    Ec,
    /// Ed25519, EdDSA.
    Ed,
}

impl KeyKind {
    pub const ALL: [KeyKind; 3] = [KeyKind::Rsa, KeyKind::Ec, KeyKind::Ed];

    /// The JWS algorithm a key of this kind signs with.
    pub fn algorithm(self) -> Algorithm {
        match self {
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::Ec => Algorithm::ES256,
            KeyKind::Ed => Algorithm::EdDSA,
        }
    }

    /// The algorithm's JOSE name: "RS256", "ES256" or "EdDSA".
    pub fn alg_name(self) -> &'static str {
        match self {
            KeyKind::Rsa => "RS256",
            KeyKind::Ec => "ES256",
            KeyKind::Ed => "EdDSA",
        }
    }
}

/// A freshly generated signing key pair with a key id.
#[derive(Clone)]
pub struct TestKey {
    pub kind: KeyKind,
    pub kid: String,
    encoding: EncodingKey,
    jwk: Value,
    /// RSA only: the public key as SubjectPublicKeyInfo DER and as PKCS#1 DER.
    rsa_spki_der: Option<Vec<u8>>,
    rsa_pkcs1_der: Option<Vec<u8>>,
}

impl TestKey {
    /// Generates a new key: RSA 2048 (RS256), EC P-256 (ES256) or Ed25519 (EdDSA). RSA generation
    /// takes a noticeable fraction of a second; reuse an RSA key within a test where you can.
    pub fn generate(kind: KeyKind, kid: &str) -> TestKey {
        let (encoding, params, rsa_spki_der, rsa_pkcs1_der) = match kind {
            KeyKind::Rsa => {
                let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
                    .expect("generate an RSA key");
                let der = private.to_pkcs1_der().expect("encode the RSA key");
                let public = private.to_public_key();
                let params = json!({
                    "kty": "RSA",
                    "n": b64url(&public.n().to_bytes_be()),
                    "e": b64url(&public.e().to_bytes_be()),
                });
                let spki = public
                    .to_public_key_der()
                    .expect("encode the RSA public key");
                let pkcs1 = public.to_pkcs1_der().expect("encode the RSA public key");
                (
                    EncodingKey::from_rsa_der(der.as_bytes()),
                    params,
                    Some(spki.as_bytes().to_vec()),
                    Some(pkcs1.as_bytes().to_vec()),
                )
            }
            KeyKind::Ec => {
                use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
                let rng = ring::rand::SystemRandom::new();
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .expect("generate an EC key");
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .expect("parse the EC key");
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                let point = pair.public_key().as_ref();
                assert_eq!(point.len(), 65);
                let params = json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": b64url(&point[1..33]),
                    "y": b64url(&point[33..]),
                });
                (EncodingKey::from_ec_der(pkcs8.as_ref()), params, None, None)
            }
            KeyKind::Ed => {
                use ring::signature::{Ed25519KeyPair, KeyPair};
                let rng = ring::rand::SystemRandom::new();
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("generate an Ed25519 key");
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse the key");
                let params = json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": b64url(pair.public_key().as_ref()),
                });
                (EncodingKey::from_ed_der(pkcs8.as_ref()), params, None, None)
            }
        };
        let mut jwk = params;
        let obj = jwk.as_object_mut().unwrap();
        obj.insert("kid".into(), kid.into());
        obj.insert("alg".into(), kind.alg_name().into());
        obj.insert("use".into(), "sig".into());
        TestKey {
            kind,
            kid: kid.to_string(),
            encoding,
            jwk,
            rsa_spki_der,
            rsa_pkcs1_der,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        self.kind.algorithm()
    }

    pub fn alg_name(&self) -> &'static str {
        self.kind.alg_name()
    }

    /// The public JWK: kty, kid, alg, use "sig", and n/e (RSA), crv/x/y (EC) or crv/x (OKP).
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// The public JWK with some members replaced (a `null` value removes the member), e.g.
    /// `key.jwk_with(json!({"alg": null, "use": "enc"}))`.
    pub fn jwk_with(&self, changes: Value) -> Value {
        merged(self.jwk(), changes)
    }

    /// A compact JWT over `claims`, with header {alg, typ: "JWT", kid}.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(
            &json!({"alg": self.alg_name(), "typ": "JWT", "kid": self.kid}),
            claims,
        )
    }

    /// A compact JWT with exactly `header` (whatever it says: alg, kid, crit, jku, …), signed
    /// with this key's own algorithm.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let signing_input = signing_input(header, claims);
        let signature =
            jsonwebtoken::crypto::sign(signing_input.as_bytes(), &self.encoding, self.algorithm())
                .expect("sign the token");
        format!("{signing_input}.{signature}")
    }

    /// RSA keys only: the public key as PEM SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----",
    /// LF line endings, trailing newline) — the bytes an algorithm-confusion attacker would use
    /// as an HS256 secret.
    pub fn rsa_public_pem(&self) -> String {
        let der = self.rsa_public_der();
        let public = <rsa::RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&der)
            .expect("parse our own public key");
        public
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the public key as PEM")
    }

    /// RSA keys only: the public key as SubjectPublicKeyInfo DER.
    pub fn rsa_public_der(&self) -> Vec<u8> {
        self.rsa_spki_der
            .clone()
            .unwrap_or_else(|| panic!("{:?} key {} is not an RSA key", self.kind, self.kid))
    }

    /// RSA keys only: the public key as PKCS#1 RSAPublicKey DER.
    pub fn rsa_public_pkcs1_der(&self) -> Vec<u8> {
        self.rsa_pkcs1_der
            .clone()
            .unwrap_or_else(|| panic!("{:?} key {} is not an RSA key", self.kind, self.kid))
    }
}

/// A compact JWT signed with HMAC-SHA256 under `secret`, with exactly `header` (so a test can
/// forge `{"alg":"HS256","kid":<an RSA key's kid>}` with that key's public PEM as the secret).
pub fn hs256_token(secret: &[u8], header: &Value, claims: &Value) -> String {
    let signing_input = signing_input(header, claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, signing_input.as_bytes());
    format!("{signing_input}.{}", b64url(tag.as_ref()))
}

/// `header.payload.` with an empty signature, as alg "none" tokens are written.
pub fn unsigned_token(header: &Value, claims: &Value) -> String {
    format!("{}.", signing_input(header, claims))
}

/// base64url without padding, as JOSE writes it.
pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JSON of a token's `index`th segment (0 = header, 1 = payload). Panics if it is not JSON.
pub fn token_segment(token: &str, index: usize) -> Value {
    let segment = token.split('.').nth(index).expect("token has that segment");
    let bytes = URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .expect("segment is base64url");
    serde_json::from_slice(&bytes).expect("segment is JSON")
}

/// A token's header, unverified.
pub fn token_header(token: &str) -> Value {
    token_segment(token, 0)
}

/// A token's claims, unverified.
pub fn token_claims(token: &str) -> Value {
    token_segment(token, 1)
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header).unwrap()),
        b64url(&serde_json::to_vec(claims).unwrap())
    )
}

// ---------------------------------------------------------------------------------------------
// Claim sets
// ---------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A random RFC 4122 version-4-shaped id, as Keycloak uses for jti, sid and session_state.
pub fn random_uuid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// `base` with `extra` merged on top: objects merge recursively, anything else in `extra`
/// (arrays included) replaces what was there, and a `null` in `extra` removes the member.
pub fn merged(mut base: Value, extra: Value) -> Value {
    merge_into(&mut base, extra);
    base
}

fn merge_into(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (k, v) in extra {
                if v.is_null() {
                    base.remove(&k);
                } else if let Some(existing) = base.get_mut(&k) {
                    merge_into(existing, v);
                } else {
                    base.insert(k, v);
                }
            }
        }
        (base, extra) => *base = extra,
    }
}

/// The realm used for the Keycloak-shaped fixtures, as in MediaMTX's Keycloak tutorial.
pub const KEYCLOAK_REALM: &str = "mediamtx";
/// Keycloak's client id (`azp`) in MediaMTX's Keycloak tutorial.
pub const KEYCLOAK_CLIENT_ID: &str = "mediamtx";

/// Claims shaped like a Keycloak access token, after the example in MediaMTX's authentication
/// docs (password grant, realm "mediamtx", client "mediamtx"): exp = now + 300, iat = now, jti,
/// iss, aud "account", sub, typ "Bearer", azp "mediamtx", session_state, acr, allowed-origins,
/// realm_access.roles, resource_access.{account,mediamtx}.roles, scope, sid, email_verified,
/// preferred_username (= `sub`). No `mediamtx_permissions`: pass it in `extra`, which is merged on
/// top as by [`merged`] (so `json!({"exp": null})` drops exp, and
/// `json!({"resource_access": {"mediamtx": {"roles": ["publisher"]}}})` replaces only those roles).
pub fn keycloak_claims(issuer: &str, sub: &str, extra: Value) -> Value {
    let now = now();
    let session = random_uuid();
    let base = json!({
        "exp": now + 300,
        "iat": now,
        "jti": random_uuid(),
        "iss": issuer,
        "aud": "account",
        "sub": sub,
        "typ": "Bearer",
        "azp": KEYCLOAK_CLIENT_ID,
        "session_state": session,
        "acr": "1",
        "allowed-origins": ["/*"],
        "realm_access": {
            "roles": ["offline_access", "uma_authorization", "default-roles-mediamtx"]
        },
        "resource_access": {
            "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]},
            "mediamtx": {"roles": ["viewer"]}
        },
        "scope": "mediamtx profile email",
        "sid": session,
        "email_verified": false,
        "preferred_username": sub,
    });
    merged(base, extra)
}

/// The issuer URL Keycloak uses for a realm: `<base>/realms/<realm>`.
pub fn keycloak_issuer(base: &str, realm: &str) -> String {
    format!("{}/realms/{realm}", base.trim_end_matches('/'))
}

/// The OAuth client id used for the Authentik-shaped fixtures (Authentik's own are random
/// 40-character strings; any value works).
pub const AUTHENTIK_CLIENT_ID: &str = "mediamtx";

/// Claims shaped like an Authentik OAuth2 provider's access token: iss, sub, aud = client id,
/// azp, exp = now + 300, iat, auth_time, acr, uid, email, email_verified, name, given_name,
/// preferred_username and nickname (= `sub`), groups, scope. `extra` is merged on top as by
/// [`merged`].
pub fn authentik_claims(issuer: &str, sub: &str, groups: &[&str], extra: Value) -> Value {
    let now = now();
    let base = json!({
        "iss": issuer,
        "sub": sub,
        "aud": AUTHENTIK_CLIENT_ID,
        "azp": AUTHENTIK_CLIENT_ID,
        "exp": now + 300,
        "iat": now,
        "auth_time": now,
        "acr": "goauthentik.io/providers/oauth2/default",
        "uid": random_uuid().replace('-', ""),
        "email": format!("{sub}@example.com"),
        "email_verified": true,
        "name": sub,
        "given_name": sub,
        "preferred_username": sub,
        "nickname": sub,
        "groups": groups,
        "scope": "openid email profile",
    });
    merged(base, extra)
}

/// The issuer URL Authentik uses for an application: `<base>/application/o/<slug>/` — note the
/// trailing slash, which Authentik's tokens carry.
pub fn authentik_issuer(base: &str, slug: &str) -> String {
    format!("{}/application/o/{slug}/", base.trim_end_matches('/'))
}

// ---------------------------------------------------------------------------------------------
// The fake IdP
// ---------------------------------------------------------------------------------------------

/// How the fake IdP answers the JWKS (or, with [`FakeIdp::set_discovery_mode`], the discovery)
/// endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksMode {
    /// 200, application/json, the document.
    Normal,
    /// 500 with a short text body.
    Down,
    /// This status, with a small JSON error body.
    Status(u16),
    /// 200, text/html, a login page (as a misconfigured proxy or SSO portal answers).
    Html,
    /// 200, application/json, `{"keys": 5}`.
    Garbage,
    /// 200, application/json, a valid JSON body of 2 MiB: the current key set plus a 2 MiB
    /// `"padding"` string member.
    Huge,
    /// Waits this long, then answers as `Normal` (with the keys current at that time).
    Slow(Duration),
    /// Exactly this status, content type and body.
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
}

/// Size of the `JwksMode::Huge` padding.
pub const HUGE_PADDING: usize = 2 * 1024 * 1024;

/// How the fake IdP answers `POST /token` ([`FakeIdp::set_token_mode`]). Every mode but `Normal`
/// and `Slow` answers without looking at the request at all, as a proxy or a broken IdP would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMode {
    /// As Keycloak does: a token response, or an OAuth error (see [`FakeIdp`]).
    Normal,
    /// This status, with the small JSON body `{"error": "status <code>"}`.
    Status(u16),
    /// 200, application/json, `{"access_token": 5, "token_type": "Bearer"}`: JSON, but no token.
    Garbage,
    /// 200, text/html, a login page (as a misconfigured proxy or SSO portal answers).
    Html,
    /// Waits this long, then answers as `Normal`.
    Slow(Duration),
    /// Exactly this status, content type and body (e.g. a 200 whose access_token is no JWT).
    Raw {
        status: u16,
        content_type: String,
        body: String,
    },
}

/// `expires_in` of the fake IdP's access tokens (Keycloak's default access token lifespan).
pub const TOKEN_LIFETIME: u64 = 300;
/// `refresh_expires_in` (Keycloak's default SSO session idle timeout).
pub const REFRESH_LIFETIME: u64 = 1800;
/// The client scopes a Keycloak client gets by default and lists in a token's `scope`.
pub const DEFAULT_TOKEN_SCOPE: &str = "profile email";

/// One request the token endpoint received, as [`FakeIdp::token_requests`] records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    pub method: String,
    /// The Content-Type header, as sent.
    pub content_type: Option<String>,
    /// The Authorization header, as sent.
    pub authorization: Option<String>,
    /// The form fields in order, decoded (empty when the body is no form).
    pub form: Vec<(String, String)>,
}

impl TokenRequest {
    /// The first value of a form field.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The client id and secret of an `Authorization: Basic` header, base64- and then
    /// form-decoded as Keycloak decodes them; `None` without a (well-formed) Basic header.
    pub fn basic_credentials(&self) -> Option<(String, String)> {
        parse_basic(self.authorization.as_deref()?)
    }
}

struct TokenClient {
    /// `None`: a public client, which sends no secret.
    secret: Option<String>,
    direct_access_grants: bool,
}

struct PasswordUser {
    password: String,
    sub: String,
    claims: Value,
    enabled: bool,
}

struct IdpState {
    base: String,
    issuer: Mutex<String>,
    keys: Mutex<Vec<Value>>,
    jwks_mode: Mutex<JwksMode>,
    discovery_mode: Mutex<JwksMode>,
    discovery_override: Mutex<Option<Value>>,
    jwks_headers: Mutex<Vec<(String, String)>>,
    jwks_hits: AtomicUsize,
    discovery_hits: AtomicUsize,
    signer: Mutex<Option<TestKey>>,
    /// Signs refresh tokens (HS256), as Keycloak signs its own with a realm HMAC key.
    refresh_secret: [u8; 32],
    token_clients: Mutex<HashMap<String, TokenClient>>,
    /// By lower-cased username, as Keycloak stores usernames.
    password_users: Mutex<HashMap<String, PasswordUser>>,
    token_mode: Mutex<TokenMode>,
    token_hits: AtomicUsize,
    token_requests: Mutex<Vec<TokenRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding a lock must not hide its own failure behind ours.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A fake identity provider: a real actix-web server on 127.0.0.1 (random port), serving
///
/// - `GET /jwks`: `{"keys": [...]}` (the current key set), as the current [`JwksMode`] says;
///   every request is counted ([`FakeIdp::jwks_hits`]);
/// - `GET <anything>/.well-known/openid-configuration` (so both `<base>/.well-known/…` and
///   `<issuer>/.well-known/…`): a discovery document with `issuer` and `jwks_uri` = `<base>/jwks`,
///   or the document set with [`FakeIdp::set_discovery`]; counted ([`FakeIdp::discovery_hits`]);
/// - `POST /token` (the discovery document's `token_endpoint`): the OAuth 2.0 Resource Owner
///   Password Credentials grant (RFC 6749 §4.3) answered as Keycloak answers it, as the current
///   [`TokenMode`] says; counted ([`FakeIdp::token_hits`]) and recorded
///   ([`FakeIdp::token_requests`]). See "The token endpoint" below;
/// - anything else: 404.
///
/// Start it from an actix runtime (`#[actix_web::test]`), like `common::spawn`. Dropping it
/// stops the server.
///
/// # The token endpoint
///
/// Give it a signing key ([`FakeIdp::start_with_signer`] or [`FakeIdp::set_signing_key`]), a
/// client ([`FakeIdp::set_password_client`], [`FakeIdp::set_public_client`]) and users
/// ([`FakeIdp::add_password_user`]). A request is a form (`application/x-www-form-urlencoded`):
/// `grant_type=password`, `username`, `password`, optional `scope`, and the client's `client_id`
/// and `client_secret` in the form (client_secret_post) or as `Authorization: Basic
/// base64(urlencode(client_id):urlencode(client_secret))` (client_secret_basic); a form field
/// wins over the header. Success is a 200 application/json
///
/// ```text
/// {"access_token": <JWT>, "expires_in": 300, "refresh_expires_in": 1800,
///  "refresh_token": <JWT-shaped, HS256, typ "Refresh": opaque to clients>, "token_type": "Bearer",
///  "not-before-policy": 0, "session_state": <uuid>, "scope": "openid profile email",
///  "id_token": <JWT, only when the scope asked for openid>}
/// ```
///
/// `scope` is "openid " (when asked for) + "profile email" + any other scope asked for, as
/// Keycloak lists a client's default scopes; without `scope=openid` it is "profile email" and there
/// is no id_token. The access token ([`keycloak_claims`], signed by the signing key with header
/// {alg, typ "JWT", kid}) has iss = the current issuer, sub = the user's stable uuid
/// ([`FakeIdp::password_user_sub`]), preferred_username = the (lower-case) username, azp = the
/// client id, typ "Bearer", exp = iat + 300, scope and session_state/sid as in the response, and
/// the user's claims merged on top (as by [`merged`]: `{"exp": null}` drops exp).
///
/// Errors are Keycloak's, confirmed against Keycloak's source (`TokenEndpoint`,
/// `ClientIdAndSecretAuthenticator`, `AuthenticationProcessor.handleClientAuthException`, the
/// direct-grant `ValidateUsername`/`ValidatePassword` authenticators) and issues
/// (keycloak/keycloak#45812 on 26.5.2: 401 for a wrong password *and* an unknown user;
/// #12162/#14656: the client-auth bodies since Keycloak 20; #48273 and Nerzal/gocloak#427: 400
/// "Account disabled"), checked in this order, every answer with `Cache-Control: no-store` and
/// `Pragma: no-cache`, bodies `{"error": …, "error_description": …}`:
///
/// | case | status | error | error_description |
/// |---|---|---|---|
/// | no grant_type | 400 | invalid_request | Missing form parameter: grant_type |
/// | grant_type not password (*) | 400 | unsupported_grant_type | Unsupported grant_type |
/// | Authorization not Basic, no client_id field | 401 | (empty body, `WWW-Authenticate: Basic realm="mediamtx"`) | |
/// | no client id at all | 400 | invalid_client | Missing client_id parameter |
/// | unknown client | 401 | invalid_client | Invalid client or Invalid client credentials |
/// | missing or wrong client secret | 401 | unauthorized_client | Invalid client or Invalid client credentials |
/// | a form field given twice | 400 | invalid_request | duplicated parameter |
/// | client without direct access grants | 400 | unauthorized_client | Client not allowed for direct access grants |
/// | no username | 401 | invalid_request | Missing parameter: username |
/// | unknown user (**) | 401 | invalid_grant | Invalid user credentials |
/// | disabled user (whatever the password) | 400 | invalid_grant | Account disabled |
/// | missing or wrong password | 401 | invalid_grant | Invalid user credentials |
///
/// (*) Keycloak also serves authorization_code, refresh_token, client_credentials, …; the fake
/// answers them as unknown. (**) Some Keycloak revisions answered 400 for an unknown user (same
/// body); RFC 6749 §5.2 says 400 for invalid_grant, Keycloak says 401 (#45812, still open).
/// Before Keycloak 20 a wrong secret was `unauthorized_client` / "Invalid client secret". Not
/// POST: 405; not a form: 415 (both empty bodies, as RESTEasy answers). Not modelled: lockout,
/// required actions ("Account is not fully set up"), invalid_scope, offline tokens.
pub struct FakeIdp {
    state: Arc<IdpState>,
    addr: std::net::SocketAddr,
    handle: Mutex<Option<ServerHandle>>,
}

impl FakeIdp {
    /// Starts a fake IdP publishing `keys` (public JWKs, e.g. `vec![key.jwk()]`), with issuer
    /// `<base>/realms/mediamtx`.
    pub fn start(keys: Vec<Value>) -> FakeIdp {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let base = format!("http://{addr}");
        let state = Arc::new(IdpState {
            issuer: Mutex::new(keycloak_issuer(&base, KEYCLOAK_REALM)),
            base,
            keys: Mutex::new(keys),
            jwks_mode: Mutex::new(JwksMode::Normal),
            discovery_mode: Mutex::new(JwksMode::Normal),
            discovery_override: Mutex::new(None),
            jwks_headers: Mutex::new(Vec::new()),
            jwks_hits: AtomicUsize::new(0),
            discovery_hits: AtomicUsize::new(0),
            signer: Mutex::new(None),
            refresh_secret: rand::random(),
            token_clients: Mutex::new(HashMap::new()),
            password_users: Mutex::new(HashMap::new()),
            token_mode: Mutex::new(TokenMode::Normal),
            token_hits: AtomicUsize::new(0),
            token_requests: Mutex::new(Vec::new()),
        });
        let handle = serve(listener, state.clone());
        FakeIdp {
            state,
            addr,
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Starts a fake IdP publishing `key.jwk()` whose token endpoint signs with `key`.
    pub fn start_with_signer(key: TestKey) -> FakeIdp {
        let idp = FakeIdp::start(vec![key.jwk()]);
        idp.set_signing_key(key);
        idp
    }

    /// The token endpoint signs with `key` from now on. The published key set is not changed:
    /// add `key.jwk()` with [`FakeIdp::add_key`] to publish it too, or leave it out to issue
    /// tokens that no published key verifies.
    pub fn set_signing_key(&self, key: TestKey) {
        *lock(&self.state.signer) = Some(key);
    }

    /// The key the token endpoint signs with, if any (without one it answers 500).
    pub fn signing_key(&self) -> Option<TestKey> {
        lock(&self.state.signer).clone()
    }

    /// `<base>/token`, the discovery document's `token_endpoint`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.state.base)
    }

    /// Registers (or replaces) a confidential client allowed the password grant ("Direct access
    /// grants" on), authenticating with `client_secret` in the form or by HTTP Basic.
    pub fn set_password_client(&self, client_id: &str, client_secret: &str) {
        self.insert_client(client_id, Some(client_secret));
    }

    /// Registers (or replaces) a public client allowed the password grant: it sends its client_id
    /// and no secret (any secret it does send is ignored, as by Keycloak).
    pub fn set_public_client(&self, client_id: &str) {
        self.insert_client(client_id, None);
    }

    fn insert_client(&self, client_id: &str, secret: Option<&str>) {
        lock(&self.state.token_clients).insert(
            client_id.to_string(),
            TokenClient {
                secret: secret.map(String::from),
                direct_access_grants: true,
            },
        );
    }

    /// Turns the client's "Direct access grants" off (`false`: 400 unauthorized_client "Client
    /// not allowed for direct access grants") or on again. Panics for an unknown client.
    pub fn set_direct_access_grants(&self, client_id: &str, enabled: bool) {
        lock(&self.state.token_clients)
            .get_mut(client_id)
            .unwrap_or_else(|| panic!("no client {client_id:?} on the fake IdP"))
            .direct_access_grants = enabled;
    }

    /// Adds (or replaces) an enabled user. `claims` are merged on top of the Keycloak-shaped
    /// access token (e.g. `mediamtx_permissions`, `realm_access`, or `{"exp": null}`); the id
    /// token gets them too. Usernames are case-insensitive and lower-cased, as in Keycloak. The
    /// user's `sub` is a fresh uuid, the same in every token ([`FakeIdp::password_user_sub`]).
    pub fn add_password_user(&self, username: &str, password: &str, claims: Value) {
        lock(&self.state.password_users).insert(
            username.to_lowercase(),
            PasswordUser {
                password: password.to_string(),
                sub: random_uuid(),
                claims,
                enabled: true,
            },
        );
    }

    /// Disables (`true`: 400 invalid_grant "Account disabled") or enables a user. Panics for an
    /// unknown user.
    pub fn set_user_disabled(&self, username: &str, disabled: bool) {
        lock(&self.state.password_users)
            .get_mut(&username.to_lowercase())
            .unwrap_or_else(|| panic!("no user {username:?} on the fake IdP"))
            .enabled = !disabled;
    }

    /// The `sub` of a user's tokens. Panics for an unknown user.
    pub fn password_user_sub(&self, username: &str) -> String {
        lock(&self.state.password_users)
            .get(&username.to_lowercase())
            .unwrap_or_else(|| panic!("no user {username:?} on the fake IdP"))
            .sub
            .clone()
    }

    /// How `/token` answers from now on.
    pub fn set_token_mode(&self, mode: TokenMode) {
        *lock(&self.state.token_mode) = mode;
    }

    /// Requests to `/token` so far (every request, whatever the mode answered).
    pub fn token_hits(&self) -> usize {
        self.state.token_hits.load(Ordering::SeqCst)
    }

    /// Every request to `/token` so far, oldest first (method, content type, Authorization
    /// header and decoded form), e.g. to check what a client sent and how it authenticated.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        lock(&self.state.token_requests).clone()
    }

    /// The latest request to `/token`, if any.
    pub fn last_token_request(&self) -> Option<TokenRequest> {
        lock(&self.state.token_requests).last().cloned()
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base(&self) -> String {
        self.state.base.clone()
    }

    /// `<base>/jwks`.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.base)
    }

    /// `<issuer>/.well-known/openid-configuration` when the issuer lies under this server (as it
    /// does by default), else `<base>/.well-known/openid-configuration`. Both are served.
    pub fn discovery_url(&self) -> String {
        let issuer = self.issuer();
        let root = if issuer.starts_with(&self.state.base) {
            issuer.trim_end_matches('/').to_string()
        } else {
            self.state.base.clone()
        };
        format!("{root}/.well-known/openid-configuration")
    }

    /// `<base>/.well-known/openid-configuration`.
    pub fn root_discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.state.base)
    }

    /// The issuer the discovery document names (default `<base>/realms/mediamtx`).
    pub fn issuer(&self) -> String {
        lock(&self.state.issuer).clone()
    }

    pub fn set_issuer(&self, issuer: &str) {
        *lock(&self.state.issuer) = issuer.to_string();
    }

    /// Replaces the published key set (key rotation).
    pub fn set_keys(&self, keys: Vec<Value>) {
        *lock(&self.state.keys) = keys;
    }

    /// Adds a key to the published set.
    pub fn add_key(&self, key: Value) {
        lock(&self.state.keys).push(key);
    }

    pub fn keys(&self) -> Vec<Value> {
        lock(&self.state.keys).clone()
    }

    /// How `/jwks` answers from now on.
    pub fn set_mode(&self, mode: JwksMode) {
        *lock(&self.state.jwks_mode) = mode;
    }

    /// How the discovery endpoint answers from now on (`Huge` pads the discovery document).
    pub fn set_discovery_mode(&self, mode: JwksMode) {
        *lock(&self.state.discovery_mode) = mode;
    }

    /// Serves exactly `doc` as the discovery document (`None`: back to the generated one), e.g.
    /// to name another issuer or a jwks_uri elsewhere, or to leave jwks_uri out.
    pub fn set_discovery(&self, doc: Option<Value>) {
        *lock(&self.state.discovery_override) = doc;
    }

    /// The discovery document as currently generated (ignoring any [`FakeIdp::set_discovery`]).
    pub fn discovery_document(&self) -> Value {
        generated_discovery(&self.state)
    }

    /// Extra response headers on every `/jwks` answer (e.g. `Cache-Control: max-age=60`).
    pub fn set_jwks_headers(&self, headers: &[(&str, &str)]) {
        *lock(&self.state.jwks_headers) = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Requests to `/jwks` so far (every request, whatever the mode answered).
    pub fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    /// Requests to the discovery document so far.
    pub fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    /// Zeroes every counter and forgets the recorded token requests.
    pub fn reset_hits(&self) {
        self.state.jwks_hits.store(0, Ordering::SeqCst);
        self.state.discovery_hits.store(0, Ordering::SeqCst);
        self.state.token_hits.store(0, Ordering::SeqCst);
        lock(&self.state.token_requests).clear();
    }

    /// Waits (polling every 10 ms) until `/jwks` has been requested at least `at_least` times;
    /// false if `timeout` passed first.
    pub async fn wait_for_jwks_hits(&self, at_least: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.jwks_hits() >= at_least {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server and closes its port: connections are then refused, as for an IdP that
    /// went away. [`FakeIdp::restart`] brings it back on the same port.
    pub async fn stop(&self) {
        let handle = lock(&self.handle).take();
        if let Some(handle) = handle {
            handle.stop(false).await;
            wait_closed(self.addr);
        }
    }

    /// Starts the server again on the same port, with the same state, after [`FakeIdp::stop`].
    pub fn restart(&self) {
        let mut handle = lock(&self.handle);
        assert!(handle.is_none(), "restart() needs a stop() first");
        let listener = TcpListener::bind(self.addr).expect("rebind the fake IdP's port");
        *handle = Some(serve(listener, self.state.clone()));
    }

    /// An `http://127.0.0.1:PORT` URL where nothing listens (a port that was free a moment ago:
    /// connections to it are refused).
    pub fn unused_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        drop(listener);
        wait_closed(addr);
        format!("http://{addr}")
    }
}

/// Waits until nothing accepts connections at `addr` any more. Closing a listening socket is not
/// enough when the tests share a process: a child that another test is starting at that moment
/// holds a copy of every descriptor from its fork until its exec, and the socket goes on
/// listening there meanwhile; a connection it takes is then reset instead of refused.
fn wait_closed(addr: std::net::SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections after its listener was closed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        if let Some(handle) = lock(&self.handle).take() {
            // The stop command is sent at once; nobody needs to wait for it to complete.
            drop(handle.stop(false));
        }
    }
}

fn serve(listener: TcpListener, state: Arc<IdpState>) -> ServerHandle {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(route))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

fn generated_discovery(state: &IdpState) -> Value {
    let base = &state.base;
    let issuer = lock(&state.issuer).clone();
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/auth"),
        "token_endpoint": format!("{base}/token"),
        "userinfo_endpoint": format!("{base}/userinfo"),
        "jwks_uri": format!("{base}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "grant_types_supported": ["authorization_code", "client_credentials", "password"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
    })
}

async fn route(req: HttpRequest, body: web::Bytes, state: web::Data<IdpState>) -> HttpResponse {
    let path = req.path();
    if path == "/token" {
        token_endpoint(&req, &body, &state).await
    } else if path == "/jwks" {
        state.jwks_hits.fetch_add(1, Ordering::SeqCst);
        let mode = lock(&state.jwks_mode).clone();
        let headers = lock(&state.jwks_headers).clone();
        let state = state.clone();
        let doc = move || json!({ "keys": lock(&state.keys).clone() });
        let mut resp = respond(mode, doc).await;
        for (k, v) in headers {
            resp.headers_mut().insert(
                actix_web::http::header::HeaderName::try_from(k.as_str()).expect("header name"),
                actix_web::http::header::HeaderValue::from_str(&v).expect("header value"),
            );
        }
        resp
    } else if path.ends_with("/.well-known/openid-configuration") {
        state.discovery_hits.fetch_add(1, Ordering::SeqCst);
        let mode = lock(&state.discovery_mode).clone();
        let state = state.clone();
        let doc = move || {
            lock(&state.discovery_override)
                .clone()
                .unwrap_or_else(|| generated_discovery(&state))
        };
        respond(mode, doc).await
    } else {
        HttpResponse::NotFound().json(json!({"error": "not found", "path": path}))
    }
}

async fn respond(mode: JwksMode, doc: impl FnOnce() -> Value) -> HttpResponse {
    match mode {
        JwksMode::Normal => HttpResponse::Ok().json(doc()),
        JwksMode::Slow(delay) => {
            actix_web::rt::time::sleep(delay).await;
            HttpResponse::Ok().json(doc())
        }
        JwksMode::Down => HttpResponse::InternalServerError()
            .content_type("text/plain")
            .body("internal server error"),
        JwksMode::Status(code) => {
            let status = StatusCode::from_u16(code).expect("a valid HTTP status");
            HttpResponse::build(status).json(json!({"error": format!("status {code}")}))
        }
        JwksMode::Html => login_page(),
        JwksMode::Garbage => HttpResponse::Ok().json(json!({"keys": 5})),
        JwksMode::Huge => {
            let mut body = match doc() {
                Value::Object(map) => map,
                other => {
                    let mut map = Map::new();
                    map.insert("document".into(), other);
                    map
                }
            };
            body.insert("padding".into(), Value::String("x".repeat(HUGE_PADDING)));
            HttpResponse::Ok().json(Value::Object(body))
        }
        JwksMode::Raw {
            status,
            content_type,
            body,
        } => HttpResponse::build(StatusCode::from_u16(status).expect("a valid HTTP status"))
            .content_type(content_type)
            .body(body),
    }
}

/// What a misconfigured proxy or an SSO portal answers: 200, text/html, a login page.
fn login_page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\
             <body><h1>Sign in to continue</h1><form method=\"post\"></form></body></html>\n",
        )
}

// ---------------------------------------------------------------------------------------------
// The token endpoint (see `FakeIdp`'s documentation for what Keycloak answers when)
// ---------------------------------------------------------------------------------------------

async fn token_endpoint(req: &HttpRequest, body: &[u8], state: &IdpState) -> HttpResponse {
    state.token_hits.fetch_add(1, Ordering::SeqCst);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let is_form = req
        .content_type()
        .eq_ignore_ascii_case("application/x-www-form-urlencoded");
    let request = TokenRequest {
        method: req.method().to_string(),
        content_type: header("content-type"),
        authorization: header("authorization"),
        form: if is_form {
            form_urlencoded::parse(body).into_owned().collect()
        } else {
            Vec::new()
        },
    };
    lock(&state.token_requests).push(request.clone());

    let mode = lock(&state.token_mode).clone();
    match mode {
        TokenMode::Normal => {}
        TokenMode::Slow(delay) => actix_web::rt::time::sleep(delay).await,
        TokenMode::Status(code) => {
            return HttpResponse::build(StatusCode::from_u16(code).expect("a valid HTTP status"))
                .json(json!({"error": format!("status {code}")}))
        }
        TokenMode::Garbage => {
            return HttpResponse::Ok().json(json!({"access_token": 5, "token_type": "Bearer"}))
        }
        TokenMode::Html => return login_page(),
        TokenMode::Raw {
            status,
            content_type,
            body,
        } => {
            return HttpResponse::build(StatusCode::from_u16(status).expect("a valid HTTP status"))
                .content_type(content_type)
                .body(body)
        }
    }

    // JAX-RS refuses these before Keycloak's token endpoint runs.
    if req.method() != Method::POST {
        return HttpResponse::MethodNotAllowed()
            .insert_header(("allow", "POST, OPTIONS"))
            .finish();
    }
    if !is_form {
        return HttpResponse::UnsupportedMediaType().finish();
    }
    password_grant(&request, state)
}

/// A response builder with the headers RFC 6749 §5.1 asks of every token endpoint answer (and
/// Keycloak sets on its errors too).
fn no_store(status: StatusCode) -> actix_web::HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder
        .insert_header(("cache-control", "no-store"))
        .insert_header(("pragma", "no-cache"));
    builder
}

/// An RFC 6749 §5.2 error response.
fn oauth_error(status: u16, error: &str, description: &str) -> HttpResponse {
    no_store(StatusCode::from_u16(status).expect("a valid HTTP status"))
        .json(json!({"error": error, "error_description": description}))
}

/// Keycloak's `TokenEndpoint` with the `client-secret` client authenticator and the default
/// "direct grant" flow, checks in Keycloak's order: the token response or an OAuth error.
fn password_grant(request: &TokenRequest, state: &IdpState) -> HttpResponse {
    match request.field("grant_type") {
        None => return oauth_error(400, "invalid_request", "Missing form parameter: grant_type"),
        Some("password") => {}
        Some(_) => return oauth_error(400, "unsupported_grant_type", "Unsupported grant_type"),
    }

    // ClientIdAndSecretAuthenticator: Basic first, then form fields override it.
    let (mut client_id, mut secret) = (None, None);
    if let Some(authorization) = &request.authorization {
        match parse_basic(authorization) {
            Some((id, s)) => (client_id, secret) = (Some(id), Some(s)),
            None if request.field("client_id").is_none() => {
                return no_store(StatusCode::UNAUTHORIZED)
                    .insert_header((
                        "www-authenticate",
                        format!("Basic realm=\"{KEYCLOAK_REALM}\""),
                    ))
                    .finish()
            }
            None => {}
        }
    }
    if let Some(id) = request.field("client_id") {
        client_id = Some(id.to_string());
    }
    if let Some(s) = request.field("client_secret") {
        secret = Some(s.to_string());
    }
    let Some(client_id) = client_id else {
        return oauth_error(400, "invalid_client", "Missing client_id parameter");
    };
    const BAD_CLIENT: &str = "Invalid client or Invalid client credentials";
    let direct_access_grants = {
        let clients = lock(&state.token_clients);
        let Some(client) = clients.get(&client_id) else {
            return oauth_error(401, "invalid_client", BAD_CLIENT);
        };
        let authenticated = match &client.secret {
            None => true, // a public client
            Some(expected) => secret.as_deref() == Some(expected.as_str()),
        };
        if !authenticated {
            return oauth_error(401, "unauthorized_client", BAD_CLIENT);
        }
        client.direct_access_grants
    };
    for (i, (name, _)) in request.form.iter().enumerate() {
        if request.form[..i].iter().any(|(earlier, _)| earlier == name) {
            return oauth_error(400, "invalid_request", "duplicated parameter");
        }
    }
    if !direct_access_grants {
        return oauth_error(
            400,
            "unauthorized_client",
            "Client not allowed for direct access grants",
        );
    }

    // The direct grant flow: ValidateUsername, then ValidatePassword.
    const BAD_USER: &str = "Invalid user credentials";
    let Some(username) = request.field("username") else {
        return oauth_error(401, "invalid_request", "Missing parameter: username");
    };
    let username = username.to_lowercase();
    let (sub, user_claims) = {
        let users = lock(&state.password_users);
        let Some(user) = users.get(&username) else {
            return oauth_error(401, "invalid_grant", BAD_USER);
        };
        if !user.enabled {
            return oauth_error(400, "invalid_grant", "Account disabled");
        }
        if request.field("password") != Some(user.password.as_str()) {
            return oauth_error(401, "invalid_grant", BAD_USER);
        }
        (user.sub.clone(), user.claims.clone())
    };
    let Some(key) = lock(&state.signer).clone() else {
        return oauth_error(
            500,
            "server_error",
            "the fake IdP has no signing key: use FakeIdp::start_with_signer or set_signing_key",
        );
    };

    let requested: Vec<&str> = request
        .field("scope")
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .collect();
    let openid = requested.contains(&"openid");
    let mut granted: Vec<&str> = Vec::new();
    if openid {
        granted.push("openid");
    }
    for s in DEFAULT_TOKEN_SCOPE.split(' ').chain(requested) {
        if !granted.contains(&s) {
            granted.push(s);
        }
    }
    let scope = granted.join(" ");

    let issuer = lock(&state.issuer).clone();
    let session = random_uuid();
    let now = now();
    let access_claims = merged(
        keycloak_claims(
            &issuer,
            &sub,
            json!({
                "azp": client_id,
                "preferred_username": username,
                "session_state": session,
                "sid": session,
                "scope": scope,
            }),
        ),
        user_claims.clone(),
    );
    let access_token = key.sign(&access_claims);
    let refresh_token = hs256_token(
        &state.refresh_secret,
        &json!({"alg": "HS256", "typ": "JWT", "kid": "fake-idp-refresh"}),
        &json!({
            "exp": now + REFRESH_LIFETIME,
            "iat": now,
            "jti": random_uuid(),
            "iss": issuer,
            "aud": issuer,
            "sub": sub,
            "typ": "Refresh",
            "azp": client_id,
            "session_state": session,
            "scope": scope,
            "sid": session,
        }),
    );
    let mut response = json!({
        "access_token": access_token,
        "expires_in": TOKEN_LIFETIME,
        "refresh_expires_in": REFRESH_LIFETIME,
        "refresh_token": refresh_token,
        "token_type": "Bearer",
        "not-before-policy": 0,
        "session_state": session,
        "scope": scope,
    });
    if openid {
        let id_claims = merged(
            json!({
                "exp": now + TOKEN_LIFETIME,
                "iat": now,
                "auth_time": now,
                "jti": random_uuid(),
                "iss": issuer,
                "aud": client_id,
                "sub": sub,
                "typ": "ID",
                "azp": client_id,
                "session_state": session,
                "at_hash": at_hash(&access_token),
                "acr": "1",
                "sid": session,
                "email_verified": false,
                "preferred_username": username,
            }),
            user_claims,
        );
        response["id_token"] = key.sign(&id_claims).into();
    }
    no_store(StatusCode::OK).json(response)
}

/// OIDC Core §3.1.3.6: base64url of the left half of the SHA-256 of the access token (right for
/// RS256 and ES256, the algorithms Keycloak signs with by default).
pub fn at_hash(access_token: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, access_token.as_bytes());
    b64url(&digest.as_ref()[..16])
}

/// `Authorization: Basic …` as Keycloak's `BasicAuthHelper.RFC6749.parseHeader` reads it: the
/// scheme case-insensitive, standard base64, split at the first ':', then each half form-decoded
/// (RFC 6749 §2.3.1: `+` is a space, `%XX` a byte), so a secret with `+`, `%` or `:` must be
/// form-encoded before base64 or it is read as another secret.
pub fn parse_basic(header: &str) -> Option<(String, String)> {
    if !header.get(..5)?.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(header.get(6..)?).ok()?;
    let decoded = String::from_utf8_lossy(&decoded);
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// `Authorization: Basic base64(urlencode(client_id):urlencode(client_secret))`, as RFC 6749
/// §2.3.1 says a client must send it (and Keycloak decodes it).
pub fn basic_authorization(client_id: &str, client_secret: &str) -> String {
    let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", encode(client_id), encode(client_secret)))
    )
}

fn form_decode(s: &str) -> String {
    // As one form field name, with the separators form_urlencoded would split at escaped.
    let escaped = s.replace('&', "%26").replace('=', "%3D");
    form_urlencoded::parse(escaped.as_bytes())
        .next()
        .map(|(name, _)| name.into_owned())
        .unwrap_or_default()
}
