-- Orders, with their items as one JSON array: an order and its items are
-- written and read together, so one row keeps the insert atomic.
CREATE TABLE IF NOT EXISTS orders (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL,
    items      JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
