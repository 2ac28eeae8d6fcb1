//! The store: what must survive a restart or be seen by every replica (stream credentials and
//! their revocations, the secret mtx-auth's own API calls carry, the registry of live sessions).
//!
//! Embedded SQLite by default, through sqlx's `Any` driver so that the SQL written here is the SQL
//! a PostgreSQL store runs too: `$N` placeholders, integers for times and flags, TEXT for
//! identifiers. Migrations are versioned (sqlx's migrator, the files under `migrations/`,
//! compiled in). Nothing on `/auth`'s path waits for the store: [`feed`] keeps the memory
//! decisions read up to date, and the registry writes behind.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::RngCore;

use serde::{Deserialize, Serialize};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

pub mod config;
pub mod copy;
pub mod feed;
pub mod portal;
pub mod replicas;

pub use config::{StoreConfig, StoreUrl};

/// Everything the store can fail with. None of it carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the store ({what}): {source}")]
    Open {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the store ({what}): {source}")]
    Migrate {
        what: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("store: {0}")]
    Query(#[from] sqlx::Error),
    #[error("unknown credential id: {}", .0.join(", "))]
    UnknownIds(Vec<String>),
    #[error("store holds an unreadable row: {0}")]
    Corrupt(String),
}

/// The schema, in order, for both engines: the SQL is portable (see the files). A new file is a
/// new version; a released one never changes (sqlx refuses to start on a changed checksum).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "store", include_str!("../../migrations/0001_store.sql")),
    (
        2,
        "portal",
        include_str!("../../migrations/0002_portal.sql"),
    ),
    (
        3,
        "replicas",
        include_str!("../../migrations/0003_replicas.sql"),
    ),
];

/// The channel a PostgreSQL store's writers notify and every replica's feed listens on.
pub const CHANNEL: &str = "mtx_auth";

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    /// The name `/readyz` and `/metrics` give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// A permission as the store and `token list --json` write it: `{"action", "path"}`, the path
/// as in `[[users]]` (empty for any path, `~` for a regex).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionRecord {
    pub action: String,
    #[serde(default)]
    pub path: String,
}

/// A stream credential as stored: never the credential itself, only its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub id: String,
    /// SHA-256 of the credential, lowercase hex.
    pub digest: String,
    pub name: String,
    pub permissions: Vec<PermissionRecord>,
    /// `None` for one made by the command line.
    pub owner: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The client addresses it is good from (CIDRs): the `ips` rule of the `[[users]]` entry
    /// that granted a portal link. Empty: any address.
    pub ips: Vec<String>,
    /// What granted a portal link, as JSON (`portal::people::Grant`), to revoke it when that
    /// grant ends. `None` for the command line's.
    pub grant: Option<String>,
}

/// A live MediaMTX session as the registry writes it: no secret in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub api_url: String,
    pub protocol: String,
    pub action: String,
    pub path: String,
    /// The client's address, or empty.
    pub ip: String,
    pub identity: String,
    /// JSON: what granted the session (see the migration).
    pub grant: String,
    pub created_at: i64,
}

/// A connection pool to the store.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    what: String,
    engine: Engine,
    /// This process among the replicas sharing the store: random per start, so two processes
    /// never take each other for themselves (`replicas` says who is alive).
    replica: Arc<str>,
    /// PostgreSQL's URL with its password, for the feed's `LISTEN` connection. Never shown.
    listen_url: Option<Arc<str>>,
    /// Whether the store answers, as the background tasks last found it.
    pub health: Arc<Health>,
}

/// The store's state as `/readyz` and `/metrics` report it.
#[derive(Debug, Default)]
pub struct Health {
    up: AtomicBool,
    /// When the memory decisions read was last brought in step with the store (Unix seconds;
    /// 0: never).
    synced_at: AtomicI64,
}

impl Health {
    /// The store answered, and the memory is in step with it as of `now`.
    pub fn synced(&self, now: i64) {
        self.up.store(true, Ordering::Relaxed);
        self.synced_at.store(now, Ordering::Relaxed);
    }

    /// A query failed.
    pub fn failed(&self) {
        self.up.store(false, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Seconds since the memory was last in step with the store; `None` before the first time.
    pub fn sync_age(&self, now: i64) -> Option<i64> {
        match self.synced_at.load(Ordering::Relaxed) {
            0 => None,
            at => Some((now - at).max(0)),
        }
    }
}

impl Store {
    /// Opens the store, creating and migrating it on first use.
    pub async fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let store = Store::new(config)?;
        store.prepare().await?;
        Ok(store)
    }

    /// The pool, not yet connected: a PostgreSQL server that is down at start must not keep
    /// the service from deciding what needs no store. [`Store::prepare`] connects.
    pub fn new(config: &StoreConfig) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let what = config.url.describe();
        let open = |source| StoreError::Open {
            what: what.clone(),
            source,
        };
        let (url, engine, listen_url) = match &config.url {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| open(sqlx::Error::Io(e)))?;
                }
                create_private(path).map_err(|e| open(sqlx::Error::Io(e)))?;
                (sqlite_url(path), Engine::Sqlite, None)
            }
            StoreUrl::Postgres(pg) => {
                let url = pg.connect_url();
                (url.clone(), Engine::Postgres, Some(url.into()))
            }
        };
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            // Portal pages and sign-ins wait this long for a connection before they fail
            // closed; `/auth` never waits for one.
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(&url)
            .map_err(open)?;
        let mut id = [0u8; 9];
        rand::rngs::OsRng.fill_bytes(&mut id);
        Ok(Store {
            pool,
            what,
            engine,
            replica: crate::credential::hex(&id).into(),
            listen_url,
            health: Arc::default(),
        })
    }

    /// Connects and brings the schema up to date.
    pub async fn prepare(&self) -> Result<(), StoreError> {
        let open = |source| StoreError::Open {
            what: self.what.clone(),
            source,
        };
        if self.engine == Engine::Sqlite {
            // Readers never wait for the writer, and a second process (the command line beside a
            // running server) can write while the server reads. Kept in the file once set.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&self.pool)
                .await
                .map_err(open)?;
        }
        let migrator = Migrator {
            migrations: Cow::Owned(
                MIGRATIONS
                    .iter()
                    .map(|(version, name, sql)| {
                        Migration::new(
                            *version,
                            Cow::Borrowed(name),
                            MigrationType::Simple,
                            Cow::Borrowed(sql),
                            false,
                        )
                    })
                    .collect(),
            ),
            ..Migrator::DEFAULT
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|source| StoreError::Migrate {
                what: self.what.clone(),
                source,
            })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// This process's id among the replicas.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// PostgreSQL's URL for a `LISTEN` connection (password included; never shown).
    pub fn listen_url(&self) -> Option<&str> {
        self.listen_url.as_deref()
    }

    /// What the store is, for logs: the file or host, never a password.
    pub fn describe(&self) -> &str {
        &self.what
    }

    /// Stores a new credential.
    pub async fn insert_credential(&self, c: &CredentialRecord) -> Result<(), StoreError> {
        let permissions = serde_json::to_string(&c.permissions)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let ips = (!c.ips.is_empty())
            .then(|| serde_json::to_string(&c.ips))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let rev = self.bump(&mut tx, "credentials").await?;
        sqlx::query(
            "INSERT INTO credentials (id, digest, name, permissions, owner, created_at, expires_at, revoked_at, rev, ips, grant_info) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, $10)",
        )
        .bind(&c.id)
        .bind(&c.digest)
        .bind(&c.name)
        .bind(permissions)
        .bind(&c.owner)
        .bind(c.created_at)
        .bind(c.expires_at)
        .bind(rev)
        .bind(ips)
        .bind(&c.grant)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every credential, oldest first.
    pub async fn credentials(&self) -> Result<Vec<CredentialRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_CREDENTIALS} ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(credential_record).collect()
    }

    /// Revokes every credential named, at `now`, or none of them when one id is unknown.
    /// Revoking a revoked credential keeps its first revocation time.
    pub async fn revoke_credentials(&self, ids: &[String], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let rev = self.bump(&mut tx, "credentials").await?;
        let mut unknown = Vec::new();
        for id in ids {
            let done = sqlx::query(
                "UPDATE credentials SET revoked_at = COALESCE(revoked_at, $1), rev = $2 WHERE id = $3",
            )
            .bind(now)
            .bind(rev)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                unknown.push(id.clone());
            }
        }
        if !unknown.is_empty() {
            tx.rollback().await?;
            return Err(StoreError::UnknownIds(unknown));
        }
        tx.commit().await?;
        Ok(())
    }

    /// The revision of the credentials: it grows with every change.
    pub async fn credentials_revision(&self) -> Result<i64, StoreError> {
        self.revision("credentials").await
    }

    /// The credentials changed after revision `after`, and the revision they bring the reader to.
    pub async fn credentials_since(
        &self,
        after: i64,
    ) -> Result<(i64, Vec<CredentialRecord>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let rev: i64 = sqlx::query("SELECT value FROM revisions WHERE name = 'credentials'")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        let rows = sqlx::query(&format!(
            "{SELECT_CREDENTIALS} WHERE rev > $1 AND rev <= $2"
        ))
        .bind(after)
        .bind(rev)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let records = rows
            .iter()
            .map(credential_record)
            .collect::<Result<_, _>>()?;
        Ok((rev, records))
    }

    /// The secret named `name`, made by `make` and stored the first time it is asked for. Two
    /// processes asking at once agree on one: the second insert loses and reads the first.
    pub async fn secret(
        &self,
        name: &str,
        now: i64,
        make: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(make())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(sqlx::query("SELECT value FROM secrets WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Writes sessions the registry took in and forgets the ones that ended, in one
    /// transaction.
    pub async fn save_sessions(
        &self,
        added: &[SessionRecord],
        removed: &[String],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for s in added {
            sqlx::query(
                "INSERT INTO sessions (id, api_url, protocol, action, path, ip, identity, grant_info, created_at, replica) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (id) DO UPDATE SET api_url = $2, protocol = $3, action = $4, \
                 path = $5, ip = $6, identity = $7, grant_info = $8, created_at = $9, replica = $10",
            )
            .bind(&s.id)
            .bind(&s.api_url)
            .bind(&s.protocol)
            .bind(&s.action)
            .bind(&s.path)
            .bind(&s.ip)
            .bind(&s.identity)
            .bind(&s.grant)
            .bind(s.created_at)
            .bind(&*self.replica)
            .execute(&mut *tx)
            .await?;
        }
        for id in removed {
            sqlx::query("DELETE FROM sessions WHERE id = $1 AND replica = $2")
                .bind(id)
                .bind(&*self.replica)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every session any replica wrote (for `explain`).
    pub async fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(&format!("{SELECT_SESSIONS} FROM sessions"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(session_record).collect()
    }

    /// Takes over the sessions written by replicas not seen alive since `alive_since` (Unix
    /// seconds; `i64::MAX`: every other replica's), and returns them: this process kicks them
    /// from now on. Each row goes to one adopter, however many ask at once.
    pub async fn adopt_sessions(&self, alive_since: i64) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(
            "UPDATE sessions SET replica = $1 WHERE replica <> $1 \
             AND replica NOT IN (SELECT id FROM replicas WHERE seen_at >= $2) \
             RETURNING id, api_url, protocol, action, path, ip, identity, grant_info, created_at",
        )
        .bind(&*self.replica)
        .bind(alive_since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_record).collect()
    }

    /// Raises the revision `name` within `tx`, which serialises the writers of that kind: the
    /// rows they stamp become visible in revision order. On PostgreSQL the change is also
    /// announced on [`CHANNEL`] (delivered at commit), so other replicas read it at once rather
    /// than at their next catch-up.
    pub(crate) async fn bump(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        name: &str,
    ) -> Result<i64, StoreError> {
        let rev: i64 =
            sqlx::query("UPDATE revisions SET value = value + 1 WHERE name = $1 RETURNING value")
                .bind(name)
                .fetch_one(&mut **tx)
                .await?
                .try_get(0)?;
        if self.engine == Engine::Postgres {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANNEL)
                .bind(name)
                .execute(&mut **tx)
                .await?;
        }
        Ok(rev)
    }

    /// A revision's current value.
    pub(crate) async fn revision(&self, name: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query("SELECT value FROM revisions WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Closes the pool, waiting for what is in flight.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

const SELECT_SESSIONS: &str =
    "SELECT id, api_url, protocol, action, path, ip, identity, grant_info, created_at";

fn session_record(r: &AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: r.try_get(0)?,
        api_url: r.try_get(1)?,
        protocol: r.try_get(2)?,
        action: r.try_get(3)?,
        path: r.try_get(4)?,
        ip: r.try_get(5)?,
        identity: r.try_get(6)?,
        grant: r.try_get(7)?,
        created_at: r.try_get(8)?,
    })
}

const SELECT_CREDENTIALS: &str = "SELECT id, digest, name, permissions, owner, created_at, expires_at, revoked_at, ips, grant_info FROM credentials";

fn credential_record(r: &AnyRow) -> Result<CredentialRecord, StoreError> {
    let id: String = r.try_get(0)?;
    let permissions: String = r.try_get(3)?;
    let ips: Option<String> = r.try_get(8)?;
    Ok(CredentialRecord {
        permissions: serde_json::from_str(&permissions)
            .map_err(|e| StoreError::Corrupt(format!("credential {id}: permissions: {e}")))?,
        ips: match ips {
            Some(ips) => serde_json::from_str(&ips)
                .map_err(|e| StoreError::Corrupt(format!("credential {id}: ips: {e}")))?,
            None => Vec::new(),
        },
        grant: r.try_get(9)?,
        digest: r.try_get(1)?,
        name: r.try_get(2)?,
        owner: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        revoked_at: r.try_get(7)?,
        id,
    })
}

/// Creates the database file, readable by its owner only, if it does not exist: it holds the
/// secret mtx-auth's API calls carry. SQLite gives its `-wal` and `-shm` files the same mode.
/// An existing file keeps the mode its owner gave it.
fn create_private(path: &std::path::Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// sqlx's URL for a SQLite file, created if missing. sqlx percent-decodes the path, so the
/// characters that would end it (or start an escape) are encoded.
fn sqlite_url(path: &std::path::Path) -> String {
    let path = path.display().to_string();
    let escaped = path
        .replace('%', "%25")
        .replace('?', "%3F")
        .replace('#', "%23");
    format!("sqlite://{escaped}?mode=rwc")
}
