//! `GET /orders/:id` through its real component, reading what the create
//! component wrote to the same SQLite file.

use bytes::Bytes;
use component_tests::*;
use http::Request;

#[tokio::test(flavor = "multi_thread")]
async fn reads_back_what_was_created() {
    let h = Harness::orders().await;
    let created = h
        .post_as_user("/orders", order_body(USER))
        .await
        .assert_json(201, "order-created.response.json");
    let id = created["orderId"].as_str().unwrap();
    let r = h.get_as_user(&format!("/orders/{id}")).await;
    let order = r.assert_json(200, "order.response.json");
    assert_eq!(order["id"], id);
    assert_eq!(order["userId"], USER);
    assert_eq!(
        order["items"],
        serde_json::json!([{"productId": "sku-42", "quantity": 2}])
    );
    let created_at = chrono::DateTime::parse_from_rfc3339(order["createdAt"].as_str().unwrap()).unwrap();
    assert!((chrono::Utc::now() - created_at.to_utc()).num_seconds().abs() < 60);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_id_is_404_and_bad_id_is_400() {
    let h = Harness::orders().await;
    h.get_as_user("/orders/9a3c1e5e-1111-4222-8333-444455556666")
        .await
        .assert_problem(404, "/problems/not-found");
    for bad in [
        "42",
        "not-a-uuid",
        "9a3c1e5e-1111-4222-8333-44445555666",
        "%27%20OR%201=1--",
    ] {
        let p = h
            .get_as_user(&format!("/orders/{bad}"))
            .await
            .assert_problem(400, "/problems/invalid-parameter");
        assert_eq!(p["errors"][0]["parameter"], "id");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn head_follows_get_and_other_methods_are_405() {
    let h = Harness::orders().await;
    let created = h.post_as_user("/orders", order_body(USER)).await.json();
    let path = format!("/orders/{}", created["orderId"].as_str().unwrap());
    let r = h
        .send(
            Request::head(&path)
                .header("authorization", bearer(USER))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    for method in ["POST", "PUT", "DELETE"] {
        let r = h
            .send(
                Request::builder()
                    .method(method)
                    .uri(&path)
                    .header("authorization", bearer(USER))
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await;
        r.assert_problem(405, "/problems/method-not-allowed");
        assert_eq!(r.header("allow"), "GET, HEAD");
    }
}
