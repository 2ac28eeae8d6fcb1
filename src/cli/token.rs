//! `mtx-auth token issue|list|revoke`: stream credentials, made and ended from the command line.
//!
//! The credential is printed once and never again: the store keeps its SHA-256 only. A running
//! server reads every change within a second (`crate::store::feed`), with no reload.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;

use serde::Serialize;

use crate::config::{Config, Secrets};
use crate::issued;
use crate::permission::{Action, PathMatcher};
use crate::store::feed::hex_digest;
use crate::store::{CredentialRecord, PermissionRecord, Store, StoreError};
use crate::time::{now_unix, parse_duration, rfc3339};

use super::ConfigArg;

/// The longest holder name accepted: a label, not a document.
const MAX_NAME: usize = 200;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a credential and print it, once: only its digest is stored.
    Issue {
        #[command(flatten)]
        config: ConfigArg,
        /// The holder: what the allow reply and the logs call whoever uses it.
        #[arg(long)]
        name: String,
        /// ACTION[:PATH], repeatable. PATH as in [[users]] permissions: empty for any path,
        /// `~` for a regular expression (`read:~^cam/`).
        #[arg(long = "allow", required = true, value_name = "ACTION[:PATH]")]
        allow: Vec<String>,
        /// How long it is good for (90s, 15m, 2h, 7d, 1h30m); without it, until revoked.
        #[arg(long)]
        ttl: Option<String>,
        /// Print {"id", "token", "name", "permissions", "expires_at"} instead.
        #[arg(long)]
        json: bool,
    },
    /// List every credential (never the credential itself).
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// One JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke credentials by id; sessions they let in are kicked.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

pub fn run(command: TokenCommand) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match command {
            TokenCommand::Issue {
                config,
                name,
                allow,
                ttl,
                json,
            } => issue(&config.config, name, &allow, ttl.as_deref(), json).await,
            TokenCommand::List { config, json } => list(&config.config, json).await,
            TokenCommand::Revoke { config, ids } => revoke(&config.config, &ids).await,
        }
    })
}

/// Opens the store the config names. The rest of the config must be valid too: a credential
/// issued against a broken config would be a surprise at the next start.
async fn open(path: &Path) -> anyhow::Result<Store> {
    let config =
        Config::load_with(path, Secrets::MayBeAbsent).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(store) = config.store else {
        anyhow::bail!(
            "{}: no [store] section: stream credentials are kept in the store (add [store] url = \"sqlite://mtx-auth.db\")",
            path.display()
        );
    };
    Ok(Store::open(&store).await?)
}

/// Reads `ACTION[:PATH]` as a `[[users]]` permission would be read, compiling a regex path.
fn permission(text: &str) -> Result<PermissionRecord, String> {
    let (action, path) = text.split_once(':').unwrap_or((text, ""));
    let parsed: Action = action
        .parse()
        .map_err(|e| format!("--allow {text:?}: {e}"))?;
    PathMatcher::parse(path).map_err(|e| format!("--allow {text:?}: path: {e}"))?;
    Ok(PermissionRecord {
        action: parsed.as_str().to_owned(),
        // api, metrics and pprof ignore the path (MediaMTX's rule); keep what was written.
        path: path.to_owned(),
    })
}

#[derive(Serialize)]
struct Issued<'a> {
    id: &'a str,
    token: &'a str,
    name: &'a str,
    permissions: &'a [PermissionRecord],
    expires_at: Option<String>,
}

async fn issue(
    path: &Path,
    name: String,
    allow: &[String],
    ttl: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(!name.trim().is_empty(), "--name must not be empty");
    anyhow::ensure!(
        name.chars().count() <= MAX_NAME,
        "--name is longer than {MAX_NAME} characters"
    );
    anyhow::ensure!(
        !name.chars().any(char::is_control),
        "--name must not hold control characters"
    );
    let permissions = allow
        .iter()
        .map(|a| permission(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!(e))?;
    let now = now_unix();
    let expires_at = match ttl {
        None => None,
        Some(ttl) => {
            let ttl = parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            anyhow::ensure!(!ttl.is_zero(), "--ttl must be longer than 0s");
            let secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
            Some(now.saturating_add(secs))
        }
    };
    let store = open(path).await?;
    let new = issued::generate();
    let record = CredentialRecord {
        id: crate::issued::new_id(),
        digest: hex_digest(&new.digest),
        name,
        permissions,
        owner: None,
        created_at: now,
        expires_at,
        revoked_at: None,
        ips: Vec::new(),
        grant: None,
    };
    store.insert_credential(&record).await?;
    store.close().await;
    if json {
        let out = Issued {
            id: &record.id,
            token: &new.token,
            name: &record.name,
            permissions: &record.permissions,
            expires_at: expires_at.and_then(rfc3339),
        };
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("{}", new.token);
    }
    Ok(ExitCode::SUCCESS)
}

/// A public id: 64 random bits in hex. It names a credential; it grants nothing.
#[derive(Serialize)]
struct Listed<'a> {
    id: &'a str,
    name: &'a str,
    permissions: &'a [PermissionRecord],
    created_at: Option<String>,
    expires_at: Option<String>,
    revoked: bool,
    revoked_at: Option<String>,
}

async fn list(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let store = open(path).await?;
    let records = store.credentials().await?;
    store.close().await;
    let listed: Vec<_> = records
        .iter()
        .map(|r| Listed {
            id: &r.id,
            name: &r.name,
            permissions: &r.permissions,
            created_at: rfc3339(r.created_at),
            expires_at: r.expires_at.and_then(rfc3339),
            revoked: r.revoked_at.is_some(),
            revoked_at: r.revoked_at.and_then(rfc3339),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&listed)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = now_unix();
    println!("ID                NAME                 STATE     EXPIRES               PERMISSIONS");
    for (l, r) in listed.iter().zip(&records) {
        let state = match (r.revoked_at, r.expires_at) {
            (Some(_), _) => "revoked",
            (None, Some(at)) if at <= now => "expired",
            _ => "active",
        };
        let permissions: Vec<_> = l
            .permissions
            .iter()
            .map(|p| match p.path.as_str() {
                "" => p.action.clone(),
                path => format!("{}:{path}", p.action),
            })
            .collect();
        println!(
            "{:<17} {:<20} {:<9} {:<21} {}",
            l.id,
            l.name.escape_debug(),
            state,
            l.expires_at.as_deref().unwrap_or("never"),
            permissions.join(" ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn revoke(path: &Path, ids: &[String]) -> anyhow::Result<ExitCode> {
    let store = open(path).await?;
    let result = store.revoke_credentials(ids, now_unix()).await;
    store.close().await;
    match result {
        Ok(()) => {
            println!("revoked {}", ids.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::UnknownIds(unknown)) => {
            eprintln!(
                "mtx-auth: unknown credential id: {} (nothing was revoked; `mtx-auth token list` shows the ids)",
                unknown.join(", ")
            );
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}
