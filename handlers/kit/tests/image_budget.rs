//! The shared image memory budget against a real SQLite file, natively:
//! leases add up to the budget and no further, expire, are given back, and
//! concurrent connections never both take the last room.

#![cfg(feature = "imaging")]

mod support;

use futures::executor::block_on;
use kit::imaging::budget::{LEASE_SECONDS, Refusal, SHARED_MEMORY_BUDGET, SharedBudget};
use support::sqlite::Sqlite;

fn open(path: &std::path::Path) -> SharedBudget<Sqlite> {
    block_on(SharedBudget::open(Sqlite(rusqlite::Connection::open(path).unwrap()))).unwrap()
}

const NOW: i64 = 1_800_000_000_000;

#[test]
fn leases_add_up_to_the_budget_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let budget = open(&dir.path().join("db"));
    let quarter = SHARED_MEMORY_BUDGET / 4;
    let leases: Vec<_> = (0..4)
        .map(|_| block_on(budget.reserve_at(quarter, NOW)).unwrap())
        .collect();
    assert_eq!(block_on(budget.reserve_at(1, NOW)), Err(Refusal::Busy));
    // One given back makes room for one more of the same size, not more.
    let mut leases = leases.into_iter();
    block_on(budget.release_at(leases.next().unwrap(), NOW)).unwrap();
    assert!(block_on(budget.reserve_at(quarter + 1, NOW)).is_err());
    block_on(budget.reserve_at(quarter, NOW)).unwrap();
    assert_eq!(block_on(budget.reserve_at(1, NOW)), Err(Refusal::Busy));
    // A request larger than the whole budget is never admitted.
    let empty = open(&dir.path().join("other"));
    assert_eq!(
        block_on(empty.reserve_at(SHARED_MEMORY_BUDGET + 1, NOW)),
        Err(Refusal::Busy)
    );
}

#[test]
fn a_lease_never_given_back_expires() {
    let dir = tempfile::tempdir().unwrap();
    let budget = open(&dir.path().join("db"));
    // As if the instance holding it trapped mid-resize.
    let _lost = block_on(budget.reserve_at(SHARED_MEMORY_BUDGET, NOW)).unwrap();
    let almost = NOW + LEASE_SECONDS * 1000 - 1;
    assert_eq!(block_on(budget.reserve_at(1, almost)), Err(Refusal::Busy));
    let after = NOW + LEASE_SECONDS * 1000;
    let lease = block_on(budget.reserve_at(SHARED_MEMORY_BUDGET, after)).unwrap();
    // Releasing also clears expired rows, so the table does not grow.
    block_on(budget.release_at(lease, after)).unwrap();
    let rows: i64 = rusqlite::Connection::open(dir.path().join("db"))
        .unwrap()
        .query_row("SELECT COUNT(*) FROM image_leases", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
}

#[test]
fn concurrent_connections_never_both_take_the_last_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _ = open(&path);
    let third = SHARED_MEMORY_BUDGET / 3;
    let granted: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                scope.spawn(move || {
                    let budget = open(&path);
                    usize::from(block_on(budget.reserve_at(third, NOW)).is_ok())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(granted, 3, "eight connections asked for a third each");
}
