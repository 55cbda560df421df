//! The little a store needs from a SQL database, so one store serves Spin's
//! SQLite, Spin's PostgreSQL and, in native tests, a real SQLite file.

use crate::log::Logger;
use crate::problem::{Problem, ProblemKind};
use crate::span::{Span, SpanKind};
use std::fmt;

/// A parameter or column value. Both backends take and give these five.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// SQL `NULL`, e.g. an order created without an idempotency key.
    Null,
    /// A 64-bit integer, the widest both backends share.
    Integer(i64),
    /// A double-precision float.
    Real(f64),
    /// UTF-8 text; PostgreSQL parameters are all bound this way.
    Text(String),
    /// Raw bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The text, if this is text: how the store reads its columns.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            SqlValue::Text(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is one: how the migrations read the schema version.
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
    /// Spin's SQLite, or a SQLite file in native tests: `?` placeholders.
    Sqlite,
    /// Spin's PostgreSQL: `$n` placeholders, parameters cast from text.
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

/// The answer to a store failure, so a route's logic writes `?`: `503` when
/// the database is away or busy, `500` otherwise; the cause goes to the
/// request's log line only.
impl From<DbError> for Problem {
    fn from(error: DbError) -> Self {
        let problem = match error {
            DbError::Unavailable(_) | DbError::Locked(_) => Problem::new(
                ProblemKind::DependencyUnavailable,
                "the database is not answering; retry later",
            ),
            DbError::Conflict(_) | DbError::Failed(_) => Problem::internal(),
        };
        problem.with_cause(error)
    }
}

/// A store failure on a span: its class only, never the driver's message,
/// which may quote a value.
impl crate::span::SpanError for DbError {
    fn error_type(&self) -> &'static str {
        match self {
            DbError::Unavailable(_) => "unavailable",
            DbError::Locked(_) => "locked",
            DbError::Conflict(_) => "conflict",
            DbError::Failed(_) => "failed",
        }
    }

    fn description(&self) -> String {
        format!("database {}", self.error_type())
    }
}

/// A connection. Parameters are always bound, never spliced into the text.
#[allow(async_fn_in_trait)]
pub trait Database {
    /// Which SQL to send it, since placeholders and types differ.
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

/// A database whose statements are spans of one request: named by the
/// statement's operation and table (`SELECT orders`), with OpenTelemetry's
/// database attributes and the statement's text, which binds every value
/// (no value is ever on a span).
pub struct Traced<D> {
    db: D,
    log: Logger,
}

impl<D: Database> Traced<D> {
    /// `db`, its statements recorded as spans of `log`'s request.
    pub fn new(db: D, log: Logger) -> Self {
        Traced { db, log }
    }

    fn span(&self, sql: &str) -> Span {
        if !self.log.is_tracing() {
            return Span::none();
        }
        let (operation, table) = summary(sql);
        let name = match table {
            Some(table) => format!("{operation} {table}"),
            None => operation.to_string(),
        };
        let mut span = self.log.span(name, SpanKind::Client);
        let system = match self.db.dialect() {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgresql",
        };
        // The stable name, and the older one many back ends still query.
        span.set("db.system.name", system);
        span.set("db.system", system);
        span.set("db.operation.name", operation.to_ascii_uppercase());
        if let Some(table) = table {
            span.set("db.collection.name", table.to_string());
        }
        span.set("db.query.text", sql.to_string());
        span
    }
}

impl<D: Database> Database for Traced<D> {
    fn dialect(&self) -> Dialect {
        self.db.dialect()
    }

    async fn execute(&self, sql: &str, params: &[SqlValue]) -> Result<u64, DbError> {
        let mut span = self.span(sql);
        span.record(self.db.execute(sql, params).await)
    }

    async fn query(&self, sql: &str, params: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, DbError> {
        let mut span = self.span(sql);
        let rows = span.record(self.db.query(sql, params).await)?;
        span.set("db.response.returned_rows", rows.len() as i64);
        Ok(rows)
    }

    async fn pause(&self, millis: u64) {
        self.db.pause(millis).await
    }
}

/// A statement's operation (its first word) and the table it names (after
/// `INTO`, `FROM` or `UPDATE`), if any.
fn summary(sql: &str) -> (&str, Option<&str>) {
    let mut words = sql.split_whitespace();
    let operation = words.next().unwrap_or("");
    let mut previous = operation;
    for word in words {
        if ["into", "from", "update"]
            .iter()
            .any(|k| previous.eq_ignore_ascii_case(k))
        {
            return (
                operation,
                Some(word.trim_end_matches(|c: char| !c.is_ascii_alphanumeric() && c != '_')),
            );
        }
        previous = word;
    }
    (operation, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_summarised_by_operation_and_table() {
        assert_eq!(summary("SELECT 1 FROM orders LIMIT 1"), ("SELECT", Some("orders")));
        assert_eq!(
            summary("INSERT INTO orders (id) VALUES (?)"),
            ("INSERT", Some("orders"))
        );
        assert_eq!(summary("UPDATE orders SET a = 1"), ("UPDATE", Some("orders")));
        assert_eq!(
            summary("DELETE FROM image_budget WHERE x = ?"),
            ("DELETE", Some("image_budget"))
        );
        assert_eq!(summary("SELECT 1"), ("SELECT", None));
    }
}
