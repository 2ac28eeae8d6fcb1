//! The keys every account section shares: what accounts may do, how long answers are kept,
//! and how many failed logins a name may have.

use std::time::Duration;

use ipnet::IpNet;

use crate::config::reader::Table;
use crate::permission::{Action, PathMatcher, Permission};

/// `[[<source>.overrides]]`: permissions for one account by name.
#[derive(Debug, Clone)]
pub struct Override {
    /// Lower-cased: names compare without regard to case, as the media servers compare them.
    pub user: String,
    pub permissions: Vec<Permission>,
    /// Replace the account's permissions instead of adding to them.
    pub replace: bool,
}

/// The keys every account section shares, checked.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    pub permissions: Vec<Permission>,
    pub admin_permissions: Vec<Permission>,
    pub overrides: Vec<Override>,
    /// With entries, accounts without remote access are allowed only from these networks.
    /// Read by the sources whose upstream knows remote access (`local_networks`).
    pub local_networks: Vec<IpNet>,
    pub timeout: Duration,
    pub cache_ttl: Duration,
    pub failure_ttl: Duration,
    pub stale_grace: Duration,
    pub cache_capacity: u64,
    pub max_failures: u32,
    pub failure_window: Duration,
}

impl Default for AccountSettings {
    fn default() -> Self {
        AccountSettings {
            permissions: Vec::new(),
            admin_permissions: Vec::new(),
            overrides: Vec::new(),
            local_networks: Vec::new(),
            timeout: Duration::from_secs(3),
            cache_ttl: Duration::from_secs(300),
            failure_ttl: Duration::from_secs(10),
            stale_grace: Duration::from_secs(3600),
            cache_capacity: 100_000,
            // Jellyfin locks an account at its third failed login.
            max_failures: 2,
            failure_window: Duration::from_secs(900),
        }
    }
}

const DAY: i64 = 24 * 3600;

/// Reads the shared keys of the account section `name`. `default_actions` is what an account
/// may do without a `permissions` key; `config_permissions: false` refuses `permissions` and
/// `admin_permissions` (the upstream grants permissions itself).
pub fn read(
    t: &mut Table<'_>,
    name: &str,
    default_actions: &[Action],
    config_permissions: bool,
) -> AccountSettings {
    let mut s = AccountSettings::default();
    if let Some(d) = t.secs("timeout_secs", 1, 60) {
        s.timeout = d;
    }
    if let Some(d) = t.secs("cache_ttl_secs", 1, DAY) {
        s.cache_ttl = d;
    }
    if let Some(d) = t.secs("failure_ttl_secs", 0, 3600) {
        s.failure_ttl = d;
    }
    if let Some(d) = t.secs("stale_grace_secs", 0, 30 * DAY) {
        s.stale_grace = d;
    }
    if let Some(n) = t.int("cache_capacity", 1, 100_000_000) {
        s.cache_capacity = n;
    }
    if let Some(n) = t.int("max_failures", 1, 1000) {
        s.max_failures = n as u32;
    }
    if let Some(d) = t.secs("failure_window_secs", 1, DAY) {
        s.failure_window = d;
    }
    if config_permissions {
        s.permissions = t.permissions("permissions").unwrap_or_else(|| {
            default_actions
                .iter()
                .map(|&action| Permission {
                    action,
                    path: PathMatcher::Any,
                })
                .collect()
        });
        s.admin_permissions = t.permissions("admin_permissions").unwrap_or_default();
    } else {
        for key in ["permissions", "admin_permissions"] {
            if t.has(key) {
                let span = t.span_of(key);
                t.item(key);
                t.errs().push(
                    span,
                    format!("{key} is not an [{name}] key: the token's claim and [[{name}.roles]] give permissions"),
                );
            }
        }
    }
    for mut o in t.tables("overrides").unwrap_or_default() {
        let user = o.string("user");
        if let Some(u) = user.as_ref().filter(|u| u.value.is_empty()) {
            o.errs()
                .push(u.span.clone(), "user: must not be empty".into());
        }
        let permissions = o.permissions("permissions");
        for (key, present) in [
            ("user", user.is_some()),
            ("permissions", permissions.is_some()),
        ] {
            if !present && !o.has(key) {
                o.problem(format!("missing field `{key}`"));
            }
        }
        let replace = o.bool("replace").unwrap_or(false);
        o.finish();
        s.overrides.push(Override {
            user: user.map(|u| u.value.to_lowercase()).unwrap_or_default(),
            permissions: permissions.unwrap_or_default(),
            replace,
        });
    }
    s
}
