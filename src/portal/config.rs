//! `[portal]`, `[portal.urls]` and `[portal.oidc]`: read once at start, like `[server]` (the
//! listener, its public address and its keys belong to the process; a reload that changes them
//! says they apply on restart).

use std::net::SocketAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::reader::{Secret, Table};
use crate::permission::Permission;
use crate::portal::mfa::Sealer;
use crate::source::jwt::config::read_roles;
use crate::source::jwt::RoleMapping;

/// Whether people are asked for a second factor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaMode {
    /// Never; enrolling is not offered.
    Off,
    /// Asked of those who enrolled.
    Optional,
    /// Everyone: who has not enrolled yet does so right after signing in.
    Required,
}

/// How people reach MediaMTX, to build their links: each protocol that is set gets a link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Urls {
    pub rtsp: Option<String>,
    pub rtmp: Option<String>,
    pub srt: Option<String>,
    pub hls: Option<String>,
    pub webrtc: Option<String>,
}

/// `[portal.oidc]`: "Sign in with …" through an OpenID provider (authorization code + PKCE).
#[derive(Debug, Clone)]
pub struct PortalOidc {
    pub discovery_url: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// The button's label.
    pub name: String,
    /// Scopes asked for beyond `openid` (default: `profile email`, and `groups` is common).
    pub scopes: Vec<String>,
    /// What everyone who signs in this way holds.
    pub permissions: Vec<Permission>,
    pub roles: Vec<RoleMapping>,
}

/// `[portal]`, checked.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    pub listen: SocketAddr,
    /// Without a trailing slash.
    pub public_url: String,
    /// `scheme://host[:port]` of `public_url`: what `Origin` must say on every state change.
    pub origin: String,
    /// `public_url` is https: cookies are `Secure`.
    pub secure: bool,
    pub session_ttl: Duration,
    pub mfa: MfaMode,
    /// `source:name`; a bare name is a `[[users]]` user. For `[portal.oidc]`, whose names people
    /// may choose at some providers, `portal_oidc:<sub>`.
    pub admin_users: Vec<String>,
    /// Lower-cased; matched against an identity provider's verified e-mail only.
    pub admin_emails: Vec<String>,
    pub link_ttl: Duration,
    /// The key MFA secrets are sealed with; `None` only when `mfa = "off"` (or when `check`
    /// could not read it).
    pub mfa_key: Option<Secret>,
    pub trusted_proxies: Vec<IpNet>,
    pub urls: Urls,
    pub oidc: Option<PortalOidc>,
    /// The page's title.
    pub title: String,
}

/// A reload compares the section to say that a change applies on restart. Permissions hold
/// compiled regexes, so the comparison is of what they print, secrets included.
impl PartialEq for PortalConfig {
    fn eq(&self, other: &Self) -> bool {
        format!("{self:?}") == format!("{other:?}")
            && self.mfa_key == other.mfa_key
            && self.oidc.as_ref().map(|o| &o.client_secret)
                == other.oidc.as_ref().map(|o| &o.client_secret)
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9080";

/// Reads `[portal]`.
pub fn read(mut t: Table<'_>) -> Option<PortalConfig> {
    let errs = t.errs();
    let before = errs.count();
    let listen = match t.string("listen") {
        Some(s) => match s.value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(
                    s.span,
                    format!("listen: {:?} is not an address:port", s.value),
                );
                None
            }
        },
        None => DEFAULT_LISTEN.parse().ok(),
    };
    let public_url = match t.url("public_url") {
        Some(url) => Some(url.trim_end_matches('/').to_owned()),
        None => {
            if !t.has("public_url") {
                t.problem("[portal] needs public_url (the address people use, e.g. https://streams.example.com)".into());
            }
            None
        }
    };
    let origin = public_url.as_deref().and_then(|u| {
        let url = reqwest::Url::parse(u).ok()?;
        Some(url.origin().ascii_serialization())
    });
    let session_ttl = t
        .secs("session_ttl_secs", 60, 366 * 86_400)
        .unwrap_or(Duration::from_secs(86_400));
    let link_ttl = t
        .secs("link_ttl_secs", 60, 366 * 86_400)
        .unwrap_or(Duration::from_secs(86_400));
    let mfa = match t.string("mfa") {
        None => MfaMode::Optional,
        Some(s) => match s.value.as_str() {
            "off" => MfaMode::Off,
            "optional" => MfaMode::Optional,
            "required" => MfaMode::Required,
            other => {
                errs.push(
                    s.span,
                    format!("mfa: {other:?} is not one of \"off\", \"optional\", \"required\""),
                );
                MfaMode::Optional
            }
        },
    };
    let key_span = ["mfa_key", "mfa_key_file", "mfa_key_env"]
        .into_iter()
        .find(|k| t.has(k))
        .map(|k| t.span_of(k));
    let mfa_key = t.secret("mfa_key", "mfa_key_file", "mfa_key_env").flatten();
    match (&mfa_key, mfa) {
        (None, MfaMode::Optional | MfaMode::Required) if errs.count() == before => t.problem(
            format!("[portal] mfa = \"{}\" needs mfa_key_env or mfa_key_file: 32 random bytes that encrypt MFA secrets at rest (make them with `openssl rand -base64 32`), or mfa = \"off\"",
            if mfa == MfaMode::Required { "required" } else { "optional" }),
        ),
        (Some(key), _) if !key.is_absent() => {
            if let Err(e) = Sealer::from_base64(&key.0) {
                errs.push(key_span.unwrap_or_default(), format!("mfa key: {e}"));
            }
        }
        _ => {}
    }
    let admin_users = t
        .strings("admin_users")
        .unwrap_or_default()
        .into_iter()
        .map(|s| match s.value.split_once(':') {
            Some(_) => s.value,
            None => format!("users:{}", s.value),
        })
        .collect();
    let admin_emails = t
        .strings("admin_emails")
        .unwrap_or_default()
        .into_iter()
        .map(|s| s.value.to_lowercase())
        .collect();
    let trusted_proxies = t.networks("trusted_proxies");
    let title = t
        .string("title")
        .map(|s| s.value)
        .unwrap_or_else(|| "Streams".into());
    let urls = t.table("urls").map(read_urls).unwrap_or_default();
    let oidc = t.table("oidc").and_then(read_oidc);
    t.finish_with(|key| format!("{key} is not a [portal] key"));
    if errs.count() > before {
        return None;
    }
    let public_url = public_url?;
    Some(PortalConfig {
        listen: listen?,
        secure: public_url.starts_with("https://"),
        origin: origin?,
        public_url,
        session_ttl,
        mfa,
        admin_users,
        admin_emails,
        link_ttl,
        mfa_key,
        trusted_proxies,
        urls,
        oidc,
        title,
    })
}

fn read_urls(mut t: Table<'_>) -> Urls {
    let mut url = |key: &'static str, schemes: &[&str]| {
        let s = t.string(key)?;
        let ok = reqwest::Url::parse(&s.value).is_ok_and(|u| schemes.contains(&u.scheme()));
        if !ok {
            t.errs().push(
                s.span,
                format!("{key}: expected a {} URL", schemes.join(" or ")),
            );
            return None;
        }
        Some(s.value.trim_end_matches('/').to_owned())
    };
    let urls = Urls {
        rtsp: url("rtsp", &["rtsp", "rtsps"]),
        rtmp: url("rtmp", &["rtmp", "rtmps"]),
        srt: url("srt", &["srt"]),
        hls: url("hls", &["http", "https"]),
        webrtc: url("webrtc", &["http", "https"]),
    };
    t.finish_with(|key| format!("{key} is not a [portal.urls] key (rtsp, rtmp, srt, hls, webrtc)"));
    urls
}

fn read_oidc(mut t: Table<'_>) -> Option<PortalOidc> {
    let errs = t.errs();
    let before = errs.count();
    let discovery_url = t.url("discovery_url");
    if discovery_url.is_none() && !t.has("discovery_url") {
        t.problem(
            "[portal.oidc] needs discovery_url (the provider's .well-known/openid-configuration)"
                .into(),
        );
    }
    let client_id = t.string("client_id").map(|s| s.value);
    if client_id.is_none() && !t.has("client_id") {
        t.problem("[portal.oidc] needs client_id".into());
    }
    let client_secret = t
        .secret("client_secret", "client_secret_file", "client_secret_env")
        .flatten();
    let name = t
        .string("name")
        .map(|s| s.value)
        .unwrap_or_else(|| "single sign-on".into());
    let scopes = t
        .strings("scopes")
        .map(|v| v.into_iter().map(|s| s.value).collect())
        .unwrap_or_else(|| vec!["profile".into(), "email".into()]);
    let permissions = t.permissions("permissions").unwrap_or_default();
    let roles = read_roles(&mut t);
    t.finish_with(|key| format!("{key} is not a [portal.oidc] key"));
    if errs.count() > before {
        return None;
    }
    Some(PortalOidc {
        discovery_url: discovery_url?,
        client_id: client_id?,
        client_secret,
        name,
        scopes,
        permissions,
        roles,
    })
}
