//! The monitoring kit against the real thing: Debian's `prometheus` on loopback scrapes a running
//! `mtx-auth serve` every second and evaluates `deploy/prometheus/alerts.yml` every second. After
//! allows, denies, a password spray, a kick and two reloads (one refused), Prometheus's HTTP API
//! must show: every `mtx_auth_*` series with exactly the labels the README's metrics table
//! documents, every rule evaluated without error, the recording rules with values, the spray
//! alert pending (its `for:` is ten minutes; pending is what an operator's Prometheus shows first)
//! and the refused reload firing, while the alerts of a healthy service stay quiet. Every query
//! of the Grafana dashboard must parse, and the main panels must show data.
//!
//! `promtool test rules` (scripts/check-monitoring.sh) tests each rule on synthetic series; this
//! tests the names, labels and exposition they assume against what mtx-auth really serves.
//!
//! Without `prometheus` (from `MTX_AUTH_PROMETHEUS`, else `PATH`) the test prints `skipped: …`
//! and passes, unless `CI` is set: then it fails, naming the package. Nothing here asserts how
//! long anything takes: each expectation is polled until a generous deadline.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::mediamtx::FakeMediamtx;
use crate::support::{mtx_request, revoke, temp_config, try_issue, Binary, TestApp};

/// How long any one expectation may take to come true. Scrapes and rule evaluations happen every
/// second; this only bounds a test that would otherwise hang.
const DEADLINE: Duration = Duration::from_secs(120);

/// `testpass`, argon2i: a user whose first allow runs argon2 and whose next ones hit the cache.
const ARGON2_TESTPASS: &str =
    "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo";

/// The failure limit of the test's config: small, so that a short spray reaches it.
const MAX_FAILURES: usize = 5;

/// Attempts refused by the limit in the spray: enough that the rate over 5 minutes
/// (`mtx_auth:denials:rate5m`) exceeds MtxAuthPasswordSpray's 1 per second however fast they
/// are sent (1000 / 300 s).
const SPRAY: usize = 1000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The `prometheus` binary, or None after printing why the test is skipped; under CI (`CI` set)
/// a missing one fails the test instead.
fn prometheus_binary() -> Option<PathBuf> {
    let found = match std::env::var_os("MTX_AUTH_PROMETHEUS").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("prometheus"))
                .find(|p| p.is_file())
        }),
    };
    if let Some(p) = found.filter(|p| p.is_file()) {
        return Some(p);
    }
    let why =
        "prometheus is not installed (apt-get install prometheus, or set MTX_AUTH_PROMETHEUS)";
    if std::env::var_os("CI").is_some() {
        panic!("{why}; CI is set, so the monitoring test must run");
    }
    eprintln!("skipped: {why}");
    None
}

/// A Prometheus of its own: config, storage and log in a temporary folder, its API on a free
/// loopback port. Killed when dropped, so a failing test leaves nothing running.
struct Prometheus {
    child: Child,
    base: String,
    client: reqwest::Client,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts `bin` scraping `target` (host:port) as job `mtx-auth`, with the shipped rules.
    fn start(bin: &Path, target: &str) -> Prometheus {
        let dir = tempfile::Builder::new()
            .prefix("prometheus-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let rules = root().join("deploy/prometheus/alerts.yml");
        // The rule groups set no interval of their own, so they run at evaluation_interval.
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules:?}\n\
             scrape_configs:\n  - job_name: mtx-auth\n    static_configs:\n      - targets: [{target:?}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let port = crate::support::free_port();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            dir,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Waits for `/-/ready`; fails at once, with its log, if Prometheus exits.
    async fn wait_ready(&mut self) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("prometheus exited ({status}):\n{}", self.log());
            }
            let ready = self.client.get(format!("{}/-/ready", self.base)).send();
            if matches!(ready.await, Ok(r) if r.status().is_success()) {
                return;
            }
            pause().await;
        }
        panic!("prometheus never became ready:\n{}", self.log());
    }

    /// GET an API path; the JSON answer, whatever its status.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .query(params)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}\n{}", self.log()));
        let text = resp.text().await.unwrap();
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}"))
    }

    /// An instant query's answer (`status`, `data.result`, or `error`).
    async fn query(&self, expr: &str) -> Value {
        self.api("/api/v1/query", &[("query", expr)]).await
    }

    /// Polls `expr` until its result (a vector) satisfies `ok`; returns that result.
    async fn wait_for(&self, what: &str, expr: &str, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < DEADLINE {
            last = self.query(expr).await;
            assert_eq!(last["status"], "success", "{expr}: {last}");
            let result = last["data"]["result"].as_array().unwrap();
            if ok(result) {
                return result.clone();
            }
            pause().await;
        }
        panic!("{what}: `{expr}` never did; last answer: {last}");
    }

    /// Polls `/api/v1/alerts` until `name` is active for `instance` in one of `states`.
    async fn wait_for_alert(&self, name: &str, instance: &str, states: &[&str]) -> Value {
        let start = Instant::now();
        let mut last = Value::Null;
        while start.elapsed() < DEADLINE {
            last = self.api("/api/v1/alerts", &[]).await;
            let found = last["data"]["alerts"].as_array().unwrap().iter().find(|a| {
                a["labels"]["alertname"] == name
                    && a["labels"]["instance"] == instance
                    && states.iter().any(|s| a["state"] == *s)
            });
            if let Some(alert) = found {
                return alert.clone();
            }
            pause().await;
        }
        panic!("{name} never became {states:?}; alerts: {last}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pause() {
    actix_web::rt::time::sleep(Duration::from_millis(250)).await;
}

/// The README's metrics table: each documented metric with its labels. A row may name several
/// metrics (`hits`, `misses`); backticked words in parentheses in the labels cell are values
/// (`source` (`jwt`, `oidc`)), not labels.
fn documented_metrics() -> HashMap<String, BTreeSet<String>> {
    let readme = read("README.md");
    let section = readme
        .split("\n### Metrics\n")
        .nth(1)
        .expect("README has a ### Metrics section");
    let ticked = |cell: &str| -> Vec<String> {
        cell.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    let mut documented = HashMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `mtx_auth_")) {
        let cells: Vec<&str> = line.split('|').collect();
        let mut labels_cell = cells[3].to_owned();
        while let (Some(open), Some(close)) = (labels_cell.find('('), labels_cell.find(')')) {
            if close < open {
                break;
            }
            labels_cell.replace_range(open..=close, "");
        }
        let labels: BTreeSet<String> = ticked(&labels_cell).into_iter().collect();
        for name in ticked(cells[1]) {
            documented.insert(name, labels.clone());
        }
    }
    assert!(
        documented.len() >= 15,
        "README metrics table: {documented:?}"
    );
    documented
}

/// The labels a series of `name` must carry besides `job` and `instance`, from the README: a
/// histogram's `_bucket` adds `le`, its `_sum` and `_count` nothing.
fn expected_labels(
    documented: &HashMap<String, BTreeSet<String>>,
    name: &str,
) -> Option<BTreeSet<String>> {
    if let Some(labels) = documented.get(name) {
        return Some(labels.clone());
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(labels) = name.strip_suffix(suffix).and_then(|b| documented.get(b)) {
            let mut labels = labels.clone();
            if suffix == "_bucket" {
                labels.insert("le".to_owned());
            }
            return Some(labels);
        }
    }
    None
}

/// The first sample's value of a query result, as a number (`NaN` for "NaN").
fn value(result: &[Value]) -> f64 {
    result[0]["value"][1].as_str().unwrap().parse().unwrap()
}

/// Every query of every panel (rows' panels included) with its panel's title.
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("every target has an expr");
                out.push((panel["title"].as_str().unwrap().to_owned(), expr.to_owned()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// A dashboard query as Grafana would send it for one instance and a short range.
fn concrete(expr: &str, instance: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
        .replace("$__range", "1h")
        .replace("${instance}", instance)
        .replace("$instance", instance)
}

fn config(api: &FakeMediamtx, extra_users: &str) -> String {
    format!(
        "[server]\nmax_failures_per_ip = {MAX_FAILURES}\n\n\
         [store]\nurl = \"sqlite://mtx-auth.db\"\n\n\
         [mediamtx]\napi_url = \"{}\"\n\n\
         [[users]]\nuser = \"viewer\"\npass = \"{ARGON2_TESTPASS}\"\n\
         permissions = [{{ action = \"read\" }}]\n\n\
         [[users]]\nuser = \"any\"\npermissions = [{{ action = \"read\", path = \"public\" }}]\n\n\
         {extra_users}",
        api.url
    )
}

/// Allows (argon2 then cached, anonymous) and denies (no credentials, wrong passwords from
/// several addresses, each under the limit).
async fn viewers(app: &TestApp) {
    for _ in 0..20 {
        let body = mtx_request("read", "cam", "192.0.2.10", "viewer", "testpass");
        assert_eq!(app.status(&body).await, 200);
    }
    for _ in 0..10 {
        let body = mtx_request("read", "public", "192.0.2.11", "", "");
        assert_eq!(app.status(&body).await, 200);
        let body = mtx_request("read", "cam", "192.0.2.11", "", "");
        assert_eq!(app.status(&body).await, 401);
    }
    for i in 0..4 {
        let body = mtx_request("read", "cam", &format!("192.0.2.2{i}"), "viewer", "nope");
        assert_eq!(app.status(&body).await, 401);
    }
}

/// A stream credential opens a live session, is revoked, and the session is kicked.
async fn kick(app: &TestApp, api: &FakeMediamtx, path: &Path, server: &Binary) {
    let (id, credential) = try_issue(path, &["--name", "cam-viewer", "--allow", "read"]).unwrap();
    let probe = json!({"ip": "192.0.2.12", "user": "", "password": credential, "token": credential,
                       "action": "read", "path": "cam", "protocol": "rtsp", "id": "", "query": ""});
    // Probes that arrive before the store has fed the credential are failed attempts, and this
    // config allows only MAX_FAILURES per address: each probe comes from an address of its own.
    let fed = (0..200).any(|i| {
        let mut early = probe.clone();
        early["ip"] = json!(format!("198.51.100.{i}"));
        let allowed = server.status(&early.to_string()) == 200;
        if !allowed {
            std::thread::sleep(Duration::from_millis(50));
        }
        allowed
    });
    assert!(fed, "the store fed the credential: {}", server.logs());
    let session = "0b6bbd0e-2222-4c1a-9d2a-000000000001";
    api.add("rtspsessions", session, "cam");
    let mut opening = probe.clone();
    opening["id"] = json!(session);
    assert_eq!(app.status(&opening).await, 200);
    revoke(path, &id);
    assert!(
        api.wait_kicked(session, 60).await,
        "the revoked credential's session is kicked: {}",
        server.logs()
    );
}

#[actix_web::test]
async fn prometheus_ingests_the_metrics_evaluates_the_rules_and_runs_the_dashboard_queries() {
    let Some(prometheus_bin) = prometheus_binary() else {
        return;
    };
    let api = FakeMediamtx::start();
    let path = temp_config("monitoring.toml", &config(&api, ""));
    let server = Binary::start(&path);
    api.set_auth(&server.base);
    let app = server.app();
    let instance = server.addr.clone();
    let mut prometheus = Prometheus::start(&prometheus_bin, &instance);
    prometheus.wait_ready().await;
    let target = format!("{{job=\"mtx-auth\",instance=\"{instance}\"}}");
    prometheus
        .wait_for("mtx-auth is scraped", &format!("up{target} == 1"), |r| {
            !r.is_empty()
        })
        .await;

    // A series appears with its first count, so Prometheus sees no increase until it has
    // scraped it once: the viewers come twice, around a scrape, for rate() to see them.
    viewers(&app).await;
    kick(&app, &api, &path, &server).await;
    let allowed = format!(
        "mtx_auth_decisions_total{{source=\"users\",outcome=\"allow\",instance=\"{instance}\"}}"
    );
    prometheus
        .wait_for("the first decisions are scraped", &allowed, |r| {
            !r.is_empty()
        })
        .await;
    viewers(&app).await;

    // A reload that works, then one that is refused (the file no longer parses).
    std::fs::write(
        &path,
        config(
            &api,
            "[[users]]\nuser = \"second\"\npass = \"second-pw\"\npermissions = [{ action = \"read\" }]\n",
        ),
    )
    .unwrap();
    server.sighup();
    assert!(
        server.wait_for_log("config reloaded", 60),
        "{}",
        server.logs()
    );
    std::fs::write(&path, "[[users]]\nuser = \n").unwrap();
    server.sighup();
    assert!(
        server.wait_for_log("config reload failed", 60),
        "{}",
        server.logs()
    );

    // The spray: one address guesses until the limit turns it away. Once Prometheus has the
    // rate_limited series (it appears with the first such denial), the rest of the spray is an
    // increase that rate() sees.
    let guess = |i: usize| mtx_request("read", "cam", "203.0.113.66", "viewer", &format!("g{i}"));
    for i in 0..=MAX_FAILURES {
        assert_eq!(app.status(&guess(i)).await, 401);
    }
    let limited =
        format!("mtx_auth_denials_total{{reason=\"rate_limited\",instance=\"{instance}\"}}");
    prometheus
        .wait_for("the limit's first denial is scraped", &limited, |r| {
            !r.is_empty()
        })
        .await;
    for i in 0..SPRAY {
        let (status, body) = app.auth(&guess(i)).await;
        assert_eq!(status, 401);
        assert_eq!(body["error"], "too many failed attempts; try again later");
    }

    // The series, with exactly the documented labels, and every documented family this config
    // has.
    prometheus
        .wait_for("the whole spray is scraped", &limited, |r| {
            !r.is_empty() && value(r) >= SPRAY as f64
        })
        .await;
    let documented = documented_metrics();
    let names = prometheus.api("/api/v1/label/__name__/values", &[]).await;
    let names: Vec<&str> = names["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|n| n.starts_with("mtx_auth_"))
        .collect();
    for name in [
        "mtx_auth_decisions_total",
        "mtx_auth_denials_total",
        "mtx_auth_decision_duration_seconds_bucket",
        "mtx_auth_decision_duration_seconds_sum",
        "mtx_auth_decision_duration_seconds_count",
        "mtx_auth_bad_requests_total",
        "mtx_auth_cache_hits_total",
        "mtx_auth_cache_misses_total",
        "mtx_auth_config_reloads_total",
        "mtx_auth_config_generation",
        "mtx_auth_kicks_total",
        "mtx_auth_sessions",
        "mtx_auth_sessions_refused_total",
        "mtx_auth_store_up",
        "mtx_auth_store_sync_age_seconds",
    ] {
        assert!(names.contains(&name), "{name} not ingested: {names:?}");
    }
    for name in &names {
        let expected = expected_labels(&documented, name)
            .unwrap_or_else(|| panic!("{name} is not in the README's metrics table"));
        let series = prometheus
            .api("/api/v1/series", &[("match[]", &format!("{name}{target}"))])
            .await;
        // Prometheus keeps no empty label: an api decision's `protocol` ("") is absent, which
        // `protocol=""` still matches. So each series has at most the documented labels, and
        // some series of the family has them all.
        let mut complete = false;
        for s in series["data"].as_array().unwrap() {
            let labels: BTreeSet<String> = s
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| !["__name__", "job", "instance"].contains(&k.as_str()))
                .cloned()
                .collect();
            assert!(
                labels.is_subset(&expected),
                "{name}: {s}, documented: {expected:?}"
            );
            complete |= labels == expected;
        }
        assert!(
            complete,
            "{name}: no series with all of {expected:?}: {series}"
        );
    }
    // The label values the traffic above must have produced.
    for (what, selector) in [
        (
            "argon2 allows",
            r#"mtx_auth_decisions_total{action="read",protocol="rtsp",source="users",outcome="allow"}"#,
        ),
        (
            "credential allows",
            r#"mtx_auth_decisions_total{action="read",protocol="rtsp",source="credential",outcome="allow"}"#,
        ),
        (
            "denies",
            r#"mtx_auth_decisions_total{action="read",protocol="rtsp",source="none",outcome="deny"}"#,
        ),
        (
            "no credentials",
            r#"mtx_auth_denials_total{reason="no_credentials"}"#,
        ),
        (
            "wrong passwords",
            r#"mtx_auth_denials_total{reason="no_match"}"#,
        ),
        (
            "argon2 cache hits",
            r#"mtx_auth_cache_hits_total{cache="users"}"#,
        ),
        (
            "the kick",
            r#"mtx_auth_kicks_total{reason="credential_revoked",result="kicked"}"#,
        ),
        (
            "the good reload",
            r#"mtx_auth_config_reloads_total{result="ok"}"#,
        ),
        (
            "the refused reload",
            r#"mtx_auth_config_reloads_total{result="error"}"#,
        ),
        (
            "the reload's generation",
            r#"mtx_auth_config_generation >= 2"#,
        ),
        ("the store", r#"mtx_auth_store_up{engine="sqlite"} == 1"#),
    ] {
        prometheus
            .wait_for(what, &format!("{selector} > 0"), |r| !r.is_empty())
            .await;
    }

    // Every rule of both groups evaluates without error.
    let start = Instant::now();
    loop {
        let rules = prometheus.api("/api/v1/rules", &[]).await;
        let groups = rules["data"]["groups"].as_array().unwrap();
        let names: BTreeSet<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            BTreeSet::from(["mtx_auth_alerts", "mtx_auth_recording"]),
            "{rules}"
        );
        let all: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        for r in &all {
            assert_ne!(r["health"], "err", "{r}");
        }
        if all.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "rules never all evaluated: {rules}"
        );
        pause().await;
    }

    // The recording rules the traffic feeds give numbers.
    let rec = |name: &str, filter: &str| format!("{name}{{instance=\"{instance}\"{filter}}}");
    for expr in [
        rec(
            "mtx_auth:decisions:rate5m",
            r#",source="users",outcome="allow""#,
        ),
        rec(
            "mtx_auth:decisions:rate5m",
            r#",source="none",outcome="deny""#,
        ),
        rec("mtx_auth:denials:rate5m", r#",reason="no_match""#),
        rec("mtx_auth:deny_ratio:rate5m", ""),
        rec(
            "mtx_auth:decision_duration_seconds_bucket:rate5m",
            r#",le="+Inf""#,
        ),
        rec("mtx_auth:decision_duration_seconds:p50_5m", ""),
        rec("mtx_auth:decision_duration_seconds:p90_5m", ""),
        rec("mtx_auth:decision_duration_seconds:p99_5m", ""),
        rec("mtx_auth:cache_hit_ratio:rate5m", r#",cache="users""#),
    ] {
        prometheus
            .wait_for("a recorded value", &expr, |r| {
                !r.is_empty() && value(r) > 0.0 && value(r).is_finite()
            })
            .await;
    }
    prometheus
        .wait_for(
            "the kicks' rate is recorded",
            &rec("mtx_auth:kicks:rate5m", r#",result="kicked""#),
            |r| !r.is_empty() && value(r).is_finite(),
        )
        .await;
    prometheus
        .wait_for(
            "the spray's rate is over the alert's threshold",
            &rec("mtx_auth:denials:rate5m", r#",reason="rate_limited""#),
            |r| !r.is_empty() && value(r) > 1.0,
        )
        .await;

    // The spray is seen; so is the refused reload.
    let spray = prometheus
        .wait_for_alert("MtxAuthPasswordSpray", &instance, &["pending", "firing"])
        .await;
    assert_eq!(spray["labels"]["job"], "mtx-auth", "{spray}");
    assert!(
        spray["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("attempts per second are refused"),
        "{spray}"
    );
    prometheus
        .wait_for_alert("MtxAuthConfigReloadFailed", &instance, &["firing"])
        .await;
    // What a healthy service must not raise. (No remote source: MtxAuthNotReady has no series.)
    let alerts = prometheus.api("/api/v1/alerts", &[]).await;
    for alert in alerts["data"]["alerts"].as_array().unwrap() {
        let name = alert["labels"]["alertname"].as_str().unwrap();
        assert!(
            ![
                "MtxAuthDown",
                "MtxAuthNotReady",
                "MtxAuthStoreDown",
                "MtxAuthStoreBehind",
                "MtxAuthKicksFailing",
                "MtxAuthSessionsFull"
            ]
            .contains(&name),
            "{alert}"
        );
    }

    // The dashboard: the instance variable's query finds this instance, every panel's query
    // parses, and the panels an operator looks at first show data.
    let dashboard: Value = serde_json::from_str(&read("deploy/grafana/mtx-auth.json")).unwrap();
    let variable = &dashboard["templating"]["list"][1];
    assert_eq!(variable["name"], "instance");
    let definition = variable["definition"].as_str().unwrap();
    let metric = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(", instance)"))
        .unwrap_or_else(|| panic!("instance variable: {definition}"));
    let values = prometheus
        .api("/api/v1/label/instance/values", &[("match[]", metric)])
        .await;
    assert!(
        values["data"]
            .as_array()
            .unwrap()
            .contains(&json!(instance)),
        "{definition}: {values}"
    );
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{queries:?}");
    let mut with_data = BTreeSet::new();
    for (title, expr) in &queries {
        let expr = concrete(expr, &instance);
        assert!(!expr.contains('$'), "{title}: a variable left in {expr}");
        let answer = prometheus.query(&expr).await;
        assert_eq!(answer["status"], "success", "{title}: {expr}: {answer}");
        if !answer["data"]["result"].as_array().unwrap().is_empty() {
            with_data.insert(title.as_str());
        }
    }
    for title in [
        "Up",
        "Decisions / s",
        "Decisions by outcome and source",
        "Deny reasons",
        "Decision latency",
        "Cache hit ratio",
        "Brute-force limiter",
        "Live sessions",
        "Kicks",
        "Config reloads",
        "Config generation",
        "Store up",
        "Store sync age",
        "Alerts",
    ] {
        assert!(
            with_data.contains(title),
            "panel {title:?} shows nothing; with data: {with_data:?}"
        );
    }
}
