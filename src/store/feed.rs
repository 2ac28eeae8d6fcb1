//! Keeps the memory that decisions read in step with the store: the credentials' revision is
//! read (one small query), and when it moved, the rows changed since are applied to
//! [`IssuedCredentials`]. A credential issued or revoked by the command line, another replica or
//! the portal is thus in force within a second, with no reload; `/auth` never waits for it.
//!
//! SQLite is asked every [`POLL`]. PostgreSQL tells: writers `NOTIFY` on [`CHANNEL`] as they
//! commit, the feed `LISTEN`s and reads at once, and asks anyway every [`CATCH_UP`] for what a
//! lost listening connection missed.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::reader::parse_net;
use crate::credential::{from_hex, hex};
use crate::issued::{CredentialDigest, Issued, IssuedCredentials};
use crate::permission::{Action, PathMatcher, Permission};
use crate::store::replicas::bounded;
use crate::store::{CredentialRecord, Engine, Store, StoreError, CHANNEL};
use crate::time::now_unix;

/// How often a SQLite store is asked whether credentials changed: well inside the contract's
/// second.
pub const POLL: Duration = Duration::from_millis(250);

/// How often a PostgreSQL store is asked even without a notification.
pub const CATCH_UP: Duration = Duration::from_secs(1);

/// The credentials' side of the store, as far as this process has read it.
pub struct CredentialFeed {
    store: Store,
    issued: Arc<IssuedCredentials>,
    revision: i64,
}

impl CredentialFeed {
    /// Reads every credential into `issued`.
    pub async fn load(store: Store, issued: Arc<IssuedCredentials>) -> Result<Self, StoreError> {
        let mut feed = CredentialFeed {
            store,
            issued,
            revision: -1,
        };
        feed.poll().await?;
        feed.store.health.synced(now_unix());
        Ok(feed)
    }

    /// Applies what changed since the last poll. Returns the credentials that changed, so that
    /// sessions they let in can be looked at again.
    pub async fn poll(&mut self) -> Result<Vec<Arc<Issued>>, StoreError> {
        if self.revision >= 0 && self.store.credentials_revision().await? == self.revision {
            return Ok(Vec::new());
        }
        let (revision, records) = self.store.credentials_since(self.revision).await?;
        let changed: Vec<_> = records
            .iter()
            .map(|r| {
                let (digest, issued) = issued_from(r);
                (digest, Arc::new(issued))
            })
            .collect();
        let credentials = changed.iter().map(|(_, c)| Arc::clone(c)).collect();
        self.issued.apply(changed);
        self.revision = revision;
        Ok(credentials)
    }

    /// Follows the store forever, handing the changed credentials to `changed`. A failed read
    /// is logged once per outage and marks the store down; decisions go on from memory.
    pub async fn run(mut self, changed: impl Fn(Vec<Arc<Issued>>)) {
        let mut failing = false;
        let mut listener = None;
        loop {
            self.wait(&mut listener).await;
            match bounded(self.poll()).await {
                Ok(ids) => {
                    self.store.health.synced(now_unix());
                    if failing {
                        tracing::info!(store = %self.store.describe(), "store reachable again");
                        failing = false;
                    }
                    if !ids.is_empty() {
                        changed(ids);
                    }
                }
                Err(e) => {
                    self.store.health.failed();
                    if !failing {
                        tracing::warn!(error = %e, "cannot read credential changes; deciding from what is in memory");
                        failing = true;
                    }
                }
            }
        }
    }

    /// Until it is time to read again: the next poll, or (PostgreSQL) a notification or the
    /// next catch-up. The listening connection is opened again when it was lost.
    async fn wait(&self, listener: &mut Option<sqlx::postgres::PgListener>) {
        let Some(url) = self
            .store
            .listen_url()
            .filter(|_| self.store.engine() == Engine::Postgres)
        else {
            return tokio::time::sleep(POLL).await;
        };
        if listener.is_none() {
            *listener = listen(url).await;
            if listener.is_some() {
                // Whatever was committed while nobody listened: read now.
                return;
            }
        }
        let Some(l) = listener else {
            return tokio::time::sleep(CATCH_UP).await;
        };
        let sleep = tokio::time::sleep(CATCH_UP);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return,
                got = l.try_recv() => match got {
                    Ok(Some(n)) if n.payload() != "credentials" => continue,
                    Ok(Some(_)) => return,
                    // The connection was lost: listen again next time.
                    Ok(None) | Err(_) => {
                        *listener = None;
                        return;
                    }
                },
            }
        }
    }
}

/// A connection that `LISTEN`s on [`CHANNEL`], or `None` while the database cannot be reached.
async fn listen(url: &str) -> Option<sqlx::postgres::PgListener> {
    let connect = async {
        let mut l = sqlx::postgres::PgListener::connect(url).await?;
        l.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(l)
    };
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(l)) => Some(l),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "cannot listen for store changes yet");
            None
        }
        Err(_) => None,
    }
}

/// A stored credential as decisions read it. A row that does not read back (hand-edited, or
/// from a newer version) is kept as revoked: it must deny, not vanish into "unknown" silently.
pub fn issued_from(record: &CredentialRecord) -> (CredentialDigest, Issued) {
    let permissions: Result<Vec<_>, String> = record
        .permissions
        .iter()
        .map(|p| {
            Ok(Permission {
                action: p
                    .action
                    .parse::<Action>()
                    .map_err(|e| format!("{:?}: {e}", p.action))?,
                path: PathMatcher::parse(&p.path).map_err(|e| format!("{:?}: {e}", p.path))?,
            })
        })
        .collect();
    let ips: Result<Vec<IpNet>, String> = record
        .ips
        .iter()
        .map(|n| parse_net(n).ok_or_else(|| format!("ips: {n:?} is not a CIDR")))
        .collect();
    let digest = from_hex::<32>(&record.digest);
    let broken = match (&permissions, &ips, digest) {
        (Err(e), _, _) | (_, Err(e), _) => Some(e.clone()),
        (_, _, None) => Some("digest is not 64 hex digits".to_owned()),
        _ => None,
    };
    if let Some(problem) = &broken {
        tracing::warn!(id = %record.id, problem = %problem, "stored credential unreadable; it is denied");
    }
    let issued = Issued {
        id: record.id.as_str().into(),
        name: record.name.clone(),
        permissions: permissions.unwrap_or_default(),
        expires_at: record.expires_at,
        revoked: record.revoked_at.is_some() || broken.is_some(),
        ips: ips.unwrap_or_default(),
    };
    (digest.unwrap_or([0; 32]), issued)
}

/// Lowercase hex, as the store keeps digests.
pub fn hex_digest(digest: &CredentialDigest) -> String {
    hex(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_through_hex() {
        let d = crate::issued::digest("mtxa_x");
        assert_eq!(from_hex::<32>(&hex_digest(&d)), Some(d));
        assert_eq!(from_hex::<32>("zz"), None);
        assert_eq!(from_hex::<32>(&"g".repeat(64)), None);
    }
}
