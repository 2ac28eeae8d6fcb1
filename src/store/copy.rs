//! `mtx-auth store copy`: moves a store to another engine (SQLite → PostgreSQL, when one
//! replica becomes several). Everything that must survive is copied — credentials, the keys and
//! secrets every replica shares, web sessions, second factors, recovery codes, live sessions
//! (a replica adopts them) — in one transaction on the target; what only lives a few minutes
//! (failure counts, pending sign-ins, who is alive) is not.

use sqlx::Row;

use crate::store::{Store, StoreError};

/// A column's type: the schema only uses these two.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
}
use Kind::{Int, Text};

/// The tables copied, with their columns, in an order that satisfies no constraint but reads
/// well: the schema has no foreign keys.
const TABLES: &[(&str, &[(&str, Kind)])] = &[
    (
        "credentials",
        &[
            ("id", Text),
            ("digest", Text),
            ("name", Text),
            ("permissions", Text),
            ("owner", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("revoked_at", Int),
            ("rev", Int),
            ("ips", Text),
            ("grant_info", Text),
        ],
    ),
    (
        "secrets",
        &[("name", Text), ("value", Text), ("created_at", Int)],
    ),
    (
        "sessions",
        &[
            ("id", Text),
            ("api_url", Text),
            ("protocol", Text),
            ("action", Text),
            ("path", Text),
            ("ip", Text),
            ("identity", Text),
            ("grant_info", Text),
            ("created_at", Int),
        ],
    ),
    (
        "web_sessions",
        &[
            ("digest", Text),
            ("person", Text),
            ("profile", Text),
            ("complete", Int),
            ("failures", Int),
            ("created_at", Int),
            ("expires_at", Int),
        ],
    ),
    (
        "mfa",
        &[
            ("person", Text),
            ("secret", Text),
            ("enrolled_at", Int),
            ("last_step", Int),
            ("created_at", Int),
        ],
    ),
    (
        "recovery_codes",
        &[("person", Text), ("digest", Text), ("used_at", Int)],
    ),
];

/// One value read from the source, bound as it was.
enum Value {
    Text(Option<String>),
    Int(Option<i64>),
}

/// Rows copied per table, in [`TABLES`]' order.
pub type Copied = Vec<(&'static str, usize)>;

/// Copies `from` into `to`, which must be migrated and hold none of what is copied (a copy
/// over a store in use would mix two services' secrets).
pub async fn copy(from: &Store, to: &Store) -> Result<Copied, StoreError> {
    for (table, _) in TABLES {
        let n: i64 = sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(to.pool())
            .await?
            .try_get(0)?;
        if n > 0 {
            return Err(StoreError::Corrupt(format!(
                "the target store is not empty ({table} has {n} rows): copy into a new database"
            )));
        }
    }
    let mut tx = to.pool().begin().await?;
    let mut copied = Vec::new();
    for (table, columns) in TABLES {
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let rows = sqlx::query(&format!("SELECT {} FROM {table}", names.join(", ")))
            .fetch_all(from.pool())
            .await?;
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let insert = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            names.join(", "),
            placeholders.join(", ")
        );
        for row in &rows {
            let mut query = sqlx::query(&insert);
            for (i, (_, kind)) in columns.iter().enumerate() {
                query = match read(row, i, *kind)? {
                    Value::Text(v) => query.bind(v),
                    Value::Int(v) => query.bind(v),
                };
            }
            query.execute(&mut *tx).await?;
        }
        copied.push((*table, rows.len()));
    }
    // The revisions go with the rows they stamp, so every reader's "anything after N?" stays
    // true on the new store.
    let revisions = sqlx::query("SELECT name, value FROM revisions")
        .fetch_all(from.pool())
        .await?;
    for r in &revisions {
        let name: String = r.try_get(0)?;
        let value: i64 = r.try_get(1)?;
        sqlx::query(
            "INSERT INTO revisions (name, value) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET value = $2",
        )
        .bind(name)
        .bind(value)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(copied)
}

fn read(row: &sqlx::any::AnyRow, i: usize, kind: Kind) -> Result<Value, StoreError> {
    Ok(match kind {
        Kind::Text => Value::Text(row.try_get(i)?),
        Kind::Int => Value::Int(row.try_get(i)?),
    })
}
