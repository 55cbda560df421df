//! Orders: the model (this module), its store over any SQL database
//! ([`store`]), and the logic of the order routes from admitted request to
//! answer ([`route`]), all plain Rust, tested natively.

pub mod route;
pub mod store;

pub use route::{create, get, health, order_id};
pub use store::OrderStore;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One line of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Item {
    /// The caller's product reference (1 to 64 characters), stored as sent.
    pub product_id: String,
    /// How many of the product (1 to 10000).
    pub quantity: u32,
}

/// The body of `POST /orders`, once it passed its schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewOrder {
    /// Whom the order is for; it must be the token's subject.
    pub user_id: Uuid,
    /// The lines of the order (1 to 100).
    pub items: Vec<Item>,
}

/// A stored order, as `GET /orders/:id` answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    /// Chosen by the store on create; the `:id` of `GET /orders/:id`.
    pub id: Uuid,
    /// The owner: only this user may read the order.
    pub user_id: Uuid,
    /// The lines of the order, as created.
    pub items: Vec<Item>,
    /// UTC, RFC 3339 with milliseconds.
    pub created_at: String,
}

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// An `Idempotency-Key` and the fingerprint of the body sent with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's key, unique per user within the window.
    pub key: String,
    /// SHA-256 of the validated body in canonical form.
    pub fingerprint: String,
}

impl Idempotency {
    /// The key and the fingerprint of `order`.
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
