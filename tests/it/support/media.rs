//! Media-server fixtures for the account-source tests: a fake Jellyfin or Emby server and a fake
//! plex.tv — real HTTP servers on loopback ports that answer like the real APIs (status codes,
//! field names and their casing, content types), and whose behaviour a test can change while it
//! runs.
//!
//! `crate::support::media` in the tests; `benches/accounts.rs` and `examples/media_fixture.rs`
//! include the file with `#[path]`.
//!
//! Start the fakes from an actix runtime (`#[actix_web::test]`), like `FakeIdp`. Dropping one
//! stops its server.

// ---------------------------------------------------------------------------------------------
// What the fakes are modelled on
// ---------------------------------------------------------------------------------------------
//
// CONFIRMED = read in the server's own source or documentation, or in a maintainer-answered issue;
// ASSUMED = no primary source found, the fake does what is written here.
//
// Jellyfin (source: jellyfin/jellyfin)
// - CONFIRMED `POST /Users/AuthenticateByName` -> 200 `AuthenticationResult` {User, SessionInfo,
//   AccessToken, ServerId} (SessionManager.AuthenticateNewSessionInternal). User is a `UserDto`
//   {Name, ServerId, Id, HasPassword, HasConfiguredPassword, HasConfiguredEasyPassword,
//   EnableAutoLogin, LastLoginDate, LastActivityDate, Configuration, Policy {IsAdministrator,
//   IsHidden, IsDisabled, EnableRemoteAccess, EnableMediaPlayback, EnableLiveTvAccess, …,
//   InvalidLoginAttemptCount, LoginAttemptsBeforeLockout (null → -1)}} (UserManager.GetUserDto).
//   Ids, ServerId and AccessToken are GUIDs written as 32 lower-case hex digits ("N" format).
// - CONFIRMED exceptions become statuses in ExceptionMiddleware.GetStatusCode: ArgumentException →
//   400, AuthenticationException → 401, SecurityException → 403, with a text/plain body that is
//   "Error processing request." outside a Development environment.
// - CONFIRMED missing Client / Device / DeviceId / Version (10.9+): AuthenticateNewSessionInternal
//   starts with `ArgumentException.ThrowIfNullOrEmpty(request.App / DeviceId / DeviceName /
//   AppVersion)` → **400**, before the password is looked at (so no failed-login count). A
//   third-party client measured the same on a live 12.1.0: `X-Emby-Authorization` alone → 400
//   ("request.App" missing), adding `Authorization` → the normal 401/200.
// - CONFIRMED unknown user → AuthenticationException("Invalid username or password entered.") →
//   401; wrong password → AuthenticateUser returns null → the same AuthenticationException → 401.
// - CONFIRMED disabled user → `SecurityException("The {name} account is currently disabled…")` →
//   **403**. UserManager.AuthenticateUser checks IsDisabled after evaluating the password but
//   before counting it, so a disabled user gets 403 for the right AND the wrong password, and a
//   wrong password is then not counted. Remote access disabled and caller not in a local network →
//   SecurityException("Forbidden.") → 403 ([`FakeMediaServer::set_remote_caller`]).
// - CONFIRMED lockout (UserManager.IncrementInvalidLoginAttemptCount): a failed login increments
//   InvalidLoginAttemptCount; when it reaches LoginAttemptsBeforeLockout the user gets IsDisabled
//   = true; a success resets the count to 0. The documentation and web client say the default is
//   "3 for users, 5 for administrators"; the server code maps 0 → 3 for everybody, and a user
//   created fresh has LoginAttemptsBeforeLockout = NULL = never locked (reported as -1). The fake
//   defaults to the documented 3/5 (see [`FakeMediaServer::set_lockout`]): mtx-auth must assume
//   the worst.
// - CONFIRMED user names are matched case-insensitively (`StringComparison.OrdinalIgnoreCase`).
// - CONFIRMED a login with the same DeviceId and user logs the previous session out (its token
//   stops working): SessionManager.GetAuthorizationToken.
// - CONFIRMED `GET /Users/Me` (added in 10.7, PR #4422): the current user's UserDto; a token that
//   is not a user's (an API key) → 400 `application/problem+json`-style body
//   {"type":"https://tools.ietf.org/html/rfc9110#section-15.5.1","title":"Bad Request",
//   "status":400,"traceId":…} served as `application/json; charset=utf-8` (issue #14559).
//   No token / unknown token → 401 with an empty body (CustomAuthenticationHandler returns
//   NoResult / Fail, the challenge answers 401). A disabled user's token → AuthService throws
//   SecurityException("User account has been disabled.") → Fail → 401 as well. A user without
//   remote access calling from outside → DefaultAuthorizationHandler fails → 403.
// - CONFIRMED `POST /Sessions/Logout` → 204 (Logout deletes the device/token).
// - CONFIRMED `GET /System/Info/Public` (anonymous) → PublicSystemInfo {LocalAddress, ServerName,
//   Version, ProductName, OperatingSystem (obsolete, ""), Id, StartupWizardCompleted}.
// - CONFIRMED the `Authorization` header is read first; `X-Emby-Authorization`, `X-Emby-Token`,
//   `X-MediaBrowser-Token`, the `api_key` query parameter and the `Emby` scheme name are read only
//   when `EnableLegacyAuthorization` is on (AuthorizationContext at v10.11.x and v12.0); the
//   `ApiKey` query parameter is read unconditionally. Jellyfin 12 defaults the flag to false and
//   a migration turns it off on upgrade. The fake models 12 (flag off) by default; see
//   [`FakeMediaServer::set_legacy_authorization`]. Keys in the header are case-insensitive,
//   values may be quoted and are URL-decoded.
// - CONFIRMED routes are case-insensitive (ASP.NET) and `/emby/…`, `/mediabrowser/…` prefixes are
//   stripped (LegacyEmbyRouteRewriteMiddleware); the fake serves both prefixes for Jellyfin too.
// - ASSUMED error bodies for a body that is not JSON: an RFC 7807 validation problem (400).
//
// Emby (sources: dev.emby.media REST reference in MediaBrowser/Emby.SDK, MediaBrowser/Emby issues)
// - CONFIRMED `POST /Users/AuthenticateByName` (also under `/emby/`), header "either named
//   'Authorization' or 'X-Emby-Authorization'", scheme `Emby UserId="…", Client="…",
//   Device="…", DeviceId="…", Version="…", Token="…"`; 200 AuthenticationResult.
// - CONFIRMED Emby has NO `GET /Users/Me` (its UserService lists /Users/{Id}, /Users/Public,
//   /Users/Query, …). The token check is `GET /Users/{Id}` ("Requires authentication as user") with
//   `X-Emby-Token` (header or query), as Emby's own web client does. The fake answers 404 to
//   `/Users/Me` on Emby.
// - CONFIRMED `POST /Sessions/Logout` exists ("Reports that a session has ended"); the docs say
//   "200 … Empty response", Emby answers void operations with 204 (log lines for
//   /Sessions/Capabilities/Full) — the fake answers 204.
// - CONFIRMED Emby answers a SecurityException with 401 (issue #2903, Emby 3.2: "HTTP Response
//   401" for "This user account is not allowed access at this time"). ASSUMED the disabled-user
//   check is the same as the code Jellyfin forked (SecurityException) → Emby login of a disabled
//   user → 401, and a disabled user's token → 401.
// - ASSUMED Emby does not require Client/Device/DeviceId/Version (no such check in the forked
//   code), has no automatic lockout (default: never), lets any valid token read any user by id,
//   and its /System/Info/Public has {LocalAddress, LocalAddresses, RemoteAddresses, ServerName,
//   Version, Id}.
//
// plex.tv (sources: LukeHagar/plex-api-spec, python-plexapi, issue logs quoting plex.tv)
// - CONFIRMED `GET /api/v2/user` with `X-Plex-Token` → the account {id, uuid, username, title,
//   email, friendlyName, authToken, …} (UserPlexAccount); bad token → 401
//   `{"errors":[{"code":1001,"message":"User could not be authenticated","status":401}]}`.
// - CONFIRMED `GET /api/v2/resources?includeHttps=1&includeRelay=1` → a JSON array of devices
//   {name, product, productVersion, platform, platformVersion, device, clientIdentifier,
//   createdAt, lastSeenAt, provides ("server", "client,player", …), ownerId, sourceTitle,
//   publicAddress, accessToken, owned, home, synced, relay, presence, httpsRequired,
//   publicAddressMatches, dnsRebindingProtection, natLoopbackSupported, connections [{protocol,
//   address, port, uri, local, relay, IPv6}]}. A shared server has owned: false, ownerId and
//   sourceTitle (the owner's user name) and its own accessToken.
// - CONFIRMED `POST /api/v2/users/signin` with form fields login, password (and
//   verificationCode for 2FA) → **201** with the account JSON including authToken; wrong
//   credentials → 401 (code 1001 "User could not be authenticated"); a 2FA account without its
//   code → 401 code 1029 "Please enter the verification code".
// - CONFIRMED (community OpenAPI spec) a missing `X-Plex-Client-Identifier` → 400
//   `{"errors":[{"code":1000,"message":"X-Plex-Client-Identifier is missing","status":400}]}`;
//   ASSUMED for every v2 call here (the spec marks the header required on all of them). The fake
//   checks it before the token.
// - CONFIRMED plex.tv answers XML unless `Accept: application/json`; the fake's XML is a minimal
//   ASSUMED shape (`<user …/>`, `<resources size=…><resource …><connections>…`, `<errors>…`).
// - The token is read from the `X-Plex-Token` header or query parameter, the client identifier
//   from the header or query parameter, as plex.tv accepts both.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use rand::Rng as _;
use serde_json::{json, Map, Value};

// ---------------------------------------------------------------------------------------------
// Common pieces
// ---------------------------------------------------------------------------------------------

/// Which MediaBrowser-derived server a [`FakeMediaServer`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Jellyfin,
    Emby,
}

/// How a fake answers its routes (see [`FakeMediaServer::set_mode`], [`FakePlex::set_mode`]).
/// Every request is counted whatever the mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// As the real server would.
    Normal,
    /// This status with a short text/plain body.
    Status(u16),
    /// 200, `application/json; charset=utf-8`, a body that is not JSON ([`GARBAGE_BODY`]).
    Garbage,
    /// 200, JSON of the wrong shape: `{"User": 5}` on Jellyfin/Emby routes, `{"username": 5}`,
    /// `{"resources": 5}` or `{"authToken": 5}` on plex.tv.
    WrongShape,
    /// Waits this long, then answers as `Normal` (with the state current at that time).
    Slow(Duration),
}

/// The body of [`Mode::Garbage`] answers: an HTML error page, served as JSON.
pub const GARBAGE_BODY: &str =
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>Bad Gateway</body></html>";

/// The text/plain body Jellyfin's exception middleware sends outside Development.
pub const JELLYFIN_ERROR_BODY: &str = "Error processing request.";

const JSON_UTF8: &str = "application/json; charset=utf-8";

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A test that panicked while holding a lock must not hide its own failure behind ours.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An `http://127.0.0.1:PORT` URL where nothing listens (a port that was free a moment ago:
/// connections to it are refused).
pub fn unused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    drop(listener);
    wait_closed(addr);
    format!("http://{addr}")
}

/// Waits until nothing accepts connections at `addr` any more. Closing a listening socket is not
/// enough when the tests share a process: a child that another test is starting at that moment
/// holds a copy of every descriptor from its fork until its exec, and the socket goes on
/// listening there meanwhile; a connection it takes is then reset instead of refused.
fn wait_closed(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{addr} still accepts connections after its listener was closed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// 32 random lower-case hex digits: a GUID in .NET's "N" format, as Jellyfin and Emby write ids
/// and access tokens.
pub fn hex_id() -> String {
    let b: [u8; 16] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn plex_token() -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(20)
        .map(char::from)
        .collect()
}

/// Now as .NET writes a UTC `DateTime`: `2025-06-01T12:34:56.1234567Z`.
fn iso_now() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    let secs = d.as_secs();
    let (y, m, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:07}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_nanos() / 100
    )
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// A query parameter, its name compared case-insensitively (as ASP.NET does).
fn query(req: &HttpRequest, name: &str) -> Option<String> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// `%XX` and `+` decoding, as .NET's `WebUtility.UrlDecode` does it.
fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `<Scheme> Key="value", Key2=value2, …` into lower-cased keys and decoded values, if the
/// scheme is `MediaBrowser` (or, with `accept_emby`, `Emby`), case-insensitively.
pub fn parse_mediabrowser_header(
    value: &str,
    accept_emby: bool,
) -> Option<HashMap<String, String>> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("MediaBrowser")
        || (accept_emby && scheme.eq_ignore_ascii_case("Emby"));
    if !known {
        return None;
    }
    let mut fields = HashMap::new();
    for item in rest.split(',') {
        if let Some((k, v)) = item.trim().split_once('=') {
            let k = k.trim();
            if !k.is_empty() {
                fields.insert(
                    k.to_ascii_lowercase(),
                    url_decode(v.trim().trim_matches('"')),
                );
            }
        }
    }
    Some(fields)
}

/// The members of several JSON objects in one object, later ones winning (it keeps each `json!`
/// small enough for the macro's recursion limit).
fn joined(parts: &[Value]) -> Value {
    let mut out = Map::new();
    for part in parts {
        if let Value::Object(map) = part {
            out.extend(map.clone());
        }
    }
    Value::Object(out)
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(JSON_UTF8)
        .body(serde_json::to_string(body).expect("serialize JSON"))
}

fn text_response(status: StatusCode, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/plain")
        .body(body.to_string())
}

/// What a mode answers instead of the normal handling, or `None` to go on (after a `Slow` wait).
async fn mode_answer(mode: Mode, wrong_shape: Value) -> Option<HttpResponse> {
    match mode {
        Mode::Normal => None,
        Mode::Slow(delay) => {
            actix_web::rt::time::sleep(delay).await;
            None
        }
        Mode::Status(code) => {
            let status = StatusCode::from_u16(code).expect("a valid HTTP status");
            Some(text_response(
                status,
                &format!("fake upstream: status {code}"),
            ))
        }
        Mode::Garbage => Some(
            HttpResponse::Ok()
                .content_type(JSON_UTF8)
                .body(GARBAGE_BODY),
        ),
        Mode::WrongShape => Some(json_response(StatusCode::OK, &wrong_shape)),
    }
}

/// Polls `count` every 10 ms until it reaches `at_least`; false if `timeout` passed first.
async fn wait_until(count: impl Fn() -> usize, at_least: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if count() >= at_least {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A running actix server that can be stopped and started again on the same port.
struct Served {
    addr: SocketAddr,
    handle: Mutex<Option<ServerHandle>>,
}

impl Served {
    async fn stop(&self) {
        let handle = lock(&self.handle).take();
        if let Some(handle) = handle {
            handle.stop(false).await;
            wait_closed(self.addr);
        }
    }

    fn restart(&self, serve: impl FnOnce(TcpListener) -> ServerHandle) {
        let mut handle = lock(&self.handle);
        assert!(handle.is_none(), "restart() needs a stop() first");
        let listener = TcpListener::bind(self.addr).expect("rebind the fake's port");
        *handle = Some(serve(listener));
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(handle) = lock(&self.handle).take() {
            // The stop command is sent at once; nobody needs to wait for it to complete.
            drop(handle.stop(false));
        }
    }
}

fn run<S: Send + Sync + 'static>(
    listener: TcpListener,
    state: Arc<S>,
    route: fn(HttpRequest, web::Bytes, web::Data<S>) -> RouteFuture,
) -> ServerHandle {
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .default_service(web::to(route))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    handle
}

type RouteFuture = std::pin::Pin<Box<dyn std::future::Future<Output = HttpResponse>>>;

// ---------------------------------------------------------------------------------------------
// Jellyfin and Emby
// ---------------------------------------------------------------------------------------------

/// A user of a [`FakeMediaServer`]. `UserSpec::new("alice", "pw").admin()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    pub password: String,
    pub admin: bool,
    pub disabled: bool,
    pub remote_access: bool,
    pub media_playback: bool,
    pub live_tv: bool,
}

impl UserSpec {
    /// An enabled, non-administrator user with remote access, media playback and live TV.
    pub fn new(name: &str, password: &str) -> UserSpec {
        UserSpec {
            name: name.to_string(),
            password: password.to_string(),
            admin: false,
            disabled: false,
            remote_access: true,
            media_playback: true,
            live_tv: true,
        }
    }

    /// `Policy.IsAdministrator = true`.
    pub fn admin(mut self) -> UserSpec {
        self.admin = true;
        self
    }

    /// `Policy.IsDisabled = true`.
    pub fn disabled(mut self) -> UserSpec {
        self.disabled = true;
        self
    }

    /// `Policy.EnableRemoteAccess = false` (refused only when [`FakeMediaServer::set_remote_caller`]
    /// says the caller is remote, as Jellyfin judges the address that calls it).
    pub fn no_remote_access(mut self) -> UserSpec {
        self.remote_access = false;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lockout {
    /// The documented default: 3 failed logins for users, 5 for administrators.
    Documented,
    Never,
    After(u32),
}

struct MediaUser {
    id: String,
    spec: UserSpec,
    invalid_attempts: u32,
    last_login: Option<String>,
}

struct Session {
    id: String,
    token: String,
    user_id: String,
    device_id: String,
    device: String,
    client: String,
    version: String,
    /// Created by a login here (rather than by [`FakeMediaServer::add_token`]).
    from_login: bool,
}

enum Caller {
    User(String),
    ApiKey,
}

struct MediaState {
    flavor: Flavor,
    base: String,
    server_id: String,
    server_name: String,
    version: Mutex<String>,
    users: Mutex<Vec<MediaUser>>,
    sessions: Mutex<Vec<Session>>,
    api_keys: Mutex<Vec<String>>,
    mode: Mutex<Mode>,
    info_mode: Mutex<Mode>,
    lockout: Mutex<Lockout>,
    remote_caller: AtomicBool,
    legacy_authorization: AtomicBool,
    login_hits: AtomicUsize,
    token_hits: AtomicUsize,
    logout_hits: AtomicUsize,
    info_hits: AtomicUsize,
    logouts: AtomicUsize,
    device_ids: Mutex<Vec<String>>,
    saw_legacy: AtomicBool,
}

/// A fake Jellyfin or Emby server: a real actix-web server on 127.0.0.1 (random port), serving
/// (paths case-insensitive, also under `/emby/` and `/mediabrowser/`)
///
/// - `POST /Users/AuthenticateByName` — counted in [`FakeMediaServer::login_hits`];
/// - `GET /Users/Me` (Jellyfin; 404 on Emby) and `GET /Users/{id}` — counted in
///   [`FakeMediaServer::token_hits`];
/// - `POST /Sessions/Logout` — counted in [`FakeMediaServer::logout_hits`];
/// - `GET /System/Info/Public` — counted in [`FakeMediaServer::info_hits`], answered as
///   [`FakeMediaServer::set_info_mode`] says (not [`FakeMediaServer::set_mode`]);
/// - anything else: 404.
///
/// See the comment at the top of this file for what each answer is modelled on.
pub struct FakeMediaServer {
    state: Arc<MediaState>,
    served: Served,
}

impl FakeMediaServer {
    /// Starts a fake server with these users (names are unique case-insensitively).
    pub fn start(flavor: Flavor, users: Vec<UserSpec>) -> FakeMediaServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(MediaState {
            flavor,
            base: format!("http://{addr}"),
            server_id: hex_id(),
            server_name: match flavor {
                Flavor::Jellyfin => "fake-jellyfin".into(),
                Flavor::Emby => "fake-emby".into(),
            },
            version: Mutex::new(
                match flavor {
                    Flavor::Jellyfin => "12.0.0",
                    Flavor::Emby => "4.8.10.0",
                }
                .into(),
            ),
            users: Mutex::new(Vec::new()),
            sessions: Mutex::new(Vec::new()),
            api_keys: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Normal),
            info_mode: Mutex::new(Mode::Normal),
            lockout: Mutex::new(match flavor {
                Flavor::Jellyfin => Lockout::Documented,
                Flavor::Emby => Lockout::Never,
            }),
            remote_caller: AtomicBool::new(false),
            legacy_authorization: AtomicBool::new(false),
            login_hits: AtomicUsize::new(0),
            token_hits: AtomicUsize::new(0),
            logout_hits: AtomicUsize::new(0),
            info_hits: AtomicUsize::new(0),
            logouts: AtomicUsize::new(0),
            device_ids: Mutex::new(Vec::new()),
            saw_legacy: AtomicBool::new(false),
        });
        let server = FakeMediaServer {
            served: Served {
                addr,
                handle: Mutex::new(Some(run(listener, state.clone(), media_route))),
            },
            state,
        };
        for user in users {
            server.add_user(user);
        }
        server
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn url(&self) -> String {
        self.state.base.clone()
    }

    pub fn flavor(&self) -> Flavor {
        self.state.flavor
    }

    /// The server's id (`ServerId`, `Id` of /System/Info/Public).
    pub fn server_id(&self) -> String {
        self.state.server_id.clone()
    }

    /// The version /System/Info/Public reports (default "12.0.0" for Jellyfin, "4.8.10.0" Emby).
    pub fn set_version(&self, version: &str) {
        *lock(&self.state.version) = version.to_string();
    }

    /// Adds a user. Panics if the name is taken (case-insensitively).
    pub fn add_user(&self, spec: UserSpec) {
        let mut users = lock(&self.state.users);
        assert!(
            !users
                .iter()
                .any(|u| u.spec.name.eq_ignore_ascii_case(&spec.name)),
            "user {} exists already",
            spec.name
        );
        users.push(MediaUser {
            id: hex_id(),
            spec,
            invalid_attempts: 0,
            last_login: None,
        });
    }

    /// The user's `Id` (32 hex digits). Panics for an unknown user.
    pub fn user_id(&self, user: &str) -> String {
        self.with_user(user, |u| u.id.clone())
    }

    /// How the login, user and logout routes answer from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.state.mode) = mode;
    }

    /// How `GET /System/Info/Public` answers from now on (`WrongShape`: `{"Id": 5}`).
    pub fn set_info_mode(&self, mode: Mode) {
        *lock(&self.state.info_mode) = mode;
    }

    /// A user access token, valid for `/Users/Me`, `/Users/{id}` and `/Sessions/Logout`, as if
    /// `user` had logged in elsewhere (not counted in [`FakeMediaServer::active_sessions`]).
    pub fn add_token(&self, token: &str, user: &str) {
        let user_id = self.user_id(user);
        lock(&self.state.sessions).push(Session {
            id: hex_id(),
            token: token.to_string(),
            user_id,
            device_id: format!("elsewhere-{}", hex_id()),
            device: "Elsewhere".into(),
            client: "Jellyfin Web".into(),
            version: "10.11.0".into(),
            from_login: false,
        });
    }

    /// An API key (dashboard → API keys): not a user's token, so `/Users/Me` answers 400 on
    /// Jellyfin; `/Users/{id}` answers any user.
    pub fn add_api_key(&self, key: &str) {
        lock(&self.state.api_keys).push(key.to_string());
    }

    /// Sets `Policy.IsDisabled`. Enabling a user also clears its failed-login count (as the
    /// documented unlock does).
    pub fn set_disabled(&self, user: &str, disabled: bool) {
        self.with_user(user, |u| {
            u.spec.disabled = disabled;
            if !disabled {
                u.invalid_attempts = 0;
            }
        });
    }

    pub fn is_disabled(&self, user: &str) -> bool {
        self.with_user(user, |u| u.spec.disabled)
    }

    /// `Policy.InvalidLoginAttemptCount`.
    pub fn invalid_attempts(&self, user: &str) -> u32 {
        self.with_user(user, |u| u.invalid_attempts)
    }

    /// Sets `Policy.EnableRemoteAccess`.
    pub fn set_remote_access(&self, user: &str, remote_access: bool) {
        self.with_user(user, |u| u.spec.remote_access = remote_access);
    }

    /// `Some(n)`: a user is disabled after `n` failed logins in a row (admins too); `None`: never.
    /// The default for Jellyfin is the documented 3 for users and 5 for administrators (see
    /// [`FakeMediaServer::set_documented_lockout`]); for Emby, never.
    pub fn set_lockout(&self, attempts: Option<u32>) {
        *lock(&self.state.lockout) = match attempts {
            Some(n) => Lockout::After(n),
            None => Lockout::Never,
        };
    }

    /// Back to the documented default: 3 failed logins for users, 5 for administrators.
    pub fn set_documented_lockout(&self) {
        *lock(&self.state.lockout) = Lockout::Documented;
    }

    /// Whether the caller counts as outside the server's local networks (default false: we call
    /// from loopback). When true, users without remote access get 403 (Jellyfin) / 401 (Emby).
    pub fn set_remote_caller(&self, remote: bool) {
        self.state.remote_caller.store(remote, Ordering::SeqCst);
    }

    /// Jellyfin only: `EnableLegacyAuthorization` (default false, as Jellyfin 12 ships it). When
    /// true the legacy headers, the `api_key` parameter and the `Emby` scheme are honoured, as
    /// 10.8–10.11 do by default.
    pub fn set_legacy_authorization(&self, enabled: bool) {
        self.state
            .legacy_authorization
            .store(enabled, Ordering::SeqCst);
    }

    /// Requests to `POST /Users/AuthenticateByName` so far.
    pub fn login_hits(&self) -> usize {
        self.state.login_hits.load(Ordering::SeqCst)
    }

    /// Requests to `GET /Users/Me` and `GET /Users/{id}` so far.
    pub fn token_hits(&self) -> usize {
        self.state.token_hits.load(Ordering::SeqCst)
    }

    /// Requests to `POST /Sessions/Logout` so far (whatever they were answered).
    pub fn logout_hits(&self) -> usize {
        self.state.logout_hits.load(Ordering::SeqCst)
    }

    /// Requests to `GET /System/Info/Public` so far.
    pub fn info_hits(&self) -> usize {
        self.state.info_hits.load(Ordering::SeqCst)
    }

    /// Logouts that ended a session (answered 204 with a token that was valid).
    pub fn logouts(&self) -> usize {
        self.state.logouts.load(Ordering::SeqCst)
    }

    /// Zeroes the hit counters and [`FakeMediaServer::logouts`] (not the sessions or device ids).
    pub fn reset_hits(&self) {
        for counter in [
            &self.state.login_hits,
            &self.state.token_hits,
            &self.state.logout_hits,
            &self.state.info_hits,
            &self.state.logouts,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// The `DeviceId` of every login request that carried one, in order (whatever its outcome).
    pub fn device_ids(&self) -> Vec<String> {
        lock(&self.state.device_ids).clone()
    }

    /// Sessions created by logins here and not ended since (by a logout, or by a later login of
    /// the same user with the same DeviceId, which replaces the earlier session).
    pub fn active_sessions(&self) -> usize {
        lock(&self.state.sessions)
            .iter()
            .filter(|s| s.from_login)
            .count()
    }

    /// The tokens of `user`'s live sessions (logins and [`FakeMediaServer::add_token`]).
    pub fn tokens_of(&self, user: &str) -> Vec<String> {
        let id = self.user_id(user);
        lock(&self.state.sessions)
            .iter()
            .filter(|s| s.user_id == id)
            .map(|s| s.token.clone())
            .collect()
    }

    /// Whether any request carried `X-Emby-Authorization`, `X-Emby-Token`,
    /// `X-MediaBrowser-Token`, an `api_key` query parameter or an `Authorization: Emby …` header.
    /// Jellyfin 12 ignores all of these (without legacy authorization the request is anonymous);
    /// for Emby they are ordinary and the flag is only informational.
    pub fn saw_legacy_headers(&self) -> bool {
        self.state.saw_legacy.load(Ordering::SeqCst)
    }

    /// Waits (polling every 10 ms) until at least `n` sessions were ended by logouts; false if
    /// `timeout` passed first.
    pub async fn wait_for_logouts(&self, n: usize, timeout: Duration) -> bool {
        wait_until(|| self.logouts(), n, timeout).await
    }

    /// Stops the server and closes its port: connections are then refused. [`Self::restart`]
    /// brings it back on the same port with the same state.
    pub async fn stop(&self) {
        self.served.stop().await;
    }

    /// Starts the server again on the same port, with the same state, after [`Self::stop`].
    pub fn restart(&self) {
        let state = self.state.clone();
        self.served
            .restart(|listener| run(listener, state, media_route));
    }

    /// An `http://127.0.0.1:PORT` URL where nothing listens.
    pub fn unused_url() -> String {
        unused_url()
    }

    fn with_user<T>(&self, user: &str, f: impl FnOnce(&mut MediaUser) -> T) -> T {
        let mut users = lock(&self.state.users);
        let u = users
            .iter_mut()
            .find(|u| u.spec.name.eq_ignore_ascii_case(user))
            .unwrap_or_else(|| panic!("no user {user} on the fake server"));
        f(u)
    }
}

impl MediaState {
    fn jellyfin(&self) -> bool {
        self.flavor == Flavor::Jellyfin
    }

    fn legacy(&self) -> bool {
        self.flavor == Flavor::Emby || self.legacy_authorization.load(Ordering::SeqCst)
    }

    fn note_legacy(&self, req: &HttpRequest) {
        let legacy_header = [
            "X-Emby-Authorization",
            "X-Emby-Token",
            "X-MediaBrowser-Token",
        ]
        .iter()
        .any(|h| req.headers().contains_key(*h));
        let emby_scheme = header(req, "Authorization")
            .and_then(|v| v.split_whitespace().next())
            .is_some_and(|s| s.eq_ignore_ascii_case("Emby"));
        if legacy_header || emby_scheme || query(req, "api_key").is_some() {
            self.saw_legacy.store(true, Ordering::SeqCst);
        }
    }

    /// The fields of the authorization header this server reads (lower-case keys).
    fn auth_fields(&self, req: &HttpRequest) -> HashMap<String, String> {
        let value = match self.flavor {
            // AuthorizationContext (10.11, 12): Authorization first; X-Emby-Authorization only
            // with legacy authorization and no Authorization header.
            Flavor::Jellyfin => header(req, "Authorization").or_else(|| {
                if self.legacy() {
                    header(req, "X-Emby-Authorization")
                } else {
                    None
                }
            }),
            Flavor::Emby => {
                header(req, "X-Emby-Authorization").or_else(|| header(req, "Authorization"))
            }
        };
        value
            .and_then(|v| parse_mediabrowser_header(v, self.legacy()))
            .unwrap_or_default()
    }

    fn token(&self, req: &HttpRequest) -> Option<String> {
        let fields = self.auth_fields(req);
        if let Some(t) = fields.get("token").filter(|t| !t.is_empty()) {
            return Some(t.clone());
        }
        let legacy = self.legacy();
        let from_header = |name: &str| {
            if legacy {
                header(req, name).map(str::to_string)
            } else {
                None
            }
        };
        from_header("X-Emby-Token")
            .or_else(|| from_header("X-MediaBrowser-Token"))
            .or_else(|| query(req, "ApiKey"))
            .or_else(|| if legacy { query(req, "api_key") } else { None })
            .or_else(|| {
                if self.flavor == Flavor::Emby {
                    query(req, "X-Emby-Token")
                } else {
                    None
                }
            })
    }

    fn caller(&self, token: &str) -> Option<Caller> {
        if lock(&self.api_keys).iter().any(|k| k == token) {
            return Some(Caller::ApiKey);
        }
        lock(&self.sessions)
            .iter()
            .find(|s| s.token == token)
            .map(|s| Caller::User(s.user_id.clone()))
    }

    fn lockout_threshold(&self, admin: bool) -> Option<u32> {
        match *lock(&self.lockout) {
            Lockout::Documented => Some(if admin { 5 } else { 3 }),
            Lockout::Never => None,
            Lockout::After(n) => Some(n),
        }
    }

    /// The status a SecurityException becomes: 403 on Jellyfin, 401 on Emby.
    fn security_status(&self) -> StatusCode {
        match self.flavor {
            Flavor::Jellyfin => StatusCode::FORBIDDEN,
            Flavor::Emby => StatusCode::UNAUTHORIZED,
        }
    }

    fn error(&self, status: StatusCode) -> HttpResponse {
        match self.flavor {
            Flavor::Jellyfin => text_response(status, JELLYFIN_ERROR_BODY),
            Flavor::Emby => text_response(status, status.canonical_reason().unwrap_or("Error")),
        }
    }

    fn user_dto(&self, user: &MediaUser) -> Value {
        let spec = &user.spec;
        let has_password = !spec.password.is_empty();
        let mut dto = Map::new();
        dto.insert("Name".into(), json!(spec.name));
        dto.insert("ServerId".into(), json!(self.server_id));
        if self.flavor == Flavor::Emby {
            dto.insert("ServerName".into(), json!(self.server_name));
            dto.insert("Prefix".into(), json!(""));
            dto.insert("DateCreated".into(), json!("2024-01-01T00:00:00.0000000Z"));
        }
        dto.insert("Id".into(), json!(user.id));
        dto.insert("HasPassword".into(), json!(has_password));
        dto.insert("HasConfiguredPassword".into(), json!(has_password));
        dto.insert("HasConfiguredEasyPassword".into(), json!(false));
        dto.insert("EnableAutoLogin".into(), json!(false));
        if let Some(last) = &user.last_login {
            // Jellyfin leaves nulls out (JsonIgnoreCondition.WhenWritingNull).
            dto.insert("LastLoginDate".into(), json!(last));
            dto.insert("LastActivityDate".into(), json!(last));
        }
        dto.insert(
            "Configuration".into(),
            json!({
                "PlayDefaultAudioTrack": true,
                "SubtitleLanguagePreference": "",
                "DisplayMissingEpisodes": false,
                "GroupedFolders": [],
                "SubtitleMode": "Default",
                "DisplayCollectionsView": false,
                "EnableLocalPassword": false,
                "OrderedViews": [],
                "LatestItemsExcludes": [],
                "MyMediaExcludes": [],
                "HidePlayedInLatest": true,
                "RememberAudioSelections": true,
                "RememberSubtitleSelections": true,
                "EnableNextEpisodeAutoPlay": true,
            }),
        );
        dto.insert("Policy".into(), self.policy(user));
        Value::Object(dto)
    }

    fn policy(&self, user: &MediaUser) -> Value {
        let spec = &user.spec;
        match self.flavor {
            Flavor::Jellyfin => joined(&[
                json!({
                    "IsAdministrator": spec.admin,
                    "IsHidden": false,
                    "EnableCollectionManagement": spec.admin,
                    "EnableSubtitleManagement": spec.admin,
                    "EnableLyricManagement": spec.admin,
                    "IsDisabled": spec.disabled,
                    "BlockedTags": [],
                    "AllowedTags": [],
                    "EnableUserPreferenceAccess": true,
                    "AccessSchedules": [],
                    "BlockUnratedItems": [],
                    "EnableRemoteControlOfOtherUsers": spec.admin,
                    "EnableSharedDeviceControl": true,
                    "EnableRemoteAccess": spec.remote_access,
                    "EnableLiveTvManagement": spec.live_tv,
                }),
                json!({
                    "EnableLiveTvAccess": spec.live_tv,
                    "EnableMediaPlayback": spec.media_playback,
                    "EnableAudioPlaybackTranscoding": true,
                    "EnableVideoPlaybackTranscoding": true,
                    "EnablePlaybackRemuxing": true,
                    "ForceRemoteSourceTranscoding": false,
                    "EnableContentDeletion": spec.admin,
                    "EnableContentDeletionFromFolders": [],
                    "EnableContentDownloading": true,
                    "EnableSyncTranscoding": true,
                    "EnableMediaConversion": true,
                    "EnabledDevices": [],
                    "EnableAllDevices": true,
                    "EnabledChannels": [],
                    "EnableAllChannels": true,
                }),
                json!({
                    "EnabledFolders": [],
                    "EnableAllFolders": true,
                    "InvalidLoginAttemptCount": user.invalid_attempts,
                    "LoginAttemptsBeforeLockout": self
                        .lockout_threshold(spec.admin)
                        .map_or(-1, i64::from),
                    "MaxActiveSessions": 0,
                    "EnablePublicSharing": true,
                    "BlockedMediaFolders": [],
                    "BlockedChannels": [],
                    "RemoteClientBitrateLimit": 0,
                    "AuthenticationProviderId":
                        "Jellyfin.Server.Implementations.Users.DefaultAuthenticationProvider",
                    "PasswordResetProviderId":
                        "Jellyfin.Server.Implementations.Users.DefaultPasswordResetProvider",
                    "SyncPlayAccess": "CreateAndJoinGroups",
                }),
            ]),
            Flavor::Emby => joined(&[
                json!({
                    "IsAdministrator": spec.admin,
                    "IsHidden": false,
                    "IsHiddenRemotely": true,
                    "IsHiddenFromUnusedDevices": false,
                    "IsDisabled": spec.disabled,
                    "LockedOutDate": 0,
                    "AllowTagOrRating": false,
                    "BlockedTags": [],
                    "IsTagBlockingModeInclusive": false,
                    "IncludeTags": [],
                    "EnableUserPreferenceAccess": true,
                    "AccessSchedules": [],
                    "BlockUnratedItems": [],
                    "EnableRemoteControlOfOtherUsers": spec.admin,
                    "EnableSharedDeviceControl": true,
                }),
                json!({
                    "EnableRemoteAccess": spec.remote_access,
                    "EnableLiveTvManagement": spec.live_tv,
                    "EnableLiveTvAccess": spec.live_tv,
                    "EnableMediaPlayback": spec.media_playback,
                    "EnableAudioPlaybackTranscoding": true,
                    "EnableVideoPlaybackTranscoding": true,
                    "EnablePlaybackRemuxing": true,
                    "EnableContentDeletion": spec.admin,
                    "RestrictedFeatures": [],
                    "EnableContentDeletionFromFolders": [],
                    "EnableContentDownloading": true,
                    "EnableSubtitleDownloading": false,
                    "EnableSubtitleManagement": false,
                    "EnableSyncTranscoding": true,
                    "EnableMediaConversion": true,
                }),
                json!({
                    "EnabledChannels": [],
                    "EnableAllChannels": true,
                    "EnabledFolders": [],
                    "EnableAllFolders": true,
                    "InvalidLoginAttemptCount": user.invalid_attempts,
                    "EnablePublicSharing": true,
                    "RemoteClientBitrateLimit": 0,
                    "AuthenticationProviderId": "Emby.Server.Implementations.Library.DefaultAuthenticationProvider",
                    "ExcludedSubFolders": [],
                    "SimultaneousStreamLimit": 0,
                    "EnabledDevices": [],
                    "EnableAllDevices": true,
                    "AllowCameraUpload": true,
                    "AllowSharingPersonalItems": false,
                }),
            ]),
        }
    }

    fn session_info(&self, session: &Session, user: &MediaUser, now: &str) -> Value {
        json!({
            "PlayState": {
                "CanSeek": false,
                "IsPaused": false,
                "IsMuted": false,
                "RepeatMode": "RepeatNone",
                "PlaybackOrder": "Default",
            },
            "AdditionalUsers": [],
            "Capabilities": {
                "PlayableMediaTypes": [],
                "SupportedCommands": [],
                "SupportsMediaControl": false,
                "SupportsPersistentIdentifier": true,
            },
            "RemoteEndPoint": "127.0.0.1",
            "PlayableMediaTypes": [],
            "Id": session.id,
            "UserId": user.id,
            "UserName": user.spec.name,
            "Client": session.client,
            "LastActivityDate": now,
            "LastPlaybackCheckIn": "0001-01-01T00:00:00.0000000Z",
            "DeviceName": session.device,
            "DeviceId": session.device_id,
            "ApplicationVersion": session.version,
            "IsActive": true,
            "SupportsMediaControl": false,
            "SupportsRemoteControl": false,
            "NowPlayingQueue": [],
            "NowPlayingQueueFullItems": [],
            "HasCustomDeviceName": false,
            "ServerId": self.server_id,
            "SupportedCommands": [],
        })
    }

    fn public_info(&self) -> Value {
        let version = lock(&self.version).clone();
        match self.flavor {
            Flavor::Jellyfin => json!({
                "LocalAddress": self.base,
                "ServerName": self.server_name,
                "Version": version,
                "ProductName": "Jellyfin Server",
                "OperatingSystem": "",
                "Id": self.server_id,
                "StartupWizardCompleted": true,
            }),
            Flavor::Emby => json!({
                "LocalAddress": self.base,
                "LocalAddresses": [self.base],
                "RemoteAddresses": [],
                "ServerName": self.server_name,
                "Version": version,
                "Id": self.server_id,
            }),
        }
    }
}

/// The path without a `/emby` or `/mediabrowser` prefix, lower-cased, without a trailing slash.
fn media_path(path: &str) -> String {
    let lower = path.to_ascii_lowercase();
    let mut p = lower.as_str();
    for prefix in ["/emby", "/mediabrowser"] {
        if let Some(rest) = p.strip_prefix(prefix) {
            if rest.is_empty() || rest.starts_with('/') {
                p = rest;
                break;
            }
        }
    }
    let p = p.trim_end_matches('/');
    if p.is_empty() {
        "/".into()
    } else {
        p.into()
    }
}

fn media_route(req: HttpRequest, body: web::Bytes, state: web::Data<MediaState>) -> RouteFuture {
    Box::pin(async move { media_answer(req, body, state).await })
}

async fn media_answer(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<MediaState>,
) -> HttpResponse {
    state.note_legacy(&req);
    let path = media_path(req.path());
    let method = req.method().as_str().to_string();
    let wrong_shape = json!({"User": 5});
    match (method.as_str(), path.as_str()) {
        ("POST", "/users/authenticatebyname") => {
            state.login_hits.fetch_add(1, Ordering::SeqCst);
            if let Some(id) = state.auth_fields(&req).remove("deviceid") {
                if !id.is_empty() {
                    lock(&state.device_ids).push(id);
                }
            }
            let mode = lock(&state.mode).clone();
            if let Some(resp) = mode_answer(mode, wrong_shape).await {
                return resp;
            }
            login(&req, &body, &state)
        }
        ("POST", "/sessions/logout") => {
            state.logout_hits.fetch_add(1, Ordering::SeqCst);
            let mode = lock(&state.mode).clone();
            if let Some(resp) = mode_answer(mode, wrong_shape).await {
                return resp;
            }
            logout(&req, &state)
        }
        ("GET", "/system/info/public") => {
            state.info_hits.fetch_add(1, Ordering::SeqCst);
            let mode = lock(&state.info_mode).clone();
            if let Some(resp) = mode_answer(mode, json!({"Id": 5})).await {
                return resp;
            }
            json_response(StatusCode::OK, &state.public_info())
        }
        ("GET", p) if p.starts_with("/users/") && !p["/users/".len()..].contains('/') => {
            state.token_hits.fetch_add(1, Ordering::SeqCst);
            let mode = lock(&state.mode).clone();
            if let Some(resp) = mode_answer(mode, wrong_shape).await {
                return resp;
            }
            let id = p["/users/".len()..].to_string();
            if id == "me" {
                if state.jellyfin() {
                    current_user(&req, &state)
                } else {
                    HttpResponse::NotFound().finish()
                }
            } else {
                user_by_id(&req, &state, &id)
            }
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

/// The RFC 7807 body ASP.NET writes for a model that does not bind.
fn validation_problem() -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type("application/problem+json; charset=utf-8")
        .body(
            json!({
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                "title": "One or more validation errors occurred.",
                "status": 400,
                "errors": {"request": ["The request field is required."]},
                "traceId": format!("00-{}-{}-00", hex_id(), &hex_id()[..16]),
            })
            .to_string(),
        )
}

fn login(req: &HttpRequest, body: &[u8], state: &MediaState) -> HttpResponse {
    let fields = state.auth_fields(req);
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return validation_problem();
    };
    // System.Text.Json as Jellyfin configures it matches property names case-insensitively.
    let member = |name: &str| {
        request
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string)
    };
    let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
    if state.jellyfin()
        && ["client", "device", "deviceid", "version"]
            .iter()
            .any(|f| field(f).is_empty())
    {
        return state.error(StatusCode::BAD_REQUEST);
    }
    let username = member("Username").unwrap_or_default();
    if username.trim().is_empty() {
        return state.error(StatusCode::BAD_REQUEST);
    }
    let password = member("Pw").unwrap_or_default();

    let mut users = lock(&state.users);
    let Some(user) = users
        .iter_mut()
        .find(|u| u.spec.name.eq_ignore_ascii_case(&username))
    else {
        return state.error(StatusCode::UNAUTHORIZED);
    };
    let success = user.spec.password == password;
    if user.spec.disabled {
        return state.error(state.security_status());
    }
    if !user.spec.remote_access && state.remote_caller.load(Ordering::SeqCst) {
        return state.error(state.security_status());
    }
    if !success {
        user.invalid_attempts += 1;
        if let Some(max) = state.lockout_threshold(user.spec.admin) {
            if user.invalid_attempts >= max {
                user.spec.disabled = true;
            }
        }
        return state.error(StatusCode::UNAUTHORIZED);
    }
    let now = iso_now();
    user.invalid_attempts = 0;
    user.last_login = Some(now.clone());

    let session = Session {
        id: hex_id(),
        token: hex_id(),
        user_id: user.id.clone(),
        device_id: field("deviceid"),
        device: field("device"),
        client: field("client"),
        version: field("version"),
        from_login: true,
    };
    let result = json!({
        "User": state.user_dto(user),
        "SessionInfo": state.session_info(&session, user, &now),
        "AccessToken": session.token,
        "ServerId": state.server_id,
    });
    drop(users);
    let mut sessions = lock(&state.sessions);
    // "Logout any existing sessions for the user on this device."
    sessions.retain(|s| !(s.user_id == session.user_id && s.device_id == session.device_id));
    sessions.push(session);
    json_response(StatusCode::OK, &result)
}

/// Why a request to a route that needs a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// No token, an unknown token, or a disabled user's token.
    Unauthenticated,
    /// A user without remote access calling from outside.
    Forbidden,
}

impl MediaState {
    fn refuse(&self, refusal: Refusal) -> HttpResponse {
        match (self.flavor, refusal) {
            // The authentication challenge: 401, empty body; a failed policy: 403, empty body.
            (Flavor::Jellyfin, Refusal::Unauthenticated) => HttpResponse::Unauthorized().finish(),
            (Flavor::Jellyfin, Refusal::Forbidden) => HttpResponse::Forbidden().finish(),
            (Flavor::Emby, _) => self.error(StatusCode::UNAUTHORIZED),
        }
    }
}

/// The caller behind a request's token, for a route that needs one.
fn authenticated_user(req: &HttpRequest, state: &MediaState) -> Result<Caller, Refusal> {
    let token = state.token(req).ok_or(Refusal::Unauthenticated)?;
    let caller = state.caller(&token).ok_or(Refusal::Unauthenticated)?;
    if let Caller::User(id) = &caller {
        let users = lock(&state.users);
        let user = users
            .iter()
            .find(|u| &u.id == id)
            .ok_or(Refusal::Unauthenticated)?;
        if user.spec.disabled {
            return Err(Refusal::Unauthenticated);
        }
        if !user.spec.remote_access && state.remote_caller.load(Ordering::SeqCst) {
            return Err(Refusal::Forbidden);
        }
    }
    Ok(caller)
}

fn current_user(req: &HttpRequest, state: &MediaState) -> HttpResponse {
    match authenticated_user(req, state) {
        Err(refusal) => state.refuse(refusal),
        Ok(Caller::ApiKey) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({
                "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
                "title": "Bad Request",
                "status": 400,
                "traceId": format!("00-{}-{}-00", hex_id(), &hex_id()[..16]),
            }),
        ),
        Ok(Caller::User(id)) => {
            let users = lock(&state.users);
            let user = users
                .iter()
                .find(|u| u.id == id)
                .expect("the caller exists");
            json_response(StatusCode::OK, &state.user_dto(user))
        }
    }
}

fn user_by_id(req: &HttpRequest, state: &MediaState, id: &str) -> HttpResponse {
    if let Err(refusal) = authenticated_user(req, state) {
        return state.refuse(refusal);
    }
    let users = lock(&state.users);
    match users.iter().find(|u| u.id.eq_ignore_ascii_case(id)) {
        Some(user) => json_response(StatusCode::OK, &state.user_dto(user)),
        None => json_response(StatusCode::NOT_FOUND, &json!("User not found")),
    }
}

fn logout(req: &HttpRequest, state: &MediaState) -> HttpResponse {
    if let Err(refusal) = authenticated_user(req, state) {
        return state.refuse(refusal);
    }
    let token = state
        .token(req)
        .expect("an authenticated request has a token");
    let mut sessions = lock(&state.sessions);
    let before = sessions.len();
    sessions.retain(|s| s.token != token);
    if sessions.len() < before {
        state.logouts.fetch_add(1, Ordering::SeqCst);
    }
    HttpResponse::NoContent().finish()
}

// ---------------------------------------------------------------------------------------------
// plex.tv
// ---------------------------------------------------------------------------------------------

/// A plex.tv account of a [`FakePlex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlexAccount {
    pub username: String,
    /// `<username>@example.com`.
    pub email: String,
    /// The account's `authToken` (20 characters on plex.tv; any string here).
    pub token: String,
    /// `None`: the account cannot sign in with a password here (a token-only account).
    pub password: Option<String>,
    pub id: u64,
    /// 16 hex digits, as plex.tv writes account uuids.
    pub uuid: String,
}

struct PlexAcct {
    account: PlexAccount,
    two_factor: Option<String>,
}

struct PlexResource {
    name: String,
    client_id: String,
    owner: String,
    product: &'static str,
    provides: &'static str,
    /// (user name, that user's access token for this server)
    shares: Vec<(String, String)>,
    index: usize,
}

struct PlexState {
    accounts: Mutex<Vec<PlexAcct>>,
    resources: Mutex<Vec<PlexResource>>,
    mode: Mutex<Mode>,
    require_client_id: AtomicBool,
    next_id: AtomicU64,
    user_hits: AtomicUsize,
    resources_hits: AtomicUsize,
    signin_hits: AtomicUsize,
    missing_client_id: AtomicBool,
    /// PINs made through `POST /api/v2/pins`.
    pins: Mutex<Vec<FakePin>>,
}

/// A fake plex.tv: a real actix-web server on 127.0.0.1 (random port), serving
///
/// - `GET /api/v2/user` — counted in [`FakePlex::user_hits`];
/// - `GET /api/v2/resources` — counted in [`FakePlex::resources_hits`];
/// - `POST /api/v2/users/signin` — counted in [`FakePlex::signin_hits`];
/// - anything else: 404.
///
/// JSON with `Accept: application/json`, else a minimal XML. See the comment at the top of this
/// file for what each answer is modelled on.
pub struct FakePlex {
    state: Arc<PlexState>,
    served: Served,
    base: String,
}

impl FakePlex {
    pub fn start() -> FakePlex {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(PlexState {
            accounts: Mutex::new(Vec::new()),
            resources: Mutex::new(Vec::new()),
            mode: Mutex::new(Mode::Normal),
            require_client_id: AtomicBool::new(true),
            next_id: AtomicU64::new(13_692_262),
            user_hits: AtomicUsize::new(0),
            resources_hits: AtomicUsize::new(0),
            signin_hits: AtomicUsize::new(0),
            missing_client_id: AtomicBool::new(false),
            pins: Mutex::new(Vec::new()),
        });
        FakePlex {
            served: Served {
                addr,
                handle: Mutex::new(Some(run(listener, state.clone(), plex_route))),
            },
            state,
            base: format!("http://{addr}"),
        }
    }

    /// `http://127.0.0.1:PORT` (the `api_url`: routes are under `/api/v2/`).
    pub fn url(&self) -> String {
        self.base.clone()
    }

    /// What a person does at app.plex.tv: approves the PIN with this code as `username`, so
    /// that polling it yields their token. False when no such PIN was made.
    pub fn approve_pin(&self, code: &str, username: &str) -> bool {
        let token = self.account(username).token;
        let mut pins = lock(&self.state.pins);
        match pins.iter_mut().find(|p| p.1 == code) {
            Some(pin) => {
                pin.3 = Some(token);
                true
            }
            None => false,
        }
    }

    /// How many PINs were made.
    pub fn pins_made(&self) -> usize {
        lock(&self.state.pins).len()
    }

    /// Adds an account whose token is `token`; `password` allows `users/signin`.
    pub fn add_account(&self, username: &str, token: &str, password: Option<&str>) -> PlexAccount {
        let uuid: String = hex_id()[..16].to_string();
        let account = PlexAccount {
            username: username.to_string(),
            email: format!("{username}@example.com"),
            token: token.to_string(),
            password: password.map(str::to_string),
            id: self.state.next_id.fetch_add(1, Ordering::SeqCst),
            uuid,
        };
        let mut accounts = lock(&self.state.accounts);
        assert!(
            !accounts
                .iter()
                .any(|a| a.account.username.eq_ignore_ascii_case(username)),
            "account {username} exists already"
        );
        accounts.push(PlexAcct {
            account: account.clone(),
            two_factor: None,
        });
        account
    }

    /// Requires this verification code (`verificationCode`) at sign-in; `None` turns 2FA off.
    pub fn set_two_factor(&self, username: &str, code: Option<&str>) {
        let mut accounts = lock(&self.state.accounts);
        let acct = accounts
            .iter_mut()
            .find(|a| a.account.username.eq_ignore_ascii_case(username))
            .unwrap_or_else(|| panic!("no account {username}"));
        acct.two_factor = code.map(str::to_string);
    }

    /// A Plex Media Server (`provides: "server"`) owned by `owner`: listed in the owner's
    /// resources with `owned: true` and the owner's own token as `accessToken`.
    pub fn add_server(&self, name: &str, machine_id: &str, owner: &str) {
        self.add_resource(name, machine_id, owner, "Plex Media Server", "server");
    }

    /// A player device (`provides: "client,player"`, product "Plex Web") owned by `owner`.
    pub fn add_player(&self, name: &str, client_id: &str, owner: &str) {
        self.add_resource(name, client_id, owner, "Plex Web", "client,player");
    }

    fn add_resource(
        &self,
        name: &str,
        client_id: &str,
        owner: &str,
        product: &'static str,
        provides: &'static str,
    ) {
        self.account(owner);
        let mut resources = lock(&self.state.resources);
        let index = resources.len();
        resources.push(PlexResource {
            name: name.to_string(),
            client_id: client_id.to_string(),
            owner: owner.to_string(),
            product,
            provides,
            shares: Vec::new(),
            index,
        });
    }

    /// Shares the server `machine_id` with `with`: listed in their resources with `owned: false`,
    /// `ownerId`/`sourceTitle` of the owner and an access token of its own.
    pub fn share(&self, machine_id: &str, with: &str) {
        self.account(with);
        let mut resources = lock(&self.state.resources);
        let server = resources
            .iter_mut()
            .find(|r| r.client_id == machine_id)
            .unwrap_or_else(|| panic!("no server {machine_id}"));
        server.shares.push((with.to_string(), plex_token()));
    }

    /// Ends a share.
    pub fn unshare(&self, machine_id: &str, with: &str) {
        let mut resources = lock(&self.state.resources);
        if let Some(server) = resources.iter_mut().find(|r| r.client_id == machine_id) {
            server.shares.retain(|(u, _)| !u.eq_ignore_ascii_case(with));
        }
    }

    /// Whether a missing `X-Plex-Client-Identifier` is refused with 400 (default true).
    pub fn set_require_client_identifier(&self, required: bool) {
        self.state
            .require_client_id
            .store(required, Ordering::SeqCst);
    }

    /// How all three routes answer from now on.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.state.mode) = mode;
    }

    pub fn user_hits(&self) -> usize {
        self.state.user_hits.load(Ordering::SeqCst)
    }

    pub fn resources_hits(&self) -> usize {
        self.state.resources_hits.load(Ordering::SeqCst)
    }

    pub fn signin_hits(&self) -> usize {
        self.state.signin_hits.load(Ordering::SeqCst)
    }

    pub fn reset_hits(&self) {
        for counter in [
            &self.state.user_hits,
            &self.state.resources_hits,
            &self.state.signin_hits,
        ] {
            counter.store(0, Ordering::SeqCst);
        }
    }

    /// Whether any request to the three routes lacked `X-Plex-Client-Identifier`.
    pub fn saw_missing_client_identifier(&self) -> bool {
        self.state.missing_client_id.load(Ordering::SeqCst)
    }

    /// Waits (polling every 10 ms) until `/api/v2/user` has been requested at least `n` times.
    pub async fn wait_for_user_hits(&self, n: usize, timeout: Duration) -> bool {
        wait_until(|| self.user_hits(), n, timeout).await
    }

    /// Stops the server and closes its port. [`Self::restart`] brings it back.
    pub async fn stop(&self) {
        self.served.stop().await;
    }

    /// Starts the server again on the same port, with the same state, after [`Self::stop`].
    pub fn restart(&self) {
        let state = self.state.clone();
        self.served
            .restart(|listener| run(listener, state, plex_route));
    }

    pub fn unused_url() -> String {
        unused_url()
    }

    fn account(&self, username: &str) -> PlexAccount {
        lock(&self.state.accounts)
            .iter()
            .find(|a| a.account.username.eq_ignore_ascii_case(username))
            .map(|a| a.account.clone())
            .unwrap_or_else(|| panic!("no account {username} on the fake plex.tv"))
    }
}

/// A PIN of the fake plex.tv: (id, code, client identifier, token once approved).
type FakePin = (u64, String, String, Option<String>);

/// plex.tv's PIN routes (modelled on plex.tv's documented flow for third-party apps):
/// `POST /api/v2/pins?strong=true` → 201 `{id, code, authToken: null, …}` for the caller's
/// `X-Plex-Client-Identifier` (required); `GET /api/v2/pins/{id}` → the PIN, with `authToken`
/// once approved, 404 for an unknown id or another client identifier.
fn plex_pins(
    req: &HttpRequest,
    method: &str,
    path: &str,
    state: &PlexState,
) -> Option<HttpResponse> {
    let rest = path.strip_prefix("/api/v2/pins")?;
    let client = header(req, "X-Plex-Client-Identifier").map(str::to_string)?;
    let pin_json = |id: u64, code: &str, token: &Option<String>| {
        json!({"id": id, "code": code, "product": "mtx-auth", "trusted": false,
               "clientIdentifier": client, "expiresIn": 1800, "authToken": token})
    };
    match (method, rest) {
        ("POST", "") => {
            let strong = query(req, "strong").as_deref() == Some("true");
            let id = state.next_id.fetch_add(1, Ordering::SeqCst);
            let code: String = if strong {
                hex_id()[..25].to_string()
            } else {
                hex_id()[..4].to_string()
            };
            lock(&state.pins).push((id, code.clone(), client.clone(), None));
            Some(json_response(
                StatusCode::CREATED,
                &pin_json(id, &code, &None),
            ))
        }
        ("GET", id) => {
            let id: u64 = id.trim_start_matches('/').parse().ok()?;
            let pins = lock(&state.pins);
            let found = pins.iter().find(|p| p.0 == id && p.2 == client);
            Some(match found {
                Some((id, code, _, token)) => {
                    json_response(StatusCode::OK, &pin_json(*id, code, token))
                }
                None => HttpResponse::NotFound().finish(),
            })
        }
        _ => None,
    }
}

fn plex_route(req: HttpRequest, body: web::Bytes, state: web::Data<PlexState>) -> RouteFuture {
    Box::pin(async move { plex_answer(req, body, state).await })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `name="value"` pairs for the scalar members of a JSON object.
fn xml_attributes(obj: &Value) -> String {
    let mut out = String::new();
    if let Value::Object(map) = obj {
        for (k, v) in map {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Bool(b) => (if *b { "1" } else { "0" }).to_string(),
                Value::Number(n) => n.to_string(),
                _ => continue,
            };
            out.push_str(&format!(" {k}=\"{}\"", xml_escape(&text)));
        }
    }
    out
}

fn xml_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/xml; charset=utf-8")
        .body(format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}\n"
        ))
}

fn plex_error(json: bool, status: StatusCode, code: u32, message: &str) -> HttpResponse {
    if json {
        json_response(
            status,
            &json!({"errors": [{"code": code, "message": message, "status": status.as_u16()}]}),
        )
    } else {
        xml_response(
            status,
            format!(
                "<errors>\n  <error code=\"{code}\" message=\"{}\" status=\"{}\"/>\n</errors>",
                xml_escape(message),
                status.as_u16()
            ),
        )
    }
}

fn plex_user_json(account: &PlexAccount, two_factor: bool) -> Value {
    let now = unix_now();
    joined(&[
        json!({
            "id": account.id,
            "uuid": account.uuid,
            "username": account.username,
            "title": account.username,
            "email": account.email,
            "friendlyName": account.username,
            "locale": null,
            "confirmed": true,
            "joinedAt": 1_600_000_000u64,
            "emailOnlyAuth": false,
            "hasPassword": account.password.is_some(),
            "protected": false,
            "thumb": format!("https://plex.tv/users/{}/avatar?c=1700000000", account.uuid),
            "authToken": account.token,
        }),
        json!({
            "mailingListStatus": "unsubscribed",
            "mailingListActive": false,
            "scrobbleTypes": "",
            "country": "US",
            "subscription": {
                "active": false,
                "subscribedAt": null,
                "status": "Inactive",
                "paymentService": null,
                "plan": null,
                "features": [],
            },
            "subscriptionDescription": null,
            "restricted": false,
            "anonymous": false,
            "home": false,
            "guest": false,
            "homeSize": 1,
            "homeAdmin": false,
            "maxHomeSize": 15,
            "rememberExpiresAt": now + 14 * 86_400,
        }),
        json!({
            "profile": {
                "autoSelectAudio": true,
                "defaultAudioLanguage": null,
                "defaultSubtitleLanguage": null,
                "autoSelectSubtitle": 0,
                "defaultSubtitleAccessibility": 0,
                "defaultSubtitleForced": 0,
                "watchedIndicator": 1,
                "mediaReviewsVisibility": 0,
            },
            "entitlements": [],
            "roles": [],
            "services": [],
            "adsConsent": null,
            "adsConsentSetAt": null,
            "adsConsentReminderAt": null,
            "experimentalFeatures": false,
            "twoFactorEnabled": two_factor,
            "backupCodesCreated": false,
            "subscriptions": [],
        }),
    ])
}

impl PlexState {
    fn resources_for(&self, account: &PlexAccount, https: bool, relay: bool) -> Vec<Value> {
        let accounts = lock(&self.accounts);
        let owner_of = |name: &str| {
            accounts
                .iter()
                .find(|a| a.account.username.eq_ignore_ascii_case(name))
                .map(|a| a.account.clone())
                .expect("resource owners are accounts")
        };
        let mut out = Vec::new();
        for r in lock(&self.resources).iter() {
            let owned = r.owner.eq_ignore_ascii_case(&account.username);
            let share = r
                .shares
                .iter()
                .find(|(u, _)| u.eq_ignore_ascii_case(&account.username));
            if !owned && share.is_none() {
                continue;
            }
            let owner = owner_of(&r.owner);
            let access_token = if owned {
                account.token.clone()
            } else {
                share.expect("shared").1.clone()
            };
            let server = r.provides == "server";
            let n = 10 + r.index;
            let mut connections = Vec::new();
            if server {
                let uri = |ip: &str, port: u16| {
                    if https {
                        format!(
                            "https://{}.{}.plex.direct:{port}",
                            ip.replace('.', "-"),
                            r.client_id
                        )
                    } else {
                        format!("http://{ip}:{port}")
                    }
                };
                let protocol = if https { "https" } else { "http" };
                let local = format!("192.168.1.{n}");
                let public = format!("203.0.113.{n}");
                connections.push(json!({
                    "protocol": protocol, "address": local, "port": 32400,
                    "uri": uri(&local, 32400), "local": true, "relay": false, "IPv6": false,
                }));
                connections.push(json!({
                    "protocol": protocol, "address": public, "port": 32400,
                    "uri": uri(&public, 32400), "local": false, "relay": false, "IPv6": false,
                }));
                if relay {
                    let relay_ip = format!("198.51.100.{n}");
                    connections.push(json!({
                        "protocol": "https", "address": relay_ip, "port": 8443,
                        "uri": format!(
                            "https://{}.{}.plex.direct:8443",
                            relay_ip.replace('.', "-"),
                            r.client_id
                        ),
                        "local": false, "relay": true, "IPv6": false,
                    }));
                }
            }
            out.push(json!({
                "name": r.name,
                "product": r.product,
                "productVersion": if server { "1.41.3.9314-a0bfb8370" } else { "4.145.1" },
                "platform": if server { "Linux" } else { "Chrome" },
                "platformVersion": if server { "6.1.0" } else { "126.0" },
                "device": if server { "PC" } else { "Linux" },
                "clientIdentifier": r.client_id,
                "createdAt": "2024-01-01T00:00:00Z",
                "lastSeenAt": "2025-01-01T00:00:00Z",
                "provides": r.provides,
                "ownerId": if owned { Value::Null } else { json!(owner.id) },
                "sourceTitle": if owned { Value::Null } else { json!(owner.username) },
                "publicAddress": format!("203.0.113.{n}"),
                "accessToken": access_token,
                "owned": owned,
                "home": false,
                "synced": false,
                "relay": server,
                "presence": true,
                "httpsRequired": false,
                "publicAddressMatches": owned,
                "dnsRebindingProtection": false,
                "natLoopbackSupported": false,
                "connections": connections,
            }));
        }
        out
    }
}

async fn plex_answer(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<PlexState>,
) -> HttpResponse {
    let path = req.path().trim_end_matches('/').to_string();
    let method = req.method().as_str().to_string();
    if let Some(resp) = plex_pins(&req, &method, &path, &state) {
        return resp;
    }
    let (counter, wrong_shape) = match (method.as_str(), path.as_str()) {
        ("GET", "/api/v2/user") => (&state.user_hits, json!({"username": 5})),
        ("GET", "/api/v2/resources") => (&state.resources_hits, json!({"resources": 5})),
        ("POST", "/api/v2/users/signin") => (&state.signin_hits, json!({"authToken": 5})),
        _ => return HttpResponse::NotFound().finish(),
    };
    counter.fetch_add(1, Ordering::SeqCst);
    let client_id = header(&req, "X-Plex-Client-Identifier")
        .map(str::to_string)
        .or_else(|| query(&req, "X-Plex-Client-Identifier"));
    if client_id.is_none() {
        state.missing_client_id.store(true, Ordering::SeqCst);
    }
    let mode = lock(&state.mode).clone();
    if let Some(resp) = mode_answer(mode, wrong_shape).await {
        return resp;
    }
    let wants_json = header(&req, "Accept").is_some_and(|a| a.contains("json"));
    if client_id.is_none() && state.require_client_id.load(Ordering::SeqCst) {
        return plex_error(
            wants_json,
            StatusCode::BAD_REQUEST,
            1000,
            "X-Plex-Client-Identifier is missing",
        );
    }
    let unauthenticated = || {
        plex_error(
            wants_json,
            StatusCode::UNAUTHORIZED,
            1001,
            "User could not be authenticated",
        )
    };

    if path == "/api/v2/users/signin" {
        let form: HashMap<String, String> = form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let login = form.get("login").cloned().unwrap_or_default();
        let password = form.get("password").cloned().unwrap_or_default();
        let accounts = lock(&state.accounts);
        let Some(acct) = accounts.iter().find(|a| {
            !login.is_empty()
                && (a.account.username.eq_ignore_ascii_case(&login)
                    || a.account.email.eq_ignore_ascii_case(&login))
        }) else {
            return unauthenticated();
        };
        if acct.account.password.as_deref() != Some(password.as_str()) {
            return unauthenticated();
        }
        if let Some(code) = &acct.two_factor {
            match form.get("verificationCode").filter(|c| !c.is_empty()) {
                None => {
                    return plex_error(
                        wants_json,
                        StatusCode::UNAUTHORIZED,
                        1029,
                        "Please enter the verification code",
                    )
                }
                Some(given) if given != code => return unauthenticated(),
                Some(_) => {}
            }
        }
        let user = plex_user_json(&acct.account, acct.two_factor.is_some());
        return if wants_json {
            let mut user = user;
            user["pastSubscriptions"] = json!([]);
            user["trials"] = json!([]);
            json_response(StatusCode::CREATED, &user)
        } else {
            xml_response(
                StatusCode::CREATED,
                format!("<user{}/>", xml_attributes(&user)),
            )
        };
    }

    let Some(token) = header(&req, "X-Plex-Token")
        .map(str::to_string)
        .or_else(|| query(&req, "X-Plex-Token"))
    else {
        return unauthenticated();
    };
    let found = lock(&state.accounts)
        .iter()
        .find(|a| a.account.token == token)
        .map(|a| (a.account.clone(), a.two_factor.is_some()));
    let Some((account, two_factor)) = found else {
        return unauthenticated();
    };
    if path == "/api/v2/user" {
        let user = plex_user_json(&account, two_factor);
        return if wants_json {
            json_response(StatusCode::OK, &user)
        } else {
            xml_response(StatusCode::OK, format!("<user{}/>", xml_attributes(&user)))
        };
    }
    let flag = |name: &str| query(&req, name).is_some_and(|v| v == "1");
    let resources = state.resources_for(&account, flag("includeHttps"), flag("includeRelay"));
    if wants_json {
        json_response(StatusCode::OK, &Value::Array(resources))
    } else {
        let mut xml = format!("<resources size=\"{}\">", resources.len());
        for r in &resources {
            xml.push_str(&format!(
                "\n  <resource{}>\n    <connections>",
                xml_attributes(r)
            ));
            for c in r["connections"].as_array().into_iter().flatten() {
                xml.push_str(&format!("\n      <connection{}/>", xml_attributes(c)));
            }
            xml.push_str("\n    </connections>\n  </resource>");
        }
        xml.push_str("\n</resources>");
        xml_response(StatusCode::OK, xml)
    }
}
