//! `POST /orders`: creates an order. Contract: [`kit::contract::CREATE_ORDER`].

use kit::orders::{self, NewOrder};
use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve(
        &kit::contract::CREATE_ORDER,
        request,
        async |ctx: &Ctx, order: NewOrder| {
            let store = kit::spin::order_store(&ctx.config)
                .await
                .map_err(|e| orders::store_problem(ctx, e))?;
            orders::create(ctx, &store, order).await
        },
    )
    .await
}
