//! The second factor: TOTP (RFC 6238: SHA-1, 6 digits, 30 s, ±1 step), its secrets sealed at
//! rest, single-use recovery codes, and the enrollment QR code drawn here (a secret never goes to
//! a third-party QR service). Pure functions: the store decides "once" (`take_totp_step`,
//! `use_recovery_code`) and the HTTP layer wires them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use totp_rs::{Algorithm, TOTP};

/// The step, as RFC 6238 and every authenticator app have it.
pub const STEP_SECS: i64 = 30;
/// Recovery codes handed out per enrollment.
pub const RECOVERY_CODES: usize = 10;
/// Wrong codes that end a pending sign-in.
pub const MAX_CODE_FAILURES: i64 = 5;

/// Encrypts MFA secrets at rest (XChaCha20-Poly1305, a random nonce per secret, the person as
/// associated data so a sealed secret cannot be moved to another person's row).
pub struct Sealer(XChaCha20Poly1305);

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

/// What `Sealer::from_base64` says about a bad key; how to make a good one is in the text.
pub const KEY_HELP: &str =
    "the MFA key must be 32 random bytes in standard base64; make one with `openssl rand -base64 32`";

impl Sealer {
    pub fn from_base64(key: &str) -> Result<Sealer, String> {
        let bytes = STANDARD
            .decode(key.trim())
            .map_err(|_| format!("not base64: {KEY_HELP}"))?;
        if bytes.len() != 32 {
            return Err(format!("{} bytes, not 32: {KEY_HELP}", bytes.len()));
        }
        Ok(Sealer(XChaCha20Poly1305::new(bytes.as_slice().into())))
    }

    /// `v1.` + base64(nonce ‖ ciphertext).
    pub fn seal(&self, person: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .0
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: person.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for short messages");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("v1.{}", STANDARD.encode(out))
    }

    /// `None` when the value was not sealed by this key for this person (or was altered).
    pub fn open(&self, person: &str, sealed: &str) -> Option<Vec<u8>> {
        let bytes = STANDARD.decode(sealed.strip_prefix("v1.")?).ok()?;
        if bytes.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        self.0
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: person.as_bytes(),
                },
            )
            .ok()
    }
}

/// A new TOTP secret: 160 bits, RFC 4226's recommendation.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

fn totp(secret: &[u8], issuer: &str, account: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS as u64,
        secret.to_vec(),
        Some(issuer.to_owned()),
        account.to_owned(),
    )
}

/// The step `code` is valid for at `now` (seconds since 1970), the current one or one either
/// side; `None` when it is not a current code. Compared in constant time.
pub fn verify(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let t = totp(secret, "", "");
    let current = now.div_euclid(STEP_SECS);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let expected = t.generate((step * STEP_SECS).max(0) as u64);
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            expected.as_bytes(),
            code.as_bytes(),
        )) {
            found = Some(step);
        }
    }
    found
}

/// The code for `secret` at `now`: what an authenticator app shows (tests, and nothing else).
pub fn code_at(secret: &[u8], now: i64) -> String {
    totp(secret, "", "").generate(now.max(0) as u64)
}

/// The code for a secret as the enrollment shows it (base32) at `now`: what an authenticator
/// app computes from the typed-in key (tests and browser tests read the page and use this).
pub fn code_for_base32(secret: &str, now: i64) -> Option<String> {
    let raw = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .ok()?;
    Some(code_at(&raw, now))
}

/// The secret as authenticator apps take it typed in: base32, no padding.
pub fn secret_base32(secret: &[u8]) -> String {
    totp_rs::Secret::Raw(secret.to_vec())
        .to_encoded()
        .to_string()
}

/// `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=…` (Google Authenticator's key URI format).
pub fn otpauth_url(secret: &[u8], issuer: &str, account: &str) -> String {
    totp(secret, issuer, account).get_url()
}

/// The QR code of `text` as an SVG document, drawn here.
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => code
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
        // A URI too long for a QR code: the secret is shown as text beside it anyway.
        Err(_) => String::new(),
    }
}

const CODE_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// Ten recovery codes of 80 random bits each, written `xxxx-xxxx-xxxx-xxxx` in an alphabet
/// without look-alikes (no 0/o, 1/l).
pub fn new_recovery_codes() -> Vec<String> {
    (0..RECOVERY_CODES)
        .map(|_| {
            let mut bytes = [0u8; 16];
            rand::rngs::OsRng.fill_bytes(&mut bytes);
            let chars: Vec<char> = bytes
                .iter()
                .map(|b| CODE_ALPHABET[usize::from(b & 31)] as char)
                .collect();
            chars
                .chunks(4)
                .map(|c| c.iter().collect::<String>())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// How a recovery code is stored and looked up: SHA-256 of its letters, case and dashes aside.
/// 80 random bits need no slow hash: nobody guesses them offline.
pub fn recovery_digest(code: &str) -> String {
    let normal: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect();
    crate::credential::hex(&Sha256::digest(normal.as_bytes()))
}

/// Whether what a person typed is shaped like a recovery code rather than a TOTP code.
pub fn looks_like_recovery_code(code: &str) -> bool {
    code.chars().filter(|c| c.is_ascii_alphanumeric()).count() == 16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_for_their_person_and_key() {
        let key = STANDARD.encode([7u8; 32]);
        let sealer = Sealer::from_base64(&key).unwrap();
        let sealed = sealer.seal("users:alice", b"secret");
        assert!(!sealed.contains("secret"));
        assert_eq!(sealer.open("users:alice", &sealed).unwrap(), b"secret");
        assert_eq!(sealer.open("users:bob", &sealed), None);
        let other = Sealer::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert_eq!(other.open("users:alice", &sealed), None);
        assert_ne!(
            sealer.seal("users:alice", b"secret"),
            sealed,
            "a nonce per seal"
        );
        assert!(Sealer::from_base64("c2hvcnQ=")
            .unwrap_err()
            .contains("openssl rand"));
        assert!(Sealer::from_base64("!!").is_err());
    }

    #[test]
    fn codes_are_good_one_step_either_side() {
        let secret = new_secret();
        let now = 1_700_000_015;
        let step = now / STEP_SECS;
        assert_eq!(verify(&secret, &code_at(&secret, now), now), Some(step));
        assert_eq!(
            verify(&secret, &code_at(&secret, now - 30), now),
            Some(step - 1)
        );
        assert_eq!(
            verify(&secret, &code_at(&secret, now + 30), now),
            Some(step + 1)
        );
        assert_eq!(verify(&secret, &code_at(&secret, now - 60), now), None);
        assert_eq!(verify(&secret, "12345", now), None);
        assert_eq!(verify(&secret, "abcdef", now), None);
    }

    #[test]
    fn rfc6238_vector() {
        // RFC 6238, appendix B: SHA-1, T = 59 s, the 8-digit code 94287082 ends in 287082.
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59), "287082");
    }

    #[test]
    fn recovery_codes_are_distinct_and_digest_loosely() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 10);
        assert!(looks_like_recovery_code(&codes[0]));
        assert!(!looks_like_recovery_code("123456"));
        assert_eq!(
            recovery_digest(&codes[0]),
            recovery_digest(&codes[0].to_uppercase().replace('-', " "))
        );
    }

    #[test]
    fn enrollment_material() {
        let secret = new_secret();
        let url = otpauth_url(&secret, "mtx-auth", "alice");
        assert!(url.starts_with("otpauth://totp/mtx-auth:alice?"), "{url}");
        assert!(url.contains(&secret_base32(&secret)));
        assert_eq!(
            code_for_base32(&secret_base32(&secret), 1000),
            Some(code_at(&secret, 1000))
        );
        assert!(qr_svg(&url).starts_with("<?xml"));
    }
}
