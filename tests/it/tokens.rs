//! Stream credentials (`mtx-auth token issue|list|revoke`) through the real binary: the command
//! line writes the store, a running `mtx-auth serve` reads every change without a reload, and
//! `/auth` takes the credential wherever a client can put it.

use serde_json::{json, Value};

use crate::support::{bin, mtx_request, run, temp_config, Binary};

/// A config with a store beside it (and whatever `extra` adds).
fn config_with_store(name: &str, extra: &str) -> std::path::PathBuf {
    temp_config(
        name,
        &format!("[store]\nurl = \"sqlite://store/mtx-auth.db\"\n\n[server]\nmax_failures_per_ip = 0\n\n{extra}"),
    )
}

fn token(config: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    run(bin().arg("token").args(args).arg("--config").arg(config))
}

/// `token issue … --json`, asserting it worked; returns the printed object.
fn issue(config: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["issue", "--json"];
    all.extend_from_slice(args);
    let (code, out, err) = token(config, &all);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(out.trim()).unwrap()
}

fn list(config: &std::path::Path) -> Vec<Value> {
    let (code, out, err) = token(config, &["list", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

fn body(v: Value) -> String {
    v.to_string()
}

fn read_with_password(path: &str, user: &str, credential: &str) -> String {
    body(mtx_request("read", path, "10.0.0.1", user, credential))
}

#[test]
fn issued_on_the_command_line_then_revoked_on_a_running_server() {
    let config = config_with_store("tokens.toml", "");
    let server = Binary::start(&config);
    let made = issue(
        &config,
        &[
            "--name",
            "living room",
            "--allow",
            "read:~^cam/",
            "--allow",
            "playback",
            "--ttl",
            "1h",
        ],
    );
    let credential = made["token"].as_str().unwrap().to_owned();
    assert!(
        credential.starts_with("mtxa_") && credential.len() <= 100,
        "{credential}"
    );
    assert_eq!(made["name"], "living room");
    assert_eq!(
        made["permissions"],
        json!([{"action": "read", "path": "~^cam/"}, {"action": "playback", "path": ""}])
    );
    assert!(made["expires_at"].as_str().unwrap().ends_with('Z'));

    // Made after the server started: it arrives without a reload.
    let in_password = read_with_password("cam/1", "anyone", &credential);
    assert!(server.eventually(&in_password, 200), "{}", server.logs());

    let app = server.app();
    let rt = actix_web::rt::System::new();
    rt.block_on(async {
        let (status, reply) = app
            .auth(&mtx_request("read", "cam/1", "10.0.0.1", "", &credential))
            .await;
        assert_eq!((status, &reply), (200, &json!({"user": "living room"})));
        // In `token` alone (a Bearer header), and in the query as MediaMTX's HLS and WebRTC
        // pages forward it.
        let mut in_token = mtx_request("read", "cam/2", "10.0.0.1", "", "");
        in_token["token"] = json!(credential);
        assert_eq!(app.status(&in_token).await, 200);
        for key in ["token", "jwt"] {
            let mut in_query = mtx_request("read", "cam/3", "10.0.0.1", "", "");
            in_query["protocol"] = json!("hls");
            in_query["query"] = json!(format!("lang=en&{key}={credential}"));
            assert_eq!(app.status(&in_query).await, 200, "{key}=");
        }
        // What it does not permit.
        let (status, reply) = app
            .auth(&mtx_request("read", "garage", "10.0.0.1", "", &credential))
            .await;
        assert_eq!(status, 401);
        assert_eq!(
            reply["error"],
            "stream credential does not permit this action and path"
        );
        assert_eq!(
            app.status(&mtx_request(
                "publish",
                "cam/1",
                "10.0.0.1",
                "",
                &credential
            ))
            .await,
            401
        );
    });

    let listed = list(&config);
    assert_eq!(listed.len(), 1);
    let entry = &listed[0];
    assert_eq!(entry["id"], made["id"]);
    assert_eq!(entry["name"], "living room");
    assert_eq!(entry["permissions"], made["permissions"]);
    assert_eq!(entry["revoked"], false);
    assert_eq!(entry["revoked_at"], Value::Null);
    assert_eq!(entry["expires_at"], made["expires_at"]);
    assert!(entry["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(entry.get("token").is_none() && !entry.to_string().contains(&credential));

    let id = made["id"].as_str().unwrap();
    let (code, _, err) = token(&config, &["revoke", id]);
    assert_eq!(code, 0, "{err}");
    assert!(server.eventually(&in_password, 401), "{}", server.logs());
    rt.block_on(async {
        let (_, reply) = app
            .auth(&mtx_request("read", "cam/1", "10.0.0.1", "", &credential))
            .await;
        assert_eq!(reply["error"], "stream credential revoked");
    });
    let listed = list(&config);
    assert_eq!(listed[0]["revoked"], true);
    assert!(listed[0]["revoked_at"].as_str().unwrap().ends_with('Z'));
    // Logs say a credential decided, never which one.
    let (_, logs) = server.stop();
    assert!(logs.contains("source=\"credential\""), "{logs}");
    assert!(!logs.contains(&credential["mtxa_".len()..]), "{logs}");
}

#[test]
fn a_credential_issued_before_the_start_is_good_from_the_first_answer() {
    let config = config_with_store("before.toml", "");
    let credential = issue(&config, &["--name", "obs", "--allow", "publish:studio"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Binary::start(&config);
    let status = |action, path| {
        server.status(&body(mtx_request(
            action,
            path,
            "10.0.0.1",
            "obs",
            &credential,
        )))
    };
    assert_eq!(status("publish", "studio"), 200);
    // A stream key for one path publishes nowhere else and reads nothing.
    assert_eq!(status("publish", "other"), 401);
    assert_eq!(status("read", "studio"), 401);
}

/// An `any` user lets everyone read; a revoked or unknown credential is still denied: it is
/// decided by the credential store alone and never travels on as a password.
#[test]
fn a_revoked_credential_never_falls_through_to_another_source() {
    let users = "[[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n";
    let config = config_with_store("fallthrough.toml", users);
    let made = issue(&config, &["--name", "v", "--allow", "read"]);
    let credential = made["token"].as_str().unwrap();
    let (code, _, err) = token(&config, &["revoke", made["id"].as_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let server = Binary::start(&config);
    assert_eq!(server.status(&read_with_password("cam", "", "")), 200);
    assert_eq!(
        server.status(&read_with_password("cam", "v", credential)),
        401
    );
    let unknown = format!("mtxa_{}", "A".repeat(32));
    assert_eq!(
        server.status(&read_with_password("cam", "v", &unknown)),
        401
    );
    // Anything else in the password is the other sources' business, as before.
    assert_eq!(
        server.status(&read_with_password("cam", "v", "whatever")),
        200
    );
}

#[test]
fn an_expired_credential_is_denied() {
    let config = config_with_store("expiry.toml", "");
    let credential = issue(
        &config,
        &["--name", "brief", "--allow", "read", "--ttl", "1s"],
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Binary::start(&config);
    let request = read_with_password("cam", "", &credential);
    assert!(server.eventually(&request, 401), "{}", server.logs());
    let app = server.app();
    actix_web::rt::System::new().block_on(async {
        let (_, reply) = app
            .auth(&mtx_request("read", "cam", "10.0.0.1", "", &credential))
            .await;
        assert_eq!(reply["error"], "stream credential expired");
    });
}

#[test]
fn revoking_an_unknown_id_revokes_nothing_and_says_so() {
    let config = config_with_store("unknown.toml", "");
    let made = issue(&config, &["--name", "kept", "--allow", "read"]);
    let id = made["id"].as_str().unwrap();
    let (code, _, err) = token(&config, &["revoke", id, "no-such-id"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown credential id: no-such-id"), "{err}");
    assert_eq!(list(&config)[0]["revoked"], false, "all or nothing");
}

#[test]
fn the_store_file_holds_no_credential_in_the_clear() {
    let config = config_with_store("clear.toml", "");
    let credential = issue(&config, &["--name", "n", "--allow", "read"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let folder = config.parent().unwrap().join("store");
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&folder).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!bytes.is_empty());
    let random_part = &credential["mtxa_".len()..];
    assert!(
        !bytes
            .windows(random_part.len())
            .any(|w| w == random_part.as_bytes()),
        "the credential is in {}",
        folder.display()
    );
    // Only its owner may read the store: it holds mtx-auth's own API secret.
    #[cfg(unix)]
    for entry in std::fs::read_dir(&folder).unwrap() {
        use std::os::unix::fs::PermissionsExt;
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", entry.path().display());
    }
    // What is kept is its SHA-256.
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(credential.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(bytes.windows(64).any(|w| w == digest.as_bytes()));
}

#[test]
fn bad_arguments_and_a_config_without_a_store_are_refused() {
    let config = config_with_store("args.toml", "");
    for (args, message) in [
        (
            &["issue", "--name", "x", "--allow", "write:cam"][..],
            "unknown action",
        ),
        (&["issue", "--name", "x", "--allow", "read:~("][..], "path"),
        (
            &["issue", "--name", "x", "--allow", "read", "--ttl", "soon"][..],
            "--ttl",
        ),
        (&["issue", "--name", "", "--allow", "read"][..], "--name"),
        (
            &["issue", "--name", "x\ny", "--allow", "read"][..],
            "control",
        ),
    ] {
        let (code, out, err) = token(&config, args);
        assert_eq!(code, 1, "{args:?}: {out}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?} printed {out}");
    }
    assert!(list(&config).is_empty(), "nothing was issued");

    let bare = temp_config("nostore.toml", "");
    let (code, _, err) = token(&bare, &["list"]);
    assert_eq!(code, 1);
    assert!(err.contains("no [store] section"), "{err}");
    // And without a store, `/auth` denies what looks like a credential.
    let server = Binary::start(&bare);
    let credential = format!("mtxa_{}", "B".repeat(32));
    assert_eq!(
        server.status(&read_with_password("cam", "", &credential)),
        401
    );
}

#[test]
fn list_prints_a_table_without_credentials() {
    let config = config_with_store("table.toml", "");
    let made = issue(&config, &["--name", "tablet", "--allow", "read:cam"]);
    let (code, out, _) = token(&config, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(made["id"].as_str().unwrap()), "{out}");
    assert!(
        out.contains("tablet") && out.contains("read:cam") && out.contains("never"),
        "{out}"
    );
    assert!(!out.contains(made["token"].as_str().unwrap()));
    // Without --json, issue prints the credential alone on one line.
    let (code, out, _) = token(&config, &["issue", "--name", "n", "--allow", "read"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("mtxa_") && out.lines().count() == 1,
        "{out:?}"
    );
}

/// Guessing credentials is limited like guessing passwords: an unknown `mtxa_…` is a failed
/// attempt.
#[test]
fn guessed_credentials_count_toward_the_failure_limit() {
    let config = temp_config(
        "guess.toml",
        "[store]\nurl = \"sqlite://store.db\"\n\n[server]\nmax_failures_per_ip = 2\n",
    );
    let server = Binary::start(&config);
    let guess = |i: usize| read_with_password("cam", "", &format!("mtxa_{i:0>32}"));
    assert_eq!(server.status(&guess(1)), 401);
    assert_eq!(server.status(&guess(2)), 401);
    let app = server.app();
    actix_web::rt::System::new().block_on(async {
        let body: Value = serde_json::from_str(&guess(3)).unwrap();
        let (status, reply) = app.auth(&body).await;
        assert_eq!(status, 401);
        assert_eq!(reply["error"], "too many failed attempts; try again later");
    });
}

/// A store that cannot be opened stops `serve` with the reason: it does not run without what the
/// config asks for.
#[test]
fn serve_refuses_to_start_without_its_store() {
    let config = temp_config(
        "nostore-dir.toml",
        "[store]\nurl = \"sqlite:///proc/mtx-auth-cannot-be-here/mtx-auth.db\"\n",
    );
    let (code, _, err) = run(bin()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("refusing to start: cannot open the store (sqlite file /proc/mtx-auth-cannot-be-here/mtx-auth.db)"), "{err}");
}
