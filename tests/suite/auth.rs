//! Bearer tokens and idempotent creation on the real order components.

use bytes::Bytes;
use component_tests::*;
use http::Request;
use serde_json::json;

fn post(authorization: Option<&str>, key: Option<&str>, body: &str) -> Request<Bytes> {
    let mut r = Request::post("/orders").header("content-type", "application/json");
    if let Some(a) = authorization {
        r = r.header("authorization", a);
    }
    if let Some(k) = key {
        r = r.header("idempotency-key", k);
    }
    r.body(Bytes::from(body.to_string())).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_credential_is_401_with_its_challenge() {
    let h = Harness::orders().await;
    let good = json!({"sub": USER, "exp": now() + 600});
    let tampered = {
        let t = sign(&good, JWT_SECRET);
        let other = sign(
            &json!({"sub": "9a3c1e5e-1111-4222-8333-444455556666", "exp": now() + 600}),
            JWT_SECRET,
        );
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = other.split('.').nth(1).unwrap();
        parts.join(".")
    };
    let none = {
        let header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0"; // {"alg":"none","typ":"JWT"}
        let payload = sign(&good, JWT_SECRET).split('.').nth(1).unwrap().to_string();
        format!("{header}.{payload}.")
    };
    let cases: Vec<(&str, Option<String>, Option<&str>)> = vec![
        ("missing header", None, None),
        (
            "basic scheme",
            Some("Basic dXNlcjpwdw==".into()),
            Some("invalid_request"),
        ),
        ("empty bearer", Some("Bearer ".into()), Some("invalid_request")),
        (
            "other secret",
            Some(format!("Bearer {}", sign(&good, "another-secret-0123456789abcdef-xyz"))),
            Some("invalid_token"),
        ),
        ("tampered", Some(format!("Bearer {tampered}")), Some("invalid_token")),
        ("alg none", Some(format!("Bearer {none}")), Some("invalid_token")),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(&json!({"sub": USER, "exp": now() - 3600}), JWT_SECRET)
            )),
            Some("invalid_token"),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                sign(
                    &json!({"sub": USER, "exp": now() + 7200, "nbf": now() + 3600}),
                    JWT_SECRET
                )
            )),
            Some("invalid_token"),
        ),
        (
            "no sub",
            Some(format!("Bearer {}", sign(&json!({"exp": now() + 600}), JWT_SECRET))),
            Some("invalid_token"),
        ),
        ("garbage", Some("Bearer not.a.jwt".into()), Some("invalid_token")),
    ];
    for (name, authorization, code) in cases {
        let r = h.send(post(authorization.as_deref(), None, &order_body(USER))).await;
        r.assert_problem(401, "/problems/unauthorized");
        let challenge = r.header("www-authenticate");
        assert!(
            challenge.starts_with("Bearer realm=\"orders-api\""),
            "{name}: {challenge}"
        );
        match code {
            Some(code) => assert!(challenge.contains(&format!("error=\"{code}\"")), "{name}: {challenge}"),
            None => assert!(!challenge.contains("error="), "{name}: {challenge}"),
        }
        let get = h
            .send(
                Request::get(format!("/orders/{USER}"))
                    .header("authorization", authorization.clone().unwrap_or_default())
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await;
        get.assert_problem(401, "/problems/unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn issuer_and_audience_are_enforced_when_configured() {
    let h = Harness::load(Setup {
        components: &["orders-create"],
        variables: &[("jwt_issuer", "https://id.example"), ("jwt_audience", "orders")],
        ..Setup::default()
    })
    .await;
    let with = |claims: serde_json::Value| format!("Bearer {}", sign(&claims, JWT_SECRET));
    let ok = with(json!({"sub": USER, "exp": now() + 600, "iss": "https://id.example", "aud": "orders"}));
    h.send(post(Some(&ok), None, &order_body(USER)))
        .await
        .assert_json(201, "order-created.response.json");
    for claims in [
        json!({"sub": USER, "exp": now() + 600, "iss": "https://evil.example", "aud": "orders"}),
        json!({"sub": USER, "exp": now() + 600, "iss": "https://id.example", "aud": "billing"}),
        json!({"sub": USER, "exp": now() + 600}),
    ] {
        h.send(post(Some(&with(claims)), None, &order_body(USER)))
            .await
            .assert_problem(401, "/problems/unauthorized");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_subject_owns_the_order() {
    let h = Harness::orders().await;
    let other = "9a3c1e5e-1111-4222-8333-444455556666";
    let r = h.send(post(Some(&bearer(other)), None, &order_body(USER))).await;
    let p = r.assert_problem(403, "/problems/forbidden");
    assert_eq!(p["errors"][0]["pointer"], "/userId");

    let id = h.post_as_user("/orders", order_body(USER)).await.json()["orderId"]
        .as_str()
        .unwrap()
        .to_string();
    let theirs = h
        .send(
            Request::get(format!("/orders/{id}"))
                .header("authorization", bearer(other))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    theirs.assert_problem(404, "/problems/not-found");
    h.get_as_user(&format!("/orders/{id}"))
        .await
        .assert_json(200, "order.response.json");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_is_refused_at_load() {
    let refused = Harness::try_load(Setup {
        components: &["orders-create"],
        omit: &["jwt_secret"],
        ..Setup::default()
    })
    .await
    .err()
    .expect("jwt_secret is required");
    assert!(refused.contains("jwt_secret"), "{refused}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_secret_is_a_500_naming_it() {
    let h = Harness::load(Setup {
        components: &["orders-create"],
        variables: &[("jwt_secret", "short")],
        ..Setup::default()
    })
    .await;
    let r = h.send(post(Some(&bearer(USER)), None, &order_body(USER))).await;
    let p = r.assert_problem(500, "/problems/invalid-config");
    assert_eq!(p["errors"][0]["parameter"], "jwt_secret");
    assert!(!String::from_utf8_lossy(&r.body).contains("short\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_replays_and_refuses_another_body() {
    let h = Harness::orders().await;
    let token = bearer(USER);
    let first = h.send(post(Some(&token), Some("retry-1"), &order_body(USER))).await;
    let id = first.assert_json(201, "order-created.response.json")["orderId"].clone();
    let again = h.send(post(Some(&token), Some("retry-1"), &order_body(USER))).await;
    assert_eq!(again.assert_json(201, "order-created.response.json")["orderId"], id);
    assert_eq!(again.header("location"), first.header("location"));
    assert_eq!(again.header("idempotent-replayed"), "true");
    let other = json!({"userId": USER, "items": [{"productId": "other", "quantity": 1}]}).to_string();
    h.send(post(Some(&token), Some("retry-1"), &other))
        .await
        .assert_problem(422, "/problems/idempotency-key-reused");
    let p = h
        .send(post(Some(&token), Some(&"k".repeat(256)), &order_body(USER)))
        .await
        .assert_problem(400, "/problems/invalid-parameter");
    assert_eq!(p["errors"][0]["parameter"], "Idempotency-Key");
}

#[tokio::test(flavor = "multi_thread")]
async fn parallel_duplicates_create_exactly_one_order() {
    let h = std::sync::Arc::new(Harness::orders().await);
    let token = bearer(USER);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = h.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move {
            h.send(post(Some(&token), Some("burst"), &order_body(USER))).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for task in tasks {
        let r = task.await.unwrap();
        ids.insert(
            r.assert_json(201, "order-created.response.json")["orderId"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
}
