//! The throughput ceiling for `mtx-auth serve`: the same actix-web stack, body limit and request
//! parsing, but no decision and no log line. `scripts/load.sh` compares the two.
//!
//! `cargo run --release --example bare -- [ADDR]` (default 127.0.0.1:9001). Like the real server
//! it runs actix's default number of workers: one per core the process may run on.

use std::net::TcpListener;

use actix_web::{web, App, HttpResponse, HttpServer};
use mtx_auth::request::Request;
use mtx_auth::server::MAX_BODY;
use serde::Serialize;

#[derive(Serialize)]
struct AllowBody<'a> {
    user: &'a str,
}

async fn auth(payload: web::Payload) -> HttpResponse {
    let body = match payload.to_bytes_limited(MAX_BODY).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => return HttpResponse::BadRequest().finish(),
        Err(_) => return HttpResponse::PayloadTooLarge().finish(),
    };
    match Request::parse(&body) {
        Ok(req) => HttpResponse::Ok().json(AllowBody { user: &req.user }),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("bare responder on http://{}/auth", listener.local_addr()?);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .route("/auth", web::post().to(auth))
                .route("/healthz", web::get().to(healthz))
        })
        .listen(listener)?
        .run()
        .await
    })
}
