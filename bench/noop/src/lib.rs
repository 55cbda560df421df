//! `GET /noop`: answers `200 ok` without looking at the request. Served by
//! the same runtime as the app (bench/spin.toml), it is the ceiling every
//! route of the app is measured against: HTTP, routing, a fresh instance, and
//! nothing else.

use spin_sdk::http::{IntoResponse, Request, StatusCode};
use spin_sdk::http_service;

#[http_service]
async fn handle(_request: Request) -> impl IntoResponse {
    (StatusCode::OK, "ok".to_string())
}
