//! `mtx-auth check` on a machine without the secrets (issue 16): a config whose `*_env` or
//! `*_file` secret is not present where it is checked (a laptop checking a Kubernetes
//! ConfigMap) is reported with warnings and everything else is validated; `--strict` makes them
//! errors; `serve` still refuses to start without them.

use std::path::PathBuf;
use std::process::Command;

fn config_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("check-secrets");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn run(args: &[&str], path: &PathBuf) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mtx-auth"))
        .args(args)
        .arg("--config")
        .arg(path)
        .env_remove("MTX_AUTH_CHECK_ABSENT_SECRET")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

const OIDC: &str = "[oidc]\ndiscovery_url = \"https://idp.example.com/.well-known/openid-configuration\"\nclient_id = \"mediamtx\"\n";

#[test]
fn absent_secrets_are_warnings_for_check_and_errors_with_strict_and_for_serve() {
    let env = config_file(
        "env.toml",
        &format!("{OIDC}client_secret_env = \"MTX_AUTH_CHECK_ABSENT_SECRET\"\n"),
    );
    let file = config_file(
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
        let (code, out, err) = run(&["check"], path);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(": ok (0 users)"), "{out}");
        assert!(err.starts_with(&format!("{at}warning: {what}")), "{err}");
        let (code, _, err) = run(&["check", "--strict"], path);
        assert_eq!(code, 1);
        assert!(err.starts_with(&format!("{at}{what}")), "{err}");
        let (code, _, err) = run(&["serve", "--listen", "127.0.0.1:0"], path);
        assert_eq!(code, 1, "serve refuses: {err}");
        assert!(err.contains(what), "{err}");
    }
}

#[test]
fn everything_else_is_still_checked_beside_an_absent_secret() {
    let path = config_file(
        "both.toml",
        &format!("{OIDC}client_secret_env = \"MTX_AUTH_CHECK_ABSENT_SECRET\"\nscope = 5\n"),
    );
    let (code, _, err) = run(&["check"], &path);
    assert_eq!(code, 1, "a real error still fails: {err}");
    assert!(err.contains("both.toml:5:"), "{err}");
}
