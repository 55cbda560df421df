//! The orders table: each statement written once per dialect, in
//! [`SQLITE`] and [`POSTGRES`], and the store that runs them.

use super::{Created, IDEMPOTENCY_WINDOW_HOURS, Idempotency, NewOrder, Order};
use crate::sql::{Database, DbError, Dialect, SqlValue};
use crate::time::timestamp;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Every statement of the store in one dialect.
struct Statements {
    /// Frees an idempotency key older than the window: user, key, cutoff.
    release: &'static str,
    /// Stores an order unless its key is taken: id, user, items, created,
    /// key, fingerprint.
    insert: &'static str,
    /// The order holding a key, and its body's fingerprint: user, key.
    holder: &'static str,
    /// One order by id, its time as the API writes it: id.
    get: &'static str,
    /// A cheap statement that also proves the migrations ran.
    ping: &'static str,
}

/// SQLite: values bound as they are; times are stored as the API's text.
const SQLITE: Statements = Statements {
    release: "UPDATE orders SET idempotency_key = NULL, request_hash = NULL \
              WHERE user_id = ? AND idempotency_key = ? AND created_at <= ?",
    insert: "INSERT INTO orders (id, user_id, items, created_at, idempotency_key, request_hash) \
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
    holder: "SELECT id, request_hash FROM orders WHERE user_id = ? AND idempotency_key = ?",
    get: "SELECT id, user_id, items, created_at FROM orders WHERE id = ?",
    ping: "SELECT 1 FROM orders LIMIT 1",
};

/// PostgreSQL: parameters are bound as text and cast in SQL
/// (`$1::text::uuid`), since the `spin:postgres` host binds a string only to
/// a text-typed placeholder; columns come back as text.
const POSTGRES: Statements = Statements {
    release: "UPDATE orders SET idempotency_key = NULL, request_hash = NULL \
              WHERE user_id = $1::text::uuid AND idempotency_key = $2 AND created_at <= $3::text::timestamptz",
    insert: "INSERT INTO orders (id, user_id, items, created_at, idempotency_key, request_hash) \
             VALUES ($1::text::uuid, $2::text::uuid, $3::text::jsonb, $4::text::timestamptz, $5, $6) \
             ON CONFLICT DO NOTHING",
    holder: "SELECT id::text, request_hash FROM orders WHERE user_id = $1::text::uuid AND idempotency_key = $2",
    get: "SELECT id::text, user_id::text, items::text, \
          to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
          FROM orders WHERE id = $1::text::uuid",
    ping: "SELECT 1 FROM orders LIMIT 1",
};

fn statements(dialect: Dialect) -> &'static Statements {
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// The orders table over some database.
pub struct OrderStore<D> {
    db: D,
}

impl<D: Database> OrderStore<D> {
    /// The store over `db`, whose migrations have run.
    pub fn new(db: D) -> Self {
        OrderStore { db }
    }

    /// The connection underneath.
    pub fn database(&self) -> &D {
        &self.db
    }

    fn sql(&self) -> &'static Statements {
        statements(self.db.dialect())
    }

    /// Stores a new order with a fresh id, created `now`.
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
        self.db
            .execute(self.sql().release, &[user.clone(), key.clone(), cutoff.into()])
            .await?;
        let fingerprint = SqlValue::from(idempotency.fingerprint.as_str());
        if self.insert(&order, &items, key.clone(), fingerprint).await? == 1 {
            return Ok(Created::New(order));
        }
        let rows = self.db.query(self.sql().holder, &[user, key]).await?;
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
        let params = [
            order.id.to_string().into(),
            order.user_id.to_string().into(),
            items.into(),
            order.created_at.clone().into(),
            key,
            fingerprint,
        ];
        self.db.execute(self.sql().insert, &params).await
    }

    /// The order with this id, if any.
    pub async fn get(&self, id: Uuid) -> Result<Option<Order>, DbError> {
        let rows = self.db.query(self.sql().get, &[id.to_string().into()]).await?;
        rows.into_iter().next().map(|row| decode(&row)).transpose()
    }

    /// A cheap statement that also proves the migrations ran.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.db.query(self.sql().ping, &[]).await.map(drop)
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
