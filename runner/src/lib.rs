pub mod bindings;
pub mod host_postgres;
pub mod host_sqlite;
pub mod manifest;
pub mod outbound;
pub mod routes;
pub mod variables;
