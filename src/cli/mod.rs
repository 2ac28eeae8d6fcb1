//! The command line: `serve` (the default), `check`, `hash`, `explain`, `token`,
//! `import-mediamtx` and `healthcheck`.

mod token;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Secrets};
use crate::credential;
use crate::logging::{self, LogFormat};
use crate::policy::{Decision, Policy};
use crate::reload::{self, LivePolicy};
use crate::request::Request;
use crate::state::Service;
use crate::store::feed::CredentialFeed;
use crate::store::Store;
use crate::verifier::Verifier;

/// Said by `check` and `serve` of a config under which every request is denied.
const GRANTS_NOTHING: &str = "this config grants nothing (no [[users]] entry with a permission, no [jwt], no account source, no [store]): every request will be denied";

/// How often `serve` looks at the config file for changes.
const RELOAD_POLL: Duration = Duration::from_millis(250);

#[derive(Parser)]
#[command(
    name = "mtx-auth",
    version,
    about = "Authentication service for MediaMTX (authMethod: http)"
)]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Without a subcommand, mtx-auth serves.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve(ServeArgs),
    /// Validate a config file; print each problem as FILE:LINE:COL: message.
    ///
    /// A secret given as `*_file` or `*_env` that cannot be read here is a warning, and
    /// everything else is still checked: the config may be meant for another machine (a
    /// Kubernetes Secret, a systemd credential). `serve` refuses to start without it.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Make unreadable secrets errors, as `serve` does.
        #[arg(long)]
        strict: bool,
    },
    /// Read one secret from stdin and print its argon2id hash (or sha256 with --sha256).
    Hash {
        /// Print `sha256:…` instead of `argon2:…`. SHA-256 is fast to brute-force: prefer argon2.
        #[arg(long)]
        sha256: bool,
    },
    /// Decide one request offline and say which user decided, or why none did.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        /// MediaMTX's request JSON, e.g. '{"user":"u","password":"p","action":"read","path":"cam","ip":"10.0.0.1"}'.
        /// `-` reads it from stdin.
        request: String,
    },
    /// Stream credentials mtx-auth issues itself: issue, list, revoke.
    Token {
        #[command(subcommand)]
        command: token::TokenCommand,
    },
    /// Moves the store to another engine: `store copy --from sqlite://OLD.db --to postgres://…`.
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Print an mtx-auth config equivalent to a mediamtx.yml's authInternalUsers and authJWT*
    /// settings (stdout); notes on what could not be carried over exactly go to stderr.
    ImportMediamtx {
        /// MediaMTX's config file.
        file: PathBuf,
        /// Import these settings instead of the ones the file's authMethod selects.
        #[arg(long, value_enum)]
        method: Option<crate::import::Method>,
    },
    /// Exit 0 if URL answers 200, else 1: a health check for images without curl or a shell.
    Healthcheck {
        #[arg(long, default_value = "http://127.0.0.1:9000/healthz")]
        url: String,
    },
}

#[derive(Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(long, env = "MTX_AUTH_CONFIG", default_value = "config/mtx-auth.toml")]
    pub config: PathBuf,
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Address to listen on; overrides `[server] listen`.
    #[arg(long)]
    listen: Option<String>,
    /// Log line format.
    #[arg(long, value_enum, default_value_t)]
    log_format: LogFormat,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(cli.serve));
    if !matches!(command, Command::Serve(_)) {
        end_quietly_on_closed_stdout();
    }
    let result = match command {
        Command::Serve(args) => serve(args),
        Command::Check { config, strict } => check(&config.config, strict),
        Command::Hash { sha256 } => hash(sha256),
        Command::Explain { config, request } => explain(&config.config, &request),
        Command::Token { command } => token::run(command),
        Command::Store { command } => store_copy(command),
        Command::ImportMediamtx { file, method } => import_mediamtx(&file, method),
        Command::Healthcheck { url } => healthcheck(&url),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mtx-auth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mtx-auth explain … | head -1`: Rust starts every program with SIGPIPE ignored, so once the
/// reader is gone a write fails with EPIPE and `println!` panics. For the one-shot subcommands
/// the default disposition comes back instead: the process ends quietly on its first write to a
/// closed pipe, as `cat` or `grep` do. That covers every print at once (explain's listing,
/// import-mediamtx's config, check, hash, and any later subcommand) rather than threading a
/// write-error check through each of them, and these commands hold nothing that needs cleaning
/// up on the way out.
///
/// `serve` keeps ignoring SIGPIPE: it must live through any client that goes away. (Sockets
/// would be safe either way, since std sends with MSG_NOSIGNAL on Linux, but its logs go to
/// stderr, which may be a pipe.)
fn end_quietly_on_closed_stdout() {
    #[cfg(unix)]
    // SAFETY: called from main before any thread exists (no runtime has started yet);
    // resetting a disposition to SIG_DFL installs no handler, so there is nothing to be unsound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Loads a config, printing its problems to stderr when it has any.
fn load(path: &Path) -> Option<Config> {
    match Config::load(path) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy a stopped store into a new, empty one (SQLite to PostgreSQL, when one replica
    /// becomes several): credentials, shared secrets, web sessions, second factors, live
    /// sessions. A PostgreSQL password comes from MTX_AUTH_STORE_PASSWORD.
    Copy {
        /// The store to copy: sqlite://FILE (relative to the current folder) or postgres://…
        #[arg(long)]
        from: String,
        /// The new store, created and migrated if needed; it must hold nothing yet.
        #[arg(long)]
        to: String,
    },
}

fn store_copy(command: StoreCommand) -> anyhow::Result<ExitCode> {
    let StoreCommand::Copy { from, to } = command;
    let here = std::env::current_dir()?;
    let url = |u: &str| {
        crate::store::StoreUrl::parse(u, &here)
            .map(|url| crate::store::StoreConfig {
                url: url.with_password_from_env(),
            })
            .map_err(|e| anyhow::anyhow!("{u}: {e}"))
    };
    let (from, to) = (url(&from)?, url(&to)?);
    if from == to {
        anyhow::bail!("--from and --to are the same store");
    }
    if let crate::store::StoreUrl::Sqlite(path) = &from.url {
        if !path.exists() {
            anyhow::bail!("--from: {} does not exist", path.display());
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let source = crate::store::Store::open(&from).await?;
        let target = crate::store::Store::open(&to).await?;
        let copied = crate::store::copy::copy(&source, &target).await?;
        for (table, rows) in copied {
            println!("{table}: {rows} rows");
        }
        println!("copied {} to {}", source.describe(), target.describe());
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _log_guard = logging::init(args.log_format);
    // Before reading: a change made from here on is one the watcher must load.
    let stamp = reload::file_stamp(&args.config.config);
    let Some(config) = load(&args.config.config) else {
        eprintln!("mtx-auth: refusing to start: the config has errors");
        return Ok(ExitCode::FAILURE);
    };
    crate::server::raise_fd_limit();
    let listen = args.listen.unwrap_or_else(|| config.server.listen.clone());
    let listener = TcpListener::bind(&listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    let users = config.users.len();
    let store = config.store.clone();
    let mediamtx = config.mediamtx.clone();
    let portal = match &config.portal {
        Some(p) => {
            let listener = TcpListener::bind(p.listen).map_err(|e| {
                anyhow::anyhow!("cannot listen on {} ([portal] listen): {e}", p.listen)
            })?;
            Some((Arc::new(p.clone()), listener))
        }
        None => None,
    };
    if config.grants_nothing() {
        tracing::warn!("{}: {GRANTS_NOTHING}", args.config.config.display());
    }
    let live = Arc::new(LivePolicy::new(
        Policy::new(config),
        Some(args.config.config.clone()),
    ));
    reload::release_freed_memory();
    actix_web::rt::System::new().block_on(async move {
        let service = Service::open(Arc::clone(&live), store.as_ref(), mediamtx)
            .await
            .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
        let portal_server = match portal {
            Some((config, portal_listener)) => {
                if config.secure && config.trusted_proxies.is_empty() {
                    tracing::warn!("[portal] public_url is https but trusted_proxies is empty: behind a proxy, every visitor shares the proxy's address in the brute-force limiter");
                }
                let portal = Arc::new(
                    crate::portal::Portal::new(config, Arc::clone(&service))
                        .map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?,
                );
                actix_web::rt::spawn(crate::portal::watch::run(Arc::clone(&portal)));
                tracing::info!("portal: {} served from {}", portal.config.public_url, portal_listener.local_addr()?);
                Some(crate::portal::http::start(portal_listener, portal)?)
            }
            None => None,
        };
        let server = crate::server::start_service(listener.try_clone()?, service, None)?;
        if let Some(portal_server) = portal_server {
            actix_web::rt::spawn(portal_server);
        }
        actix_web::rt::spawn(reload::watch_file(Arc::clone(&live), RELOAD_POLL, stamp));
        #[cfg(unix)]
        actix_web::rt::spawn(reload::on_sighup(Arc::clone(&live)));
        tracing::info!(
            "listening on http://{}/auth ({users} users from {})",
            listener.local_addr()?,
            args.config.config.display()
        );
        server.await?;
        anyhow::Ok(())
    })?;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path, strict: bool) -> anyhow::Result<ExitCode> {
    let secrets = if strict {
        Secrets::Required
    } else {
        Secrets::MayBeAbsent
    };
    Ok(match Config::load_with(path, secrets) {
        Ok(c) => {
            println!("{}: ok ({} users)", path.display(), c.users.len());
            for w in &c.warnings {
                eprintln!(
                    "{}:{}:{}: warning: {} (serve will refuse to start without it; --strict makes this an error)",
                    w.file, w.line, w.col, w.message
                );
            }
            if c.grants_nothing() {
                eprintln!("{}: warning: {GRANTS_NOTHING}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    })
}

fn import_mediamtx(file: &Path, method: Option<crate::import::Method>) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    match crate::import::import(&text, &file.display().to_string(), method) {
        Ok(imported) => {
            for note in &imported.notes {
                eprintln!("note: {note}");
            }
            print!("{}", imported.toml);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn healthcheck(url: &str) -> anyhow::Result<ExitCode> {
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()?
                .get(url)
                .send()
                .await
                .map(|r| r.status())
        });
    match status {
        Ok(s) if s == reqwest::StatusCode::OK => Ok(ExitCode::SUCCESS),
        Ok(s) => {
            eprintln!("mtx-auth healthcheck: {url} answered {s}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("mtx-auth healthcheck: {url}: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn hash(sha256: bool) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let secret = input
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&input);
    anyhow::ensure!(!secret.is_empty(), "no secret on stdin");
    println!(
        "{}",
        if sha256 {
            credential::hash_sha256(secret)
        } else {
            credential::hash_argon2(secret)
        }
    );
    Ok(ExitCode::SUCCESS)
}

fn explain(path: &Path, request: &str) -> anyhow::Result<ExitCode> {
    let Some(config) = load(path) else {
        return Ok(ExitCode::FAILURE);
    };
    let body = if request == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s)?;
        s
    } else {
        request.to_owned()
    };
    let req = Request::parse(body.as_bytes())?;
    let store_config = config.store.clone();
    let policy = Policy::new(config);
    let verifier = Verifier::new(1, 1);
    // The same driver as the server, so a stream credential is read from the store, a JWT is
    // checked against freshly fetched keys and account sources ask their upstreams.
    let (decision, sessions) = actix_web::rt::System::new().block_on(async {
        let store = match &store_config {
            Some(config) => Some(Store::open(config).await?),
            None => None,
        };
        if let Some(store) = &store {
            CredentialFeed::load(store.clone(), Arc::clone(&verifier.issued)).await?;
        }
        if let Some(jwt) = policy.jwt() {
            if let Err(e) = jwt.keys.refresh().await {
                println!("jwt: key set could not be fetched: {e}");
            }
        }
        for a in policy.accounts() {
            if let Some(keys) = a.key_store() {
                if let Err(e) = keys.refresh().await {
                    println!("{}: provider keys could not be fetched: {e}", a.name());
                }
            }
        }
        let decision = verifier.decide(&policy, &req).await;
        // What a running server wrote to the store: the live sessions this identity holds.
        let sessions = match (&store, &decision) {
            (Some(store), Decision::Allow { user, .. }) => Some(
                store
                    .sessions()
                    .await?
                    .into_iter()
                    .filter(|s| s.identity == *user)
                    .collect::<Vec<_>>(),
            ),
            _ => None,
        };
        anyhow::Ok((decision, sessions))
    })?;
    let file = path.display();
    let mut order = vec![format!("users ({} entries)", policy.users().len())];
    if policy.jwt().is_some() {
        order.push("jwt".into());
    }
    for a in policy.accounts() {
        order.push(format!("{} ({file}:{})", a.name(), a.line));
    }
    let order = order.join(", then ");
    match &decision {
        Decision::Allow {
            user, source, rule, ..
        } => {
            println!("allow (200) user={user:?}");
            match rule {
                Some(r) => println!("decided by: users #{} at {file}:{}", r.index + 1, r.line),
                None => println!("decided by: {}", source.as_str()),
            }
            println!("sources in order: {order}");
            if let Some(sessions) = sessions {
                println!(
                    "live sessions of {user:?} (as the store has them): {}",
                    sessions.len()
                );
                for s in sessions {
                    let since = crate::time::rfc3339(s.created_at).unwrap_or_default();
                    println!("  {} {} {:?} since {since}", s.protocol, s.action, s.path);
                }
            }
        }
        Decision::Deny(reason) => {
            println!("deny (401): {reason}");
            let Some(action) = req.action else {
                println!("  action {:?} is not one MediaMTX sends", req.action_raw);
                return Ok(ExitCode::SUCCESS);
            };
            println!("sources in order: {order}");
            for index in 0..policy.users().len() as u32 {
                let user = policy.users().get(index);
                let why = match user.check(&req, action, None) {
                    Err(m) => m.as_str(),
                    Ok(true) => "argon2 credential did not verify",
                    Ok(false) => "matched", // unreachable for a deny; kept honest anyway
                };
                let name = match user.name() {
                    None => "any".to_owned(),
                    Some(c) => c.kind().to_owned() + " user",
                };
                println!(
                    "  users #{} ({name}) at {file}:{}: {why}",
                    index + 1,
                    user.line()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
