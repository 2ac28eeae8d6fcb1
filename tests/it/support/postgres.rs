//! PostgreSQL for the tests: a fresh database on the machine's server (127.0.0.1:5432, trust
//! auth) per test, dropped afterwards; and a server of the test's own (initdb + pg_ctl on a free
//! port) for what must stop and start the database.
//!
//! Without a server the tests that need one say they were skipped and why; under `CI=true` that
//! is a failure, so CI cannot pass without having run them.

use std::path::PathBuf;
use std::process::Command;

/// Where the machine's PostgreSQL listens.
const HOST: &str = "127.0.0.1";
const PORT: u16 = 5432;

/// A database of its own on a PostgreSQL server, dropped on drop.
pub struct TestDb {
    pub name: String,
    port: u16,
}

impl TestDb {
    /// The URL a config's `[store]` names.
    pub fn url(&self) -> String {
        format!("postgres://postgres@{HOST}:{}/{}", self.port, self.name)
    }

    /// Runs one statement in this database and returns what psql printed (unaligned, no
    /// headers).
    pub fn query(&self, sql: &str) -> String {
        psql(self.port, &self.name, sql).unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = psql(
            self.port,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(port: u16, db: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([
            "-h",
            HOST,
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| format!("psql: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn new_db(port: u16) -> Result<TestDb, String> {
    let name = format!("mtx_auth_test_{}", crate::support::media::hex_id());
    psql(port, "postgres", &format!("CREATE DATABASE {name}"))?;
    Ok(TestDb { name, port })
}

/// A new database on the machine's PostgreSQL, or `None` (and a line saying the test was
/// skipped, and why) where none runs. Under `CI=true` a missing server fails the test.
pub fn database(test: &str) -> Option<TestDb> {
    match new_db(PORT) {
        Ok(db) => Some(db),
        Err(why) => {
            let why = why.lines().next().unwrap_or_default().to_owned();
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: needs PostgreSQL at {HOST}:{PORT}, and CI=true: {why}");
            }
            eprintln!("skipped {test}: no PostgreSQL at {HOST}:{PORT} ({why})");
            None
        }
    }
}

/// A PostgreSQL server of the test's own, which the test may stop and start.
pub struct OwnPostgres {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

impl OwnPostgres {
    /// initdb in a fresh folder and start on a free port; `None` (said why) without the
    /// server's programs, a failure under `CI=true`.
    pub fn start(test: &str) -> Option<OwnPostgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql").ok().and_then(|d| {
            d.flatten()
                .map(|e| e.path().join("bin"))
                .find(|b| b.join("initdb").exists())
        });
        let Some(bin) = bin else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test}: needs PostgreSQL's server programs (initdb, pg_ctl), and CI=true");
            }
            eprintln!("skipped {test}: PostgreSQL's server programs are not installed");
            return None;
        };
        let dir =
            std::env::temp_dir().join(format!("mtx-auth-pg-{}", crate::support::media::hex_id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pg = OwnPostgres {
            dir,
            port: crate::support::free_port(),
            bin,
        };
        // PostgreSQL refuses to run as root: the folder goes to the postgres user, and so do
        // the commands.
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir)
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the test's PostgreSQL folder");
        }
        let data = pg.dir.join("data");
        pg.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    fn run(&self, program: &str, args: &[&str]) {
        if let Err(e) = self.try_run(program, args) {
            panic!("{e}");
        }
    }

    fn try_run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut cmd = if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd.args(args).output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "{}: {}{}",
                program.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn start_again(&self) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off",
            self.port,
            self.dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server at once (`-m immediate`: as a crash or a cut cable looks to clients).
    pub fn stop(&self) {
        if let Err(e) = self.try_stop() {
            panic!("{e}");
        }
    }

    fn try_stop(&self) -> Result<(), String> {
        let data = self.dir.join("data");
        self.try_run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// A new database on this server.
    pub fn database(&self) -> TestDb {
        new_db(self.port).expect("create a database on the test's PostgreSQL")
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // Already stopped by the test, or never started: nothing to do.
        let _ = self.try_stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
