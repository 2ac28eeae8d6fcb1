//! Actions and permissions, with MediaMTX's matching rules.
//!
//! A permission is `{action, path}`. For publish, read and playback an empty path matches every
//! path, a path starting with `~` is an unanchored regular expression, and anything else must be
//! equal. api, metrics and pprof have no path: their permissions ignore it. Regexes compile at
//! config load, so matching on the hot path cannot fail.

use std::fmt;
use std::str::FromStr;

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
    Exact(String),
    /// `~regex`, unanchored as in MediaMTX (Go's `MatchString`).
    Regex(Regex),
}

impl PathMatcher {
    pub fn parse(path: &str) -> Result<Self, Box<regex::Error>> {
        if path.is_empty() {
            Ok(PathMatcher::Any)
        } else if let Some(re) = path.strip_prefix('~') {
            Regex::new(re).map(PathMatcher::Regex).map_err(Box::new)
        } else {
            Ok(PathMatcher::Exact(path.to_owned()))
        }
    }

    pub fn matches(&self, path: &str) -> bool {
        match self {
            PathMatcher::Any => true,
            PathMatcher::Exact(p) => p == path,
            PathMatcher::Regex(re) => re.is_match(path),
        }
    }
}

impl fmt::Display for PathMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathMatcher::Any => f.write_str("any path"),
            PathMatcher::Exact(p) => write!(f, "{p:?}"),
            PathMatcher::Regex(re) => write!(f, "~{}", re.as_str()),
        }
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
        self.action == action && (!action.has_path() || self.path.matches(path))
    }
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
    fn bad_regex_and_action() {
        assert!(PathMatcher::parse("~(").is_err());
        assert_eq!("write".parse::<Action>(), Err(UnknownAction));
        assert_eq!("read".parse::<Action>(), Ok(Action::Read));
    }
}
