//! `POST /images/resize` (base64 in JSON) and `POST /images/resize/raw`
//! (the raw image, parameters in the query): resizes a JPEG, PNG or WebP
//! image. Contracts: [`kit::contract::RESIZE_IMAGE`] and
//! [`kit::contract::RESIZE_IMAGE_RAW`]; the pipeline is [`kit::imaging`].

use kit::contract::{RESIZE_IMAGE, RESIZE_IMAGE_RAW, is_raw_resize};
use kit::imaging::footprint::Counting;
use kit::imaging::route::{self, ResizeOptions, ResizeRequest};
use kit::pipeline::{Ctx, RawBody};
use spin_sdk::http::Request;
use spin_sdk::http_service;

/// Counts the bytes in use, so a claim on the shared image budget knows
/// how much of the instance's memory is free for the next job.
#[global_allocator]
static ALLOCATOR: Counting = Counting;

// Both routes share the shared image budget (the memory all concurrent
// resizes of this host may hold at once) and give Spin's worker back
// between stages, rows and strips (`give_way`), so cheap routes are not
// queued behind a resize.
#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    if is_raw_resize(request.uri().path()) {
        kit::spin::serve_raw(
            &RESIZE_IMAGE_RAW,
            request,
            async |ctx: &Ctx, options: ResizeOptions, image: RawBody| {
                let budget = kit::spin::image_budget().await?;
                route::resize_raw(ctx, options, image, &budget, &mut kit::spin::give_way).await
            },
        )
        .await
    } else {
        kit::spin::serve_json(&RESIZE_IMAGE, request, async |ctx: &Ctx, request: ResizeRequest| {
            let budget = kit::spin::image_budget().await?;
            route::resize_json(ctx, request, &budget, &mut kit::spin::give_way).await
        })
        .await
    }
}
