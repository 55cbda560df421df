//! Test guest for the runner: one route per behaviour the host must contain.
//!
//! - `/ok`: 200 "ok"
//! - `/count`: how many requests this instance has served, this one included
//! - `/spin`: a busy loop that never yields (only epoch interruption stops it)
//! - `/alloc`: grows memory without bound (the memory cap must stop it)
//! - `/trap`: panics (a wasm trap)
//! - `/sleep?ms=N`: blocks N ms (the thread, not a yield), then 200
//! - `/wait?ms=N`: awaits N ms (the instance may serve others meanwhile),
//!   then 200 with this instance's id and the most requests it has had in
//!   flight at once
//! - `/limit?max=N`: reads the body as it streams in and answers 413 as soon
//!   as more than N bytes have arrived, else 200 with the byte count
//! - `/var?name=x`: the component variable `x`, or the error as 404
//! - `/db?label=x`: opens SQLite database `x`, runs a query, reports the outcome
//! - `/kv?k=x`: inserts `x` into table `kv` (UNIQUE), then an UPDATE matching
//!   nothing, reporting `changes` and `last-insert-rowid` after each and the
//!   row's id read back; 409 with the error if the insert fails
//! - `/headers`: the request headers, one `name: value` per line
//! - `/pg`: a PostgreSQL round trip on the `pg_url` variable's database
//! - `/pg-session`: the PostgreSQL session's backend pid and
//!   `application_name`, which it then changes (pooling must reset it)

use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

#[http_service]
async fn handle(request: Request) -> impl IntoResponse {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    match path.as_str() {
        "/ok" => (StatusCode::OK, "ok".to_string()),
        "/spin" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "/alloc" => {
            let mut keep: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut chunk = vec![0u8; 1 << 20];
                chunk[0] = 1;
                keep.push(std::hint::black_box(chunk));
            }
        }
        "/trap" => panic!("deliberate trap"),
        "/sleep" => {
            let ms: u64 = query_param(&query, "ms").and_then(|v| v.parse().ok()).unwrap_or(100);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            (StatusCode::OK, format!("slept {ms}"))
        }
        "/wait" => {
            let ms: u64 = query_param(&query, "ms").and_then(|v| v.parse().ok()).unwrap_or(100);
            (StatusCode::OK, wait(ms).await)
        }
        "/limit" => {
            let max: usize = query_param(&query, "max").and_then(|v| v.parse().ok()).unwrap_or(0);
            limit(request, max).await
        }
        "/var" => {
            let name = query_param(&query, "name").unwrap_or("");
            match spin_sdk::variables::get(name).await {
                Ok(v) => (StatusCode::OK, v),
                Err(e) => (StatusCode::NOT_FOUND, format!("{e:?}")),
            }
        }
        "/db" => {
            let label = query_param(&query, "label").unwrap_or("default");
            match spin_sdk::sqlite::Connection::open(label).await {
                Ok(conn) => match conn.execute("SELECT 1 + 1, 'x', NULL", []).await {
                    Ok(rows) => match rows.collect().await {
                        Ok(rows) => (StatusCode::OK, format!("{} row(s): {:?}", rows.len(), rows[0].values)),
                        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}")),
                    },
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:?}")),
                },
                Err(e) => (StatusCode::FORBIDDEN, format!("{e:?}")),
            }
        }
        "/kv" => match kv(query_param(&query, "k").unwrap_or("")).await {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => (StatusCode::CONFLICT, e),
        },
        "/pg" => match pg_round_trip().await {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => (StatusCode::BAD_GATEWAY, e),
        },
        "/count" => {
            static SERVED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = SERVED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            (StatusCode::OK, n.to_string())
        }
        "/pg-session" => match pg_session().await {
            Ok(v) => (StatusCode::OK, v),
            Err(e) => (StatusCode::BAD_GATEWAY, e),
        },
        "/headers" => {
            let mut lines: Vec<String> = request
                .headers()
                .iter()
                .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("?")))
                .collect();
            lines.sort();
            (StatusCode::OK, lines.join("\n"))
        }
        _ => (StatusCode::NOT_FOUND, "no such test route".to_string()),
    }
}

/// Awaits `ms`, counting this instance's requests in flight.
async fn wait(ms: u64) -> String {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    static ID: AtomicU64 = AtomicU64::new(0);
    static IN_FLIGHT: AtomicU32 = AtomicU32::new(0);
    static MOST: AtomicU32 = AtomicU32::new(0);
    if ID.load(Ordering::Relaxed) == 0 {
        ID.store(
            spin_sdk::wasip3::random::random::get_random_u64() | 1,
            Ordering::Relaxed,
        );
    }
    let now = IN_FLIGHT.fetch_add(1, Ordering::Relaxed) + 1;
    MOST.fetch_max(now, Ordering::Relaxed);
    spin_sdk::time::sleep(std::time::Duration::from_millis(ms)).await;
    IN_FLIGHT.fetch_sub(1, Ordering::Relaxed);
    format!("{} {}", ID.load(Ordering::Relaxed), MOST.load(Ordering::Relaxed))
}

/// Reads the body frame by frame, giving up past `max` bytes.
async fn limit(request: Request, max: usize) -> (StatusCode, String) {
    use http_body_util::BodyExt;
    let mut body = request.into_body();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    seen += data.len();
                }
            }
            Err(e) => return (StatusCode::BAD_REQUEST, format!("{e:?}")),
        }
        if seen > max {
            return (StatusCode::PAYLOAD_TOO_LARGE, format!("more than {max} bytes"));
        }
    }
    (StatusCode::OK, seen.to_string())
}

async fn kv(k: &str) -> Result<String, String> {
    use spin_sdk::sqlite::{Connection, Value};
    let c = Connection::open("default").await.map_err(|e| format!("open: {e:?}"))?;
    let insert = c.execute("INSERT INTO kv(k) VALUES (?)", [Value::Text(k.into())]).await;
    insert.map_err(|e| format!("insert: {e:?}"))?;
    let after_insert = (c.changes().await, c.last_insert_rowid().await);
    c.execute("UPDATE kv SET k = k WHERE k = 'no such key'", [])
        .await
        .map_err(|e| format!("update: {e:?}"))?;
    let after_update = (c.changes().await, c.last_insert_rowid().await);
    let rows = c
        .execute("SELECT id FROM kv WHERE k = ?", [Value::Text(k.into())])
        .await
        .map_err(|e| format!("select: {e:?}"))?
        .collect()
        .await
        .map_err(|e| format!("rows: {e:?}"))?;
    Ok(format!("{after_insert:?} {after_update:?} {:?}", rows[0].values))
}

/// `pid application_name` as found, then leaves `application_name` changed.
async fn pg_session() -> Result<String, String> {
    use spin_sdk::pg::Connection;
    let url = spin_sdk::variables::get("pg_url").await.map_err(|e| format!("{e:?}"))?;
    let c = Connection::open(url).await.map_err(|e| format!("open: {e:?}"))?;
    let found = c
        .query(
            "SELECT pg_backend_pid()::text, current_setting('application_name')",
            vec![],
        )
        .await
        .map_err(|e| format!("query: {e:?}"))?
        .collect()
        .await
        .map_err(|e| format!("rows: {e:?}"))?;
    c.execute("SET application_name = 'leaked'", vec![])
        .await
        .map_err(|e| format!("set: {e:?}"))?;
    Ok(format!("{:?} {:?}", found[0][0], found[0][1]))
}

/// Writes one row of each type the app relies on and reads it back.
async fn pg_round_trip() -> Result<String, String> {
    use spin_sdk::pg::{Connection, ParameterValue as P};
    let url = spin_sdk::variables::get("pg_url").await.map_err(|e| format!("{e:?}"))?;
    let c = Connection::open(url).await.map_err(|e| format!("open: {e:?}"))?;
    let err = |what: &'static str| move |e| format!("{what}: {e:?}");
    c.execute("DROP TABLE IF EXISTS runner_guest_t", vec![])
        .await
        .map_err(err("drop"))?;
    c.execute(
        "CREATE TABLE runner_guest_t (id uuid PRIMARY KEY, name text NOT NULL, n bigint, at timestamp, \
         stamp timestamptz, doc jsonb, flag boolean, k int4)",
        vec![],
    )
    .await
    .map_err(err("create"))?;
    let inserted = c
        .execute(
            "INSERT INTO runner_guest_t VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                P::Uuid("7c9e6679-7425-40de-944b-e07fc1f90ae7".into()),
                P::Str("caf\u{e9}".into()),
                P::Int64(i64::MAX),
                P::Datetime((2024, 2, 29, 23, 59, 58, 123_456_000)),
                P::Timestamp(1_700_000_000),
                P::Jsonb(br#"{"a":[1,2]}"#.to_vec()),
                P::DbNull,
                P::Int32(-7),
            ],
        )
        .await
        .map_err(err("insert"))?;
    let result = c
        .query(
            "SELECT id, name, n, at, doc, flag, k FROM runner_guest_t WHERE id = $1",
            vec![P::Uuid("7c9e6679-7425-40de-944b-e07fc1f90ae7".into())],
        )
        .await
        .map_err(err("query"))?;
    let columns: Vec<String> = result
        .columns()
        .iter()
        .map(|c| format!("{}:{:?}", c.name, c.data_type))
        .collect();
    let rows = result.collect().await.map_err(err("rows"))?;
    let values: Vec<String> = (0..7).map(|i| format!("{:?}", rows[0][i])).collect();
    let bad = c
        .query("SELECT * FROM no_such_table", vec![])
        .await
        .err()
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    Ok(format!(
        "inserted={inserted}\ncolumns={}\nvalues={}\nerror={bad}",
        columns.join(","),
        values.join(",")
    ))
}
