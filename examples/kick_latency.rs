//! The time from a revocation to the kick: a release `mtx-auth serve` with a store and
//! `[mediamtx]`, a minimal MediaMTX control API on loopback that authenticates each call through
//! mtx-auth (as MediaMTX does) and notes when each kick arrives, and RUNS rounds of: issue a
//! credential, open a session with it, revoke it in the store, wait for the kick.
//!
//! The clock starts when the revoking transaction has committed (what `mtx-auth token revoke`
//! does) and stops when the kick reaches the API; the revocations fall at moments spread over the
//! server's 250 ms poll period. Prints the median, the 90th percentile and the worst.
//!
//! ```sh
//! cargo build --release --bin mtx-auth --example kick_latency
//! target/release/examples/kick_latency target/release/mtx-auth 100
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use mtx_auth::issued;
use mtx_auth::store::feed::hex_digest;
use mtx_auth::store::{CredentialRecord, PermissionRecord, Store, StoreConfig, StoreUrl};

type Kicks = Arc<Mutex<HashMap<String, Instant>>>;

struct Api {
    kicks: Kicks,
    auth: String,
    http: reqwest::Client,
}

/// The control API's kick route, authenticated through mtx-auth as MediaMTX does it.
async fn kick(req: HttpRequest, api: web::Data<Api>) -> HttpResponse {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "))
        .unwrap_or("");
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(header)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default();
    let (user, pass) = decoded.split_once(':').unwrap_or(("", ""));
    let allowed = api
        .http
        .post(&api.auth)
        .json(
            &serde_json::json!({"user": user, "password": pass, "token": pass, "ip": "127.0.0.1",
            "action": "api", "path": "", "protocol": "", "id": null, "query": ""}),
        )
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    if !allowed {
        return HttpResponse::Unauthorized().finish();
    }
    let id = req.match_info().get("id").unwrap_or_default().to_owned();
    api.kicks.lock().unwrap().insert(id, Instant::now());
    HttpResponse::Ok().finish()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[actix_web::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .cloned()
        .unwrap_or("target/release/mtx-auth".into());
    let runs: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(100);
    let dir = std::env::temp_dir().join(format!("mtx-auth-kick-latency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();

    let (api_port, auth_port) = (free_port(), free_port());
    let kicks: Kicks = Arc::default();
    let data = web::Data::new(Api {
        kicks: Arc::clone(&kicks),
        auth: format!("http://127.0.0.1:{auth_port}/auth"),
        http: reqwest::Client::new(),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/v3/{kind}/kick/{id}", web::post().to(kick))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", api_port))
    .unwrap()
    .run();
    actix_web::rt::spawn(server);

    let config = dir.join("mtx-auth.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://mtx-auth.db\"\n\n[mediamtx]\napi_url = \"http://127.0.0.1:{api_port}\"\n"
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(&binary)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{auth_port}")])
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("start mtx-auth");
    let http = reqwest::Client::new();
    let auth = format!("http://127.0.0.1:{auth_port}/auth");
    for _ in 0..500 {
        if http
            .get(format!("http://127.0.0.1:{auth_port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let store = Store::open(&StoreConfig {
        url: StoreUrl::Sqlite(dir.join("mtx-auth.db")),
    })
    .await
    .unwrap();

    let mut latencies = Vec::with_capacity(runs);
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
        let session = format!("session-{run}");
        let body = serde_json::json!({"user": "", "password": new.token, "token": new.token,
            "ip": "10.0.0.1", "action": "read", "path": "cam", "protocol": "webrtc",
            "id": session, "query": ""});
        // The server reads new credentials within a poll; wait until this one lets the session in.
        loop {
            let status = http.post(&auth).json(&body).send().await.unwrap().status();
            if status.is_success() {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
        // A revocation comes at any moment of the server's poll period, not right after the
        // poll that brought the credential in: spread the moments over 0–300 ms.
        actix_web::rt::time::sleep(Duration::from_millis((run as u64 * 37) % 300)).await;
        store
            .revoke_credentials(std::slice::from_ref(&id), 0)
            .await
            .unwrap();
        let revoked = Instant::now();
        let kicked = loop {
            if let Some(at) = kicks.lock().unwrap().get(&session) {
                break *at;
            }
            actix_web::rt::time::sleep(Duration::from_millis(1)).await;
            assert!(
                revoked.elapsed() < Duration::from_secs(10),
                "no kick for run {run}"
            );
        };
        latencies.push(kicked.saturating_duration_since(revoked));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "revocation to kick over {runs} runs: median {:.1} ms, p90 {:.1} ms, worst {:.1} ms, best {:.1} ms",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(*latencies.last().unwrap()),
        ms(latencies[0])
    );
}
