//! The portal's rows (migration 0002): web sessions, second factors, recovery codes and pending
//! sign-ins. Every secret arrives here already digested or encrypted; what a replica must see at
//! once (a logout, a used TOTP step, a used recovery code) is decided by one conditional
//! statement, so two replicas racing cannot both win.

use sqlx::any::AnyRow;
use sqlx::Row;

use crate::store::{Store, StoreError};

/// A signed-in (or half signed-in) browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// SHA-256 of the cookie's id, hex.
    pub digest: String,
    /// `source:stable id`.
    pub person: String,
    /// JSON: who the person is and what they hold (`portal::people::Person`).
    pub profile: String,
    /// False while the second factor is due.
    pub complete: bool,
    /// Wrong codes so far while the second factor is due.
    pub failures: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A person's enrolled second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaRecord {
    /// The TOTP secret, encrypted (`portal::mfa::Sealer`).
    pub secret: String,
    /// The last time step a code was accepted for.
    pub last_step: i64,
}

const SELECT_WEB_SESSIONS: &str =
    "SELECT digest, person, profile, complete, failures, created_at, expires_at FROM web_sessions";

fn web_session(r: &AnyRow) -> Result<WebSession, StoreError> {
    Ok(WebSession {
        digest: r.try_get(0)?,
        person: r.try_get(1)?,
        profile: r.try_get(2)?,
        complete: r.try_get::<i64, _>(3)? != 0,
        failures: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
    })
}

impl Store {
    /// Stores a new web session; when `replaces` names one, that one ends in the same
    /// transaction (the cookie changes after sign-in and after the second factor). `false`:
    /// the one to replace had already ended (logged out elsewhere), and nothing was stored.
    pub async fn put_web_session(
        &self,
        s: &WebSession,
        replaces: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        if let Some(old) = replaces {
            let gone = sqlx::query("DELETE FROM web_sessions WHERE digest = $1")
                .bind(old)
                .execute(&mut *tx)
                .await?;
            if gone.rows_affected() == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query(
            "INSERT INTO web_sessions (digest, person, profile, complete, failures, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.digest)
        .bind(&s.person)
        .bind(&s.profile)
        .bind(i64::from(s.complete))
        .bind(s.failures)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The web session with this digest, unless it ended or expired by `now`.
    pub async fn web_session(
        &self,
        digest: &str,
        now: i64,
    ) -> Result<Option<WebSession>, StoreError> {
        let row = sqlx::query(&format!(
            "{SELECT_WEB_SESSIONS} WHERE digest = $1 AND expires_at > $2"
        ))
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(web_session).transpose()
    }

    /// Every live web session, newest first (the administrators' page).
    pub async fn web_sessions(&self, now: i64) -> Result<Vec<WebSession>, StoreError> {
        let rows = sqlx::query(&format!(
            "{SELECT_WEB_SESSIONS} WHERE expires_at > $1 ORDER BY created_at DESC"
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(web_session).collect()
    }

    /// Ends one web session. `false`: it had already ended.
    pub async fn end_web_session(&self, digest: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM web_sessions WHERE digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends every web session of a person ("sign out everywhere", an administrator's revoke, a
    /// grant that ended); returns the digests of those that were.
    pub async fn end_web_sessions_of(&self, person: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("DELETE FROM web_sessions WHERE person = $1 RETURNING digest")
            .bind(person)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Counts a wrong second-factor code against a pending sign-in and returns the count; at
    /// `limit` the pending sign-in ends. Counted in the store, so parallel guesses on several
    /// replicas share the one count.
    pub async fn count_mfa_failure(&self, digest: &str, limit: i64) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "UPDATE web_sessions SET failures = failures + 1 WHERE digest = $1 AND complete = 0 RETURNING failures",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?;
        let failures = match row {
            Some(row) => row.try_get(0)?,
            None => limit,
        };
        if failures >= limit {
            self.end_web_session(digest).await?;
        }
        Ok(failures)
    }

    /// Forgets web sessions and pending sign-ins that expired by `now`.
    pub async fn purge_portal(&self, now: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM pending_signins WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A person's enrolled second factor, if any.
    pub async fn mfa(&self, person: &str) -> Result<Option<MfaRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT secret, last_step FROM mfa WHERE person = $1 AND enrolled_at IS NOT NULL",
        )
        .bind(person)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(MfaRecord {
                secret: r.try_get(0)?,
                last_step: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// Takes TOTP time step `step` for `person`: `true` once, for a step after every step
    /// accepted before; `false` for a replay (here or on another replica) or an older step.
    pub async fn take_totp_step(&self, person: &str, step: i64) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE mfa SET last_step = $1 WHERE person = $2 AND last_step < $1")
                .bind(step)
                .bind(person)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Enrolls (or enrolls again) `person` with an encrypted secret whose first code used step
    /// `step`, and replaces their recovery codes with `codes` (digests).
    pub async fn enroll_mfa(
        &self,
        person: &str,
        secret: &str,
        step: i64,
        codes: &[String],
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO mfa (person, secret, enrolled_at, last_step, created_at) VALUES ($1, $2, $3, $4, $3) \
             ON CONFLICT (person) DO UPDATE SET secret = $2, enrolled_at = $3, last_step = $4",
        )
        .bind(person)
        .bind(secret)
        .bind(now)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM recovery_codes WHERE person = $1")
            .bind(person)
            .execute(&mut *tx)
            .await?;
        for code in codes {
            sqlx::query(
                "INSERT INTO recovery_codes (person, digest, used_at) VALUES ($1, $2, NULL)",
            )
            .bind(person)
            .bind(code)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Uses a recovery code (by digest): `true` the one time it is unused.
    pub async fn use_recovery_code(
        &self,
        person: &str,
        digest: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE recovery_codes SET used_at = $1 WHERE person = $2 AND digest = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(person)
        .bind(digest)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Recovery codes a person has left.
    pub async fn recovery_codes_left(&self, person: &str) -> Result<i64, StoreError> {
        Ok(
            sqlx::query(
                "SELECT COUNT(*) FROM recovery_codes WHERE person = $1 AND used_at IS NULL",
            )
            .bind(person)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?,
        )
    }

    /// Keeps what a sign-in (or an enrollment) needs until it finishes, under the digest of
    /// the cookie that holds its handle; replaces what that handle held before.
    pub async fn put_pending(
        &self,
        digest: &str,
        kind: &str,
        data: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pending_signins (digest, kind, data, expires_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (digest) DO UPDATE SET kind = $2, data = $3, expires_at = $4",
        )
        .bind(digest)
        .bind(kind)
        .bind(data)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What a pending sign-in of `kind` holds, without using it up (a Plex PIN being polled).
    pub async fn pending(
        &self,
        digest: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT data FROM pending_signins WHERE digest = $1 AND kind = $2 AND expires_at > $3",
        )
        .bind(digest)
        .bind(kind)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok(r.try_get(0)?)).transpose()
    }

    /// Uses a pending sign-in up: what it held, the one time it is taken.
    pub async fn take_pending(
        &self,
        digest: &str,
        kind: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM pending_signins WHERE digest = $1 AND kind = $2 RETURNING data, expires_at",
        )
        .bind(digest)
        .bind(kind)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get(1)?;
        Ok((expires_at > now).then(|| row.try_get(0)).transpose()?)
    }

    /// The portal links in force, newest first: those `owner` made, or with `None`, every
    /// person's (links made by the command line have no owner and are not among them).
    pub async fn links_in_force(
        &self,
        owner: Option<&str>,
        now: i64,
    ) -> Result<Vec<crate::store::CredentialRecord>, StoreError> {
        let whose = match owner {
            Some(_) => "owner = $2",
            None => "owner IS NOT NULL",
        };
        let sql = format!(
            "{} WHERE {whose} AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1) \
             ORDER BY created_at DESC, id",
            crate::store::SELECT_CREDENTIALS
        );
        let mut query = sqlx::query(&sql).bind(now);
        if let Some(owner) = owner {
            query = query.bind(owner);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(crate::store::credential_record).collect()
    }
}
