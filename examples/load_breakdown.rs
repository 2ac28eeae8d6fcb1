//! Where the time and memory of loading a config go: the TOML document alone, then the whole
//! `Config::parse`, then `Policy::new`. `scripts/users-memory.sh` measures the server from outside;
//! this splits its figures, so a change to the parser and a change to the data structures can each
//! be judged by their own part.
//!
//! `cargo run --release --example load_breakdown -- FILE` (a config such as the ones
//! `KEEP=1 scripts/users-memory.sh` leaves behind). Figures are resident memory (VmRSS) after each
//! step and the step's own peak (VmHWM, reset before it through `/proc/self/clear_refs`), in MiB.

use std::time::Instant;

use mtx_auth::config::Config;
use mtx_auth::policy::Policy;

fn status_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or(0)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Resets VmHWM to the current VmRSS, so the next reading is the peak of what runs in between.
fn reset_peak() {
    // Not every kernel or sandbox allows it; the peaks are then those of the whole run so far.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Gives freed heap back to the system, as the server does after a load.
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Runs one step, printing its time, its peak and the resident memory after it.
fn step<T>(name: &str, f: impl FnOnce() -> T) -> T {
    trim();
    reset_peak();
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    let peak = status_kib("VmHWM");
    trim();
    println!(
        "{name:<34} {:>8.3} s  peak {:>7.1} MiB  after {:>7.1} MiB",
        took.as_secs_f64(),
        mib(peak),
        mib(status_kib("VmRSS"))
    );
    out
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: load_breakdown FILE");
        std::process::exit(2);
    };
    println!("{:<34} {:>10}  {:>17}  resident", "start", "", "");
    println!("{:<34} {:>8.1} MiB", "", mib(status_kib("VmRSS")));
    let text = step("read the file", || std::fs::read_to_string(&path).unwrap());
    step("TOML document only (IgnoredAny)", || {
        toml::from_str::<serde::de::IgnoredAny>(&text).unwrap()
    });
    let config = step("Config::parse (document + checks)", || {
        Config::parse(&text, &path).unwrap()
    });
    let policy = step("Policy::new", || Policy::new(config));
    drop(text);
    step("drop the text", || ());
    println!("users: {}", policy.users().len());
    step("drop the policy", || drop(policy));
}
