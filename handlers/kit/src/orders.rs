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
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
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
    pub async fn create(&self, new: NewOrder, now: DateTime<Utc>) -> Result<Order, DbError> {
        let order = Order {
            id: Uuid::new_v4(),
            user_id: new.user_id,
            items: new.items,
            created_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        };
        let items = serde_json::to_string(&order.items).expect("items serialise");
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "INSERT INTO orders (id, user_id, items, created_at) VALUES (?, ?, ?, ?)",
            Dialect::Postgres => {
                "INSERT INTO orders (id, user_id, items, created_at) VALUES ($1::uuid, $2::uuid, $3::jsonb, $4::timestamptz)"
            }
        };
        let params = [
            order.id.to_string().into(),
            order.user_id.to_string().into(),
            items.into(),
            order.created_at.clone().into(),
        ];
        self.db.execute(sql, &params).await?;
        Ok(order)
    }

    /// The order with this id, if any.
    pub async fn get(&self, id: Uuid) -> Result<Option<Order>, DbError> {
        let sql = match self.db.dialect() {
            Dialect::Sqlite => "SELECT id, user_id, items, created_at FROM orders WHERE id = ?",
            Dialect::Postgres => {
                "SELECT id::text, user_id::text, items::text, \
                 to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
                 FROM orders WHERE id = $1::uuid"
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
        DbError::Unavailable(_) => Problem::new(
            ProblemKind::DependencyUnavailable,
            "the database is not answering; retry later",
        ),
        DbError::Conflict(_) | DbError::Failed(_) => Problem::internal(),
    }
}

/// `POST /orders`: `201` with `{"orderId"}` and `Location`.
pub async fn create<D: Database>(
    ctx: &Ctx,
    store: &OrderStore<D>,
    new: NewOrder,
    now: DateTime<Utc>,
) -> Result<Response<Bytes>, Problem> {
    let order = store.create(new, now).await.map_err(|e| store_problem(ctx, e))?;
    ctx.log.debug("order created", &[("orderId", json!(order.id))]);
    let mut response = json(StatusCode::CREATED, &json!({ "orderId": order.id }));
    let location = HeaderValue::from_str(&format!("/orders/{}", order.id)).expect("a UUID path is a valid header");
    response.headers_mut().insert(header::LOCATION, location);
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

/// `GET /orders/:id`: the order, `404` when there is none.
pub async fn get<D: Database>(ctx: &Ctx, store: &OrderStore<D>) -> Result<Response<Bytes>, Problem> {
    let id = order_id(ctx)?;
    match store.get(id).await.map_err(|e| store_problem(ctx, e))? {
        Some(order) => Ok(json(StatusCode::OK, &order)),
        None => Err(Problem::new(ProblemKind::NotFound, format!("there is no order {id}"))),
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
