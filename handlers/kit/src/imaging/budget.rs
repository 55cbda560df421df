//! The memory all concurrent resizes of one host may hold at once.
//!
//! Each resize keeps to its own [`super::MEMORY_BUDGET`], but Spin gives each
//! concurrent request its own instance, so without a shared bound the total
//! grows with the number of clients: 48 concurrent 4000x4000 progressive
//! JPEGs took `spin up` from 660 MB to 1.45 GB. Instances share no memory,
//! so the bound lives where they meet: the host's SQLite database (Spin's
//! `default`, a local file under `spin up` and SpinKube). A resize holds a
//! lease of its [`super::Job::peak_bytes`] while it runs; a lease that would
//! take the sum of live leases past [`SHARED_MEMORY_BUDGET`] is refused, and
//! the caller answers `503` with `Retry-After` instead of decoding.
//!
//! A lease ends when the resize does, or [`LEASE_SECONDS`] after it began,
//! whichever comes first: an instance that traps mid-resize (out of memory,
//! killed) cannot hold the budget for longer than that. The check and the
//! insert are one statement, which SQLite runs under its write lock, so two
//! instances never both take the last room.
//!
//! Where `default` is a network database shared by every host of the app
//! (Fermyon Cloud), the bound is app-wide rather than per host: stricter,
//! never looser.

use crate::migrations::retry_while_locked;
use crate::sql::{Database, DbError, SqlValue};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most bytes the live leases of a host may add up to: room for two
/// resizes at the per-request maximum and more besides, or dozens of
/// ordinary photos at once.
pub const SHARED_MEMORY_BUDGET: u64 = 512 * 1024 * 1024;

/// The longest a lease outlives the resize that took it (or that died).
pub const LEASE_SECONDS: i64 = 30;

/// How long a refused caller is told to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Tries at a statement that finds the database locked by another
/// instance: waits of 1, 2, 4 ... 50 ms, about 0.5 s in all.
const LOCKED_TRIES: u32 = 15;

/// The leases, over a SQLite connection.
pub struct SharedBudget<D> {
    db: D,
}

/// A taken share of the budget, given back by [`SharedBudget::release`].
#[derive(Debug, PartialEq, Eq)]
pub struct Lease {
    id: i64,
}

/// Why a lease was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The live leases leave less than the asked-for bytes.
    Busy,
    /// The database failed.
    Database(DbError),
}

impl<D: Database> SharedBudget<D> {
    /// The budget over `db`, its table created if this is the first use.
    pub async fn open(db: D) -> Result<Self, DbError> {
        retry_while_locked(&db, LOCKED_TRIES, async || {
            db.execute(
                "CREATE TABLE IF NOT EXISTS image_leases (\
                 id INTEGER PRIMARY KEY, bytes INTEGER NOT NULL, expires_ms INTEGER NOT NULL)",
                &[],
            )
            .await
        })
        .await?;
        Ok(SharedBudget { db })
    }

    /// Takes a lease of `bytes` if the live leases leave room for it.
    pub async fn reserve(&self, bytes: u64) -> Result<Lease, Refusal> {
        self.reserve_at(bytes, now_ms()).await
    }

    /// [`SharedBudget::reserve`] at a given time (milliseconds since the
    /// Unix epoch), for tests.
    pub async fn reserve_at(&self, bytes: u64, now_ms: i64) -> Result<Lease, Refusal> {
        let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
        let budget = i64::try_from(SHARED_MEMORY_BUDGET).unwrap_or(i64::MAX);
        let params = [
            SqlValue::Integer(bytes),
            SqlValue::Integer(now_ms + LEASE_SECONDS * 1000),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(budget),
        ];
        let rows = retry_while_locked(&self.db, LOCKED_TRIES, async || {
            self.db
                .query(
                    "INSERT INTO image_leases (bytes, expires_ms) SELECT ?1, ?2 \
                     WHERE (SELECT COALESCE(SUM(bytes), 0) FROM image_leases WHERE expires_ms > ?3) + ?1 <= ?4 \
                     RETURNING id",
                    &params,
                )
                .await
        })
        .await
        .map_err(Refusal::Database)?;
        match rows.first().and_then(|row| row.first()).and_then(SqlValue::as_integer) {
            Some(id) => Ok(Lease { id }),
            None => Err(Refusal::Busy),
        }
    }

    /// Gives `lease` back, and clears leases that have expired.
    pub async fn release(&self, lease: Lease) -> Result<(), DbError> {
        self.release_at(lease, now_ms()).await
    }

    /// [`SharedBudget::release`] at a given time, for tests.
    pub async fn release_at(&self, lease: Lease, now_ms: i64) -> Result<(), DbError> {
        retry_while_locked(&self.db, LOCKED_TRIES, async || {
            self.db
                .execute(
                    "DELETE FROM image_leases WHERE id = ?1 OR expires_ms <= ?2",
                    &[SqlValue::Integer(lease.id), SqlValue::Integer(now_ms)],
                )
                .await
        })
        .await
        .map(|_| ())
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
