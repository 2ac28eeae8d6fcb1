//! Log set-up: `RUST_LOG` filters (default `info`), text or JSON lines on stderr.
//!
//! Writing goes through a background thread (`tracing_appender::non_blocking`) so a slow
//! terminal or pipe never holds up a decision. Nothing anywhere logs a password, token or hash:
//! decision lines carry the request's action, protocol, path, ip and user only.
//!
//! Those fields are the client's own words, so the text format escapes every value
//! ([`EscapedFields`]): a user name cannot end a line and print a forged one, move the cursor of
//! the operator's terminal, or pose as further fields of its own line. The JSON format escapes by
//! itself.

use std::fmt::{self, Write as _};
use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::FormatFields;
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
        LogFormat::Text => builder.fmt_fields(EscapedFields).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    guard
}

/// The text format's fields: tracing-subscriber's default layout (`name=value`, in the order
/// the event gives them), with every value made safe to print.
///
/// The default writes a `%value` as it is, so a user name such as `"x\n… INFO
/// mtx_auth::decision: … outcome=\"allow\""` printed a second, forged decision line, and an ESC
/// sequence drove the operator's terminal. Here:
///
/// - control characters (C0 including ESC, DEL, C1, U+2028/U+2029, which some viewers take
///   for line ends, and the bidirectional controls, which reorder what a terminal shows) are
///   written as `\n`, `\r`, `\t` or `\u{1b}`, in every value and in the message;
/// - a value holding whitespace, `"`, `=`, `\` or a control character is quoted, logfmt style,
///   with `"` and `\` escaped, so that `bob outcome=allow` reads as one value, not two fields;
/// - `&str` values (`outcome = "allow"`) are quoted as tracing always quoted them, so ordinary
///   lines read exactly as before; the message is never quoted (it is ours, not the client's,
///   apart from what it quotes).
///
/// Nothing is allocated per field: values are formatted straight into the line through
/// [`Escaper`]. Deciding whether a value needs quotes formats it once more into a scanner that
/// stops at the first such character.
#[derive(Debug, Default, Clone, Copy)]
pub struct EscapedFields;

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut visitor = FieldVisitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

/// Whether a value is quoted: always (string values, as tracing has always printed them), or
/// only when it holds a character that would make it ambiguous.
#[derive(Clone, Copy)]
enum Quote {
    Always,
    IfNeeded,
}

struct FieldVisitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl FieldVisitor<'_> {
    fn field(&mut self, field: &Field, quote: Quote, value: &dyn fmt::Debug) {
        let name = field.name();
        // `log` records carry their metadata as `log.*` fields; the event formatter has already
        // printed it (as tracing's default field formatter assumes too).
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        self.result = self.write_field(name, quote, value);
    }

    fn write_field(&mut self, name: &str, quote: Quote, value: &dyn fmt::Debug) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.writer.write_char(' ')?;
        }
        if name == "message" {
            return write!(Escaper::new(&mut self.writer, false), "{value:?}");
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        if self.writer.has_ansi_escapes() {
            // The default formatter's look on a terminal: italic name, dimmed `=`.
            write!(self.writer, "\x1b[3m{name}\x1b[0m\x1b[2m=\x1b[0m")?;
        } else {
            write!(self.writer, "{name}=")?;
        }
        write_value(&mut self.writer, value, quote)
    }
}

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, Quote::Always, &format_args!("{value}"));
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.field(
            field,
            Quote::IfNeeded,
            &format_args!("{}", ErrorChain(value)),
        );
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.field(field, Quote::IfNeeded, value);
    }
}

/// An error and its sources, `outer: inner: …`, as one value.
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(e) = source {
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// Writes one field value, quoted when `quote` says so.
fn write_value(w: &mut impl fmt::Write, value: &dyn fmt::Debug, quote: Quote) -> fmt::Result {
    let quoted = match quote {
        Quote::Always => true,
        Quote::IfNeeded => needs_quotes(value),
    };
    if quoted {
        w.write_char('"')?;
        write!(Escaper::new(w, true), "{value:?}")?;
        w.write_char('"')
    } else {
        write!(Escaper::new(w, false), "{value:?}")
    }
}

/// Whether a value, as it would be printed, holds a character that calls for quotes. Formats it
/// into a scanner that stops (with `fmt::Error`, which only ends this pass) at the first one.
fn needs_quotes(value: &dyn fmt::Debug) -> bool {
    struct Scan;
    impl fmt::Write for Scan {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            match s.chars().any(calls_for_quotes) {
                true => Err(fmt::Error),
                false => Ok(()),
            }
        }
    }
    write!(Scan, "{value:?}").is_err()
}

/// Characters that would let a bare value pass for more than one value.
fn calls_for_quotes(c: char) -> bool {
    c.is_whitespace() || matches!(c, '"' | '=' | '\\') || is_control(c)
}

/// Characters never written as they are: C0 (ESC among them), DEL, C1, the Unicode line and
/// paragraph separators, and the bidirectional embeddings, overrides and isolates (U+202A–202E,
/// U+2066–2069), which make a terminal or viewer show text in another order than it was written
/// (a user name that displays as someone else's, "Trojan Source").
fn is_control(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A `fmt::Write` that passes text through to `inner`, escaping control characters (`\n`, `\r`,
/// `\t`, else `\u{1b}` style) and, inside quotes, `"` and `\`. Runs of ordinary text are passed
/// on in one piece.
struct Escaper<'a, W: fmt::Write + ?Sized> {
    inner: &'a mut W,
    quoted: bool,
}

impl<'a, W: fmt::Write + ?Sized> Escaper<'a, W> {
    /// `quoted`: the text goes between `"`s, so `"` and `\` are escaped too.
    fn new(inner: &'a mut W, quoted: bool) -> Self {
        Escaper { inner, quoted }
    }
}

impl<W: fmt::Write + ?Sized> fmt::Write for Escaper<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, c) in s.char_indices() {
            let escape = match c {
                '\n' => "\\n",
                '\r' => "\\r",
                '\t' => "\\t",
                '"' if self.quoted => "\\\"",
                '\\' if self.quoted => "\\\\",
                c if is_control(c) => "",
                _ => continue,
            };
            self.inner.write_str(&s[plain..i])?;
            match escape {
                "" => write!(self.inner, "\\u{{{:x}}}", c as u32)?,
                e => self.inner.write_str(e)?,
            }
            plain = i + c.len_utf8();
        }
        self.inner.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn escaped(s: &str, quoted: bool) -> String {
        let mut out = String::new();
        Escaper::new(&mut out, quoted).write_str(s).unwrap();
        out
    }

    #[test]
    fn escaper_writes_control_characters_as_escapes() {
        assert_eq!(escaped("plain: cam/1", false), "plain: cam/1");
        assert_eq!(escaped("a\nb\r\nc\td", false), "a\\nb\\r\\nc\\td");
        assert_eq!(escaped("\x1b[2J\x07\0", false), "\\u{1b}[2J\\u{7}\\u{0}");
        assert_eq!(
            escaped("del\x7f c1\u{85}\u{9b}", false),
            "del\\u{7f} c1\\u{85}\\u{9b}"
        );
        assert_eq!(
            escaped("ls\u{2028}ps\u{2029}", false),
            "ls\\u{2028}ps\\u{2029}"
        );
        assert_eq!(
            escaped("admin\u{202e}nimda\u{2066}x\u{2069}", false),
            "admin\\u{202e}nimda\\u{2066}x\\u{2069}"
        );
        // Printable non-ASCII stays as it is.
        assert_eq!(escaped("Zoë 東京 🎥", false), "Zoë 東京 🎥");
        // Quotes and backslashes only matter inside quotes.
        assert_eq!(escaped(r#"a"b\c"#, false), r#"a"b\c"#);
        assert_eq!(escaped(r#"a"b\c"#, true), r#"a\"b\\c"#);
        assert_eq!(
            escaped("\\n", true),
            "\\\\n",
            "a literal backslash-n is not a newline"
        );
    }

    #[test]
    fn escaper_works_across_write_calls() {
        let mut out = String::new();
        let mut escaper = Escaper::new(&mut out, true);
        for piece in ["a\n", "\"", "\x1b"] {
            escaper.write_str(piece).unwrap();
        }
        assert_eq!(out, "a\\n\\\"\\u{1b}");
    }

    /// Formats one event with `EscapedFields` and returns its line.
    fn line(event: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(EscapedFields)
            .with_ansi(false)
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_writer(move || Writer(Arc::clone(&sink)))
            .finish();
        tracing::subscriber::with_default(subscriber, event);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.strip_suffix('\n').expect("one line").to_owned()
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn ordinary_fields_print_as_before() {
        let user = "alice";
        let got = line(
            || tracing::info!(path = %"cam/1", user = %user, outcome = "allow", cached = true, latency_us = 12u64, rule_line = Some(7)),
        );
        assert_eq!(
            got,
            r#"path=cam/1 user=alice outcome="allow" cached=true latency_us=12 rule_line=7"#
        );
        assert_eq!(
            line(|| tracing::info!(n = 3, "listening on http://127.0.0.1:9000/auth")),
            "listening on http://127.0.0.1:9000/auth n=3"
        );
    }

    #[test]
    fn hostile_values_stay_one_value_on_one_line() {
        let user = "bob outcome=allow user=alice";
        let got = line(|| tracing::info!(user = %user, outcome = "deny"));
        assert_eq!(got, r#"user="bob outcome=allow user=alice" outcome="deny""#);

        let user = "x\n2026-01-01T00:00:00Z  INFO mtx_auth::decision: user=admin outcome=\"allow\"";
        let got = line(|| tracing::info!(user = %user, outcome = "deny"));
        assert_eq!(
            got,
            r#"user="x\n2026-01-01T00:00:00Z  INFO mtx_auth::decision: user=admin outcome=\"allow\"" outcome="deny""#
        );

        let got = line(|| tracing::info!(path = %"\x1b[2J", ip = %"a\\b", q = ?"x=y", e = %""));
        assert_eq!(got, r#"path="\u{1b}[2J" ip="a\\b" q="\"x=y\"" e="#);

        // A string value is quoted and escaped as well.
        let got = line(|| tracing::info!(reason = "a\"b\u{2028}"));
        assert_eq!(got, r#"reason="a\"b\u{2028}""#);
    }

    #[test]
    fn the_message_is_escaped_but_not_quoted() {
        let name = "evil\r\n\x1b]0;title\x07";
        let got = line(|| tracing::warn!("config {name} reloaded"));
        assert_eq!(got, "config evil\\r\\n\\u{1b}]0;title\\u{7} reloaded");
    }

    #[test]
    fn errors_print_with_their_sources() {
        let inner = std::io::Error::other("refused\nby peer");
        #[derive(Debug, thiserror::Error)]
        #[error("upstream failed")]
        struct Outer(#[source] std::io::Error);
        let outer = Outer(inner);
        let got = line(|| tracing::warn!(error = &outer as &(dyn std::error::Error + 'static)));
        assert_eq!(got, r#"error="upstream failed: refused\nby peer""#);
    }
}
