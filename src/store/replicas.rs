//! What several replicas on one store share beyond the credentials (`feed`): the brute-force
//! limits' failures, the account sources' per-name attempts, and who is alive — so that a
//! replica that died has its live sessions adopted (and kicked when their grant ends) by one
//! that did not.
//!
//! The limits' failures are written in batches ([`SYNC_EVERY`]) and read back the same way:
//! a password spray across replicas costs the database a few statements a second, not one per
//! guess. Per-name attempts are reserved one by one, before each upstream call, because there
//! "close enough" is a locked-out household.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;

use crate::cache::SecretHasher;
use crate::limiter::SharedCounts;
use crate::source::account::NameLedger;
use crate::source::backend::BoxFuture;
use crate::store::{Store, StoreError};
use crate::time::now_unix;

/// How often failures are written and the others' read: the contract's 2 s with room to spare.
pub const SYNC_EVERY: Duration = Duration::from_millis(500);

/// How often a replica says it is alive, and after how long without a word it is taken for
/// gone (its sessions are adopted).
pub const HEARTBEAT: Duration = Duration::from_secs(5);
pub const GONE_AFTER: i64 = 15;

/// Rows per statement when failures are written: far below both engines' parameter limits.
const BATCH: usize = 200;

impl Store {
    /// Adds this replica's failures (keyed hashes, counts) to its rows, each living `window`
    /// from its first failure, in one transaction with one statement per [`BATCH`].
    pub async fn add_failures(
        &self,
        failures: &[(u128, u32)],
        now: i64,
        window: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        let rev = self.bump(&mut tx, "failures").await?;
        for chunk in failures.chunks(BATCH) {
            let rows: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, $1, ${}, $2, $3)", 5 + 2 * i, 6 + 2 * i))
                .collect();
            let sql = format!(
                "INSERT INTO limit_failures (key, replica, failures, expires_at, rev) VALUES {} \
                 ON CONFLICT (key, replica) DO UPDATE SET \
                 failures = CASE WHEN limit_failures.expires_at <= $4 THEN excluded.failures \
                 ELSE limit_failures.failures + excluded.failures END, \
                 expires_at = CASE WHEN limit_failures.expires_at <= $4 THEN excluded.expires_at \
                 ELSE limit_failures.expires_at END, rev = excluded.rev",
                rows.join(", ")
            );
            let mut query = sqlx::query(&sql)
                .bind(self.replica().to_owned())
                .bind(now + window)
                .bind(rev)
                .bind(now);
            for (key, n) in chunk {
                query = query.bind(format!("{key:032x}")).bind(i64::from(*n));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// For every key another replica counted a failure for since revision `after`: the failures
    /// all other replicas hold for it now, and until when. Returns the revision read up to.
    pub async fn failures_since(
        &self,
        after: i64,
        now: i64,
    ) -> Result<(i64, Vec<(u128, u32, i64)>), StoreError> {
        let rev = self.revision("failures").await?;
        if rev == after {
            return Ok((rev, Vec::new()));
        }
        let rows = sqlx::query(
            "SELECT key, CAST(SUM(failures) AS BIGINT), MAX(expires_at) FROM limit_failures \
             WHERE replica <> $1 AND expires_at > $2 AND key IN \
             (SELECT key FROM limit_failures WHERE rev > $3 AND rev <= $4 AND replica <> $1) \
             GROUP BY key",
        )
        .bind(self.replica().to_owned())
        .bind(now)
        .bind(after)
        .bind(rev)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let key: String = r.try_get(0)?;
            let n: i64 = r.try_get(1)?;
            let until: i64 = r.try_get(2)?;
            if let Ok(key) = u128::from_str_radix(&key, 16) {
                out.push((key, u32::try_from(n).unwrap_or(u32::MAX), until));
            }
        }
        Ok((rev, out))
    }

    /// Reserves one per-name attempt under `max` (see [`NameLedger`]), in one conditional
    /// statement: two replicas reserving the last place at once get it once.
    pub async fn reserve_name(
        &self,
        key: &str,
        max: u32,
        now: i64,
        window: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "INSERT INTO name_attempts (key, attempts, expires_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET \
             attempts = CASE WHEN name_attempts.expires_at <= $3 THEN 1 \
             ELSE name_attempts.attempts + 1 END, \
             expires_at = CASE WHEN name_attempts.expires_at <= $3 THEN $2 \
             ELSE name_attempts.expires_at END \
             WHERE name_attempts.expires_at <= $3 OR name_attempts.attempts < $4 \
             RETURNING attempts",
        )
        .bind(key)
        .bind(now + window)
        .bind(now)
        .bind(i64::from(max))
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Gives one reserved attempt back.
    pub async fn release_name(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE name_attempts SET attempts = attempts - 1 WHERE key = $1 AND attempts > 0",
        )
        .bind(key)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Forgets a name's attempts (a good login).
    pub async fn clear_name(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM name_attempts WHERE key = $1")
            .bind(key)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Says this replica is alive at `now`.
    pub async fn heartbeat(&self, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO replicas (id, seen_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO UPDATE SET seen_at = $2",
        )
        .bind(self.replica().to_owned())
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Forgets what ran out: failures and name attempts past their window, replicas gone for
    /// a day (their sessions were adopted long before).
    pub async fn purge_shared(&self, now: i64) -> Result<(), StoreError> {
        for sql in [
            "DELETE FROM limit_failures WHERE expires_at <= $1",
            "DELETE FROM name_attempts WHERE expires_at <= $1",
        ] {
            sqlx::query(sql).bind(now).execute(self.pool()).await?;
        }
        sqlx::query("DELETE FROM replicas WHERE seen_at < $1")
            .bind(now - 86_400)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

/// Keeps `counts` in step with the other replicas' failures, forever: writes this replica's
/// new failures, reads what the others counted. While the store is unreachable the failures
/// wait in memory (the limits still hold per replica) and go out with the next batch.
pub async fn share_failures(store: Store, counts: Arc<SharedCounts>, window: Duration) {
    let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2);
    let mut read_up_to = 0;
    let mut failing = false;
    let mut purged = 0;
    loop {
        tokio::time::sleep(SYNC_EVERY).await;
        let now = now_unix();
        let pending = counts.take_pending();
        let wrote = if pending.is_empty() {
            Ok(())
        } else {
            let result = bounded(store.add_failures(&pending, now, window)).await;
            if result.is_err() {
                counts.restore_pending(pending);
            }
            result
        };
        let read = match wrote {
            Ok(()) => bounded(store.failures_since(read_up_to, now)).await,
            Err(e) => Err(e),
        };
        match read {
            Ok((rev, others)) => {
                for (key, n, until) in others {
                    counts.set_others(key, n, until);
                }
                read_up_to = rev;
                if failing {
                    tracing::info!("failure counts shared with the other replicas again");
                    failing = false;
                }
            }
            Err(e) if !failing => {
                tracing::warn!(error = %e, "cannot share failure counts through the store; each replica limits on its own meanwhile");
                failing = true;
            }
            Err(_) => {}
        }
        if now - purged >= 60 && !failing {
            purged = now;
            if let Err(e) = bounded(store.purge_shared(now)).await {
                tracing::debug!(error = %e, "cannot purge expired failure counts");
            }
        }
    }
}

/// A store query that gives up after 5 s: a database that stopped answering (rather than
/// refusing) must not stall a background task for as long as TCP takes to notice.
pub async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(Duration::from_secs(5), query).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Query(sqlx::Error::PoolTimedOut)),
    }
}

/// [`NameLedger`] in the store: keys are keyed hashes (the store's `limits_key`) of the
/// upstream and the name, so no user name is written.
pub struct StoreLedger {
    store: Store,
    hasher: SecretHasher,
}

impl StoreLedger {
    pub fn new(store: Store, key: [u8; 16]) -> Self {
        StoreLedger {
            store,
            hasher: SecretHasher::with_key(key),
        }
    }

    fn key(&self, upstream: &str, name: &str) -> String {
        format!(
            "{:032x}",
            self.hasher.hash(3, &[upstream.as_bytes(), name.as_bytes()])
        )
    }

    /// Runs a bookkeeping statement in the background: the login's answer does not wait for
    /// it. One that fails leaves the place taken until its window ends (the safe side).
    fn spawn(&self, key: String, clear: bool) {
        let store = self.store.clone();
        tokio::spawn(async move {
            let result = match clear {
                true => bounded(store.clear_name(&key)).await,
                false => bounded(store.release_name(&key)).await,
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "cannot give a login's place back in the store; it stays taken until its window ends");
            }
        });
    }
}

impl NameLedger for StoreLedger {
    fn reserve<'a>(
        &'a self,
        upstream: &'a str,
        name: &'a str,
        max: u32,
        window: Duration,
    ) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let key = self.key(upstream, name);
            let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX / 2);
            bounded(self.store.reserve_name(&key, max, now_unix(), window))
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn release(&self, upstream: &str, name: &str) {
        self.spawn(self.key(upstream, name), false);
    }

    fn clear(&self, upstream: &str, name: &str) {
        self.spawn(self.key(upstream, name), true);
    }
}
