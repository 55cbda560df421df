//! rusqlite behind the crate's [`Database`] trait, standing in for Spin's
//! SQLite interface in native tests (a real SQLite file, not a fake). Shared
//! by the integration tests (`mod support;`) and the crate's unit tests
//! (`#[path]`), so there is one copy. The including module brings the
//! crate's SQL types into scope (the crate is `kit` to one, `crate` to the
//! other).

use super::{Database, DbError, Dialect, SqlValue};
use rusqlite::types::{Value as RValue, ValueRef};

/// A connection to a SQLite file.
pub(crate) struct Sqlite(pub(crate) rusqlite::Connection);

fn params(values: &[SqlValue]) -> Vec<RValue> {
    values
        .iter()
        .map(|v| match v {
            SqlValue::Null => RValue::Null,
            SqlValue::Integer(i) => RValue::Integer(*i),
            SqlValue::Real(r) => RValue::Real(*r),
            SqlValue::Text(s) => RValue::Text(s.clone()),
            SqlValue::Blob(b) => RValue::Blob(b.clone()),
        })
        .collect()
}

/// As the Spin adapter maps them: a lock held elsewhere is `Locked`.
fn failed(e: rusqlite::Error) -> DbError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => DbError::Locked(e.to_string()),
        _ => DbError::Failed(e.to_string()),
    }
}

impl Database for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn pause(&self, millis: u64) {
        std::thread::sleep(std::time::Duration::from_millis(millis));
    }

    async fn execute(&self, sql: &str, values: &[SqlValue]) -> Result<u64, DbError> {
        let changed = self
            .0
            .execute(sql, rusqlite::params_from_iter(params(values)))
            .map_err(failed)?;
        Ok(changed as u64)
    }

    async fn query(&self, sql: &str, values: &[SqlValue]) -> Result<Vec<Vec<SqlValue>>, DbError> {
        let mut statement = self.0.prepare(sql).map_err(failed)?;
        let columns = statement.column_count();
        let mut rows = statement
            .query(rusqlite::params_from_iter(params(values)))
            .map_err(failed)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(failed)? {
            out.push(
                (0..columns)
                    .map(|i| match row.get_ref(i).unwrap() {
                        ValueRef::Null => SqlValue::Null,
                        ValueRef::Integer(i) => SqlValue::Integer(i),
                        ValueRef::Real(r) => SqlValue::Real(r),
                        ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into()),
                        ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
                    })
                    .collect(),
            );
        }
        Ok(out)
    }
}
