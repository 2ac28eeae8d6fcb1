//! The config loader on arbitrary text. Checks: no panic; every problem is located on a line of
//! the file (1-based), has a message (not a piece of toml's source excerpt), and displays as `f.toml:LINE:COL: message`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mtx_auth::config::Config;

/// `FUZZ_ALLOW_EXCERPT=1` skips the excerpt check, to fuzz past a known instance of it.
fn excerpts_allowed() -> bool {
    static ALLOWED: OnceLock<bool> = OnceLock::new();
    *ALLOWED.get_or_init(|| std::env::var_os("FUZZ_ALLOW_EXCERPT").is_some())
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `client_secret_file` reads a file named in the config: keep the fuzzer away from the
    // file system (a path like /dev/zero would read forever).
    if text.contains("_file") {
        return;
    }
    if let Err(e) = Config::parse(text, "f.toml") {
        assert!(!e.problems.is_empty(), "an error without a problem");
        let lines = text.split('\n').count();
        for p in &e.problems {
            assert!(p.line >= 1 && p.line <= lines, "line {} of {lines}", p.line);
            assert!(p.col >= 1, "column {}", p.col);
            assert!(!p.message.trim().is_empty(), "empty message: {p:?}");
            // A message, not a line of toml's source excerpt ("1 | J=", "  |  ^").
            let excerpt = p.message.lines().any(|l| {
                let l = l.trim_start();
                l.starts_with('|')
                    || l.starts_with('^')
                    || l.split_once(" |")
                        .is_some_and(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()))
            });
            assert!(
                !excerpt || excerpts_allowed(),
                "source excerpt as message: {p:?}"
            );
            let shown = p.to_string();
            let want = format!("f.toml:{}:{}: ", p.line, p.col);
            assert!(shown.starts_with(&want), "{shown:?}");
        }
    }
});
