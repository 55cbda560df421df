//! The schema migrations of `migrations/`, embedded at build time, and the
//! procedure that brings a database up to date by itself: a deployed app
//! (no `spin up --sqlite`, a fresh PostgreSQL, a new replica) migrates on
//! first use, and many instances and replicas may start at once.
//!
//! [`migrate`] records every applied migration in `schema_migrations`
//! (version, name, time). When the recorded version is the latest it costs
//! one read and nothing else; otherwise it takes the database's write lock
//! (SQLite `BEGIN IMMEDIATE`, PostgreSQL `pg_advisory_xact_lock`), reads
//! the versions again under the lock, applies the missing ones and records
//! them in the same transaction. So concurrent starters serialise: one
//! applies, the others find the work done, and none fails or applies twice.
//! Components run it once per instance, before their first query.

use crate::sql::{Database, DbError, Dialect, SqlValue};

/// One migration: its version (the file's number), name and SQL.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Orders the migrations; `schema_migrations` records the highest applied.
    pub version: i64,
    /// The file name without `.sql`, recorded beside the version for people.
    pub name: &'static str,
    /// The statements, run in one transaction with the version's record.
    pub sql: &'static str,
}

/// In order, for SQLite.
pub const SQLITE: &[Migration] = &[Migration {
    version: 1,
    name: "0001_create_orders",
    sql: include_str!("../../../migrations/sqlite/0001_create_orders.sql"),
}];

/// In order, for PostgreSQL.
pub const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    name: "0001_create_orders",
    sql: include_str!("../../../migrations/postgres/0001_create_orders.sql"),
}];

/// The migrations of a dialect.
pub fn for_dialect(dialect: Dialect) -> &'static [Migration] {
    match dialect {
        Dialect::Sqlite => SQLITE,
        Dialect::Postgres => POSTGRES,
    }
}

/// The version a fully migrated database records.
pub fn latest(dialect: Dialect) -> i64 {
    for_dialect(dialect).last().map_or(0, |m| m.version)
}

/// The key of the PostgreSQL advisory lock migrations take (any constant
/// the app uses for nothing else: "orders-api" in ASCII, truncated).
const PG_LOCK_KEY: i64 = 0x6f72_6465_7273_2d61;

/// Brings `db` up to date; returns the number of migrations this call
/// applied (0 when the database was current, or another starter did it).
pub async fn migrate<D: Database>(db: &D, applied_at: &str) -> Result<usize, DbError> {
    let dialect = db.dialect();
    if recorded_version(db).await.ok() == Some(latest(dialect)) {
        return Ok(0);
    }
    match dialect {
        Dialect::Sqlite => {
            // SQLite's busy handler sleeps inside the host call, and under
            // Spin a host call can hold up the other requests of the same
            // instance: one waiting there for the lock that another request
            // of its own instance holds (mid-migration, between two host
            // calls) waits out the whole busy timeout and fails. So the two
            // statements that may wait for the lock fail at once instead
            // (busy_timeout 0) and wait between tries with `pause`.
            db.query("PRAGMA busy_timeout = 0", &[]).await?;
            // Readers never wait for the writer, and one fsync per commit.
            // The mode lives in the file; it cannot change inside a
            // transaction, and hosts that manage the file themselves may
            // refuse it: best effort.
            let _ = retry_while_locked(db, WAL_TRIES, || db.query("PRAGMA journal_mode = WAL", &[])).await;
            let begun = retry_while_locked(db, BEGIN_TRIES, || db.execute("BEGIN IMMEDIATE", &[])).await;
            // Inside the transaction, waits are short and never for a
            // request of this instance: the host's own busy timeout again.
            db.query(&format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"), &[])
                .await?;
            begun?;
        }
        Dialect::Postgres => {
            db.execute("BEGIN", &[]).await?;
        }
    }
    let applied = apply_locked(db, applied_at).await;
    let end = if applied.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = db.execute(end, &[]).await;
    let applied = applied?;
    ended?;
    Ok(applied)
}

/// The busy timeout a Spin SQLite connection opens with (rusqlite's
/// default), restored after the lock is taken.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 5_000;
/// Tries at the WAL switch (best effort) and at taking the write lock:
/// waits of 1, 2, 4 ... 50 ms between them, about 1 s and 20 s in all.
const WAL_TRIES: u32 = 25;
const BEGIN_TRIES: u32 = 400;

/// Runs `op` until it is not refused for a lock held elsewhere, pausing
/// between tries; the last refusal is the error after `tries`. Also used by
/// [`crate::durability`] when a new connection reads the journal mode.
pub(crate) async fn retry_while_locked<D: Database, T>(
    db: &D,
    tries: u32,
    op: impl AsyncFn() -> Result<T, DbError>,
) -> Result<T, DbError> {
    let mut wait = 1;
    let mut tried = 1;
    loop {
        match op().await {
            Err(DbError::Locked(_)) if tried < tries => {
                db.pause(wait).await;
                wait = (wait * 2).min(50);
                tried += 1;
            }
            outcome => return outcome,
        }
    }
}

/// The highest version `schema_migrations` records (an error when there is
/// no such table yet).
pub async fn recorded_version<D: Database>(db: &D) -> Result<i64, DbError> {
    let rows = db
        .query("SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &[])
        .await?;
    Ok(rows
        .first()
        .and_then(|r| r.first())
        .and_then(SqlValue::as_integer)
        .unwrap_or(0))
}

/// Inside the transaction: lock, read what is applied, apply the rest.
async fn apply_locked<D: Database>(db: &D, applied_at: &str) -> Result<usize, DbError> {
    let dialect = db.dialect();
    if dialect == Dialect::Postgres {
        // `execute`, not `query`: the function returns `void`, a value the
        // Spin PostgreSQL interface can only hand over as `unsupported`.
        let lock = format!("SELECT pg_advisory_xact_lock({PG_LOCK_KEY})");
        db.execute(&lock, &[]).await?;
    }
    db.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version BIGINT PRIMARY KEY NOT NULL, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
        &[],
    )
    .await?;
    let done = recorded_version(db).await?;
    let record = match dialect {
        Dialect::Sqlite => "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        Dialect::Postgres => {
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1::text::bigint, $2, $3)"
        }
    };
    let mut applied = 0;
    for migration in for_dialect(dialect).iter().filter(|m| m.version > done) {
        for statement in statements(migration.sql) {
            db.execute(&statement, &[]).await?;
        }
        let version = match dialect {
            Dialect::Sqlite => SqlValue::Integer(migration.version),
            // Bound as text and cast in SQL, as everything bound to PostgreSQL.
            Dialect::Postgres => SqlValue::Text(migration.version.to_string()),
        };
        db.execute(record, &[version, migration.name.into(), applied_at.into()])
            .await?;
        applied += 1;
    }
    Ok(applied)
}

/// Splits a migration file into statements, for interfaces that run one at
/// a time. Migrations keep `;` out of literals and comments, so this is exact.
pub fn statements(sql: &str) -> impl Iterator<Item = String> + '_ {
    sql.split(';').map(strip_comments).filter(|s| !s.is_empty())
}

fn strip_comments(chunk: &str) -> String {
    chunk
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_split_without_comments() {
        let all: Vec<String> = statements(SQLITE[0].sql).collect();
        assert_eq!(all.len(), 2);
        assert!(all[0].starts_with("CREATE TABLE IF NOT EXISTS orders"));
        assert!(all.iter().all(|s| !s.contains("--")));
    }

    #[test]
    fn both_backends_have_the_same_migrations_numbered_from_their_files() {
        let ids = |list: &[Migration]| list.iter().map(|m| (m.version, m.name)).collect::<Vec<_>>();
        assert_eq!(ids(SQLITE), ids(POSTGRES));
        for (i, m) in SQLITE.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert_eq!(m.name[..4].parse::<i64>().unwrap(), m.version);
        }
    }

    #[test]
    fn migrations_never_change_the_journal_mode_themselves() {
        // `PRAGMA journal_mode` cannot run inside the migration transaction.
        for m in SQLITE.iter().chain(POSTGRES) {
            assert!(!m.sql.to_ascii_uppercase().contains("PRAGMA"), "{}", m.name);
        }
    }
}
