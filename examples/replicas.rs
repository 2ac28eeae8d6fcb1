//! Figures for several replicas on one PostgreSQL store (issue 20): three release `mtx-auth
//! serve` processes on a fresh database of the machine's PostgreSQL.
//!
//! 1. **Propagation**: RUNS rounds of issue a credential (in the store, as `token issue` does),
//!    wait until every replica lets it in, revoke it (the clock starts when the revoking
//!    transaction has committed), and poll every replica until each denies it. Prints the
//!    median and the worst over the rounds of the slowest replica, and the median of all.
//! 2. **A spray**: 1,000 wrong passwords for `[[users]]` from 1,000 addresses, spread over the
//!    three replicas, 16 at a time; then the database's transactions (PostgreSQL's
//!    `pg_stat_database.xact_commit` for this database: every statement outside an explicit
//!    transaction is one) over the spray and the 2 s after it, against the same span idle.
//!
//! ```sh
//! cargo build --release --bin mtx-auth --example replicas
//! target/release/examples/replicas target/release/mtx-auth 100 postgres://postgres@127.0.0.1:5432
//! ```

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use mtx_auth::issued;
use mtx_auth::store::feed::hex_digest;
use mtx_auth::store::{CredentialRecord, PermissionRecord, Store, StoreConfig, StoreUrl};
use sqlx::{Connection, PgConnection, Row};

/// Starts `mtx-auth serve` on a free port; returns the child and its base URL.
fn replica(binary: &str, config: &std::path::Path) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start mtx-auth");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "mtx-auth exited");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split('/').next().unwrap().to_owned();
        }
    };
    // Keep reading, so a full pipe never blocks the server.
    std::thread::spawn(move || {
        let mut sink = String::new();
        while stderr.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    (child, format!("http://{addr}"))
}

async fn status(http: &reqwest::Client, base: &str, body: &serde_json::Value) -> u16 {
    http.post(format!("{base}/auth"))
        .json(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

async fn transactions(admin: &mut PgConnection, db: &str) -> i64 {
    // The statistics collector publishes at most every 500 ms by default: ask for a fresh view.
    sqlx::query("SELECT pg_stat_clear_snapshot()")
        .execute(&mut *admin)
        .await
        .unwrap();
    sqlx::query("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
        .bind(db)
        .fetch_one(&mut *admin)
        .await
        .unwrap()
        .get(0)
}

#[actix_web::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .expect("usage: replicas MTX_AUTH_BINARY [RUNS] [POSTGRES_URL]");
    let runs: usize = args.get(2).map_or(100, |r| r.parse().unwrap());
    let server = args
        .get(3)
        .cloned()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432".into());
    let db = format!("mtx_auth_figures_{}", std::process::id());
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let url = format!("{server}/{db}");
    let dir = std::env::temp_dir().join(&db);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("mtx-auth.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"{url}\"\n\n[server]\nmax_failures_per_ip = 1000\n\n\
             [[users]]\nuser = \"alice\"\npass = \"right\"\npermissions = [{{ action = \"read\" }}]\n"
        ),
    )
    .unwrap();
    let mut children = Vec::new();
    let mut bases = Vec::new();
    for _ in 0..3 {
        let (child, base) = replica(binary, &config);
        children.push(child);
        bases.push(base);
    }
    let store = Store::open(&StoreConfig {
        url: StoreUrl::parse(&url, &dir).unwrap(),
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();

    // 1. Propagation of a revocation.
    let mut slowest = Vec::with_capacity(runs);
    let mut all = Vec::with_capacity(runs * 3);
    for run in 0..runs {
        let new = issued::generate();
        let id = format!("run{run:05}");
        store
            .insert_credential(&CredentialRecord {
                id: id.clone(),
                digest: hex_digest(&new.digest),
                name: "bench".into(),
                permissions: vec![PermissionRecord {
                    action: "read".into(),
                    path: String::new(),
                }],
                owner: None,
                created_at: 0,
                expires_at: None,
                revoked_at: None,
                ips: Vec::new(),
                grant: None,
            })
            .await
            .unwrap();
        // An address per round: polls that arrive before the credential count as failures.
        let ip = format!("10.200.{}.{}", run / 256, run % 256);
        let body = serde_json::json!({"user": "", "password": new.token, "token": "",
            "ip": ip, "action": "read", "path": "cam", "protocol": "rtsp",
            "id": "", "query": ""});
        for base in &bases {
            while status(&http, base, &body).await != 200 {
                actix_web::rt::time::sleep(Duration::from_millis(2)).await;
            }
        }
        // Revocations at moments spread over the catch-up period, not right after a read.
        actix_web::rt::time::sleep(Duration::from_millis((run as u64 * 37) % 300)).await;
        store
            .revoke_credentials(std::slice::from_ref(&id), 0)
            .await
            .unwrap();
        let revoked = Instant::now();
        let waits = bases.iter().map(|base| {
            let (http, body) = (http.clone(), body.clone());
            async move {
                while status(&http, base, &body).await != 401 {
                    actix_web::rt::time::sleep(Duration::from_micros(500)).await;
                    assert!(revoked.elapsed() < Duration::from_secs(10), "never denied");
                }
                revoked.elapsed()
            }
        });
        let times = futures_util::future::join_all(waits).await;
        slowest.push(*times.iter().max().unwrap());
        all.extend(times);
    }
    slowest.sort();
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "revocation to denied on all 3 replicas, {runs} runs: median {:.1} ms, worst {:.1} ms \
         (each replica alone: median {:.1} ms)",
        ms(slowest[slowest.len() / 2]),
        ms(*slowest.last().unwrap()),
        ms(all[all.len() / 2]),
    );

    // 2. The store's load under a spray, against the same span idle.
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;
    let idle_from = transactions(&mut admin, &db).await;
    let idle_start = Instant::now();
    actix_web::rt::time::sleep(Duration::from_secs(4)).await;
    let idle = transactions(&mut admin, &db).await - idle_from;
    let idle_secs = idle_start.elapsed().as_secs_f64();

    for (label, pace) in [
        ("at once, 16 at a time", None),
        ("paced over 10 s", Some(10)),
    ] {
        let offset = if pace.is_some() { 1000 } else { 0 };
        let before = transactions(&mut admin, &db).await;
        let start = Instant::now();
        let attempts: Vec<_> = (offset..offset + 1000u32)
            .map(|i| {
                let ip = format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256);
                let body = serde_json::json!({"user": "alice", "password": format!("guess{i}"),
                    "token": "", "ip": ip, "action": "read", "path": "cam", "protocol": "rtsp",
                    "id": "", "query": ""});
                (bases[i as usize % 3].clone(), body)
            })
            .collect();
        let denied = std::sync::atomic::AtomicUsize::new(0);
        let count = |code: u16| {
            if code == 401 {
                denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        };
        match pace {
            None => {
                futures_util::stream::StreamExt::for_each_concurrent(
                    futures_util::stream::iter(attempts),
                    16,
                    |(base, body)| {
                        let http = &http;
                        let count = &count;
                        async move { count(status(http, &base, &body).await) }
                    },
                )
                .await
            }
            Some(ms) => {
                for (base, body) in attempts {
                    count(status(&http, &base, &body).await);
                    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
                }
            }
        }
        let spray_secs = start.elapsed().as_secs_f64();
        // The failures of the last batch are written within a sync period.
        actix_web::rt::time::sleep(Duration::from_secs(2)).await;
        let during = transactions(&mut admin, &db).await - before;
        let span = start.elapsed().as_secs_f64();
        println!(
            "spray {label}: 1000 wrong passwords from 1000 addresses over 3 replicas in \
             {spray_secs:.2} s ({} denied); database transactions in the {span:.1} s from its \
             start: {during} ({:.1}/s), against {:.1}/s idle",
            denied.into_inner(),
            during as f64 / span,
            idle as f64 / idle_secs,
        );
    }
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let rows: i64 = sqlx::query("SELECT count(*) FROM limit_failures")
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0);
    println!(
        "limit_failures rows after the sprays: {rows} (one per address and replica that counted a \
         failure, the propagation rounds' early polls included)"
    );

    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
