//! The shared image memory budget ([`crate::imaging::budget`]) over Spin's
//! `default` SQLite database, whatever database the orders use: the budget
//! bounds this host's memory, so it lives in the host's own file.
//!
//! The connection is opened once per instance, like the order store's, and
//! gets the durability of a NORMAL commit when the file is in WAL mode: a
//! row of the budget is worth nothing after a restart, but the file holds the orders too.

use super::database::{SpinDatabase, sqlite_error};
use crate::durability::Durability;
use crate::imaging::budget::SharedBudget;
use crate::sql::DbError;
use spin_sdk::sqlite;
use std::cell::RefCell;
use std::rc::Rc;

thread_local! {
    /// The instance's budget, over its open connection.
    static KEPT: RefCell<Option<Rc<SharedBudget<SpinDatabase>>>> = const { RefCell::new(None) };
}

/// The budget over the instance's kept connection, opened (and the
/// budget's table created) on first use.
pub async fn image_budget() -> Result<Rc<SharedBudget<SpinDatabase>>, DbError> {
    if let Some(kept) = KEPT.with(|k| k.borrow().clone()) {
        return Ok(kept);
    }
    let connection = SpinDatabase::Sqlite(sqlite::Connection::open_default().await.map_err(sqlite_error)?);
    crate::durability::apply(&connection, Durability::Normal).await?;
    // Names this instance's row: unique per instance, never reused.
    let instance = uuid::Uuid::new_v4().to_string();
    let budget = Rc::new(SharedBudget::open(connection, instance).await?);
    Ok(KEPT.with(|k| k.borrow_mut().get_or_insert(budget).clone()))
}
