//! `GET /noop`: answers `200 ok` without looking at the request. Served by
//! the same runtime as the app (bench/spin.toml), it is the ceiling every
//! route of the app is measured against: HTTP, routing, an instance (fresh or
//! reused, as the engine decides), and nothing else. Framed like every answer
//! of the app: with `Content-Length`, never chunked.

use spin_sdk::http::{HeaderMap, HeaderValue, IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

#[http_service]
async fn handle(_request: Request) -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-length", HeaderValue::from_static("2"));
    (StatusCode::OK, headers, "ok".to_string())
}
