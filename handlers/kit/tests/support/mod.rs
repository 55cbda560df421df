//! What the native integration tests share.

use kit::sql::{Database, DbError, Dialect, SqlValue};

pub(crate) mod sqlite;
