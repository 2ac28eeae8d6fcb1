//! `mtx-auth import-mediamtx`: a `mediamtx.yml`'s own authentication settings
//! (`authInternalUsers`, the `authJWT*` keys, and the legacy per-path `publishUser`… keys) turned
//! into an mtx-auth config that gives the same decisions, so an operator can switch MediaMTX to
//! `authMethod: http` and keep every user.
//!
//! Only what MediaMTX would use is imported as live config: under `authMethod: internal` the
//! users (MediaMTX ignores `authJWT*` there, so the `[jwt]` section is written commented out);
//! under `authMethod: jwt` the key set plus `authJWTExclude`, which becomes an `any` user because
//! MediaMTX lets excluded requests through without a token; `authJWTJWKSFingerprint` becomes
//! `jwks_fingerprint`, the same pin on the key server's certificate. Anything that cannot be
//! carried over exactly is said in a comment in the output and in [`Imported::notes`].
//!
//! The output is checked by the same loader as `mtx-auth check` before it is returned: a problem
//! is reported at the `mediamtx.yml` line the offending value came from, never as a config that
//! `serve` would refuse.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use ipnet::IpNet;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::{Config, ConfigError, Problem};

/// Where the TOML output says mtx-auth listens; the header tells MediaMTX the same address.
const LISTEN: &str = "127.0.0.1:9000";

/// Which of MediaMTX's methods to import, when the file's own `authMethod` is not the one wanted
/// (a file already switched to `http` has both sets of settings unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Internal,
    Jwt,
}

/// An imported config: the TOML text, and what could not be carried over exactly.
#[derive(Debug)]
pub struct Imported {
    pub toml: String,
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The YAML is malformed, or a key has the wrong shape. The message names the place and
    /// never a value.
    #[error("{file}: {message}")]
    Yaml { file: String, message: String },
    /// Values that MediaMTX or mtx-auth would refuse, each at its place in the YAML file.
    #[error("{0}")]
    Invalid(ConfigError),
    /// The file asks for something that has no equivalent (e.g. `authMethod: http`).
    #[error("{file}: {message}")]
    Unsupported { file: String, message: String },
}

type Text = Option<Spanned<Option<String>>>;
type List<T> = Option<Spanned<Option<Vec<Spanned<T>>>>>;

/// The keys of `mediamtx.yml` that decide authentication; every other key is ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaMtxYaml {
    auth_method: Text,
    auth_internal_users: List<YamlUser>,
    #[serde(rename = "authJWTJWKS")]
    jwt_jwks: Text,
    #[serde(rename = "authJWTJWKSFingerprint")]
    jwt_jwks_fingerprint: Text,
    #[serde(rename = "authJWTClaimKey")]
    jwt_claim_key: Text,
    #[serde(rename = "authJWTExclude")]
    jwt_exclude: List<YamlPermission>,
    #[serde(rename = "authJWTInHTTPQuery")]
    jwt_in_http_query: Text,
    #[serde(rename = "authJWTIssuer")]
    jwt_issuer: Text,
    #[serde(rename = "authJWTAudience")]
    jwt_audience: Text,
    #[serde(rename = "externalAuthenticationURL")]
    external_authentication_url: Text,
    rtsp_auth_methods: Option<Option<Vec<String>>>,
    path_defaults: Option<Option<LegacyPath>>,
    paths: Option<Option<BTreeMap<String, Option<LegacyPath>>>>,
}

/// One `authInternalUsers` entry. MediaMTX refuses unknown fields here, and so do we.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlUser {
    user: Text,
    pass: Text,
    ips: List<String>,
    permissions: List<YamlPermission>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlPermission {
    action: Text,
    path: Text,
}

/// The credentials MediaMTX had per path before `authInternalUsers` (deprecated in v1.8, still
/// honoured): it converts them into users at load, and so do we, the same way.
#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct LegacyPath {
    publish_user: Text,
    publish_pass: Text,
    #[serde(rename = "publishIPs")]
    publish_ips: List<String>,
    read_user: Text,
    read_pass: Text,
    #[serde(rename = "readIPs")]
    read_ips: List<String>,
}

/// A place in the YAML file (1-based), for problems found in the generated TOML.
type Place = Option<(u64, u64)>;

fn place<T>(s: &Spanned<T>) -> Place {
    let loc = s.referenced;
    (loc.line() > 0).then(|| (loc.line(), loc.column()))
}

fn text(v: &Text) -> (String, Place) {
    match v {
        Some(s) => (s.value.clone().unwrap_or_default(), place(s)),
        None => (String::new(), None),
    }
}

/// A user as it will be written: each value remembers where in the YAML it came from.
struct User {
    comment: String,
    user: (String, Place),
    pass: (String, Place),
    ips: Vec<(String, Place)>,
    permissions: Vec<Permission>,
}

struct Permission {
    action: String,
    /// Empty: any path.
    path: String,
    action_at: Place,
    path_at: Place,
}

impl User {
    /// Everything that decides, as one comparable string.
    fn shape(&self) -> String {
        // As MediaMTX compares them: parsed, so "127.0.0.1" equals "127.0.0.1/32".
        let ips: Vec<String> = self
            .ips
            .iter()
            .map(|(ip, _)| match ip.parse::<IpAddr>() {
                Ok(addr) => IpNet::from(addr).to_string(),
                Err(_) => ip.clone(),
            })
            .collect();
        let perms: Vec<(&str, &str)> = self
            .permissions
            .iter()
            .map(|p| (p.action.as_str(), p.path.as_str()))
            .collect();
        format!("{:?}", (&self.user.0, &self.pass.0, ips, perms))
    }

    fn any(comment: String, permissions: Vec<Permission>) -> User {
        User {
            comment,
            user: ("any".into(), None),
            pass: (String::new(), None),
            ips: Vec::new(),
            permissions,
        }
    }
}

fn permission(action: &str, path: &str) -> Permission {
    Permission {
        action: action.into(),
        path: path.into(),
        action_at: None,
        path_at: None,
    }
}

fn permissions(list: &List<YamlPermission>) -> Vec<Permission> {
    let Some(Spanned {
        value: Some(list), ..
    }) = list
    else {
        return Vec::new();
    };
    list.iter()
        .map(|p| {
            let (action, action_at) = text(&p.value.action);
            let (path, path_at) = text(&p.value.path);
            Permission {
                action,
                path,
                action_at: action_at.or(place(p)),
                path_at,
            }
        })
        .collect()
}

fn ips(list: &List<String>) -> Vec<(String, Place)> {
    match list {
        Some(Spanned {
            value: Some(list), ..
        }) => list
            .iter()
            .map(|ip| (ip.value.clone(), place(ip)))
            .collect(),
        _ => Vec::new(),
    }
}

/// MediaMTX's users when `authInternalUsers` is absent: anyone may publish, read and play back;
/// only this machine may use the API, metrics and pprof.
fn default_users() -> Vec<User> {
    vec![
        User::any(
            "MediaMTX's default: anyone may publish, read and play back any path.".into(),
            vec![
                permission("publish", ""),
                permission("read", ""),
                permission("playback", ""),
            ],
        ),
        User {
            ips: vec![("127.0.0.1".into(), None), ("::1".into(), None)],
            ..User::any(
                "MediaMTX's default: the API, metrics and pprof from this machine only.".into(),
                vec![
                    permission("api", ""),
                    permission("metrics", ""),
                    permission("pprof", ""),
                ],
            )
        },
    ]
}

/// Reads `yaml_text` (the contents of `file`) and returns the equivalent mtx-auth config.
/// `method` overrides the file's `authMethod`.
pub fn import(
    yaml_text: &str,
    file: &str,
    method: Option<Method>,
) -> Result<Imported, ImportError> {
    let yaml: MediaMtxYaml = serde_saphyr::from_str(yaml_text).map_err(|e| ImportError::Yaml {
        file: file.to_owned(),
        // Without the snippet: it would print lines of the file, which may hold passwords.
        message: e.without_snippet().to_string(),
    })?;
    let mut out = Output::default();
    let file_method = effective_method(&yaml);
    let method = match (method, file_method.as_str()) {
        (Some(m), _) => m,
        (None, "" | "internal") => Method::Internal,
        (None, "jwt") => Method::Jwt,
        (None, "http") => {
            return Err(ImportError::Unsupported {
                file: file.to_owned(),
                message: "authMethod is http, so MediaMTX already uses neither its \
                          authInternalUsers nor its authJWT* settings; pass --method internal \
                          or --method jwt to import one of them anyway"
                    .into(),
            })
        }
        (None, other) => {
            return Err(ImportError::Unsupported {
                file: file.to_owned(),
                message: format!("authMethod {other:?} is not one MediaMTX knows"),
            })
        }
    };
    if yaml
        .rtsp_auth_methods
        .iter()
        .flatten()
        .flatten()
        .any(|m| m == "digest")
    {
        out.note(
            "rtspAuthMethods lists digest: with authMethod http, RTSP clients must use basic \
             authentication, since digest sends MediaMTX no password to pass on",
        );
    }

    out.header(file, method);
    match method {
        Method::Internal => {
            let users = internal_users(&yaml, file, &mut out)?;
            out.users(&users);
            if !text(&yaml.jwt_jwks).0.is_empty() {
                out.line(
                    "# MediaMTX ignores the authJWT* settings under authMethod internal. They \
                     follow, commented out;",
                );
                out.line("# uncomment them to accept these JWTs as well.");
                out.jwt(&yaml, true);
            }
        }
        Method::Jwt => {
            if text(&yaml.jwt_jwks).0.is_empty() {
                return Err(ImportError::Unsupported {
                    file: file.to_owned(),
                    message: "authMethod is jwt but authJWTJWKS is empty".into(),
                });
            }
            let exclude = permissions(&yaml.jwt_exclude);
            if !exclude.is_empty() {
                out.users(&[User::any(
                    "authJWTExclude: MediaMTX lets these requests through without a token.".into(),
                    exclude,
                )]);
            }
            out.jwt(&yaml, false);
        }
    }
    out.finish(file)
}

/// `authMethod`, or `http` when only the pre-v1.8 `externalAuthenticationURL` is set.
fn effective_method(yaml: &MediaMtxYaml) -> String {
    let (method, _) = text(&yaml.auth_method);
    if method.is_empty() && !text(&yaml.external_authentication_url).0.is_empty() {
        return "http".into();
    }
    method
}

/// The users MediaMTX would use under `authMethod: internal`.
fn internal_users(
    yaml: &MediaMtxYaml,
    file: &str,
    out: &mut Output,
) -> Result<Vec<User>, ImportError> {
    let listed = match &yaml.auth_internal_users {
        None => None,
        Some(Spanned { value: None, .. }) => Some(Vec::new()),
        Some(Spanned {
            value: Some(list), ..
        }) => Some(
            list.iter()
                .enumerate()
                .map(|(i, u)| {
                    let line = place(u).map_or(String::new(), |(l, _)| format!(", line {l}"));
                    User {
                        comment: format!("authInternalUsers[{i}] ({file}{line})"),
                        user: text(&u.value.user),
                        pass: text(&u.value.pass),
                        ips: ips(&u.value.ips),
                        permissions: permissions(&u.value.permissions),
                    }
                })
                .collect(),
        ),
    };
    let legacy = legacy_users(yaml);
    match (listed, legacy) {
        (None, None) => {
            out.note("authInternalUsers is absent: MediaMTX's default users are imported");
            Ok(default_users())
        }
        (Some(users), None) => {
            if users.is_empty() {
                out.note("authInternalUsers is empty: MediaMTX denies every request, and so will this config");
            }
            Ok(users)
        }
        (listed, Some(legacy)) => {
            // MediaMTX refuses a file with both, unless authInternalUsers is its default.
            if listed.is_some_and(|users| !is_default(&users)) {
                return Err(ImportError::Unsupported {
                    file: file.to_owned(),
                    message: "authInternalUsers and the legacy per-path credentials (publishUser, \
                              publishPass, publishIPs, readUser, readPass, readIPs) cannot be used \
                              together; MediaMTX refuses this file too"
                        .into(),
                });
            }
            out.note(
                "the legacy per-path credentials (publishUser, readUser, …) are imported as \
                 users, as MediaMTX converts them",
            );
            Ok(legacy)
        }
    }
}

/// MediaMTX compares with its default users before refusing legacy keys beside them.
fn is_default(users: &[User]) -> bool {
    let shapes = |users: &[User]| -> Vec<String> { users.iter().map(User::shape).collect() };
    shapes(users) == shapes(&default_users())
}

/// MediaMTX's conversion of the legacy per-path keys (`conf.go`): anyone may play back, this
/// machine may use the API, metrics and pprof, then per path in name order one publish and one
/// read user, `any` when no user is set, from any IPv4 address when no IPs are set. Each path
/// inherits from `pathDefaults`. `None`: no path has any of the keys.
fn legacy_users(yaml: &MediaMtxYaml) -> Option<Vec<User>> {
    let defaults = yaml.path_defaults.clone().flatten().unwrap_or_default();
    let paths = yaml.paths.as_ref().and_then(Option::as_ref);
    let set = |t: &Text| t.as_ref().is_some_and(|s| s.value.is_some());
    let set_list = |l: &List<String>| l.as_ref().is_some_and(|s| s.value.is_some());
    let has = |p: &LegacyPath| {
        set(&p.publish_user)
            || set(&p.publish_pass)
            || set_list(&p.publish_ips)
            || set(&p.read_user)
            || set(&p.read_pass)
            || set_list(&p.read_ips)
    };
    if !has(&defaults) && !paths.is_some_and(|p| p.values().flatten().any(has)) {
        return None;
    }
    let mut users = vec![
        User::any(
            "MediaMTX's legacy mode: anyone may play back.".into(),
            vec![permission("playback", "")],
        ),
        User {
            ips: vec![("127.0.0.1/32".into(), None), ("::1/128".into(), None)],
            ..User::any(
                "MediaMTX's legacy mode: the API, metrics and pprof from this machine only.".into(),
                vec![
                    permission("api", ""),
                    permission("metrics", ""),
                    permission("pprof", ""),
                ],
            )
        },
    ];
    for (name, path) in paths.into_iter().flatten() {
        let path = path.clone().unwrap_or_default();
        let pattern = match name.as_str() {
            "all" | "all_others" => "~^.*$",
            other => other,
        };
        // A path's own key wins when it is set at all, even to an empty value.
        let pick = |own: &Text, default: &Text| text(if set(own) { own } else { default });
        let pick_ips = |own: &List<String>, default: &List<String>| {
            let list = ips(if set_list(own) { own } else { default });
            if list.is_empty() {
                vec![("0.0.0.0/0".to_owned(), None)]
            } else {
                list
            }
        };
        for (action, user, pass, ip_list) in [
            (
                "publish",
                pick(&path.publish_user, &defaults.publish_user),
                pick(&path.publish_pass, &defaults.publish_pass),
                pick_ips(&path.publish_ips, &defaults.publish_ips),
            ),
            (
                "read",
                pick(&path.read_user, &defaults.read_user),
                pick(&path.read_pass, &defaults.read_pass),
                pick_ips(&path.read_ips, &defaults.read_ips),
            ),
        ] {
            let user = if user.0.is_empty() {
                ("any".to_owned(), user.1)
            } else {
                user
            };
            users.push(User {
                comment: format!(
                    "paths.{name}: {action} (legacy {action}User/{action}Pass/{action}IPs)"
                ),
                user,
                pass,
                ips: ip_list,
                permissions: vec![permission(action, pattern)],
            });
        }
    }
    Some(users)
}

/// The TOML being written, with the YAML place of each value so that the loader's problems can
/// be reported against the file the operator knows: per line, `(column, place)` pairs, a value
/// starting at that 1-based column having come from that place.
#[derive(Default)]
struct Output {
    text: String,
    places: Vec<Vec<(usize, Place)>>,
    notes: Vec<String>,
}

/// A TOML string literal (quotes and escapes done by the toml crate).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl Output {
    fn line(&mut self, line: &str) {
        self.line_at(line, None);
    }

    fn line_at(&mut self, line: &str, at: Place) {
        self.line_with(line, vec![(1, at)]);
    }

    fn line_with(&mut self, line: &str, places: Vec<(usize, Place)>) {
        self.text.push_str(line);
        self.text.push('\n');
        self.places.push(places);
    }

    /// Where in the YAML the value at TOML `line`:`col` came from.
    fn place_of(&self, line: usize, col: usize) -> Place {
        let segments = self.places.get(line.checked_sub(1)?)?;
        segments.iter().rev().find(|(c, _)| *c <= col)?.1
    }

    fn note(&mut self, note: &str) {
        self.notes.push(note.to_owned());
    }

    fn header(&mut self, file: &str, method: Method) {
        let method = match method {
            Method::Internal => "authInternalUsers",
            Method::Jwt => "authJWT* settings",
        };
        for line in [
            format!("# mtx-auth config imported from {file} (its {method}) by `mtx-auth import-mediamtx`."),
            "#".into(),
            "# To switch, set these lines in mediamtx.yml and restart MediaMTX:".into(),
            "#   authMethod: http".into(),
            format!("#   authHTTPAddress: http://{LISTEN}/auth"),
            "#   authHTTPExclude: []".into(),
            "# Keep authHTTPExclude empty: MediaMTX lets excluded requests through without asking, and".into(),
            "# before v1.20.1 its default excluded the API, metrics and pprof, which the users below".into(),
            "# restrict (since v1.20.1 the default is empty).".into(),
            "#".into(),
            "# Check this file with `mtx-auth check --config FILE`. Every key is documented in the".into(),
            "# shipped config/mtx-auth.toml.".into(),
            String::new(),
            "[server]".into(),
            format!("listen = {}", quoted(LISTEN)),
        ] {
            self.line(&line);
        }
    }

    /// Users, in MediaMTX's order (the first that matches allows, in both).
    fn users(&mut self, users: &[User]) {
        for u in users {
            self.line("");
            self.line(&format!("# {}", u.comment));
            self.line("[[users]]");
            self.line_at(&format!("user = {}", quoted(&u.user.0)), u.user.1);
            self.line_at(&format!("pass = {}", quoted(&u.pass.0)), u.pass.1);
            if u.ips.is_empty() {
                self.line("ips = []");
            } else {
                self.line("ips = [");
                for (ip, at) in &u.ips {
                    self.line_at(&format!("  {},", quoted(ip)), *at);
                }
                self.line("]");
            }
            if u.permissions.is_empty() {
                self.line("permissions = []  # none: this user allows nothing");
                continue;
            }
            self.line("permissions = [");
            for p in &u.permissions {
                let mut entry = format!("  {{ action = {}", quoted(&p.action));
                let mut places = vec![(1, p.action_at)];
                if !p.path.is_empty() {
                    places.push((entry.len() + 3, p.path_at.or(p.action_at)));
                    let _ = write!(entry, ", path = {}", quoted(&p.path));
                }
                entry.push_str(" },");
                self.line_with(&entry, places);
            }
            self.line("]");
        }
    }

    /// The `[jwt]` section; `commented` writes every line as a comment.
    fn jwt(&mut self, yaml: &MediaMtxYaml, commented: bool) {
        let c = if commented { "# " } else { "" };
        let (jwks, jwks_at) = text(&yaml.jwt_jwks);
        let (fingerprint, fingerprint_at) = text(&yaml.jwt_jwks_fingerprint);
        let (claim_key, claim_at) = text(&yaml.jwt_claim_key);
        let claim_key = if claim_key.is_empty() {
            "mediamtx_permissions".to_owned()
        } else {
            claim_key
        };
        self.line("");
        self.line(&format!("{c}[jwt]"));
        self.line_at(&format!("{c}jwks_url = {}", quoted(&jwks)), jwks_at);
        if !fingerprint.is_empty() {
            if jwks.starts_with("https://") {
                self.line("# The key server's certificate is trusted by its SHA-256 alone, as in MediaMTX.");
                self.line_at(
                    &format!("{c}jwks_fingerprint = {}", quoted(&fingerprint)),
                    fingerprint_at,
                );
            } else if !commented {
                // Plain HTTP has no certificate: MediaMTX never uses the fingerprint then.
                let note = "authJWTJWKSFingerprint is left out: authJWTJWKS is not an https URL, \
                            so there is no certificate to pin";
                self.line(&format!("# Note: {note}."));
                self.note(note);
            }
        }
        self.line_at(&format!("{c}claim_key = {}", quoted(&claim_key)), claim_at);
        for (key, value) in [
            ("issuer", &yaml.jwt_issuer),
            ("audience", &yaml.jwt_audience),
        ] {
            let (value, at) = text(value);
            if !value.is_empty() {
                self.line_at(&format!("{c}{key} = {}", quoted(&value)), at);
            }
        }
        self.line(
            "# MediaMTX checks exp only when a token has one, with no leeway. These two lines keep",
        );
        self.line("# that; remove them to require exp and allow 30 s of clock skew (recommended).");
        self.line(&format!("{c}require_exp = false"));
        self.line(&format!("{c}leeway_secs = 0"));
        if commented {
            return;
        }
        let (in_query, _) = text(&yaml.jwt_in_http_query);
        if matches!(in_query.as_str(), "false" | "no" | "off") {
            let note = "authJWTInHTTPQuery is off in MediaMTX, but mtx-auth reads a token from \
                        a single jwt= or token= query parameter for every protocol";
            self.line(&format!("# Note: {note}."));
            self.note(note);
        }
    }

    /// Checks the TOML with the config loader and returns it, or its problems placed in the YAML.
    fn finish(self, file: &str) -> Result<Imported, ImportError> {
        match Config::parse(&self.text, file) {
            Ok(_) => Ok(Imported {
                toml: self.text,
                notes: self.notes,
            }),
            Err(e) => Err(ImportError::Invalid(ConfigError {
                problems: e
                    .problems
                    .into_iter()
                    .map(|p| {
                        let (line, col) = self.place_of(p.line, p.col).unwrap_or((0, 0));
                        Problem {
                            file: file.to_owned(),
                            line: line as usize,
                            col: col as usize,
                            message: p.message,
                        }
                    })
                    .collect(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT_AS_CIDRS: &str = "authInternalUsers:\n\
        - user: any\n  permissions: [{action: publish}, {action: read}, {action: playback}]\n\
        - user: any\n  ips: ['127.0.0.1/32', '::1/128']\n  permissions: [{action: api}, {action: metrics}, {action: pprof}]\n\
        paths:\n  cam:\n    readUser: u\n    readPass: p\n";

    /// MediaMTX accepts legacy keys beside its default users however the addresses are spelled
    /// (it compares parsed networks), and refuses them beside any other users.
    #[test]
    fn legacy_keys_beside_the_default_users() {
        let imported = import(DEFAULT_AS_CIDRS, "m.yml", None).expect("imported");
        assert!(
            imported.toml.contains("# paths.cam: read"),
            "{}",
            imported.toml
        );
        let changed = DEFAULT_AS_CIDRS.replace("{action: pprof}", "{action: publish}");
        assert!(matches!(
            import(&changed, "m.yml", None),
            Err(ImportError::Unsupported { .. })
        ));
    }

    /// A value the loader refuses is reported at its place in the YAML, column included.
    #[test]
    fn problems_are_placed_in_the_yaml() {
        let yaml =
            "authInternalUsers:\n- user: a\n  permissions:\n  - {action: read, path: '~(('}\n";
        let Err(ImportError::Invalid(e)) = import(yaml, "m.yml", None) else {
            panic!("expected a problem");
        };
        let p = &e.problems[0];
        assert_eq!((p.line, p.col), (4, 26), "{p}");
    }
}
