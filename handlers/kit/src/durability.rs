//! How durable a commit of Spin's SQLite database is: the
//! `sqlite_synchronous` variable, applied to each connection an instance
//! opens.
//!
//! SQLite's `synchronous` setting belongs to the connection, not the file,
//! so it is set every time a connection is opened. The migrations put the
//! file in WAL mode once; in WAL mode:
//!
//! - `normal` (the default, as Rails 8 and most server-side SQLite setups
//!   choose): a commit is written to the WAL before it returns, and the WAL
//!   is fsynced at checkpoints. A crash of the process (`kill -9`, a trap,
//!   an OOM kill) loses nothing that was acknowledged; a power loss or a
//!   kernel crash may roll back the last commits before the checkpoint,
//!   never corrupt the file.
//! - `full`: every commit is fsynced before it returns, so acknowledged
//!   orders survive a power loss too, at one fsync per insert (on the
//!   bench's 2-core machine: about 40% less `POST /orders` throughput,
//!   and concurrent writers wait in SQLite's busy handler meanwhile).
//!
//! When the file is not in WAL mode (a host that manages the file itself
//! refused the switch), `normal` could corrupt it on power loss, so the
//! connection stays at `full` whatever the variable says.

use crate::sql::{Database, DbError, SqlValue};

/// The `sqlite_synchronous` variable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Survives a process crash; the last commits may be lost on power loss.
    #[default]
    Normal,
    /// Survives a power loss: one fsync per commit.
    Full,
}

impl Durability {
    /// The setting a variable value names (the config schema admits only these).
    pub fn parse(value: &str) -> Option<Durability> {
        match value {
            "normal" => Some(Durability::Normal),
            "full" => Some(Durability::Full),
            _ => None,
        }
    }
}

/// Sets `synchronous` on a freshly opened SQLite connection: `durability`
/// when the file is in WAL mode, `FULL` otherwise. Returns what was set.
pub async fn apply<D: Database>(db: &D, durability: Durability) -> Result<Durability, DbError> {
    let effective = match durability {
        Durability::Full => Durability::Full,
        Durability::Normal => {
            if journal_is_wal(db).await {
                Durability::Normal
            } else {
                Durability::Full
            }
        }
    };
    let statement = match effective {
        Durability::Normal => "PRAGMA synchronous = NORMAL",
        Durability::Full => "PRAGMA synchronous = FULL",
    };
    db.query(statement, &[]).await?;
    Ok(effective)
}

/// Whether the file is in WAL mode. Reading the mode can meet the lock of
/// another instance that is switching it (a fresh database under a burst of
/// first requests): wait and read again, a few times; when it still cannot
/// be read, the answer is "no", and the connection stays at FULL, the safe
/// side, rather than failing the request.
async fn journal_is_wal<D: Database>(db: &D) -> bool {
    let read = crate::migrations::retry_while_locked(db, 12, || db.query("PRAGMA journal_mode", &[])).await;
    read.ok()
        .as_ref()
        .and_then(|rows| rows.first())
        .and_then(|row| row.first())
        .and_then(SqlValue::as_text)
        .is_some_and(|mode| mode.eq_ignore_ascii_case("wal"))
}
