//! The memory all instances of the image component on one host may hold.
//!
//! Each resize keeps to its own [`super::MEMORY_BUDGET`], but Spin reuses
//! an instance for many requests in turn, and a WebAssembly memory never
//! shrinks: an instance that once decoded a 16 MP image keeps its 150 MiB
//! for as long as it lives, whatever it serves next. Measured before this
//! module (`spin up`, 8 clients sending 2 KB 4000x4000 PNGs to resize to
//! 4096x4096): 1.2 GB RSS while they ran, back to 330 MB a second after
//! they stopped.
//!
//! So the bound is on what instances *hold*, not only on what requests are
//! doing. Instances share no memory; they meet in the host's SQLite
//! database (Spin's `default`, a local file under `spin up` and SpinKube),
//! where each live instance has a row: the bytes it holds or is about to.
//! Before decoding, an instance claims what it will hold at the job's peak
//! (its memory now, or what it uses now plus the job's estimate, whichever
//! is more); the claim is refused when the other live rows leave less room
//! than that in [`SHARED_MEMORY_BUDGET`], and the caller answers `503` with
//! `Retry-After` instead of decoding. After every request the instance
//! records what it holds then, which renews its row. The check and the
//! write are one statement, which SQLite runs under its write lock, so two
//! instances never both take the last room.
//!
//! Instances that stay under [`UNTRACKED_BYTES`] have no row: the budget
//! bounds what grows, and the number of instances (Spin's, the operator's
//! choice) bounds the rest.
//!
//! An instance cannot say when it dies (Spin drops idle instances after
//! about a second, or after their reuse count): its row then stays counted
//! until it expires, [`ROW_SECONDS`] after its last request. The budget is
//! thus briefly under-used after a burst, never over-used.
//!
//! Where `default` is a network database shared by every host of the app
//! (Fermyon Cloud), the bound is app-wide rather than per host: stricter,
//! never looser.

use crate::migrations::retry_while_locked;
use crate::sql::{Database, DbError, SqlValue};
use std::time::{SystemTime, UNIX_EPOCH};

/// The most bytes the live image instances of a host may hold together:
/// one resize at the per-request maximum with room for small ones beside it,
/// or dozens of ordinary photos at once.
pub const SHARED_MEMORY_BUDGET: u64 = 256 * 1024 * 1024;

/// What an instance may hold without a row: its code's data, a request's
/// body and an ordinary photo's pixels. Most requests stay under it and
/// touch no database; rows are for the instances that grew past it, whose
/// memory stays grown while they live. (A row per instance that stays
/// small would also outlive each of the thousands of short-lived instances
/// a flood of requests makes, and their phantom megabytes would refuse
/// every real job: measured, 2 resizes served of 26,743 requests.)
pub const UNTRACKED_BYTES: u64 = 16 * 1024 * 1024;

/// How long an instance's row counts after its last claim or record:
/// longer than Spin keeps an idle instance (a second by default; an
/// operator who raises `--idle-instance-timeout` past this under-counts)
/// and than a resize under load.
pub const ROW_SECONDS: i64 = 10;

/// How long a refused caller is told to wait (`Retry-After`, seconds).
pub const RETRY_AFTER_SECONDS: u32 = 1;

/// Tries at a statement that finds the database locked by another
/// instance: waits of 1, 2, 4 ... 50 ms, about 0.5 s in all.
const LOCKED_TRIES: u32 = 15;

/// One instance's view of the shared budget, over a SQLite connection.
pub struct SharedBudget<D> {
    db: D,
    instance: String,
}

/// Why a claim was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The other live instances leave less than the claimed bytes.
    Busy,
    /// The database failed.
    Database(DbError),
}

impl<D: Database> SharedBudget<D> {
    /// The budget over `db` for the instance named `instance` (unique per
    /// instance, e.g. a random UUID), its table created on first use.
    pub async fn open(db: D, instance: impl Into<String>) -> Result<Self, DbError> {
        retry_while_locked(&db, LOCKED_TRIES, async || {
            db.execute(
                "CREATE TABLE IF NOT EXISTS image_memory (\
                 instance TEXT PRIMARY KEY, bytes INTEGER NOT NULL, expires_ms INTEGER NOT NULL)",
                &[],
            )
            .await
        })
        .await?;
        Ok(SharedBudget {
            db,
            instance: instance.into(),
        })
    }

    /// Claims room for this instance to hold `bytes` in all; refused when
    /// the other live instances' rows leave less.
    pub async fn claim(&self, bytes: u64) -> Result<(), Refusal> {
        self.claim_at(bytes, now_ms()).await
    }

    /// [`SharedBudget::claim`] at a given time (milliseconds since the
    /// Unix epoch), for tests.
    pub async fn claim_at(&self, bytes: u64, now_ms: i64) -> Result<(), Refusal> {
        let params = [
            SqlValue::Text(self.instance.clone()),
            SqlValue::Integer(saturating(bytes)),
            SqlValue::Integer(now_ms + ROW_SECONDS * 1000),
            SqlValue::Integer(now_ms),
            SqlValue::Integer(saturating(SHARED_MEMORY_BUDGET)),
        ];
        let rows = retry_while_locked(&self.db, LOCKED_TRIES, async || {
            self.db
                .query(
                    "INSERT INTO image_memory (instance, bytes, expires_ms) SELECT ?1, ?2, ?3 \
                     WHERE (SELECT COALESCE(SUM(bytes), 0) FROM image_memory \
                            WHERE expires_ms > ?4 AND instance <> ?1) + ?2 <= ?5 \
                     ON CONFLICT (instance) DO UPDATE SET bytes = excluded.bytes, expires_ms = excluded.expires_ms \
                     RETURNING instance",
                    &params,
                )
                .await
        })
        .await
        .map_err(Refusal::Database)?;
        if rows.is_empty() { Err(Refusal::Busy) } else { Ok(()) }
    }

    /// Records that this instance holds `bytes` now, renewing its row, and
    /// clears the rows of instances that have expired.
    pub async fn record(&self, bytes: u64) -> Result<(), DbError> {
        self.record_at(bytes, now_ms()).await
    }

    /// [`SharedBudget::record`] at a given time, for tests.
    pub async fn record_at(&self, bytes: u64, now_ms: i64) -> Result<(), DbError> {
        let instance = SqlValue::Text(self.instance.clone());
        retry_while_locked(&self.db, LOCKED_TRIES, async || {
            self.db
                .execute(
                    "INSERT INTO image_memory (instance, bytes, expires_ms) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (instance) DO UPDATE SET bytes = excluded.bytes, expires_ms = excluded.expires_ms",
                    &[
                        instance.clone(),
                        SqlValue::Integer(saturating(bytes)),
                        SqlValue::Integer(now_ms + ROW_SECONDS * 1000),
                    ],
                )
                .await?;
            self.db
                .execute(
                    "DELETE FROM image_memory WHERE expires_ms <= ?1",
                    &[SqlValue::Integer(now_ms)],
                )
                .await
        })
        .await
        .map(|_| ())
    }
}

fn saturating(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
