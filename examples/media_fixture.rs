//! Runs the fake Jellyfin of the tests (tests/it/support/media.rs) on a loopback port, with one
//! account `alice` / `alice-pw`, and prints its URL; serves until killed. Used by
//! `scripts/load.sh` for its account scenario; not part of the service.

#![recursion_limit = "256"]

#[allow(dead_code)] // the tests' fixtures; this uses one of them
#[path = "../tests/it/support/media.rs"]
mod media;

use std::io::Write;

use media::{FakeMediaServer, Flavor, UserSpec};

fn main() {
    actix_web::rt::System::new().block_on(async {
        let jf = FakeMediaServer::start(Flavor::Jellyfin, vec![UserSpec::new("alice", "alice-pw")]);
        println!("{}", jf.url());
        std::io::stdout().flush().unwrap();
        std::future::pending::<()>().await;
    });
}
