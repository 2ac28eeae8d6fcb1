//! The portal's figures: the time from a sign-in to the streams page, and the memory of many
//! web sessions. Runs a release `mtx-auth serve` with a store, two `[[users]]` (one argon2 with
//! the default parameters, one plain), a `[jellyfin]` section pointing at a minimal Jellyfin on
//! loopback, and `[portal]` (mfa off), then:
//!
//! 1. ROUNDS times each: `POST /login` then `GET /` with the cookie it set, for the argon2 TOML
//!    user, the plain TOML user and a Jellyfin account whose answer is cached (the first sign-in
//!    warms the cache; later ones never reach Jellyfin). Prints p50, p90 and the worst.
//! 2. SESSIONS sign-ins of the plain user (each a new web session in the store), then the
//!    server's RSS before and after, and the store file's size.
//!
//! ```sh
//! cargo build --release --bin mtx-auth --example portal_signin
//! target/release/examples/portal_signin target/release/mtx-auth 200 10000
//! ```

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};

/// Jellyfin's `POST /Users/AuthenticateByName`, for one account, counted.
async fn authenticate(
    body: web::Json<serde_json::Value>,
    hits: web::Data<AtomicUsize>,
) -> HttpResponse {
    hits.fetch_add(1, Ordering::Relaxed);
    if body["Username"] == "jane" && body["Pw"] == "jane-pw" {
        HttpResponse::Ok().json(serde_json::json!({
            "User": {"Name": "jane", "Id": "0f0e0d0c0b0a09080706050403020100",
                     "Policy": {"IsAdministrator": false, "IsDisabled": false, "EnableRemoteAccess": true}},
            "AccessToken": "0123456789abcdef0123456789abcdef",
        }))
    } else {
        HttpResponse::Unauthorized().finish()
    }
}

async fn info() -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({"ServerName": "bench", "Version": "10.10.0", "Id": "bench"}))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn sign_in_and_open(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    pass: &str,
) -> Duration {
    let started = Instant::now();
    let resp = client
        .post(format!("{base}/login"))
        .header("origin", base)
        .form(&[("username", user), ("password", pass)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303, "sign-in of {user}");
    let cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("mtx_auth_session="))
        .and_then(|c| c.split(';').next())
        .unwrap()
        .to_owned();
    let page = client
        .get(format!("{base}/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    page.bytes().await.unwrap();
    started.elapsed()
}

#[actix_web::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .expect("usage: portal_signin MTX_AUTH_BINARY [ROUNDS] [SESSIONS]");
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
    let sessions: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10_000);

    let hits = web::Data::new(AtomicUsize::new(0));
    let jf_hits = hits.clone();
    let jellyfin = HttpServer::new(move || {
        App::new()
            .app_data(jf_hits.clone())
            .route("/Users/AuthenticateByName", web::post().to(authenticate))
            .route("/System/Info/Public", web::get().to(info))
            .default_service(web::to(HttpResponse::NotFound))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let jf_addr = jellyfin.addrs()[0];
    actix_web::rt::spawn(jellyfin.run());

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("mtx-auth.toml");
    let argon2 = "argon2:$argon2id$v=19$m=19456,t=2,p=1$EWlH2QlOY9/fRHYEB3PGQQ$x7rbya5ncU6fnzme1vbAi+Uhn17WmWXnUQz9oZ8NHh4";
    std::fs::write(
        &config,
        format!(
            r#"[server]
max_failures_per_ip = 0

[store]
url = "sqlite://mtx-auth.db"

[[users]]
user = "bob"
pass = "{argon2}"
permissions = [{{ action = "read", path = "~^cam" }}]

[[users]]
user = "carol"
pass = "carol-pw"
permissions = [{{ action = "read", path = "cam1" }}]

[jellyfin]
url = "http://{jf_addr}"
cache_ttl_secs = 3600

[portal]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
mfa = "off"
"#
        ),
    )
    .unwrap();
    let mut child = Command::new(binary)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..100 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = child.id();
    let rss_start = rss_kib(pid);

    println!("sign-in to streams page ({rounds} rounds each, one at a time):");
    for (label, user, pass) in [
        ("TOML user, argon2 (m=19456, t=2)", "bob", "bob-pw"),
        ("TOML user, plain password", "carol", "carol-pw"),
        ("Jellyfin account, cached", "jane", "jane-pw"),
    ] {
        // The first sign-in warms what is cached (the Jellyfin answer).
        sign_in_and_open(&client, &base, user, pass).await;
        let mut times = Vec::with_capacity(rounds);
        for _ in 0..rounds {
            times.push(sign_in_and_open(&client, &base, user, pass).await);
        }
        times.sort();
        println!(
            "  {label}: p50 {:.2} ms, p90 {:.2} ms, worst {:.2} ms",
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.9).as_secs_f64() * 1e3,
            times.last().unwrap().as_secs_f64() * 1e3,
        );
    }
    println!(
        "  Jellyfin was asked {} times",
        hits.load(Ordering::Relaxed)
    );

    let before = rss_kib(pid);
    let client = Arc::new(client);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let client = Arc::clone(&client);
        let base = base.clone();
        tasks.push(actix_web::rt::spawn(async move {
            for i in 0..sessions / 8 + usize::from(worker < sessions % 8) {
                let _ = i;
                let resp = client
                    .post(format!("{base}/login"))
                    .header("origin", &base)
                    .form(&[("username", "carol"), ("password", "carol-pw")])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status().as_u16(), 303);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let after = rss_kib(pid);
    let db = std::fs::metadata(dir.path().join("mtx-auth.db")).map_or(0, |m| m.len())
        + std::fs::metadata(dir.path().join("mtx-auth.db-wal")).map_or(0, |m| m.len());
    println!(
        "{sessions} more web sessions in {:.1} s: RSS at start {} KiB, before {} KiB, after {} KiB ({:+} KiB); store file {} KiB",
        started.elapsed().as_secs_f64(),
        rss_start,
        before,
        after,
        after as i64 - before as i64,
        db / 1024
    );
    let _ = child.kill();
    let _ = child.wait();
}
