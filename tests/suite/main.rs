//! The component suite: every route's real `.wasm` over HTTP, on the runner or
//! on real `spin up` (`TEST_ENGINE`), one module per concern. The harness
//! (engines, servers, databases) and the HTTP client are the crate's library,
//! `tests/src/`; this binary is tests/Cargo.toml's `[[test]] suite`
//! (`cargo test ... --test suite`).
//!
//! One test binary rather than one per file: each binary links wasmtime, so
//! twelve of them cost twelve links and 7 GiB of `target/` for no isolation
//! the harness does not already give (every test starts its own server with
//! its own state directory and database).

mod auth;
mod concurrency;
mod docs;
mod durability;
mod engines_agree;
mod healthz;
mod hostile_bodies;
mod hostile_headers;
mod images_resize;
mod keep_alive;
mod migrations;
mod openapi;
mod orders_create;
mod orders_get;
mod postgres_outage;

/// Test images, shared with kit's own imaging tests.
#[path = "../../handlers/kit/src/imaging/test_images.rs"]
mod test_images;
