//! The little a store needs from a SQL database, so one store serves Spin's
//! SQLite, Spin's PostgreSQL and, in native tests, a real SQLite file.

use std::fmt;

/// A parameter or column value. Both backends take and give these five.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    Null,
    Integer(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl SqlValue {
    pub fn as_text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            SqlValue::Integer(i) => Some(*i),
            _ => None,
        }
    }
}

impl From<&str> for SqlValue {
    fn from(s: &str) -> Self {
        SqlValue::Text(s.to_string())
    }
}

impl From<String> for SqlValue {
    fn from(s: String) -> Self {
        SqlValue::Text(s)
    }
}

/// Which SQL the store writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// Why a statement failed, sorted by what the caller should answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbError {
    /// The database cannot be reached, timed out, or refused us: `503`.
    Unavailable(String),
    /// Another connection holds the lock the statement needs (SQLite's busy
    /// or locked): `503` to a client, but worth retrying in place, as the
    /// migrations do. Set by the adapters, which know the driver's codes.
    Locked(String),
    /// A unique constraint refused the row.
    Conflict(String),
    /// Anything else (a bad statement, missing table, corrupt row): `500`.
    Failed(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(e) => write!(f, "database unavailable: {e}"),
            DbError::Locked(e) => write!(f, "database locked: {e}"),
            DbError::Conflict(e) => write!(f, "constraint violated: {e}"),
            DbError::Failed(e) => write!(f, "database error: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

/// A connection. Parameters are always bound, never spliced into the text.
#[allow(async_fn_in_trait)]
pub trait Database {
    fn dialect(&self) -> Dialect;

    /// Runs a statement; returns the number of rows it changed.
    async fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError>;

    /// Runs a query; returns its rows, each as values in column order.
    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, DbError>;

    /// Waits `millis` without holding anything the host needs, so that
    /// other requests of the same instance run meanwhile (the migrations
    /// wait this way for a lock). The default returns at once.
    async fn pause(&self, millis: u64) {
        let _ = millis;
    }
}
