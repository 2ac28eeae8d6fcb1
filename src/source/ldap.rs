//! LDAP accounts (`[ldap]`): a user name and password bound against a directory (OpenLDAP,
//! lldap, FreeIPA, Active Directory, Authentik's LDAP outpost), its groups mapped to
//! permissions.
//!
//! Two ways to find the entry:
//!
//! - **Direct bind** (`user_dn`): the name goes into a DN template and that DN binds with the
//!   password. There is no service account: the entry and the group search are read as the
//!   user, and an account cannot be asked about again later (no `recheck`).
//! - **Search, then bind** (`base_dn`, `filter`, `bind_dn` and its password): the service
//!   account searches for the one entry the filter names, and that entry's DN binds with the
//!   password. The groups are searched as the service account, and sessions of the account are
//!   checked again by its DN (`recheck`): an entry gone, no longer matching the filter or out of
//!   the groups that granted the session's permission ends them.
//!
//! The traps, each closed here: a user name is escaped for the place it goes (RFC 4514 in a DN,
//! RFC 4515 in a filter: `dn`); an empty password never reaches the directory (an LDAP server
//! takes it as an anonymous bind and says yes); a search that finds nobody still costs a bind
//! (to a DN that does not exist, with the given password), so the time an answer takes does not
//! tell which names exist; two entries for one name deny; referrals are not followed; "no such
//! user" and "wrong password" are the same rejection; a directory that cannot answer is
//! `Unreachable`, never a "no". A plain `ldap://` URL to anything but the local machine is
//! refused by the config unless `starttls` or `insecure` says so.

use std::sync::Arc;
use std::time::Duration;

use ldap3::{Ldap, Scope, SearchOptions};
use unicode_normalization::UnicodeNormalization;

use crate::config::reader::Table;
use crate::decision::AccountToken;
use crate::permission::{Action, Permission};
use crate::source::account::settings::AccountSettings;
use crate::source::backend::{
    AccountKind, Backend, BoxFuture, CheckError, Credentials, Identity, OwnedCredentials,
};

mod conn;
pub mod dn;

use conn::{BindPool, Directory, Fail, ServiceAccount};
use dn::{escape_dn_value, escape_filter_value, fill, normalize_dn};

/// `[ldap]`.
pub const LDAP: AccountKind = AccountKind {
    name: "ldap",
    default_actions: &[Action::Read, Action::Playback],
    config_permissions: true,
    portal_admins: true,
    read,
};

/// The one text of every rejected login: unknown name, wrong password, locked or ambiguous.
const REFUSED: &str = "login refused";
/// Longer names are refused without asking (no directory has such a login name).
const MAX_NAME: usize = 256;

/// How the entry of a login is found.
enum Mode {
    /// `user_dn`: the template, with `{user}`.
    Direct { user_dn: String },
    /// `base_dn` + `filter` with the service account; `decoy_dn` binds when nobody is found.
    Search {
        base_dn: String,
        filter: String,
        service: Box<ServiceAccount>,
        decoy_dn: String,
    },
}

/// Where an account's groups come from.
enum Groups {
    None,
    /// An attribute of the user's entry holding group DNs (`memberOf`).
    Attribute(String),
    /// A search under `group_base_dn` with `group_filter` (`{dn}`, `{user}`).
    Search {
        base_dn: String,
        filter: String,
    },
}

pub struct LdapSource {
    dir: Directory,
    mode: Mode,
    groups: Groups,
    /// `name_attribute`: the name as the directory spells it.
    name_attr: String,
    /// `id_attribute`: the stable id (`entryUUID`); the DN when the entry has none.
    id_attr: String,
    /// `[[ldap.groups]]`: normalized DN → permissions.
    mapped: Vec<(String, Vec<Permission>)>,
    /// `admin_groups`, normalized.
    admin_groups: Vec<String>,
    binds: BindPool,
}

/// An entry as a search returned it: its DN and the attributes asked for.
#[derive(Debug, Default)]
struct Entry {
    dn: String,
    attrs: Vec<(String, Vec<Vec<u8>>)>,
}

impl Entry {
    fn values<'a>(&'a self, attr: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.attrs
            .iter()
            .filter(move |(name, _)| name.eq_ignore_ascii_case(attr))
            .flat_map(|(_, values)| values.iter().map(Vec::as_slice))
    }
}

/// A search result entry, read without the client library's panicking parser: a directory
/// that sends something malformed is answered as down, not crashed on.
fn parse_entry(tag: ldap3::asn1::StructureTag) -> Option<Entry> {
    let mut parts = tag.match_id(4)?.expect_constructed()?.into_iter();
    let dn = String::from_utf8(parts.next()?.expect_primitive()?).ok()?;
    let mut attrs = Vec::new();
    for attribute in parts.next()?.expect_constructed()? {
        let mut attribute = attribute.expect_constructed()?.into_iter();
        let name = String::from_utf8(attribute.next()?.expect_primitive()?).ok()?;
        let values = attribute
            .next()?
            .expect_constructed()?
            .into_iter()
            .map(|v| v.expect_primitive())
            .collect::<Option<Vec<_>>>()?;
        attrs.push((name, values));
    }
    Some(Entry { dn, attrs })
}

/// What a search found.
struct Found {
    entries: Vec<Entry>,
}

/// One search: where, what for, and how much.
struct Query<'a> {
    base: &'a str,
    scope: Scope,
    filter: &'a str,
    attrs: &'a [&'a str],
    /// At most this many entries (0: the server's limit).
    size_limit: i32,
    /// Names the search in errors.
    what: &'static str,
    /// A base that does not exist is no entries (else an error).
    missing_is_empty: bool,
}

/// One search. A referral is not followed (an error).
async fn search(
    ldap: &mut Ldap,
    reused: bool,
    timeout: Duration,
    q: Query<'_>,
) -> Result<Found, Fail> {
    let Query {
        base,
        scope,
        filter,
        attrs,
        size_limit,
        what,
        missing_is_empty,
    } = q;
    let result = ldap
        .with_timeout(timeout)
        .with_search_options(SearchOptions::new().sizelimit(size_limit))
        .search(base, scope, filter, attrs.to_vec())
        .await
        .map_err(|e| Fail::of(e, reused))?;
    let (raw, status) = (result.0, result.1);
    match status.rc {
        // Success, or the size limit reached (the entries up to it came).
        0 | 4 => {}
        32 if missing_is_empty => return Ok(Found { entries: vec![] }),
        10 => {
            return Err(Fail::Down(format!(
                "{what}: the directory sent a referral ({}), which is not followed",
                status.refs.join(" ")
            )))
        }
        _ => return Err(Fail::Down(format!("{what}: {status}"))),
    }
    let entries = raw
        .into_iter()
        .map(|e| parse_entry(e.0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| Fail::Down(format!("{what}: a malformed entry")))?;
    Ok(Found { entries })
}

/// A user's bind: `Ok` when the directory accepted it, `Fail::No` for wrong credentials (or a
/// locked, expired or disabled account), `Fail::Down` for anything else.
async fn bind(
    ldap: &mut Ldap,
    reused: bool,
    timeout: Duration,
    dn: &str,
    password: &str,
) -> Result<(), Fail> {
    // Never an unauthenticated bind: the callers refuse an empty password before this.
    debug_assert!(!password.is_empty());
    let result = ldap
        .with_timeout(timeout)
        .simple_bind(dn, password)
        .await
        .map_err(|e| Fail::of(e, reused))?;
    match result.rc {
        0 => Ok(()),
        // invalidCredentials (also a locked account under ppolicy, AD's disabled and expired
        // accounts), inappropriateAuthentication, constraintViolation (ppolicy), noSuchObject,
        // invalidDNSyntax, insufficientAccessRights, unwillingToPerform: a "no".
        49 | 48 | 19 | 32 | 34 | 50 | 53 => Err(Fail::No(REFUSED)),
        10 => Err(Fail::Down(
            "bind: the directory sent a referral, which is not followed".into(),
        )),
        _ => Err(Fail::Down(format!("bind: {result}"))),
    }
}

/// The recheck handle: the login name as typed (for the filter) and the entry's DN.
fn encode_handle(user: &str, dn: &str) -> String {
    format!("{}:{user}{dn}", user.len())
}

fn decode_handle(handle: &str) -> Option<(&str, &str)> {
    let (len, rest) = handle.split_once(':')?;
    let len: usize = len.parse().ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

impl LdapSource {
    /// The attributes a user entry is read with.
    fn entry_attrs(&self) -> Vec<&str> {
        let mut attrs = vec![self.name_attr.as_str(), self.id_attr.as_str()];
        if let Groups::Attribute(a) = &self.groups {
            attrs.push(a);
        }
        attrs
    }

    fn timeout(&self) -> Duration {
        self.dir.timeout
    }

    /// A login, within the deadline, tried once more on new connections when a connection that
    /// had served before turned out closed.
    async fn login(&self, user: &str, password: &str) -> Result<Identity, CheckError> {
        if password.is_empty() || user.is_empty() || user.len() > MAX_NAME {
            return Err(CheckError::Rejected(REFUSED));
        }
        let attempt = async {
            match self.login_once(user, password, false).await {
                Err(Fail::Broken(why)) => {
                    tracing::debug!(error = %why, "ldap: a kept connection was closed; trying a new one");
                    self.binds.clear();
                    self.login_once(user, password, true).await
                }
                other => other,
            }
        };
        let result = tokio::time::timeout(self.timeout(), attempt)
            .await
            .unwrap_or_else(|_| Err(Fail::Down("the directory did not answer in time".into())));
        result.map_err(|f| match f {
            Fail::No(why) => CheckError::Rejected(why),
            Fail::Down(why) | Fail::Broken(why) => CheckError::Unreachable(why),
        })
    }

    async fn login_once(&self, user: &str, password: &str, fresh: bool) -> Result<Identity, Fail> {
        match &self.mode {
            Mode::Direct { user_dn } => {
                let dn = fill(user_dn, &[("{user}", &escape_dn_value(user))]);
                let mut lease = self.binds.take(&self.dir, fresh).await?;
                let reused = lease.reused;
                bind(&mut lease.ldap, reused, self.timeout(), &dn, password).await?;
                // The entry as the user may read it; without the right to, the name as typed.
                let entry = search(
                    &mut lease.ldap,
                    reused,
                    self.timeout(),
                    Query {
                        base: &dn,
                        scope: Scope::Base,
                        filter: "(objectClass=*)",
                        attrs: &self.entry_attrs(),
                        size_limit: 1,
                        what: "reading the user's entry",
                        missing_is_empty: true,
                    },
                )
                .await?
                .entries
                .pop()
                .unwrap_or_else(|| Entry {
                    dn: dn.clone(),
                    attrs: vec![],
                });
                let groups = self
                    .group_dns(&mut lease.ldap, reused, user, &entry)
                    .await?;
                lease.keep();
                Ok(self.identity(user, &entry, &groups, None))
            }
            Mode::Search {
                base_dn,
                filter,
                service,
                decoy_dn,
            } => {
                let (mut svc, generation, reused) = service.handle(&self.dir).await?;
                let forget_on_failure = |f: Fail| async move {
                    if !matches!(f, Fail::No(_)) {
                        service.forget(generation).await;
                    }
                    f
                };
                let filter = fill(filter, &[("{user}", &escape_filter_value(user))]);
                let found = match search(
                    &mut svc,
                    reused,
                    self.timeout(),
                    Query {
                        base: base_dn,
                        scope: Scope::Subtree,
                        filter: &filter,
                        attrs: &self.entry_attrs(),
                        size_limit: 2,
                        what: "searching for the user",
                        missing_is_empty: false,
                    },
                )
                .await
                {
                    Ok(found) => found,
                    Err(f) => return Err(forget_on_failure(f).await),
                };
                let mut entries = found.entries;
                if entries.len() != 1 {
                    if entries.len() > 1 {
                        tracing::warn!(
                            "ldap: the filter found more than one entry for a login name; denied (make the filter match one entry per name)"
                        );
                    }
                    // Nobody (or nobody certain): a bind all the same, so that the time this
                    // takes does not say whether the name exists.
                    let mut lease = self.binds.take(&self.dir, fresh).await?;
                    let reused = lease.reused;
                    match bind(&mut lease.ldap, reused, self.timeout(), decoy_dn, password).await {
                        Ok(()) | Err(Fail::No(_)) => lease.keep(),
                        Err(f) => return Err(f),
                    }
                    return Err(Fail::No(REFUSED));
                }
                let entry = entries.pop().expect("one entry");
                let mut lease = self.binds.take(&self.dir, fresh).await?;
                let lease_reused = lease.reused;
                bind(
                    &mut lease.ldap,
                    lease_reused,
                    self.timeout(),
                    &entry.dn,
                    password,
                )
                .await?;
                lease.keep();
                let groups = match self.group_dns(&mut svc, reused, user, &entry).await {
                    Ok(groups) => groups,
                    Err(f) => return Err(forget_on_failure(f).await),
                };
                let handle = AccountToken(encode_handle(user, &entry.dn).into());
                Ok(self.identity(user, &entry, &groups, Some(handle)))
            }
        }
    }

    /// The normalized DNs of the groups the entry is in.
    async fn group_dns(
        &self,
        ldap: &mut Ldap,
        reused: bool,
        user: &str,
        entry: &Entry,
    ) -> Result<Vec<String>, Fail> {
        match &self.groups {
            Groups::None => Ok(Vec::new()),
            Groups::Attribute(attr) => Ok(entry
                .values(attr)
                .filter_map(|v| std::str::from_utf8(v).ok().and_then(normalize_dn))
                .collect()),
            Groups::Search { base_dn, filter } => {
                let filter = fill(
                    filter,
                    &[
                        ("{dn}", &escape_filter_value(&entry.dn)),
                        ("{user}", &escape_filter_value(user)),
                    ],
                );
                let found = search(
                    ldap,
                    reused,
                    self.timeout(),
                    Query {
                        base: base_dn,
                        scope: Scope::Subtree,
                        filter: &filter,
                        attrs: &["1.1"],
                        size_limit: 0,
                        what: "searching for the user's groups",
                        missing_is_empty: false,
                    },
                )
                .await?;
                Ok(found
                    .entries
                    .iter()
                    .filter_map(|e| normalize_dn(&e.dn))
                    .collect())
            }
        }
    }

    /// The account as the directory has it: its name, stable id, administrator or not, and
    /// the permissions its groups add.
    fn identity(
        &self,
        typed: &str,
        entry: &Entry,
        groups: &[String],
        recheck: Option<AccountToken>,
    ) -> Identity {
        let names: Vec<&str> = entry
            .values(&self.name_attr)
            .filter_map(|v| std::str::from_utf8(v).ok())
            .collect();
        let name = names
            .iter()
            .find(|n| n.to_lowercase() == typed.to_lowercase())
            .or(names.first())
            .map_or_else(|| typed.to_owned(), |n| (*n).to_owned());
        let id = entry
            .values(&self.id_attr)
            .next()
            .map(|v| match std::str::from_utf8(v) {
                Ok(s) => s.to_lowercase(),
                Err(_) => crate::credential::hex(v),
            })
            .or_else(|| normalize_dn(&entry.dn))
            .unwrap_or_else(|| entry.dn.to_lowercase());
        let admin = groups.iter().any(|g| self.admin_groups.contains(g));
        let extra_permissions = self
            .mapped
            .iter()
            .filter(|(dn, _)| groups.contains(dn))
            .flat_map(|(_, p)| p.iter().cloned())
            .collect();
        Identity {
            name,
            id: Some(id),
            admin,
            remote_access: true,
            permissions: None,
            extra_permissions,
            valid_for: None,
            recheck,
        }
    }

    /// The account again, by its DN, as the service account sees it now.
    async fn recheck_now(&self, handle: &str) -> Result<Identity, CheckError> {
        let Mode::Search {
            filter, service, ..
        } = &self.mode
        else {
            return Err(CheckError::Unreachable(
                "a direct bind cannot check an account again".into(),
            ));
        };
        let Some((user, dn)) = decode_handle(handle) else {
            return Err(CheckError::Rejected("malformed handle"));
        };
        let attempt = async {
            let (mut svc, generation, reused) = service.handle(&self.dir).await?;
            let filter = fill(filter, &[("{user}", &escape_filter_value(user))]);
            let result = async {
                // The entry itself, still matching the login's filter (an account disabled by
                // a filter such as AD's userAccountControl test stops matching).
                let mut found = search(
                    &mut svc,
                    reused,
                    self.timeout(),
                    Query {
                        base: dn,
                        scope: Scope::Base,
                        filter: &filter,
                        attrs: &self.entry_attrs(),
                        size_limit: 1,
                        what: "checking the account again",
                        missing_is_empty: true,
                    },
                )
                .await?;
                let Some(entry) = found.entries.pop() else {
                    return Err(Fail::No("account removed"));
                };
                let groups = self.group_dns(&mut svc, reused, user, &entry).await?;
                Ok(self.identity(user, &entry, &groups, Some(AccountToken(handle.into()))))
            }
            .await;
            if matches!(result, Err(Fail::Down(_) | Fail::Broken(_))) {
                service.forget(generation).await;
            }
            result
        };
        match tokio::time::timeout(self.timeout(), attempt).await {
            Ok(Ok(identity)) => Ok(identity),
            Ok(Err(Fail::No(why))) => Err(CheckError::Rejected(why)),
            Ok(Err(Fail::Down(why) | Fail::Broken(why))) => Err(CheckError::Unreachable(why)),
            Err(_) => Err(CheckError::Unreachable(
                "the directory did not answer in time".into(),
            )),
        }
    }

    /// For readiness: a connection (and the service account's bind, which tells a wrong
    /// password early).
    async fn probe_now(&self) -> Result<(), String> {
        let attempt = async {
            match &self.mode {
                Mode::Search { service, .. } => service.handle(&self.dir).await.map(drop),
                Mode::Direct { .. } => self.dir.connect().await.map(drop),
            }
        };
        match tokio::time::timeout(self.timeout(), attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Fail::No(why))) => Err(why.into()),
            Ok(Err(Fail::Down(why) | Fail::Broken(why))) => Err(why),
            Err(_) => Err("the directory did not answer in time".into()),
        }
    }
}

impl Backend for LdapSource {
    /// A name and a password; a directory has no tokens.
    fn accepts(&self, creds: &Credentials) -> bool {
        matches!(creds, Credentials::Login { .. })
    }

    /// A directory compares names after "string preparation" (RFC 4518): case, compatibility
    /// forms (a full-width "ａｌｉｃｅ" is "alice"), invisible characters and runs of spaces
    /// don't count. So don't they here, or each spelling would get its own failures.
    fn failure_key(&self, user: &str) -> String {
        prepare_name(user)
    }

    fn check<'a>(
        &'a self,
        creds: &'a OwnedCredentials,
    ) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(async move {
            match creds {
                OwnedCredentials::Login { user, password } => self.login(user, password).await,
                OwnedCredentials::Token(_) => Err(CheckError::Rejected(REFUSED)),
            }
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.probe_now())
    }

    fn upstream(&self) -> String {
        self.dir.url.clone()
    }

    fn recheck<'a>(&'a self, handle: &'a str) -> BoxFuture<'a, Result<Identity, CheckError>> {
        Box::pin(self.recheck_now(handle))
    }
}

/// A name as a directory compares it (RFC 4518, closely enough): characters that map to
/// nothing dropped, other spaces and line breaks made a space, NFKC, lower case, spaces at the
/// ends dropped and runs of them made one.
pub fn prepare_name(name: &str) -> String {
    let mapped: String = name
        .chars()
        .filter_map(|c| match c {
            '\u{0009}'..='\u{000D}' | '\u{0085}' => Some(' '),
            c if c.is_whitespace() => Some(' '),
            '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFC}'
            | '\u{E0000}'..='\u{E007F}' => None,
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect();
    let folded = mapped.nfkc().collect::<String>().to_lowercase();
    folded
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `host` (of a URL) is this machine: a loopback address or `localhost`. (In an
/// `ldap://` URL, not a scheme the URL standard knows, an IPv4 address is a "domain".)
fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
        url::Host::Domain(d) => {
            d.eq_ignore_ascii_case("localhost")
                || d.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// A non-empty string key that must be a DN; `None` (reported) if it is not.
fn dn_key(t: &mut Table<'_>, key: &'static str) -> Option<String> {
    let value = t.string(key)?;
    if value.value.trim().is_empty() || normalize_dn(&value.value).is_none() {
        t.errs()
            .push(value.span, format!("{key}: {:?} is not a DN", value.value));
        return None;
    }
    Some(value.value)
}

/// A filter template: must hold the placeholders `needs` names one of (at least one), and
/// be a valid filter once they are filled.
fn filter_key(t: &mut Table<'_>, key: &'static str, placeholders: &[&str]) -> Option<String> {
    let value = t.string(key)?;
    let errs = t.errs();
    if !placeholders.iter().any(|p| value.value.contains(p)) {
        errs.push(
            value.span,
            format!("{key}: must contain {}", placeholders.join(" or ")),
        );
        return None;
    }
    let sample: Vec<(&str, &str)> = placeholders.iter().map(|p| (*p, "x")).collect();
    if !dn::is_filter(&fill(&value.value, &sample)) {
        errs.push(
            value.span,
            format!("{key}: {:?} is not an LDAP filter", value.value),
        );
        return None;
    }
    Some(value.value)
}

/// An attribute name key (`name_attribute`…), with its default.
fn attribute_key(t: &mut Table<'_>, key: &'static str, default: &str) -> Option<String> {
    match t.string(key) {
        None if t.has(key) => None,
        None => Some(default.to_owned()),
        Some(v) => {
            let ok = !v.value.is_empty()
                && v.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b';');
            if ok {
                Some(v.value)
            } else {
                t.errs().push(
                    v.span,
                    format!("{key}: {:?} is not an attribute name", v.value),
                );
                None
            }
        }
    }
}

/// The section's own keys (the shared ones are read by `account::settings`): where the
/// directory is and how to reach it safely, how an entry is found, where groups come from and
/// what they grant.
fn read(t: &mut Table<'_>, settings: &mut AccountSettings) -> Option<Arc<dyn Backend>> {
    let errs = t.errs();
    let before = errs.count();

    // Where, and how safely.
    let url = t.string("url");
    if url.is_none() && !t.has("url") {
        t.problem("[ldap] needs url (ldap://host:389 or ldaps://host:636)".into());
    }
    let starttls = t.bool("starttls").unwrap_or(false);
    let insecure = t.bool("insecure").unwrap_or(false);
    let ca_file = t.string("ca_file");
    let mut tls_wanted = starttls;
    if let Some(url) = &url {
        match url::Url::parse(&url.value) {
            Ok(parsed)
                if matches!(parsed.scheme(), "ldap" | "ldaps")
                    && parsed.host().is_some()
                    && matches!(parsed.path(), "" | "/")
                    && parsed.query().is_none()
                    && parsed.username().is_empty()
                    && parsed.password().is_none() =>
            {
                let host = parsed.host().expect("checked");
                if parsed.scheme() == "ldaps" {
                    tls_wanted = true;
                    if starttls {
                        errs.push(
                            t.span_of("starttls"),
                            "starttls: is for ldap:// URLs; ldaps:// is TLS from the start".into(),
                        );
                    }
                } else if !starttls && !insecure && !is_loopback(&host) {
                    errs.push(
                        url.span.clone(),
                        format!(
                            "url: a plain ldap:// connection to {host} would send passwords in the clear; \
                             use ldaps://, or set starttls = true, or insecure = true if that is what you want"
                        ),
                    );
                }
                if insecure && (starttls || parsed.scheme() == "ldaps") {
                    errs.push(
                        t.span_of("insecure"),
                        "insecure: only allows a plain ldap:// URL; it does not turn off certificate checks (give the CA in ca_file)".into(),
                    );
                }
            }
            _ => errs.push(
                url.span.clone(),
                format!(
                    "url: {:?} is not an ldap:// or ldaps:// URL (scheme, host and port only)",
                    url.value
                ),
            ),
        }
    }
    let tls = match (&ca_file, tls_wanted) {
        (Some(ca), false) => {
            errs.push(
                ca.span.clone(),
                "ca_file: only used with ldaps:// or starttls = true".into(),
            );
            None
        }
        (ca, true) => match conn::tls_config(ca.as_ref().map(|c| c.value.as_str())) {
            Ok(config) => Some(config),
            Err(e) => {
                let span = ca.as_ref().map_or_else(|| t.span(), |c| c.span.clone());
                errs.push(span, format!("ca_file: {e}"));
                None
            }
        },
        (None, false) => None,
    };

    // How an entry is found.
    let user_dn = t.string("user_dn");
    let base_dn = dn_key(t, "base_dn");
    let filter = filter_key(t, "filter", &["{user}"]);
    let bind_dn = dn_key(t, "bind_dn");
    let bind_password = t.secret("bind_password", "bind_password_file", "bind_password_env");
    let search_keys = ["base_dn", "filter", "bind_dn"];
    let mode = match &user_dn {
        Some(template) => {
            let mut ok = true;
            if !template.value.contains("{user}") {
                errs.push(template.span.clone(), "user_dn: must contain {user}".into());
                ok = false;
            } else if normalize_dn(&fill(&template.value, &[("{user}", "x")])).is_none() {
                errs.push(
                    template.span.clone(),
                    format!("user_dn: {:?} is not a DN template", template.value),
                );
                ok = false;
            }
            for key in search_keys.iter().chain(&[
                "bind_password",
                "bind_password_file",
                "bind_password_env",
            ]) {
                if t.has(key) {
                    errs.push(
                        t.span_of(key),
                        format!("{key}: is for search-then-bind; with user_dn the user binds directly (set one or the other)"),
                    );
                    ok = false;
                }
            }
            ok.then(|| Mode::Direct {
                user_dn: template.value.clone(),
            })
        }
        None if !t.has("user_dn") => {
            if search_keys.iter().all(|k| !t.has(k)) {
                t.problem("[ldap] needs user_dn (bind directly), or base_dn, filter, bind_dn and bind_password_env (or _file) (search, then bind)".into());
            }
            for key in search_keys {
                if !t.has(key) {
                    t.problem(format!(
                        "[ldap] needs {key} to search for users (or user_dn to bind directly)"
                    ));
                }
            }
            let password = match &bind_password {
                Some(Some(p)) => Some(p.clone()),
                Some(None) => {
                    if bind_dn.is_some() {
                        t.problem("[ldap] needs the service account's password: bind_password_env, bind_password_file or bind_password".into());
                    }
                    None
                }
                None => None,
            };
            match (base_dn, filter, bind_dn, password) {
                (Some(base_dn), Some(filter), Some(bind_dn), Some(password)) => {
                    let decoy_dn = format!(
                        "cn=mtx-auth-decoy-{},{base_dn}",
                        crate::credential::hex(&rand::random::<[u8; 12]>())
                    );
                    Some(Mode::Search {
                        base_dn,
                        filter,
                        service: Box::new(ServiceAccount::new(bind_dn, password)),
                        decoy_dn,
                    })
                }
                _ => None,
            }
        }
        None => None,
    };

    // Who the person is.
    let name_attr = attribute_key(t, "name_attribute", "uid");
    let id_attr = attribute_key(t, "id_attribute", "entryUUID");

    // Groups.
    let group_attr = t.string("group_attribute");
    let group_base_dn = dn_key(t, "group_base_dn");
    let group_filter = filter_key(t, "group_filter", &["{dn}", "{user}"]);
    let groups = match (&group_attr, t.has("group_base_dn")) {
        (Some(a), true) => {
            errs.push(
                a.span.clone(),
                "group_attribute: set group_attribute or group_base_dn, not both".into(),
            );
            None
        }
        (Some(a), false) => {
            if t.has("group_filter") {
                errs.push(
                    t.span_of("group_filter"),
                    "group_filter: is for the group search under group_base_dn".into(),
                );
            }
            Some(Groups::Attribute(a.value.clone()))
        }
        (None, true) => group_base_dn.map(|base_dn| Groups::Search {
            base_dn,
            filter: group_filter.unwrap_or_else(|| "(member={dn})".to_owned()),
        }),
        (None, false) => {
            if t.has("group_filter") {
                errs.push(
                    t.span_of("group_filter"),
                    "group_filter: needs group_base_dn, where the groups are searched".into(),
                );
            }
            Some(Groups::None)
        }
    };
    let mut mapped = Vec::new();
    for mut g in t.tables("groups").unwrap_or_default() {
        let dn = g.string("dn");
        let permissions = g.permissions("permissions");
        for (key, present) in [("dn", dn.is_some()), ("permissions", permissions.is_some())] {
            if !present && !g.has(key) {
                g.problem(format!("missing field `{key}`"));
            }
        }
        g.finish();
        if let Some(dn) = dn {
            match normalize_dn(&dn.value).filter(|n| !n.is_empty()) {
                Some(n) => mapped.push((n, permissions.unwrap_or_default())),
                None => errs.push(dn.span, format!("dn: {:?} is not a DN", dn.value)),
            }
        }
    }
    let mut admin_groups = Vec::new();
    for g in t.strings("admin_groups").unwrap_or_default() {
        match normalize_dn(&g.value).filter(|n| !n.is_empty()) {
            Some(n) => admin_groups.push(n),
            None => errs.push(g.span, format!("admin_groups: {:?} is not a DN", g.value)),
        }
    }
    if matches!(groups, Some(Groups::None)) && (!mapped.is_empty() || !admin_groups.is_empty()) {
        t.problem("[ldap] maps groups but does not say where they come from: set group_attribute (e.g. \"memberOf\") or group_base_dn".into());
    }

    if errs.count() > before {
        return None;
    }
    Some(Arc::new(LdapSource {
        dir: Directory::new(url?.value, starttls, tls, settings.timeout),
        mode: mode?,
        groups: groups?,
        name_attr: name_attr?,
        id_attr: id_attr?,
        mapped,
        admin_groups,
        binds: BindPool::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(section: &str) -> Result<Config, String> {
        Config::parse(&format!("[ldap]\n{section}\n"), "t.toml").map_err(|e| e.to_string())
    }

    fn backend(section: &str) -> Arc<dyn Backend> {
        let config = parse(section).expect("valid");
        Arc::clone(&config.accounts[0].backend)
    }

    #[test]
    fn plain_ldap_to_another_machine_is_refused_unless_said() {
        let err =
            parse("url = \"ldap://ldap.example.org\"\nuser_dn = \"uid={user},dc=x\"").unwrap_err();
        assert!(
            err.starts_with("t.toml:2:7: url: a plain ldap:// connection to ldap.example.org"),
            "{err}"
        );
        for ok in [
            "url = \"ldap://127.0.0.1:389\"",
            "url = \"ldap://localhost\"",
            "url = \"ldap://[::1]:3890\"",
            "url = \"ldap://ldap.example.org\"\nstarttls = true",
            "url = \"ldap://ldap.example.org\"\ninsecure = true",
            "url = \"ldaps://ldap.example.org\"",
        ] {
            parse(&format!("{ok}\nuser_dn = \"uid={{user}},dc=x\""))
                .unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, want) in [
            ("url = \"http://x\"", "not an ldap:// or ldaps:// URL"),
            (
                "url = \"ldap://x/dc=org\"",
                "not an ldap:// or ldaps:// URL",
            ),
            (
                "url = \"ldaps://x\"\nstarttls = true",
                "starttls: is for ldap:// URLs",
            ),
            (
                "url = \"ldaps://x\"\ninsecure = true",
                "does not turn off certificate checks",
            ),
            (
                "url = \"ldap://127.0.0.1\"\nca_file = \"/x\"",
                "ca_file: only used with",
            ),
            (
                "url = \"ldaps://x\"\nca_file = \"/nonexistent/ca.pem\"",
                "ca_file: cannot read",
            ),
        ] {
            let err = parse(&format!("{bad}\nuser_dn = \"uid={{user}},dc=x\"")).unwrap_err();
            assert!(err.contains(want), "{bad}: {err}");
        }
    }

    #[test]
    fn one_way_to_find_the_entry() {
        let url = "url = \"ldap://127.0.0.1\"\n";
        for (section, want) in [
            ("", "[ldap] needs user_dn (bind directly), or base_dn"),
            ("user_dn = \"uid=x,dc=x\"", "user_dn: must contain {user}"),
            ("user_dn = \"uid={user}\"\nbase_dn = \"dc=x\"", "base_dn: is for search-then-bind"),
            ("base_dn = \"dc=x\"", "needs filter"),
            (
                "base_dn = \"dc=x\"\nfilter = \"(uid={user})\"\nbind_dn = \"cn=r,dc=x\"",
                "needs the service account's password",
            ),
            ("base_dn = \"not a dn\"\nfilter = \"(uid={user})\"\nbind_dn = \"cn=r,dc=x\"\nbind_password = \"p\"", "base_dn: \"not a dn\" is not a DN"),
            ("base_dn = \"dc=x\"\nfilter = \"(uid=x)\"\nbind_dn = \"cn=r,dc=x\"\nbind_password = \"p\"", "filter: must contain {user}"),
            ("base_dn = \"dc=x\"\nfilter = \"(uid={user}\"\nbind_dn = \"cn=r,dc=x\"\nbind_password = \"p\"", "is not an LDAP filter"),
            ("user_dn = \"uid={user},dc=x\"\n[[ldap.groups]]\ndn = \"cn=g,dc=x\"\npermissions = []", "does not say where they come from"),
            ("user_dn = \"uid={user},dc=x\"\ngroup_attribute = \"memberOf\"\ngroup_base_dn = \"dc=x\"", "not both"),
            ("user_dn = \"uid={user},dc=x\"\ngroup_attribute = \"memberOf\"\nadmin_groups = [\"nope\"]", "admin_groups: \"nope\" is not a DN"),
            ("user_dn = \"uid={user},dc=x\"\nfavourite = 1", "favourite is not a [ldap] key"),
        ] {
            let err = parse(&format!("{url}{section}")).unwrap_err();
            assert!(err.contains(want), "{section}: {err}");
        }
        parse(&format!(
            "{url}base_dn = \"ou=people,dc=x\"\nfilter = \"(uid={{user}})\"\nbind_dn = \"cn=r,dc=x\"\nbind_password = \"p\"\n\
             group_base_dn = \"ou=groups,dc=x\"\ngroup_filter = \"(member:1.2.840.113556.1.4.1941:={{dn}})\"\n\
             admin_groups = [\"cn=admins,ou=groups,dc=x\"]\n[[ldap.groups]]\ndn = \"CN=Streamers, OU=Groups,DC=x\"\n\
             permissions = [{{ action = \"publish\", path = \"~^live/\" }}]"
        ))
        .unwrap();
    }

    #[actix_web::test]
    async fn an_empty_password_is_refused_before_any_network() {
        // Nothing listens there: any attempt to connect would be "unreachable".
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for section in [
            format!("url = \"ldap://127.0.0.1:{port}\"\nuser_dn = \"uid={{user}},dc=x\""),
            format!("url = \"ldap://127.0.0.1:{port}\"\nbase_dn = \"dc=x\"\nfilter = \"(uid={{user}})\"\nbind_dn = \"cn=r,dc=x\"\nbind_password = \"p\""),
        ] {
            let b = backend(&section);
            for (user, password) in [("alice", ""), ("", "pw"), (&"x".repeat(MAX_NAME + 1), "pw")] {
                let creds = OwnedCredentials::Login {
                    user: user.to_owned(),
                    password: password.to_owned(),
                };
                match b.check(&creds).await {
                    Err(CheckError::Rejected(why)) => assert_eq!(why, REFUSED),
                    other => panic!("{user:?}/{password:?}: {other:?}"),
                }
            }
            // A real attempt does try, and finds nobody there.
            let creds = OwnedCredentials::Login {
                user: "alice".into(),
                password: "pw".into(),
            };
            assert!(matches!(b.check(&creds).await, Err(CheckError::Unreachable(_))));
            assert!(!b.accepts(&Credentials::Token("tok")));
        }
    }

    #[test]
    fn names_count_failures_as_the_directory_compares_them() {
        let b = backend("url = \"ldap://127.0.0.1\"\nuser_dn = \"uid={user},dc=x\"");
        let key = b.failure_key("alice");
        for spelling in [
            "Alice",
            "ALICE",
            " alice",
            "alice  ",
            "ａｌｉｃｅ",
            "al\u{00AD}ice",
            "ali\u{200B}ce",
            "alice\u{FEFF}",
            "\talice\n",
        ] {
            assert_eq!(b.failure_key(spelling), key, "{spelling:?}");
        }
        assert_eq!(prepare_name("a  b"), "a b");
        assert_ne!(b.failure_key("alicE2"), key);
    }

    #[test]
    fn recheck_handles_round_trip() {
        for (user, dn) in [
            ("alice", "uid=alice,dc=x"),
            ("a:b", "uid=a:b,dc=x"),
            ("", ""),
            ("é", "cn=é"),
        ] {
            let h = encode_handle(user, dn);
            assert_eq!(decode_handle(&h), Some((user, dn)));
        }
        assert_eq!(decode_handle("99:x"), None);
        assert_eq!(decode_handle("x"), None);
    }

    #[test]
    fn groups_grant_and_administer() {
        let b = LdapSource {
            dir: Directory::new(
                "ldap://127.0.0.1".into(),
                false,
                None,
                Duration::from_secs(1),
            ),
            mode: Mode::Direct {
                user_dn: "uid={user},dc=x".into(),
            },
            groups: Groups::Attribute("memberOf".into()),
            name_attr: "uid".into(),
            id_attr: "entryUUID".into(),
            mapped: vec![(
                "cn=streamers,dc=x".into(),
                vec![Permission {
                    action: Action::Publish,
                    path: crate::permission::PathMatcher::Any,
                }],
            )],
            admin_groups: vec!["cn=admins,dc=x".into()],
            binds: BindPool::default(),
        };
        let entry = Entry {
            dn: "UID=Alice,DC=x".into(),
            attrs: vec![
                ("uid".into(), vec![b"Alice".to_vec(), b"al".to_vec()]),
                ("memberOf".into(), vec![b"CN=Streamers,DC=X".to_vec()]),
            ],
        };
        let groups = vec![normalize_dn("CN=Streamers,DC=X").unwrap()];
        let id = b.identity("al", &entry, &groups, None);
        assert_eq!(id.name, "al", "the value the login matched");
        assert_eq!(
            id.id.as_deref(),
            Some("uid=alice,dc=x"),
            "no entryUUID: the DN"
        );
        assert!(!id.admin);
        assert_eq!(id.extra_permissions.len(), 1);
        let id = b.identity("ALICE", &entry, &["cn=admins,dc=x".into()], None);
        assert_eq!(id.name, "Alice");
        assert!(id.admin);
        assert!(id.extra_permissions.is_empty());
        let with_uuid = Entry {
            dn: "uid=bob,dc=x".into(),
            attrs: vec![("entryuuid".into(), vec![b"0F0E-AB".to_vec()])],
        };
        let id = b.identity("bob", &with_uuid, &[], None);
        assert_eq!(
            (id.name.as_str(), id.id.as_deref()),
            ("bob", Some("0f0e-ab"))
        );
    }
}
