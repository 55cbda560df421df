//! `GET /orders/:id`: reads an order. Contract: [`kit::contract::GET_ORDER`].

use kit::orders;
use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve(&kit::contract::GET_ORDER, request, async |ctx: &Ctx, (): ()| {
        orders::order_id(ctx)?;
        let store = kit::spin::order_store(&ctx.config)
            .await
            .map_err(|e| orders::store_problem(ctx, e))?;
        orders::get(ctx, &store).await
    })
    .await
}
