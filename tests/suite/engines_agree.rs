//! The runner and real `spin up` answer the same requests the same way:
//! status, the headers that matter (`content-type`, `allow`,
//! `content-length`, `x-request-id`, `location`, `www-authenticate`) and the
//! body, once the values that differ by nature (new order ids, clock times)
//! are masked. Needs `spin` on PATH, so it is ignored by default; the Spin
//! pass of `make test` runs it (`--include-ignored`).

use bytes::Bytes;
use component_tests::*;
use http::Request;
use serde_json::{Value, json};

/// One request of the corpus; `{order}` in the path stands for the order
/// this engine created first.
struct Case {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn case(method: &'static str, path: &'static str) -> Case {
    Case {
        method,
        path,
        headers: vec![("x-request-id", format!("agree-{method}-{path}"))],
        body: String::new(),
    }
}

impl Case {
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn json(self, body: Value) -> Case {
        Case {
            body: body.to_string(),
            ..self.header("content-type", "application/json")
        }
    }
}

fn corpus() -> Vec<Case> {
    let auth = || bearer(USER);
    let order = json!({"userId": USER, "items": [{"productId": "sku-1", "quantity": 3}]});
    // A 1x1 PNG.
    let png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
    vec![
        case("POST", "/orders")
            .header("authorization", auth())
            .json(order.clone()),
        case("POST", "/orders")
            .header("authorization", auth())
            .header("idempotency-key", "agree")
            .json(order.clone()),
        case("POST", "/orders")
            .header("authorization", auth())
            .header("idempotency-key", "agree")
            .json(order.clone()),
        case("POST", "/orders")
            .header("authorization", auth())
            .json(json!({"userId": "x", "items": [{"productId": "", "quantity": 0}], "extra": 1})),
        case("POST", "/orders")
            .header("authorization", auth())
            .header("content-type", "application/json"),
        case("POST", "/orders")
            .header("authorization", auth())
            .header("content-type", "text/plain"),
        case("POST", "/orders").json(order.clone()),
        case("POST", "/orders")
            .header("authorization", "Bearer nope")
            .json(order),
        case("DELETE", "/orders"),
        case("GET", "/orders/{order}").header("authorization", auth()),
        case("HEAD", "/orders/{order}").header("authorization", auth()),
        case("GET", "/orders/{order}"),
        case("GET", "/orders/not-a-uuid").header("authorization", auth()),
        case("GET", "/orders/9a3c1e5e-1111-4222-8333-444455556666").header("authorization", auth()),
        case("PUT", "/orders/{order}"),
        case("GET", "/healthz"),
        case("HEAD", "/healthz"),
        case("POST", "/healthz"),
        case("GET", "/openapi.json"),
        case("POST", "/images/resize").json(json!({"imageData": png, "width": 2, "height": 2, "format": "png"})),
        case("POST", "/images/resize").json(json!({"imageData": "@@@", "width": 2, "height": 2})),
        case("POST", "/images/resize/raw?width=8&height=8").header("content-type", "image/png"),
        case("GET", "/images/resize"),
        case("GET", "/no/such/route"),
        case("GET", "/.well-known/spin/health"),
    ]
}

/// What must agree between the engines, with per-run values masked.
#[derive(Debug, PartialEq)]
struct Seen {
    request: String,
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

async fn run(engine: Engine, corpus: &[Case]) -> Vec<Seen> {
    let h = Harness::load_on(
        engine,
        Setup {
            components: &["orders-create", "orders-get", "healthz", "openapi", "images-resize"],
            ..Setup::default()
        },
    )
    .await;
    let mut order = None;
    let mut seen = Vec::new();
    for c in corpus {
        let path = c.path.replace("{order}", order.as_deref().unwrap_or("none"));
        let mut request = Request::builder().method(c.method).uri(&path);
        for (name, value) in &c.headers {
            request = request.header(*name, value);
        }
        let reply = h.send(request.body(Bytes::from(c.body.clone())).unwrap()).await;
        if order.is_none() && reply.status == 201 {
            order = Some(reply.json()["orderId"].as_str().unwrap().to_string());
        }
        let headers = [
            "content-type",
            "allow",
            "content-length",
            "x-request-id",
            "location",
            "www-authenticate",
        ]
        .iter()
        .filter_map(|name| {
            let value = reply.headers.get(*name)?.to_str().ok()?;
            Some((name.to_string(), mask(value)))
        })
        .collect();
        seen.push(Seen {
            request: format!("{} {}", c.method, c.path),
            status: reply.status.as_u16(),
            headers,
            body: mask(&String::from_utf8_lossy(&reply.body)),
        });
    }
    seen
}

/// UUIDs and RFC 3339 times become placeholders of the same length, so the
/// lengths still have to agree.
fn mask(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        let prefix = |n: usize| rest.get(..n);
        if prefix(36).is_some_and(|p| uuid::Uuid::parse_str(p).is_ok()) {
            out.push_str(&"U".repeat(36));
            i += 36;
        } else if prefix(24).is_some_and(|p| chrono::DateTime::parse_from_rfc3339(p).is_ok()) {
            out.push_str(&"T".repeat(24));
            i += 24;
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs `spin` on PATH: run by the Spin pass of `make test`"]
async fn runner_and_spin_answer_alike() {
    let corpus = corpus();
    let on_spin = run(Engine::Spin, &corpus).await;
    // AGREE_DUMP=FILE keeps Spin's masked answers, to compare two builds
    // (a refactoring must leave them byte-identical).
    if let Ok(path) = std::env::var("AGREE_DUMP") {
        let lines: String = on_spin.iter().map(|seen| format!("{seen:?}\n")).collect();
        std::fs::write(path, lines).expect("AGREE_DUMP is writable");
    }
    let on_runner = run(Engine::Runner, &corpus).await;
    let mut differences = Vec::new();
    for (spin, runner) in on_spin.iter().zip(&on_runner) {
        if spin != runner {
            differences.push(format!("spin:   {spin:?}\nrunner: {runner:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "the engines differ:\n{}",
        differences.join("\n\n")
    );
    assert_eq!(on_spin.len(), corpus.len());
}
