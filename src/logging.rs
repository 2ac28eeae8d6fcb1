//! Log set-up: `RUST_LOG` filters (default `info`), text or JSON lines on stderr.
//!
//! Writing goes through a background thread (`tracing_appender::non_blocking`) so a slow
//! terminal or pipe never holds up a decision. Nothing anywhere logs a password, token or hash:
//! decision lines carry the request's action, protocol, path, ip and user only.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. Keep the guard alive until exit so buffered lines are written.
pub fn init(format: LogFormat) -> WorkerGuard {
    // Buffered: one write(2) per line cost ~1.5 µs of the ~13 µs a keep-alive request takes
    // (BENCHMARKS.md). The appender's thread flushes whenever its queue runs empty, so lines
    // are not held back when traffic is light.
    let stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(stderr);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    // A second init (tests starting several servers) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    guard
}
