//! `POST /images/resize`: resizes a JPEG, PNG or WebP image, sent as base64
//! in JSON or as the raw body with query parameters. Contract:
//! [`kit::contract::RESIZE_IMAGE`]; the pipeline is [`kit::imaging`].

use kit::imaging::route::{self, ResizeRequest};
use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve(
        &kit::contract::RESIZE_IMAGE,
        request,
        async |ctx: &Ctx, request: ResizeRequest| route::resize(ctx, request),
    )
    .await
}
