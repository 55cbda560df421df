//! A local host for the app's Spin components on wasmtime: `runner up` (like
//! `spin up`) and an in-process API for the component tests. Spin stays the
//! production engine; this runner reproduces what Spin does for everything
//! the app uses, and refuses at startup what it does not implement.
//!
//! The parts, as in wasmtime's `serve` command: `engine` (engine setup and
//! the compilation cache), `host` (per-store state and the linker),
//! `handler` (instances and their reuse), `server` (the HTTP loop) and
//! `app` (manifest, routing, the request path). The public API is what the
//! CLI, the component tests and the bench need: [`App`] and its
//! [`Options`].

mod app;
mod bindings;
mod engine;
mod handler;
mod host;
mod host_postgres;
mod host_sqlite;
mod host_variables;
mod manifest;
mod routes;
mod server;
mod stdio;
mod variables;

pub use app::{App, Options, Response, check_component_variables, check_startup};
pub use handler::Reuse;
pub use variables::parse_cli_variable;

/// An empty request body, for in-process requests.
pub fn empty_body() -> wasmtime_wasi_http::WasiBody {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A request body of these bytes, for in-process requests.
pub fn full_body(bytes: impl Into<bytes::Bytes>) -> wasmtime_wasi_http::WasiBody {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}
