//! A deployed app has no migration step: an empty database (a new SQLite
//! file, a fresh PostgreSQL database) gets its schema on first use, however
//! many first requests arrive at once, and each migration is applied and
//! recorded exactly once.

use component_tests::*;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread")]
async fn many_concurrent_first_requests_on_an_empty_database() {
    let h = Arc::new(
        Harness::load(Setup {
            components: &["orders-create", "orders-get", "healthz"],
            ..Setup::default()
        })
        .await,
    );
    let mut first = Vec::new();
    for n in 0..32 {
        let h = h.clone();
        first.push(tokio::spawn(async move {
            match n % 3 {
                0 => h.get("/healthz").await.status.as_u16(),
                1 => h
                    .get_as_user("/orders/9a3c1e5e-1111-4222-8333-444455556666")
                    .await
                    .status
                    .as_u16(),
                _ => {
                    let body = json!({"userId": USER, "items": [{"productId": format!("sku-{n}"), "quantity": 1}]});
                    h.post_as_user("/orders", body.to_string()).await.status.as_u16()
                }
            }
        }));
    }
    for (n, task) in first.into_iter().enumerate() {
        let expected = [200, 404, 201][n % 3];
        assert_eq!(task.await.unwrap(), expected, "first request {n}");
    }
    assert_eq!(recorded_migrations(&h).await, [1], "each migration recorded once");
}
