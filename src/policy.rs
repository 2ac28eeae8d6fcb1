//! The decision: a checked config plus the caches, answering one request at a time.
//!
//! `Policy` knows nothing of HTTP or async runtimes. Because argon2 costs milliseconds, a
//! decision is a small state machine: `begin` returns either a final `Decision` or a
//! `Verify` step carrying the argon2 work; whoever drives it runs that work where it suits them
//! (inline in `decide`, on a bounded blocking pool in the server, see `crate::verifier`) and
//! hands the result to `resume`. Successful argon2 verifications are remembered in a bounded
//! cache keyed by a keyed 128-bit SipHash of (user, name, password), never the plaintext, so a
//! viewer's next request costs a lookup.

use std::sync::Arc;

use crate::cache::{SecretHasher, TtlMap};
use crate::config::{Config, MediamtxConfig, ServerConfig};
use crate::credential::{Argon2Hash, CredentialRef};
use crate::decision::{AccountDeny, JwtError};
pub use crate::decision::{Decision, DenyReason, Grant, Source, UserRule};
use crate::portal::config::PortalConfig;
use crate::request::Request;
use crate::source::account::{AccountSource, Credentials, Lookup, OwnedCredentials};
use crate::source::jwt::{Jwt, JwtOutcome};
use crate::source::users::Users;
use crate::store::StoreConfig;

/// Where a decision stands.
pub enum Step {
    Done(Decision),
    /// argon2 work to run before the decision can go on.
    Verify(Argon2Work, Resume),
    /// The request's JWT names a key id we do not have: refetch the key set if allowed
    /// (`KeyStore::refetch_for_unknown_kid`), then call `resume_after_refetch`.
    RefetchKeys,
    /// An account source must ask its upstream: `AccountSource::fetch`, then `resume_account`.
    Account(AccountCall),
}

/// An upstream call to make for an account source.
pub struct AccountCall {
    /// Index into `Policy::accounts`.
    pub source: usize,
    pub key: u128,
    pub creds: OwnedCredentials,
    progress: Progress,
}

/// What the account sources asked so far have said, carried across steps.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    argon2_ran: bool,
    /// The first source that could not be asked or refused a login as rate-limited: the deny
    /// reason if no later source allows.
    failed: Option<(Source, AccountDeny)>,
}

/// argon2 verifications to run; owns its data so it can move to another thread.
pub struct Argon2Work {
    checks: Vec<(Argon2Hash, String)>,
}

impl Argon2Work {
    /// Verifications of `guess`es against `hash`es (the portal's sign-in builds its own).
    pub fn new(checks: Vec<(Argon2Hash, String)>) -> Self {
        Argon2Work { checks }
    }

    /// Runs every check (milliseconds each). True when all passed.
    pub fn run(self) -> bool {
        // Every check runs, even after a failure, so the time spent does not tell which failed.
        self.checks
            .into_iter()
            .fold(true, |ok, (hash, guess)| hash.verify(&guess) & ok)
    }
}

/// What `resume` needs to know about the work that ran.
pub struct Resume {
    index: u32,
    cache_key: u128,
    /// The work was the decoy verification of this deny; its result is irrelevant.
    decoy: Option<DenyReason>,
}

/// A ready-to-use configuration: users, index and caches.
pub struct Policy {
    users: Users,
    server: ServerConfig,
    verified: TtlMap<u128, ()>,
    hasher: SecretHasher,
    /// Same cost as the configured argon2 passwords; see `Argon2Hash::decoy`.
    decoy: Option<Argon2Hash>,
    jwt: Option<Jwt>,
    accounts: Vec<Arc<AccountSource>>,
    grants_nothing: bool,
    /// `[store]` and `[mediamtx]` as this config has them: read once at start
    /// (`crate::state`), kept here so a reload can say when they changed.
    process: ProcessSections,
}

/// The sections read once at start (`crate::state`), kept with the policy so a reload can say
/// when they changed: `[store]`, `[mediamtx]`, `[portal]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessSections {
    pub store: Option<StoreConfig>,
    pub mediamtx: Option<MediamtxConfig>,
    pub portal: Option<std::sync::Arc<PortalConfig>>,
}

impl Policy {
    pub fn new(config: Config) -> Self {
        let grants_nothing = config.grants_nothing();
        let decoy = config
            .users
            .iter()
            .find_map(|u| match (u.pass(), u.name()) {
                (Some(CredentialRef::Argon2(h)), _) | (_, Some(CredentialRef::Argon2(h))) => {
                    Some(h.decoy())
                }
                _ => None,
            });
        Policy {
            users: Users::new(config.users),
            verified: TtlMap::new(config.server.cache_capacity, config.server.cache_ttl),
            server: config.server,
            hasher: SecretHasher::random(),
            decoy,
            jwt: config.jwt.map(Jwt::new),
            accounts: config
                .accounts
                .into_iter()
                .map(|a| Arc::new(AccountSource::from_config(a)))
                .collect(),
            grants_nothing,
            process: ProcessSections {
                store: config.store,
                mediamtx: config.mediamtx,
                portal: config.portal.map(Arc::new),
            },
        }
    }

    /// `[store]`, `[mediamtx]` and `[portal]` as this config has them (they apply on restart).
    pub fn process_sections(&self) -> &ProcessSections {
        &self.process
    }

    /// The account sources, in the order they are asked.
    pub fn accounts(&self) -> &[Arc<AccountSource>] {
        &self.accounts
    }

    /// A verification as costly as the config's argon2 passwords, for a sign-in whose name
    /// matched nobody: its time must not say so. `None` when no password is argon2.
    pub fn decoy(&self) -> Option<Argon2Work> {
        let hash = self.decoy.clone()?;
        Some(Argon2Work::new(vec![(hash, String::new())]))
    }

    pub fn jwt(&self) -> Option<&Jwt> {
        self.jwt.as_ref()
    }

    /// Continues a decision after a key refetch; `changed` says whether new keys arrived.
    pub fn resume_after_refetch(&self, req: &Request, changed: bool) -> Step {
        if changed {
            self.after_users(req, true, false)
        } else {
            Step::Done(Decision::Deny(DenyReason::Jwt(JwtError::UnknownKey)))
        }
    }

    /// Whether any source could accept credentials for this request's action: a `[[users]]`
    /// entry with a name holding a permission for it, `[jwt]`, or an account source. When none
    /// could, a deny is the operator's config speaking (an empty or half-written file), not a
    /// wrong guess, and the brute-force limiter must not count it against the client. Depends on
    /// the action only, never on the name sent, so it tells nobody which names exist.
    pub fn accepts_credentials(&self, req: &Request) -> bool {
        self.jwt.is_some()
            || !self.accounts.is_empty()
            || req
                .action
                .is_some_and(|action| self.users.credentials_grant(action))
    }

    /// See `Config::grants_nothing`.
    pub fn grants_nothing(&self) -> bool {
        self.grants_nothing
    }

    pub fn server(&self) -> &ServerConfig {
        &self.server
    }

    pub fn users(&self) -> &Users {
        &self.users
    }

    /// Starts a decision.
    pub fn begin(&self, req: &Request) -> Step {
        if req.action.is_none() {
            return Step::Done(Decision::Deny(DenyReason::UnknownAction));
        }
        self.search(req, 0, false)
    }

    /// Continues a decision after its argon2 work ran.
    pub fn resume(&self, req: &Request, resume: Resume, passed: bool) -> Step {
        if let Some(reason) = resume.decoy {
            return Step::Done(Decision::Deny(reason));
        }
        if passed {
            self.verified.insert(resume.cache_key, ());
            return Step::Done(self.allow(req, resume.index, false));
        }
        self.search(req, resume.index + 1, true)
    }

    /// Continues a decision after an account source's upstream call; `answer` is what
    /// `AccountSource::fetch` returned.
    pub fn resume_account(&self, req: &Request, call: AccountCall, answer: Lookup) -> Step {
        let mut progress = call.progress;
        if let Some(step) = self.account_answer(req, call.source, answer, false, &mut progress) {
            return step;
        }
        self.accounts_from(req, call.source + 1, progress)
    }

    /// Runs a whole decision on this thread, argon2 included, without network: an account
    /// source that would have to ask its upstream counts as unreachable. For tests and benches;
    /// the server uses `crate::verifier`, which keeps argon2 off its async workers and makes the
    /// upstream calls.
    pub fn decide(&self, req: &Request) -> Decision {
        let mut step = self.begin(req);
        loop {
            match step {
                Step::Done(d) => return d,
                Step::Verify(work, resume) => {
                    let passed = work.run();
                    step = self.resume(req, resume, passed);
                }
                // No fetching here: an unknown key id stays unknown.
                Step::RefetchKeys => step = self.resume_after_refetch(req, false),
                Step::Account(call) => {
                    step = self.resume_account(req, call, Lookup::Unreachable);
                }
            }
        }
    }

    fn search(&self, req: &Request, from: u32, argon2_ran: bool) -> Step {
        let Some(found) = self.users.next_match(req, from) else {
            return self.after_users(req, argon2_ran, true);
        };
        if !found.needs_argon2 {
            return Step::Done(self.allow(req, found.index, false));
        }
        let cache_key = self.cache_key(found.index, req);
        if self.verified.get(&cache_key).is_some() {
            return Step::Done(self.allow(req, found.index, true));
        }
        let checks = self.users.get(found.index).argon2_checks(req);
        Step::Verify(
            Argon2Work { checks },
            Resume {
                index: found.index,
                cache_key,
                decoy: None,
            },
        )
    }

    /// No TOML user matched: the JWT source, then the final deny.
    fn after_users(&self, req: &Request, argon2_ran: bool, may_refetch: bool) -> Step {
        if let (Some(jwt), Some(action)) = (&self.jwt, req.action) {
            match jwt.check(req, action) {
                JwtOutcome::NoToken => {}
                JwtOutcome::Allow {
                    identity,
                    cached,
                    ends_at,
                } => {
                    return Step::Done(Decision::Allow {
                        user: identity,
                        source: Source::Jwt,
                        rule: None,
                        cached,
                        grant: Grant::Jwt { ends_at },
                    })
                }
                JwtOutcome::Deny(JwtError::UnknownKey) if may_refetch => return Step::RefetchKeys,
                JwtOutcome::Deny(e) => return Step::Done(Decision::Deny(DenyReason::Jwt(e))),
            }
        }
        let progress = Progress {
            argon2_ran,
            failed: None,
        };
        self.accounts_from(req, 0, progress)
    }

    /// Asks the account sources from `from` on, in config order. The first that recognises the
    /// credentials decides; one that rejects them passes the request on.
    fn accounts_from(&self, req: &Request, from: usize, mut progress: Progress) -> Step {
        if let Some(creds) = Credentials::of(req) {
            // A TOML user always wins over a remote account with the same name, in any case
            // (`Users::shadows`): its password never travels upstream. Checked only before an
            // upstream call: the caches hold nothing else.
            let mut toml_name = None;
            for (i, source) in self.accounts.iter().enumerate().skip(from) {
                if !source.accepts(&creds) {
                    continue;
                }
                match source.lookup(&creds) {
                    Lookup::Miss(key) => {
                        let taken = *toml_name.get_or_insert_with(|| {
                            matches!(creds, Credentials::Login { user, .. } if self.users.shadows(user))
                        });
                        if taken {
                            break;
                        }
                        return Step::Account(AccountCall {
                            source: i,
                            key,
                            creds: creds.to_owned(),
                            progress,
                        });
                    }
                    answer => {
                        if let Some(step) = self.account_answer(req, i, answer, true, &mut progress)
                        {
                            return step;
                        }
                    }
                }
            }
        }
        let reason = match progress.failed {
            Some((source, deny)) => DenyReason::Account(source, deny),
            None => self.deny_reason(req),
        };
        match &self.decoy {
            // A deny that ran no argon2 would be quicker than a wrong password for a
            // known argon2 user; burn the same time so timing does not reveal user names.
            Some(decoy) if !progress.argon2_ran && req.has_credentials() => Step::Verify(
                Argon2Work {
                    checks: vec![(decoy.clone(), req.password.to_string())],
                },
                Resume {
                    index: u32::MAX,
                    cache_key: 0,
                    decoy: Some(reason),
                },
            ),
            _ => Step::Done(Decision::Deny(reason)),
        }
    }

    /// Applies an account source's answer: a final step, or `None` to ask the next source.
    fn account_answer(
        &self,
        req: &Request,
        index: usize,
        answer: Lookup,
        cached: bool,
        progress: &mut Progress,
    ) -> Option<Step> {
        let source = &self.accounts[index];
        let failed = match answer {
            Lookup::Granted { grant, stale } => {
                return Some(Step::Done(match source.permits(&grant, req) {
                    Ok(()) => Decision::Allow {
                        user: grant.name.clone(),
                        source: source.kind,
                        rule: None,
                        cached: cached || stale,
                        grant: Grant::Account {
                            recheck: grant.recheck.clone(),
                        },
                    },
                    Err(deny) => Decision::Deny(DenyReason::Account(source.kind, deny)),
                }))
            }
            Lookup::Rejected => return None,
            Lookup::Limited => AccountDeny::TooManyFailures,
            // `fetch` never answers `Miss`; if it did, fail closed.
            Lookup::Unreachable | Lookup::Miss(_) => AccountDeny::Unreachable,
        };
        progress.failed.get_or_insert((source.kind, failed));
        None
    }

    /// Keyed hash of what a cached verification vouches for. The key is random per process, so
    /// the cache never holds anything from which a password could be guessed offline.
    fn cache_key(&self, index: u32, req: &Request) -> u128 {
        self.hasher.hash(
            0,
            &[
                &index.to_le_bytes(),
                req.user.as_bytes(),
                req.password.as_bytes(),
            ],
        )
    }

    fn allow(&self, req: &Request, index: u32, cached: bool) -> Decision {
        Decision::Allow {
            user: req.user.to_string(),
            source: Source::Users,
            rule: Some(UserRule {
                index,
                line: self.users.get(index).line(),
            }),
            cached,
            grant: Grant::User,
        }
    }

    fn deny_reason(&self, req: &Request) -> DenyReason {
        if req.has_credentials() {
            DenyReason::NoMatch
        } else {
            DenyReason::NoCredentials
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::permission::Action;

    const ARGON2_PASS: &str = "argon2:$argon2i$v=19$m=4096,t=3,p=1$MTIzNDU2Nzg$/mrZ42TiTv1mcPnpMUera5oi0SFYbbyueAbdx5sUvWo";

    fn policy(toml: &str) -> Policy {
        Policy::new(Config::parse(toml, "t.toml").unwrap())
    }

    #[test]
    fn argon2_success_is_cached_and_failure_is_not() {
        let p = policy(&format!(
            "[[users]]\nuser = \"bob\"\npass = \"{ARGON2_PASS}\"\npermissions = [{{ action = \"read\" }}]\n"
        ));
        let good = Request::new(Action::Read, "cam", "10.0.0.1", "bob", "testpass");
        let bad = Request::new(Action::Read, "cam", "10.0.0.1", "bob", "wrong");
        assert_eq!(p.decide(&bad), Decision::Deny(DenyReason::NoMatch));
        assert_eq!(p.decide(&bad), Decision::Deny(DenyReason::NoMatch));
        assert!(matches!(
            p.decide(&good),
            Decision::Allow { cached: false, .. }
        ));
        assert!(matches!(
            p.decide(&good),
            Decision::Allow { cached: true, .. }
        ));
        assert_eq!(p.decide(&bad), Decision::Deny(DenyReason::NoMatch));
    }

    #[test]
    fn failed_argon2_user_falls_through_to_next_user() {
        let p = policy(&format!(
            "[[users]]\nuser = \"bob\"\npass = \"{ARGON2_PASS}\"\npermissions = [{{ action = \"read\" }}]\n\
             [[users]]\nuser = \"bob\"\npass = \"plain\"\npermissions = [{{ action = \"read\" }}]\n"
        ));
        let req = Request::new(Action::Read, "cam", "10.0.0.1", "bob", "plain");
        assert!(matches!(
            p.decide(&req),
            Decision::Allow {
                rule: Some(UserRule { index: 1, .. }),
                ..
            }
        ));
    }

    #[test]
    fn unknown_user_runs_decoy_and_denies() {
        let p = policy(&format!(
            "[[users]]\nuser = \"bob\"\npass = \"{ARGON2_PASS}\"\npermissions = [{{ action = \"read\" }}]\n"
        ));
        let req = Request::new(Action::Read, "cam", "10.0.0.1", "nobody", "testpass");
        assert!(matches!(
            p.begin(&req),
            Step::Verify(_, Resume { decoy: Some(_), .. })
        ));
        assert_eq!(p.decide(&req), Decision::Deny(DenyReason::NoMatch));
        let anonymous = Request::new(Action::Read, "cam", "10.0.0.1", "", "");
        assert!(matches!(
            p.begin(&anonymous),
            Step::Done(Decision::Deny(DenyReason::NoCredentials))
        ));
    }
}
