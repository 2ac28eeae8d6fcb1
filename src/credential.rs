//! Credentials as MediaMTX stores them: plain, `sha256:` and `argon2:`.
//!
//! This is the only module that touches raw secrets. Every comparison here is constant time
//! (`subtle`), and no type in it prints a secret: `Debug` shows the kind of credential only.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a configured credential value was refused at load time.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("value is empty")]
    Empty,
    #[error("sha256 value must be standard base64 of a 32-byte SHA-256 digest")]
    BadSha256,
    #[error("argon2 value is not a valid PHC string: {0}")]
    BadArgon2(String),
    #[error("argon2d is not supported (MediaMTX accepts argon2id and argon2i only)")]
    Argon2d,
    #[error(
        "plain value contains characters MediaMTX does not allow \
         (allowed: a-z A-Z 0-9 and !$()*+.;<=>[]^_-{{}}@#&)"
    )]
    BadPlainCharset,
}

/// One configured secret (a user name or a password).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    Plain(String),
    /// The SHA-256 digest of the secret.
    Sha256([u8; 32]),
    Argon2(Argon2Hash),
}

/// A configured secret borrowed from wherever it is kept: a `Credential`, or the compact storage
/// of `crate::source::users`, which packs thousands of names and passwords into one buffer
/// instead of one allocation each. The comparisons are written here once, for both.
#[derive(Clone, Copy)]
pub enum CredentialRef<'a> {
    /// Bytes of a plain value (MediaMTX's plain charset is ASCII).
    Plain(&'a [u8]),
    Sha256(&'a [u8; 32]),
    Argon2(&'a Argon2Hash),
}

/// A validated argon2id/argon2i PHC string. Parsed once at load so that verification can
/// never fail on a malformed hash.
#[derive(Clone, PartialEq, Eq)]
pub struct Argon2Hash(String);

impl Credential {
    /// Parses a value in MediaMTX's format. Empty values are rejected here; callers decide what
    /// "empty" means for them (any password, or a config error for a user name).
    pub fn parse(value: &str) -> Result<Self, CredentialError> {
        if value.is_empty() {
            return Err(CredentialError::Empty);
        }
        if let Some(b64) = value.strip_prefix("sha256:") {
            let digest = BASE64
                .decode(b64)
                .ok()
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or(CredentialError::BadSha256)?;
            return Ok(Credential::Sha256(digest));
        }
        if let Some(phc) = value.strip_prefix("argon2:") {
            return Argon2Hash::parse(phc).map(Credential::Argon2);
        }
        if !value.chars().all(is_plain_char) {
            return Err(CredentialError::BadPlainCharset);
        }
        Ok(Credential::Plain(value.to_owned()))
    }

    /// The same credential, borrowed.
    pub fn borrowed(&self) -> CredentialRef<'_> {
        match self {
            Credential::Plain(p) => CredentialRef::Plain(p.as_bytes()),
            Credential::Sha256(d) => CredentialRef::Sha256(d),
            Credential::Argon2(h) => CredentialRef::Argon2(h),
        }
    }

    /// True when checking this credential costs an argon2 computation (milliseconds).
    pub fn is_argon2(&self) -> bool {
        self.borrowed().is_argon2()
    }

    /// Checks a guess; see `CredentialRef::verify`.
    pub fn verify(&self, guess: &str) -> bool {
        self.borrowed().verify(guess)
    }

    /// A short name of the kind, for `explain` and debugging output.
    pub fn kind(&self) -> &'static str {
        self.borrowed().kind()
    }
}

impl CredentialRef<'_> {
    /// True when checking this credential costs an argon2 computation (milliseconds).
    pub fn is_argon2(self) -> bool {
        matches!(self, CredentialRef::Argon2(_))
    }

    /// Checks a guess. For argon2 this is slow: callers on an async runtime must run it on a
    /// blocking thread (see `crate::verifier`).
    pub fn verify(self, guess: &str) -> bool {
        match self {
            CredentialRef::Plain(p) => ct_eq(p, guess.as_bytes()),
            CredentialRef::Sha256(d) => ct_eq(&Sha256::digest(guess.as_bytes()), d),
            CredentialRef::Argon2(h) => h.verify(guess),
        }
    }

    /// The value as configured, tagged with its kind: what a keyed digest of a `[[users]]`
    /// entry's credentials is taken over (`crate::sessions`). Never logged or stored as is.
    pub fn material(self) -> Vec<u8> {
        let (tag, bytes): (u8, &[u8]) = match self {
            CredentialRef::Plain(p) => (b'p', p),
            CredentialRef::Sha256(d) => (b's', d),
            CredentialRef::Argon2(h) => (b'a', h.0.as_bytes()),
        };
        let mut out = Vec::with_capacity(bytes.len() + 1);
        out.push(tag);
        out.extend_from_slice(bytes);
        out
    }

    /// A short name of the kind, for `explain` and debugging output.
    pub fn kind(self) -> &'static str {
        match self {
            CredentialRef::Plain(_) => "plain",
            CredentialRef::Sha256(_) => "sha256",
            CredentialRef::Argon2(_) => "argon2",
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credential::{}(***)", self.kind())
    }
}

impl fmt::Debug for CredentialRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialRef::{}(***)", self.kind())
    }
}

impl Argon2Hash {
    /// Accepts `$argon2id$…` and `$argon2i$…` PHC strings with valid parameters.
    pub fn parse(phc: &str) -> Result<Self, CredentialError> {
        let parsed =
            PasswordHash::new(phc).map_err(|e| CredentialError::BadArgon2(e.to_string()))?;
        match Algorithm::try_from(parsed.algorithm) {
            Ok(Algorithm::Argon2id) | Ok(Algorithm::Argon2i) => {}
            Ok(Algorithm::Argon2d) => return Err(CredentialError::Argon2d),
            Err(e) => return Err(CredentialError::BadArgon2(e.to_string())),
        }
        Params::try_from(&parsed).map_err(|e| CredentialError::BadArgon2(e.to_string()))?;
        if parsed.hash.is_none() || parsed.salt.is_none() {
            return Err(CredentialError::BadArgon2("missing salt or hash".into()));
        }
        Ok(Argon2Hash(phc.to_owned()))
    }

    /// Runs the full argon2 computation (milliseconds) and compares in constant time.
    pub fn verify(&self, guess: &str) -> bool {
        // The string was validated by `parse`, so this only fails if the crate changes its
        // mind about a string it accepted; failing closed is the right answer then.
        match PasswordHash::new(&self.0) {
            Ok(h) => Argon2::default()
                .verify_password(guess.as_bytes(), &h)
                .is_ok(),
            Err(_) => false,
        }
    }

    /// A hash with the same algorithm and cost as this one, of a random secret. Verifying
    /// against it takes as long as verifying against `self`; used to make a deny for an
    /// unknown user name cost the same as one for a known name with a wrong password.
    pub fn decoy(&self) -> Argon2Hash {
        let h = PasswordHash::new(&self.0).expect("validated in Argon2Hash::parse");
        let alg = Algorithm::try_from(h.algorithm).expect("validated in Argon2Hash::parse");
        let params = Params::try_from(&h).expect("validated in Argon2Hash::parse");
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let secret: [u8; 16] = rand::random();
        let out = Argon2::new(alg, argon2::Version::V0x13, params)
            .hash_password(&secret, &salt)
            .expect("parameters came from a valid hash");
        Argon2Hash(out.to_string())
    }
}

/// Constant-time equality of two byte strings. Like Go's `subtle.ConstantTimeCompare`, which
/// MediaMTX uses, the length itself is not hidden.
///
/// Eight bytes at a time: every word of both is read and folded into one difference, with no
/// branch on what they hold, and only that difference goes through `subtle` (which keeps the
/// compiler from turning the comparison into an early exit). `subtle`'s own slice comparison
/// takes a byte at a time, each through an optimisation barrier: several times the cost, on
/// every decision.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let mut diff = 0u64;
    for (x, y) in (&mut a_words).zip(&mut b_words) {
        diff |= u64::from_ne_bytes(x.try_into().unwrap_or_default())
            ^ u64::from_ne_bytes(y.try_into().unwrap_or_default());
    }
    for (x, y) in a_words.remainder().iter().zip(b_words.remainder()) {
        diff |= u64::from(x ^ y);
    }
    bool::from(diff.ct_eq(&0))
}

/// Lower-case hex: how digests, fingerprints and random ids are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Exactly `2 * N` hex digits (either case) back into bytes; `None` for anything else.
pub fn from_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    // `from_str_radix` alone would take a sign ("+f").
    if text.len() != 2 * N || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// MediaMTX's charset for plain credentials: `^[a-zA-Z0-9!$()*+.;<=>\[\]^_\-{}@#&]+$`.
fn is_plain_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!$()*+.;<=>[]^_-{}@#&".contains(c)
}

/// `argon2:` + an argon2id PHC string with OWASP's current minimum parameters
/// (m=19 MiB, t=2, p=1), for `mtx-auth hash`.
pub fn hash_argon2(secret: &str) -> String {
    let params = Params::new(19 * 1024, 2, 1, None).expect("constant parameters are valid");
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    let hash = Argon2::new(Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(secret.as_bytes(), &salt)
        .expect("hashing with valid parameters cannot fail");
    format!("argon2:{hash}")
}

/// `sha256:` + standard base64 of the SHA-256 digest, for `mtx-auth hash --sha256`.
pub fn hash_sha256(secret: &str) -> String {
    format!(
        "sha256:{}",
        BASE64.encode(Sha256::digest(secret.as_bytes()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_USER: &str = "sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ=";
    const ARGON2ID_USER: &str = "argon2:$argon2id$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$Ux/LWeTgJQPyfMMJo1myR64+o8rALHoPmlE1i/TR+58";
    const ARGON2I_PASS: &str = "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo";

    /// Every length around the word size, with a difference at every position (in words and
    /// in the remainder), and unequal lengths.
    #[test]
    fn ct_eq_finds_any_difference() {
        for len in 0..=25 {
            let a: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            assert!(ct_eq(&a, &a.clone()), "{len}");
            for at in 0..len {
                for bit in [0x01, 0x80] {
                    let mut b = a.clone();
                    b[at] ^= bit;
                    assert!(!ct_eq(&a, &b), "{len} {at} {bit}");
                }
            }
            let mut longer = a.clone();
            longer.push(0);
            assert!(!ct_eq(&a, &longer) && !ct_eq(&longer, &a), "{len}");
        }
    }

    #[test]
    fn mediamtx_known_values_verify() {
        assert!(Credential::parse(SHA_USER).unwrap().verify("testuser"));
        assert!(!Credential::parse(SHA_USER).unwrap().verify("testuse"));
        assert!(Credential::parse(ARGON2ID_USER).unwrap().verify("testuser"));
        assert!(!Credential::parse(ARGON2ID_USER).unwrap().verify("testpass"));
        assert!(Credential::parse(ARGON2I_PASS).unwrap().verify("testpass"));
    }

    #[test]
    fn plain_compares_whole_value() {
        let c = Credential::parse("secret").unwrap();
        assert!(c.verify("secret"));
        assert!(!c.verify("secre"));
        assert!(!c.verify("secret2"));
        assert!(!c.verify(""));
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(Credential::parse(""), Err(CredentialError::Empty));
        assert_eq!(
            Credential::parse("sha256:abc"),
            Err(CredentialError::BadSha256)
        );
        assert_eq!(
            Credential::parse("has space"),
            Err(CredentialError::BadPlainCharset)
        );
        assert_eq!(
            Credential::parse("caf\u{e9}"),
            Err(CredentialError::BadPlainCharset)
        );
        assert!(matches!(
            Credential::parse("argon2:$argon2id$nonsense"),
            Err(CredentialError::BadArgon2(_))
        ));
        let d = "argon2:$argon2d$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$Ux/LWeTgJQPyfMMJo1myR64+o8rALHoPmlE1i/TR+58";
        assert_eq!(Credential::parse(d), Err(CredentialError::Argon2d));
    }

    #[test]
    fn generated_hashes_verify() {
        let a = hash_argon2("hunter2");
        assert!(a.starts_with("argon2:$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(Credential::parse(&a).unwrap().verify("hunter2"));
        assert!(!Credential::parse(&a).unwrap().verify("hunter3"));
        assert_eq!(hash_sha256("testuser"), SHA_USER);
    }

    #[test]
    fn decoy_has_same_parameters() {
        let Credential::Argon2(h) = Credential::parse(ARGON2I_PASS).unwrap() else {
            unreachable!()
        };
        let decoy = h.decoy();
        assert!(decoy.0.starts_with("$argon2i$v=19$m=4096,t=3,p=1$"));
        assert!(!decoy.verify("testpass"));
    }

    #[test]
    fn debug_hides_secret() {
        let c = Credential::parse("supersecret").unwrap();
        assert!(!format!("{c:?}").contains("supersecret"));
        assert!(!format!("{:?}", c.borrowed()).contains("supersecret"));
    }
}
