//! `spin:sqlite/sqlite@3.1.0` as Spin's `sqlite-inproc` hosts it:
//!
//! - a label not granted in the component's `sqlite_databases` is
//!   `access-denied` (checked before anything else);
//! - every `open` is a connection of its own to the database file, opened on
//!   first use with rusqlite's defaults (5 s busy timeout, no PRAGMAs), and
//!   closed when the guest drops it: no pooling, nothing shared between
//!   guests;
//! - every statement runs on a blocking thread (`spawn_blocking`), and all
//!   its rows are collected, up to Spin's 128 MiB host buffer;
//! - only the first SQL statement of a string runs;
//! - `changes` and `last-insert-rowid` read that same connection.

use crate::bindings::sqlite::{self, Error, QueryResult, RowResult, Value};
use crate::host::{HostState, SpinHost};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

/// Spin's `MAX_HOST_BUFFERED_BYTES`.
const MAX_RESULT_BYTES: usize = 128 << 20;

/// Connections one instance may hold at once (Spin's resource table size).
const MAX_CONNECTIONS_PER_INSTANCE: usize = 256;

/// The resource behind `connection`: a file, and its connection once used.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports a `with` resource type with `pub use`"
)]
pub struct SqliteConnection {
    path: PathBuf,
    conn: OnceLock<Result<Shared, String>>,
}

type Shared = Arc<Mutex<rusqlite::Connection>>;

impl SqliteConnection {
    /// The rusqlite connection, opened on first use as Spin opens it.
    fn get(&self) -> Result<Shared, Error> {
        self.conn
            .get_or_init(|| open_file(&self.path).map(|c| Arc::new(Mutex::new(c))))
            .clone()
            .map_err(Error::Io)
    }
}

/// Opens (creating if needed) a database file the way `spin up` does.
pub(crate) fn open_file(path: &Path) -> Result<rusqlite::Connection, String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    rusqlite::Connection::open(path).map_err(|e| e.to_string())
}

/// Grant check, then label lookup, in Spin's order.
fn open(state: &mut HostState, label: &str) -> wasmtime::Result<Result<Resource<SqliteConnection>, Error>> {
    if !state.component.sqlite_databases.contains(label) {
        return Ok(Err(Error::AccessDenied));
    }
    let Some(path) = state.component.sqlite_files.get(label).cloned() else {
        return Ok(Err(Error::NoSuchDatabase));
    };
    if state.sqlite_connections >= MAX_CONNECTIONS_PER_INSTANCE {
        return Ok(Err(Error::Io("too many connections opened".into())));
    }
    state.sqlite_connections += 1;
    let connection = SqliteConnection {
        path,
        conn: OnceLock::new(),
    };
    Ok(Ok(state.table.push(connection)?))
}

fn connection(state: &HostState, r: &Resource<SqliteConnection>) -> Result<Shared, Error> {
    state.table.get(r).map_err(|_| Error::InvalidConnection)?.get()
}

/// Runs one statement on a blocking thread.
async fn run(conn: Shared, statement: String, params: Vec<Value>) -> Result<QueryResult, Error> {
    tokio::task::spawn_blocking(move || {
        let conn = conn.lock().map_err(|_| Error::Io("internal runtime error".into()))?;
        execute(&conn, &statement, params)
    })
    .await
    .map_err(|_| Error::Io("internal runtime error".into()))?
}

fn stats(state: &HostState, r: &Resource<SqliteConnection>) -> wasmtime::Result<(u64, i64)> {
    let conn = connection(state, r).map_err(|e| wasmtime::format_err!("sqlite connection: {e:?}"))?;
    let conn = conn
        .lock()
        .map_err(|_| wasmtime::format_err!("connection lock poisoned"))?;
    Ok((conn.changes(), conn.last_insert_rowid()))
}

/// Runs the first statement of `statement` on `conn` and collects its rows;
/// the rest of the text is ignored, as Spin's rusqlite (0.34) ignores it.
fn execute(conn: &rusqlite::Connection, statement: &str, params: Vec<Value>) -> Result<QueryResult, Error> {
    use rusqlite::fallible_iterator::FallibleIterator;
    let io = |e: rusqlite::Error| Error::Io(e.to_string());
    match conn.prepare_cached(statement) {
        Ok(mut stmt) => collect(&mut stmt, params),
        Err(rusqlite::Error::MultipleStatement) => match rusqlite::Batch::new(conn, statement).next().map_err(io)? {
            Some(mut stmt) => collect(&mut stmt, params),
            None => Ok(QueryResult {
                columns: Vec::new(),
                rows: Vec::new(),
            }),
        },
        Err(e) => Err(io(e)),
    }
}

/// Runs a prepared statement and collects its rows, up to Spin's cap.
fn collect(stmt: &mut rusqlite::Statement<'_>, params: Vec<Value>) -> Result<QueryResult, Error> {
    let io = |e: rusqlite::Error| Error::Io(e.to_string());
    let columns: Vec<String> = stmt.column_names().into_iter().map(String::from).collect();
    let n = columns.len();
    let params = params.into_iter().map(|v| match v {
        Value::Integer(i) => rusqlite::types::Value::Integer(i),
        Value::Real(r) => rusqlite::types::Value::Real(r),
        Value::Text(t) => rusqlite::types::Value::Text(t),
        Value::Blob(b) => rusqlite::types::Value::Blob(b),
        Value::Null => rusqlite::types::Value::Null,
    });
    let mut rows = stmt.query(rusqlite::params_from_iter(params)).map_err(io)?;
    let mut out = Vec::new();
    let mut bytes = std::mem::size_of::<QueryResult>();
    while let Some(row) = rows.next().map_err(io)? {
        let mut values = Vec::with_capacity(n);
        for i in 0..n {
            use rusqlite::types::ValueRef;
            let v = match row.get_ref(i).map_err(io)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(r) => Value::Real(r),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            };
            bytes += std::mem::size_of::<Value>()
                + match &v {
                    Value::Text(t) => t.len(),
                    Value::Blob(b) => b.len(),
                    _ => 0,
                };
            values.push(v);
        }
        if bytes > MAX_RESULT_BYTES {
            return Err(Error::Io(format!(
                "query result exceeds limit of {MAX_RESULT_BYTES} bytes"
            )));
        }
        out.push(RowResult { values });
    }
    Ok(QueryResult { columns, rows: out })
}

impl sqlite::Host for HostState {}

impl sqlite::HostConnection for HostState {
    async fn open(&mut self, database: String) -> wasmtime::Result<Result<Resource<SqliteConnection>, Error>> {
        open(self, &database)
    }

    async fn execute(
        &mut self,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<QueryResult, Error>> {
        Ok(match connection(self, &this) {
            Ok(c) => run(c, statement, parameters).await,
            Err(e) => Err(e),
        })
    }

    async fn last_insert_rowid(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<i64> {
        Ok(stats(self, &this)?.1)
    }

    async fn changes(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<u64> {
        Ok(stats(self, &this)?.0)
    }

    async fn drop(&mut self, this: Resource<SqliteConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        self.sqlite_connections -= 1;
        Ok(())
    }
}

impl sqlite::HostConnectionWithStore<HostState> for SpinHost {
    async fn open_async(
        accessor: &Accessor<HostState, Self>,
        database: String,
    ) -> wasmtime::Result<Result<Resource<SqliteConnection>, Error>> {
        accessor.with(|mut a| open(a.get(), &database))
    }

    async fn execute_async(
        accessor: &Accessor<HostState, Self>,
        this: Resource<SqliteConnection>,
        statement: String,
        parameters: Vec<Value>,
    ) -> wasmtime::Result<Result<(Vec<String>, StreamReader<RowResult>, FutureReader<Result<(), Error>>), Error>> {
        let conn = match accessor.with(|mut a| connection(a.get(), &this)) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        // The statement runs to completion before its rows stream to the
        // guest (Spin streams them as they come): the same rows, and an
        // error surfaces at the call rather than at the end of the stream.
        let QueryResult { columns, rows } = match run(conn, statement, parameters).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let (rows, done) = crate::host::buffered_rows(accessor, rows)?;
        Ok(Ok((columns, rows, done)))
    }

    async fn last_insert_rowid_async(
        accessor: &Accessor<HostState, Self>,
        this: Resource<SqliteConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(accessor.with(|mut a| stats(a.get(), &this))?.1)
    }

    async fn changes_async(
        accessor: &Accessor<HostState, Self>,
        this: Resource<SqliteConnection>,
    ) -> wasmtime::Result<u64> {
        Ok(accessor.with(|mut a| stats(a.get(), &this))?.0)
    }
}

/// `spin up --sqlite`: `@file` (or `@file:label`, only `default` here) runs
/// the whole file as a batch; anything else runs as one statement (only its
/// first statement, as Spin runs it through a query). Each on a fresh
/// connection.
pub(crate) fn run_startup_statements(db: &Path, statements: &[String]) -> anyhow::Result<()> {
    for s in statements {
        let conn = open_file(db).map_err(|e| anyhow::anyhow!("cannot open {}: {e}", db.display()))?;
        match s.strip_prefix('@') {
            Some(file) => {
                let file = file.strip_suffix(":default").unwrap_or(file);
                let sql = std::fs::read_to_string(file)
                    .map_err(|e| anyhow::anyhow!("could not read file '{file}' containing sql statements: {e}"))?;
                conn.execute_batch(&sql).map_err(|e| {
                    anyhow::anyhow!("failed to execute sql against database 'default' from file '{file}': {e}")
                })?;
            }
            None => {
                execute(&conn, s, Vec::new()).map_err(|e| {
                    anyhow::anyhow!("failed to execute following sql statement against default database: '{s}': {e:?}")
                })?;
            }
        }
    }
    Ok(())
}
