//! Reading one TOML table with every problem located: the part of the config that sources use
//! to read their own sections.
//!
//! The file is parsed once into a `toml_edit` document, which keeps the position of every key
//! and value. A section is read through a [`Table`]: each key taken is marked, a value of the
//! wrong type or out of range becomes a located [`Problem`], and [`Table::finish`] reports the
//! keys nobody took. So a source declares its keys by reading them, in its own file, and there
//! is no list of which key belongs to which section to keep in step.
//!
//! Imports nothing of the crate but the leaves (`permission`), so a source's module can depend
//! on it without the config depending back on the source.

use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Duration;

use ipnet::IpNet;
use toml_edit::{Item, TableLike, Value};

use crate::permission::{Action, PathInterner, PathMatcher, Permission};

/// One problem in a config file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.col, self.message
        )
    }
}

/// Everything wrong with a config file; its `Display` is one `FILE:LINE:COL: message` per line.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// What a secret given as `*_file` or `*_env` that cannot be read is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// An error: `serve` cannot run without it (and `check --strict` says so).
    Required,
    /// A warning, and everything else is checked: `check` on a machine that is not where the
    /// service runs (a laptop checking a Kubernetes ConfigMap whose Secret it never sees).
    MayBeAbsent,
}

/// A secret read from the config. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// Whether this stands in for a secret `check` could not read (never served).
    pub fn is_absent(&self) -> bool {
        self.0 == ABSENT
    }
}

/// Stands in for a secret that `check` could not read (`Secrets::MayBeAbsent`); such a config
/// is only ever checked, never served.
const ABSENT: &str = "(absent where checked)";

/// Collects problems and turns byte spans into line and column numbers. Shared by every
/// [`Table`] of one file (hence the interior mutability: tables nest).
pub struct Problems<'a> {
    file: &'a str,
    text: &'a str,
    /// Byte offset of the start of each line: a config of 100,000 users asks for 100,000
    /// positions, so each must not rescan the text.
    line_starts: Vec<usize>,
    list: RefCell<Vec<Problem>>,
    warnings: RefCell<Vec<Problem>>,
    secrets: Secrets,
    /// Regexes of permission paths, compiled once per load however many permissions share
    /// one (100,000 users drawing on 97 patterns).
    paths: RefCell<PathInterner>,
}

impl<'a> Problems<'a> {
    pub fn new(file: &'a str, text: &'a str, secrets: Secrets) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Problems {
            file,
            text,
            line_starts,
            list: RefCell::default(),
            warnings: RefCell::default(),
            secrets,
            paths: RefCell::default(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let col = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, col + 1)
    }

    pub fn push(&self, span: Range<usize>, message: String) {
        let problem = self.problem(span, message);
        self.list.borrow_mut().push(problem);
    }

    /// How many problems so far: a builder compares before and after to know whether what it
    /// read was sound.
    pub fn count(&self) -> usize {
        self.list.borrow().len()
    }

    /// A secret that cannot be read here: an error, or with `Secrets::MayBeAbsent` a warning.
    /// Returns whether it was only a warning.
    fn absent_secret(&self, span: Range<usize>, message: String) -> bool {
        let problem = self.problem(span, message);
        match self.secrets {
            Secrets::Required => {
                self.list.borrow_mut().push(problem);
                false
            }
            Secrets::MayBeAbsent => {
                self.warnings.borrow_mut().push(problem);
                true
            }
        }
    }

    fn problem(&self, span: Range<usize>, message: String) -> Problem {
        let (line, col) = self.line_col(span.start);
        Problem {
            file: self.file.to_owned(),
            line,
            col,
            message,
        }
    }

    /// The problems, or `Ok` with the warnings when there is none.
    pub fn finish(self) -> Result<Vec<Problem>, ConfigError> {
        let problems = self.list.into_inner();
        if problems.is_empty() {
            Ok(self.warnings.into_inner())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// A value with the byte range it came from.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub value: T,
    pub span: Range<usize>,
}

/// One TOML table (a `[section]`, an inline table or one entry of an array of tables) being
/// read. Every getter marks its key as known; `finish` reports the others.
pub struct Table<'a> {
    table: &'a dyn TableLike,
    span: Range<usize>,
    errs: &'a Problems<'a>,
    taken: Vec<&'a str>,
    /// Where the document this table is in starts in the file: a `[[users]]` entry is parsed
    /// on its own (`config::split`), so its positions are relative to the entry.
    base: usize,
}

impl<'a> Table<'a> {
    pub fn new(table: &'a dyn TableLike, span: Range<usize>, errs: &'a Problems<'a>) -> Self {
        Table::at(table, span, errs, 0)
    }

    /// A table of a document that starts at byte `base` of the file; `span` is relative to it.
    pub fn at(
        table: &'a dyn TableLike,
        span: Range<usize>,
        errs: &'a Problems<'a>,
        base: usize,
    ) -> Self {
        Table {
            table,
            span: span.start + base..span.end + base,
            errs,
            taken: Vec::new(),
            base,
        }
    }

    /// A position in this table's document, as a position in the file.
    fn abs(&self, span: Option<Range<usize>>) -> Option<Range<usize>> {
        span.map(|s| s.start + self.base..s.end + self.base)
    }

    /// A table inside this one: same document, same base. Without a position of its own, it
    /// is placed at `key`.
    fn child(&self, table: &'a dyn TableLike, span: Option<Range<usize>>, key: &str) -> Self {
        let span = span.unwrap_or_else(|| {
            let s = self.span_of(key);
            s.start - self.base..s.end - self.base
        });
        Table::at(table, span, self.errs, self.base)
    }

    /// Where the table starts: its `[header]`, or its `{`.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    pub fn errs(&self) -> &'a Problems<'a> {
        self.errs
    }

    /// The 1-based line the table starts on, for `explain`.
    pub fn line(&self) -> usize {
        self.errs.line_col(self.span.start).0
    }

    /// Reports `message` at the table's own position.
    pub fn problem(&self, message: String) {
        self.errs.push(self.span(), message);
    }

    /// The item under `key`, marked as known.
    pub fn item(&mut self, key: &'a str) -> Option<&'a Item> {
        self.taken.push(key);
        self.table.get(key).filter(|i| !i.is_none())
    }

    /// The position of `key`'s value (its key when the value has none).
    pub fn span_of(&self, key: &str) -> Range<usize> {
        match self.table.get_key_value(key) {
            Some((k, item)) => self
                .abs(item.span().or_else(|| k.span()))
                .unwrap_or(self.span()),
            None => self.span(),
        }
    }

    /// Whether `key` is present (without marking it).
    pub fn has(&self, key: &str) -> bool {
        self.table.get(key).is_some_and(|i| !i.is_none())
    }

    fn wrong_type(&self, key: &str, expected: &str) {
        self.errs
            .push(self.span_of(key), format!("{key}: expected {expected}"));
    }

    pub fn string(&mut self, key: &'a str) -> Option<Spanned<String>> {
        let item = self.item(key)?;
        match item.as_str() {
            Some(s) => Some(Spanned {
                value: s.to_owned(),
                span: self.span_of(key),
            }),
            None => {
                self.wrong_type(key, "a string");
                None
            }
        }
    }

    pub fn bool(&mut self, key: &'a str) -> Option<bool> {
        let item = self.item(key)?;
        let b = item.as_bool();
        if b.is_none() {
            self.wrong_type(key, "true or false");
        }
        b
    }

    /// An integer within `min..=max`.
    pub fn int(&mut self, key: &'a str, min: i64, max: i64) -> Option<u64> {
        let item = self.item(key)?;
        let Some(n) = item.as_integer() else {
            self.wrong_type(key, "an integer");
            return None;
        };
        if (min..=max).contains(&n) {
            Some(n as u64)
        } else {
            self.errs.push(
                self.span_of(key),
                format!("{key} must be between {min} and {max}"),
            );
            None
        }
    }

    /// A number of seconds within `min..=max`.
    pub fn secs(&mut self, key: &'a str, min: i64, max: i64) -> Option<Duration> {
        self.int(key, min, max).map(Duration::from_secs)
    }

    /// An `http` or `https` URL.
    pub fn url(&mut self, key: &'a str) -> Option<String> {
        let s = self.string(key)?;
        let ok = reqwest::Url::parse(&s.value)
            .is_ok_and(|parsed| matches!(parsed.scheme(), "http" | "https"));
        if !ok {
            self.errs
                .push(s.span, format!("{key}: not an http or https URL"));
            return None;
        }
        Some(s.value)
    }

    /// An array of strings, each with its position.
    pub fn strings(&mut self, key: &'a str) -> Option<Vec<Spanned<String>>> {
        let item = self.item(key)?;
        let Some(array) = item.as_array() else {
            self.wrong_type(key, "an array of strings");
            return None;
        };
        let mut out = Vec::with_capacity(array.len());
        for v in array {
            match v.as_str() {
                Some(s) => out.push(Spanned {
                    value: s.to_owned(),
                    span: self.abs(v.span()).unwrap_or(self.span_of(key)),
                }),
                None => self.errs.push(
                    self.abs(v.span()).unwrap_or(self.span_of(key)),
                    format!("{key}: expected an array of strings"),
                ),
            }
        }
        Some(out)
    }

    /// An array of tables (`[[key]]`) or of inline tables (`key = [{ … }]`).
    pub fn tables(&mut self, key: &'a str) -> Option<Vec<Table<'a>>> {
        let item = self.item(key)?;
        let errs = self.errs;
        if let Some(list) = item.as_array_of_tables() {
            return Some(list.iter().map(|t| self.child(t, t.span(), key)).collect());
        }
        let Some(array) = item.as_array() else {
            self.wrong_type(key, "an array of tables");
            return None;
        };
        let mut out = Vec::with_capacity(array.len());
        for v in array {
            match v {
                Value::InlineTable(t) => out.push(self.child(t, t.span(), key)),
                _ => errs.push(
                    self.abs(v.span()).unwrap_or(self.span_of(key)),
                    format!("{key}: expected an array of tables"),
                ),
            }
        }
        Some(out)
    }

    /// A table under `key` (`[section]` or an inline table).
    pub fn table(&mut self, key: &'a str) -> Option<Table<'a>> {
        let item = self.item(key)?;
        match item.as_table_like() {
            Some(t) => {
                let span = item
                    .as_table()
                    .and_then(|t| t.span())
                    .or_else(|| item.span());
                Some(self.child(t, span, key))
            }
            None => {
                self.wrong_type(key, "a table");
                None
            }
        }
    }

    /// `key` as `permissions` are written everywhere: `[{ action, path }]`.
    pub fn permissions(&mut self, key: &'a str) -> Option<Vec<Permission>> {
        let tables = self.tables(key)?;
        Some(tables.into_iter().filter_map(read_permission).collect())
    }

    /// CIDRs or single addresses, for `ips` and `local_networks`.
    pub fn networks(&mut self, key: &'a str) -> Vec<IpNet> {
        let mut out = Vec::new();
        for s in self.strings(key).unwrap_or_default() {
            match parse_net(&s.value) {
                Some(net) => out.push(net),
                None => self.errs.push(
                    s.span,
                    format!("{key}: {:?} is not an IP address or CIDR", s.value),
                ),
            }
        }
        out
    }

    /// A secret given inline (`KEY`), in a file (`KEY_file`, trailing newline removed) or in an
    /// environment variable (`KEY_env`): at most one of the three. `Some(None)`: none given;
    /// `None`: a problem was reported.
    pub fn secret(
        &mut self,
        key: &'a str,
        file_key: &'a str,
        env_key: &'a str,
    ) -> Option<Option<Secret>> {
        let inline = self.string(key);
        let file = self.string(file_key);
        let env = self.string(env_key);
        let given: Vec<_> = [&inline, &file, &env].into_iter().flatten().collect();
        if given.len() > 1 {
            self.errs.push(
                given[1].span.clone(),
                format!("set one of {key}, {file_key} and {env_key}"),
            );
            return None;
        }
        let (value, span) = if let Some(v) = inline {
            (v.value, v.span)
        } else if let Some(path) = file {
            match std::fs::read_to_string(&path.value) {
                Ok(text) => (text.trim_end_matches(['\n', '\r']).to_owned(), path.span),
                Err(e) => {
                    let message = format!("{file_key}: cannot read {:?}: {e}", path.value);
                    return self
                        .errs
                        .absent_secret(path.span, message)
                        .then(|| Some(Secret(ABSENT.to_owned())));
                }
            }
        } else if let Some(var) = env {
            match std::env::var(&var.value) {
                Ok(v) => (v, var.span),
                Err(_) => {
                    let message =
                        format!("{env_key}: environment variable {:?} is not set", var.value);
                    return self
                        .errs
                        .absent_secret(var.span, message)
                        .then(|| Some(Secret(ABSENT.to_owned())));
                }
            }
        } else {
            return Some(None);
        };
        if value.is_empty() {
            self.errs.push(span, format!("{key}: must not be empty"));
            return None;
        }
        Some(Some(Secret(value)))
    }

    /// Reports every key no getter asked for, with `message(key)`, at its value: the key is
    /// a real one, only not this section's.
    pub fn finish_with(self, message: impl Fn(&str) -> String) {
        self.report_unread(true, message);
    }

    /// Reports every key no getter asked for as an unknown field, at the key.
    pub fn finish(self) {
        self.report_unread(false, |key| format!("unknown field `{key}`"));
    }

    fn report_unread(self, at_value: bool, message: impl Fn(&str) -> String) {
        for (key, item) in self.table.iter() {
            if item.is_none() || self.taken.contains(&key) {
                continue;
            }
            let key_span = self.table.get_key_value(key).and_then(|(k, _)| k.span());
            let span = if at_value {
                item.span().or(key_span)
            } else {
                key_span
            };
            let span = self.abs(span);
            self.errs.push(span.unwrap_or(self.span()), message(key));
        }
    }
}

/// `{ action, path }`: a MediaMTX permission.
fn read_permission(mut t: Table<'_>) -> Option<Permission> {
    let errs = t.errs;
    let action = match t.string("action") {
        Some(a) => match a.value.parse::<Action>() {
            Ok(action) => Some(action),
            Err(e) => {
                errs.push(a.span, format!("action {:?}: {e}", a.value));
                None
            }
        },
        None => {
            if !t.has("action") {
                t.problem("missing field `action`".into());
            }
            None
        }
    };
    let path = match t.string("path") {
        None if t.has("path") => None,
        None => Some(PathMatcher::Any),
        Some(p) => match errs.paths.borrow_mut().parse(&p.value) {
            Ok(m) => Some(m),
            Err(e) => {
                let msg = e.to_string().replace('\n', " ");
                let msg = msg.split_whitespace().collect::<Vec<_>>().join(" ");
                errs.push(
                    p.span,
                    format!("path: regular expression does not compile: {msg}"),
                );
                None
            }
        },
    };
    t.finish();
    Some(Permission {
        action: action?,
        path: path?,
    })
}

/// A CIDR, or a single address as a /32 or /128 network; an IPv4-mapped one as the IPv4
/// network it maps (`crate::source::users::canonical_net`), for `ips` and `local_networks` alike.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let net = match s.parse::<IpNet>() {
        Ok(net) => net,
        Err(_) => IpNet::from(s.parse::<IpAddr>().ok()?),
    };
    Some(crate::source::users::canonical_net(net))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters() {
        let p = Problems::new("t", "ab\ncé x\n", Secrets::Required);
        assert_eq!(p.line_col(0), (1, 1));
        assert_eq!(p.line_col(3), (2, 1));
        assert_eq!(p.line_col(7), (2, 4));
        assert_eq!(p.line_col(9), (3, 1));
        assert_eq!(
            Problems::new("t", "", Secrets::Required).line_col(0),
            (1, 1)
        );
    }
}
