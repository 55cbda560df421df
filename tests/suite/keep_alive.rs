//! A keep-alive client, as browsers, wrk and oha are: 200 sequential
//! requests on one connection, across routes and statuses, each answer
//! framed by its length. It must finish; how fast is `make bench`'s
//! business, not a test's.

use bytes::Bytes;
use component_tests::*;
use http::Request;

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_requests_on_one_connection() {
    let h = Harness::load(Setup {
        components: &["orders-create", "orders-get", "healthz"],
        ..Setup::default()
    })
    .await;
    let mut connection = h.connect().await;
    let created = connection
        .send(
            Request::post("/orders")
                .header("content-type", "application/json")
                .header("authorization", bearer(USER))
                .body(Bytes::from(order_body(USER)))
                .unwrap(),
        )
        .await
        .assert_json(201, "order-created.response.json");
    let order = format!("/orders/{}", created["orderId"].as_str().unwrap());
    for n in 0..200 {
        let reply = match n % 4 {
            0 => {
                connection
                    .send(Request::get("/healthz").body(Bytes::new()).unwrap())
                    .await
            }
            1 => {
                let request = Request::get(&order)
                    .header("authorization", bearer(USER))
                    .body(Bytes::new())
                    .unwrap();
                connection.send(request).await
            }
            2 => {
                connection
                    .send(Request::head("/healthz").body(Bytes::new()).unwrap())
                    .await
            }
            _ => connection.send(Request::get(&order).body(Bytes::new()).unwrap()).await,
        };
        let expected = if n % 4 == 3 { 401 } else { 200 };
        assert_eq!(reply.status, expected, "request {n}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_own_answers_are_framed_too() {
    let h = Harness::route("healthz").await;
    let missing = h.get("/no/such/route").await;
    assert_eq!(missing.status, 404);
    assert!(missing.body.is_empty());
    let health = h.get("/.well-known/spin/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body.as_ref(), b"OK");
    // A route of a component that is not served (not selected) is a 404 too.
    assert_eq!(h.get("/openapi.json").await.status, 404);
}
