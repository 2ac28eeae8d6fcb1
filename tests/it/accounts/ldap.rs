//! LDAP accounts through HTTP, against a real OpenLDAP (support/ldap.rs: Debian's slapd on
//! loopback, its own configuration, seed entries, an ACL, memberof and ppolicy): both ways of
//! finding the entry, groups to permissions and administrators, every trap of the contract,
//! an outage and the recovery, TLS (ldaps:// and StartTLS with a CA file), the failure limit
//! that keeps the directory's own lockout from striking, and the portal's sign-in.
//!
//! slapd logs every bind it receives (`Slapd::binds_of`): that is how these tests tell what
//! reached the directory and what did not.

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::ldap::{self, Slapd, GROUPS, PEOPLE, READER_DN};
use crate::support::{error_of, mtx_request, spawn, TestApp};

const REJECTED: &str = "no user matches these credentials for this action, path and ip";

/// `[ldap]` in search-then-bind mode against `slapd`, with groups searched, `streamers` mapped
/// to publishing under `live/` and `admins` made administrators; `extra` lines inside.
fn search_section(slapd: &Slapd, extra: &str) -> String {
    format!(
        r#"[ldap]
url = "{url}"
base_dn = "{PEOPLE}"
filter = "(&(objectClass=inetOrgPerson)(uid={{user}}))"
bind_dn = "{READER_DN}"
bind_password = "{pw}"
group_base_dn = "{GROUPS}"
group_filter = "(member={{dn}})"
permissions = [{{ action = "read" }}]
admin_groups = ["cn=admins,{GROUPS}"]
admin_permissions = [{{ action = "publish" }}, {{ action = "api" }}]
{extra}

[[ldap.groups]]
dn = "CN=Streamers, OU=Groups,DC=example,DC=org"
permissions = [{{ action = "publish", path = "~^live/" }}]
"#,
        url = slapd.url(),
        pw = ldap::READER_PW,
    )
}

/// `[ldap]` binding directly with a `user_dn` template; groups from `memberOf` (as the user).
fn direct_section(slapd: &Slapd, extra: &str) -> String {
    format!(
        r#"[ldap]
url = "{url}"
user_dn = "uid={{user}},{PEOPLE}"
group_attribute = "memberOf"
permissions = [{{ action = "read" }}]
admin_groups = ["cn=admins,{GROUPS}"]
admin_permissions = [{{ action = "publish" }}]
{extra}

[[ldap.groups]]
dn = "cn=streamers,{GROUPS}"
permissions = [{{ action = "publish", path = "~^live/" }}]
"#,
        url = slapd.url(),
    )
}

async fn app(config: &str) -> TestApp {
    crate::support::test_env();
    let app = spawn(config);
    app.wait_ready().await;
    app
}

fn read(user: &str, pass: &str) -> Value {
    mtx_request("read", "cam", "10.0.0.1", user, pass)
}

fn publish(path: &str, user: &str, pass: &str) -> Value {
    mtx_request("publish", path, "10.0.0.1", user, pass)
}

/// `/readyz`'s counters for the source.
async fn ldap_stats(app: &TestApp) -> Value {
    app.get("/readyz").await.1["ldap"].clone()
}

fn alice_dn() -> String {
    format!("uid=Alice,{PEOPLE}")
}

#[actix_web::test]
async fn search_then_bind_allows_and_denies() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let app = app(&search_section(&slapd, "")).await;
    // The name as the directory spells it.
    let (s, b) = app.auth(&read("alice", "alice-pw")).await;
    assert_eq!((s, b["user"].as_str()), (200, Some("Alice")), "{b}");
    // Unknown name and wrong password: the same answer.
    assert_eq!(error_of(&app, &read("alice", "wrong")).await, REJECTED);
    assert_eq!(error_of(&app, &read("nobody", "alice-pw")).await, REJECTED);
    app.expect(&[
        // Groups → permissions.
        (publish("live/alice", "alice", "alice-pw"), 200),
        (publish("other", "alice", "alice-pw"), 401),
        (read("carol", "carol-pw"), 200),
        (publish("live/carol", "carol", "carol-pw"), 401),
        // admin_groups → admin_permissions.
        (publish("anything", "bob", "bob-pw"), 200),
        (mtx_request("api", "", "10.0.0.1", "bob", "bob-pw"), 200),
        (mtx_request("api", "", "10.0.0.1", "alice", "alice-pw"), 401),
        // A comma and an accent in the name: found by the (escaped) filter.
        (publish("live/x", "o,brien", "obrien-pw"), 200),
        (publish("live/x", "émile", "emile-pw"), 200),
        (read("émile", "wrong"), 401),
    ])
    .await;
    assert_eq!(
        error_of(&app, &publish("other", "carol", "carol-pw")).await,
        "ldap: account not permitted this action and path"
    );
    // The service account bound once and its connection serves every search since.
    assert_eq!(slapd.binds_of(READER_DN), 1, "{:?}", slapd.binds());
    let me = app.get("/readyz").await.1;
    assert_eq!(me["ldap"]["ready"], json!(true), "{me}");
}

#[actix_web::test]
async fn direct_bind_allows_and_denies() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let app = app(&direct_section(&slapd, "")).await;
    let (s, b) = app.auth(&read("ALICE", "alice-pw")).await;
    assert_eq!((s, b["user"].as_str()), (200, Some("Alice")), "{b}");
    assert_eq!(error_of(&app, &read("alice", "wrong")).await, REJECTED);
    assert_eq!(error_of(&app, &read("nobody", "x")).await, REJECTED);
    app.expect(&[
        (publish("live/a", "alice", "alice-pw"), 200),
        (publish("other", "alice", "alice-pw"), 401),
        (publish("other", "bob", "bob-pw"), 200),
        (read("carol", "carol-pw"), 200),
        (publish("live/c", "carol", "carol-pw"), 401),
        // uid=o\,brien: the comma escaped in the DN (RFC 4514), or it would be another DN.
        (publish("live/o", "o,brien", "obrien-pw"), 200),
        (read("émile", "emile-pw"), 200),
    ])
    .await;
    // (slapd logs the DN with the comma written as \2c.)
    assert!(
        slapd.binds_of(&format!("uid=o\\2cbrien,{PEOPLE}")) == 1,
        "{:?}",
        slapd.binds()
    );
    // No service account here.
    assert_eq!(slapd.binds_of(READER_DN), 0);

    // The same with the groups searched as the user (ou=groups is readable by people).
    let other = app_direct_group_search(&slapd).await;
    other
        .expect(&[
            (publish("live/a", "alice", "alice-pw"), 200),
            (publish("other", "bob", "bob-pw"), 200),
            (publish("live/c", "carol", "carol-pw"), 401),
        ])
        .await;
}

async fn app_direct_group_search(slapd: &Slapd) -> TestApp {
    app(&direct_section(slapd, "").replace(
        "group_attribute = \"memberOf\"",
        &format!("group_base_dn = \"{GROUPS}\"\ngroup_filter = \"(&(objectClass=groupOfNames)(member={{dn}}))\""),
    ))
    .await
}

#[actix_web::test]
async fn injection_attempts_are_denied() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let search = app(&search_section(&slapd, "max_failures = 1000")).await;
    let direct = app(&direct_section(&slapd, "max_failures = 1000")).await;
    for name in [
        "*",
        "al*",
        "*ice",
        "alice)(uid=*",
        "*)(|(uid=*",
        "alice)(|(objectClass=*",
        "alice\\",
        "alice\u{0}",
        "alice,ou=people,dc=example,dc=org",
        "alice+cn=Alice",
        "uid=Alice,ou=people,dc=example,dc=org",
        "#alice",
        " alice\\ ",
    ] {
        for app in [&search, &direct] {
            assert_eq!(
                error_of(app, &read(name, "alice-pw")).await,
                REJECTED,
                "{name:?}"
            );
        }
    }
    // Each of those asked the directory, and no bind as Alice came of it.
    assert_eq!(slapd.binds_of(&alice_dn()), 0, "{:?}", slapd.binds());
    // The search found nobody (the wildcards were literal): a decoy bind each time.
    let decoys = slapd
        .binds()
        .iter()
        .filter(|b| b.starts_with("cn=mtx-auth-decoy-"))
        .count();
    assert!(decoys >= 10, "{decoys} decoy binds: {:?}", slapd.binds());
    assert_eq!(search.status(&read("alice", "alice-pw")).await, 200);
}

#[actix_web::test]
async fn nobody_found_costs_a_bind_and_two_entries_deny() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let app = app(&search_section(&slapd, "")).await;
    let before = slapd.binds().len();
    assert_eq!(error_of(&app, &read("nobody", "pw")).await, REJECTED);
    let binds = slapd.binds();
    assert_eq!(binds.len(), before + 1, "{binds:?}");
    let decoy = binds.last().unwrap();
    assert!(
        decoy.starts_with("cn=mtx-auth-decoy-") && decoy.ends_with(PEOPLE),
        "{decoy}"
    );
    // Two entries for "dave" (ou=people and ou=contractors): denied, though the password is
    // right for both; and no bind as either.
    assert_eq!(error_of(&app, &read("dave", "dave-pw")).await, REJECTED);
    assert_eq!(slapd.binds_of(&format!("uid=dave,{PEOPLE}")), 0);
    assert!(slapd
        .binds()
        .last()
        .unwrap()
        .starts_with("cn=mtx-auth-decoy-"));
    // The decoy DN is the same each time (one per config), so it looks like any other entry.
    assert_eq!(error_of(&app, &read("nobody2", "pw")).await, REJECTED);
    let b = slapd.binds();
    assert_eq!(b[b.len() - 1], b[b.len() - 2]);
}

#[actix_web::test]
async fn an_empty_password_never_binds() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let app = app(&search_section(&slapd, "")).await;
    let calls = ldap_stats(&app).await["upstream_calls"].clone();
    let before = slapd.binds().len();
    let empty = json!({"ip":"10.0.0.1","user":"alice","password":"","token":"","action":"read","path":"cam","protocol":"rtsp","id":null,"query":""});
    assert_eq!(app.status(&empty).await, 401);
    // A token without a password is not a login: a directory has no tokens.
    let token = json!({"ip":"10.0.0.1","user":"alice","password":"","token":"x","action":"read","path":"cam","protocol":"rtsp","id":null,"query":""});
    assert_eq!(app.status(&token).await, 401);
    assert_eq!(ldap_stats(&app).await["upstream_calls"], calls);
    assert_eq!(slapd.binds().len(), before, "{:?}", slapd.binds());
    // Whereas the directory itself says yes to a name with an empty password (an anonymous
    // bind): the trap.
    assert!(slapd.whoami(&alice_dn(), ""));
}

#[actix_web::test]
async fn answers_are_cached_and_the_failure_limit_comes_before_the_lockout() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let app = app(&search_section(&slapd, "")).await;
    for _ in 0..5 {
        assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    }
    assert_eq!(slapd.binds_of(&alice_dn()), 1, "one bind, then the cache");
    // The directory locks an account at its third wrong password (ppolicy): show it does.
    for _ in 0..3 {
        assert!(!slapd.whoami(&format!("uid=frank,{PEOPLE}"), "wrong"));
    }
    assert!(
        !slapd.whoami(&format!("uid=frank,{PEOPLE}"), "frank-pw"),
        "frank is locked"
    );
    assert_eq!(error_of(&app, &read("frank", "frank-pw")).await, REJECTED);

    // Someone guesses Alice's password, in every spelling of her name the directory accepts.
    let guesses = [
        "ALICE",
        "alice ",
        " Alice",
        "ａｌｉｃｅ",
        "alice",
        "al\u{00AD}ice",
    ];
    for (i, name) in guesses.iter().enumerate() {
        assert_eq!(app.status(&read(name, &format!("guess{i}"))).await, 401);
    }
    assert_eq!(
        error_of(&app, &read("alice", "guess-last")).await,
        "ldap: too many failed logins for this user; try again later"
    );
    assert_eq!(
        slapd.binds_of(&alice_dn()),
        1 + 2,
        "only two guesses reached the directory: {:?}",
        slapd.binds()
    );
    assert!(
        slapd.whoami(&alice_dn(), "alice-pw"),
        "Alice is not locked out"
    );
    // The cached login still works; other people are not affected.
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    assert_eq!(app.status(&read("bob", "bob-pw")).await, 200);
}

#[actix_web::test]
async fn an_outage_denies_as_unreachable_and_recovery_allows_again() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let app = app(&search_section(
        &slapd,
        "cache_ttl_secs = 1\nstale_grace_secs = 0\ntimeout_secs = 2",
    ))
    .await;
    assert_eq!(app.status(&read("alice", "alice-pw")).await, 200);
    slapd.stop();
    actix_web::rt::time::sleep(Duration::from_millis(1100)).await;
    for user in ["alice", "bob"] {
        assert_eq!(
            error_of(&app, &read(user, &format!("{user}-pw"))).await,
            "ldap unreachable",
            "{user}"
        );
    }
    // Not counted as wrong passwords: nothing was held against the accounts.
    assert_eq!(
        error_of(&app, &read("carol", "carol-pw")).await,
        "ldap unreachable"
    );
    slapd.restart();
    actix_web::rt::time::sleep(Duration::from_millis(2100)).await;
    for user in ["alice", "bob", "carol"] {
        assert_eq!(
            app.status(&read(user, &format!("{user}-pw"))).await,
            200,
            "{user}"
        );
    }
    assert!(ldap_stats(&app).await["upstream_errors"].as_u64().unwrap() >= 1);
}

#[actix_web::test]
async fn ldaps_and_starttls_with_a_ca_file() {
    if !ldap::available() {
        return;
    }
    let slapd = Slapd::start();
    let ca = slapd.ca_file();
    // ldaps://, the service account's password from the environment.
    let ldaps = search_section(&slapd, &format!("ca_file = \"{}\"", ca.display()))
        .replace(&slapd.url(), &slapd.ldaps_url())
        .replace(
            &format!("bind_password = \"{}\"", ldap::READER_PW),
            "bind_password_env = \"MTX_AUTH_LDAP_PASSWORD\"",
        );
    let app1 = app(&ldaps).await;
    assert_eq!(
        app1.status(&publish("live/a", "alice", "alice-pw")).await,
        200
    );
    assert_eq!(app1.status(&read("alice", "wrong")).await, 401);
    // StartTLS on the plain port, from a file.
    let secret = slapd.dir().join("reader.secret");
    std::fs::write(&secret, format!("{}\n", ldap::READER_PW)).unwrap();
    let starttls = search_section(
        &slapd,
        &format!("starttls = true\nca_file = \"{}\"", ca.display()),
    )
    .replace(
        &format!("bind_password = \"{}\"", ldap::READER_PW),
        &format!("bind_password_file = \"{}\"", secret.display()),
    );
    let app2 = app(&starttls).await;
    assert_eq!(app2.status(&publish("other", "bob", "bob-pw")).await, 200);
    // Direct bind over ldaps:// too.
    let direct = direct_section(&slapd, &format!("ca_file = \"{}\"", ca.display()))
        .replace(&slapd.url(), &slapd.ldaps_url());
    let app3 = app(&direct).await;
    assert_eq!(app3.status(&read("carol", "carol-pw")).await, 200);
    // Without the CA (the system's roots don't know it): the certificate is refused, and
    // that is an outage, never a "no".
    crate::support::test_env();
    let untrusted = spawn(&search_section(&slapd, "").replace(&slapd.url(), &slapd.ldaps_url()));
    assert_eq!(
        error_of(&untrusted, &read("carol", "carol-pw")).await,
        "ldap unreachable"
    );
    let (status, ready) = untrusted.get("/readyz").await;
    assert_eq!(status, 503, "{ready}");
}

#[test]
fn a_plain_ldap_url_to_another_machine_is_refused_by_check() {
    let path = crate::support::temp_config(
        "ldap-plain.toml",
        "[server]\nlisten = \"127.0.0.1:9000\"\n\n[ldap]\nurl = \"ldap://ldap.example.org:389\"\nuser_dn = \"uid={user},ou=people,dc=example,dc=org\"\n",
    );
    let (code, _, err) =
        crate::support::run(crate::support::bin().args(["check", "--config"]).arg(&path));
    assert_eq!(code, 1, "{err}");
    let want = format!(
        "{}:5:7: url: a plain ldap:// connection to ldap.example.org would send passwords in the clear",
        path.display()
    );
    assert!(err.contains(&want), "{err}");
    // Said so explicitly, it passes.
    let ok = crate::support::temp_config(
        "ldap-insecure.toml",
        "[server]\nlisten = \"127.0.0.1:9000\"\n\n[ldap]\nurl = \"ldap://ldap.example.org:389\"\ninsecure = true\nuser_dn = \"uid={user},ou=people,dc=example,dc=org\"\n",
    );
    let (code, _, err) =
        crate::support::run(crate::support::bin().args(["check", "--config"]).arg(&ok));
    assert_eq!(code, 0, "{err}");
}

#[actix_web::test]
async fn portal_sign_in_and_links_that_end_with_the_entry() {
    if !ldap::available() {
        return;
    }
    use crate::portal::{config, free_port, start, Browser};
    let slapd = Slapd::start();
    let port = free_port();
    let extra = search_section(&slapd, "cache_ttl_secs = 1");
    let server = start(&config("portal-ldap.toml", port, "mfa = \"off\"", &extra));
    let app = server.app();
    let mut b = Browser::new(port);
    let ok = b.sign_in("carol", "carol-pw").await;
    assert_eq!(ok.status, 303, "{}", ok.text);
    let me = b.get("/api/me").await.json();
    assert_eq!(
        (&me["source"], &me["user"], &me["admin"]),
        (&json!("ldap"), &json!("carol"), &json!(false)),
        "{me}"
    );
    assert_eq!(b.sign_in("carol", "wrong").await.status, 401);
    assert_eq!(Browser::new(port).sign_in("carol", "").await.status, 401);
    // An admin_groups member administers the portal ("bob" is a [[users]] name there).
    let mut admin = Browser::new(port);
    assert_eq!(admin.sign_in("grace", "grace-pw").await.status, 303);
    assert_eq!(admin.get("/api/me").await.json()["admin"], json!(true));
    assert_eq!(admin.get("/admin").await.status, 200);

    let token = b.link("read", "cam9").await;
    let viewer = mtx_request("read", "cam9", "10.0.0.1", "viewer", &token);
    assert_eq!(app.status(&viewer).await, 200);
    // Carol leaves: her entry is deleted. The portal asks the directory again (by her DN, as
    // the service account) and ends her link and her web session.
    slapd.modify(&format!("dn: uid=carol,{PEOPLE}\nchangetype: delete\n"));
    let mut revoked = false;
    for _ in 0..200 {
        if app.status(&viewer).await == 401 {
            revoked = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(revoked, "the link of a deleted entry is revoked");
    assert_eq!(
        b.get("/api/me").await.status,
        401,
        "and its web session ended"
    );
}
