//! A real OpenLDAP for the `[ldap]` tests: Debian's `slapd` as a child process on loopback
//! ports, with a configuration of its own in a temporary folder (never the system's):
//!
//! - `cn=config` made with `slapadd -n0` from an LDIF written here: `bind_anon_dn` allowed
//!   (a name with an empty password binds, anonymously, as Active Directory and others let
//!   it: the trap `[ldap]` must not fall into), an mdb database for
//!   `dc=example,dc=org`, the core, cosine, inetorgperson and nis schemas, the `memberof`
//!   overlay (for `memberOf`) and `ppolicy` (three wrong passwords lock an account, as a
//!   directory in an office does), TLS with a certificate for 127.0.0.1 signed by a CA made
//!   here (`ca_file`), and an ACL: the service account `cn=reader` reads people and groups;
//!   people bind, read their own entry and the groups, and nothing else.
//! - The entries loaded with `slapadd -n1`: users with `{SSHA}` passwords (`slappasswd`),
//!   groups `streamers` and `admins` (`groupOfNames`), the reader, a password policy.
//!
//! Started with `-d stats`, so its log (`log`, `binds_of`) says which binds reached it. Killed
//! when dropped; `stop` and `restart` make an outage.

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

pub const BASE: &str = "dc=example,dc=org";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
pub const READER_DN: &str = "cn=reader,dc=example,dc=org";
pub const READER_PW: &str = "reader-pw";
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=org";
pub const ADMIN_PW: &str = "admin-pw";

const SLAPD: &str = "/usr/sbin/slapd";
const SLAPADD: &str = "/usr/sbin/slapadd";

/// One person in the directory.
pub struct Person {
    /// The RDN value and `uid`, as the directory spells it.
    pub uid: &'static str,
    pub password: &'static str,
    /// Under `ou=people`, or under `ou=<this>,ou=people`.
    pub ou: Option<&'static str>,
    pub groups: &'static [&'static str],
}

/// The people every test directory holds.
pub const PEOPLE_SEED: &[Person] = &[
    Person {
        uid: "Alice",
        password: "alice-pw",
        ou: None,
        groups: &["streamers"],
    },
    Person {
        uid: "bob",
        password: "bob-pw",
        ou: None,
        groups: &["admins"],
    },
    Person {
        uid: "carol",
        password: "carol-pw",
        ou: None,
        groups: &[],
    },
    // Two entries for one name: a filter that finds both must deny.
    Person {
        uid: "dave",
        password: "dave-pw",
        ou: None,
        groups: &[],
    },
    Person {
        uid: "dave",
        password: "dave-pw",
        ou: Some("contractors"),
        groups: &[],
    },
    Person {
        uid: "frank",
        password: "frank-pw",
        ou: None,
        groups: &[],
    },
    Person {
        uid: "grace",
        password: "grace-pw",
        ou: None,
        groups: &["admins"],
    },
    // Characters a DN must escape, and one it need not.
    Person {
        uid: "o,brien",
        password: "obrien-pw",
        ou: None,
        groups: &["streamers"],
    },
    Person {
        uid: "émile",
        password: "emile-pw",
        ou: None,
        groups: &["streamers"],
    },
];

/// Whether slapd and its tools are here. Without them: under CI (`CI` set) a failure naming
/// the packages, else a "skipped" line and `false`.
pub fn available() -> bool {
    let present = [
        SLAPD,
        SLAPADD,
        "/usr/sbin/slappasswd",
        "/usr/bin/ldapmodify",
    ]
    .iter()
    .all(|p| Path::new(p).exists());
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("slapd is missing: install Debian's slapd and ldap-utils (apt-get install slapd ldap-utils)");
    }
    eprintln!("skipped: slapd is not installed (apt-get install slapd ldap-utils)");
    false
}

/// A running slapd.
pub struct Slapd {
    dir: tempfile::TempDir,
    pub port: u16,
    pub tls_port: u16,
    child: Mutex<Option<Child>>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `{SSHA}…` for a password, by slappasswd.
fn ssha(password: &str) -> String {
    run(
        Command::new("/usr/sbin/slappasswd").args(["-h", "{SSHA}", "-s", password]),
        "slappasswd",
    )
    .trim()
    .to_owned()
}

/// An LDIF line `attr: value`, base64 (`attr:: …`) when the value is not plain ASCII.
fn line(attr: &str, value: &str) -> String {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        format!("{attr}: {value}\n")
    } else {
        format!(
            "{attr}:: {}\n",
            base64::engine::general_purpose::STANDARD.encode(value)
        )
    }
}

/// The DN of a person (the RDN value escaped as RFC 4514 asks).
pub fn dn_of(p: &Person) -> String {
    let uid = p.uid.replace(',', "\\,");
    match p.ou {
        Some(ou) => format!("uid={uid},ou={ou},{PEOPLE}"),
        None => format!("uid={uid},{PEOPLE}"),
    }
}

impl Slapd {
    /// A directory with `PEOPLE_SEED`.
    pub fn start() -> Slapd {
        Slapd::start_with(0)
    }

    /// A directory with `PEOPLE_SEED` and `extra` more people `user0`, `user1`, … (password
    /// `user-pw`, in `streamers`), for the figures.
    pub fn start_with(extra: usize) -> Slapd {
        let dir = tempfile::Builder::new()
            .prefix("slapd-")
            // The tests' temp space; the system's for examples/ldap_decision.rs.
            .tempdir_in(
                option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from),
            )
            .unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("slapd.d")).unwrap();
        std::fs::create_dir_all(d.join("data")).unwrap();
        write_certificates(d);
        std::fs::write(d.join("config.ldif"), config_ldif(d)).unwrap();
        std::fs::write(d.join("data.ldif"), data_ldif(extra)).unwrap();
        run(
            Command::new(SLAPADD)
                .args(["-n0", "-F"])
                .arg(d.join("slapd.d"))
                .arg("-l")
                .arg(d.join("config.ldif")),
            "slapadd -n0",
        );
        run(
            Command::new(SLAPADD)
                .args(["-q", "-n1", "-F"])
                .arg(d.join("slapd.d"))
                .arg("-l")
                .arg(d.join("data.ldif")),
            "slapadd -n1",
        );
        let slapd = Slapd {
            dir,
            port: free_port(),
            tls_port: free_port(),
            child: Mutex::new(None),
        };
        slapd.restart();
        slapd
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.tls_port)
    }

    /// The CA that signed the server's certificate (PEM), for `ca_file`.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A folder for the test's own files, removed with the directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts slapd (again) on the same ports and data; waits until it accepts connections.
    pub fn restart(&self) {
        let mut child = self.child.lock().unwrap();
        assert!(child.is_none(), "slapd is running");
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("slapd.log"))
            .unwrap();
        let urls = format!(
            "ldap://127.0.0.1:{}/ ldaps://127.0.0.1:{}/",
            self.port, self.tls_port
        );
        let mut process = Command::new(SLAPD)
            .args(["-d", "stats", "-F"])
            .arg(d.join("slapd.d"))
            .args(["-h", &urls])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start slapd");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.tls_port)).is_ok()
            {
                break;
            }
            if let Ok(Some(status)) = process.try_wait() {
                panic!("slapd exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "slapd never listened: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        *child = Some(process);
    }

    /// Kills slapd (an outage); `restart` brings it back.
    pub fn stop(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What slapd logged (its `stats` lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    /// The DNs of every simple bind slapd received, in order.
    pub fn binds(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter_map(|l| {
                let rest = l.split(" BIND dn=\"").nth(1)?;
                rest.contains("method=128")
                    .then(|| rest.split('"').next().unwrap_or_default().to_lowercase())
            })
            .collect()
    }

    /// How many binds reached slapd for `dn` (compared in lower case).
    pub fn binds_of(&self, dn: &str) -> usize {
        let dn = dn.to_lowercase();
        self.binds().iter().filter(|b| **b == dn).count()
    }

    /// Applies an LDIF change as the directory's administrator (`ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new("/usr/bin/ldapmodify")
            .args(["-x", "-H", &self.url(), "-D", ADMIN_DN, "-w", ADMIN_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "ldapmodify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether `dn` binds with `password`, asked directly (`ldapwhoami`), not through mtx-auth.
    pub fn whoami(&self, dn: &str, password: &str) -> bool {
        Command::new("/usr/bin/ldapwhoami")
            .args(["-x", "-H", &self.url(), "-D", dn, "-w", password])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success()
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it: `ca.pem`, `server.pem`,
/// `server.key`.
fn write_certificates(d: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "mtx-auth test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    let cert = params.signed_by(&key, &ca).unwrap();
    std::fs::write(d.join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(d.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(d.join("server.key"), key.serialize_pem()).unwrap();
}

fn config_ldif(d: &Path) -> String {
    let d = d.display();
    format!(
        r#"dn: cn=config
objectClass: olcGlobal
cn: config
olcPidFile: {d}/slapd.pid
olcAllows: bind_anon_dn
olcTLSCACertificateFile: {d}/ca.pem
olcTLSCertificateFile: {d}/server.pem
olcTLSCertificateKeyFile: {d}/server.key

dn: cn=module{{0}},cn=config
objectClass: olcModuleList
cn: module{{0}}
olcModulePath: /usr/lib/ldap
olcModuleLoad: {{0}}back_mdb
olcModuleLoad: {{1}}memberof
olcModuleLoad: {{2}}ppolicy

dn: cn=schema,cn=config
objectClass: olcSchemaConfig
cn: schema

include: file:///etc/ldap/schema/core.ldif

include: file:///etc/ldap/schema/cosine.ldif

include: file:///etc/ldap/schema/inetorgperson.ldif

include: file:///etc/ldap/schema/nis.ldif

dn: olcDatabase={{-1}}frontend,cn=config
objectClass: olcDatabaseConfig
objectClass: olcFrontendConfig
olcDatabase: {{-1}}frontend

dn: olcDatabase={{0}}config,cn=config
objectClass: olcDatabaseConfig
olcDatabase: {{0}}config
olcAccess: {{0}}to * by * none

dn: olcDatabase={{1}}mdb,cn=config
objectClass: olcDatabaseConfig
objectClass: olcMdbConfig
olcDatabase: {{1}}mdb
olcSuffix: {BASE}
olcRootDN: {ADMIN_DN}
olcRootPW: {ADMIN_PW}
olcDbDirectory: {d}/data
olcDbMaxSize: 67108864
olcDbIndex: objectClass eq
olcDbIndex: uid eq
olcDbIndex: member eq
olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
olcAccess: {{1}}to dn.subtree="{PEOPLE}" by dn.exact="{READER_DN}" read by self read by anonymous auth by * none
olcAccess: {{2}}to dn.subtree="{GROUPS}" by dn.exact="{READER_DN}" read by users read by * none
olcAccess: {{3}}to * by dn.exact="{READER_DN}" read by anonymous auth by * none

dn: olcOverlay={{0}}memberof,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcMemberOf
olcOverlay: {{0}}memberof
olcMemberOfRefInt: TRUE

dn: olcOverlay={{1}}ppolicy,olcDatabase={{1}}mdb,cn=config
objectClass: olcOverlayConfig
objectClass: olcPPolicyConfig
olcOverlay: {{1}}ppolicy
olcPPolicyDefault: cn=default,ou=policies,{BASE}
"#
    )
}

fn data_ldif(extra: usize) -> String {
    let mut out = format!(
        "dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=contractors,{PEOPLE}\nobjectClass: organizationalUnit\nou: contractors\n\n\
         dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
         dn: ou=policies,{BASE}\nobjectClass: organizationalUnit\nou: policies\n\n\
         dn: cn=default,ou=policies,{BASE}\nobjectClass: organizationalRole\nobjectClass: pwdPolicy\n\
         cn: default\npwdAttribute: userPassword\npwdMaxFailure: 3\npwdLockout: TRUE\npwdLockoutDuration: 0\n\n\
         dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: {}\n\n",
        ssha(READER_PW)
    );
    let mut members: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
    let mut hashes: std::collections::HashMap<&str, String> = Default::default();
    let mut person =
        |out: &mut String, uid: &str, dn: &str, password: &'static str, groups: &[&'static str]| {
            let hash = hashes
                .entry(password)
                .or_insert_with(|| ssha(password))
                .clone();
            out.push_str(&line("dn", dn));
            out.push_str("objectClass: inetOrgPerson\n");
            out.push_str(&line("uid", uid));
            out.push_str(&line("cn", uid));
            out.push_str("sn: Person\n");
            out.push_str(&format!("userPassword: {hash}\n"));
            for g in groups {
                out.push_str(&line("memberOf", &format!("cn={g},{GROUPS}")));
                members.entry(g).or_default().push(dn.to_owned());
            }
            out.push('\n');
        };
    for p in PEOPLE_SEED {
        person(&mut out, p.uid, &dn_of(p), p.password, p.groups);
    }
    for i in 0..extra {
        let uid = format!("user{i}");
        person(
            &mut out,
            &uid,
            &format!("uid={uid},{PEOPLE}"),
            "user-pw",
            &["streamers"],
        );
    }
    for (group, dns) in members {
        out.push_str(&format!(
            "dn: cn={group},{GROUPS}\nobjectClass: groupOfNames\ncn: {group}\n"
        ));
        for dn in dns {
            out.push_str(&line("member", &dn));
        }
        out.push('\n');
    }
    out
}
