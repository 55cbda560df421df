//! The order store over the instance's database connection.
//!
//! Spin 4 reuses an instance of a WASI 0.3 component for up to 128
//! requests (16 at once), so the connection is opened once per instance,
//! brought up to date by [`crate::migrations::migrate`] (a single read once
//! the schema is current), and kept for the requests that follow: they pay
//! neither the open (for SQLite: opening the file and parsing its schema)
//! nor a pool checkout and session reset (PostgreSQL), and statements stay
//! prepared on the host's connection. Concurrent requests of the instance
//! share it: Spin serialises SQLite statements on a connection, and a
//! PostgreSQL connection pipelines them. No statement of the store relies
//! on a transaction spanning requests.
//!
//! A kept connection can go stale (a PostgreSQL server restarted, a
//! connection dropped by a proxy): a statement that fails as "unavailable"
//! on a kept connection is retried once on a fresh one. Every statement of
//! the store is safe to run twice: inserts carry their own primary key and
//! `ON CONFLICT DO NOTHING`, the rest read or clear idempotency keys.

use crate::config::DatabaseConfig;
use crate::durability::Durability;
use crate::migrations::retry_while_locked;
use crate::orders::OrderStore;
use crate::pipeline::Ctx;
use crate::sql::{Database, DbError, Dialect, SqlValue, Traced};
use spin_sdk::{pg, sqlite};
use std::cell::RefCell;
use std::rc::Rc;

/// The order store the config names (Spin's `default` SQLite database, or
/// PostgreSQL when `database_url` is set), over the instance's connection.
/// Fails when the database cannot be opened or migrated.
/// Each statement is a span of the request (`ctx.log`).
pub async fn order_store(ctx: &Ctx) -> Result<OrderStore<Traced<InstanceDatabase>>, DbError> {
    let database = InstanceDatabase {
        config: ctx.config.database.clone(),
        durability: ctx.config.sqlite_synchronous,
    };
    database.connection().await?;
    Ok(OrderStore::new(Traced::new(database, ctx.log.clone())))
}

thread_local! {
    /// The instance's open, migrated connection.
    static KEPT: RefCell<Option<Rc<SpinDatabase>>> = const { RefCell::new(None) };
}

/// The instance's database: statements run on the kept connection.
pub struct InstanceDatabase {
    config: DatabaseConfig,
    durability: Durability,
}

impl InstanceDatabase {
    /// The kept connection, or a new one, opened and migrated; `true` when
    /// it was just opened. The requests of an instance's first burst each
    /// open their own (their migrations serialise in the database); the first
    /// to finish is kept, the others close after their request.
    async fn connection(&self) -> Result<(Rc<SpinDatabase>, bool), DbError> {
        if let Some(kept) = KEPT.with(|k| k.borrow().clone()) {
            return Ok((kept, false));
        }
        let connection = open_and_migrate(self).await?;
        KEPT.with(|k| {
            k.borrow_mut().get_or_insert_with(|| connection.clone());
        });
        Ok((connection, true))
    }

    /// Runs `op` on the kept connection: once more on a fresh one when a
    /// kept connection turns out to be unavailable, and again while another
    /// connection holds SQLite's write lock (each statement of the store
    /// commits alone, so a refused one did nothing and may run again).
    async fn run<T>(&self, op: impl AsyncFn(&SpinDatabase) -> Result<T, DbError>) -> Result<T, DbError> {
        let (connection, fresh) = self.connection().await?;
        match op(&connection).await {
            // A burst of first requests on a fresh file: every instance
            // migrates and writes at once, and one finds the lock taken
            // (seen as a 503 in a test of 16 parallel creates on real Spin).
            Err(DbError::Locked(_)) => retry_while_locked(self, LOCKED_TRIES, async || op(&connection).await).await,
            Err(DbError::Unavailable(_)) if !fresh => {
                KEPT.with(|k| {
                    let mut kept = k.borrow_mut();
                    if kept.as_ref().is_some_and(|c| Rc::ptr_eq(c, &connection)) {
                        *kept = None;
                    }
                });
                let (connection, _) = self.connection().await?;
                op(&connection).await
            }
            outcome => outcome,
        }
    }
}

/// Tries at a statement that finds SQLite's write lock taken: waits of 1,
/// 2, 4 ... 50 ms between them, about 5 s in all.
const LOCKED_TRIES: u32 = 100;

impl Database for InstanceDatabase {
    fn dialect(&self) -> Dialect {
        match self.config {
            DatabaseConfig::Sqlite => Dialect::Sqlite,
            DatabaseConfig::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError> {
        self.run(async |c: &SpinDatabase| c.execute(sql, params).await).await
    }

    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, DbError> {
        self.run(async |c: &SpinDatabase| c.query(sql, params).await).await
    }

    async fn pause(&self, millis: u64) {
        pause(millis).await;
    }
}

/// A timer the host runs: the instance's other requests go on meanwhile.
async fn pause(millis: u64) {
    spin_sdk::wasip3::clocks::monotonic_clock::wait_for(millis * 1_000_000).await;
}

/// Opens the configured database and migrates it; a SQLite connection then
/// gets the configured durability (a per-connection setting).
async fn open_and_migrate(config: &InstanceDatabase) -> Result<Rc<SpinDatabase>, DbError> {
    let connection = match &config.config {
        DatabaseConfig::Sqlite => SpinDatabase::Sqlite(sqlite::Connection::open_default().await.map_err(sqlite_error)?),
        DatabaseConfig::Postgres(url) => {
            SpinDatabase::Postgres(pg::Connection::open(url.expose()).await.map_err(pg_error)?)
        }
    };
    let now = crate::time::now();
    crate::migrations::migrate(&connection, &now).await?;
    if let SpinDatabase::Sqlite(_) = connection {
        crate::durability::apply(&connection, config.durability).await?;
    }
    Ok(Rc::new(connection))
}

/// A database reached through a Spin interface.
pub enum SpinDatabase {
    /// Spin's SQLite interface (a label in the component's `sqlite_databases`).
    Sqlite(sqlite::Connection),
    /// Spin's PostgreSQL interface (a host in `allowed_outbound_hosts`).
    Postgres(pg::Connection),
}

impl Database for SpinDatabase {
    fn dialect(&self) -> Dialect {
        match self {
            SpinDatabase::Sqlite(_) => Dialect::Sqlite,
            SpinDatabase::Postgres(_) => Dialect::Postgres,
        }
    }

    async fn pause(&self, millis: u64) {
        pause(millis).await;
    }

    async fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError> {
        match self {
            SpinDatabase::Sqlite(connection) => {
                let result = connection
                    .execute(sql, params.iter().map(to_sqlite))
                    .await
                    .map_err(sqlite_error)?;
                result.collect().await.map_err(sqlite_error)?;
                Ok(connection.changes().await)
            }
            SpinDatabase::Postgres(connection) => connection
                .execute(sql, params.iter().map(to_pg).collect::<Vec<_>>())
                .await
                .map_err(pg_error),
        }
    }

    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, DbError> {
        match self {
            SpinDatabase::Sqlite(connection) => {
                let result = connection
                    .execute(sql, params.iter().map(to_sqlite))
                    .await
                    .map_err(sqlite_error)?;
                let rows = result.collect().await.map_err(sqlite_error)?;
                Ok(rows
                    .into_iter()
                    .map(|row| row.values.into_iter().map(from_sqlite).collect())
                    .collect())
            }
            SpinDatabase::Postgres(connection) => {
                let result = connection
                    .query(sql, params.iter().map(to_pg).collect::<Vec<_>>())
                    .await
                    .map_err(pg_error)?;
                let width = result.columns().len();
                let rows = result.collect().await.map_err(pg_error)?;
                rows.iter()
                    .map(|row| (0..width).map(|i| from_pg(&row[i])).collect())
                    .collect()
            }
        }
    }
}

fn to_sqlite(value: &SqlValue) -> sqlite::Value {
    match value {
        SqlValue::Null => sqlite::Value::Null,
        SqlValue::Integer(i) => sqlite::Value::Integer(*i),
        SqlValue::Real(r) => sqlite::Value::Real(*r),
        SqlValue::Text(s) => sqlite::Value::Text(s.clone()),
        SqlValue::Blob(b) => sqlite::Value::Blob(b.clone()),
    }
}

fn from_sqlite(value: sqlite::Value) -> SqlValue {
    match value {
        sqlite::Value::Null => SqlValue::Null,
        sqlite::Value::Integer(i) => SqlValue::Integer(i),
        sqlite::Value::Real(r) => SqlValue::Real(r),
        sqlite::Value::Text(s) => SqlValue::Text(s),
        sqlite::Value::Blob(b) => SqlValue::Blob(b),
    }
}

pub(crate) fn sqlite_error(error: sqlite::Error) -> DbError {
    match error {
        sqlite::Error::Io(message) if message.contains("UNIQUE constraint") => DbError::Conflict(message),
        // Spin's host hands SQLite's errors over as text only.
        sqlite::Error::Io(message) if message.contains("locked") || message.contains("busy") => {
            DbError::Locked(message)
        }
        sqlite::Error::DatabaseFull => DbError::Unavailable("database full".into()),
        other => DbError::Failed(other.to_string()),
    }
}

fn to_pg(value: &SqlValue) -> pg::ParameterValue {
    match value {
        SqlValue::Null => pg::ParameterValue::DbNull,
        SqlValue::Integer(i) => pg::ParameterValue::Int64(*i),
        SqlValue::Real(r) => pg::ParameterValue::Floating64(*r),
        SqlValue::Text(s) => pg::ParameterValue::Str(s.clone()),
        SqlValue::Blob(b) => pg::ParameterValue::Binary(b.clone()),
    }
}

/// The store selects text and integers only (it casts uuid, jsonb and
/// timestamps to text in SQL), so other types are a defect, not data.
fn from_pg(value: &pg::DbValue) -> Result<SqlValue, DbError> {
    Ok(match value {
        pg::DbValue::DbNull => SqlValue::Null,
        pg::DbValue::Str(s) => SqlValue::Text(s.clone()),
        pg::DbValue::Int64(i) => SqlValue::Integer(*i),
        pg::DbValue::Int32(i) => SqlValue::Integer(i64::from(*i)),
        pg::DbValue::Int16(i) => SqlValue::Integer(i64::from(*i)),
        pg::DbValue::Floating64(r) => SqlValue::Real(*r),
        pg::DbValue::Binary(b) => SqlValue::Blob(b.clone()),
        other => return Err(DbError::Failed(format!("unexpected PostgreSQL value {other:?}"))),
    })
}

fn pg_error(error: pg::Error) -> DbError {
    match error {
        pg::Error::PgError(pg::PgError::ConnectionFailed(message)) => DbError::Unavailable(message),
        pg::Error::PgError(pg::PgError::QueryFailed(pg::QueryError::DbError(e))) if e.code == "23505" => {
            DbError::Conflict(e.message)
        }
        // Connection-class errors (08xxx), shutdown (57P0x) and "too many connections" (53300).
        pg::Error::PgError(pg::PgError::QueryFailed(pg::QueryError::DbError(e)))
            if e.code.starts_with("08") || e.code.starts_with("57P") || e.code == "53300" =>
        {
            DbError::Unavailable(e.message)
        }
        // Other failures come as text: Spin 4.1 gives tokio-postgres's Debug
        // form (`Error { kind: Closed, cause: None }` for a dropped
        // connection), hence the case-insensitive match.
        pg::Error::PgError(pg::PgError::QueryFailed(pg::QueryError::Text(message)))
            if is_connection_failure(&message) =>
        {
            DbError::Unavailable(message)
        }
        other => DbError::Failed(other.to_string()),
    }
}

/// Whether a PostgreSQL error text says the connection, not the statement,
/// failed.
fn is_connection_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["connection", "closed", "timed out", "kind: io"]
        .iter()
        .any(|m| message.contains(m))
}
