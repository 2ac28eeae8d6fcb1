//! The permission matcher on an arbitrary pattern and path. Checks: `PathMatcher::parse` errors
//! or gives a matcher that answers without panicking; an empty pattern matches everything; an
//! exact pattern matches only its own string; `~` + the escaped path matches the path, anchored
//! or not; api, metrics and pprof ignore the path.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mtx_auth::permission::{any_matches, Action, PathMatcher, Permission};

fuzz_target!(|input: (&str, &str, u8)| {
    let (pattern, path, which) = input;
    let action = Action::ALL[usize::from(which) % Action::ALL.len()];
    if let Ok(matcher) = PathMatcher::parse(pattern) {
        let hit = matcher.matches(path);
        if pattern.is_empty() {
            assert!(hit);
        } else if !pattern.starts_with('~') {
            assert_eq!(hit, pattern == path);
        }
        let perm = Permission {
            action,
            path: matcher,
        };
        let perms = [perm];
        let granted = any_matches(&perms, action, path);
        assert_eq!(granted, !action.has_path() || hit);
        for other in Action::ALL.into_iter().filter(|&a| a != action) {
            assert!(!any_matches(&perms, other, path));
        }
        let _ = perms[0].path.to_string();
    }
    let escaped = regex::escape(path);
    for re in [format!("~{escaped}"), format!("~^{escaped}$")] {
        // A long path can make the escaped regex exceed the compiled-size limit.
        if let Ok(m) = PathMatcher::parse(&re) {
            assert!(m.matches(path), "{re:?} does not match {path:?}");
        }
    }
});
