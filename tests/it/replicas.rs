//! Several replicas on one PostgreSQL store, end to end: three `mtx-auth serve` processes and
//! the command line on one database (a database of their own on the machine's server); what
//! one is told, all act on; failures count across them; a replica killed comes back, and its
//! sessions are still kicked; the database stopped and started again (a server of the test's
//! own) changes nothing for decisions that need nothing new from it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::media::{FakeMediaServer, Flavor, UserSpec};
use crate::support::mediamtx::FakeMediamtx;
use crate::support::postgres::{self, OwnPostgres, TestDb};
use crate::support::{bin, revoke, temp_config, try_issue, Binary, TestApp};

/// A config on `db`'s store, with `[mediamtx]` at `api` and `extra` sections.
fn config(db: &TestDb, api: &FakeMediamtx, extra: &str) -> PathBuf {
    temp_config(
        "replicas.toml",
        &format!(
            "[store]\nurl = \"{}\"\n\n[mediamtx]\napi_url = \"{}\"\n\n\
             [[users]]\nuser = \"alice\"\npass = \"right\"\npermissions = [{{ action = \"read\" }}]\n\n{extra}",
            db.url(),
            api.url
        ),
    )
}

fn replicas(config: &Path, n: usize) -> Vec<Binary> {
    (0..n).map(|_| Binary::start(config)).collect()
}

/// A credential for `read:cam`: (id, credential), or the command's complaint.
fn issue(config: &Path) -> Result<(String, String), String> {
    try_issue(config, &["--name", "viewer", "--allow", "read:cam"])
}

fn read(ip: &str, user: &str, pass: &str, id: &str) -> Value {
    json!({
        "ip": ip, "user": user, "password": pass, "token": "", "action": "read",
        "path": "cam", "protocol": "rtsp", "id": id, "query": "",
    })
}

async fn readyz(app: &TestApp) -> (u16, Value) {
    app.get("/readyz").await
}

/// Polls until `body` gets `want` from `app`, for up to 20 s. The fakes run on the test's
/// runtime, so nothing here may block it.
async fn eventually(app: &TestApp, body: &Value, want: u16) -> bool {
    for _ in 0..400 {
        if app.status(body).await == want {
            return true;
        }
        sleep().await;
    }
    false
}

/// Waits (up to 20 s) until the store's state, as `/readyz` reports it, is `state`.
async fn store_state(app: &TestApp, state: &str) -> bool {
    for _ in 0..400 {
        if readyz(app).await.1["store"]["state"] == state {
            return true;
        }
        sleep().await;
    }
    false
}

/// Waits (up to 20 s) until `/readyz` says 200.
async fn until_ready(app: &TestApp) -> bool {
    for _ in 0..400 {
        if readyz(app).await.0 == 200 {
            return true;
        }
        sleep().await;
    }
    false
}

/// Waits (up to 20 s) until `check` holds.
async fn until(mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..400 {
        if check() {
            return true;
        }
        sleep().await;
    }
    false
}

async fn sleep() {
    actix_web::rt::time::sleep(Duration::from_millis(50)).await;
}

#[actix_web::test]
async fn a_credential_issued_or_revoked_anywhere_is_in_force_on_every_replica() {
    let Some(db) = postgres::database("replicas::a_credential_issued_or_revoked_anywhere") else {
        return;
    };
    let api = FakeMediamtx::start();
    let config = config(&db, &api, "[server]\nmax_failures_per_ip = 0\n");
    let servers = replicas(&config, 3);
    // MediaMTX asks one of them about mtx-auth's own kick calls: the secret is shared.
    api.set_auth(&servers[2].base);
    let (id, credential) = issue(&config).unwrap();
    for (i, s) in servers.iter().enumerate() {
        let id = format!("s{i}");
        api.add("rtspsessions", &id, "cam");
        assert!(
            eventually(&s.app(), &read("10.0.0.1", "x", &credential, &id), 200).await,
            "replica {i}: {}",
            s.logs()
        );
    }
    revoke(&config, &id);
    for (i, s) in servers.iter().enumerate() {
        assert!(
            eventually(&s.app(), &read("10.0.0.1", "x", &credential, "x"), 401).await,
            "replica {i}"
        );
    }
    // Each replica kicked the session it let in.
    for i in 0..3 {
        assert!(
            api.wait_kicked(&format!("s{i}"), 10).await,
            "s{i} not kicked: {:?}",
            api.kicked()
        );
    }
    let (code, body) = readyz(&servers[0].app()).await;
    assert_eq!(code, 200);
    assert_eq!(body["store"]["engine"], "postgres");
    assert_eq!(body["store"]["state"], "up");
    // Nothing the store keeps names a user or an address in the clear.
    assert!(
        db.query("SELECT count(*) FROM credentials")
            .parse::<i64>()
            .unwrap()
            == 1
    );
}

#[actix_web::test]
async fn a_spray_across_replicas_hits_one_limit() {
    let Some(db) = postgres::database("replicas::a_spray_across_replicas_hits_one_limit") else {
        return;
    };
    let api = FakeMediamtx::start();
    let config = config(&db, &api, "[server]\nmax_failures_per_ip = 6\n");
    let servers = replicas(&config, 3);
    // Two wrong passwords on each replica: six from one address, each replica's own count
    // still below the limit.
    for s in &servers {
        for n in 0..2 {
            let guess = read("10.9.9.9", "alice", &format!("guess{n}"), "");
            assert_eq!(s.app().status(&guess).await, 401);
        }
    }
    // The right password from that address is then refused everywhere, once the counts are
    // shared; from another address it is let in.
    for (i, s) in servers.iter().enumerate() {
        assert!(
            eventually(&s.app(), &read("10.9.9.9", "alice", "right", ""), 401).await
                && until(|| s.logs().contains("too many failed attempts")).await,
            "replica {i} never limited the address: {}",
            s.logs()
        );
        assert_eq!(
            s.app()
                .status(&read("10.1.1.1", "alice", "right", ""))
                .await,
            200
        );
    }
    let rows: i64 = db
        .query("SELECT count(*) FROM limit_failures")
        .parse()
        .unwrap();
    assert_eq!(rows, 3, "one row per replica for the address");
    let clear = db.query("SELECT count(*) FROM limit_failures WHERE key LIKE '%10.9%'");
    assert_eq!(clear, "0");
}

#[actix_web::test]
async fn replicas_together_send_the_media_server_no_more_wrong_passwords_than_the_limit() {
    let Some(db) = postgres::database("replicas::replicas_together_send_no_more_wrong_passwords")
    else {
        return;
    };
    let jellyfin = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("bob", "bob-pw")]);
    let api = FakeMediamtx::start();
    let config = config(
        &db,
        &api,
        &format!(
            "[server]\nmax_failures_per_ip = 0\n\n[jellyfin]\nurl = \"{}\"\nmax_failures = 2\n",
            jellyfin.url()
        ),
    );
    let servers = replicas(&config, 3);
    for s in &servers {
        // Until Jellyfin has answered a probe, the source is not asked.
        let app = s.app();
        assert!(until_ready(&app).await, "{}", s.logs());
    }
    // (A `[[users]]` name is never asked upstream: the account is bob, not alice.)
    // Nine different wrong passwords for one name, three at once on each replica, from nine
    // addresses: each replica alone would send two.
    std::thread::scope(|scope| {
        for (i, s) in servers.iter().enumerate() {
            for n in 0..3 {
                scope.spawn(move || {
                    let ip = format!("10.0.{i}.{n}");
                    s.status(&read(&ip, "bob", &format!("wrong-{i}-{n}"), "").to_string())
                });
            }
        }
    });
    assert_eq!(
        jellyfin.login_hits(),
        2,
        "logins the media server saw: {}",
        servers[0].logs()
    );
    // The right password is held back too while the name is limited: nothing was sent.
    assert_eq!(
        servers[0]
            .app()
            .status(&read("10.0.5.5", "bob", "bob-pw", ""))
            .await,
        401
    );
    assert_eq!(jellyfin.login_hits(), 2);
}

#[actix_web::test]
async fn a_killed_replicas_sessions_are_still_kicked() {
    let Some(db) = postgres::database("replicas::a_killed_replicas_sessions_are_still_kicked")
    else {
        return;
    };
    let api = FakeMediamtx::start();
    let config = config(&db, &api, "[server]\nmax_failures_per_ip = 0\n");
    let mut servers = replicas(&config, 2);
    api.set_auth(&servers[1].base);
    let (id, credential) = issue(&config).unwrap();
    api.add("rtspsessions", "k1", "cam");
    assert!(
        eventually(
            &servers[0].app(),
            &read("10.0.0.1", "x", &credential, "k1"),
            200
        )
        .await
    );
    assert!(
        until(|| db.query("SELECT count(*) FROM sessions WHERE id = 'k1'") == "1").await,
        "the session never reached the store"
    );
    // SIGKILL: no goodbye. A new process takes its place (as a Deployment would).
    let mut dead = servers.remove(0);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let restarted = Binary::start(&config);
    revoke(&config, &id);
    assert!(
        api.wait_kicked("k1", 40).await,
        "the dead replica's session was never kicked: {}\n{}",
        restarted.logs(),
        servers[0].logs()
    );
    let adopter = [&restarted, &servers[0]].iter().any(|s| {
        s.logs()
            .contains("taking over 1 live sessions of a replica gone quiet")
    });
    assert!(adopter);
}

#[actix_web::test]
async fn the_database_stopped_and_started_again() {
    let Some(pg) = OwnPostgres::start("replicas::the_database_stopped_and_started_again") else {
        return;
    };
    let db = pg.database();
    let api = FakeMediamtx::start();
    let config = config(&db, &api, "[server]\nmax_failures_per_ip = 0\n");
    let servers = replicas(&config, 2);
    let (id, credential) = issue(&config).unwrap();
    for s in &servers {
        assert!(eventually(&s.app(), &read("10.0.0.1", "x", &credential, ""), 200).await);
    }
    pg.stop();
    for s in &servers {
        assert!(store_state(&s.app(), "down").await, "{}", s.logs());
        let (code, _) = readyz(&s.app()).await;
        assert_eq!(code, 200, "a readiness probe must not take the service out");
        // What needs nothing new from the store: decided from memory.
        assert_eq!(
            s.app()
                .status(&read("10.0.0.1", "x", &credential, ""))
                .await,
            200
        );
        assert_eq!(
            s.app()
                .status(&read("10.0.0.1", "alice", "right", ""))
                .await,
            200
        );
        assert_eq!(
            s.app()
                .status(&read("10.0.0.1", "alice", "wrong", ""))
                .await,
            401
        );
    }
    // A new credential cannot be made: a clear error, not a half-made one.
    let err = issue(&config).unwrap_err();
    assert!(err.contains("store"), "{err}");
    pg.start_again();
    for s in &servers {
        assert!(store_state(&s.app(), "up").await, "{}", s.logs());
    }
    revoke(&config, &id);
    for s in &servers {
        assert!(eventually(&s.app(), &read("10.0.0.1", "x", &credential, ""), 401).await);
    }
    // Unreachable at start: the service starts, decides what needs no store, and catches up
    // once the store is back.
    pg.stop();
    let late = Binary::start(&config);
    assert_eq!(
        late.app()
            .status(&read("10.0.0.1", "alice", "right", ""))
            .await,
        200
    );
    assert_eq!(readyz(&late.app()).await.0, 200);
    pg.start_again();
    let (_, fresh) = issue(&config).unwrap();
    assert!(
        eventually(&late.app(), &read("10.0.0.1", "x", &fresh, ""), 200).await,
        "{}",
        late.logs()
    );
    assert!(until(|| late.logs().contains("store reached")).await);
}

#[actix_web::test]
async fn store_copy_moves_a_sqlite_store_to_postgres() {
    let Some(db) = postgres::database("replicas::store_copy_moves_a_sqlite_store_to_postgres")
    else {
        return;
    };
    let api = FakeMediamtx::start();
    let sqlite = temp_config(
        "single.toml",
        "[store]\nurl = \"sqlite://mtx-auth.db\"\n\n[[users]]\nuser = \"alice\"\npass = \"right\"\npermissions = [{ action = \"read\" }]\n",
    );
    let (_, credential) = issue(&sqlite).unwrap();
    let (revoked_id, revoked) = issue(&sqlite).unwrap();
    revoke(&sqlite, &revoked_id);
    let file = sqlite.parent().unwrap().join("mtx-auth.db");
    let copy = |to: &str| {
        bin()
            .args(["store", "copy", "--from"])
            .arg(format!("sqlite://{}", file.display()))
            .args(["--to", to])
            .output()
            .unwrap()
    };
    let out = copy(&db.url());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("credentials: 2 rows"));
    // A second copy would mix two stores: refused.
    let again = copy(&db.url());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let server = Binary::start(&config(&db, &api, ""));
    assert_eq!(
        server
            .app()
            .status(&read("10.0.0.1", "x", &credential, ""))
            .await,
        200
    );
    assert_eq!(
        server
            .app()
            .status(&read("10.0.0.1", "x", &revoked, ""))
            .await,
        401
    );
}
