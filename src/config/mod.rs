//! The TOML config: read, checked, and turned into ready-to-use types.
//!
//! The file is parsed once into a document that keeps every position; each section is then
//! read through a [`reader::Table`] by the code that owns it: `[server]` here, `[[users]]` in
//! `users`, `[jwt]` beside the JWT source, and each account section by its registered kind
//! (`crate::source::ACCOUNT_KINDS`). *Every* problem is reported as `FILE:LINE:COL: message`, so
//! an operator fixes a file in one pass. A `Config` that exists is valid: the hot path never
//! re-checks anything.

use std::borrow::Cow;
use std::path::Path;

use toml_edit::ImDocument;

use crate::source::account::{self, AccountConfig};
use crate::source::jwt::JwtConfig;
use crate::source::users::UserList;
use crate::store::StoreConfig;

pub mod mediamtx;
pub mod reader;
pub mod server;
pub mod split;
pub mod users;

pub use mediamtx::MediamtxConfig;
pub use reader::{ConfigError, Problem, Secrets};
use reader::{Problems, Table};
pub use server::{ServerConfig, DEFAULT_LISTEN};

/// A checked configuration.
#[derive(Debug)]
pub struct Config {
    /// What `check` reports without failing: secrets that could not be read where the config
    /// was checked (see [`Secrets`]). Always empty for a config that `serve` loads.
    pub warnings: Vec<Problem>,
    pub server: ServerConfig,
    pub users: UserList,
    pub jwt: Option<JwtConfig>,
    /// The account sections (`[jellyfin]`, `[plex]`, …), in the order they appear in the file.
    pub accounts: Vec<AccountConfig>,
    /// `[store]`: without it, everything that needs no store still works.
    pub store: Option<StoreConfig>,
    /// `[mediamtx]`: MediaMTX's control API; sessions are tracked and kicked when it is set.
    pub mediamtx: Option<MediamtxConfig>,
    /// `[portal]`: the viewer portal's own listener; read once at start.
    pub portal: Option<crate::portal::config::PortalConfig>,
}

impl Config {
    /// True when nothing in this config can ever allow a request: no `[[users]]` entry holds a
    /// permission, and there is no `[jwt]`, no account source and no `[store]` (whose stream
    /// credentials grant). An empty file is such a
    /// config. `check` warns about it, and a reload refuses to swap one in for a config that
    /// grants something (`crate::reload`): it is far more often a file caught half-written.
    pub fn grants_nothing(&self) -> bool {
        self.jwt.is_none()
            && self.accounts.is_empty()
            && self.store.is_none()
            && self.users.iter().all(|u| !u.has_permissions())
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Secrets::Required)
    }

    /// Like `load`, choosing what an unreadable `*_file` or unset `*_env` secret is.
    pub fn load_with(path: &Path, secrets: Secrets) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse_with(&text, &file, secrets),
            Err(e) => Err(ConfigError {
                problems: vec![Problem {
                    file,
                    line: 0,
                    col: 0,
                    message: format!("cannot read config: {e}"),
                }],
            }),
        }
    }

    /// Checks config text; `file` names it in problems.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        Config::parse_with(text, file, Secrets::Required)
    }

    /// Like `parse`, choosing what an unreadable `*_file` or unset `*_env` secret is.
    pub fn parse_with(text: &str, file: &str, secrets: Secrets) -> Result<Config, ConfigError> {
        let errs = Problems::new(file, text, secrets);
        // The `[[users]]` entries are parsed one by one (see `split`), the rest as one document.
        let split = split::users(text);
        let rest = match &split {
            Some(split) => Cow::Owned(split.rest(text)),
            None => Cow::Borrowed(text),
        };
        let doc = match ImDocument::parse(&*rest) {
            Ok(doc) => doc,
            Err(e) => {
                syntax_error(&errs, &e, text, 0);
                return Err(errs.finish().unwrap_err());
            }
        };
        let mut root = Table::new(doc.as_table(), 0..0, &errs);
        let server = root.table("server").map(server::read).unwrap_or_default();
        // Straight into the compact list: no entry outlives its own reading.
        let mut users = UserList::default();
        match &split {
            None => users::read_into(&mut root, &mut users),
            Some(split) => {
                if root.has("users") {
                    errs.push(root.span_of("users"), "duplicate key `users`".into());
                }
                for range in &split.users {
                    match ImDocument::parse(&text[range.clone()]) {
                        Ok(doc) => {
                            let mut entry = Table::at(doc.as_table(), 0..0, &errs, range.start);
                            users::read_into(&mut entry, &mut users);
                            entry.finish();
                        }
                        Err(e) => syntax_error(&errs, &e, text, range.start),
                    }
                }
            }
        }
        users.shrink_to_fit();
        let jwt = root.table("jwt").and_then(crate::source::jwt::config::read);
        let mut sections: Vec<_> = crate::source::ACCOUNT_KINDS
            .iter()
            .filter_map(|kind| Some((*kind, root.table(kind.name)?)))
            .collect();
        sections.sort_by_key(|(_, t)| t.span().start);
        let accounts = sections
            .into_iter()
            .filter_map(|(kind, t)| account::read_section(kind, t))
            .collect();
        // A relative store path starts at the config file's folder.
        let folder = Path::new(file).parent().unwrap_or(Path::new(""));
        let store = root
            .table("store")
            .and_then(|t| crate::store::config::read(t, folder));
        let mediamtx = root.table("mediamtx").and_then(mediamtx::read);
        let portal_span = root.has("portal").then(|| root.span_of("portal"));
        let portal = root.table("portal").and_then(crate::portal::config::read);
        if let (Some(span), None) = (portal_span, &store) {
            errs.push(
                span,
                "[portal] keeps its sessions, links and second factors in the store: add [store] (url = \"sqlite://mtx-auth.db\")".into(),
            );
        }
        root.finish();
        let warnings = errs.finish()?;
        Ok(Config {
            warnings,
            server,
            users,
            jwt,
            accounts,
            store,
            mediamtx,
            portal,
        })
    }
}

/// Reports a TOML syntax error of the document that starts at byte `base` of `text`.
fn syntax_error(errs: &Problems, e: &toml_edit::TomlError, text: &str, base: usize) {
    let span = e
        .span()
        .map_or(base..base, |s| s.start + base..s.end + base);
    // Some syntax errors come without a message (the error's Display is then only an excerpt
    // of the file, which could hold a secret): say what we can.
    let message = match e.message().trim() {
        "" => match text.get(span.start..).and_then(|s| s.chars().next()) {
            Some(c) if c.is_control() => format!(
                "invalid TOML syntax: unexpected control character U+{:04X}",
                c as u32
            ),
            _ => "invalid TOML syntax".to_owned(),
        },
        m => m.to_owned(),
    };
    errs.push(span, message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        Config::parse(text, "t.toml")
            .unwrap_err()
            .problems
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn empty_config_is_valid_and_has_defaults() {
        let c = Config::parse("", "t.toml").unwrap();
        assert_eq!(c.server.listen, DEFAULT_LISTEN);
        assert!(c.users.is_empty());
    }

    #[test]
    fn locates_unknown_key() {
        let p = problems("[server]\nlisten = \"x\"\nlisen = 3\n");
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("t.toml:3:1: unknown field `lisen`"),
            "{p:?}"
        );
    }

    #[test]
    fn reports_every_problem_with_position() {
        let text = r#"
[[users]]
user = ""
ips = ["10.0.0.0/33", "::1"]
permissions = [{ action = "write" }, { action = "read", path = "~(" }]

[[users]]
user = "any"
pass = "x"
"#;
        let p = problems(text);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p[0].starts_with("t.toml:3:8: user: must not be empty"),
            "{p:?}"
        );
        assert!(p[1].starts_with("t.toml:4:8: ips:"), "{p:?}");
        assert!(p[2].starts_with("t.toml:5:27: action \"write\""), "{p:?}");
        assert!(
            p[3].starts_with("t.toml:5:64: path: regular expression"),
            "{p:?}"
        );
        assert!(p[4].starts_with("t.toml:9:8: pass: user \"any\""), "{p:?}");
    }

    /// MediaMTX's form (hex, any case) and openssl's (colons) give the same pin; anything else,
    /// or a pin on a plain-http key server, is refused at its place.
    #[test]
    fn jwks_fingerprint_forms_and_problems() {
        let hex = "0123456789abcdef".repeat(4);
        let colons = hex
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let pin = |f: &str| {
            let text =
                format!("[jwt]\njwks_url = \"https://idp/certs\"\njwks_fingerprint = \"{f}\"\n");
            Config::parse(&text, "t.toml")
                .unwrap()
                .jwt
                .unwrap()
                .fetch
                .pinned_certificate
        };
        let expected = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef].repeat(4);
        assert_eq!(pin(&hex).unwrap().to_vec(), expected);
        assert_eq!(pin(&colons).unwrap().to_vec(), expected);
        let no_pin = Config::parse("[jwt]\njwks_url = \"https://idp/certs\"\n", "t.toml");
        assert_eq!(no_pin.unwrap().jwt.unwrap().fetch.pinned_certificate, None);

        for bad in [
            &hex[..62],
            &format!("{hex}00"),
            &format!("+f{}", &hex[2..]),
            "xyz",
        ] {
            let p = problems(&format!(
                "[jwt]\njwks_url = \"https://idp/certs\"\njwks_fingerprint = \"{bad}\"\n"
            ));
            assert_eq!(p.len(), 1, "{p:?}");
            assert!(
                p[0].starts_with("t.toml:3:20: jwks_fingerprint: not a SHA-256"),
                "{p:?}"
            );
        }
        let p = problems(&format!(
            "[jwt]\ndiscovery_url = \"http://idp/.well-known/openid-configuration\"\njwks_fingerprint = \"{hex}\"\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("t.toml:3:20: jwks_fingerprint pins a TLS certificate"),
            "{p:?}"
        );
    }

    #[test]
    fn account_sections_keep_file_order() {
        let c = Config::parse(
            "[plex]\nserver = \"Home\"\n[jellyfin]\nurl = \"http://jf:8096\"\n[emby]\nurl = \"http://emby:8096\"\n",
            "t.toml",
        )
        .unwrap();
        let kinds: Vec<_> = c.accounts.iter().map(|a| a.kind.name).collect();
        assert_eq!(kinds, ["plex", "jellyfin", "emby"]);
        assert_eq!(
            c.accounts.iter().map(|a| a.line).collect::<Vec<_>>(),
            [1, 3, 5]
        );
        // Defaults: read and playback for every account, nothing more.
        let s = &c.accounts[1].settings;
        assert_eq!(s.permissions.len(), 2);
        assert!(s.admin_permissions.is_empty());
        assert_eq!(s.timeout, std::time::Duration::from_secs(3));
    }

    #[test]
    fn account_section_problems_are_located() {
        let p = problems(
            r#"
[jellyfin]
server = "x"
local_networks = ["10.0.0.0/33"]
timeout_secs = 0

[plex]
url = "http://x"

[oidc]
discovery_url = "ftp://x"
client_id = "c"
client_secret = "a"
client_secret_env = "B"
permissions = [{ action = "read" }]

[emby]
url = "not a url"
[[emby.overrides]]
user = ""
permissions = [{ action = "fly" }]
"#,
        );
        let want = [
            "t.toml:2:1: [jellyfin] needs url",
            "t.toml:3:10: server is not a [jellyfin] key",
            "t.toml:4:19: local_networks: \"10.0.0.0/33\" is not an IP address or CIDR",
            "t.toml:5:16: timeout_secs must be between 1 and 60",
            "t.toml:7:1: [plex] needs server",
            "t.toml:8:7: url is not a [plex] key",
            "t.toml:15:15: permissions is not an [oidc] key",
            "t.toml:14:21: set one of client_secret, client_secret_file and client_secret_env",
            "t.toml:11:17: discovery_url: not an http or https URL",
            "t.toml:20:8: user: must not be empty",
            "t.toml:21:27: action \"fly\"",
            "t.toml:18:7: url: not an http or https URL",
        ];
        for w in want {
            assert!(
                p.iter().any(|p| p.starts_with(w)),
                "missing {w:?} in {p:#?}"
            );
        }
        assert_eq!(p.len(), want.len(), "{p:#?}");
    }

    #[test]
    fn oidc_secret_from_file_or_environment() {
        let dir = std::env::temp_dir().join(format!("mtx-auth-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("secret");
        std::fs::write(&file, "from-file\r\n").unwrap();
        let base = "[oidc]\ndiscovery_url = \"http://idp/.well-known/openid-configuration\"\nclient_id = \"c\"\n";
        // The section loads, and the secret the reader hands the OIDC client is the one given.
        let secret_of = |line: &str| {
            let text = format!("{base}{line}\n");
            Config::parse(&text, "t.toml").unwrap();
            let doc = ImDocument::parse(text.as_str()).unwrap();
            let errs = Problems::new("t.toml", &text, Secrets::Required);
            let mut root = Table::new(doc.as_table(), 0..0, &errs);
            let mut oidc = root.table("oidc").unwrap();
            let secret = oidc.secret("client_secret", "client_secret_file", "client_secret_env");
            secret.unwrap().map(|s| s.0)
        };
        assert_eq!(
            secret_of(&format!(
                "client_secret_file = {:?}",
                file.display().to_string()
            )),
            Some("from-file".into())
        );
        std::env::set_var("MTX_AUTH_UNIT_SECRET", "from-env");
        assert_eq!(
            secret_of("client_secret_env = \"MTX_AUTH_UNIT_SECRET\""),
            Some("from-env".into())
        );
        assert_eq!(secret_of(""), None, "a public client");
        let p = problems(&format!("{base}client_secret_file = \"/nonexistent/x\"\n"));
        assert!(
            p[0].starts_with("t.toml:4:22: client_secret_file: cannot read"),
            "{p:?}"
        );
        let p = problems(&format!(
            "{base}client_secret_env = \"MTX_AUTH_UNSET_VAR_X\"\n"
        ));
        assert!(
            p[0].starts_with("t.toml:4:21: client_secret_env: environment variable"),
            "{p:?}"
        );
        // The secret never appears in Debug output.
        let c = Config::parse(&format!("{base}client_secret = \"hunter2\"\n"), "t.toml").unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
