//! What the decision log line costs a decision.
//!
//! Before issue 16 the line was a tracing event, formatted by tracing-subscriber (`text_escaped`, `text_default_fields`, `json`
//! cases): `server::trace_decision` through the same subscriber `serve` installed (the fmt layer
//! with our escaping field formatter for text, its JSON format), writing into a sink so that
//! only formatting is measured. Beside them: tracing's default field formatter (what the text
//! format cost before values were escaped) and the line filtered out by `RUST_LOG=warn` (what a
//! disabled line costs, through `server::log_decision`).
//!
//! Since issue 16 `serve` writes the line by hand (the `hand_*` cases): `logging::Lines::push`
//! with the fields of `server::DecisionFields`, into a reused buffer, for the same
//! request and decision. `hand_text_written` adds what writing costs when each line is its own
//! `write(2)` (to `/dev/null`), as for a client that sends one request at a time; under load
//! one write carries many lines. They time and stamp the line as `server::auth` does: two clock
//! reads for the latency, the timestamp from the second (`Lines::wall_time`).
//! `hand_text_format_only` is the formatting alone, with a fixed time and latency.
//!
//! Run: `cargo bench --bench log_line` (about a minute).

use std::hint::black_box;
use std::io::Write;
use std::time::{Instant, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use mtx_auth::logging::{EscapedFields, Lines, LogFormat};
use mtx_auth::permission::Action;
use mtx_auth::policy::{Decision, Source, UserRule};
use mtx_auth::request::Request;
use mtx_auth::server::{log_decision, trace_decision, DecisionFields};
use tracing::Level;
use tracing_subscriber::EnvFilter;

fn bench(c: &mut Criterion) {
    let req = Request::new(Action::Read, "cam/1", "10.0.0.1", "viewer", "viewpass");
    let allow = Decision::Allow {
        user: "viewer".into(),
        source: Source::Users,
        rule: Some(UserRule { index: 3, line: 12 }),
        cached: true,
        grant: mtx_auth::decision::Grant::User,
    };
    let mut group = c.benchmark_group("log_line");
    let traced =
        |group: &mut criterion::BenchmarkGroup<_>, name: &str, dispatch: tracing::Dispatch| {
            tracing::dispatcher::with_default(&dispatch, || {
                group.bench_function(name, |b| {
                    b.iter(|| {
                        let started = Instant::now();
                        let latency_us = started.elapsed().as_micros() as u64;
                        trace_decision(black_box(&req), black_box(&allow), latency_us)
                    })
                });
            });
        };
    let text = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::io::sink)
        .fmt_fields(EscapedFields)
        .finish();
    traced(&mut group, "text_escaped", tracing::Dispatch::new(text));
    let default_fields = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::io::sink)
        .finish();
    traced(
        &mut group,
        "text_default_fields",
        tracing::Dispatch::new(default_fields),
    );
    let json = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .json()
        .finish();
    traced(&mut group, "json", tracing::Dispatch::new(json));

    // The hand-written line: what `log_decision` does once `RUST_LOG` lets the line through.
    let mut lines = Lines::default();
    let fixed = SystemTime::now();
    let mut hand =
        |group: &mut criterion::BenchmarkGroup<_>, name: &str, format, write: bool, clock: bool| {
            let mut null = std::fs::File::create("/dev/null").unwrap();
            group.bench_function(name, |b| {
                b.iter(|| {
                    // As `server::auth` has them: two clock reads for the latency, and the
                    // timestamp from the second.
                    let (latency_us, time) = if clock {
                        let started = Instant::now();
                        let decided = Instant::now();
                        let latency_us = (decided - started).as_micros() as u64;
                        (latency_us, lines.wall_time(decided))
                    } else {
                        (12, fixed)
                    };
                    lines.clear();
                    let fields = DecisionFields {
                        req: black_box(&req),
                        decision: black_box(&allow),
                        latency_us,
                    };
                    lines.push(format, time, Level::INFO, "mtx_auth::decision", &fields);
                    if write {
                        null.write_all(lines.as_bytes()).unwrap();
                    }
                })
            });
        };
    hand(&mut group, "hand_text", LogFormat::Text, false, true);
    hand(&mut group, "hand_json", LogFormat::Json, false, true);
    hand(&mut group, "hand_text_written", LogFormat::Text, true, true);
    hand(
        &mut group,
        "hand_text_format_only",
        LogFormat::Text,
        false,
        false,
    );

    let off = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::sink)
        .finish();
    tracing::dispatcher::with_default(&tracing::Dispatch::new(off), || {
        group.bench_function("filtered_out", |b| {
            b.iter(|| {
                let started = Instant::now();
                let decided = Instant::now();
                log_decision(
                    black_box(&req),
                    black_box(&allow),
                    decided,
                    decided - started,
                )
            })
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
