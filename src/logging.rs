//! Log set-up: `RUST_LOG` filters (default `info`), text or JSON lines on stderr.
//!
//! Nothing anywhere logs a password, token or hash: decision lines carry the request's action,
//! protocol, path, ip and user only. Those fields are the client's own words, so the text format
//! escapes every value ([`EscapedFields`]): a user name cannot end a line and print a forged one,
//! move the cursor of the operator's terminal, or pose as further fields of its own line. The
//! JSON format escapes by itself.
//!
//! **The decision line is written by hand** ([`Lines::push`]), not through tracing's per-field
//! machinery: formatting 10 fields through tracing-subscriber cost ~1.8 µs, more than the
//! decision itself (BENCHMARKS.md). `RUST_LOG` still decides whether it is written (the caller
//! asks `tracing::enabled!`), and it reads exactly as tracing-subscriber would print it, in both
//! formats: same timestamp format, level, target, field order and escaping (tests compare the
//! two). A queued line is stamped with the time its caller passes, the decision's (`WallClock`).
//! On a terminal (ANSI colours) the line goes through tracing as before: that is not a load
//! path.
//!
//! **Writing.** Lines are written to stderr by the thread that logs them, with no logging thread:
//! handing each line to another thread cost a wake-up of that thread per line, which is what
//! a one-request-per-connection client (MediaMTX) waits behind on a 2-core machine. A worker
//! may queue its decision lines ([`queue`]) and write them together a few milliseconds later
//! ([`flush`], which the HTTP layer schedules for 10 ms after a batch's first line): one
//! `write(2)` carries up to 64 KiB of lines, and an answer never waits for its own line. Every
//! other line (tracing's) is written at once, behind whatever the thread had queued, so each
//! thread's lines keep their order. A stderr that blocks (a stalled pipe) now holds up the
//! thread that writes, as it does for MediaMTX's own Go logger, instead of lines being dropped.
//! A process killed outright (SIGKILL, a crash) loses at most its workers' last 10 ms of
//! decision lines; one that stops (SIGTERM) writes them all as its workers end.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write as _};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use tracing::field::{Field, Visit};
use tracing::Level;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The format hand-written lines use, once [`init`] has installed the process's subscriber;
/// unset (lines go through tracing) on a terminal, in tests and in benches.
static DIRECT: OnceLock<LogFormat> = OnceLock::new();

/// Queued lines are written at once past this size: under load, writes of this size, and a
/// buffer that stays small.
const FLUSH_AT: usize = 64 * 1024;

/// Installs the global subscriber. Keep the guard alive until exit: it writes what the calling
/// thread still has queued.
pub fn init(format: LogFormat) -> LogGuard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(Stderr);
    // A second init (tests starting several servers) keeps the first subscriber.
    let installed = match format {
        LogFormat::Text => builder.fmt_fields(EscapedFields).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    if installed.is_ok() && !(ansi && format == LogFormat::Text) {
        let _ = DIRECT.set(format);
    }
    LogGuard(())
}

/// Writes the calling thread's queued lines when dropped.
#[must_use = "lines queued on this thread are written when the guard is dropped"]
pub struct LogGuard(());

impl Drop for LogGuard {
    fn drop(&mut self) {
        flush();
    }
}

/// The format for hand-written lines, or `None` when they are to go through tracing (no
/// [`init`], or a terminal).
pub fn direct_format() -> Option<LogFormat> {
    DIRECT.get().copied()
}

/// A field value of a hand-written line, by how tracing would have recorded it.
#[derive(Clone, Copy)]
pub enum Value<'a> {
    /// Text from the client (`field = %value` in tracing): quoted in the text format only when
    /// it holds a space, `"`, `=`, `\` or a control character.
    Text(&'a str),
    /// One of our own words (`field = "allow"` in tracing): always quoted in the text format.
    Str(&'static str),
    /// Like [`Value::Text`], for a value that formats itself (a deny reason).
    Display(&'a dyn fmt::Display),
    U64(u64),
    Bool(bool),
}

/// A line's fields, in order: what [`Lines::push`] and [`queue`] write. A slice of
/// `(name, value)` pairs is one; a line whose fields are always the same (the decision line)
/// names them in code instead, each a [`FieldSink::field`] call with a literal name and a value
/// of a known kind. Inlined, each `name=` is then a few stores and each value's kind is known
/// where it is written, where a table of fields costs a copy call per name and a branch per
/// value (`benches/log_line.rs`, BENCHMARKS.md).
pub trait Fields {
    fn visit(&self, sink: &mut impl FieldSink);
}

/// Where [`Fields::visit`] writes: one format's field list.
pub trait FieldSink {
    fn field(&mut self, name: &'static str, value: Value<'_>);
}

impl Fields for [(&'static str, Value<'_>)] {
    fn visit(&self, sink: &mut impl FieldSink) {
        for (name, value) in self {
            sink.field(name, *value);
        }
    }
}

impl<const N: usize> Fields for [(&'static str, Value<'_>); N] {
    fn visit(&self, sink: &mut impl FieldSink) {
        self[..].visit(sink);
    }
}

/// The text format's fields: `name=value`, one space apart.
struct TextFields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl FieldSink for TextFields<'_> {
    #[inline(always)]
    fn field(&mut self, name: &'static str, value: Value<'_>) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b' ');
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(b'=');
        push_text_value(self.out, value);
    }
}

/// The JSON format's fields: `"name":value`, comma-separated.
struct JsonFields<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl FieldSink for JsonFields<'_> {
    #[inline(always)]
    fn field(&mut self, name: &'static str, value: Value<'_>) {
        if !std::mem::replace(&mut self.first, false) {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        push_json_value(self.out, value);
    }
}

/// Lines formatted by hand, with the date of the current second and the parts of the last
/// line that depend only on its format, level and target kept for the next line.
#[derive(Default)]
pub struct Lines {
    bytes: Vec<u8>,
    clock: Clock,
    frame: Frame,
    wall: WallClock,
}

/// The text around a line's timestamp and fields, for one format, level and target: in text,
/// `␣␣INFO target:␣` between the timestamp and the fields; in JSON, the keys between the
/// timestamp and the fields, and the target after them.
#[derive(Default)]
struct Frame {
    of: Option<(LogFormat, Level, usize, usize)>,
    before_fields: Vec<u8>,
    after_fields: Vec<u8>,
}

impl Frame {
    fn set(&mut self, format: LogFormat, level: Level, target: &str) {
        // A target is nearly always a `&'static str`, the same one line after line.
        let of = Some((format, level, target.as_ptr() as usize, target.len()));
        if self.of == of {
            return;
        }
        self.of = of;
        self.before_fields.clear();
        self.after_fields.clear();
        let (before, after) = (&mut self.before_fields, &mut self.after_fields);
        match format {
            LogFormat::Text => {
                before.push(b' ');
                before.extend_from_slice(level_text(level).as_bytes());
                before.push(b' ');
                before.extend_from_slice(target.as_bytes());
                before.extend_from_slice(b": ");
                after.push(b'\n');
            }
            LogFormat::Json => {
                before.extend_from_slice(b"\",\"level\":\"");
                before.extend_from_slice(level_text(level).trim_start().as_bytes());
                before.extend_from_slice(b"\",\"fields\":{");
                after.extend_from_slice(b"},\"target\":");
                push_json_str(after, target);
                after.extend_from_slice(b"}\n");
            }
        }
    }
}

impl Lines {
    /// Appends one line (with its `\n`) in `format`, as tracing-subscriber's text format (with
    /// [`EscapedFields`], no ANSI colours) or JSON format prints an event with these fields and
    /// no span. (The decision is never logged inside a span; nothing here would print one.)
    /// Field names are ours, plain identifiers, and are written as they are.
    pub fn push<F: Fields + ?Sized>(
        &mut self,
        format: LogFormat,
        time: SystemTime,
        level: Level,
        target: &str,
        fields: &F,
    ) {
        self.frame.set(format, level, target);
        let out = &mut self.bytes;
        match format {
            LogFormat::Text => {
                self.clock.write(out, time);
                out.extend_from_slice(&self.frame.before_fields);
                fields.visit(&mut TextFields { out, first: true });
            }
            LogFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                self.clock.write(out, time);
                out.extend_from_slice(&self.frame.before_fields);
                fields.visit(&mut JsonFields { out, first: true });
            }
        }
        out.extend_from_slice(&self.frame.after_fields);
    }

    /// The wall-clock time of `at`, a monotonic instant of the last second or so: see
    /// `WallClock`.
    pub fn wall_time(&mut self, at: Instant) -> SystemTime {
        self.wall.at(at)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Writes the lines to stderr and empties the buffer. A failed write (stderr closed) loses
    /// them: there is nowhere else to say so.
    fn write_out(&mut self) {
        if !self.bytes.is_empty() {
            let _ = std::io::stderr().lock().write_all(&self.bytes);
            self.bytes.clear();
        }
    }
}

/// tracing-subscriber's level column: five characters, right-aligned.
fn level_text(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => " INFO",
        Level::WARN => " WARN",
        Level::ERROR => "ERROR",
    }
}

/// Queues one hand-written line on this thread, to be written by [`flush`] (or at once, past
/// [`FLUSH_AT`]). `at` is when the event happened, a monotonic instant the caller read anyway
/// (the decision's): the line's timestamp is its wall-clock time. Returns true when the line is
/// the first of a batch: the caller is to arrange a [`flush`] once its current work is done.
pub fn queue<F: Fields + ?Sized>(
    format: LogFormat,
    level: Level,
    target: &str,
    at: Instant,
    fields: &F,
) -> bool {
    let queued = QUEUED.try_with(|q| {
        let Ok(mut q) = q.try_borrow_mut() else {
            return None;
        };
        let first = q.0.is_empty();
        let time = q.0.wall_time(at);
        q.0.push(format, time, level, target, fields);
        if q.0.len() >= FLUSH_AT {
            q.0.write_out();
            return Some(false);
        }
        Some(first)
    });
    match queued {
        Ok(Some(first)) => first,
        // The thread is exiting, or is inside a write already: write this line on its own.
        _ => {
            let mut lines = Lines::default();
            let time = lines.wall_time(at);
            lines.push(format, time, level, target, fields);
            lines.write_out();
            false
        }
    }
}

/// Writes the lines this thread has queued.
pub fn flush() {
    let _ = QUEUED.try_with(|q| {
        if let Ok(mut q) = q.try_borrow_mut() {
            q.0.write_out();
        }
    });
}

thread_local! {
    static QUEUED: RefCell<Queued> = RefCell::new(Queued(Lines::default()));
}

/// A thread's queued lines, written when the thread ends (a worker stopping with lines whose
/// flush never ran).
struct Queued(Lines);

impl Drop for Queued {
    fn drop(&mut self) {
        self.0.write_out();
    }
}

/// tracing-subscriber's writer: each event's line goes out at once, behind the lines the
/// thread had queued.
#[derive(Clone, Copy)]
struct Stderr;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Stderr {
        Stderr
    }
}

impl std::io::Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = QUEUED.try_with(|q| {
            let Ok(mut q) = q.try_borrow_mut() else {
                return false;
            };
            q.0.bytes.extend_from_slice(buf);
            q.0.write_out();
            true
        });
        if written != Ok(true) {
            let _ = std::io::stderr().lock().write_all(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        flush();
        Ok(())
    }
}

/// Wall-clock times of monotonic instants, from a pair of clock readings taken at most a second
/// before: a line's timestamp without a clock read of its own (~25 ns, a third of formatting the
/// line). Linux slews its monotonic clock as it slews the wall clock, so within the second the
/// two advance alike; a step of the wall clock (set by hand, or NTP's first sync) shows in the
/// timestamps within a second, as it shows in tracing's at once.
#[derive(Default)]
struct WallClock {
    anchor: Option<(Instant, SystemTime)>,
}

impl WallClock {
    const FOR: Duration = Duration::from_secs(1);

    fn at(&mut self, at: Instant) -> SystemTime {
        if let Some((mono, wall)) = self.anchor {
            if let Some(since) = at.checked_duration_since(mono).filter(|s| *s < Self::FOR) {
                return wall + since;
            }
        }
        let (mono, wall) = (Instant::now(), SystemTime::now());
        self.anchor = Some((mono, wall));
        // `at` is a moment ago (the caller read it before this); one ahead of the clock is
        // converted alike, the other way.
        match mono.checked_duration_since(at) {
            Some(ago) => wall.checked_sub(ago).unwrap_or(wall),
            None => wall + at.duration_since(mono),
        }
    }
}

/// The date and time of day of one second, `YYYY-MM-DDTHH:MM:SS`, computed once per second.
#[derive(Default)]
struct Clock {
    second: Option<u64>,
    date: [u8; 19],
}

impl Clock {
    /// tracing-subscriber's `SystemTime` timestamp: RFC 3339 in UTC with microseconds,
    /// `2026-12-01T08:15:02.123456Z`.
    fn write(&mut self, out: &mut Vec<u8>, time: SystemTime) {
        let since = match time.duration_since(UNIX_EPOCH) {
            Ok(since) if self.second == Some(since.as_secs()) => since,
            Ok(since) => match crate::time::civil_time(since.as_secs()) {
                Some(date) => {
                    self.date = date;
                    self.second = Some(since.as_secs());
                    since
                }
                None => return write_now_as_tracing_does(out),
            },
            Err(_) => return write_now_as_tracing_does(out),
        };
        let micros = since.subsec_micros();
        let mut stamp = [0; 27];
        stamp[..19].copy_from_slice(&self.date);
        stamp[19] = b'.';
        stamp[20..22].copy_from_slice(two_digits(micros / 10_000));
        stamp[22..24].copy_from_slice(two_digits(micros / 100 % 100));
        stamp[24..26].copy_from_slice(two_digits(micros % 100));
        stamp[26] = b'Z';
        out.extend_from_slice(&stamp);
    }
}

/// A clock before 1970 or past 9999: tracing-subscriber's own formatter, which handles those
/// years (for the current time; nothing here is worth more precision).
#[cold]
fn write_now_as_tracing_does(out: &mut Vec<u8>) {
    let mut text = String::new();
    let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(&mut text));
    out.extend_from_slice(text.as_bytes());
}

/// `n` in decimal, zero-padded to at least `width` digits.
#[inline]
fn push_digits(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut i = digits.len();
    while n >= 100 {
        i -= 2;
        digits[i..i + 2].copy_from_slice(two_digits((n % 100) as u32));
        n /= 100;
    }
    if n >= 10 {
        i -= 2;
        digits[i..i + 2].copy_from_slice(two_digits(n as u32));
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    let i = i.min(digits.len().saturating_sub(width));
    out.extend_from_slice(&digits[i..]);
}

/// The two decimal digits of `n` (below 100).
#[inline]
fn two_digits(n: u32) -> &'static [u8] {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let i = n as usize * 2;
    &PAIRS[i..i + 2]
}

/// A value in the text format, as [`EscapedFields`] writes it.
#[inline(always)]
fn push_text_value(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Text(s) => push_text_str(out, s, Quote::IfNeeded),
        Value::Str(s) => push_text_str(out, s, Quote::Always),
        Value::U64(n) => push_digits(out, n, 1),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Display(d) => {
            // Formatted in place, then quoted or escaped if it turns out to need it.
            let start = out.len();
            let _ = write!(VecWriter(out), "{d}");
            let text = std::str::from_utf8(&out[start..]).unwrap_or_default();
            let quoted = str_needs_quotes(text);
            if is_plain(text, quoted) {
                if quoted {
                    out.insert(start, b'"');
                    out.push(b'"');
                }
            } else {
                let raw = out.split_off(start);
                let text = String::from_utf8_lossy(&raw);
                push_text_str(
                    out,
                    &text,
                    if quoted {
                        Quote::Always
                    } else {
                        Quote::IfNeeded
                    },
                );
            }
        }
    }
}

fn push_text_str(out: &mut Vec<u8>, s: &str, quote: Quote) {
    // One pass over the bytes decides the usual cases: printable ASCII with nothing to escape,
    // bare or (for spaces and `=`) quoted.
    let class = s
        .bytes()
        .fold(0, |class, b| class | BYTE_CLASS[usize::from(b)]);
    let quoted = match quote {
        Quote::Always => true,
        Quote::IfNeeded if class & !SPECIAL == 0 => class != 0,
        Quote::IfNeeded => str_needs_quotes(s),
    };
    if quoted {
        out.push(b'"');
    }
    if class & !SPECIAL == 0 {
        out.extend_from_slice(s.as_bytes());
    } else {
        let _ = Escaper::new(&mut VecWriter(out), quoted).write_str(s);
    }
    if quoted {
        out.push(b'"');
    }
}

/// [`BYTE_CLASS`]: a space or `=`, which make a value quoted but are written as they are.
const SPECIAL: u8 = 1;
/// [`BYTE_CLASS`]: anything else that is not printable ASCII (a control character, `"`, `\`,
/// a byte of a non-ASCII character): the value goes through [`Escaper`] (and, but for
/// non-ASCII text, is quoted).
const OTHER: u8 = 2;

/// What each byte asks of a text value.
const BYTE_CLASS: [u8; 256] = {
    let mut class = [OTHER; 256];
    let mut b = 0x21;
    while b < 0x7f {
        class[b] = 0;
        b += 1;
    }
    class[b' ' as usize] = SPECIAL;
    class[b'=' as usize] = SPECIAL;
    class[b'"' as usize] = OTHER;
    class[b'\\' as usize] = OTHER;
    class
};

/// Whether `s` goes out as it is: printable ASCII, and inside quotes no `"` or `\`. (A bare
/// value holds neither, nor a space: those called for quotes.) Anything else goes through
/// [`Escaper`].
fn is_plain(s: &str, quoted: bool) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x7e) && !(quoted && matches!(b, b'"' | b'\\')))
}

/// [`needs_quotes`] for a string, with the ASCII case decided byte by byte.
fn str_needs_quotes(s: &str) -> bool {
    if s.is_ascii() {
        s.bytes()
            .any(|b| b <= b' ' || matches!(b, 0x7f | b'"' | b'=' | b'\\'))
    } else {
        s.chars().any(calls_for_quotes)
    }
}

#[inline(always)]
fn push_json_value(out: &mut Vec<u8>, value: Value<'_>) {
    match value {
        Value::Text(s) => push_json_str(out, s),
        Value::Str(s) => push_json_str(out, s),
        Value::U64(n) => push_digits(out, n, 1),
        Value::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
        Value::Display(d) => {
            let _ = serde::Serializer::collect_str(&mut serde_json::Serializer::new(out), d);
        }
    }
}

/// A JSON string, escaped by serde_json as tracing-subscriber's JSON format has it escaped.
fn push_json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(out, s);
}

/// `fmt::Write` into a byte buffer.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
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
pub(crate) mod tests {
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

    // -----------------------------------------------------------------------------------------
    // Hand-written lines
    // -----------------------------------------------------------------------------------------

    /// 2025-12-01T00:00:00.123456Z
    fn fixed_time() -> SystemTime {
        UNIX_EPOCH + std::time::Duration::from_micros(1_764_547_200_123_456)
    }

    struct FixedTimer;

    impl FormatTime for FixedTimer {
        fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> fmt::Result {
            w.write_str("2025-12-01T00:00:00.123456Z")
        }
    }

    /// The line tracing-subscriber prints for an event, in the subscriber `init` installs (but
    /// for the fixed timestamp).
    pub(crate) fn tracing_line(format: LogFormat, event: impl FnOnce()) -> String {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_timer(FixedTimer)
            .with_writer(move || Writer(Arc::clone(&sink)));
        let dispatch = match format {
            LogFormat::Text => tracing::Dispatch::new(builder.fmt_fields(EscapedFields).finish()),
            LogFormat::Json => tracing::Dispatch::new(builder.json().finish()),
        };
        tracing::dispatcher::with_default(&dispatch, event);
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text
    }

    /// Client text that tries every trick against a log line.
    pub(crate) fn hostile_samples() -> Vec<String> {
        samples()
    }

    pub(crate) fn hand_line<F: Fields + ?Sized>(format: LogFormat, fields: &F) -> String {
        let mut lines = Lines::default();
        lines.push(
            format,
            fixed_time(),
            Level::INFO,
            "mtx_auth::decision",
            fields,
        );
        String::from_utf8(lines.as_bytes().to_vec()).unwrap()
    }

    /// One event with every kind of value, each client-controlled one set to `text`, written
    /// both ways.
    fn both_ways(format: LogFormat, text: &str) -> (String, String) {
        struct Shown<'a>(&'a str);
        impl fmt::Display for Shown<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // In two pieces, as a Display impl may write.
                let mut mid = self.0.len() / 2;
                while !self.0.is_char_boundary(mid) {
                    mid -= 1;
                }
                let (a, b) = self.0.split_at(mid);
                f.write_str(a)?;
                f.write_str(b)
            }
        }
        let shown = Shown(text);
        let want = tracing_line(format, || {
            tracing::info!(
                target: "mtx_auth::decision",
                action = %text,
                user = %text,
                outcome = "allow",
                source = "users",
                rule_line = Some(12usize),
                cached = true,
                reason = %shown,
                latency_us = 31u64,
            )
        });
        let got = hand_line(
            format,
            &[
                ("action", Value::Text(text)),
                ("user", Value::Text(text)),
                ("outcome", Value::Str("allow")),
                ("source", Value::Str("users")),
                ("rule_line", Value::U64(12)),
                ("cached", Value::Bool(true)),
                ("reason", Value::Display(&shown)),
                ("latency_us", Value::U64(31)),
            ],
        );
        (got, want)
    }

    fn samples() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "viewer",
            "cam/1",
            "10.0.0.1",
            "two words",
            "a=b",
            r#"a"b\c"#,
            "bob outcome=allow user=alice",
            "x\n2026-01-01T00:00:00Z  INFO mtx_auth::decision: user=admin outcome=\"allow\"",
            "\x1b[2J\x07\0",
            "del\x7f c1\u{85}\u{9b}",
            "ls\u{2028}ps\u{2029}",
            "admin\u{202e}nimda\u{2066}x\u{2069}",
            "Zoë 東京 🎥",
            "Zoë",
            "nbsp\u{a0}x",
            "\t\r",
            "\\n",
        ]
        .map(String::from)
        .to_vec();
        v.push("x".repeat(300));
        v
    }

    #[test]
    fn hand_written_lines_read_as_tracing_prints_them() {
        for format in [LogFormat::Text, LogFormat::Json] {
            for text in samples() {
                let (got, want) = both_ways(format, &text);
                assert_eq!(got, want, "{format:?} {text:?}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn hand_written_lines_match_tracing_for_any_text(text in proptest::prelude::any::<String>()) {
            for format in [LogFormat::Text, LogFormat::Json] {
                let (got, want) = both_ways(format, &text);
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn an_ordinary_decision_line() {
        let fields = [
            ("action", Value::Text("read")),
            ("path", Value::Text("cam/1")),
            ("user", Value::Text("viewer")),
            ("outcome", Value::Str("allow")),
            ("cached", Value::Bool(false)),
            ("latency_us", Value::U64(7)),
        ];
        assert_eq!(
            hand_line(LogFormat::Text, &fields),
            "2025-12-01T00:00:00.123456Z  INFO mtx_auth::decision: action=read path=cam/1 \
             user=viewer outcome=\"allow\" cached=false latency_us=7\n"
        );
        assert_eq!(
            hand_line(LogFormat::Json, &fields),
            "{\"timestamp\":\"2025-12-01T00:00:00.123456Z\",\"level\":\"INFO\",\"fields\":\
             {\"action\":\"read\",\"path\":\"cam/1\",\"user\":\"viewer\",\"outcome\":\"allow\",\
             \"cached\":false,\"latency_us\":7},\"target\":\"mtx_auth::decision\"}\n"
        );
    }

    #[test]
    fn dates_and_times() {
        let civil =
            |secs| String::from_utf8(crate::time::civil_time(secs).unwrap().to_vec()).unwrap();
        assert_eq!(civil(0), "1970-01-01T00:00:00");
        assert_eq!(civil(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(civil(1_764_547_200), "2025-12-01T00:00:00");
        assert_eq!(civil(1_798_761_599), "2026-12-31T23:59:59");
        assert_eq!(civil(4_102_444_799), "2099-12-31T23:59:59");
        assert_eq!(civil(253_402_300_799), "9999-12-31T23:59:59");
        assert_eq!(crate::time::civil_time(253_402_300_800), None);

        let mut clock = Clock::default();
        let mut out = Vec::new();
        clock.write(
            &mut out,
            UNIX_EPOCH + std::time::Duration::from_micros(1_000_007),
        );
        clock.write(
            &mut out,
            UNIX_EPOCH + std::time::Duration::from_micros(1_999_999),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1970-01-01T00:00:01.000007Z1970-01-01T00:00:01.999999Z"
        );
    }

    #[test]
    fn the_clock_agrees_with_tracing_subscribers() {
        // Up to the second (the two read the clock at different instants; retried across a
        // second boundary).
        for _ in 0..10 {
            let mut theirs = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut tracing_subscriber::fmt::format::Writer::new(
                    &mut theirs,
                ))
                .unwrap();
            let mut ours = Vec::new();
            Clock::default().write(&mut ours, SystemTime::now());
            let ours = String::from_utf8(ours).unwrap();
            assert_eq!(ours.len(), theirs.len(), "{ours} {theirs}");
            if ours[..19] == theirs[..19] {
                return;
            }
        }
        panic!("the two clocks never agreed on the second");
    }

    #[test]
    fn the_first_queued_line_of_a_batch_asks_for_a_flush() {
        // (Nothing is written: the queue is emptied by hand, not onto the test's stderr.)
        let fields = [("user", Value::Text("a"))];
        let drop_queued = || QUEUED.with(|q| q.borrow_mut().0.clear());
        drop_queued();
        let now = Instant::now;
        assert!(queue(LogFormat::Text, Level::INFO, "t", now(), &fields));
        assert!(!queue(LogFormat::Text, Level::INFO, "t", now(), &fields));
        assert!(!queue(LogFormat::Json, Level::INFO, "t", now(), &fields));
        assert_eq!(
            QUEUED.with(|q| q
                .borrow()
                .0
                .as_bytes()
                .iter()
                .filter(|b| **b == b'\n')
                .count()),
            3
        );
        drop_queued();
        assert!(queue(LogFormat::Text, Level::INFO, "t", now(), &fields));
        drop_queued();
    }

    #[test]
    fn a_lines_time_is_its_instants_wall_clock_time() {
        let mut wall = WallClock::default();
        let margin = Duration::from_millis(50);
        let within = |t: SystemTime, from: SystemTime, to: SystemTime| {
            assert!(
                t + margin >= from && t <= to + margin,
                "{t:?} not in {from:?}..{to:?}"
            );
        };
        // Sets the anchor, then reads from it: each lands between two reads of the wall clock.
        for _ in 0..3 {
            let before = SystemTime::now();
            let t = wall.at(Instant::now());
            within(t, before, SystemTime::now());
        }
        let anchor = wall.anchor.unwrap();
        let later = anchor.0 + Duration::from_millis(300);
        assert_eq!(wall.at(later), anchor.1 + Duration::from_millis(300));
        assert_eq!(
            wall.anchor.unwrap(),
            anchor,
            "read from the anchor within its second"
        );
        // An instant before the anchor, or past its second, takes a new anchor and is still
        // its own wall-clock time.
        let earlier = anchor.0.checked_sub(Duration::from_millis(700)).unwrap();
        let t = wall.at(earlier);
        assert_ne!(wall.anchor.unwrap(), anchor);
        within(t + Duration::from_millis(700), anchor.1, SystemTime::now());
        let far = wall.anchor.unwrap().0 + Duration::from_secs(5);
        let before = SystemTime::now();
        let t = wall.at(far);
        within(
            t - Duration::from_secs(5),
            before - Duration::from_secs(1),
            SystemTime::now(),
        );
    }
}
