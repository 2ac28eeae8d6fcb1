//! The `[ldap]` figures: the time of a first decision (the directory asked: search, bind, group
//! search) and of a cached one, against a real slapd on loopback (the tests' harness,
//! tests/it/support/ldap.rs, with USERS extra people `user0…` in `streamers`). Decisions go
//! through the library as the server makes them (`Verifier::decide`), without HTTP.
//!
//! For each mode (search-then-bind with the groups searched by the service account; direct bind
//! with `memberOf` read as the user): one cold decision (connections opened, the service account
//! bound), USERS first decisions (a new person each: nothing cached), then ROUNDS cached ones.
//!
//! ```sh
//! cargo run --release --example ldap_decision -- 200 100000
//! ```

#[allow(dead_code)] // the tests' harness; this uses part of it
#[path = "../tests/it/support/ldap.rs"]
mod ldap;

use std::time::{Duration, Instant};

use mtx_auth::config::Config;
use mtx_auth::permission::Action;
use mtx_auth::policy::Policy;
use mtx_auth::request::Request;
use mtx_auth::verifier::Verifier;

fn request<'a>(user: &'a str, pass: &'a str) -> Request<'a> {
    let mut req = Request::new(Action::Publish, "live/cam", "10.0.0.1", user, pass);
    req.token = pass.into();
    req
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort();
    let pick = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "{name:<44} n={:<7} p50 {:>10.1?}  p90 {:>10.1?}  p99 {:>10.1?}  mean {:>10.1?}  worst {:>10.1?}",
        times.len(),
        pick(0.5),
        pick(0.9),
        pick(0.99),
        mean,
        times[times.len() - 1]
    );
}

async fn measure(label: &str, config: &str, users: usize, rounds: usize) {
    let policy = Policy::new(Config::parse(config, "bench.toml").expect("valid config"));
    let verifier = Verifier::new(1, 1);
    let names: Vec<String> = (0..users).map(|i| format!("user{i}")).collect();
    // Cold: connections opened (and the service account bound) on the way.
    let t = Instant::now();
    let d = verifier
        .decide(&policy, &request("Alice", "alice-pw"))
        .await;
    let cold = t.elapsed();
    assert!(d.is_allow(), "{d:?}");
    println!("{label}: cold first decision {cold:.1?}");
    let mut first = Vec::with_capacity(users);
    for name in &names {
        let t = Instant::now();
        let d = verifier.decide(&policy, &request(name, "user-pw")).await;
        first.push(t.elapsed());
        assert!(d.is_allow(), "{name}: {d:?}");
    }
    summary(&format!("{label}: first decision"), first);
    let mut cached = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let name = &names[i % users];
        let t = Instant::now();
        let d = verifier.decide(&policy, &request(name, "user-pw")).await;
        cached.push(t.elapsed());
        assert!(d.is_allow());
    }
    summary(&format!("{label}: cached decision"), cached);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().map_or(200, |a| a.parse().expect("USERS"));
    let rounds: usize = args.next().map_or(100_000, |a| a.parse().expect("ROUNDS"));
    assert!(
        ldap::available(),
        "slapd is needed: apt-get install slapd ldap-utils"
    );
    let slapd = ldap::Slapd::start_with(users);
    let groups = format!(
        "admin_groups = [\"cn=admins,{g}\"]\n\n[[ldap.groups]]\ndn = \"cn=streamers,{g}\"\npermissions = [{{ action = \"publish\", path = \"~^live/\" }}]\n",
        g = ldap::GROUPS
    );
    let search = format!(
        "[ldap]\nurl = \"{}\"\nbase_dn = \"{}\"\nfilter = \"(&(objectClass=inetOrgPerson)(uid={{user}}))\"\n\
         bind_dn = \"{}\"\nbind_password = \"{}\"\ngroup_base_dn = \"{}\"\ngroup_filter = \"(member={{dn}})\"\n\
         permissions = [{{ action = \"read\" }}]\n{groups}",
        slapd.url(),
        ldap::PEOPLE,
        ldap::READER_DN,
        ldap::READER_PW,
        ldap::GROUPS
    );
    let direct = format!(
        "[ldap]\nurl = \"{}\"\nuser_dn = \"uid={{user}},{}\"\ngroup_attribute = \"memberOf\"\n\
         permissions = [{{ action = \"read\" }}]\n{groups}",
        slapd.url(),
        ldap::PEOPLE
    );
    actix_web::rt::System::new().block_on(async {
        measure("search-then-bind + group search", &search, users, rounds).await;
        measure("direct bind + memberOf", &direct, users, rounds).await;
    });
    println!("slapd received {} binds in all", slapd.binds().len());
}
