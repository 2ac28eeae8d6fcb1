//! HTTP to the services we depend on (JWKS, Jellyfin, Emby, plex.tv, the OIDC token endpoint):
//! one way to build a client, to read a bounded JSON body and to describe a failure.
//!
//! Error texts here go to our log only, and never hold a URL: an operator knows the URL, and a
//! query string may carry a credential.

use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// Largest upstream document read. A JWKS, a user object or a Plex resource list is a few KiB;
/// anything near this limit is not what we asked for.
pub const MAX_DOCUMENT: usize = 1024 * 1024;

/// `mtx-auth/<version>`, sent as the User-Agent and as the client version the media servers ask
/// for.
pub const USER_AGENT: &str = concat!("mtx-auth/", env!("CARGO_PKG_VERSION"));

/// A client whose every request ends within `timeout`: MediaMTX stalls every stream while it
/// waits for us, so no upstream may hold a decision longer.
pub fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .expect("static client settings are valid")
}

/// Like [`client`], but trusting exactly one server certificate: the one whose DER encoding has
/// SHA-256 `pin` (MediaMTX's `authJWTJWKSFingerprint`). This is how a key server with a
/// self-signed certificate is reached without turning verification off: the chain, the name and
/// the dates are not checked, since the pin says more than they would, but the server must still
/// prove in the handshake that it holds the certificate's private key.
pub fn pinned_client(timeout: Duration, pin: [u8; 32]) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = PinnedCertificate {
        pin,
        algorithms: provider.signature_verification_algorithms,
    };
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(timeout)
        .connect_timeout(timeout)
        .user_agent(USER_AGENT)
        .build()
        .expect("static client settings are valid")
}

/// Accepts the server certificate whose SHA-256 is `pin`, and no other.
#[derive(Debug)]
struct PinnedCertificate {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let found: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if found == self.pin {
            return Ok(ServerCertVerified::assertion());
        }
        // A replaced certificate is the usual cause: say which one the server now has, so the
        // operator can check it and update the pin. Certificates are public; nothing secret here.
        tracing::warn!(
            expected = %crate::credential::hex(&self.pin),
            found = %crate::credential::hex(&found),
            "the key server's certificate does not match jwks_fingerprint"
        );
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why talking to an upstream failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("request {0}")]
    Http(&'static str),
    #[error("answered HTTP {0}")]
    Status(u16),
    #[error("document larger than {MAX_DOCUMENT} bytes")]
    TooLarge,
    #[error("not a valid document: {0}")]
    Invalid(String),
}

impl From<reqwest::Error> for UpstreamError {
    /// reqwest's error without the URL.
    fn from(e: reqwest::Error) -> Self {
        UpstreamError::Http(if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "could not connect"
        } else if e.is_body() || e.is_decode() {
            "body could not be read"
        } else {
            "failed"
        })
    }
}

/// Reads a response body of at most `MAX_DOCUMENT` bytes as JSON, whatever its status (error
/// bodies carry reasons too). The caller looks at the status first.
pub async fn read_json(mut resp: reqwest::Response) -> Result<Value, UpstreamError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT as u64)
    {
        return Err(UpstreamError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > MAX_DOCUMENT {
            return Err(UpstreamError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| UpstreamError::Invalid(e.to_string()))
}

/// Reads a successful response as JSON; any other status is an error.
pub async fn success_json(resp: reqwest::Response) -> Result<Value, UpstreamError> {
    if !resp.status().is_success() {
        return Err(UpstreamError::Status(resp.status().as_u16()));
    }
    read_json(resp).await
}
