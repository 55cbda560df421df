//! The shared image memory budget against a real SQLite file, natively:
//! instances' rows add up to the budget and no further, an instance's own
//! row never counts against it, rows expire, and concurrent instances never
//! both take the last room.

#![cfg(feature = "imaging")]

mod support;

use futures::executor::block_on;
use kit::imaging::budget::{ROW_SECONDS, Refusal, SHARED_MEMORY_BUDGET, SharedBudget};
use support::sqlite::Sqlite;

fn open(path: &std::path::Path, instance: &str) -> SharedBudget<Sqlite> {
    block_on(SharedBudget::open(
        Sqlite(rusqlite::Connection::open(path).unwrap()),
        instance,
    ))
    .unwrap()
}

const NOW: i64 = 1_800_000_000_000;
const QUARTER: u64 = SHARED_MEMORY_BUDGET / 4;

#[test]
fn instances_add_up_to_the_budget_and_no_further() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let instances: Vec<_> = (0..5).map(|i| open(&path, &format!("i{i}"))).collect();
    for instance in &instances[..4] {
        block_on(instance.claim_at(QUARTER, NOW)).unwrap();
    }
    assert_eq!(block_on(instances[4].claim_at(1, NOW)), Err(Refusal::Busy));
    // An instance's own row is not counted against it: it may claim more
    // for itself up to what the others leave.
    block_on(instances[0].claim_at(QUARTER, NOW)).unwrap();
    assert!(block_on(instances[0].claim_at(QUARTER + 1, NOW)).is_err());
    // One that now holds less makes room for another.
    block_on(instances[1].record_at(0, NOW)).unwrap();
    assert!(block_on(instances[4].claim_at(QUARTER + 1, NOW)).is_err());
    block_on(instances[4].claim_at(QUARTER, NOW)).unwrap();
    // More than the whole budget is never granted.
    let alone = open(&dir.path().join("other"), "alone");
    assert_eq!(
        block_on(alone.claim_at(SHARED_MEMORY_BUDGET + 1, NOW)),
        Err(Refusal::Busy)
    );
}

#[test]
fn the_row_of_an_instance_that_went_away_expires() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    // As if this instance grew to the whole budget and was then dropped.
    block_on(open(&path, "gone").record_at(SHARED_MEMORY_BUDGET, NOW)).unwrap();
    let next = open(&path, "next");
    let almost = NOW + ROW_SECONDS * 1000 - 1;
    assert_eq!(block_on(next.claim_at(1, almost)), Err(Refusal::Busy));
    let after = NOW + ROW_SECONDS * 1000;
    block_on(next.claim_at(SHARED_MEMORY_BUDGET, after)).unwrap();
    // Recording also clears expired rows, so the table holds live ones only.
    block_on(next.record_at(1, after)).unwrap();
    let rows: Vec<String> = rusqlite::Connection::open(&path)
        .unwrap()
        .prepare("SELECT instance FROM image_memory")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows, ["next"]);
}

#[test]
fn concurrent_instances_never_both_take_the_last_room() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let _ = open(&path, "creator");
    let third = SHARED_MEMORY_BUDGET / 3;
    let granted: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let path = path.clone();
                scope.spawn(move || {
                    let budget = open(&path, &format!("i{i}"));
                    usize::from(block_on(budget.claim_at(third, NOW)).is_ok())
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(granted, 3, "eight instances asked for a third each");
}
