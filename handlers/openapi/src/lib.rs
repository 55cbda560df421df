//! `GET /openapi.json`: the OpenAPI 3.1 document. Contract: [`kit::contract::OPENAPI`].
//! The document is written at build time (`build.rs`, from `kit::openapi`).

use bytes::Bytes;
use kit::pipeline::{Ctx, json_bytes};
use spin_sdk::http::{Request, StatusCode};
use spin_sdk::http_service;

/// The document, as `kit::openapi::document_json` wrote it.
const DOCUMENT: &str = include_str!(concat!(env!("OUT_DIR"), "/openapi.json"));

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve_empty(&kit::contract::OPENAPI, request, async |_ctx: &Ctx| {
        Ok(json_bytes(StatusCode::OK, Bytes::from_static(DOCUMENT.as_bytes())))
    })
    .await
}
