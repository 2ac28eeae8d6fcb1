//! `[[users]]`: MediaMTX's `authInternalUsers`, one table per entry.

use crate::config::reader::Table;
use crate::credential::{Credential, CredentialError};
use crate::source::users::{UserEntry, UserList, UserName};

/// The `users` array of tables of `t` (the whole file, or one entry parsed alone), appended
/// to `list`.
pub fn read_into<'a>(t: &mut Table<'a>, list: &mut UserList) {
    for entry in t.tables("users").unwrap_or_default() {
        if let Some(user) = read(entry) {
            list.push(user);
        }
    }
}

/// One `[[users]]` entry, or `None` after reporting what is wrong with it.
pub fn read(mut t: Table<'_>) -> Option<UserEntry> {
    let errs = t.errs();
    let line = t.line();
    let before = errs.count();

    let name = match t.string("user") {
        Some(u) if u.value == "any" => Some(UserName::Any),
        Some(u) => match Credential::parse(&u.value) {
            Ok(c) => Some(UserName::Credential(c)),
            Err(CredentialError::Empty) => {
                errs.push(
                    u.span,
                    "user: must not be empty (use \"any\" for anyone)".into(),
                );
                None
            }
            Err(e) => {
                errs.push(u.span, format!("user: {e}"));
                None
            }
        },
        None => {
            if !t.has("user") {
                t.problem("missing field `user`".into());
            }
            None
        }
    };

    let pass = match t.string("pass") {
        None => None,
        Some(p) if p.value.is_empty() => None,
        Some(p) if matches!(name, Some(UserName::Any)) => {
            errs.push(p.span, "pass: user \"any\" cannot have a password".into());
            None
        }
        Some(p) => match Credential::parse(&p.value) {
            Ok(c) => Some(c),
            Err(e) => {
                errs.push(p.span, format!("pass: {e}"));
                None
            }
        },
    };
    let ips = t.networks("ips");
    let permissions = t.permissions("permissions").unwrap_or_default();
    t.finish();

    if errs.count() > before {
        return None;
    }
    Some(UserEntry {
        name: name?,
        pass,
        ips,
        permissions,
        line,
    })
}
