//! `POST /images/resize` (base64 in JSON) and `POST /images/resize/raw`
//! (the raw image, parameters in the query): resizes a JPEG, PNG or WebP
//! image. Contracts: [`kit::contract::RESIZE_IMAGE`] and
//! [`kit::contract::RESIZE_IMAGE_RAW`]; the pipeline is [`kit::imaging`].

use kit::imaging::footprint::Counting;
use kit::imaging::route::{self, ResizeRequest};
use kit::orders::store_problem;
use kit::pipeline::Ctx;
use spin_sdk::http::Request;
use spin_sdk::http_service;

/// Counts the bytes in use, so a claim on the shared image budget knows
/// how much of the instance's memory is free for the next job.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    let contract = kit::contract::resize_route(request.uri().path());
    kit::spin::serve(contract, request, async |ctx: &Ctx, request: ResizeRequest| {
        // The memory all concurrent resizes of this host may hold at once.
        let budget = kit::spin::image_budget().await.map_err(|e| store_problem(ctx, e))?;
        // Gives Spin's worker back between stages, rows and strips, so
        // cheap routes are not queued behind a resize.
        route::resize(ctx, request, &budget, &mut kit::spin::give_way).await
    })
    .await
}
