//! `GET /healthz`: the service and its database. Contract: [`kit::contract::HEALTH`].

use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve_empty(&kit::contract::HEALTH, request, async |ctx: &Ctx| {
        Ok(kit::orders::health(ctx, kit::spin::order_store(ctx).await).await)
    })
    .await
}
