//! `GET /openapi.json`: the OpenAPI 3.1 document. Contract: [`kit::contract::OPENAPI`].

use kit::pipeline::{Ctx, json_bytes};
use spin_sdk::http::{Request, StatusCode};
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve(&kit::contract::OPENAPI, request, async |_ctx: &Ctx, (): ()| {
        Ok(json_bytes(StatusCode::OK, kit::openapi::document_json()))
    })
    .await
}
