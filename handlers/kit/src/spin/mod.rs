//! The Spin adapter: the only module that knows `spin-sdk`.
//!
//! - this module: a Spin request into the pipeline (the body streamed with
//!   its limit) and the answer back;
//! - [`config`]: the component's variables as one validated [`Config`],
//!   read once per instance;
//! - [`database`]: the order store over the instance's database connection,
//!   opened, migrated and kept on first use;
//! - [`image_budget`]: the image memory budget over the host's SQLite file
//!   (feature `imaging`);
//! - `otel` (feature `otel`): the request's spans through Spin's
//!   `wasi:otel`.
//!
//! Each is a thin translation; the logic is in the plain modules.

pub mod config;
pub mod database;
#[cfg(feature = "imaging")]
pub mod image_budget;
#[cfg(feature = "otel")]
pub mod otel;

pub use config::config;
pub use database::order_store;
#[cfg(feature = "imaging")]
pub use image_budget::image_budget;

use crate::contract::{EmptyRoute, JsonRoute, RawRoute};
use crate::pipeline::{self, BodyError, BodySource, Ctx, Incoming, RawBody};
use crate::problem::Problem;
use bytes::{Bytes, BytesMut};
use http::Response;
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;

/// A Spin request as the pipeline's [`Incoming`], with the component's config.
async fn incoming<B>(request: http::Request<B>) -> Incoming<SpinBody<B>> {
    let config = config().await;
    let (head, body) = request.into_parts();
    let incoming = Incoming::new(head, SpinBody(body), config);
    #[cfg(feature = "otel")]
    let incoming = incoming.traced_by(&otel::WASI_OTEL);
    incoming
}

/// Serves a route without a body ([`pipeline::serve_empty`]); the answer
/// is ready to return from an `#[http_service]` function.
pub async fn serve_empty<F>(
    route: &'static EmptyRoute,
    request: spin_sdk::http::Request,
    logic: F,
) -> Response<Full<Bytes>>
where
    F: AsyncFnOnce(&Ctx) -> Result<Response<Bytes>, Problem>,
{
    let incoming = incoming(request).await;
    pipeline::serve_empty(route, incoming, logic).await.map(Full::new)
}

/// Serves a route taking a JSON body ([`pipeline::serve_json`]), streamed
/// from the host within the route's limit.
pub async fn serve_json<T, F>(
    route: &'static JsonRoute,
    request: spin_sdk::http::Request,
    logic: F,
) -> Response<Full<Bytes>>
where
    T: DeserializeOwned,
    F: AsyncFnOnce(&Ctx, T) -> Result<Response<Bytes>, Problem>,
{
    let incoming = incoming(request).await;
    pipeline::serve_json(route, incoming, logic).await.map(Full::new)
}

/// Serves a route taking a raw body ([`pipeline::serve_raw`]), streamed
/// from the host within the route's limit.
pub async fn serve_raw<P, F>(
    route: &'static RawRoute,
    request: spin_sdk::http::Request,
    logic: F,
) -> Response<Full<Bytes>>
where
    P: DeserializeOwned,
    F: AsyncFnOnce(&Ctx, P, RawBody) -> Result<Response<Bytes>, Problem>,
{
    let incoming = incoming(request).await;
    pipeline::serve_raw(route, incoming, logic).await.map(Full::new)
}

/// Gives the thread back to Spin for a moment, for CPU-bound work to call
/// every few milliseconds. Spin runs a guest on a host worker thread until it
/// returns or waits; on a 2-core host a few resizes would hold every worker
/// while cheap requests queue behind them. `thread.yield` suspends this task
/// and wasmtime hands control back to the async runtime, which runs the
/// requests that are ready, then resumes it. A cancelled request (the client
/// went away) resumes too: the work is bounded and its answer is dropped.
pub fn give_way() {
    spin_sdk::wit_bindgen::yield_blocking();
}

/// The host's body stream, read within a limit.
struct SpinBody<B>(B);

impl<B> BodySource for SpinBody<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    async fn read(mut self, limit: usize) -> Result<Bytes, BodyError> {
        let mut buffer = BytesMut::new();
        while let Some(frame) = self.0.frame().await {
            let frame = frame.map_err(|e| BodyError::Failed(e.to_string()))?;
            if let Ok(data) = frame.into_data() {
                if buffer.len() + data.len() > limit {
                    return Err(BodyError::TooLarge);
                }
                buffer.extend_from_slice(&data);
            }
        }
        Ok(buffer.freeze())
    }
}
