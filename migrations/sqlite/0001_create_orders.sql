-- Orders, with their items as one JSON array: an order and its items are
-- written and read together, so one row keeps the insert atomic without a
-- transaction spanning several host calls.
CREATE TABLE IF NOT EXISTS orders (
    id         TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    items      TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_user_id ON orders (user_id);
