//! Memory of the registry of live sessions: the process's resident memory before and after
//! admitting N sessions (MediaMTX's UUID ids, a path each, a few identities, grants of every
//! kind), through the same `Registry::admit` that `/auth` calls.
//!
//! ```sh
//! cargo run --release --example registry_memory -- 100000
//! ```

use std::sync::Arc;

use mtx_auth::cache::SecretHasher;
use mtx_auth::config::Config;
use mtx_auth::decision::{Decision, Grant, Source, UserRule};
use mtx_auth::permission::Action;
use mtx_auth::policy::Policy;
use mtx_auth::request::Request;
use mtx_auth::sessions::Registry;

/// Resident memory in bytes (Linux).
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let policy = Policy::new(
        Config::parse(
            "[[users]]\nuser = \"viewer\"\npass = \"viewpass\"\npermissions = [{ action = \"read\" }]\n",
            "bench.toml",
        )
        .unwrap(),
    );
    // Without a store the changes go nowhere (as they leave for the store twice a second).
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    drop(rx);
    let registry = Registry::new(n, SecretHasher::random(), tx, Default::default());
    let api: Arc<str> = "http://127.0.0.1:9997".into();
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{:08x}-1f2e-4d3c-8b7a-{:012x}", i * 7919, i))
        .collect();
    let paths: Vec<String> = (0..n).map(|i| format!("cam/{}", i % 500)).collect();
    let credential_id: Arc<str> = "5c0f3a9e81d2b7c4".into();
    let before = rss();
    for (i, (id, path)) in ids.iter().zip(&paths).enumerate() {
        let mut req = Request::new(Action::Read, path, "10.0.0.1", "viewer", "viewpass");
        req.protocol = ["rtsp", "webrtc", "hls", "srt"][i % 4].into();
        req.id = id.as_str().into();
        let (source, rule, grant) = match i % 3 {
            0 => (
                Source::Users,
                Some(UserRule { index: 0, line: 1 }),
                Grant::User,
            ),
            1 => (
                Source::Credential,
                None,
                Grant::Credential {
                    id: Arc::clone(&credential_id),
                    ends_at: Some(1_800_000_000),
                },
            ),
            _ => (
                Source::Jwt,
                None,
                Grant::Jwt {
                    ends_at: Some(1_800_000_000),
                },
            ),
        };
        let decision = Decision::Allow {
            user: format!("viewer{}", i % 1000),
            source,
            rule,
            cached: false,
            grant,
        };
        registry
            .admit(&policy, &req, &decision, &api, 1_764_000_000)
            .expect("room for every session");
    }
    let after = rss();
    assert_eq!(registry.len(), n);
    let per = (after - before) as f64 / n as f64;
    println!(
        "{n} sessions: resident memory {:.1} MiB before, {:.1} MiB after: {:.0} bytes per session",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        per
    );
}
