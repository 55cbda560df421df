//! Orders: the domain, its store, and the request-to-response logic of the
//! order routes, all plain Rust over any [`Database`].

use crate::pipeline::{Ctx, json};
use crate::problem::{FieldError, Problem, ProblemKind};
use crate::sql::{Database, DbError, Dialect, SqlValue};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Item {
    pub product_id: String,
    pub quantity: u32,
}

/// The body of `POST /orders`, once it passed its schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrder {
    pub user_id: Uuid,
    pub items: Vec<Item>,
}

/// A stored order, as `GET /orders/:id` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub id: Uuid,
    pub user_id: Uuid,
    pub items: Vec<Item>,
    /// UTC, RFC 3339 with milliseconds.
    pub created_at: String,
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// An `Idempotency-Key` and the fingerprint of the body sent with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    /// SHA-256 of the validated body in canonical form.
    pub fingerprint: String,
}

impl Idempotency {
    pub fn new(key: String, order: &NewOrder) -> Self {
        use sha2::Digest;
        let canonical = serde_json::to_vec(order).expect("orders serialise");
        let digest = sha2::Sha256::digest(&canonical);
        let fingerprint = digest.iter().map(|b| format!("{b:02x}")).collect();
        Idempotency { key, fingerprint }
    }
}

/// What a create did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new order was stored.
    New(Order),
    /// The key was used before with the same body: that order's id.
    Replayed(Uuid),
    /// The key was used before with another body.
    KeyReused,
}

/// The orders table over some database.
pub struct OrderStore<D> {
    db: D,
}

impl<D: Database> OrderStore<D> {
    pub fn new(db: D) -> Self {
        OrderStore { db }
    }

    pub fn database(&self) -> &D {
        &self.db
    }

    /// Stores a new order with a fresh id, created `now`.
    ///
    /// PostgreSQL parameters are bound as text and cast in SQL
    /// (`$1::text::uuid`): the `spin:postgres` host binds a string parameter
    /// only to a text-typed placeholder.
    ///
    /// With an idempotency key, the unique index on `(user_id,
    /// idempotency_key)` decides: of concurrent requests with one key exactly
    /// one insert wins, the others read the winner back. A key older than
    /// the window is released first, so it can be used again.
    pub async fn create(
        &self,
        new: NewOrder,
        now: DateTime<Utc>,
        idempotency: Option<&Idempotency>,
    ) -> Result<Created, DbError> {
        let order = Order {
            id: Uuid::new_v4(),
            user_id: new.user_id,
            items: new.items,
            created_at: timestamp(now),
        };
        let items = serde_json::to_string(&order.items).expect("items serialise");
        let user = SqlValue::from(order.user_id.to_string());
        let Some(idempotency) = idempotency else {
            self.insert(&order, &items, SqlValue::Null, SqlValue::Null).await?;
            return Ok(Created::New(order));
        };
        let key = SqlValue::from(idempotency.key.as_str());
        let cutoff = timestamp(now - chrono::Duration::hours(IDEMPOTENCY_WINDOW_HOURS));
        let release = match self.db.dialect() {
            Dialect::Sqlite => {
                "UPDATE orders SET idempotency_key = NULL, request_hash = NULL \
                 WHERE user_id = ? AND idempotency_key = ? AND created_at <= ?"
            }
            Dialect::Postgres => {
                "UPDATE orders SET idempotency_key = NULL, request_hash = NULL \
                 WHERE user_id = $1::text::uuid AND idempotency_key = $2 AND created_at <= $3::text::timestamptz"
            }
        };
        self.db
            .execute(release, &[user.clone(), key.clone(), cutoff.into()])
            .await?;
        let fingerprint = SqlValue::from(idempotency.fingerprint.as_str());
        if self.insert(&order, &items, key.clone(), fingerprint).await? == 1 {
            return Ok(Created::New(order));
        }
        let existing = match self.db.dialect() {
            Dialect::Sqlite => "SELECT id, request_hash FROM orders WHERE user_id = ? AND idempotency_key = ?",
            Dialect::Postgres => {
                "SELECT id::text, request_hash FROM orders WHERE user_id = $1::text::uuid AND idempotency_key = $2"
            }
        };
        let rows = self.db.query(existing, &[user, key]).await?;
        let row = rows
            .first()
            .ok_or_else(|| DbError::Conflict("idempotency key released while in use; retry".into()))?;
        let id = row
            .first()
            .and_then(SqlValue::as_text)
            .and_then(|t| Uuid::parse_str(t).ok())
            .ok_or_else(|| corrupt(0))?;
        if row.get(1).and_then(SqlValue::as_text) == Some(idempotency.fingerprint.as_str()) {
            Ok(Created::Replayed(id))
        } else {
            Ok(Created::KeyReused)
        }
    }

    /// Inserts unless the idempotency key is taken; the number of rows stored.
    async fn insert(&self, order: &Order, items: &str, key: SqlValue, fingerprint: SqlValue) -> Result<u64, DbError> {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => {
                "INSERT INTO orders (id, user_id, items, created_at, idempotency_key, request_hash) \
                 VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            }
            Dialect::Postgres => {
                "INSERT INTO orders (id, user_id, items, created_at, idempotency_key, request_hash) \
                 VALUES ($1::text::uuid, $2::text::uuid, $3::text::jsonb, $4::text::timestamptz, $5, $6) ON CONFLICT DO NOTHING"
            }
        };
        let params = [
            order.id.to_string().into(),
            order.user_id.to_string().into(),
            items.into(),
            order.created_at.clone().into(),
            key,
            fingerprint,
        ];
        self.db.execute(sql, &params).await
    }

    /// The order with this id, if any.
    pub async fn get(&self, id: Uuid) -> Result<Option<Order>, DbError> {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "SELECT id, user_id, items, created_at FROM orders WHERE id = ?",
            Dialect::Postgres => {
                "SELECT id::text, user_id::text, items::text, \
                 to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                 FROM orders WHERE id = $1::text::uuid"
            }
        };
        let rows = self.db.query(sql, &[id.to_string().into()]).await?;
        rows.into_iter().next().map(|row| decode(&row)).transpose()
    }

    /// A cheap statement that also proves the migrations ran.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.db.query("SELECT 1 FROM orders LIMIT 1", &[]).await.map(drop)
    }
}

fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn decode(row: &[SqlValue]) -> Result<Order, DbError> {
    let text = |i: usize| row.get(i).and_then(SqlValue::as_text).ok_or_else(|| corrupt(i));
    let uuid = |i: usize| text(i).and_then(|t| Uuid::parse_str(t).map_err(|_| corrupt(i)));
    Ok(Order {
        id: uuid(0)?,
        user_id: uuid(1)?,
        items: serde_json::from_str(text(2)?).map_err(|_| corrupt(2))?,
        created_at: text(3)?.to_string(),
    })
}

fn corrupt(column: usize) -> DbError {
    DbError::Failed(format!("unexpected value in column {column} of orders"))
}

/// The answer to a store failure: `503` when the database is away, `500`
/// otherwise, with the cause in the log only.
pub fn store_problem(ctx: &Ctx, error: DbError) -> Problem {
    ctx.log.error("store failed", &[("error", json!(error.to_string()))]);
    match error {
        DbError::Unavailable(_) | DbError::Locked(_) => Problem::new(
            ProblemKind::DependencyUnavailable,
            "the database is not answering; retry later",
        ),
        DbError::Conflict(_) | DbError::Failed(_) => Problem::internal(),
    }
}

/// The `Idempotency-Key` request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// The caller's `Idempotency-Key`: 1 to 255 printable ASCII characters.
pub fn idempotency_key(ctx: &Ctx) -> Result<Option<String>, Problem> {
    let Some(value) = ctx.head.headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    if (1..=255).contains(&bytes.len()) && bytes.iter().all(|b| (0x20..=0x7e).contains(b)) {
        Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
    } else {
        Err(
            Problem::new(ProblemKind::InvalidParameter, "the Idempotency-Key header is malformed").with_errors(vec![
                FieldError::at_parameter(
                    "Idempotency-Key",
                    "maxLength",
                    "must be 1 to 255 printable ASCII characters",
                ),
            ]),
        )
    }
}

/// The authenticated caller's user id; routes with `auth` always have one.
fn caller(ctx: &Ctx) -> Result<Uuid, Problem> {
    ctx.caller.map(|c| c.user_id).ok_or_else(Problem::internal)
}

/// `POST /orders`: `201` with `{"orderId"}` and `Location`; the first answer
/// again for a replayed `Idempotency-Key`.
pub async fn create<D: Database>(ctx: &Ctx, store: &OrderStore<D>, new: NewOrder) -> Result<Response<Bytes>, Problem> {
    if new.user_id != caller(ctx)? {
        return Err(
            Problem::new(ProblemKind::Forbidden, "userId must be the token's subject").with_errors(vec![
                FieldError::at_pointer("/userId", "const", "must equal the token's sub"),
            ]),
        );
    }
    let idempotency = idempotency_key(ctx)?.map(|key| Idempotency::new(key, &new));
    let created = store
        .create(new, ctx.now, idempotency.as_ref())
        .await
        .map_err(|e| store_problem(ctx, e))?;
    let (id, replayed) = match created {
        Created::New(order) => (order.id, false),
        Created::Replayed(id) => (id, true),
        Created::KeyReused => {
            return Err(Problem::new(
                ProblemKind::IdempotencyKeyReused,
                "this Idempotency-Key was used with a different body in the last 24 hours",
            ));
        }
    };
    ctx.log.debug(
        "order created",
        &[("orderId", json!(id)), ("replayed", json!(replayed))],
    );
    let mut response = json(StatusCode::CREATED, &json!({ "orderId": id }));
    let location = HeaderValue::from_str(&format!("/orders/{id}")).expect("a UUID path is a valid header");
    response.headers_mut().insert(header::LOCATION, location);
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// The `id` path parameter, or `400 invalid-parameter`.
pub fn order_id(ctx: &Ctx) -> Result<Uuid, Problem> {
    let raw = ctx.param("id").unwrap_or("");
    Uuid::try_parse(raw).map_err(|_| {
        Problem::new(ProblemKind::InvalidParameter, "the order id must be a UUID")
            .with_errors(vec![FieldError::at_parameter("id", "format", "must be a UUID")])
    })
}

/// `GET /orders/:id`: the caller's order; `404` when there is none or it is
/// someone else's (its existence is not revealed).
pub async fn get<D: Database>(ctx: &Ctx, store: &OrderStore<D>) -> Result<Response<Bytes>, Problem> {
    let id = order_id(ctx)?;
    let user = caller(ctx)?;
    match store.get(id).await.map_err(|e| store_problem(ctx, e))? {
        Some(order) if order.user_id == user => Ok(json(StatusCode::OK, &order)),
        _ => Err(Problem::new(ProblemKind::NotFound, format!("there is no order {id}"))),
    }
}

/// `GET /healthz`: `200` when the database answers, `503` naming it otherwise.
pub async fn health<D: Database>(ctx: &Ctx, store: Result<OrderStore<D>, DbError>) -> Response<Bytes> {
    let outcome = match store {
        Ok(store) => store.ping().await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => json(StatusCode::OK, &json!({"status": "ok", "checks": {"database": "ok"}})),
        Err(e) => {
            ctx.log.warn(
                "health check failed",
                &[("check", json!("database")), ("error", json!(e.to_string()))],
            );
            json(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"status": "unavailable", "checks": {"database": "failing"}}),
            )
        }
    }
}
