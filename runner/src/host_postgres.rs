//! `spin:postgres/postgres@4.2.0` on tokio-postgres, as Spin's
//! `factor-outbound-pg` hosts it: every `host` of the connection string must
//! pass the component's `allowed_outbound_hosts` before any connection is
//! attempted (checked by [`kit::outbound`], as Spin checks it); connections
//! come from a deadpool pool per component and connection string (at most 64
//! connections, no timeouts, recycled with `RecyclingMethod::Clean`), held
//! while the guest holds its `connection`; connect failures are
//! `connection-failed`, server errors `query-failed(db-error)`, bad
//! parameters `bad-parameter`. Values are converted with the same Rust types
//! Spin uses, so a column type Spin cannot read (e.g. `timestamptz` into
//! `datetime`) fails here too.
//!
//! One check goes beyond Spin's: every `hostaddr` of the connection string
//! must be allowed too (Spin checks only `host`, while tokio-postgres
//! connects to `hostaddr` when it is given, so `host=allowed
//! hostaddr=elsewhere` would reach an address nobody allowed).

// The WIT `error` (with its `db-error` record) is the natural error type of
// every helper here; boxing it would only add conversions at each boundary.
#![allow(clippy::result_large_err)]

use crate::bindings::pg::{
    self, Column, DbDataType, DbError, DbValue, Error, Interval, ParameterValue, QueryError, Row, RowSet,
};
use crate::host::{ComponentConfig, HostState, SpinHost};
use bytes::BytesMut;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use kit::outbound::AllowedHosts;
use std::sync::{Arc, Mutex};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use wasmtime::component::{Accessor, FutureReader, Resource, StreamReader};

/// Spin's `CONNECTION_POOL_SIZE`.
const POOL_SIZE: usize = 64;

/// Pools one component keeps (Spin's cache capacity).
const MAX_POOLS: usize = 16;

/// One component's pools, by connection string, oldest first.
#[derive(Default)]
pub(crate) struct Pools(Mutex<Vec<(String, Pool)>>);

impl Pools {
    fn get(&self, address: &str, config: tokio_postgres::Config) -> Result<Pool, Error> {
        let mut pools = self.0.lock().map_err(|_| Error::Other("pool lock poisoned".into()))?;
        if let Some((_, pool)) = pools.iter().find(|(a, _)| a == address) {
            return Ok(pool.clone());
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Clean,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| Error::ConnectionFailed(format!("establishing PostgreSQL connection pool: {e}")))?;
        if pools.len() >= MAX_POOLS {
            pools.remove(0);
        }
        pools.push((address.to_string(), pool.clone()));
        Ok(pool)
    }
}

/// The resource behind `connection`: a pooled connection, back to its pool
/// when the guest drops it.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports a `with` resource type with `pub use`"
)]
pub struct PgConnection {
    client: Arc<Object>,
}

/// The resource behind `connection-builder`.
#[allow(
    unreachable_pub,
    reason = "bindgen! re-exports a `with` resource type with `pub use`"
)]
pub struct PgConnectionBuilder {
    address: String,
}

/// Parses `address` and checks every TCP host and every `hostaddr` of it
/// against the allow-list, each on the port tokio-postgres will use for it
/// (its own, or the only one given, or none: the default 5432).
fn check_address(allowed: &AllowedHosts, address: &str) -> Result<tokio_postgres::Config, Error> {
    let config: tokio_postgres::Config = address
        .parse()
        .map_err(|e: tokio_postgres::Error| Error::ConnectionFailed(e.to_string()))?;
    let ports = config.get_ports();
    let port = |i: usize| {
        ports
            .get(i)
            .or(if ports.len() == 1 { ports.first() } else { None })
            .copied()
    };
    let refuse = |host: &str, port: Option<u16>| {
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        Error::ConnectionFailed(format!("address postgres://{host}{port} is not permitted"))
    };
    for (i, host) in config.get_hosts().iter().enumerate() {
        match host {
            tokio_postgres::config::Host::Tcp(h) => {
                if !allowed.allows_postgres(h, port(i)) {
                    return Err(refuse(h, port(i)));
                }
            }
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(_) => {
                return Err(Error::ConnectionFailed(
                    "Unix sockets are not supported on WebAssembly".into(),
                ));
            }
        }
    }
    for (i, addr) in config.get_hostaddrs().iter().enumerate() {
        // An address, so an IPv6 one is written as a URL host, in brackets.
        let host = match addr {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        if !allowed.allows_postgres(&host, port(i)) {
            return Err(refuse(&host, port(i)));
        }
    }
    Ok(config)
}

async fn connect(state: (Arc<ComponentConfig>, Arc<Pools>), address: String) -> Result<PgConnection, Error> {
    let (component, pools) = state;
    // As in Spin, an allow-list that the resolved variables made invalid
    // fails every connection, not the app's startup.
    let allowed = component.allowed_hosts.as_ref().map_err(|e| Error::Other(e.clone()))?;
    let config = check_address(allowed, &address)?;
    let pool = pools.get(&address, config)?;
    let client = pool.get().await.map_err(|e| Error::ConnectionFailed(e.to_string()))?;
    Ok(PgConnection {
        client: Arc::new(client),
    })
}

fn query_failed(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => {
            let mut extras = Vec::new();
            let mut push = |k: &str, v: Option<&str>| {
                if let Some(v) = v {
                    extras.push((k.to_string(), v.to_string()));
                }
            };
            push("hint", db.hint());
            push("schema", db.schema());
            push("table", db.table());
            push("column", db.column());
            push("constraint", db.constraint());
            Error::QueryFailed(QueryError::DbError(DbError {
                as_text: db.to_string(),
                severity: db.severity().to_string(),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(String::from),
                extras,
            }))
        }
        // Spin 4.1 hands over the Debug form of other errors (a dropped
        // connection reads `Error { kind: Closed, cause: None }`), so the
        // guest sees the same text here.
        None => Error::QueryFailed(QueryError::Text(format!("{e:?}"))),
    }
}

type Param = Box<dyn ToSql + Send + Sync>;

fn to_param(v: ParameterValue) -> Result<Param, String> {
    use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
    let date = |(y, m, d): (i32, u8, u8)| {
        NaiveDate::from_ymd_opt(y, m.into(), d.into()).ok_or(format!("invalid date y={y}, m={m}, d={d}"))
    };
    let time = |(h, mi, s, ns): (u8, u8, u8, u32)| {
        NaiveTime::from_hms_nano_opt(h.into(), mi.into(), s.into(), ns).ok_or(format!("invalid time {h}:{mi}:{s}:{ns}"))
    };
    Ok(match v {
        ParameterValue::Boolean(v) => Box::new(v),
        ParameterValue::Int8(v) => Box::new(v),
        ParameterValue::Int16(v) => Box::new(v),
        ParameterValue::Int32(v) => Box::new(v),
        ParameterValue::Int64(v) => Box::new(v),
        ParameterValue::Floating32(v) => Box::new(v),
        ParameterValue::Floating64(v) => Box::new(v),
        ParameterValue::Str(v) => Box::new(v),
        ParameterValue::Binary(v) => Box::new(v),
        ParameterValue::Date(v) => Box::new(date(v)?),
        ParameterValue::Time(v) => Box::new(time(v)?),
        ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => {
            Box::new(NaiveDateTime::new(date((y, mo, d))?, time((h, mi, s, ns))?))
        }
        ParameterValue::Timestamp(v) => Box::new(
            chrono::DateTime::<chrono::Utc>::from_timestamp(v, 0).ok_or(format!("invalid epoch timestamp {v}"))?,
        ),
        ParameterValue::Uuid(v) => Box::new(uuid::Uuid::parse_str(&v).map_err(|_| format!("invalid UUID {v}"))?),
        ParameterValue::Jsonb(v) => Box::new(
            serde_json::from_slice::<serde_json::Value>(&v)
                .map_err(|_| format!("invalid JSON {}", String::from_utf8_lossy(&v)))?,
        ),
        ParameterValue::ArrayInt32(v) => Box::new(v),
        ParameterValue::ArrayInt64(v) => Box::new(v),
        ParameterValue::ArrayStr(v) => Box::new(v),
        ParameterValue::Interval(v) => Box::new(PgInterval(v)),
        ParameterValue::DbNull => Box::new(PgNull),
        ParameterValue::Decimal(_)
        | ParameterValue::RangeInt32(_)
        | ParameterValue::RangeInt64(_)
        | ParameterValue::RangeDecimal(_)
        | ParameterValue::ArrayDecimal(_) => {
            return Err("decimal and range parameters are not supported by the runner".into());
        }
    })
}

fn to_params(params: Vec<ParameterValue>) -> Result<Vec<Param>, Error> {
    params
        .into_iter()
        .map(to_param)
        .collect::<Result<_, _>>()
        .map_err(Error::BadParameter)
}

fn data_type(t: &Type) -> DbDataType {
    match *t {
        Type::BOOL => DbDataType::Boolean,
        Type::BYTEA => DbDataType::Binary,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => DbDataType::Str,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::UUID => DbDataType::Uuid,
        Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => DbDataType::ArrayStr,
        Type::INTERVAL => DbDataType::Interval,
        _ => DbDataType::Other(t.name().to_string()),
    }
}

fn get<'a, T: FromSql<'a>>(
    row: &'a tokio_postgres::Row,
    i: usize,
    f: impl FnOnce(T) -> Result<DbValue, String>,
) -> Result<DbValue, String> {
    match row.try_get::<_, Option<T>>(i).map_err(|e| e.to_string())? {
        Some(v) => f(v),
        None => Ok(DbValue::DbNull),
    }
}

fn to_value(row: &tokio_postgres::Row, i: usize) -> Result<DbValue, String> {
    use chrono::{Datelike, Timelike};
    let small = |n: u32| u8::try_from(n).map_err(|e| e.to_string());
    match *row.columns()[i].type_() {
        Type::BOOL => get(row, i, |v| Ok(DbValue::Boolean(v))),
        Type::BYTEA => get(row, i, |v| Ok(DbValue::Binary(v))),
        Type::FLOAT4 => get(row, i, |v| Ok(DbValue::Floating32(v))),
        Type::FLOAT8 => get(row, i, |v| Ok(DbValue::Floating64(v))),
        Type::INT2 => get(row, i, |v| Ok(DbValue::Int16(v))),
        Type::INT4 => get(row, i, |v| Ok(DbValue::Int32(v))),
        Type::INT8 => get(row, i, |v| Ok(DbValue::Int64(v))),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => get(row, i, |v| Ok(DbValue::Str(v))),
        // Spin reads both as `NaiveDateTime`, which tokio-postgres only
        // accepts for `timestamp`; `timestamptz` fails as it does in Spin.
        Type::TIMESTAMP | Type::TIMESTAMPTZ => get(row, i, |v: chrono::NaiveDateTime| {
            Ok(DbValue::Datetime((
                v.year(),
                small(v.month())?,
                small(v.day())?,
                small(v.hour())?,
                small(v.minute())?,
                small(v.second())?,
                v.nanosecond(),
            )))
        }),
        Type::DATE => get(row, i, |v: chrono::NaiveDate| {
            Ok(DbValue::Date((v.year(), small(v.month())?, small(v.day())?)))
        }),
        Type::TIME => get(row, i, |v: chrono::NaiveTime| {
            Ok(DbValue::Time((
                small(v.hour())?,
                small(v.minute())?,
                small(v.second())?,
                v.nanosecond(),
            )))
        }),
        Type::UUID => get(row, i, |v: uuid::Uuid| Ok(DbValue::Uuid(v.to_string()))),
        Type::JSONB => get(row, i, |v: serde_json::Value| {
            serde_json::to_vec(&v).map(DbValue::Jsonb).map_err(|e| e.to_string())
        }),
        Type::INT4_ARRAY => get(row, i, |v| Ok(DbValue::ArrayInt32(v))),
        Type::INT8_ARRAY => get(row, i, |v| Ok(DbValue::ArrayInt64(v))),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY | Type::BPCHAR_ARRAY => get(row, i, |v| Ok(DbValue::ArrayStr(v))),
        Type::INTERVAL => get(row, i, |v: PgInterval| Ok(DbValue::Interval(v.0))),
        _ => get(row, i, |v: Raw| Ok(DbValue::Unsupported(v.0))),
    }
}

fn to_rows(rows: Vec<tokio_postgres::Row>) -> Result<Vec<Row>, Error> {
    rows.iter()
        .map(|r| (0..r.len()).map(|i| to_value(r, i)).collect::<Result<Row, _>>())
        .collect::<Result<_, _>>()
        .map_err(Error::ValueConversionFailed)
}

async fn run_query(client: Arc<Object>, statement: String, params: Vec<ParameterValue>) -> Result<RowSet, Error> {
    let params = to_params(params)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    let stmt = client.prepare(&statement).await.map_err(query_failed)?;
    let columns = stmt
        .columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            data_type: data_type(c.type_()),
        })
        .collect();
    let rows = client.query(&stmt, &refs).await.map_err(query_failed)?;
    Ok(RowSet {
        columns,
        rows: to_rows(rows)?,
    })
}

async fn run_execute(client: Arc<Object>, statement: String, params: Vec<ParameterValue>) -> Result<u64, Error> {
    let params = to_params(params)?;
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect();
    client.execute(&statement, &refs).await.map_err(query_failed)
}

fn client(state: &HostState, r: &Resource<PgConnection>) -> wasmtime::Result<Arc<Object>> {
    Ok(state.table.get(r)?.client.clone())
}

fn connect_args(state: &HostState) -> (Arc<ComponentConfig>, Arc<Pools>) {
    (state.component.clone(), state.postgres.clone())
}

impl pg::Host for HostState {}

impl pg::HostConnection for HostState {
    async fn open(&mut self, address: String) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        Ok(match connect(connect_args(self), address).await {
            Ok(c) => Ok(self.table.push(c)?),
            Err(e) => Err(e),
        })
    }

    async fn query(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let c = client(self, &this)?;
        Ok(run_query(c, statement, params).await)
    }

    async fn execute(
        &mut self,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let c = client(self, &this)?;
        Ok(run_execute(c, statement, params).await)
    }

    async fn drop(&mut self, this: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

impl pg::HostConnectionBuilder for HostState {
    async fn new(&mut self, address: String) -> wasmtime::Result<Resource<PgConnectionBuilder>> {
        Ok(self.table.push(PgConnectionBuilder { address })?)
    }

    async fn set_ca_root(
        &mut self,
        _this: Resource<PgConnectionBuilder>,
        _certificate: String,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(Err(Error::Other(
            "TLS connections are not supported by the runner".into(),
        )))
    }

    async fn build(
        &mut self,
        this: Resource<PgConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        let address = self.table.get(&this)?.address.clone();
        pg::HostConnection::open(self, address).await
    }

    async fn drop(&mut self, this: Resource<PgConnectionBuilder>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

async fn open_with(
    accessor: &Accessor<HostState, SpinHost>,
    address: String,
) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
    let args = accessor.with(|mut a| connect_args(a.get()));
    match connect(args, address).await {
        Ok(c) => Ok(Ok(accessor.with(|mut a| a.get().table.push(c))?)),
        Err(e) => Ok(Err(e)),
    }
}

impl pg::HostConnectionBuilderWithStore<HostState> for SpinHost {
    async fn build_async(
        accessor: &Accessor<HostState, Self>,
        this: Resource<PgConnectionBuilder>,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        let address =
            accessor.with(|mut a| -> wasmtime::Result<String> { Ok(a.get().table.get(&this)?.address.clone()) })?;
        open_with(accessor, address).await
    }
}

impl pg::HostConnectionWithStore<HostState> for SpinHost {
    async fn open_async(
        accessor: &Accessor<HostState, Self>,
        address: String,
    ) -> wasmtime::Result<Result<Resource<PgConnection>, Error>> {
        open_with(accessor, address).await
    }

    async fn query_async(
        accessor: &Accessor<HostState, Self>,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<(Vec<Column>, StreamReader<Row>, FutureReader<Result<(), Error>>), Error>> {
        let c = accessor.with(|mut a| client(a.get(), &this))?;
        // Rows are fetched before streaming: same rows, simpler flow control.
        let RowSet { columns, rows } = match run_query(c, statement, params).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let (rows, done) = crate::host::buffered_rows(accessor, rows)?;
        Ok(Ok((columns, rows, done)))
    }

    async fn execute_async(
        accessor: &Accessor<HostState, Self>,
        this: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let c = accessor.with(|mut a| client(a.get(), &this))?;
        Ok(run_execute(c, statement, params).await)
    }
}

/// `NULL` of whatever type the server expects.
#[derive(Debug)]
struct PgNull;

impl ToSql for PgNull {
    fn to_sql(&self, _: &Type, _: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        Ok(IsNull::Yes)
    }
    fn accepts(_: &Type) -> bool {
        true
    }
    to_sql_checked!();
}

/// `interval` in its binary wire form: microseconds, days, months.
#[derive(Debug)]
struct PgInterval(Interval);

impl ToSql for PgInterval {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0.micros.to_be_bytes());
        out.extend_from_slice(&self.0.days.to_be_bytes());
        out.extend_from_slice(&self.0.months.to_be_bytes());
        Ok(IsNull::No)
    }
    fn accepts(t: &Type) -> bool {
        *t == Type::INTERVAL
    }
    to_sql_checked!();
}

impl<'a> FromSql<'a> for PgInterval {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if raw.len() != 16 {
            return Err("invalid interval".into());
        }
        let micros = i64::from_be_bytes(raw[0..8].try_into()?);
        let days = i32::from_be_bytes(raw[8..12].try_into()?);
        let months = i32::from_be_bytes(raw[12..16].try_into()?);
        Ok(PgInterval(Interval { micros, days, months }))
    }
    fn accepts(t: &Type) -> bool {
        *t == Type::INTERVAL
    }
}

/// Any other column: its raw wire bytes (`db-value::unsupported`).
struct Raw(Vec<u8>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap()
    }

    #[test]
    fn address_checks_follow_spin() {
        let a = allowed(&["postgres://db.local:5432"]);
        assert!(check_address(&a, "postgres://u:p@db.local:5432/app").is_ok());
        assert!(check_address(&a, "postgres://u:p@db.local/app").is_ok());
        assert!(check_address(&a, "host=db.local user=u dbname=app").is_ok());
        for bad in [
            "postgres://u:p@db.local:5433/app",
            "postgres://u:p@evil.example/app",
            "host=evil.example user=u",
        ] {
            match check_address(&a, bad) {
                Err(Error::ConnectionFailed(m)) => assert!(m.contains("not permitted"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(matches!(
            check_address(&allowed(&[]), "postgres://localhost/app"),
            Err(Error::ConnectionFailed(_))
        ));
        // Spin's check reads `::1:5432` as a URL, which it is not.
        match check_address(&allowed(&["postgres://[::1]:*"]), "postgres://u@[::1]:5432/app") {
            Err(Error::ConnectionFailed(m)) => assert!(m.contains("postgres://::1:5432"), "{m}"),
            other => panic!("{other:?}"),
        }
        let range = allowed(&["postgres://db.local:6000..6002"]);
        assert!(check_address(&range, "host=db.local port=6001").is_ok());
        assert!(check_address(&range, "host=db.local port=6002").is_err());
    }

    #[test]
    fn hostaddr_must_be_allowed_too() {
        let a = allowed(&[
            "postgres://db.local:5432",
            "postgres://127.0.0.1:5432",
            "postgres://[::1]",
        ]);
        assert!(check_address(&a, "host=db.local hostaddr=127.0.0.1 user=u").is_ok());
        assert!(check_address(&a, "host=db.local hostaddr=::1 user=u").is_ok());
        for bad in ["host=db.local hostaddr=10.9.8.7 user=u", "hostaddr=10.9.8.7 user=u"] {
            match check_address(&a, bad) {
                Err(Error::ConnectionFailed(m)) => assert!(m.contains("10.9.8.7"), "{m}"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
