//! `POST /orders`: creates an order. Contract: [`kit::contract::CREATE_ORDER`].

use kit::orders::{self, NewOrder};
use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve_json(
        &kit::contract::CREATE_ORDER,
        request,
        async |ctx: &Ctx, order: NewOrder| {
            let store = kit::spin::order_store(ctx).await?;
            orders::create(ctx, &store, order).await
        },
    )
    .await
}
