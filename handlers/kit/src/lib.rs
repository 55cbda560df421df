//! The shared library of the handler set.
//!
//! Every route component is a thin adapter: it names its [`contract::Route`]
//! and hands the request to [`pipeline::serve`] with a closure holding the
//! route's own logic. Everything the routes have in common lives here once:
//!
//! - [`contract`]: the routes (path, methods, body schema and limit), shared
//!   by the handlers and the OpenAPI document.
//! - [`pipeline`]: the HTTP contract of `shared/conventions.md`: request ids,
//!   `405`/`413`/`415`, JSON parsing with positions, schema validation, problem
//!   answers and the per-request summary log line.
//! - [`problem`]: RFC 9457 problem details, one [`problem::ProblemKind`] per
//!   documented `type`.
//! - [`validate`]: JSON Schema 2020-12 validation reporting every failed
//!   constraint by JSON pointer.
//! - [`config`]: the component's Spin variables turned into one typed,
//!   validated [`config::Config`].
//! - [`durability`]: the `sqlite_synchronous` setting of SQLite connections.
//! - [`auth`]: bearer JWT verification (HS256) of the caller.
//! - [`negotiate`]: `Accept` / `Accept-Encoding` members and their quality.
//! - [`log`]: one JSON object per line on stdout.
//! - [`orders`] and [`sql`]: the order domain and its store over any SQL
//!   database (SQLite or PostgreSQL).
//! - [`openapi`]: the OpenAPI 3.1 document, assembled from `schemas/`.
//! - `imaging` (feature `imaging`): the image pipeline of `POST /images/resize`,
//!   so that only that component carries codecs.
//! - `spin` (feature `spin`): the only module that knows about `spin-sdk`.
//!
//! Everything but `spin` is plain Rust and is tested natively.

pub mod auth;
pub mod config;
pub mod contract;
pub mod durability;
pub mod log;
pub mod migrations;
pub mod negotiate;
pub mod openapi;
pub mod orders;
pub mod pipeline;
pub mod problem;
pub mod request_id;
pub mod schemas;
pub mod sql;
pub mod validate;

#[cfg(feature = "imaging")]
pub mod imaging;
#[cfg(feature = "spin")]
pub mod spin;
