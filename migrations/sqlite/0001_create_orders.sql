-- Orders, with their items as one JSON array: an order and its items are
-- written and read together, so one row keeps the insert atomic without a
-- transaction spanning several host calls.
CREATE TABLE IF NOT EXISTS orders (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    items      TEXT NOT NULL,
    created_at TEXT NOT NULL,
    -- Idempotency-Key of the request that created it, and the SHA-256 of
    -- that request's body, NULL once the key's 24 hours are over.
    idempotency_key TEXT,
    request_hash    TEXT
);
-- One order per (user, key): concurrent retries insert exactly once.
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency ON orders (user_id, idempotency_key);
