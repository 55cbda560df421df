//! The Spin adapter: the only module that knows `spin-sdk`.
//!
//! It turns a Spin request into the pipeline's input (streaming the body with
//! its limit), reads the component's variables into a [`Config`], and opens
//! the order store the config names. Each is a thin translation; the logic is
//! in the plain modules.

use crate::config::{Config, ConfigError, Database as DatabaseConfig};
use crate::contract::Route;
use crate::orders::OrderStore;
use crate::pipeline::{self, BodyError, BodySource, Ctx};
use crate::problem::{FieldError, Problem};
use crate::sql::{Database, DbError, Dialect, SqlValue};
use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use spin_sdk::{pg, sqlite};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// Runs `logic` for `route` under the full HTTP contract; the answer is ready
/// to return from an `#[http_service]` function.
pub async fn serve<T, F>(route: &'static Route, request: spin_sdk::http::Request, logic: F) -> Response<Full<Bytes>>
where
    T: DeserializeOwned,
    F: AsyncFnOnce(&Ctx, T) -> Result<Response<Bytes>, Problem>,
{
    let config = config().await;
    let (head, body) = request.into_parts();
    pipeline::serve(route, head, Incoming(body), config, logic)
        .await
        .map(Full::new)
}

struct Incoming<B>(B);

impl<B> BodySource for Incoming<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    async fn read(mut self, limit: usize) -> Result<Bytes, BodyError> {
        let mut buffer = BytesMut::new();
        while let Some(frame) = self.0.frame().await {
            let frame = frame.map_err(|e| BodyError::Failed(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(buffer.freeze())
    }
}

/// The component's config, read and validated once per instance. Variables
/// not mapped into this component (least privilege) take their defaults.
pub async fn config() -> Result<Config, ConfigError> {
    static CONFIG: OnceLock<Result<Config, ConfigError>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return config.clone();
    }
    let mut values = BTreeMap::new();
    let mut unreadable = Vec::new();
    for name in crate::config::variable_names() {
        match spin_sdk::variables::get(&name).await {
            Ok(value) => {
                values.insert(name, value);
            }
            Err(spin_sdk::variables::Error::Undefined(_)) => {}
            Err(_) => unreadable.push(FieldError::at_parameter(
                name,
                "readable",
                "the variable could not be read",
            )),
        }
    }
    let config = if unreadable.is_empty() {
        Config::from_values(&values)
    } else {
        Err(ConfigError { errors: unreadable })
    };
    CONFIG.get_or_init(|| config).clone()
}

/// The order store the config names: Spin's `default` SQLite database, or
/// PostgreSQL when `database_url` is set.
pub async fn order_store(config: &Config) -> Result<OrderStore<SpinDatabase>, DbError> {
    match &config.database {
        DatabaseConfig::Sqlite => {
            let connection = sqlite::Connection::open_default().await.map_err(sqlite_error)?;
            Ok(OrderStore::new(SpinDatabase::Sqlite(connection)))
        }
        DatabaseConfig::Postgres(url) => {
            let connection = pg::Connection::open(url.expose()).await.map_err(pg_error)?;
            Ok(OrderStore::new(SpinDatabase::Postgres(connection)))
        }
    }
}

/// A database reached through a Spin interface.
pub enum SpinDatabase {
    Sqlite(sqlite::Connection),
    Postgres(pg::Connection),
}

impl Database for SpinDatabase {
    fn dialect(&self) -> Dialect {
        match self {
            SpinDatabase::Sqlite(_) => Dialect::Sqlite,
            SpinDatabase::Postgres(_) => Dialect::Postgres,
        }
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

fn sqlite_error(error: sqlite::Error) -> DbError {
    match error {
        sqlite::Error::Io(message) if message.contains("UNIQUE constraint") => DbError::Conflict(message),
        sqlite::Error::Io(message) if message.contains("locked") || message.contains("busy") => {
            DbError::Unavailable(message)
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
        pg::Error::PgError(pg::PgError::QueryFailed(pg::QueryError::Text(message)))
            if message.contains("connection") || message.contains("closed") || message.contains("timed out") =>
        {
            DbError::Unavailable(message)
        }
        other => DbError::Failed(other.to_string()),
    }
}
