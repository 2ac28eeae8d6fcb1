//! Ends what the portal handed out when the grant behind it ends: after a reload, a link made
//! from a `[[users]]` entry is revoked once no entry with the same name and pass grants its
//! action and path with the same `ips` rule (its live sessions are then kicked, like any revoked
//! credential's), and the web sessions of a person none of whose entries is left end. Also
//! forgets expired web sessions and pending sign-ins.
//!
//! Links made by someone signed in through an account source are checked again like the
//! sessions that source let in (`crate::sessions::watch`): with the handle the source gave at
//! sign-in (a token, or the account's id for an administrator key), never the password, every
//! [`RECHECK_EVERY`] (the source answers from its cache while that is younger than its
//! `cache_ttl_secs`). An account the source no longer lets in loses its links and web sessions;
//! a permission it no longer holds, the links made from it. The handle lives in memory: after a
//! restart, or for a source that gives none (a Jellyfin login without `api_key`), such links run
//! until they expire (`link_ttl_secs`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::permission::Action;
use crate::permission::PathMatcher;
use crate::policy::Policy;
use crate::portal::links::LinkGrant;
use crate::portal::people::Grant;
use crate::portal::{Portal, Profile};
use crate::source::account::Lookup;
use crate::store::StoreError;
use crate::time::now_unix;

const TICK: Duration = Duration::from_secs(1);
/// How often the accounts behind links are asked about again.
pub const RECHECK_EVERY: i64 = 5;
const PURGE_EVERY: i64 = 60;

pub async fn run(portal: Arc<Portal>) {
    let live = &portal.service.live;
    let mut generation = live.generation.load(Ordering::Acquire);
    let mut next_purge = 0;
    let mut next_recheck = 0;
    loop {
        tokio::time::sleep(TICK).await;
        let current = live.generation.load(Ordering::Acquire);
        if current != generation {
            generation = current;
            if let Err(e) = users_changed(&portal).await {
                tracing::warn!(error = %e, "portal: cannot check links and sessions after a reload; trying at the next one");
            }
        }
        let now = now_unix();
        portal.forward_prune(now);
        if now >= next_recheck {
            next_recheck = now + RECHECK_EVERY;
            if let Err(e) = recheck_accounts(&portal).await {
                tracing::warn!(error = %e, "portal: cannot check accounts behind links; trying again");
            }
        }
        if now >= next_purge {
            next_purge = now + PURGE_EVERY;
            if let Err(e) = portal.store.purge_portal(now).await {
                tracing::warn!(error = %e, "portal: cannot forget expired sessions");
            }
        }
    }
}

/// Whether an entry named `name` with this digest still grants `action` on `path` under the
/// same `ips` rule.
fn still_granted(
    portal: &Portal,
    policy: &Policy,
    name: &str,
    digest: &str,
    action: &str,
    path: &str,
    ips: &[String],
) -> bool {
    let users = policy.users();
    users.entries_named(name).into_iter().any(|index| {
        if crate::sessions::user_digest(&portal.service.grant_key, policy, index) != digest {
            return false;
        }
        let user = users.get(index);
        let same_ips = user
            .ips()
            .iter()
            .map(ToString::to_string)
            .eq(ips.iter().cloned());
        same_ips
            && user.permissions_written().iter().any(|(a, p)| {
                a.as_str() == action && PathMatcher::parse(p).is_ok_and(|m| m.matches(path))
            })
    })
}

async fn users_changed(portal: &Portal) -> Result<(), StoreError> {
    let policy = portal.service.live.load();
    let now = now_unix();
    let mut ended = Vec::new();
    for link in portal.store.links_in_force(None, now).await? {
        let Some(LinkGrant {
            grant: Grant::User { digest },
            ..
        }) = LinkGrant::of(&link)
        else {
            continue;
        };
        let name = link
            .owner
            .as_deref()
            .and_then(|o| o.strip_prefix("users:"))
            .unwrap_or_default();
        let held = link.permissions.iter().all(|p| {
            still_granted(
                portal, &policy, name, &digest, &p.action, &p.path, &link.ips,
            )
        });
        if !held {
            ended.push(link.id);
        }
    }
    if !ended.is_empty() {
        tracing::info!(
            links = ended.len(),
            "portal: revoking links whose [[users]] entry no longer grants them"
        );
        portal.store.revoke_credentials(&ended, now).await?;
    }
    for session in portal.store.web_sessions(now).await? {
        let Ok(profile) = serde_json::from_str::<Profile>(&session.profile) else {
            continue;
        };
        if profile.person.source != "users" {
            continue;
        }
        let users = policy.users();
        let left = users
            .entries_named(&profile.person.id)
            .into_iter()
            .any(|i| {
                profile.digests.contains(&crate::sessions::user_digest(
                    &portal.service.grant_key,
                    &policy,
                    i,
                ))
            });
        if !left {
            portal.store.end_web_session(&session.digest).await?;
        }
    }
    Ok(())
}

/// Asks each remembered account again and ends what it no longer grants.
async fn recheck_accounts(portal: &Portal) -> Result<(), StoreError> {
    let remembered: Vec<(String, (String, crate::decision::AccountToken))> = portal
        .rechecks
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if remembered.is_empty() {
        return Ok(());
    }
    let policy = portal.service.live.load();
    let now = now_unix();
    for (person, (source, handle)) in remembered {
        let account = policy.accounts().iter().find(|a| a.name() == source);
        let grant = match account {
            // A reload removed the source: nothing grants the account anything now.
            None => None,
            Some(account) => match account.recheck(&handle.0).await {
                Lookup::Granted { grant, .. } => Some(grant),
                Lookup::Rejected => None,
                // The upstream cannot say: nothing ends on a guess.
                Lookup::Limited | Lookup::Unreachable | Lookup::Miss(_) => continue,
            },
        };
        let links = portal.store.links_in_force(Some(&person), now).await?;
        let ended: Vec<String> = links
            .into_iter()
            .filter(|link| {
                let Some(grant) = &grant else { return true };
                !link.permissions.iter().all(|p| {
                    p.action.parse::<Action>().is_ok_and(|a| {
                        crate::permission::any_matches(&grant.permissions, a, &p.path)
                    })
                })
            })
            .map(|l| l.id)
            .collect();
        if !ended.is_empty() {
            tracing::info!(source = %source, links = ended.len(), "portal: revoking links the account no longer holds");
            portal.store.revoke_credentials(&ended, now).await?;
        }
        if grant.is_none() {
            tracing::info!(source = %source, "portal: an account its source no longer lets in is signed out");
            for session in portal.store.end_web_sessions_of(&person).await? {
                portal.forward_forget(&session);
            }
            portal
                .rechecks
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&person);
        }
    }
    Ok(())
}
