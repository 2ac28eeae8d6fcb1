//! `[mediamtx]`: where MediaMTX's control API is, so that sessions can be kicked.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::reader::{parse_net, Table};

/// `[mediamtx]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediamtxConfig {
    /// The API for calls from any address `instances` does not name.
    pub api_url: Option<Arc<str>>,
    /// Per-caller APIs, for an mtx-auth that serves several MediaMTX instances: the first whose
    /// `from` holds the address the `/auth` call came from.
    pub instances: Vec<Instance>,
    /// Live sessions remembered at most; beyond it, a session that would have to be tracked is
    /// denied.
    pub max_sessions: usize,
    /// Each API call's time limit.
    pub timeout: Duration,
    /// How often the API's session lists are read, to forget sessions that ended.
    pub prune_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub from: IpNet,
    pub api_url: Arc<str>,
}

impl MediamtxConfig {
    /// The API that serves a caller at `peer` (the MediaMTX that sent the `/auth` call).
    pub fn api_for(&self, peer: Option<IpAddr>) -> Option<&Arc<str>> {
        let instance = peer.and_then(|ip| self.instances.iter().find(|i| i.from.contains(&ip)));
        instance.map(|i| &i.api_url).or(self.api_url.as_ref())
    }

    /// Every API named, once each.
    pub fn apis(&self) -> Vec<&Arc<str>> {
        let mut apis: Vec<&Arc<str>> = self.instances.iter().map(|i| &i.api_url).collect();
        apis.extend(self.api_url.as_ref());
        apis.sort_unstable();
        apis.dedup();
        apis
    }
}

/// Reads `[mediamtx]`.
pub fn read(mut t: Table<'_>) -> Option<MediamtxConfig> {
    let default_api = api_url(&mut t, "api_url");
    let mut instances = Vec::new();
    for mut entry in t.tables("instances").unwrap_or_default() {
        let from = entry.string("from");
        let api = api_url(&mut entry, "api_url");
        match (from, api) {
            (Some(from), Some(api_url)) => match parse_net(&from.value) {
                Some(from) => instances.push(Instance {
                    from,
                    api_url: api_url.into(),
                }),
                None => entry.errs().push(
                    from.span,
                    format!("from: {:?} is not an IP address or CIDR", from.value),
                ),
            },
            (None, _) => entry.problem("an instance needs from (the MediaMTX's address)".into()),
            (_, None) => {
                if !entry.has("api_url") {
                    entry.problem("an instance needs api_url".into());
                }
            }
        }
        entry.finish();
    }
    let mut config = MediamtxConfig {
        api_url: default_api.map(Arc::from),
        instances,
        max_sessions: 100_000,
        timeout: Duration::from_secs(3),
        prune_interval: Duration::from_secs(30),
    };
    if let Some(n) = t.int("max_sessions", 1, 10_000_000) {
        config.max_sessions = n as usize;
    }
    if let Some(d) = t.secs("timeout_secs", 1, 60) {
        config.timeout = d;
    }
    if let Some(d) = t.secs("prune_interval_secs", 1, 3600) {
        config.prune_interval = d;
    }
    if config.api_url.is_none() && config.instances.is_empty() && t.errs().count() == 0 {
        t.problem(
            "[mediamtx] needs api_url (MediaMTX's control API, e.g. http://127.0.0.1:9997)".into(),
        );
    }
    t.finish();
    Some(config)
}

/// An API URL that mtx-auth may send its secret to: https anywhere, plain http only to a
/// loopback address (the secret would otherwise cross a network in the clear).
fn api_url(t: &mut Table<'_>, key: &'static str) -> Option<String> {
    let span = t.has(key).then(|| t.span_of(key));
    let url = t.url(key)?;
    let parsed = reqwest::Url::parse(&url).ok()?;
    let host = parsed.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() == "http" && !loopback {
        t.errs().push(
            span.unwrap_or_default(),
            format!("{key}: plain http only to a loopback address (127.0.0.1, ::1, localhost): mtx-auth's API secret would cross the network in the clear; use https"),
        );
        return None;
    }
    Some(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn api_urls_and_instances() {
        let c = Config::parse(
            "[mediamtx]\napi_url = \"http://127.0.0.1:9997/\"\ninstances = [{ from = \"10.0.0.5\", api_url = \"https://cam-a:9997\" }]\n",
            "t.toml",
        )
        .unwrap()
        .mediamtx
        .unwrap();
        assert_eq!(
            c.api_for("10.0.0.5".parse().ok()).map(|a| &**a),
            Some("https://cam-a:9997")
        );
        assert_eq!(
            c.api_for("10.0.0.6".parse().ok()).map(|a| &**a),
            Some("http://127.0.0.1:9997")
        );
        assert_eq!(c.apis().len(), 2);
    }

    #[test]
    fn the_secret_never_travels_in_the_clear() {
        for (text, want) in [
            (
                "api_url = \"http://10.0.0.5:9997\"",
                "t.toml:2:11: api_url: plain http only to a loopback",
            ),
            (
                "api_url = \"ftp://x\"",
                "t.toml:2:11: api_url: not an http or https URL",
            ),
            (
                "instances = [{ from = \"x\", api_url = \"https://a\" }]",
                "t.toml:2:23: from: \"x\" is not",
            ),
            (
                "max_sessions = 0",
                "t.toml:2:16: max_sessions must be between",
            ),
        ] {
            let e = Config::parse(&format!("[mediamtx]\n{text}\n"), "t.toml").unwrap_err();
            let p = e.problems[0].to_string();
            assert!(p.starts_with(want), "{text}: {p}");
        }
        assert!(Config::parse(
            "[mediamtx]\napi_url = \"http://localhost:9997\"\n",
            "t.toml"
        )
        .is_ok());
        assert!(Config::parse("[mediamtx]\napi_url = \"http://[::1]:9997\"\n", "t.toml").is_ok());
    }
}
