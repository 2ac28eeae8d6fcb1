//! `[store]`: where what must survive a restart is kept.

use std::path::{Path, PathBuf};

use crate::config::reader::Table;

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
}

impl StoreUrl {
    /// Reads `sqlite://FILE` (relative to `base`, the config file's folder) or `sqlite:///ABS`.
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
            return Err("url: PostgreSQL is not supported yet; use sqlite://FILE".into());
        }
        Err(
            "url: expected sqlite://FILE (relative to the config file) or sqlite:///ABSOLUTE/PATH"
                .into(),
        )
    }

    /// What logs and errors may show: the file, never a password of a database URL.
    pub fn describe(&self) -> String {
        match self {
            StoreUrl::Sqlite(path) => format!("sqlite file {}", path.display()),
        }
    }
}

/// Reads `[store]`; `base` is the folder relative paths start from.
pub fn read(mut t: Table<'_>, base: &Path) -> Option<StoreConfig> {
    let url = t.string("url");
    let config = match url {
        None => {
            t.problem("[store] needs url (sqlite://mtx-auth.db)".into());
            None
        }
        Some(url) => match StoreUrl::parse(&url.value, base) {
            Ok(url) => Some(StoreConfig { url }),
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
}
