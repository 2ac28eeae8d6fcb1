//! What the decision log line costs a decision: `server::log_decision` through the same
//! subscriber `serve` installs (tracing-subscriber's fmt layer with our escaping field formatter
//! for text, its JSON format), writing into a sink so that only formatting is measured, not the
//! terminal or pipe. Beside it: tracing's default field formatter (what the text format cost
//! before values were escaped) and the line filtered out by `RUST_LOG=warn` (what a disabled
//! line costs).
//!
//! Run: `cargo bench --bench log_line` (about half a minute).

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use mtx_auth::logging::EscapedFields;
use mtx_auth::permission::Action;
use mtx_auth::policy::{Decision, Source, UserRule};
use mtx_auth::request::Request;
use tracing_subscriber::EnvFilter;

fn bench(c: &mut Criterion) {
    let req = Request::new(Action::Read, "cam/1", "10.0.0.1", "viewer", "viewpass");
    let allow = Decision::Allow {
        user: "viewer".into(),
        source: Source::Users,
        rule: Some(UserRule { index: 3, line: 12 }),
        cached: true,
    };
    let mut group = c.benchmark_group("log_line");
    let run =
        |group: &mut criterion::BenchmarkGroup<_>, name: &str, dispatch: tracing::Dispatch| {
            tracing::dispatcher::with_default(&dispatch, || {
                group.bench_function(name, |b| {
                    b.iter(|| {
                        mtx_auth::server::log_decision(
                            black_box(&req),
                            black_box(&allow),
                            Instant::now(),
                        )
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
    run(&mut group, "text_escaped", tracing::Dispatch::new(text));
    let default_fields = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::io::sink)
        .finish();
    run(
        &mut group,
        "text_default_fields",
        tracing::Dispatch::new(default_fields),
    );
    let json = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("info"))
        .with_writer(std::io::sink)
        .json()
        .finish();
    run(&mut group, "json", tracing::Dispatch::new(json));
    let off = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("warn"))
        .with_writer(std::io::sink)
        .finish();
    run(&mut group, "filtered_out", tracing::Dispatch::new(off));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
