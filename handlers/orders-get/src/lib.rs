//! `GET /orders/:id`: reads an order. Contract: [`kit::contract::GET_ORDER`].

use kit::orders;
use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve_empty(&kit::contract::GET_ORDER, request, async |ctx: &Ctx| {
        // A malformed id is 400 before the database is touched.
        let id = orders::order_id(ctx)?;
        let store = kit::spin::order_store(ctx).await?;
        orders::get(ctx, &store, id).await
    })
    .await
}
