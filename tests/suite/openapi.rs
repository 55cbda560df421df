//! `GET /openapi.json` through its real component.

use component_tests::*;

#[tokio::test(flavor = "multi_thread")]
async fn documents_every_route_of_the_manifest() {
    let h = Harness::route("openapi").await;
    let r = h.get("/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), "application/json");
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let manifest = std::fs::read_to_string(root().join("spin.toml")).unwrap();
    let routes: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("route = \""))
        .map(|l| l.trim_end_matches('"'))
        // The reference page is for people, not an operation of the API.
        .filter(|r| *r != "/docs/...")
        .collect();
    assert!(routes.len() >= 4);
    for route in routes {
        let path = route
            .split('/')
            .map(|s| s.strip_prefix(':').map(|n| format!("{{{n}}}")).unwrap_or(s.to_string()))
            .collect::<Vec<_>>()
            .join("/");
        assert!(doc["paths"][&path].is_object(), "{path} missing");
    }
    for file in std::fs::read_dir(root().join("schemas")).unwrap() {
        let name = file.unwrap().file_name().into_string().unwrap();
        let key = name.trim_end_matches(".json");
        assert!(doc["components"]["schemas"][key].is_object(), "{key} missing");
    }
    assert!(doc["paths"]["/orders"]["post"]["responses"]["415"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn is_public_and_read_only() {
    let h = Harness::route("openapi").await;
    h.post_json("/openapi.json", "{}")
        .await
        .assert_problem(405, "/problems/method-not-allowed");
}
