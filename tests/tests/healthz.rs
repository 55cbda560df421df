//! `GET /healthz` through its real component.

use component_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn ok_when_the_database_answers() {
    let h = Harness::route("healthz").await;
    let body = h.get("/healthz").await.assert_json(200, "health.response.json");
    assert_eq!(body, serde_json::json!({"status": "ok", "checks": {"database": "ok"}}));
}

#[tokio::test(flavor = "multi_thread")]
async fn names_the_failing_check_when_the_schema_is_missing() {
    let h = Harness::load(Setup {
        components: &["healthz"],
        variables: &[],
        migrate: false,
        omit: &[],
    })
    .await;
    let body = h.get("/healthz").await.assert_json(503, "health.response.json");
    assert_eq!(body["checks"]["database"], "failing");
}

#[tokio::test(flavor = "multi_thread")]
async fn only_get_and_head() {
    let h = Harness::route("healthz").await;
    let r = h.post_json("/healthz", "{}").await;
    r.assert_problem(405, "/problems/method-not-allowed");
    assert_eq!(r.header("allow"), "GET, HEAD");
}
