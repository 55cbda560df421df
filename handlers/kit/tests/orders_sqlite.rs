//! The order routes' request-to-response logic against a real SQLite file,
//! natively: the same pipeline and store the components run, with rusqlite
//! standing in for Spin's SQLite interface.

use bytes::Bytes;
use chrono::{DateTime, TimeZone, Utc};
use futures::executor::block_on;
use http::{Request, Response};
use kit::config::Config;
use kit::contract::{CREATE_ORDER, GET_ORDER, HEALTH};
use kit::orders::{self, NewOrder, OrderStore};
use kit::pipeline::{Ctx, Incoming, serve_empty, serve_json};
use kit::sql::{Database, Dialect, SqlValue};
use serde_json::{Value, json};
use std::path::PathBuf;

mod support;

use support::sqlite::Sqlite;

/// Whether `value` is valid against a response schema (compiled here: the
/// components validate requests only, with generated validators).
fn valid(schema: &str, value: &Value) -> bool {
    let schema: Value = serde_json::from_str(schema).unwrap();
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
        .is_valid(value)
}

/// Opens the file and migrates it, as a component does on first use.
fn open_migrated(path: &std::path::Path) -> Sqlite {
    let db = Sqlite(rusqlite::Connection::open(path).unwrap());
    block_on(kit::migrations::migrate(&db, "2026-01-01T00:00:00.000Z")).unwrap();
    db
}

fn temp_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sqlite_db.db");
    (dir, path)
}

const SECRET: &str = "a-test-secret-of-at-least-32-bytes!!";

fn config() -> Config {
    let values = [("jwt_secret".to_string(), SECRET.to_string())].into();
    Config::from_values(&values).unwrap()
}

fn noon() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
}

/// A bearer token for `user`, valid around [`noon`] and long after.
fn bearer(user: &str) -> String {
    let claims = json!({"sub": user, "exp": noon().timestamp() + 7 * 24 * 3600});
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes());
    format!(
        "Bearer {}",
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
    )
}

fn post(store: &OrderStore<Sqlite>, body: &str) -> Response<Bytes> {
    post_as(store, USER, None, body, noon())
}

fn post_as(
    store: &OrderStore<Sqlite>,
    user: &str,
    key: Option<&str>,
    body: &str,
    now: DateTime<Utc>,
) -> Response<Bytes> {
    let mut head = Request::post("/orders")
        .header("content-type", "application/json")
        .header("authorization", bearer(user));
    if let Some(key) = key {
        head = head.header("idempotency-key", key);
    }
    let head = head.body(()).unwrap().into_parts().0;
    block_on(serve_json(
        &CREATE_ORDER,
        Incoming::new(head, Bytes::from(body.to_string()), Ok(config())).at(now),
        async |ctx: &Ctx, order: NewOrder| orders::create(ctx, store, order).await,
    ))
}

fn get(store: &OrderStore<Sqlite>, id: &str) -> Response<Bytes> {
    get_as(store, USER, id)
}

fn get_as(store: &OrderStore<Sqlite>, user: &str, id: &str) -> Response<Bytes> {
    let head = Request::get(format!("/orders/{id}"))
        .header("spin-path-match-id", id)
        .header("authorization", bearer(user))
        .body(())
        .unwrap()
        .into_parts()
        .0;
    block_on(serve_empty(
        &GET_ORDER,
        Incoming::new(head, Bytes::new(), Ok(config())).at(noon()),
        async |ctx: &Ctx| {
            let id = orders::order_id(ctx)?;
            orders::get(ctx, store, id).await
        },
    ))
}

fn count(store: &OrderStore<Sqlite>) -> SqlValue {
    block_on(store.database().query("SELECT COUNT(*) FROM orders", &[])).unwrap()[0][0].clone()
}

fn body(response: &Response<Bytes>) -> Value {
    serde_json::from_slice(response.body()).unwrap()
}

const USER: &str = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e";

#[test]
fn created_orders_read_back_and_match_their_schemas() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(open_migrated(&path));
    let created = post(
        &store,
        &json!({"userId": USER, "items": [{"productId": "sku-1", "quantity": 3}]}).to_string(),
    );
    assert_eq!(created.status(), 201);
    let id = body(&created)["orderId"].as_str().unwrap().to_string();
    assert_eq!(created.headers()["location"], format!("/orders/{id}"));
    assert!(valid(kit::schemas::ORDER_CREATED_RESPONSE, &body(&created)));

    let read = get(&store, &id);
    assert_eq!(read.status(), 200);
    let order = body(&read);
    assert_eq!(
        order,
        json!({"id": id, "userId": USER, "items": [{"productId": "sku-1", "quantity": 3}], "createdAt": "2026-11-24T12:00:00.000Z"})
    );
    assert!(valid(kit::schemas::ORDER_RESPONSE, &order));

    // The file holds the order: a second connection sees it.
    let again = OrderStore::new(open_migrated(&path));
    assert_eq!(get(&again, &id).status(), 200);
}

#[test]
fn unknown_and_malformed_ids() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(open_migrated(&path));
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
    let store = OrderStore::new(open_migrated(&path));
    let r = post(
        &store,
        &json!({"userId": USER, "items": [{"productId": "x", "quantity": 0}]}).to_string(),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(count(&store), SqlValue::Integer(0));
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
    let health = block_on(serve_empty(
        &HEALTH,
        Incoming::new(head, Bytes::new(), Ok(Config::default())),
        async |ctx: &Ctx| {
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
fn concurrent_starters_migrate_once_and_record_the_version() {
    let (_dir, path) = temp_db();
    let starters: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || {
                let db = Sqlite(rusqlite::Connection::open(&path).unwrap());
                block_on(kit::migrations::migrate(&db, "2026-01-01T00:00:00.000Z")).unwrap()
            })
        })
        .collect();
    let applied: usize = starters.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(
        applied,
        kit::migrations::SQLITE.len(),
        "each migration applied exactly once"
    );
    let db = Sqlite(rusqlite::Connection::open(&path).unwrap());
    let latest = kit::migrations::latest(Dialect::Sqlite);
    assert_eq!(block_on(kit::migrations::recorded_version(&db)).unwrap(), latest);
    let rows = block_on(db.query("SELECT version, name FROM schema_migrations ORDER BY version", &[])).unwrap();
    assert_eq!(rows.len(), kit::migrations::SQLITE.len());
    assert_eq!(rows[0][1], SqlValue::from("0001_create_orders"));
    let mode = block_on(db.query("PRAGMA journal_mode", &[])).unwrap();
    assert_eq!(mode[0][0], SqlValue::from("wal"));
    // Once current, migrating again applies nothing.
    assert_eq!(block_on(kit::migrations::migrate(&db, "later")).unwrap(), 0);
}

#[test]
fn migrations_are_idempotent() {
    let (_dir, path) = temp_db();
    let first = open_migrated(&path);
    let store = OrderStore::new(first);
    assert_eq!(
        post(
            &store,
            &json!({"userId": USER, "items": [{"productId": "x", "quantity": 1}]}).to_string()
        )
        .status(),
        201
    );
    let again = OrderStore::new(open_migrated(&path));
    let rows = block_on(again.database().query("SELECT COUNT(*) FROM orders", &[])).unwrap();
    assert_eq!(rows[0][0], SqlValue::Integer(1));
}

const OTHER: &str = "9a3c1e5e-1111-4222-8333-444455556666";

#[test]
fn orders_belong_to_the_token_subject() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(open_migrated(&path));
    let forbidden = post_as(&store, OTHER, None, &kit_body(USER), noon());
    assert_eq!(forbidden.status(), 403);
    assert_eq!(body(&forbidden)["type"], "/problems/forbidden");
    assert_eq!(count(&store), SqlValue::Integer(0));

    let id = body(&post(&store, &kit_body(USER)))["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    let hidden = get_as(&store, OTHER, &id);
    assert_eq!(hidden.status(), 404, "someone else's order reads as missing");
    assert_eq!(
        body(&hidden)["detail"],
        body(&get_as(&store, OTHER, OTHER))["detail"]
            .as_str()
            .unwrap()
            .replace(OTHER, &id)
    );
}

fn kit_body(user: &str) -> String {
    json!({"userId": user, "items": [{"productId": "sku-1", "quantity": 1}]}).to_string()
}

#[test]
fn idempotency_key_replays_within_24_hours_and_is_released_after() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(open_migrated(&path));
    let first = post_as(&store, USER, Some("key-1"), &kit_body(USER), noon());
    assert_eq!(first.status(), 201);
    let id = body(&first)["orderId"].clone();

    // Same key, same body (formatted differently), 23h59 later: the first answer.
    let spaced = format!("  {}  ", kit_body(USER));
    let again = post_as(
        &store,
        USER,
        Some("key-1"),
        &spaced,
        noon() + chrono::Duration::minutes(24 * 60 - 1),
    );
    assert_eq!(again.status(), 201);
    assert_eq!(body(&again)["orderId"], id);
    assert_eq!(again.headers()["location"], first.headers()["location"]);
    assert_eq!(count(&store), SqlValue::Integer(1));

    // Same key, other body: 422, nothing stored.
    let other = json!({"userId": USER, "items": [{"productId": "sku-2", "quantity": 1}]}).to_string();
    let reused = post_as(&store, USER, Some("key-1"), &other, noon() + chrono::Duration::hours(1));
    assert_eq!(reused.status(), 422);
    assert_eq!(body(&reused)["type"], "/problems/idempotency-key-reused");

    // Another user's identical key is theirs.
    let theirs = post_as(&store, OTHER, Some("key-1"), &kit_body(OTHER), noon());
    assert_eq!(theirs.status(), 201);
    assert_ne!(body(&theirs)["orderId"], id);

    // After 24 hours the key is free again: a new order.
    let later = post_as(
        &store,
        USER,
        Some("key-1"),
        &kit_body(USER),
        noon() + chrono::Duration::hours(24),
    );
    assert_eq!(later.status(), 201);
    assert_ne!(body(&later)["orderId"], id);
    assert_eq!(count(&store), SqlValue::Integer(3));
}

#[test]
fn malformed_idempotency_keys_are_400() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(open_migrated(&path));
    let long = "k".repeat(256);
    for key in ["", long.as_str()] {
        let r = post_as(&store, USER, Some(key), &kit_body(USER), noon());
        assert_eq!(r.status(), 400, "{key:?}");
        assert_eq!(body(&r)["errors"][0]["parameter"], "Idempotency-Key");
    }
    assert_eq!(
        post_as(&store, USER, Some(&"k".repeat(255)), &kit_body(USER), noon()).status(),
        201
    );
}

#[test]
fn missing_token_is_401_before_the_body_is_read() {
    let (_dir, path) = temp_db();
    let store = OrderStore::new(open_migrated(&path));
    let head = Request::post("/orders")
        .header("content-type", "text/plain")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let r = block_on(serve_json(
        &CREATE_ORDER,
        Incoming::new(head, Bytes::from_static(b"x"), Ok(config())),
        async |ctx: &Ctx, order: NewOrder| orders::create(ctx, &store, order).await,
    ));
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"orders-api\"");
}

/// `PRAGMA synchronous` as the connection has it: 1 is NORMAL, 2 is FULL.
fn synchronous(db: &Sqlite) -> i64 {
    db.0.query_row("PRAGMA synchronous", [], |r| r.get(0)).unwrap()
}

#[test]
fn durability_is_set_per_connection_and_normal_only_in_wal_mode() {
    use kit::durability::{Durability, apply};
    let (_dir, path) = temp_db();
    // Migrated: the file is in WAL mode.
    let db = open_migrated(&path);
    assert_eq!(block_on(apply(&db, Durability::Normal)).unwrap(), Durability::Normal);
    assert_eq!(synchronous(&db), 1);
    assert_eq!(block_on(apply(&db, Durability::Full)).unwrap(), Durability::Full);
    assert_eq!(synchronous(&db), 2);
    // Another connection starts at SQLite's default again (FULL): the
    // setting is the connection's, so every open applies it.
    let other = Sqlite(rusqlite::Connection::open(&path).unwrap());
    assert_eq!(synchronous(&other), 2);
    // A file a host keeps out of WAL mode stays at FULL: NORMAL outside WAL
    // can corrupt the file on power loss.
    let (_dir2, path2) = temp_db();
    let rollback = Sqlite(rusqlite::Connection::open(&path2).unwrap());
    rollback
        .0
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get::<_, String>(0))
        .unwrap();
    assert_eq!(
        block_on(apply(&rollback, Durability::Normal)).unwrap(),
        Durability::Full
    );
    assert_eq!(synchronous(&rollback), 2);
    // Orders written under NORMAL are there for the next connection.
    let store = OrderStore::new(db);
    let order = json!({"userId": USER, "items": [{"productId": "sku-1", "quantity": 1}]});
    assert_eq!(post(&store, &order.to_string()).status(), 201);
    let again = OrderStore::new(open_migrated(&path));
    assert_eq!(count(&again), SqlValue::Integer(1));
}

/// Keeps every span it is given: an exporter as the host's `wasi:otel` is.
#[derive(Default)]
struct Spans {
    ended: std::sync::Mutex<Vec<kit::span::FinishedSpan>>,
}

impl kit::span::SpanExporter for Spans {
    fn host_span(&self) -> Option<kit::span::HostSpan> {
        None
    }
    fn start(&self, _: &kit::span::SpanIds) {}
    fn end(&self, span: kit::span::FinishedSpan) {
        self.ended.lock().unwrap().push(span);
    }
}

#[test]
fn a_traced_create_has_one_span_per_step_and_statement_and_no_values() {
    use kit::span::{SpanKind, Value as Attr};
    let (_dir, path) = temp_db();
    let spans: &'static Spans = Box::leak(Box::default());
    let marker = "sku-traced-7f3a";
    let body = json!({"userId": USER, "items": [{"productId": marker, "quantity": 2}]}).to_string();
    let head = Request::post("/orders")
        .header("content-type", "application/json")
        .header("authorization", bearer(USER))
        .header("idempotency-key", "key-traced")
        .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let incoming = Incoming::new(head, Bytes::from(body), Ok(config()))
        .at(noon())
        .traced_by(spans);
    let db = open_migrated(&path);
    let response = block_on(serve_json(
        &CREATE_ORDER,
        incoming,
        async move |ctx: &Ctx, order: NewOrder| {
            let store = OrderStore::new(kit::sql::Traced::new(db, ctx.log.clone()));
            orders::create(ctx, &store, order).await
        },
    ));
    assert_eq!(response.status(), 201);
    let ended = spans.ended.lock().unwrap();
    let names: Vec<&str> = ended.iter().map(|s| s.name.as_ref()).collect();
    // The idempotency key first releases an expired holder, then inserts.
    assert_eq!(
        names,
        [
            "authenticate",
            "validate request body",
            "UPDATE orders",
            "INSERT orders",
            "orders-create"
        ]
    );
    let root = ended.last().unwrap();
    assert_eq!(root.parent_span_id, "00f067aa0ba902b7");
    let insert = &ended[3];
    assert_eq!(insert.kind, SpanKind::Client);
    assert_eq!(insert.parent_span_id, root.ids.span_id);
    for (key, value) in [
        ("db.system.name", "sqlite"),
        ("db.system", "sqlite"),
        ("db.operation.name", "INSERT"),
        ("db.collection.name", "orders"),
    ] {
        assert!(
            insert.attributes.contains(&(key, Attr::from(value))),
            "{key}: {:?}",
            insert.attributes
        );
    }
    // Statements bind their values: none is on any span.
    for span in ended.iter() {
        let text = format!("{:?} {:?}", span.attributes, span.error);
        for value in [marker, USER, "key-traced", SECRET] {
            assert!(!text.contains(value), "{} carries {value}: {text}", span.name);
        }
    }
}
