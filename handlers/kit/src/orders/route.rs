//! The order routes from admitted request to answer: `POST /orders`,
//! `GET /orders/:id` and `GET /healthz`, over any [`Database`].

use super::{Created, Idempotency, NewOrder, OrderStore};
use crate::pipeline::{Ctx, json};
use crate::problem::{FieldError, Problem, ProblemKind};
use crate::sql::{Database, DbError};
use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;
use uuid::Uuid;

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
    let created = store.create(new, ctx.now, idempotency.as_ref()).await?;
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

/// `GET /orders/:id`: the caller's order `id` (from [`order_id`]); `404`
/// when there is none or it is someone else's (its existence is not
/// revealed).
pub async fn get<D: Database>(ctx: &Ctx, store: &OrderStore<D>, id: Uuid) -> Result<Response<Bytes>, Problem> {
    let user = caller(ctx)?;
    match store.get(id).await? {
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
