//! An HTTPS front for the plain-HTTP fakes: a real TLS server on a loopback port, with a freshly
//! generated self-signed certificate, that passes each decrypted connection on to a backend
//! address. It stands for a key server whose operator made their own certificate, the case
//! MediaMTX's `authJWTJWKSFingerprint` (our `jwks_fingerprint`) exists for.

use std::net::SocketAddr;
use std::sync::Arc;

use sha2::{Digest as _, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

pub struct TlsFront {
    pub addr: SocketAddr,
    /// SHA-256 of the certificate's DER encoding: what `jwks_fingerprint` pins.
    pub sha256: [u8; 32],
}

impl TlsFront {
    /// Serves TLS on a new loopback port for as long as the test process runs, forwarding to
    /// `backend`. The certificate names `localhost` and is signed by nobody but itself.
    pub fn start(backend: SocketAddr) -> TlsFront {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])
            .expect("generate a certificate");
        let der: CertificateDer<'static> = certified.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let sha256: [u8; 32] = Sha256::digest(der.as_ref()).into();
        let config =
            ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(vec![der], key)
                .expect("a valid certificate and key");
        let acceptor = TlsAcceptor::from(Arc::new(config));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A client that refuses our certificate ends the handshake: not an error
                        // of the front's, just a connection that never carries a request.
                        let Ok(mut tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let Ok(mut plain) = TcpStream::connect(backend).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsFront { addr, sha256 }
    }

    /// The pin as MediaMTX writes it: 64 lower-case hex digits.
    pub fn fingerprint(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `url` (an `http://` address of the backend) as reached through this front.
    pub fn https(&self, url: &str) -> String {
        let path = url
            .strip_prefix("http://")
            .and_then(|rest| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        format!("https://{}{path}", self.addr)
    }
}
