//! The TOML users source: MediaMTX's `authInternalUsers`, to the letter.
//!
//! Users are tried in config order and the first that matches allows. For each user, MediaMTX
//! checks the IP list, then the permissions, then (unless the user is `any`) user name and
//! password. With 100,000 users a linear scan per request would be too slow, so users are
//! indexed: a plain user name maps to the users with that name, a `sha256:` name to the users
//! with that digest. Only `any` and `argon2:` names (salted, so not indexable) are tried for every
//! request. Merging these sorted lists keeps first-match-wins order exactly.
//!
//! A sidecar holding 100,000 users must stay small, so users are stored compactly (`UserList`):
//! one fixed-size record each, and their strings, digests, address lists and extra permissions
//! in a few shared buffers, not in allocations of their own. Small allocations made while the
//! TOML document is alive would land in the holes it leaves when it is freed, scattered over
//! hundreds of megabytes, and pin every page they touch; a few large buffers do not. The index
//! holds user positions and compares against the names in those buffers, so no name is stored
//! twice.

use std::fmt;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::hash_table::{Entry, HashTable};
use ipnet::{IpNet, Ipv4Net};
use sha2::{Digest, Sha256};

use crate::credential::{self, Argon2Hash, Credential, CredentialRef};
use crate::permission::{self, Action, PathMatcher, PathRef, PathRegex, Permission};
use crate::request::Request;

/// One `[[users]]` entry as the config reads it; `UserList` stores it compactly.
#[derive(Debug)]
pub struct UserEntry {
    pub name: UserName,
    /// `None`: any password (an empty `pass`, or user `any`).
    pub pass: Option<Credential>,
    /// Empty: any IP. Each entry has been through `canonical_net`.
    pub ips: Vec<IpNet>,
    pub permissions: Vec<Permission>,
    /// Line of the `[[users]]` entry in the config, for `explain` and logs.
    pub line: usize,
}

#[derive(Debug)]
pub enum UserName {
    /// `any`: no credential check at all.
    Any,
    Credential(Credential),
}

/// Where a stored item lies in one of `UserList`'s buffers. 32-bit positions keep every user
/// record small; see `UserList::push` for the limits that follow.
#[derive(Clone, Copy, Debug)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// Appends `items` to `buf` and returns where they went.
    fn append<T: Clone>(buf: &mut Vec<T>, items: &[T]) -> Span {
        let start = position(buf.len());
        let end = position(buf.len() + items.len());
        buf.extend_from_slice(items);
        Span {
            start,
            len: end - start,
        }
    }

    fn of<T>(self, buf: &[T]) -> &[T] {
        &buf[self.start as usize..][..self.len as usize]
    }
}

/// A buffer position as a `u32`. Past 4 GiB of names, passwords and paths (a config far larger
/// than any machine could parse) loading stops rather than store a wrong position.
fn position(n: usize) -> u32 {
    u32::try_from(n).expect("a users buffer outgrew 32-bit positions")
}

/// A stored user name or password.
#[derive(Clone, Copy, Debug)]
enum Secret {
    /// For a name: user `any`; for a password: any password.
    Nothing,
    /// In `UserList::text`.
    Plain(Span),
    /// Index into `UserList::digests`.
    Sha256(u32),
    /// Index into `UserList::argon2`.
    Argon2(u32),
}

/// A stored permission's path; see `PathMatcher`.
#[derive(Debug)]
enum StoredPath {
    Any,
    /// In `UserList::text`.
    Exact(Span),
    /// Shared with every other permission of the config with the same pattern.
    Regex(Arc<PathRegex>),
}

#[derive(Debug)]
struct StoredPermission {
    action: Action,
    path: StoredPath,
}

/// A user's permissions. Most users of a large config hold one, kept in the record itself.
#[derive(Debug)]
enum Permissions {
    One(StoredPermission),
    /// None, or two and more, in `UserList::permissions`.
    Listed(Span),
}

/// One user, compactly: every variable-length part lives in a buffer of `UserList`.
#[derive(Debug)]
struct StoredUser {
    name: Secret,
    pass: Secret,
    permissions: Permissions,
    /// In `UserList::ips`; empty: any IP.
    ips: Span,
    line: u32,
}

/// All `[[users]]` entries of a config, in config order, stored compactly (see the module's
/// documentation). Built by collecting `UserEntry`s.
#[derive(Default)]
pub struct UserList {
    users: Vec<StoredUser>,
    /// Plain names, plain passwords and exact paths, end to end.
    text: Vec<u8>,
    digests: Vec<[u8; 32]>,
    argon2: Vec<Argon2Hash>,
    /// The permissions of users holding none or more than one.
    permissions: Vec<StoredPermission>,
    ips: Vec<IpNet>,
}

impl UserList {
    /// Stores one entry. Positions are 32-bit: a config can hold up to 2^31 users and 4 GiB of
    /// names, passwords and paths, far beyond what its TOML parse would fit in memory.
    pub fn push(&mut self, entry: UserEntry) {
        assert!(
            self.users.len() < SHARED as usize,
            "more than 2^31 [[users]] entries"
        );
        let name = match entry.name {
            UserName::Any => Secret::Nothing,
            UserName::Credential(c) => self.store_secret(c),
        };
        let pass = entry.pass.map_or(Secret::Nothing, |c| self.store_secret(c));
        let ips = Span::append(&mut self.ips, &entry.ips);
        let permissions = match <[Permission; 1]>::try_from(entry.permissions) {
            Ok([p]) => Permissions::One(self.store_permission(p)),
            Err(list) => {
                let start = position(self.permissions.len());
                for p in list {
                    let p = self.store_permission(p);
                    self.permissions.push(p);
                }
                Permissions::Listed(Span {
                    start,
                    len: position(self.permissions.len()) - start,
                })
            }
        };
        self.users.push(StoredUser {
            name,
            pass,
            permissions,
            ips,
            line: u32::try_from(entry.line).unwrap_or(u32::MAX),
        });
    }

    fn store_secret(&mut self, credential: Credential) -> Secret {
        match credential {
            Credential::Plain(p) => Secret::Plain(Span::append(&mut self.text, p.as_bytes())),
            Credential::Sha256(d) => {
                self.digests.push(d);
                Secret::Sha256(position(self.digests.len() - 1))
            }
            Credential::Argon2(h) => {
                self.argon2.push(h);
                Secret::Argon2(position(self.argon2.len() - 1))
            }
        }
    }

    fn store_permission(&mut self, p: Permission) -> StoredPermission {
        let path = match p.path {
            PathMatcher::Any => StoredPath::Any,
            PathMatcher::Exact(e) => StoredPath::Exact(Span::append(&mut self.text, e.as_bytes())),
            PathMatcher::Regex(re) => StoredPath::Regex(re),
        };
        StoredPermission {
            action: p.action,
            path,
        }
    }

    /// Gives back what the buffers reserved beyond their contents while growing.
    pub fn shrink_to_fit(&mut self) {
        self.users.shrink_to_fit();
        self.text.shrink_to_fit();
        self.digests.shrink_to_fit();
        self.argon2.shrink_to_fit();
        self.permissions.shrink_to_fit();
        self.ips.shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn get(&self, index: u32) -> User<'_> {
        User {
            list: self,
            user: &self.users[index as usize],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = User<'_>> {
        self.users.iter().map(|user| User { list: self, user })
    }

    fn secret(&self, secret: Secret) -> Option<CredentialRef<'_>> {
        match secret {
            Secret::Nothing => None,
            Secret::Plain(span) => Some(CredentialRef::Plain(span.of(&self.text))),
            Secret::Sha256(i) => Some(CredentialRef::Sha256(&self.digests[i as usize])),
            Secret::Argon2(i) => Some(CredentialRef::Argon2(&self.argon2[i as usize])),
        }
    }

    /// The plain name of the user at `index`; empty for any other kind of name.
    fn plain_name(&self, index: u32) -> &[u8] {
        match self.users[index as usize].name {
            Secret::Plain(span) => span.of(&self.text),
            _ => &[],
        }
    }

    /// The `sha256:` name of the user at `index`; empty for any other kind of name.
    fn name_digest(&self, index: u32) -> &[u8] {
        match self.users[index as usize].name {
            Secret::Sha256(i) => &self.digests[i as usize],
            _ => &[],
        }
    }
}

impl FromIterator<UserEntry> for UserList {
    fn from_iter<I: IntoIterator<Item = UserEntry>>(entries: I) -> Self {
        let mut list = UserList::default();
        for entry in entries {
            list.push(entry);
        }
        list.shrink_to_fit();
        list
    }
}

/// Counts only: the buffers hold names and passwords.
impl fmt::Debug for UserList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserList")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

/// One `[[users]]` entry, checked, as stored in a `UserList`.
#[derive(Clone, Copy)]
pub struct User<'a> {
    list: &'a UserList,
    user: &'a StoredUser,
}

impl<'a> User<'a> {
    /// `None`: user `any`.
    pub fn name(self) -> Option<CredentialRef<'a>> {
        self.list.secret(self.user.name)
    }

    /// `None`: any password (an empty `pass`, or user `any`).
    pub fn pass(self) -> Option<CredentialRef<'a>> {
        self.list.secret(self.user.pass)
    }

    /// Line of the `[[users]]` entry in the config, for `explain` and logs.
    pub fn line(self) -> usize {
        self.user.line as usize
    }

    pub fn has_permissions(self) -> bool {
        !self.permissions().is_empty()
    }

    /// The actions this user holds a permission for, one bit per `Action`.
    fn actions(self) -> u8 {
        self.permissions()
            .iter()
            .fold(0, |bits, p| bits | action_bit(p.action))
    }

    fn permissions(self) -> &'a [StoredPermission] {
        match &self.user.permissions {
            Permissions::One(p) => std::slice::from_ref(p),
            Permissions::Listed(span) => span.of(&self.list.permissions),
        }
    }

    fn path(self, p: &'a StoredPermission) -> PathRef<'a> {
        match &p.path {
            StoredPath::Any => PathRef::Any,
            StoredPath::Exact(span) => PathRef::Exact(span.of(&self.list.text)),
            StoredPath::Regex(re) => PathRef::Regex(re),
        }
    }

    fn ip_allowed(self, ip: Option<IpAddr>) -> bool {
        let ips = self.user.ips.of(&self.list.ips);
        ips.is_empty() || ip.is_some_and(|ip| ips.iter().any(|n| n.contains(&ip)))
    }

    /// Whether this entry admits a client at `ip` to `action` on `path`, credentials aside: what
    /// a reload asks of the entry that let a live session in (`crate::sessions`).
    pub fn admits(self, ip: Option<IpAddr>, action: Action, path: &str) -> bool {
        self.ip_allowed(ip)
            && self
                .permissions()
                .iter()
                .any(|p| permission::grants(p.action, self.path(p), action, path))
    }

    /// MediaMTX's order of checks: IPs, permissions, then user name and password. `Ok(true)`
    /// means everything cheap matched and an argon2 credential remains to be verified.
    /// `user_sha256` is SHA-256 of the request's user name when the caller already has it (the
    /// index lookup computes it), so a `sha256:` name is not hashed twice.
    pub fn check(
        self,
        req: &Request,
        action: Action,
        user_sha256: Option<&[u8; 32]>,
    ) -> Result<bool, Mismatch> {
        if !self.ip_allowed(req.ip) {
            return Err(Mismatch::Ip);
        }
        let granted = self
            .permissions()
            .iter()
            .any(|p| permission::grants(p.action, self.path(p), action, &req.path));
        if !granted {
            return Err(Mismatch::Permission);
        }
        let Some(name) = self.name() else {
            return Ok(false);
        };
        let name_ok = match (name, user_sha256) {
            (CredentialRef::Sha256(d), Some(digest)) => credential::ct_eq(d, digest),
            (CredentialRef::Argon2(_), _) => true, // verified by the caller
            (c, _) => c.verify(&req.user),
        };
        if !name_ok {
            return Err(Mismatch::User);
        }
        if let Some(pass) = self.pass() {
            if !pass.is_argon2() && !pass.verify(&req.password) {
                return Err(Mismatch::Pass);
            }
        }
        Ok(self.needs_argon2())
    }

    /// The client addresses this entry admits (empty: any), as CIDRs.
    pub fn ips(self) -> &'a [IpNet] {
        self.user.ips.of(&self.list.ips)
    }

    /// This entry's permissions as the config writes them: the action, and the path (empty
    /// for any path, `~` before a regex).
    pub fn permissions_written(self) -> Vec<(Action, String)> {
        self.permissions()
            .iter()
            .map(|p| {
                let path = match self.path(p) {
                    PathRef::Any => String::new(),
                    PathRef::Exact(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                    PathRef::Regex(re) => format!("~{}", re.pattern()),
                };
                (p.action, path)
            })
            .collect()
    }

    /// Whether `name` and `password` are this entry's credentials, as far as that can be told
    /// without argon2: `Some(true)` when an argon2 credential remains to verify
    /// (`argon2_checks`), `None` on a mismatch or for user `any`. The portal's sign-in: no
    /// address or permission check (those stay with each link).
    pub fn credentials_match(self, name: &str, password: &str) -> Option<bool> {
        let name_ok = match self.name()? {
            CredentialRef::Argon2(_) => true,
            c => c.verify(name),
        };
        let pass_ok = match self.pass() {
            None => true,
            Some(p) => p.is_argon2() || p.verify(password),
        };
        (name_ok & pass_ok).then(|| self.needs_argon2())
    }

    /// True when this user needs an argon2 computation to check credentials.
    pub fn needs_argon2(self) -> bool {
        matches!(self.user.name, Secret::Argon2(_)) || matches!(self.user.pass, Secret::Argon2(_))
    }

    /// The argon2 hashes of this user with the guess each must be checked against.
    pub fn argon2_checks(self, req: &Request) -> Vec<(Argon2Hash, String)> {
        let mut checks = Vec::new();
        if let Some(CredentialRef::Argon2(h)) = self.name() {
            checks.push((h.clone(), req.user.to_string()));
        }
        if let Some(CredentialRef::Argon2(h)) = self.pass() {
            checks.push((h.clone(), req.password.to_string()));
        }
        checks
    }
}

impl fmt::Debug for User<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name())
            .field("pass", &self.pass())
            .field("line", &self.line())
            .finish_non_exhaustive()
    }
}

fn action_bit(action: Action) -> u8 {
    // Six fieldless variants: bits 0 to 5.
    1 << action as u8
}

/// An `ips` entry as Go's `net.IPNet.Contains` sees it: an IPv4-mapped IPv6 network
/// (`::ffff:192.0.2.0/120`, or the single address `::ffff:192.0.2.7`) is the IPv4 network it
/// maps (`192.0.2.0/24`, `192.0.2.7/32`). Requests' IPs are canonicalised to IPv4
/// (`crate::request::parse_ip`), so a mapped entry left as IPv6 would never match anything,
/// while MediaMTX lets those clients in. As in Go, only a prefix of at least 96 bits whose
/// network address is mapped becomes IPv4; any other IPv6 network stays as it is.
pub fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// The first check a user failed, for `explain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    Ip,
    Permission,
    User,
    Pass,
}

impl Mismatch {
    pub fn as_str(self) -> &'static str {
        match self {
            Mismatch::Ip => "ip not in ips",
            Mismatch::Permission => "no permission for this action and path",
            Mismatch::User => "user does not match",
            Mismatch::Pass => "pass does not match",
        }
    }
}

/// What checking one user found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Position of the user in config order.
    pub index: u32,
    /// Everything cheap matched; an argon2 credential remains to be verified.
    pub needs_argon2: bool,
}

/// An entry of `Users`' name indexes with this bit set is a position in `Users::shared`, not a
/// user's position.
const SHARED: u32 = 1 << 31;

/// All TOML users, in config order, with the name index.
#[derive(Default)]
pub struct Users {
    list: UserList,
    hasher: RandomState,
    /// Plain names: the position of the user with that name, or of its entry in `shared`.
    by_plain: HashTable<u32>,
    /// `sha256:` names by digest, the same way.
    by_sha256: HashTable<u32>,
    /// The users of each name that more than one user has, ascending. Rare, so kept out of the
    /// index's entries, which stay one `u32` each.
    shared: Vec<Vec<u32>>,
    /// `any` and argon2-named users: tried for every request.
    scanned: Vec<u32>,
    /// Plain names, without regard to case (a user holding each): an account source's names
    /// compare without regard to case, so a TOML name shadows every case variant of itself
    /// there (see `shadows`).
    lowercase: HashTable<u32>,
    /// The actions that some user with a name (not `any`) holds a permission for, one bit per
    /// `Action`: a request for another action can never be granted by credentials.
    named_actions: u8,
}

impl Users {
    pub fn new(list: UserList) -> Self {
        let mut users = Users {
            list,
            ..Users::default()
        };
        let Users {
            list,
            hasher,
            by_plain,
            by_sha256,
            shared,
            scanned,
            lowercase,
            named_actions,
        } = &mut users;
        let list = &*list;
        // Sized once, so that building never rehashes what it has filed.
        let count = |kind: fn(&Secret) -> bool| list.users.iter().filter(|u| kind(&u.name)).count();
        let plain = count(|s| matches!(s, Secret::Plain(_)));
        *by_plain = HashTable::with_capacity(plain);
        *lowercase = HashTable::with_capacity(plain);
        *by_sha256 = HashTable::with_capacity(count(|s| matches!(s, Secret::Sha256(_))));
        let mut lowered = Vec::new();
        for i in 0..position(list.len()) {
            let user = list.get(i);
            match user.user.name {
                Secret::Nothing => {}
                _ => *named_actions |= user.actions(),
            }
            match user.user.name {
                Secret::Plain(_) => {
                    let name = list.plain_name(i);
                    index_insert(by_plain, shared, hasher, |u| list.plain_name(u), name, i);
                    // Plain names are ASCII (MediaMTX's charset), so ASCII lowering is the whole
                    // of their lower case.
                    lowered.clear();
                    lowered.extend(name.iter().map(u8::to_ascii_lowercase));
                    let hash = hasher.hash_one(&lowered[..]);
                    let same = |&u: &u32| list.plain_name(u).eq_ignore_ascii_case(&lowered);
                    if lowercase.find(hash, same).is_none() {
                        let rehash = |&u: &u32| lowered_hash(hasher, list.plain_name(u));
                        lowercase.insert_unique(hash, i, rehash);
                    }
                }
                Secret::Sha256(_) => {
                    let digest = list.name_digest(i);
                    index_insert(
                        by_sha256,
                        shared,
                        hasher,
                        |u| list.name_digest(u),
                        digest,
                        i,
                    );
                }
                Secret::Nothing | Secret::Argon2(_) => scanned.push(i),
            }
        }
        by_plain.shrink_to_fit(|&e| hasher.hash_one(list.plain_name(head(shared, e))));
        by_sha256.shrink_to_fit(|&e| hasher.hash_one(list.name_digest(head(shared, e))));
        lowercase.shrink_to_fit(|&u| lowered_hash(hasher, list.plain_name(u)));
        scanned.shrink_to_fit();
        users
    }

    /// The users named `name` (plain), ascending.
    fn plain_users(&self, name: &[u8]) -> &[u32] {
        let list = &self.list;
        index_get(
            &self.by_plain,
            &self.shared,
            &self.hasher,
            |u| list.plain_name(u),
            name,
        )
    }

    /// The users whose `sha256:` name is `digest`, ascending.
    fn sha256_users(&self, digest: &[u8; 32]) -> &[u32] {
        let list = &self.list;
        index_get(
            &self.by_sha256,
            &self.shared,
            &self.hasher,
            |u| list.name_digest(u),
            digest,
        )
    }

    /// Whether a user with this plain or `sha256:` name is configured. Account sources leave
    /// such names alone: a TOML user always wins over a remote account of the same name.
    pub fn has_name(&self, name: &str) -> bool {
        !self.plain_users(name.as_bytes()).is_empty()
            || (!self.by_sha256.is_empty()
                && !self
                    .sha256_users(&<[u8; 32]>::from(Sha256::digest(name.as_bytes())))
                    .is_empty())
    }

    /// Whether a login with this name belongs to the TOML users rather than to an account
    /// source: the name itself (plain or `sha256:`), or any case variant of a plain name.
    /// Jellyfin, Emby, Plex and most identity providers compare names without regard to case,
    /// so `ADMIN` there is the same account as `admin`; were only the exact spelling shadowed,
    /// `Admin` with the TOML password would send that password upstream, and `ADMIN` with the
    /// media server admin's password would be let in beside the TOML `admin`. (A `sha256:` name
    /// shadows its exact spelling only: its case variants cannot be known.)
    pub fn shadows(&self, name: &str) -> bool {
        if self.has_name(name) {
            return true;
        }
        // Full Unicode lowering, as the account sources' servers do: the Kelvin sign lowers to
        // an ASCII `k`, so `\u{212A}ate` is `kate` there.
        let lowered = name.to_lowercase();
        let hash = self.hasher.hash_one(lowered.as_bytes());
        self.lowercase
            .find(hash, |&u| {
                self.list
                    .plain_name(u)
                    .eq_ignore_ascii_case(lowered.as_bytes())
            })
            .is_some()
    }

    /// The entries a sign-in with this name may be, in config order: those with this plain or
    /// `sha256:` name, and those whose name is an argon2 hash (which only argon2 can tell).
    pub fn entries_named(&self, name: &str) -> Vec<u32> {
        let mut out: Vec<u32> = self.plain_users(name.as_bytes()).to_vec();
        if !self.by_sha256.is_empty() {
            out.extend_from_slice(
                self.sha256_users(&<[u8; 32]>::from(Sha256::digest(name.as_bytes()))),
            );
        }
        out.extend(
            self.scanned
                .iter()
                .copied()
                .filter(|&i| matches!(self.get(i).name(), Some(CredentialRef::Argon2(_)))),
        );
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Whether some user with credentials (not `any`) may ever be granted `action`: if none
    /// may, a denied request for it was denied by the config, not by a wrong guess.
    pub fn credentials_grant(&self, action: Action) -> bool {
        self.named_actions & action_bit(action) != 0
    }

    pub fn get(&self, index: u32) -> User<'_> {
        self.list.get(index)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The first user at or after `from`, in config order, whose IPs and permissions match and
    /// whose plain/sha256 credentials check. If it also has an argon2 credential, the caller
    /// must verify that before allowing, and continue from `index + 1` if it fails.
    pub fn next_match(&self, req: &Request, from: u32) -> Option<Candidate> {
        let action = req.action?;
        // The index only narrows the search: `User::check` then compares every credential
        // in constant time, as if it had been reached by a scan.
        let plain = self.plain_users(req.user.as_bytes());
        let digest = (!self.by_sha256.is_empty())
            .then(|| <[u8; 32]>::from(Sha256::digest(req.user.as_bytes())));
        let hashed = digest.as_ref().map_or(&[][..], |d| self.sha256_users(d));
        let mut lists = [plain, hashed, &self.scanned];
        for list in &mut lists {
            *list = &list[list.partition_point(|&i| i < from)..];
        }
        while let Some(index) = pop_smallest(&mut lists) {
            if let Ok(needs_argon2) = self.get(index).check(req, action, digest.as_ref()) {
                return Some(Candidate {
                    index,
                    needs_argon2,
                });
            }
        }
        None
    }
}

/// Counts only: the list holds names and passwords.
impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("list", &self.list)
            .field("scanned", &self.scanned.len())
            .finish_non_exhaustive()
    }
}

/// The user an index entry stands for: itself, or the first of its shared list.
fn head(shared: &[Vec<u32>], entry: u32) -> u32 {
    if entry & SHARED == 0 {
        entry
    } else {
        shared[(entry & !SHARED) as usize][0]
    }
}

/// The hash `Users::lowercase` files a plain name under: that of its lower case.
fn lowered_hash(hasher: &RandomState, name: &[u8]) -> u64 {
    hasher.hash_one(&name.to_ascii_lowercase()[..])
}

/// Adds user `user`, whose key (name or digest) is `key`, to a name index. `key_of` gives the
/// key of any user already in it; keys are hashed as byte slices on both sides.
fn index_insert<'k>(
    table: &mut HashTable<u32>,
    shared: &mut Vec<Vec<u32>>,
    hasher: &RandomState,
    key_of: impl Fn(u32) -> &'k [u8],
    key: &[u8],
    user: u32,
) {
    let hash = hasher.hash_one(key);
    let entry = table.entry(
        hash,
        |&e| key_of(head(shared, e)) == key,
        |&e| hasher.hash_one(key_of(head(shared, e))),
    );
    match entry {
        Entry::Vacant(v) => {
            v.insert(user);
        }
        Entry::Occupied(mut o) => {
            let e = *o.get();
            if e & SHARED == 0 {
                *o.get_mut() = SHARED | position(shared.len());
                shared.push(vec![e, user]);
            } else {
                shared[(e & !SHARED) as usize].push(user);
            }
        }
    }
}

/// The users with key `key` in a name index, ascending; see `index_insert`.
fn index_get<'a, 'k>(
    table: &'a HashTable<u32>,
    shared: &'a [Vec<u32>],
    hasher: &RandomState,
    key_of: impl Fn(u32) -> &'k [u8],
    key: &[u8],
) -> &'a [u32] {
    let hash = hasher.hash_one(key);
    match table.find(hash, |&e| key_of(head(shared, e)) == key) {
        None => &[],
        Some(e) if e & SHARED == 0 => std::slice::from_ref(e),
        Some(e) => &shared[(e & !SHARED) as usize],
    }
}

/// Removes and returns the smallest head of three ascending lists.
fn pop_smallest(lists: &mut [&[u32]; 3]) -> Option<u32> {
    let (pos, &head) = lists
        .iter()
        .enumerate()
        .filter_map(|(pos, l)| l.first().map(|h| (pos, h)))
        .min_by_key(|&(_, h)| *h)?;
    lists[pos] = &lists[pos][1..];
    Some(head)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn users(toml: &str) -> Users {
        Users::new(Config::parse(toml, "t.toml").unwrap().users)
    }

    fn first(users: &Users, req: &Request) -> Option<u32> {
        users.next_match(req, 0).map(|c| c.index)
    }

    #[test]
    fn mapped_networks_become_ipv4_as_in_go() {
        let c = |s: &str| canonical_net(s.parse().unwrap()).to_string();
        assert_eq!(c("::ffff:192.0.2.0/120"), "192.0.2.0/24");
        assert_eq!(c("::ffff:192.0.2.7/128"), "192.0.2.7/32");
        assert_eq!(c("::ffff:192.0.2.77/120"), "192.0.2.0/24");
        assert_eq!(c("::ffff:0:0/96"), "0.0.0.0/0");
        // Shorter prefixes mask the ffff away in Go too: they stay IPv6.
        assert_eq!(c("::ffff:192.0.2.0/88"), "::ffff:192.0.2.0/88");
        assert_eq!(c("::/0"), "::/0");
        assert_eq!(c("2001:db8::/32"), "2001:db8::/32");
        assert_eq!(c("10.0.0.0/8"), "10.0.0.0/8");
    }

    #[test]
    fn first_match_in_config_order_across_index_kinds() {
        let u = users(
            r#"
[[users]]
user = "alice"
pass = "one"
permissions = [{ action = "read", path = "a" }]
[[users]]
user = "any"
permissions = [{ action = "read", path = "b" }]
[[users]]
user = "sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ="
permissions = [{ action = "read" }]
[[users]]
user = "alice"
permissions = [{ action = "read" }]
[[users]]
user = "any"
permissions = [{ action = "publish" }]
"#,
        );
        let req = |path, user, pass| Request::new(Action::Read, path, "1.2.3.4", user, pass);
        assert_eq!(first(&u, &req("a", "alice", "one")), Some(0));
        assert_eq!(first(&u, &req("a", "alice", "two")), Some(3));
        assert_eq!(first(&u, &req("b", "alice", "two")), Some(1));
        assert_eq!(first(&u, &req("c", "testuser", "x")), Some(2));
        assert_eq!(first(&u, &req("c", "bob", "x")), None);
        assert_eq!(u.next_match(&req("a", "alice", "two"), 4), None);
        let publish = Request::new(Action::Publish, "x", "1.2.3.4", "", "");
        assert_eq!(first(&u, &publish), Some(4));
    }

    #[test]
    fn hundred_thousand_users_resolve_by_index() {
        let mut text = String::new();
        for i in 0..100_000 {
            text.push_str(&format!(
                "[[users]]\nuser = \"user{i}\"\npass = \"pass{i}\"\npermissions = [{{ action = \"read\" }}]\n"
            ));
        }
        let u = users(&text);
        let ok = Request::new(Action::Read, "cam", "10.0.0.1", "user99999", "pass99999");
        assert_eq!(first(&u, &ok), Some(99_999));
        let wrong = Request::new(Action::Read, "cam", "10.0.0.1", "user99999", "pass1");
        assert_eq!(first(&u, &wrong), None);
    }

    #[test]
    fn argon2_users_are_left_to_the_caller() {
        let u = users(
            r#"
[[users]]
user = "bob"
pass = "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo"
permissions = [{ action = "read" }]
"#,
        );
        let req = Request::new(Action::Read, "cam", "10.0.0.1", "bob", "whatever");
        let c = u.next_match(&req, 0).unwrap();
        assert!(c.needs_argon2);
        assert_eq!(u.get(0).argon2_checks(&req).len(), 1);
    }

    #[test]
    fn users_sharing_a_name_are_tried_in_config_order() {
        let sha = "sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ="; // testuser
        let mut text = String::new();
        for (user, pass) in [
            ("bob", "one"),
            (sha, "a"),
            ("bob", "two"),
            ("carol", "x"),
            (sha, "b"),
            ("bob", "one"),
        ] {
            text.push_str(&format!(
                "[[users]]\nuser = \"{user}\"\npass = \"{pass}\"\npermissions = [{{ action = \"read\" }}]\n"
            ));
        }
        let u = users(&text);
        let req = |user, pass| Request::new(Action::Read, "cam", "10.0.0.1", user, pass);
        let all = |req: &Request| {
            let mut found = Vec::new();
            let mut from = 0;
            while let Some(c) = u.next_match(req, from) {
                found.push(c.index);
                from = c.index + 1;
            }
            found
        };
        assert_eq!(all(&req("bob", "one")), [0, 5]);
        assert_eq!(all(&req("bob", "two")), [2]);
        assert_eq!(all(&req("carol", "x")), [3]);
        assert_eq!(all(&req("testuser", "b")), [4]);
        assert_eq!(all(&req("testuser", "a")), [1]);
        assert!(all(&req("Bob", "one")).is_empty());
        assert!(u.has_name("bob") && u.has_name("testuser") && !u.has_name("Bob"));
    }

    #[test]
    fn a_name_shadows_its_case_variants() {
        let u = users(
            "[[users]]\nuser = \"Kate\"\npermissions = [{ action = \"read\" }]\n\
             [[users]]\nuser = \"sha256:rl3rgi4NcZkpAEcacZnQ2VuOfJ0FxAqCRaKB/SwdZoQ=\"\n\
             permissions = [{ action = \"read\" }]\n",
        );
        for name in ["Kate", "kate", "KATE", "kAtE", "\u{212A}ate", "testuser"] {
            assert!(u.shadows(name), "{name}");
        }
        // A sha256 name shadows its exact spelling only; other names shadow nothing.
        for name in ["TESTUSER", "kat", "kates", "", "kate\u{0}"] {
            assert!(!u.shadows(name), "{name:?}");
        }
    }

    #[test]
    fn stored_users_keep_every_permission_and_address() {
        let u = users(
            r#"
[[users]]
user = "none"
[[users]]
user = "one"
ips = ["10.0.0.0/8"]
permissions = [{ action = "publish", path = "cam" }]
[[users]]
user = "many"
ips = ["192.0.2.1", "::ffff:198.51.100.0/120"]
permissions = [
  { action = "read", path = "a" },
  { action = "playback", path = "~^rec/" },
  { action = "api", path = "ignored" },
]
"#,
        );
        let check = |user, action, path: &str, ip| {
            u.get(match user {
                "none" => 0,
                "one" => 1,
                _ => 2,
            })
            .check(&Request::new(action, path, ip, user, ""), action, None)
        };
        assert_eq!(
            check("none", Action::Read, "", "10.0.0.1"),
            Err(Mismatch::Permission)
        );
        assert!(!u.get(0).has_permissions() && u.get(1).has_permissions());
        assert_eq!(check("one", Action::Publish, "cam", "10.1.2.3"), Ok(false));
        assert_eq!(
            check("one", Action::Publish, "cam", "11.0.0.1"),
            Err(Mismatch::Ip)
        );
        assert_eq!(
            check("one", Action::Publish, "cam2", "10.0.0.1"),
            Err(Mismatch::Permission)
        );
        assert_eq!(check("many", Action::Read, "a", "192.0.2.1"), Ok(false));
        assert_eq!(
            check("many", Action::Playback, "rec/1", "198.51.100.7"),
            Ok(false)
        );
        assert_eq!(check("many", Action::Api, "", "192.0.2.1"), Ok(false));
        assert_eq!(
            check("many", Action::Playback, "a", "192.0.2.1"),
            Err(Mismatch::Permission)
        );
        assert_eq!(
            check("many", Action::Read, "a", "192.0.2.2"),
            Err(Mismatch::Ip)
        );
        assert_eq!(u.get(2).line(), 8);
        assert!(u.credentials_grant(Action::Api) && !u.credentials_grant(Action::Metrics));
    }

    #[test]
    fn users_with_the_same_pattern_share_one_compiled_regex() {
        let mut text = String::new();
        for i in 0..6 {
            let n = i % 2;
            text.push_str(&format!(
                "[[users]]\nuser = \"u{i}\"\npermissions = [{{ action = \"read\", path = \"~^cam{n}/\" }}]\n"
            ));
        }
        let u = users(&text);
        let regex = |i: u32| match &u.get(i).permissions()[0].path {
            StoredPath::Regex(re) => Arc::clone(re),
            other => panic!("not a regex: {other:?}"),
        };
        assert!(Arc::ptr_eq(&regex(0), &regex(2)) && Arc::ptr_eq(&regex(0), &regex(4)));
        assert!(Arc::ptr_eq(&regex(1), &regex(5)));
        assert!(!Arc::ptr_eq(&regex(0), &regex(1)));
        let req = Request::new(Action::Read, "cam1/x", "10.0.0.1", "u3", "");
        assert_eq!(first(&u, &req), Some(3));
        let req = Request::new(Action::Read, "cam1/x", "10.0.0.1", "u2", "");
        assert_eq!(first(&u, &req), None);
    }

    #[test]
    fn a_user_record_stays_small() {
        // 100,000 users: 6.1 MiB of records. Anything variable-length belongs in the buffers.
        assert!(std::mem::size_of::<StoredUser>() <= 64);
    }

    #[test]
    fn unknown_action_matches_nobody() {
        let u = users("[[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n");
        let mut req = Request::new(Action::Read, "", "", "", "");
        req.action = None;
        assert_eq!(first(&u, &req), None);
    }
}
