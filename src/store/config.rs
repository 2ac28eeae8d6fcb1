//! `[store]`: where what must survive a restart, or be seen by every replica, is kept.

use std::path::{Path, PathBuf};

use crate::config::reader::{Secret, Table};

/// The environment variable a PostgreSQL password is taken from when `[store]` names none, and
/// where `mtx-auth store copy` finds the password of a URL given on its command line.
pub const PASSWORD_ENV: &str = "MTX_AUTH_STORE_PASSWORD";

/// `[store]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub url: StoreUrl,
}

/// Which engine, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// An embedded SQLite file, created and migrated on first start.
    Sqlite(PathBuf),
    /// A PostgreSQL database that several replicas share.
    Postgres(PostgresUrl),
}

/// A PostgreSQL URL without its password, and the password beside it: the URL may be shown
/// (logs, errors, `/readyz`), the password never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    pub url: url::Url,
    pub password: Option<Secret>,
}

impl PostgresUrl {
    /// The URL sqlx connects to, password included. Never logged.
    pub fn connect_url(&self) -> String {
        let mut url = self.url.clone();
        if let Some(p) = &self.password {
            // Only fails for URLs without a host, which `parse` refused.
            let _ = url.set_password(Some(&p.0));
        }
        url.to_string()
    }
}

/// The `sslmode` values libpq (and sqlx) know.
const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

impl StoreUrl {
    /// Reads `sqlite://FILE` (relative to `base`, the config file's folder), `sqlite:///ABS`
    /// or `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=…&sslrootcert=…]`. A password inside
    /// a PostgreSQL URL is refused: it would sit in a file that is often world-readable and
    /// in every place the URL is shown; it comes from `password_file`, `password_env` or
    /// [`PASSWORD_ENV`].
    pub fn parse(url: &str, base: &Path) -> Result<StoreUrl, String> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err("url: sqlite:// needs a file name (sqlite://mtx-auth.db)".into());
            }
            let path = Path::new(path);
            return Ok(StoreUrl::Sqlite(match path.is_absolute() {
                true => path.to_path_buf(),
                false => base.join(path),
            }));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return parse_postgres(url).map(|url| {
                StoreUrl::Postgres(PostgresUrl {
                    url,
                    password: None,
                })
            });
        }
        Err(
            "url: expected sqlite://FILE (relative to the config file), sqlite:///ABSOLUTE/PATH \
             or postgres://USER@HOST/DATABASE"
                .into(),
        )
    }

    /// What logs and errors may show: the file, or the database without its password.
    pub fn describe(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite file {}", path.display()),
            StoreUrl::Postgres(pg) => {
                let u = &pg.url;
                format!(
                    "postgres {}@{}:{}{}",
                    u.username(),
                    u.host_str().unwrap_or_default(),
                    u.port().unwrap_or(5432),
                    u.path()
                )
            }
        }
    }

    /// Gives a PostgreSQL URL the password from [`PASSWORD_ENV`], when it has none yet; for
    /// URLs that come from the command line.
    pub fn with_password_from_env(mut self) -> StoreUrl {
        if let StoreUrl::Postgres(pg) = &mut self {
            if pg.password.is_none() {
                pg.password = std::env::var(PASSWORD_ENV)
                    .ok()
                    .filter(|p| !p.is_empty())
                    .map(Secret);
            }
        }
        self
    }
}

fn parse_postgres(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw).map_err(|e| format!("url: not a PostgreSQL URL: {e}"))?;
    if url.password().is_some() {
        return Err(format!(
            "url: a password inside the URL is refused (it would be shown wherever the URL is); \
             use password_file, password_env or the environment variable {PASSWORD_ENV}"
        ));
    }
    if url.host_str().unwrap_or_default().is_empty() {
        return Err(
            "url: postgres:// needs a host (postgres://mtx-auth@db.example.com/mtx-auth)".into(),
        );
    }
    if url.path().trim_start_matches('/').is_empty() {
        return Err("url: postgres:// needs a database name (…/mtx-auth)".into());
    }
    for (key, value) in url.query_pairs() {
        match key.as_ref() {
            "sslmode" if !SSL_MODES.contains(&value.as_ref()) => {
                return Err(format!(
                    "url: sslmode={value} is not one of {}",
                    SSL_MODES.join(", ")
                ))
            }
            "sslmode"
            | "sslrootcert"
            | "sslcert"
            | "sslkey"
            | "application_name"
            | "connect_timeout"
            | "options"
            | "statement-cache-capacity" => {}
            other => return Err(format!("url: unknown parameter {other:?}")),
        }
    }
    Ok(url)
}

/// Reads `[store]`; `base` is the folder relative paths start from.
pub fn read(mut t: Table<'_>, base: &Path) -> Option<StoreConfig> {
    let url = t.string("url");
    let password = t.secret("password", "password_file", "password_env");
    let config = match url {
        None => {
            t.problem("[store] needs url (sqlite://mtx-auth.db)".into());
            None
        }
        Some(url) => match StoreUrl::parse(&url.value, base) {
            Ok(StoreUrl::Postgres(mut pg)) => password.map(|password| {
                pg.password = password;
                StoreConfig {
                    url: StoreUrl::Postgres(pg).with_password_from_env(),
                }
            }),
            Ok(sqlite) => {
                if matches!(password, Some(Some(_))) {
                    t.errs().push(
                        t.span_of("password"),
                        "a SQLite store has no password: remove password*".into(),
                    );
                }
                Some(StoreConfig { url: sqlite })
            }
            Err(message) => {
                t.errs().push(url.span.clone(), message);
                None
            }
        },
    };
    t.finish();
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_relative_to_the_config() {
        let base = Path::new("/etc/mtx-auth");
        assert_eq!(
            StoreUrl::parse("sqlite://mtx-auth.db", base),
            Ok(StoreUrl::Sqlite("/etc/mtx-auth/mtx-auth.db".into()))
        );
        assert_eq!(
            StoreUrl::parse("sqlite:///var/lib/mtx-auth/a.db", base),
            Ok(StoreUrl::Sqlite("/var/lib/mtx-auth/a.db".into()))
        );
        assert!(StoreUrl::parse("sqlite://", base).is_err());
        assert!(StoreUrl::parse("mysql://x", base).is_err());
    }

    #[test]
    fn postgres_urls_never_carry_or_show_a_password() {
        let base = Path::new("/");
        let url = StoreUrl::parse(
            "postgres://mtx@db.example.com/mtx_auth?sslmode=verify-full&sslrootcert=/ca.pem",
            base,
        )
        .unwrap();
        assert_eq!(url.describe(), "postgres mtx@db.example.com:5432/mtx_auth");
        let with_password = StoreUrl::parse("postgres://mtx:hunter2@db/x", base).unwrap_err();
        assert!(with_password.contains("password inside the URL is refused"));
        assert!(!with_password.contains("hunter2"));
        assert!(
            StoreUrl::parse("postgres://db", base).is_err(),
            "no database"
        );
        assert!(StoreUrl::parse("postgres://db/x?sslmode=maybe", base).is_err());
        assert!(StoreUrl::parse("postgres://db/x?pasword=y", base).is_err());
        let StoreUrl::Postgres(mut pg) = url else {
            panic!("not postgres")
        };
        pg.password = Some(Secret("p@ss/word".into()));
        assert!(pg
            .connect_url()
            .starts_with("postgres://mtx:p%40ss%2Fword@db.example.com/"));
    }
}
