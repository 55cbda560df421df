//! The database goes away mid-run and comes back: requests get a `503`
//! problem (not a hang, not a 500), `/healthz` names the failing check, and
//! service recovers by itself. It needs tests/postgres.sh, which gives the
//! cluster's pg_ctl, so it is ignored by default and the PostgreSQL passes
//! of `make test` run it alone, after the rest of the suite (`--exact`),
//! since stopping the server would disturb the tests beside it.

use component_tests::*;
use std::process::Command;
use std::time::Duration;

fn pg_ctl(action: &str) {
    let command = std::env::var("TEST_PG_CTL").expect("TEST_PG_CTL");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{command} {action}"))
        .status()
        .unwrap();
    assert!(status.success(), "pg_ctl {action}");
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs tests/postgres.sh: run by the PostgreSQL passes of `make test`"]
async fn outage_gives_503_and_service_recovers() {
    assert!(
        postgres_admin_url().is_some() && std::env::var("TEST_PG_CTL").is_ok(),
        "run under tests/postgres.sh: the outage test stops and starts a PostgreSQL cluster of its own"
    );
    let h = Harness::load(Setup {
        components: &["orders-create", "orders-get", "healthz"],
        variables: &[],
        ..Setup::default()
    })
    .await;
    let before = h
        .post_as_user("/orders", order_body(USER))
        .await
        .assert_json(201, "order-created.response.json");
    h.get("/healthz").await.assert_json(200, "health.response.json");

    pg_ctl("stop -m fast");
    let down = h.post_as_user("/orders", order_body(USER)).await;
    down.assert_problem(503, "/problems/dependency-unavailable");
    let id = before["orderId"].as_str().unwrap();
    h.get_as_user(&format!("/orders/{id}"))
        .await
        .assert_problem(503, "/problems/dependency-unavailable");
    let health = h.get("/healthz").await.assert_json(503, "health.response.json");
    assert_eq!(health["checks"]["database"], "failing");

    pg_ctl("start");
    let mut recovered = None;
    for _ in 0..50 {
        let r = h.post_as_user("/orders", order_body(USER)).await;
        if r.status == 201 {
            recovered = Some(r);
            break;
        }
        r.assert_problem(503, "/problems/dependency-unavailable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    recovered
        .expect("service recovers once the database is back")
        .assert_json(201, "order-created.response.json");
    h.get_as_user(&format!("/orders/{id}"))
        .await
        .assert_json(200, "order.response.json");
    h.get("/healthz").await.assert_json(200, "health.response.json");
}
