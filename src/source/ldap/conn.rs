//! Connections to the directory: how one is opened (plain, `ldaps://` or StartTLS, with the
//! system's roots or a CA file), the service account's shared connection, and the small pool
//! of connections that user binds take one at a time.
//!
//! A search runs beside others on one connection (LDAP numbers its messages), so the service
//! account keeps a single connection, bound once, and every check's searches share it. A bind
//! changes who a connection is, so each user bind takes a connection of its own from the pool
//! and gives it back afterwards: the next bind on it replaces that identity.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};

use crate::config::reader::Secret;

/// Connections kept open for user binds between checks.
const MAX_IDLE: usize = 4;
/// User binds under way at once; more wait (within the check's deadline).
const MAX_BINDS: usize = 16;

/// Why an operation did not give an answer.
#[derive(Debug)]
pub enum Fail {
    /// The directory said no (for a user bind: wrong name or password).
    No(&'static str),
    /// The directory could not be asked, or answered something we cannot use.
    Down(String),
    /// A connection that had been used before turned out to be closed: worth one more try on
    /// a new one (the directory restarted, or closed an idle connection).
    Broken(String),
}

impl Fail {
    /// What an error of the client library means, on a connection that was (`reused`) or
    /// was not used before.
    pub fn of(e: LdapError, reused: bool) -> Fail {
        match e {
            LdapError::Timeout { .. } => Fail::Down("the directory did not answer in time".into()),
            LdapError::OpSend { .. }
            | LdapError::ResultRecv { .. }
            | LdapError::IdScrubSend { .. }
            | LdapError::EndOfStream
            | LdapError::Io { .. }
                if reused =>
            {
                Fail::Broken(e.to_string())
            }
            e => Fail::Down(e.to_string()),
        }
    }
}

/// Where the directory is and how to reach it.
pub struct Directory {
    pub url: String,
    starttls: bool,
    /// For `ldaps://` and StartTLS.
    tls: Option<Arc<ClientConfig>>,
    pub timeout: Duration,
}

impl Directory {
    pub fn new(
        url: String,
        starttls: bool,
        tls: Option<Arc<ClientConfig>>,
        timeout: Duration,
    ) -> Self {
        Directory {
            url,
            starttls,
            tls,
            timeout,
        }
    }

    /// A new connection (TLS established, nobody bound), driven in the background until its
    /// last handle is dropped.
    pub async fn connect(&self) -> Result<Ldap, Fail> {
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.timeout)
            .set_starttls(self.starttls);
        if let Some(tls) = &self.tls {
            settings = settings.set_config(Arc::clone(tls));
        }
        let (conn, ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(|e| Fail::of(e, false))?;
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(error = %e, "ldap: connection ended");
            }
        });
        Ok(ldap)
    }
}

/// The TLS settings for `ldaps://` and StartTLS: the certificates in `ca_file` (PEM), else the
/// system's roots. An error names what is wrong with the file.
pub fn tls_config(ca_file: Option<&str>) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("{path:?} is not PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("{path:?}: a certificate cannot be used: {e}"))?;
                added += 1;
            }
            if added == 0 {
                return Err(format!("{path:?} holds no certificate"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
    }
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The service account (`bind_dn`): one connection bound as it, shared by every search.
pub struct ServiceAccount {
    pub dn: String,
    password: Secret,
    /// The connection and its generation (so that only the connection that failed is
    /// forgotten, not one another check opened since).
    slot: Mutex<(u64, Option<Ldap>)>,
}

impl ServiceAccount {
    pub fn new(dn: String, password: Secret) -> Self {
        ServiceAccount {
            dn,
            password,
            slot: Mutex::new((0, None)),
        }
    }

    /// A handle on the shared connection, opening and binding a new one if there is none or it
    /// closed; with the connection's generation and whether it was open already.
    pub async fn handle(&self, dir: &Directory) -> Result<(Ldap, u64, bool), Fail> {
        let mut slot = self.slot.lock().await;
        if let Some(ldap) = slot.1.as_mut() {
            if !ldap.is_closed() {
                return Ok((ldap.clone(), slot.0, true));
            }
        }
        slot.1 = None;
        let mut ldap = dir.connect().await?;
        let result = ldap
            .with_timeout(dir.timeout)
            .simple_bind(&self.dn, &self.password.0)
            .await
            .map_err(|e| Fail::of(e, false))?;
        if result.rc != 0 {
            // A refused service account is our configuration, never the user's "no".
            return Err(Fail::Down(format!(
                "the service account's bind (bind_dn {:?}) was refused: {result}",
                self.dn
            )));
        }
        slot.0 += 1;
        slot.1 = Some(ldap.clone());
        Ok((ldap, slot.0, false))
    }

    /// Drops the shared connection of generation `generation` after it failed.
    pub async fn forget(&self, generation: u64) {
        let mut slot = self.slot.lock().await;
        if slot.0 == generation {
            slot.1 = None;
        }
    }
}

/// Connections for user binds, one bind at a time each.
pub struct BindPool {
    idle: std::sync::Mutex<Vec<Ldap>>,
    permits: Semaphore,
}

impl Default for BindPool {
    fn default() -> Self {
        BindPool {
            idle: std::sync::Mutex::new(Vec::new()),
            permits: Semaphore::new(MAX_BINDS),
        }
    }
}

/// A connection taken from the pool. Dropped, it is closed; `keep` gives it back.
pub struct Lease<'a> {
    pool: &'a BindPool,
    pub ldap: Ldap,
    /// Whether the connection had been used before (see `Fail::Broken`).
    pub reused: bool,
    _permit: SemaphorePermit<'a>,
}

impl Lease<'_> {
    /// Back to the pool, for the next bind.
    pub fn keep(self) {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < MAX_IDLE {
            idle.push(self.ldap);
        }
    }
}

impl BindPool {
    /// An idle connection that is still open, else a new one; `fresh` asks for a new one.
    pub async fn take(&self, dir: &Directory, fresh: bool) -> Result<Lease<'_>, Fail> {
        let permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| Fail::Down("closed".into()))?;
        if !fresh {
            loop {
                let next = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
                let Some(mut ldap) = next else { break };
                if !ldap.is_closed() {
                    return Ok(Lease {
                        pool: self,
                        ldap,
                        reused: true,
                        _permit: permit,
                    });
                }
            }
        }
        Ok(Lease {
            pool: self,
            ldap: dir.connect().await?,
            reused: false,
            _permit: permit,
        })
    }

    /// Closes every idle connection (after one of them turned out broken, the others likely
    /// are too).
    pub fn clear(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
