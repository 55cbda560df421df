//! `GET /healthz` through its real component.

use component_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn ok_when_the_database_answers() {
    let h = Harness::route("healthz").await;
    let body = h.get("/healthz").await.assert_json(200, "health.response.json");
    assert_eq!(body, serde_json::json!({"status": "ok", "checks": {"database": "ok"}}));
}

/// An empty database gets its schema on first use: no migration step ran.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_database_is_migrated_on_first_use() {
    let h = Harness::route("healthz").await;
    h.get("/healthz").await.assert_json(200, "health.response.json");
    assert_eq!(recorded_migrations(&h).await, [1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn names_the_failing_check_when_the_database_cannot_be_opened() {
    let unreachable;
    let variables: &[(&str, &str)] = match postgres_admin_url() {
        // A database that does not exist on the test server.
        Some(admin) => {
            let server = admin.rsplit_once('/').unwrap().0;
            unreachable = format!("{server}/no_such_database");
            &[("database_url", unreachable.as_str())]
        }
        None => &[],
    };
    let h = Harness::load(Setup {
        components: &["healthz"],
        variables,
        ..Setup::default()
    })
    .await;
    if postgres_admin_url().is_none() {
        // The database file's name taken by a directory: it cannot be opened.
        std::fs::create_dir(h.state_dir().join("sqlite_db.db")).unwrap();
    }
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
