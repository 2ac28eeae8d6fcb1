//! The binary: `check`, `serve`, `hash` and `explain`, run as an operator runs them.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use mtx_auth::credential::Credential;

use crate::support::{bin, run, temp_config, Binary};

#[test]
fn check_accepts_the_shipped_config() {
    let (code, out, _) = run(bin().args(["check", "--config", "config/mtx-auth.toml"]));
    assert_eq!(code, 0);
    assert!(out.contains("ok (2 users)"), "{out}");
}

#[test]
fn check_reports_every_problem_with_file_line_and_column() {
    // Each case: config text, expected line:col, and a fragment of the message.
    let cases: &[(&str, &str, &str)] = &[
        ("[server]\nlisen = \"x\"\n", "2:1", "unknown field `lisen`"),
        ("[[users]]\nuser = \"u\"\nextra = 1\n", "3:1", "unknown field `extra`"),
        ("[[users]]\nuser = \"u\"\npermissions = [{ action = \"write\" }]\n", "3:27", "unknown action"),
        ("[[users]]\nuser = \"u\"\npermissions = [{ action = \"read\", path = \"~[\" }]\n", "3:42", "regular expression does not compile"),
        ("[[users]]\nuser = \"any\"\nips = [\"10.0.0.0/40\"]\n", "3:8", "not an IP address or CIDR"),
        ("[[users]]\nuser = \"any\"\nips = [\"10.0.0.300\"]\n", "3:8", "not an IP address or CIDR"),
        ("[[users]]\nuser = \"sha256:abc\"\n", "2:8", "sha256 value must be"),
        ("[[users]]\nuser = \"u\"\npass = \"argon2:$argon2id$v=19$m=4096\"\n", "3:8", "not a valid PHC string"),
        ("[[users]]\nuser = \"u\"\npass = \"argon2:$argon2d$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$Ux/LWeTgJQPyfMMJo1myR64+o8rALHoPmlE1i/TR+58\"\n", "3:8", "argon2d is not supported"),
        ("[[users]]\nuser = \"bad user\"\n", "2:8", "characters MediaMTX does not allow"),
        ("[[users]]\nuser = \"u\"\npass = \"pa:ss\"\n", "3:8", "characters MediaMTX does not allow"),
        ("[[users]]\nuser = \"any\"\npass = \"x\"\n", "3:8", "\"any\" cannot have a password"),
        ("[[users]]\nuser = \"\"\n", "2:8", "must not be empty"),
        ("[[users]]\npass = \"x\"\n", "1:1", "missing field `user`"),
        ("[server]\nargon2_queue = 0\n", "2:16", "argon2_queue must be between"),
        ("[[users]\n", "1:8", ""),
    ];
    for (i, (text, pos, msg)) in cases.iter().enumerate() {
        let path = temp_config(&format!("bad{i}.toml"), text);
        let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
        assert_eq!(code, 1, "case {i}: {text}");
        let want = format!("{}:{pos}: ", path.display());
        assert!(
            err.starts_with(&want) && err.contains(msg),
            "case {i}: want {want}…{msg}, got {err}"
        );
    }
    // Several problems in one file are all reported, in order.
    let path = temp_config(
        "many.toml",
        "[[users]]\nuser = \"\"\n[[users]]\nuser = \"u\"\nips = [\"x\"]\npermissions = [{ action = \"nope\" }]\n",
    );
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!(code, 1);
    let lines: Vec<_> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert!(
        lines[0].contains(":2:8: ") && lines[1].contains(":5:8: ") && lines[2].contains(":6:27: "),
        "{err}"
    );
}

#[test]
fn check_reports_a_missing_file() {
    let (code, _, err) = run(bin().args(["check", "--config", "/nonexistent/mtx.toml"]));
    assert_eq!(code, 1);
    assert!(
        err.contains("/nonexistent/mtx.toml") && err.contains("cannot read config"),
        "{err}"
    );
}

#[test]
fn serve_refuses_a_bad_config() {
    let path = temp_config(
        "serve-bad.toml",
        "[[users]]\nuser = \"any\"\npass = \"x\"\n",
    );
    let (code, _, err) = run(bin()
        .arg("serve")
        .arg("--config")
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"]));
    assert_ne!(code, 0);
    assert!(
        err.contains(":3:8: pass: user \"any\" cannot have a password"),
        "{err}"
    );
    assert!(err.contains("refusing to start"), "{err}");
}

/// Starts the binary, reads its "listening on" line, makes requests, then SIGTERMs it.
#[test]
fn serve_answers_logs_and_exits_cleanly_on_sigterm() {
    let path = temp_config(
        "serve.toml",
        "[[users]]\nuser = \"alice\"\npass = \"s3cretpw\"\npermissions = [{ action = \"read\" }]\n",
    );
    // No subcommand means serve; the config comes from MTX_AUTH_CONFIG.
    let mut child = bin()
        .args(["--listen", "127.0.0.1:0"])
        .env("MTX_AUTH_CONFIG", &path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    let post = |body: &str| -> String {
        let mut s = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            s,
            "POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        resp
    };
    // Decision lines are stamped from the decision's monotonic clock read (`WallClock`): the
    // stamps must still be this wall-clock time, to the second (with a second's grace).
    let second = |shift: i64| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        mtx_auth::time::rfc3339(now.as_secs() as i64 + shift).unwrap()[..19].to_owned()
    };
    let from = second(-1);
    let ok = post(
        r#"{"user":"alice","password":"s3cretpw","token":"s3cretpw","action":"read","path":"cam","ip":"10.0.0.1","protocol":"rtsp"}"#,
    );
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.ends_with(r#"{"user":"alice"}"#), "{ok}");
    let no = post(
        r#"{"user":"alice","password":"wrongpw99","action":"read","path":"cam","ip":"10.0.0.1"}"#,
    );
    assert!(no.starts_with("HTTP/1.1 401"), "{no}");

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let to = second(1);
    assert_eq!(status.code(), Some(0), "graceful exit");
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let logs = line + &rest;
    let decisions: Vec<&str> = logs.lines().filter(|l| l.contains("latency_us=")).collect();
    assert_eq!(decisions.len(), 2, "{logs}");
    for line in decisions {
        let at = line.get(..19).unwrap_or_default();
        assert!(
            from.as_str() <= at && at <= to.as_str(),
            "stamped {at}, not between {from} and {to}: {line}"
        );
    }
    // One decision line per request, with its fields, and never a secret.
    assert!(
        logs.contains("outcome=\"allow\"") || logs.contains("outcome=allow"),
        "{logs}"
    );
    assert!(
        logs.contains("user=alice") && logs.contains("latency_us="),
        "{logs}"
    );
    assert!(
        !logs.contains("s3cretpw") && !logs.contains("wrongpw99"),
        "{logs}"
    );
}

#[test]
fn serve_json_logs_are_json() {
    let path = temp_config("serve-json.toml", "");
    let mut child = bin()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--config",
        ])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited before listening"
        );
        let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        if message.contains("listening on http://127.0.0.1:") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn hash(args: &[&str], input: &str) -> (i32, String, String) {
    let mut child = bin()
        .arg("hash")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn hash_prints_values_the_config_accepts() {
    let (code, out, _) = hash(&[], "correct horse\n");
    assert_eq!(code, 0);
    let value = out.trim_end();
    assert!(
        value.starts_with("argon2:$argon2id$v=19$m=19456,t=2,p=1$"),
        "{value}"
    );
    let cred = Credential::parse(value).unwrap();
    assert!(cred.verify("correct horse"));
    assert!(!cred.verify("correct horse\n"));

    let (code, out, _) = hash(&["--sha256"], "testuser");
    assert_eq!(code, 0);
    assert_eq!(
        out.trim_end(),
        "sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ="
    );

    let (code, _, err) = hash(&[], "");
    assert_eq!(code, 1);
    assert!(err.contains("no secret"), "{err}");
}

#[test]
fn explain_names_the_deciding_user_or_why_none_did() {
    let path = temp_config(
        "explain.toml",
        "[[users]]\nuser = \"bob\"\npass = \"pw\"\nips = [\"10.0.0.0/8\"]\npermissions = [{ action = \"publish\" }]\n\n\
         [[users]]\nuser = \"any\"\npermissions = [{ action = \"read\", path = \"~^public/\" }]\n",
    );
    let explain = |req: &str| run(bin().arg("explain").arg("--config").arg(&path).arg(req));

    let (code, out, _) =
        explain(r#"{"user":"bob","password":"pw","action":"publish","path":"x","ip":"10.1.1.1"}"#);
    assert_eq!(code, 0);
    assert!(out.starts_with("allow (200) user=\"bob\""), "{out}");
    assert!(
        out.contains("users #1") && out.contains("explain.toml:1"),
        "{out}"
    );

    let (_, out, _) = explain(r#"{"action":"read","path":"public/cam","ip":"1.1.1.1"}"#);
    assert!(
        out.contains("users #2") && out.contains("explain.toml:7"),
        "{out}"
    );

    let (_, out, _) = explain(
        r#"{"user":"bob","password":"pw","action":"publish","path":"x","ip":"192.168.0.1"}"#,
    );
    assert!(out.starts_with("deny (401)"), "{out}");
    assert!(
        out.contains("users #1 (plain user)") && out.contains("ip not in ips"),
        "{out}"
    );
    assert!(
        out.contains("users #2 (any)") && out.contains("no permission"),
        "{out}"
    );

    let (_, out, _) = explain(
        r#"{"user":"bob","password":"nope","action":"publish","path":"x","ip":"10.0.0.1"}"#,
    );
    assert!(out.contains("pass does not match"), "{out}");

    let (code, _, err) = explain("[1]");
    assert_eq!(code, 1);
    assert!(err.contains("JSON object"), "{err}");
}

#[test]
fn explain_lists_the_account_sources_in_order() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let path = temp_config(
        "explain-accounts.toml",
        &format!(
            "[[users]]\nuser = \"admin\"\npass = \"pw\"\npermissions = [{{ action = \"api\" }}]\n\n\
             [plex]\nserver = \"Home\"\napi_url = \"{url}\"\n\n[jellyfin]\nurl = \"{url}\"\ntimeout_secs = 1\n"
        ),
    );
    let (code, out, _) =
        run(bin().arg("explain").arg("--config").arg(&path).arg(
            r#"{"user":"alice","password":"pw","action":"read","path":"cam","ip":"10.0.0.1"}"#,
        ));
    assert_eq!(code, 0);
    assert!(out.starts_with("deny (401): plex unreachable"), "{out}");
    // Config order, each section with its line (after the file's path).
    assert!(
        out.contains("sources in order: users (1 entries), then plex (")
            && out.contains("explain-accounts.toml:6), then jellyfin (")
            && out.contains("explain-accounts.toml:10)"),
        "{out}"
    );
}

#[test]
fn serve_reloads_on_sighup_and_on_file_change_and_keeps_a_good_config() {
    // The test polls with the next password until a reload lets it in: every poll before then
    // is a failed attempt from one address, so the limit is set out of its way.
    let user = |pass: &str| {
        format!("[server]\nmax_failures_per_ip = 0\n\n[[users]]\nuser = \"alice\"\npass = \"{pass}\"\npermissions = [{{ action = \"read\" }}]\n")
    };
    let body = |pass: &str| {
        format!(
            r#"{{"user":"alice","password":"{pass}","action":"read","path":"cam","ip":"10.0.0.1"}}"#
        )
    };
    let path = temp_config("reload.toml", &user("first1"));
    let served = Binary::start(&path);
    assert_eq!(served.status(&body("first1")), 200);

    // SIGHUP.
    std::fs::write(&path, user("second2")).unwrap();
    served.signal("-HUP");
    assert!(served.eventually(&body("second2"), 200));
    assert_eq!(served.status(&body("first1")), 401);

    // An invalid file: logged with its position, and nothing changes.
    std::fs::write(&path, user("third3") + "bogus_key = 1\n").unwrap();
    served.signal("-HUP");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert_eq!(served.status(&body("second2")), 200);
    assert_eq!(served.status(&body("third3")), 401);

    // A plain edit, no signal: the file watcher notices.
    std::fs::write(&path, user("fourth4")).unwrap();
    assert!(served.eventually(&body("fourth4"), 200));

    let (code, logs) = served.stop();
    assert_eq!(code, Some(0));
    assert!(logs.contains("SIGHUP: reloading the config"), "{logs}");
    assert!(
        logs.contains("reload.toml:8:1: unknown field `bogus_key`"),
        "{logs}"
    );
    assert!(
        logs.contains("config reload failed; still serving the previous config"),
        "{logs}"
    );
    assert!(logs.contains("config file changed"), "{logs}");
    for secret in ["first1", "second2", "third3", "fourth4"] {
        assert!(!logs.contains(secret), "{secret} in {logs}");
    }
}

#[test]
fn healthcheck_exits_0_only_for_a_200() {
    // Jellyfin at a closed port: the service is live but not ready.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let path = temp_config(
        "healthcheck.toml",
        &format!("[jellyfin]\nurl = \"{closed}\"\ntimeout_secs = 1\n"),
    );
    let served = Binary::start(&path);
    let check = |url: &str| run(bin().args(["healthcheck", "--url", url]));
    let (code, _, err) = check(&format!("http://{}/healthz", served.addr));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = check(&format!("http://{}/readyz", served.addr));
    assert_eq!(code, 1);
    assert!(err.contains("503"), "{err}");
    let (code, _, err) = check(&format!("{closed}/healthz"));
    assert_eq!(code, 1);
    assert!(err.contains("mtx-auth healthcheck:"), "{err}");
    served.stop();
}

#[test]
fn check_warns_about_a_config_that_grants_nothing() {
    for (i, text) in [
        "",
        "[server]\nlisten = \"127.0.0.1:9000\"\n",
        "[[users]]\nuser = \"alice\"\npass = \"pw\"\npermissions = []\n",
    ]
    .iter()
    .enumerate()
    {
        let path = temp_config(&format!("nothing{i}.toml"), text);
        let (code, out, err) = run(bin().arg("check").arg("--config").arg(&path));
        assert_eq!(code, 0, "still a valid config: {err}");
        assert!(out.contains(": ok ("), "{out}");
        assert!(
            err.contains("warning: this config grants nothing")
                && err.contains("every request will be denied"),
            "case {i}: {err}"
        );
    }
    let path = temp_config(
        "grants.toml",
        "[[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n",
    );
    let (code, _, err) = run(bin().arg("check").arg("--config").arg(&path));
    assert_eq!((code, err.as_str()), (0, ""));
}

/// `mtx-auth explain … | head -1` (issue 15, defect 3): a reader that stops early must not make
/// a subcommand panic on its next print. Each subcommand that prints to stdout runs with stdout
/// a pipe whose read end is closed before it starts, so its first write meets a closed pipe.
#[cfg(unix)]
#[test]
fn subcommands_end_quietly_when_stdout_is_closed() {
    use std::os::unix::process::ExitStatusExt;

    let config = temp_config(
        "closed-pipe.toml",
        "[[users]]\nuser = \"bob\"\npass = \"pw\"\npermissions = [{ action = \"read\" }]\n",
    );
    let mediamtx = temp_config(
        "closed-pipe-mediamtx.yml",
        "authInternalUsers:\n- user: any\n  permissions: [{action: read}]\n",
    );
    let request = r#"{"user":"bob","password":"no","action":"read","path":"cam","ip":"10.0.0.1"}"#;
    let mut explain = bin();
    explain
        .arg("explain")
        .arg("--config")
        .arg(&config)
        .arg(request);
    let mut check = bin();
    check.arg("check").arg("--config").arg(&config);
    let mut import = bin();
    import.arg("import-mediamtx").arg(&mediamtx);
    let mut hash = bin();
    hash.args(["hash", "--sha256"]);

    for (name, mut cmd) in [
        ("explain", explain),
        ("check", check),
        ("import-mediamtx", import),
        ("hash", hash),
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(writer)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // `hash` reads its secret first; the others never look at stdin.
        let _ = child.stdin.take().unwrap().write_all(b"a secret\n");
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        // Ended by SIGPIPE, as `cat` would be; not exit 101 from a panic.
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGPIPE),
            "{name}: {:?} {stderr}",
            out.status
        );
    }
}

// ---- check on a machine without the secrets (issue 16) ----
//
// A config whose `*_env` or `*_file` secret is not present where it is checked (a laptop
// checking a Kubernetes ConfigMap) is reported with warnings and everything else is validated;
// `--strict` makes them errors; `serve` still refuses to start without them.

fn run_args(args: &[&str], path: &std::path::Path) -> (i32, String, String) {
    run(bin()
        .args(args)
        .arg("--config")
        .arg(path)
        .env_remove("MTX_AUTH_CHECK_ABSENT_SECRET"))
}

const OIDC: &str = "[oidc]\ndiscovery_url = \"https://idp.example.com/.well-known/openid-configuration\"\nclient_id = \"mediamtx\"\n";

#[test]
fn absent_secrets_are_warnings_for_check_and_errors_with_strict_and_for_serve() {
    let env = temp_config(
        "env.toml",
        &format!("{OIDC}client_secret_env = \"MTX_AUTH_CHECK_ABSENT_SECRET\"\n"),
    );
    let file = temp_config(
        "file.toml",
        &format!("{OIDC}client_secret_file = \"/nonexistent/mtx-auth/secret\"\n"),
    );
    for (path, pos, what) in [
        (
            &env,
            "4:21",
            "client_secret_env: environment variable \"MTX_AUTH_CHECK_ABSENT_SECRET\" is not set",
        ),
        (
            &file,
            "4:22",
            "client_secret_file: cannot read \"/nonexistent/mtx-auth/secret\"",
        ),
    ] {
        let at = format!("{}:{pos}: ", path.display());
        let (code, out, err) = run_args(&["check"], path);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(": ok (0 users)"), "{out}");
        assert!(err.starts_with(&format!("{at}warning: {what}")), "{err}");
        let (code, _, err) = run_args(&["check", "--strict"], path);
        assert_eq!(code, 1);
        assert!(err.starts_with(&format!("{at}{what}")), "{err}");
        let (code, _, err) = run_args(&["serve", "--listen", "127.0.0.1:0"], path);
        assert_eq!(code, 1, "serve refuses: {err}");
        assert!(err.contains(what), "{err}");
    }
}

#[test]
fn everything_else_is_still_checked_beside_an_absent_secret() {
    let path = temp_config(
        "both.toml",
        &format!("{OIDC}client_secret_env = \"MTX_AUTH_CHECK_ABSENT_SECRET\"\nscope = 5\n"),
    );
    let (code, _, err) = run_args(&["check"], &path);
    assert_eq!(code, 1, "a real error still fails: {err}");
    assert!(err.contains("both.toml:5:"), "{err}");
}
