//! Host-side bindings for the `spin:*` interfaces, generated from the WIT
//! shipped in the `spin-sdk` package the guests build against (vendored in
//! `runner/wit/`, checked against the registry copy by `build.rs`).

wasmtime::component::bindgen!({
    inline: "
        package runner:host;
        world host {
            import spin:variables/variables@3.0.0;
            import spin:sqlite/sqlite@3.1.0;
            import spin:postgres/postgres@4.2.0;
        }
    ",
    path: "wit",
    world: "runner:host/host",
    imports: { default: async | trappable },
    with: {
        "spin:sqlite/sqlite.connection": crate::host_sqlite::SqliteConnection,
        "spin:postgres/postgres.connection": crate::host_postgres::PgConnection,
        "spin:postgres/postgres.connection-builder": crate::host_postgres::PgConnectionBuilder,
    },
    require_store_data_send: true,
});

pub(crate) use spin::postgres::postgres as pg;
pub(crate) use spin::sqlite::sqlite;
pub(crate) use spin::variables::variables;
