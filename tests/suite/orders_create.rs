//! `POST /orders` through its real component.

use bytes::Bytes;
use component_tests::*;
use http::Request;
use serde_json::json;

async fn harness() -> Harness {
    Harness::route("orders-create").await
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_an_order() {
    let h = harness().await;
    let r = h.post_as_user("/orders", order_body(USER)).await;
    let body = r.assert_json(201, "order-created.response.json");
    let id = body["orderId"].as_str().unwrap();
    assert_eq!(r.header("location"), format!("/orders/{id}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_failed_constraint_is_reported_with_its_pointer() {
    let h = harness().await;
    let body = json!({
        "userId": "not-a-uuid",
        "items": [{"productId": "", "quantity": 0}, {"productId": "x".repeat(65), "quantity": "2", "price": 3}],
        "note": "hi"
    });
    let r = h.post_as_user("/orders", body.to_string()).await;
    let problem = r.assert_problem(400, "/problems/validation-failed");
    let mut found: Vec<(String, String)> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["pointer"].as_str().unwrap().to_string(),
                e["keyword"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    found.sort();
    let expected = [
        ("/items/0/productId", "minLength"),
        ("/items/0/quantity", "minimum"),
        ("/items/1/price", "additionalProperties"),
        ("/items/1/productId", "maxLength"),
        ("/items/1/quantity", "type"),
        ("/note", "additionalProperties"),
        ("/userId", "format"),
    ];
    assert_eq!(found, expected.map(|(p, k)| (p.to_string(), k.to_string())));
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_types_missing_fields_and_array_bounds() {
    let h = harness().await;
    for (body, pointer, keyword) in [
        (json!([]), "", "type"),
        (json!({"items": [{"productId": "a", "quantity": 1}]}), "", "required"),
        (json!({"userId": USER}), "", "required"),
        (
            json!({"userId": 7, "items": [{"productId": "a", "quantity": 1}]}),
            "/userId",
            "type",
        ),
        (json!({"userId": USER, "items": []}), "/items", "minItems"),
        (
            json!({"userId": USER, "items": vec![json!({"productId": "a", "quantity": 1}); 101]}),
            "/items",
            "maxItems",
        ),
        (
            json!({"userId": USER, "items": [{"productId": "a", "quantity": 10001}]}),
            "/items/0/quantity",
            "maximum",
        ),
        (
            json!({"userId": USER, "items": [{"productId": "a"}]}),
            "/items/0",
            "required",
        ),
        (json!({"userId": USER, "items": "many"}), "/items", "type"),
    ] {
        let r = h.post_as_user("/orders", body.to_string()).await;
        let problem = r.assert_problem(400, "/problems/validation-failed");
        let first = &problem["errors"][0];
        assert_eq!(
            (first["pointer"].as_str().unwrap(), first["keyword"].as_str().unwrap()),
            (pointer, keyword),
            "{body}"
        );
    }
    let ok = h
        .post_as_user(
            "/orders",
            json!({"userId": USER, "items": vec![json!({"productId": "a", "quantity": 10000}); 100]}).to_string(),
        )
        .await;
    ok.assert_json(201, "order-created.response.json");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_non_utf8_json_say_where() {
    let h = harness().await;
    let r = h.post_as_user("/orders", "{\"userId\": \"a\",\n \"items\": [}").await;
    let p = r.assert_problem(400, "/problems/malformed-json");
    assert!(p["detail"].as_str().unwrap().contains("line 2 column 12"), "{p}");
    let r = h
        .post_as_user("/orders", Bytes::from_static(b"{\"userId\": \"\xc3\x28\"}"))
        .await;
    let p = r.assert_problem(400, "/problems/malformed-json");
    assert!(p["detail"].as_str().unwrap().contains("byte offset 12"), "{p}");
    h.post_as_user("/orders", "")
        .await
        .assert_problem(400, "/problems/malformed-json");
}

#[tokio::test(flavor = "multi_thread")]
async fn wrong_content_types_are_415() {
    let h = harness().await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/json; charset=iso-8859-1"),
    ] {
        let mut request = Request::post("/orders").header("authorization", bearer(USER));
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let r = h.send(request.body(Bytes::from(order_body(USER))).unwrap()).await;
        r.assert_problem(415, "/problems/unsupported-media-type");
    }
    let r = h
        .send(
            Request::post("/orders")
                .header("authorization", bearer(USER))
                .header("content-type", "application/json;charset=utf-8")
                .body(Bytes::from(order_body(USER)))
                .unwrap(),
        )
        .await;
    r.assert_json(201, "order-created.response.json");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_bodies_are_413() {
    let h = harness().await;
    let padding = " ".repeat(64 * 1024);
    let r = h
        .post_as_user("/orders", format!("{}{padding}", order_body(USER)))
        .await;
    r.assert_problem(413, "/problems/payload-too-large");
    let r = h.post_as_user("/orders", vec![b'['; 5 * 1024 * 1024]).await;
    r.assert_problem(413, "/problems/payload-too-large");
}

#[tokio::test(flavor = "multi_thread")]
async fn other_methods_are_405_with_allow() {
    let h = harness().await;
    for method in ["GET", "PUT", "DELETE", "PATCH", "HEAD"] {
        let r = h
            .send(
                Request::builder()
                    .method(method)
                    .uri("/orders")
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), "POST");
        if method != "HEAD" {
            r.assert_problem(405, "/problems/method-not-allowed");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_echoed_when_sane_and_replaced_otherwise() {
    let h = harness().await;
    let send = |id: &'static str| {
        Request::post("/orders")
            .header("authorization", bearer(USER))
            .header("content-type", "application/json")
            .header("x-request-id", id)
            .body(Bytes::from(order_body(USER)))
            .unwrap()
    };
    assert_eq!(h.send(send("trace-123")).await.header("x-request-id"), "trace-123");
    let replaced = h.send(send("has spaces in it")).await;
    assert!(uuid::Uuid::parse_str(replaced.header("x-request-id")).is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_a_500_naming_the_variable_never_its_value() {
    let h = Harness::load(Setup {
        components: &["orders-create"],
        variables: &[("database_url", "mysql://root:hunter2@db/orders")],
        ..Setup::default()
    })
    .await;
    let r = h.post_as_user("/orders", order_body(USER)).await;
    let p = r.assert_problem(500, "/problems/invalid-config");
    assert_eq!(p["errors"][0]["parameter"], "database_url");
    assert!(!String::from_utf8_lossy(&r.body).contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_number_floats_are_integers_as_json_schema_says() {
    let h = harness().await;
    let body = json!({"userId": USER, "items": [{"productId": "sku-1", "quantity": 851.0}]});
    let created = h
        .post_as_user("/orders", body.to_string())
        .await
        .assert_json(201, "order-created.response.json");
    assert!(created["orderId"].is_string());
    let body = json!({"userId": USER, "items": [{"productId": "sku-1", "quantity": 1.5}]});
    let p = h
        .post_as_user("/orders", body.to_string())
        .await
        .assert_problem(400, "/problems/validation-failed");
    assert_eq!(p["errors"][0]["pointer"], "/items/0/quantity");
}
