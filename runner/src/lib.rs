//! A local host for the app's Spin components on wasmtime: `runner up` (like
//! `spin up`) and an in-process API for component tests. Spin stays the
//! production engine; this runner reproduces its behaviour for what the app
//! uses and refuses what it does not implement.

pub mod app;
mod bindings;
mod host;
mod host_postgres;
mod host_sqlite;
mod host_variables;
pub mod manifest;
pub mod outbound;
pub mod routes;
mod server;
mod stdio;
pub mod variables;

pub use app::{App, Options, check_config_schema, check_only};
