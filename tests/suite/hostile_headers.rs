//! Headers a client can forge or misuse: Spin's own routing headers
//! (`spin-*`) sent by the client, encoded bodies, and the raw resize route
//! behind a trailing slash. Spin appends its own `spin-*` values after the
//! client's; only Spin's may count.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use component_tests::*;
use http::Request;
use serde_json::json;

use crate::test_images::{gradient, png};

/// What a client might send to steer routing or parameters.
const FORGED: &[(&str, &str)] = &[
    ("spin-path-match-id", "00000000-0000-4000-8000-000000000000"),
    ("spin-path-info", "/assets/forged.js"),
    ("spin-matched-route", "/images/resize/raw"),
    ("spin-component-route", "/images/resize/raw"),
    ("spin-raw-component-route", "/images/resize/raw"),
    ("spin-full-url", "http://evil.example/orders/forged"),
];

fn forge(mut request: Request<Bytes>) -> Request<Bytes> {
    for (name, value) in FORGED {
        request.headers_mut().append(*name, value.parse().unwrap());
    }
    request
}

/// The same request with and without the forged headers gets the same answer.
async fn same_answer(h: &Harness, request: impl Fn() -> Request<Bytes>) -> (Reply, Reply) {
    let plain = h.send(request()).await;
    let forged = h.send(forge(request())).await;
    assert_eq!(plain.status, forged.status, "{:?}", request().uri());
    assert_eq!(
        plain.headers.get("content-type"),
        forged.headers.get("content-type"),
        "{:?}",
        request().uri()
    );
    (plain, forged)
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_spin_headers_change_no_route() {
    let h = Harness::load(Setup {
        components: &[
            "orders-create",
            "orders-get",
            "healthz",
            "openapi",
            "docs",
            "images-resize",
        ],
        ..Setup::default()
    })
    .await;
    let auth = bearer(USER);
    let create = || {
        Request::post("/orders")
            .header("content-type", "application/json")
            .header("authorization", &auth)
            .body(Bytes::from(order_body(USER)))
            .unwrap()
    };
    let (created, forged_create) = same_answer(&h, create).await;
    assert_eq!(created.status, 201);
    let id = created.json()["orderId"].as_str().unwrap().to_string();
    assert_ne!(forged_create.json()["orderId"], created.json()["orderId"]);

    // The order named in the URL, never the one in a forged header.
    let get = || {
        Request::get(format!("/orders/{id}"))
            .header("authorization", &auth)
            .body(Bytes::new())
            .unwrap()
    };
    let (plain, forged) = same_answer(&h, get).await;
    assert_eq!(plain.status, 200);
    assert_eq!(forged.json()["id"], id.as_str());
    assert_eq!(plain.body, forged.body);

    for path in ["/healthz", "/openapi.json"] {
        let (plain, forged) = same_answer(&h, || Request::get(path).body(Bytes::new()).unwrap()).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.body, forged.body, "{path}");
    }

    // The page, not an asset with a year-long immutable cache header.
    let (page, forged) = same_answer(&h, || Request::get("/docs/").body(Bytes::new()).unwrap()).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body, forged.body);
    assert_eq!(forged.header("cache-control"), "no-cache");

    // The JSON resize stays the JSON resize.
    let image = png(&gradient(8, 8));
    let resize = || {
        let body = json!({"imageData": STANDARD.encode(&image), "width": 4, "height": 4});
        Request::post("/images/resize")
            .header("content-type", "application/json")
            .body(Bytes::from(body.to_string()))
            .unwrap()
    };
    let (plain, _) = same_answer(&h, resize).await;
    plain.assert_json(200, "image-resized.response.json");
}

#[tokio::test(flavor = "multi_thread")]
async fn encoded_bodies_are_415() {
    let h = Harness::load(Setup {
        components: &["orders-create", "images-resize"],
        ..Setup::default()
    })
    .await;
    let order = Request::post("/orders")
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("authorization", bearer(USER))
        .body(Bytes::from(order_body(USER)))
        .unwrap();
    h.send(order)
        .await
        .assert_problem(415, "/problems/unsupported-media-type");
    let image = Request::post("/images/resize/raw?width=4&height=4")
        .header("content-type", "image/png")
        .header("content-encoding", "br")
        .body(Bytes::from(png(&gradient(8, 8))))
        .unwrap();
    h.send(image)
        .await
        .assert_problem(415, "/problems/unsupported-media-type");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_raw_resize_route_behind_a_trailing_slash_is_still_raw() {
    let h = Harness::route("images-resize").await;
    let image = Request::post("/images/resize/raw/?width=4&height=4")
        .header("content-type", "image/png")
        .header("accept", "image/png")
        .body(Bytes::from(png(&gradient(8, 8))))
        .unwrap();
    let r = h.send(image).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.header("content-type"), "image/png");
}
