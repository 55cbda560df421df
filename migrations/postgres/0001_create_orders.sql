-- Orders, with their items as one JSON array: an order and its items are
-- written and read together, so one row keeps the insert atomic.
CREATE TABLE IF NOT EXISTS orders (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL,
    items      JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    -- Idempotency-Key of the request that created it, and the SHA-256 of
    -- that request's body, NULL once the key's 24 hours are over.
    idempotency_key TEXT,
    request_hash    TEXT
);
-- One order per (user, key): concurrent retries insert exactly once.
CREATE UNIQUE INDEX IF NOT EXISTS orders_idempotency ON orders (user_id, idempotency_key);
