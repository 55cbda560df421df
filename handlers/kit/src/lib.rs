//! The shared library of the handler set.
//!
//! Every route component is a thin adapter: it names its route (a
//! [`contract::EmptyRoute`], [`contract::JsonRoute`] or [`contract::RawRoute`])
//! and hands the request, through `spin`'s adapter of the same name, to the
//! typed entry point of that kind: [`pipeline::serve_empty`],
//! [`pipeline::serve_json`] or [`pipeline::serve_raw`], with an async closure
//! holding the route's own logic. Everything the routes have in common lives
//! here once:
//!
//! - [`contract`]: the routes (path, methods, body schema and limit), shared
//!   by the handlers and the OpenAPI document.
//! - [`pipeline`]: the HTTP contract of `docs/conventions.md`: request ids,
//!   `405`/`413`/`415`, JSON parsing with positions, schema validation,
//!   problem answers and the per-request summary log line; one entry point
//!   per kind of route, so a handler cannot serve a route as another kind.
//! - [`problem`]: RFC 9457 problem details, one [`problem::ProblemKind`] per
//!   documented `type`.
//! - [`validate`]: JSON Schema 2020-12 validation reporting every failed
//!   constraint by JSON pointer, with the validators of [`schemas`]
//!   generated at build time from `schemas/`.
//! - [`config`]: the component's Spin variables turned into one typed,
//!   validated [`config::Config`].
//! - [`outbound`]: the rules of `allowed_outbound_hosts` as Spin applies
//!   them, shared by the config check and the local runner.
//! - [`durability`]: the `sqlite_synchronous` setting of SQLite connections.
//! - [`auth`]: bearer JWT verification (HS256) of the caller.
//! - [`negotiate`]: `Accept` / `Accept-Encoding` members and their quality.
//! - [`request_id`]: the caller's `x-request-id` when sane, else a fresh one.
//! - [`log`]: one JSON object per line on stdout, and the request's spans.
//! - [`span`]: spans of a request's own steps under the host's span,
//!   recorded only where the host takes them (the `otel` build).
//! - [`time`]: the one timestamp format of answers, logs and the database.
//! - [`orders`]: the order model, its store ([`orders::store`]) and the logic
//!   of the order routes ([`orders::route`]), over [`sql`]: the little a
//!   store needs of any SQL database (SQLite or PostgreSQL), brought up to
//!   date by [`migrations`].
//! - [`openapi`]: the OpenAPI 3.1 document, assembled from `schemas/`.
//! - `imaging` (feature `imaging`): the image pipeline of `POST /images/resize`,
//!   so that only that component carries codecs.
//! - `spin` (feature `spin`): the only module that knows about `spin-sdk`;
//!   with feature `otel`, it sends spans through Spin's `wasi:otel`.
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
pub mod outbound;
pub mod pipeline;
pub mod problem;
pub mod request_id;
pub mod schemas;
pub mod span;
pub mod sql;
pub mod time;
pub mod trace_context;
pub mod validate;

#[cfg(feature = "imaging")]
pub mod imaging;
#[cfg(feature = "spin")]
pub mod spin;
