//! `GET /metrics` through HTTP: exact counts after known traffic, labels from fixed sets only,
//! nothing a client sent (names, passwords, paths, odd protocols) in the text, per-source
//! upstream and cache counters, the JWT key set's state, and counters that survive reloads.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::json;

use crate::support::media::{self, FakeMediaServer, Flavor, Mode, UserSpec};
use crate::support::{mtx_request, spawn, spawn_live, temp_config, TestApp};

/// `testpass`, argon2i.
const ARGON2_TESTPASS: &str =
    "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo";

/// A scrape: the raw text and its samples, keyed by `name{labels}` exactly as written.
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    /// The sample's value; panics (showing the text) if it is absent.
    fn value(&self, key: &str) -> f64 {
        match self.samples.get(key) {
            Some(v) => *v,
            None => panic!("no sample {key} in:\n{}", self.text),
        }
    }

    fn has(&self, key: &str) -> bool {
        self.samples.contains_key(key)
    }

    /// Sum of every sample of `name` (with any labels).
    fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(k, _)| k.split('{').next() == Some(name))
            .map(|(_, v)| v)
            .sum()
    }
}

async fn scrape(app: &TestApp) -> Scrape {
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (key, value) = line.rsplit_once(' ').expect("`name{labels} value`");
        let value = value.parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(
            samples.insert(key.to_owned(), value).is_none(),
            "twice: {key}"
        );
    }
    // Every family has its help text, and every metric is ours.
    for key in samples.keys() {
        assert!(key.starts_with("mtx_auth_"), "{key}");
        let family = key.split('{').next().unwrap();
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| family.strip_suffix(s))
            .unwrap_or(family);
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "no HELP for {family}"
        );
    }
    Scrape { text, samples }
}

fn decisions(action: &str, protocol: &str, source: &str, outcome: &str) -> String {
    format!(
        "mtx_auth_decisions_total{{action=\"{action}\",protocol=\"{protocol}\",source=\"{source}\",outcome=\"{outcome}\"}}"
    )
}

#[actix_web::test]
async fn decisions_denials_latency_and_refused_requests_are_counted_exactly() {
    let app = spawn(&format!(
        r#"
[[users]]
user = "zelda-viewer"
pass = "hunter2-viewer-pw"
permissions = [{{ action = "read" }}]

[[users]]
user = "argon-ursula"
pass = "{ARGON2_TESTPASS}"
permissions = [{{ action = "read" }}]

[[users]]
user = "any"
ips = ["127.0.0.1"]
permissions = [{{ action = "api" }}]
"#
    ));
    let secrets = [
        "zelda-viewer",
        "hunter2-viewer-pw",
        "argon-ursula",
        "testpass",
        "wrong-pw-guess",
        "secret-cam-path",
        "gopher-proto",
        "fly-away",
    ];
    let read =
        |user: &str, pass: &str| mtx_request("read", "secret-cam-path", "10.0.0.1", user, pass);
    app.expect(&[
        (read("zelda-viewer", "hunter2-viewer-pw"), 200),
        (read("zelda-viewer", "hunter2-viewer-pw"), 200),
        // An argon2 user: verified once, then from the cache.
        (read("argon-ursula", "testpass"), 200),
        (read("argon-ursula", "testpass"), 200),
        (read("zelda-viewer", "wrong-pw-guess"), 401),
        (read("", ""), 401),
        (mtx_request("fly-away", "cam", "10.0.0.1", "", ""), 401),
        (mtx_request("api", "", "127.0.0.1", "", ""), 200),
        (
            json!({"action": "read", "path": "cam", "protocol": "gopher-proto",
                   "user": "zelda-viewer", "password": "hunter2-viewer-pw"}),
            200,
        ),
    ])
    .await;
    let decided = 9.0;
    assert_eq!(app.auth_raw(b"not json".to_vec(), None).await.0, 400);
    assert_eq!(app.auth_raw(br#"{"user": 5}"#.to_vec(), None).await.0, 400);
    let huge = json!({"action": "read", "path": "a".repeat(65 * 1024)});
    assert_eq!(app.auth(&huge).await.0, 413);

    let m = scrape(&app).await;
    let expected = [
        (decisions("read", "rtsp", "users", "allow"), 4.0),
        (decisions("read", "rtsp", "none", "deny"), 2.0),
        (decisions("unknown", "rtsp", "none", "deny"), 1.0),
        (decisions("api", "", "users", "allow"), 1.0),
        // Not one of MediaMTX's protocols: a client can't make new series.
        (decisions("read", "other", "users", "allow"), 1.0),
        ("mtx_auth_denials_total{reason=\"no_match\"}".into(), 1.0),
        (
            "mtx_auth_denials_total{reason=\"no_credentials\"}".into(),
            1.0,
        ),
        (
            "mtx_auth_denials_total{reason=\"unknown_action\"}".into(),
            1.0,
        ),
        ("mtx_auth_bad_requests_total{status=\"400\"}".into(), 2.0),
        ("mtx_auth_bad_requests_total{status=\"413\"}".into(), 1.0),
        // Only the argon2 user's decisions touch the verification cache.
        ("mtx_auth_cache_misses_total{cache=\"users\"}".into(), 1.0),
        ("mtx_auth_cache_hits_total{cache=\"users\"}".into(), 1.0),
        ("mtx_auth_decision_duration_seconds_count".into(), decided),
        (
            "mtx_auth_decision_duration_seconds_bucket{le=\"+Inf\"}".into(),
            decided,
        ),
        ("mtx_auth_config_generation".into(), 1.0),
        ("mtx_auth_config_reloads_total{result=\"ok\"}".into(), 0.0),
        (
            "mtx_auth_config_reloads_total{result=\"error\"}".into(),
            0.0,
        ),
    ];
    for (key, want) in &expected {
        assert_eq!(m.value(key), *want, "{key}\n{}", m.text);
    }
    assert_eq!(m.sum("mtx_auth_decisions_total"), decided, "{}", m.text);
    assert_eq!(m.sum("mtx_auth_denials_total"), 3.0, "{}", m.text);
    // The buckets are cumulative and the 10 µs … 5 s bounds are there.
    assert!(m.value("mtx_auth_decision_duration_seconds_bucket{le=\"5.0\"}") <= decided);
    assert!(m.has("mtx_auth_decision_duration_seconds_bucket{le=\"0.005\"}"));
    assert!(m.value("mtx_auth_decision_duration_seconds_sum") > 0.0);
    // No sources configured: no upstream or key set series.
    assert!(!m.text.contains("upstream_"), "{}", m.text);
    assert!(!m.text.contains("jwks_"), "{}", m.text);
    for secret in secrets {
        assert!(
            !m.text.contains(secret),
            "{secret} leaked into:\n{}",
            m.text
        );
    }
    // Scraping counts nothing.
    let again = scrape(&app).await;
    assert_eq!(again.sum("mtx_auth_decisions_total"), decided);
}

#[actix_web::test]
async fn jellyfin_upstream_calls_errors_and_cache_per_source() {
    let jf = FakeMediaServer::start(
        Flavor::Jellyfin,
        vec![
            UserSpec::new("alice", "alice-pw"),
            UserSpec::new("bob", "bob-pw"),
        ],
    );
    let app = spawn(&format!("[jellyfin]\nurl = \"{}\"\n", jf.url()));
    app.wait_ready().await;
    let read = |user: &str, pass: &str| mtx_request("read", "cam", "10.0.0.1", user, pass);
    app.expect(&[
        // One login upstream, then twice from the cache.
        (read("alice", "alice-pw"), 200),
        (read("alice", "alice-pw"), 200),
        (read("alice", "alice-pw"), 200),
        // Jellyfin says no.
        (read("alice", "not-her-pw"), 401),
    ])
    .await;
    // Jellyfin fails: an upstream error, never read as wrong credentials.
    jf.set_mode(Mode::Status(503));
    let (s, b) = app.auth(&read("bob", "bob-pw")).await;
    assert_eq!(
        (s, b["error"].as_str()),
        (401, Some("jellyfin unreachable"))
    );

    let m = scrape(&app).await;
    let expected = [
        ("mtx_auth_upstream_calls_total{source=\"jellyfin\"}", 3.0),
        ("mtx_auth_upstream_errors_total{source=\"jellyfin\"}", 1.0),
        (
            "mtx_auth_upstream_rejections_total{source=\"jellyfin\"}",
            1.0,
        ),
        (
            "mtx_auth_upstream_stale_answers_total{source=\"jellyfin\"}",
            0.0,
        ),
        ("mtx_auth_upstream_ready{source=\"jellyfin\"}", 1.0),
        ("mtx_auth_cache_hits_total{cache=\"jellyfin\"}", 2.0),
        ("mtx_auth_cache_misses_total{cache=\"jellyfin\"}", 3.0),
        ("mtx_auth_denials_total{reason=\"unreachable\"}", 1.0),
        ("mtx_auth_denials_total{reason=\"no_match\"}", 1.0),
    ];
    for (key, want) in expected {
        assert_eq!(m.value(key), want, "{key}\n{}", m.text);
    }
    assert_eq!(
        m.value(&decisions("read", "rtsp", "jellyfin", "allow")),
        3.0
    );
    assert_eq!(m.value(&decisions("read", "rtsp", "none", "deny")), 2.0);
    for secret in ["alice", "bob", "-pw", &jf.url()] {
        assert!(
            !m.text.contains(secret),
            "{secret} leaked into:\n{}",
            m.text
        );
    }
}

#[actix_web::test]
async fn unreachable_jwks_is_not_ready_and_counts_failed_fetches() {
    let app = spawn(&format!(
        "[jwt]\njwks_url = \"{}/jwks\"\n",
        media::unused_url()
    ));
    // The first fetch starts with the server; wait until it has failed.
    let mut m = scrape(&app).await;
    for _ in 0..500 {
        if m.value("mtx_auth_jwks_fetch_failures_total{source=\"jwt\"}") >= 1.0 {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        m = scrape(&app).await;
    }
    assert!(m.value("mtx_auth_jwks_fetch_failures_total{source=\"jwt\"}") >= 1.0);
    assert!(m.value("mtx_auth_jwks_fetches_total{source=\"jwt\"}") >= 1.0);
    assert_eq!(m.value("mtx_auth_jwks_ready{source=\"jwt\"}"), 0.0);
    // Never loaded: no age.
    assert!(!m.text.contains("mtx_auth_jwks_age_seconds{"), "{}", m.text);
    assert_eq!(m.value("mtx_auth_cache_hits_total{cache=\"jwt\"}"), 0.0);
}

#[actix_web::test]
async fn counters_survive_reloads_and_reloads_are_counted() {
    let user = |pass: &str| {
        format!(
            "[[users]]\nuser = \"u\"\npass = \"{pass}\"\npermissions = [{{ action = \"read\" }}]\n"
        )
    };
    let path = temp_config("reload.toml", &user("one"));
    let (app, live) = spawn_live(&path);
    let read = |pass: &str| mtx_request("read", "cam", "10.0.0.1", "u", pass);
    assert_eq!(app.status(&read("one")).await, 200);

    std::fs::write(&path, user("two")).unwrap();
    assert_eq!(live.reload().unwrap(), 2);
    std::fs::write(&path, "[[users]]\nuser = \"\"\n").unwrap();
    assert!(live.reload().is_err());
    assert_eq!(app.status(&read("two")).await, 200);
    assert_eq!(app.status(&read("one")).await, 401);

    let m = scrape(&app).await;
    assert_eq!(m.value(&decisions("read", "rtsp", "users", "allow")), 2.0);
    assert_eq!(m.value(&decisions("read", "rtsp", "none", "deny")), 1.0);
    assert_eq!(m.value("mtx_auth_config_reloads_total{result=\"ok\"}"), 1.0);
    assert_eq!(
        m.value("mtx_auth_config_reloads_total{result=\"error\"}"),
        1.0
    );
    assert_eq!(m.value("mtx_auth_config_generation"), 2.0);
    assert_eq!(m.value("mtx_auth_decision_duration_seconds_count"), 3.0);
}

#[actix_web::test]
async fn upstream_counters_continue_across_a_reload_of_the_same_upstream() {
    let jf = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("alice", "alice-pw")]);
    let section = |perms: &str| {
        format!(
            "[jellyfin]\nurl = \"{}\"\npermissions = [{perms}]\n",
            jf.url()
        )
    };
    let path = temp_config("jellyfin.toml", &section("{ action = \"read\" }"));
    let (app, live) = spawn_live(&path);
    app.wait_ready().await;
    let read = mtx_request("read", "cam", "10.0.0.1", "alice", "alice-pw");
    assert_eq!(app.status(&read).await, 200);
    let calls = "mtx_auth_upstream_calls_total{source=\"jellyfin\"}";
    assert_eq!(scrape(&app).await.value(calls), 1.0);

    // Same URL, other permissions: the caches start empty, the counters go on.
    std::fs::write(
        &path,
        section("{ action = \"read\" }, { action = \"playback\" }"),
    )
    .unwrap();
    assert_eq!(live.reload().unwrap(), 2);
    assert_eq!(scrape(&app).await.value(calls), 1.0);
    assert_eq!(app.status(&read).await, 200);
    let m = scrape(&app).await;
    assert_eq!(m.value(calls), 2.0);
    assert_eq!(m.value("mtx_auth_upstream_ready{source=\"jellyfin\"}"), 1.0);
    assert_eq!(
        m.value(&decisions("read", "rtsp", "jellyfin", "allow")),
        2.0
    );
}
