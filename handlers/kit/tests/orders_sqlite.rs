//! The order routes' request-to-response logic against a real SQLite file,
//! natively: the same pipeline and store the components run, with rusqlite
//! standing in for Spin's SQLite interface.

use bytes::Bytes;
use chrono::{TimeZone, Utc};
use futures::executor::block_on;
use http::{Request, Response};
use kit::config::Config;
use kit::contract::{CREATE_ORDER, GET_ORDER, HEALTH};
use kit::orders::{self, NewOrder, OrderStore};
use kit::pipeline::{Ctx, serve};
use kit::sql::{Database, DbError, Dialect, SqlValue};
use kit::validate::Schema;
use rusqlite::types::{Value as RValue, ValueRef};
use serde_json::{Value, json};
use std::path::PathBuf;

struct Sqlite(rusqlite::Connection);

impl Sqlite {
    fn open(path: &std::path::Path) -> Self {
        let connection = rusqlite::Connection::open(path).unwrap();
        for (_, sql) in kit::migrations::SQLITE {
            connection.execute_batch(sql).unwrap();
        }
        Sqlite(connection)
    }
}

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

fn failed(e: rusqlite::Error) -> DbError {
    DbError::Failed(e.to_string())
}

impl Database for Sqlite {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
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

fn temp_db() -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new();
    let path = dir.0.join("sqlite_db.db");
    (dir, path)
}

/// A tiny self-cleaning temporary directory, to avoid a dependency.
mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!("kit-test-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&path).unwrap();
            Dir(path)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn post(store: &OrderStore<Sqlite>, body: &str) -> Response<Bytes> {
    let head = Request::post("/orders")
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let now = Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap();
    block_on(serve(
        &CREATE_ORDER,
        head,
        Bytes::from(body.to_string()),
        Ok(Config::default()),
        async |ctx: &Ctx, order: NewOrder| orders::create(ctx, store, order, now).await,
    ))
}

fn get(store: &OrderStore<Sqlite>, id: &str) -> Response<Bytes> {
    let head = Request::get(format!("/orders/{id}"))
        .header("spin-path-match-id", id)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    block_on(serve(
        &GET_ORDER,
        head,
        Bytes::new(),
        Ok(Config::default()),
        async |ctx: &Ctx, (): ()| orders::get(ctx, store).await,
    ))
}

fn body(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

const USER: &str = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e";

#[test]
fn created_orders_read_back_and_match_their_schemas() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(Sqlite::open(&path));
    let created = post(
        &store,
        &json!({"userId": USER, "items": [{"productId": "sku-1", "quantity": 3}]}).to_string(),
    );
    assert_eq!(created.status(), 201);
    let id = body(&created)["orderId"].as_str().unwrap().to_string();
    assert_eq!(created.headers()["location"], format!("/orders/{id}"));
    assert!(Schema::compile(kit::schemas::ORDER_CREATED_RESPONSE).is_valid(&body(&created)));

    let read = get(&store, &id);
    assert_eq!(read.status(), 200);
    let order = body(&read);
    assert_eq!(
        order,
        json!({"id": id, "userId": USER, "items": [{"productId": "sku-1", "quantity": 3}], "createdAt": "2026-11-24T12:00:00.000Z"})
    );
    assert!(Schema::compile(kit::schemas::ORDER_RESPONSE).is_valid(&order));

    // The file holds the order: a second connection sees it.
    let again = OrderStore::new(Sqlite::open(&path));
    assert_eq!(get(&again, &id).status(), 200);
}

#[test]
fn unknown_and_malformed_ids() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(Sqlite::open(&path));
    let missing = get(&store, "9a3c1e5e-1111-4222-8333-444455556666");
    assert_eq!(missing.status(), 404);
    assert_eq!(body(&missing)["type"], "/problems/not-found");
    let bad = get(&store, "42");
    assert_eq!(bad.status(), 400);
    assert_eq!(body(&bad)["type"], "/problems/invalid-parameter");
    assert_eq!(body(&bad)["errors"][0]["parameter"], "id");
}

#[test]
fn invalid_bodies_store_nothing() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(Sqlite::open(&path));
    let r = post(
        &store,
        &json!({"userId": USER, "items": [{"productId": "x", "quantity": 0}]}).to_string(),
    );
    assert_eq!(r.status(), 400);
    let rows = block_on(store.database().query("SELECT COUNT(*) FROM orders", &[])).unwrap();
    assert_eq!(rows[0][0], SqlValue::Integer(0));
}

#[test]
fn missing_table_is_an_internal_error_and_health_says_failing() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(Sqlite(rusqlite::Connection::open(&path).unwrap()));
    let r = post(
        &store,
        &json!({"userId": USER, "items": [{"productId": "x", "quantity": 1}]}).to_string(),
    );
    assert_eq!(r.status(), 500);
    assert_eq!(body(&r)["type"], "/problems/internal-error");
    assert!(
        !String::from_utf8_lossy(r.body()).contains("no such table"),
        "causes stay in the log"
    );

    let head = Request::get("/healthz").body(()).unwrap().into_parts().0;
    let health = block_on(serve(
        &HEALTH,
        head,
        Bytes::new(),
        Ok(Config::default()),
        async |ctx: &Ctx, (): ()| {
            Ok(orders::health(
                ctx,
                Ok(OrderStore::new(Sqlite(rusqlite::Connection::open(&path).unwrap()))),
            )
            .await)
        },
    ));
    assert_eq!(health.status(), 503);
    assert_eq!(
        body(&health),
        json!({"status": "unavailable", "checks": {"database": "failing"}})
    );
}

#[test]
fn migrations_are_idempotent() {
    let (_dir, path) = temp_db();
    let first = Sqlite::open(&path);
    let store = OrderStore::new(first);
    assert_eq!(
        post(
            &store,
            &json!({"userId": USER, "items": [{"productId": "x", "quantity": 1}]}).to_string()
        )
        .status(),
        201
    );
    let again = OrderStore::new(Sqlite::open(&path));
    let rows = block_on(again.database().query("SELECT COUNT(*) FROM orders", &[])).unwrap();
    assert_eq!(rows[0][0], SqlValue::Integer(1));
}
