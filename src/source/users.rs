//! The TOML users source: MediaMTX's `authInternalUsers`, to the letter.
//!
//! Users are tried in config order and the first that matches allows. For each user, MediaMTX
//! checks the IP list, then the permissions, then (unless the user is `any`) user name and
//! password. With 100,000 users a linear scan per request would be too slow, so users are
//! indexed: a plain user name maps to the users with that name, a `sha256:` name to the users
//! with that digest. Only `any` and `argon2:` names (salted, so not indexable) are tried for every
//! request. Merging these sorted lists keeps first-match-wins order exactly.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use sha2::{Digest, Sha256};

use crate::credential::{self, Credential};
use crate::permission::{self, Action, Permission};
use crate::request::Request;

/// One `[[users]]` entry, checked.
#[derive(Debug)]
pub struct User {
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

impl User {
    fn ip_allowed(&self, ip: Option<IpAddr>) -> bool {
        self.ips.is_empty() || ip.is_some_and(|ip| self.ips.iter().any(|n| n.contains(&ip)))
    }

    /// MediaMTX's order of checks: IPs, permissions, then user name and password. `Ok(true)`
    /// means everything cheap matched and an argon2 credential remains to be verified.
    /// `user_sha256` is SHA-256 of the request's user name when the caller already has it (the
    /// index lookup computes it), so a `sha256:` name is not hashed twice.
    pub fn check(
        &self,
        req: &Request,
        action: Action,
        user_sha256: Option<&[u8; 32]>,
    ) -> Result<bool, Mismatch> {
        if !self.ip_allowed(req.ip) {
            return Err(Mismatch::Ip);
        }
        if !permission::any_matches(&self.permissions, action, &req.path) {
            return Err(Mismatch::Permission);
        }
        let name = match &self.name {
            UserName::Any => return Ok(false),
            UserName::Credential(c) => c,
        };
        let name_ok = match (name, user_sha256) {
            (Credential::Sha256(d), Some(digest)) => credential::ct_eq(d, digest),
            (Credential::Argon2(_), _) => true, // verified by the caller
            (c, _) => c.verify(&req.user),
        };
        if !name_ok {
            return Err(Mismatch::User);
        }
        if let Some(pass) = &self.pass {
            if !pass.is_argon2() && !pass.verify(&req.password) {
                return Err(Mismatch::Pass);
            }
        }
        Ok(self.needs_argon2())
    }

    /// True when this user needs an argon2 computation to check credentials.
    pub fn needs_argon2(&self) -> bool {
        matches!(&self.name, UserName::Credential(c) if c.is_argon2())
            || self.pass.as_ref().is_some_and(Credential::is_argon2)
    }

    /// The argon2 hashes of this user with the guess each must be checked against.
    pub fn argon2_checks(&self, req: &Request) -> Vec<(crate::credential::Argon2Hash, String)> {
        let mut checks = Vec::new();
        if let UserName::Credential(Credential::Argon2(h)) = &self.name {
            checks.push((h.clone(), req.user.to_string()));
        }
        if let Some(Credential::Argon2(h)) = &self.pass {
            checks.push((h.clone(), req.password.to_string()));
        }
        checks
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

/// All TOML users, in config order, with the name index.
#[derive(Debug, Default)]
pub struct Users {
    list: Vec<User>,
    by_plain: HashMap<String, Vec<u32>>,
    by_sha256: HashMap<[u8; 32], Vec<u32>>,
    /// `any` and argon2-named users: tried for every request.
    scanned: Vec<u32>,
    /// Plain names, lower-cased: an account source's names compare without regard to case, so
    /// a TOML name shadows every case variant of itself there (see `shadows`).
    lowercase: HashSet<String>,
    /// The actions that some user with a name (not `any`) holds a permission for, one bit per
    /// `Action`: a request for another action can never be granted by credentials.
    named_actions: u8,
}

impl Users {
    pub fn new(list: Vec<User>) -> Self {
        let mut users = Users::default();
        for (i, u) in list.iter().enumerate() {
            let i = i as u32;
            if !matches!(u.name, UserName::Any) {
                for p in &u.permissions {
                    users.named_actions |= action_bit(p.action);
                }
            }
            match &u.name {
                UserName::Credential(Credential::Plain(name)) => {
                    users.lowercase.insert(name.to_lowercase());
                    users.by_plain.entry(name.clone()).or_default().push(i)
                }
                UserName::Credential(Credential::Sha256(d)) => {
                    users.by_sha256.entry(*d).or_default().push(i)
                }
                UserName::Any | UserName::Credential(Credential::Argon2(_)) => {
                    users.scanned.push(i)
                }
            }
        }
        users.list = list;
        users
    }

    /// Whether a user with this plain or `sha256:` name is configured. Account sources leave
    /// such names alone: a TOML user always wins over a remote account of the same name.
    pub fn has_name(&self, name: &str) -> bool {
        self.by_plain.contains_key(name)
            || (!self.by_sha256.is_empty()
                && self
                    .by_sha256
                    .contains_key(&<[u8; 32]>::from(Sha256::digest(name.as_bytes()))))
    }

    /// Whether a login with this name belongs to the TOML users rather than to an account
    /// source: the name itself (plain or `sha256:`), or any case variant of a plain name.
    /// Jellyfin, Emby, Plex and most identity providers compare names without regard to case,
    /// so `ADMIN` there is the same account as `admin`; were only the exact spelling shadowed,
    /// `Admin` with the TOML password would send that password upstream, and `ADMIN` with the
    /// media server admin's password would be let in beside the TOML `admin`. (A `sha256:` name
    /// shadows its exact spelling only: its case variants cannot be known.)
    pub fn shadows(&self, name: &str) -> bool {
        self.has_name(name) || self.lowercase.contains(&name.to_lowercase())
    }

    /// Whether some user with credentials (not `any`) may ever be granted `action`: if none
    /// may, a denied request for it was denied by the config, not by a wrong guess.
    pub fn credentials_grant(&self, action: Action) -> bool {
        self.named_actions & action_bit(action) != 0
    }

    pub fn get(&self, index: u32) -> &User {
        &self.list[index as usize]
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
        let empty: &[u32] = &[];
        // The index only narrows the search: `User::check` then compares every credential
        // in constant time, as if it had been reached by a scan.
        let plain = self
            .by_plain
            .get(req.user.as_ref())
            .map_or(empty, Vec::as_slice);
        let digest = (!self.by_sha256.is_empty())
            .then(|| <[u8; 32]>::from(Sha256::digest(req.user.as_bytes())));
        let hashed = digest
            .as_ref()
            .and_then(|d| self.by_sha256.get(d))
            .map_or(empty, Vec::as_slice);
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
    fn unknown_action_matches_nobody() {
        let u = users("[[users]]\nuser = \"any\"\npermissions = [{ action = \"read\" }]\n");
        let mut req = Request::new(Action::Read, "", "", "", "");
        req.action = None;
        assert_eq!(first(&u, &req), None);
    }
}
