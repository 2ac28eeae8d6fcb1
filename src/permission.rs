//! Actions and permissions, with MediaMTX's matching rules.
//!
//! A permission is `{action, path}`. For publish, read and playback an empty path matches every
//! path, a path starting with `~` is an unanchored regular expression, and anything else must be
//! equal. api, metrics and pprof have no path: their permissions ignore it. Regexes compile at
//! config load, so matching on the hot path cannot fail.
//!
//! MediaMTX's regexes are Go's (RE2), whose `\d`, `\w`, `\s` and `\b` are ASCII only; the
//! `regex` crate's are Unicode, so `~^cam\d$` would also grant `cam١` (an Arabic-Indic digit).
//! `ascii_classes` rewrites a pattern to RE2's meaning before it compiles.
//!
//! A compiled regex costs tens of kilobytes and tens of microseconds, and large configs repeat a
//! handful of patterns across thousands of users; `PathInterner` compiles each distinct pattern
//! once per config load and the permissions share it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use regex::Regex;

/// What a client wants to do; the `action` field of MediaMTX's request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    Publish,
    Read,
    Playback,
    Api,
    Metrics,
    Pprof,
}

impl Action {
    pub const ALL: [Action; 6] = [
        Action::Publish,
        Action::Read,
        Action::Playback,
        Action::Api,
        Action::Metrics,
        Action::Pprof,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Read => "read",
            Action::Playback => "playback",
            Action::Api => "api",
            Action::Metrics => "metrics",
            Action::Pprof => "pprof",
        }
    }

    /// api, metrics and pprof are not about a path; MediaMTX ignores the path for them.
    pub fn has_path(self) -> bool {
        matches!(self, Action::Publish | Action::Read | Action::Playback)
    }
}

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(UnknownAction)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown action (expected one of publish, read, playback, api, metrics, pprof)")]
pub struct UnknownAction;

/// The path part of a permission.
#[derive(Clone, Debug)]
pub enum PathMatcher {
    /// Empty path in the config: every path.
    Any,
    Exact(Box<str>),
    /// `~regex`, unanchored as in MediaMTX (Go's `MatchString`). Shared: every permission with
    /// the same pattern in one config points at the same compiled regex (`PathInterner`).
    Regex(Arc<PathRegex>),
}

/// A compiled `~regex` path and the pattern it was written as.
#[derive(Debug)]
pub struct PathRegex {
    /// Compiled from `ascii_classes(pattern)`.
    re: Regex,
    /// The pattern as written (without the `~`): what `explain` and logs show.
    pattern: Box<str>,
}

impl PathRegex {
    /// Compiles a pattern written after `~`.
    fn compile(pattern: &str) -> Result<Self, Box<regex::Error>> {
        match Regex::new(&ascii_classes(pattern)) {
            Ok(re) => Ok(PathRegex {
                re,
                pattern: pattern.into(),
            }),
            // Reported against the pattern as written whenever that fails too, so the
            // message quotes what the operator wrote, not our rewrite of it.
            Err(e) => Err(Box::new(Regex::new(pattern).err().unwrap_or(e))),
        }
    }

    pub fn is_match(&self, path: &str) -> bool {
        self.re.is_match(path)
    }

    /// The pattern as written, without the `~`.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl PathMatcher {
    /// Parses a path on its own, compiling a regex every time: for paths that arrive one at a
    /// time (a token's claim). A config load goes through `PathInterner::parse`.
    pub fn parse(path: &str) -> Result<Self, Box<regex::Error>> {
        PathMatcher::parse_with(path, |pattern| PathRegex::compile(pattern).map(Arc::new))
    }

    /// MediaMTX's reading of a path: empty is any path, `~` starts a regex (which `regex` turns
    /// from the pattern into a compiled one), anything else is exact.
    fn parse_with(
        path: &str,
        regex: impl FnOnce(&str) -> Result<Arc<PathRegex>, Box<regex::Error>>,
    ) -> Result<Self, Box<regex::Error>> {
        if path.is_empty() {
            Ok(PathMatcher::Any)
        } else if let Some(pattern) = path.strip_prefix('~') {
            regex(pattern).map(PathMatcher::Regex)
        } else {
            Ok(PathMatcher::Exact(path.into()))
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        self.borrowed().matches(path)
    }

    /// The path as the config writes it: empty for any path, `~` before a regex.
    pub fn written(&self) -> String {
        match self {
            PathMatcher::Any => String::new(),
            PathMatcher::Exact(p) => p.to_string(),
            PathMatcher::Regex(re) => format!("~{}", re.pattern),
        }
    }

    /// The same matcher without ownership, as `source::users` keeps its paths.
    pub fn borrowed(&self) -> PathRef<'_> {
        match self {
            PathMatcher::Any => PathRef::Any,
            PathMatcher::Exact(p) => PathRef::Exact(p.as_bytes()),
            PathMatcher::Regex(re) => PathRef::Regex(re),
        }
    }
}

impl fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatcher::Any => f.write_str("any path"),
            PathMatcher::Exact(p) => write!(f, "{p:?}"),
            PathMatcher::Regex(re) => write!(f, "~{}", re.pattern),
        }
    }
}

/// A permission's path wherever it is stored: the one place MediaMTX's path rule is written
/// down, for `PathMatcher` and for the users' compact copies alike.
#[derive(Clone, Copy, Debug)]
pub enum PathRef<'a> {
    Any,
    /// Compared as bytes: a request's path equals it or not, whatever its encoding.
    Exact(&'a [u8]),
    Regex(&'a PathRegex),
}

impl PathRef<'_> {
    pub fn matches(self, path: &str) -> bool {
        match self {
            PathRef::Any => true,
            PathRef::Exact(p) => p == path.as_bytes(),
            PathRef::Regex(re) => re.is_match(path),
        }
    }
}

/// Compiles each distinct `~regex` once for one config load: a permission whose pattern was
/// seen before gets the same `Arc<PathRegex>`. Sharing is sound because a compiled regex is
/// immutable and `Regex` is safe to use from many threads; its scratch space lives in a pool
/// that grows with the threads using it, not with the permissions holding it.
#[derive(Default)]
pub struct PathInterner {
    compiled: HashMap<Box<str>, Arc<PathRegex>>,
}

impl PathInterner {
    /// Parses a permission's path as `PathMatcher::parse` does, reusing a regex compiled for
    /// the same pattern earlier in this load. A pattern that fails to compile is not kept, so
    /// each place it is written is reported.
    pub fn parse(&mut self, path: &str) -> Result<PathMatcher, Box<regex::Error>> {
        PathMatcher::parse_with(path, |pattern| {
            if let Some(re) = self.compiled.get(pattern) {
                return Ok(Arc::clone(re));
            }
            let re = Arc::new(PathRegex::compile(pattern)?);
            self.compiled.insert(pattern.into(), Arc::clone(&re));
            Ok(re)
        })
    }
}

/// RE2's `\d`, `\w` and `\s`, spelled for the `regex` crate (whose own are Unicode). RE2's `\s`
/// is `[\t\n\f\r ]`, without `\v`; the space is written `\x20` so that it survives the `x` flag.
const ASCII_CLASSES: [(char, &str); 6] = [
    ('d', "[0-9]"),
    ('D', "[^0-9]"),
    ('w', "[0-9A-Za-z_]"),
    ('W', "[^0-9A-Za-z_]"),
    ('s', "[\\t\\n\\f\\r\\x20]"),
    ('S', "[^\\t\\n\\f\\r\\x20]"),
];

/// Rewrites a MediaMTX (RE2) pattern so that the `regex` crate matches what Go matches:
/// `\d \D \w \W \s \S` become ASCII classes (nested classes inside a bracket class, which
/// the `regex` crate allows), `\b` and `\B` outside bracket classes become ASCII word boundaries
/// `(?-u:\b)` and `(?-u:\B)`. Everything else is copied as it is. The scan follows the
/// `regex` crate's syntax: a backslash escapes the next character (`\\d` is a backslash then
/// `d`); a bracket class may start with `^` and then a literal `]` (`[]a]`, `[^]a]`); inside
/// one, `[:name:]` is an ASCII class and another `[` opens a nested class.
pub fn ascii_classes(pattern: &str) -> Cow<'_, str> {
    if !pattern.contains('\\') {
        return Cow::Borrowed(pattern);
    }
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut rest = pattern;
    // How many bracket classes are open here.
    let mut depth = 0usize;
    while let Some(c) = rest.chars().next() {
        rest = &rest[c.len_utf8()..];
        match c {
            '\\' => {
                let Some(e) = rest.chars().next() else {
                    out.push(c); // a trailing backslash: the compiler reports it
                    break;
                };
                rest = &rest[e.len_utf8()..];
                if let Some((_, ascii)) = ASCII_CLASSES.iter().find(|(k, _)| *k == e) {
                    out.push_str(ascii);
                } else if matches!(e, 'b' | 'B') && depth == 0 {
                    out.push_str("(?-u:\\");
                    out.push(e);
                    out.push(')');
                } else {
                    out.push(c);
                    out.push(e);
                }
            }
            '[' if depth > 0 && posix_class_len(rest) > 0 => {
                let len = posix_class_len(rest);
                out.push('[');
                out.push_str(&rest[..len]);
                rest = &rest[len..];
            }
            '[' => {
                depth += 1;
                out.push('[');
                // A class may start with `^`, then `]` as a literal.
                if let Some(r) = rest.strip_prefix('^') {
                    out.push('^');
                    rest = r;
                }
                if let Some(r) = rest.strip_prefix(']') {
                    out.push(']');
                    rest = r;
                }
            }
            ']' if depth > 0 => {
                depth -= 1;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// After a `[` inside a bracket class: the length of `:name:]` or `:^name:]` (an ASCII class
/// such as `[:digit:]`) at the start of `rest`, or 0.
fn posix_class_len(rest: &str) -> usize {
    let Some(body) = rest.strip_prefix(':') else {
        return 0;
    };
    let body = body.strip_prefix('^').unwrap_or(body);
    let name = body.bytes().take_while(u8::is_ascii_lowercase).count();
    if name > 0 && body[name..].starts_with(":]") {
        rest.len() - body.len() + name + 2
    } else {
        0
    }
}

/// One `{action, path}` grant.
#[derive(Clone, Debug)]
pub struct Permission {
    pub action: Action,
    pub path: PathMatcher,
}

impl Permission {
    pub fn matches(&self, action: Action, path: &str) -> bool {
        grants(self.action, self.path.borrowed(), action, path)
    }
}

/// MediaMTX's rule for one permission: the action must be the one held, and for actions about a
/// path (publish, read, playback) the path must match; api, metrics and pprof ignore the path.
pub fn grants(held: Action, held_path: PathRef<'_>, action: Action, path: &str) -> bool {
    held == action && (!action.has_path() || held_path.matches(path))
}

/// True when one of `perms` grants `action` on `path`.
pub fn any_matches(perms: &[Permission], action: Action, path: &str) -> bool {
    perms.iter().any(|p| p.matches(action, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perm(action: Action, path: &str) -> Permission {
        Permission {
            action,
            path: PathMatcher::parse(path).unwrap(),
        }
    }

    #[test]
    fn empty_path_is_any_path() {
        assert!(perm(Action::Read, "").matches(Action::Read, "cam/1"));
        assert!(perm(Action::Read, "").matches(Action::Read, ""));
        assert!(!perm(Action::Read, "").matches(Action::Publish, "cam/1"));
    }

    #[test]
    fn exact_path_and_no_wildcards() {
        assert!(perm(Action::Publish, "cam").matches(Action::Publish, "cam"));
        assert!(!perm(Action::Publish, "cam").matches(Action::Publish, "cam/1"));
        assert!(!perm(Action::Publish, "cam*").matches(Action::Publish, "cam1"));
        assert!(perm(Action::Publish, "cam*").matches(Action::Publish, "cam*"));
    }

    #[test]
    fn regex_is_unanchored() {
        let p = perm(Action::Read, "~cam");
        assert!(p.matches(Action::Read, "cam/1"));
        assert!(p.matches(Action::Read, "mycam"));
        let anchored = perm(Action::Read, "~^cam");
        assert!(!anchored.matches(Action::Read, "mycam"));
        assert!(anchored.matches(Action::Read, "cam/2"));
    }

    #[test]
    fn api_metrics_pprof_ignore_path() {
        for a in [Action::Api, Action::Metrics, Action::Pprof] {
            assert!(perm(a, "something").matches(a, ""));
            assert!(perm(a, "~^x$").matches(a, "y"));
        }
    }

    #[test]
    fn perl_classes_and_word_boundaries_become_ascii() {
        let cases = [
            (r"^bob\d$", r"^bob[0-9]$"),
            (r"\D\w\W", r"[^0-9][0-9A-Za-z_][^0-9A-Za-z_]"),
            (r"a\sb\S", r"a[\t\n\f\r\x20]b[^\t\n\f\r\x20]"),
            (r"\bcam\B", r"(?-u:\b)cam(?-u:\B)"),
            // Inside bracket classes: nested classes; `\b` is left to the compiler.
            (r"[\d_]", r"[[0-9]_]"),
            (r"[^\w-]", r"[^[0-9A-Za-z_]-]"),
            (r"[\b]", r"[\b]"),
            // Escapes: `\\d` is a backslash then `d`; `\[` opens no class.
            (r"\\d", r"\\d"),
            (r"\\\d", r"\\[0-9]"),
            (r"\[\d\]", r"\[[0-9]\]"),
            // `]` first in a class is a literal, and so is it after `^`.
            (r"[]\d]\d", r"[][0-9]][0-9]"),
            (r"[^]\s]\b", r"[^][\t\n\f\r\x20]](?-u:\b)"),
            // ASCII classes and nested classes inside a class.
            (r"[[:digit:]\d]\b", r"[[:digit:][0-9]](?-u:\b)"),
            (r"[[:^alpha:]]\b", r"[[:^alpha:]](?-u:\b)"),
            (r"[a[\d]]\b", r"[a[[0-9]]](?-u:\b)"),
            // Other escapes and Unicode classes are copied.
            (r"\p{Greek}\pL\x{41}\.\d", r"\p{Greek}\pL\x{41}\.[0-9]"),
            ("é\\d", "é[0-9]"),
            (r"trailing\", r"trailing\"),
            ("no escapes", "no escapes"),
        ];
        for (pattern, want) in cases {
            assert_eq!(ascii_classes(pattern), want, "{pattern}");
        }
    }

    #[test]
    fn regexes_match_as_in_go() {
        let m = |p: &str, path: &str| PathMatcher::parse(p).unwrap().matches(path);
        assert!(m(r"~^bob\d$", "bob1"));
        assert!(!m(r"~^bob\d$", "bob١")); // U+0661 ARABIC-INDIC DIGIT ONE
        assert!(m(r"~^bob\D$", "bob١"));
        assert!(m(r"~^cam\w$", "camx"));
        assert!(!m(r"~^cam\w$", "camé"));
        assert!(m(r"~^cam\W$", "camé"));
        assert!(m(r"~^a\sb$", "a b"));
        assert!(!m(r"~^a\sb$", "a\u{a0}b"));
        assert!(!m(r"~^a\sb$", "a\u{b}b")); // RE2's \s has no \v
        assert!(m(r"~^a\Sb$", "a\u{a0}b"));
        assert!(m(r"~^[\d.]+$", "1.2"));
        assert!(!m(r"~^[\d.]+$", "١.٢"));
        // é is no word character in Go: there is a word boundary between it and "cam".
        assert!(m(r"~\bcam\b", "écam"));
        assert!(!m(r"~\Bcam", "écam"));
        assert!(m(r"~\Bcam", "xcam"));
        assert!(m(r"~(?x) ^a \s b$", "a b"));
    }

    #[test]
    fn the_pattern_as_written_is_shown_and_reported() {
        let p = PathMatcher::parse(r"~^cam\d+$").unwrap();
        assert_eq!(p.to_string(), r"~^cam\d+$");
        let e = PathMatcher::parse(r"~^cam\d+(").unwrap_err().to_string();
        assert!(e.contains(r"^cam\d+("), "{e}");
        assert!(!e.contains("[0-9]"), "{e}");
    }

    #[test]
    fn one_load_compiles_each_pattern_once() {
        let mut paths = PathInterner::default();
        let regex = |m: PathMatcher| match m {
            PathMatcher::Regex(re) => re,
            other => panic!("not a regex: {other:?}"),
        };
        let a = regex(paths.parse("~^cam1/").unwrap());
        let b = regex(paths.parse("~^cam1/").unwrap());
        let c = regex(paths.parse("~^cam2/").unwrap());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        // The same text without `~` is an exact path, not the regex.
        assert!(matches!(
            paths.parse("^cam1/").unwrap(),
            PathMatcher::Exact(_)
        ));
        assert!(matches!(paths.parse("").unwrap(), PathMatcher::Any));
        // A bad pattern is reported every time it is written.
        assert!(paths.parse("~(").is_err());
        assert!(paths.parse("~(").is_err());
        // A shared regex matches as its own copy would.
        assert!(b.is_match("cam1/x") && !b.is_match("xcam1/"));
    }

    #[test]
    fn bad_regex_and_action() {
        assert!(PathMatcher::parse("~(").is_err());
        assert_eq!("write".parse::<Action>(), Err(UnknownAction));
        assert_eq!("read".parse::<Action>(), Ok(Action::Read));
    }
}
