//! Writes a JWKS with one fresh Ed25519 key to the file given as argv[1] and prints a token
//! signed by it (valid for an hour, `mediamtx_permissions` = read anywhere). Used by
//! `scripts/load.sh` for its JWT scenario; not part of the service.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::json;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: jwt_fixture JWKS_FILE");
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let jwks = json!({"keys": [{
        "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": "load",
        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
    }]});
    std::fs::write(&path, jwks.to_string()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "mtx-auth-load", "sub": "loadtest", "iat": now, "exp": now + 3600,
        "mediamtx_permissions": [{"action": "read"}],
    });
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("load".into());
    let token = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(pkcs8.as_ref()));
    println!("{}", token.unwrap());
}
