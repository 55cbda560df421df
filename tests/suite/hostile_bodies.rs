//! Bodies built to make the answer (or the work) far larger than the
//! request: every answer stays small, on the largest JSON route there is
//! (`POST /images/resize`, 14 MiB, no authentication) and on the query
//! string of the raw form.

use bytes::Bytes;
use component_tests::*;
use http::Request;

/// An answer to a hostile body lists at most this many errors.
const CAP: usize = 100;

/// A JSON object of `n` properties no schema of the app knows.
fn unknown_properties(n: usize) -> String {
    let members: Vec<String> = (0..n).map(|i| format!("\"p{i}\":0")).collect();
    format!("{{{}}}", members.join(","))
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_properties_get_a_short_list() {
    let h = Harness::route("images-resize").await;
    // About 1 MB of unknown properties: 60,000 schema failures.
    let r = h.post_json("/images/resize", unknown_properties(60_000)).await;
    // More values than any route takes: refused before parsing.
    let v = r.assert_problem(413, "/problems/payload-too-large");
    assert!(v["detail"].as_str().unwrap().contains("JSON values"));

    // 5,000 of them: parsed, validated, and answered with the first 100.
    let r = h.post_json("/images/resize", unknown_properties(5_000)).await;
    let v = r.assert_problem(400, "/problems/validation-failed");
    assert_eq!(v["errors"].as_array().unwrap().len(), CAP);
    assert_eq!(v["errorsTruncated"], true);
    assert!(r.body.len() < 16 * 1024, "answer of {} bytes", r.body.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_query_parameters_get_a_short_list() {
    let h = Harness::route("images-resize").await;
    let query: Vec<String> = (0..300).map(|i| format!("q{i}=1")).collect();
    let request = Request::post(format!("/images/resize/raw?width=4&height=4&{}", query.join("&")))
        .header("content-type", "image/png")
        .body(Bytes::from_static(b"\x89PNG"))
        .unwrap();
    let r = h.send(request).await;
    let v = r.assert_problem(400, "/problems/invalid-parameter");
    assert_eq!(v["errors"].as_array().unwrap().len(), CAP);
    assert_eq!(v["errorsTruncated"], true);
    assert!(r.body.len() < 16 * 1024, "answer of {} bytes", r.body.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_memory_limited_instance_still_answers_with_a_problem() {
    // As an operator would run it: 256 MiB per instance. A 14 MB body of
    // seven million numbers would take several hundred MiB as parsed JSON,
    // and the instance would trap (an empty 500); it is refused first.
    let h = Harness::load(Setup {
        components: &["images-resize"],
        max_instance_memory: Some(256 << 20),
        ..Setup::default()
    })
    .await;
    let mut body = String::with_capacity(14_000_002);
    body.push('[');
    body.push_str(&"0,".repeat(6_999_999));
    body.push_str("0]");
    let r = h.post_json("/images/resize", body).await;
    r.assert_problem(413, "/problems/payload-too-large");
    // 5,000 unknown properties: a short 400, not a trap.
    let r = h.post_json("/images/resize", unknown_properties(5_000)).await;
    r.assert_problem(400, "/problems/validation-failed");
}
