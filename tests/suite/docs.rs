//! `GET /docs`: the API reference page and its embedded assets.

use bytes::Bytes;
use component_tests::*;
use http::Request;
use std::io::Read;

fn assets(page: &str) -> Vec<String> {
    page.split("/docs/assets/")
        .skip(1)
        .map(|rest| rest[..rest.find('"').unwrap()].to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_and_its_assets_are_served_from_the_component() {
    let h = Harness::route("docs").await;
    let page = h.get("/docs").await;
    assert_eq!(page.status, 200);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    assert_eq!(page.header("cache-control"), "no-cache");
    assert!(page.header("content-security-policy").starts_with("default-src 'self'"));
    page.assert_request_id();
    let text = String::from_utf8(page.body.to_vec()).unwrap();
    assert_eq!(h.get("/docs/").await.body, page.body);
    let names = assets(&text);
    assert_eq!(names.len(), 3, "{text}");
    for name in names {
        let path = format!("/docs/assets/{name}");
        let plain = h.get(&path).await;
        assert_eq!(plain.status, 200, "{path}");
        assert_eq!(plain.header("cache-control"), "public, max-age=31536000, immutable");
        assert!(plain.headers.get("content-encoding").is_none());
        assert!(!plain.body.is_empty());
        let gzipped = h
            .send(
                Request::get(&path)
                    .header("accept-encoding", "br, gzip")
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(gzipped.header("content-encoding"), "gzip");
        assert_eq!(gzipped.header("vary"), "accept-encoding");
        let mut unzipped = Vec::new();
        flate2::read::GzDecoder::new(gzipped.body.as_ref())
            .read_to_end(&mut unzipped)
            .unwrap();
        assert_eq!(unzipped, plain.body.as_ref(), "{path}");
        assert!(gzipped.body.len() < plain.body.len());
        // Nothing the page loads comes from elsewhere.
        let body = String::from_utf8_lossy(&plain.body);
        assert!(!body.contains("sourceMappingURL="), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_paths_are_404_and_other_methods_405() {
    let h = Harness::route("docs").await;
    h.get("/docs/assets/nope.js")
        .await
        .assert_problem(404, "/problems/not-found");
    h.get("/docs/other").await.assert_problem(404, "/problems/not-found");
    let r = h.post_json("/docs", "{}").await;
    r.assert_problem(405, "/problems/method-not-allowed");
    assert_eq!(r.header("allow"), "GET, HEAD");
    let head = h.send(Request::head("/docs").body(Bytes::new()).unwrap()).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}
