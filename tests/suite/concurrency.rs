//! Many parallel creates: every returned id reads back with its own content;
//! none lost, none duplicated. Runs on SQLite and, under tests/postgres.sh,
//! on PostgreSQL.

use component_tests::*;
use serde_json::json;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread")]
async fn parallel_creates_all_read_back() {
    let h = Arc::new(Harness::orders().await);
    let mut tasks = Vec::new();
    for n in 0..48 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            let body = json!({"userId": USER, "items": [{"productId": format!("sku-{n}"), "quantity": n + 1}]});
            let r = h.post_as_user("/orders", body.to_string()).await;
            let id = r.assert_json(201, "order-created.response.json")["orderId"]
                .as_str()
                .unwrap()
                .to_string();
            (n, id)
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap());
    }
    let ids: std::collections::BTreeSet<_> = created.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(ids.len(), created.len(), "duplicate ids");
    for (n, id) in created {
        let order = h
            .get_as_user(&format!("/orders/{id}"))
            .await
            .assert_json(200, "order.response.json");
        assert_eq!(
            order["items"],
            json!([{"productId": format!("sku-{n}"), "quantity": n + 1}])
        );
    }
}
