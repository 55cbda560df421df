//! What an instance may touch: the per-store state (WASI, `wasi:http`, the
//! component's grants) and the linker that exposes WASI 0.2/0.3,
//! `wasi:http` and the `spin:*` interfaces the app's guests import.

use crate::bindings;
use crate::stdio::TeeOutput;
use crate::variables::Value;
use anyhow::{Context as _, Result};
use kit::outbound::AllowedHosts;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::component::{HasData, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// Everything an instance of one component may use, fixed at startup.
pub(crate) struct ComponentConfig {
    /// The component id of the manifest.
    pub(crate) id: String,
    /// Its `[component.<id>] variables`, rendered.
    pub(crate) variables: HashMap<String, Value>,
    /// The SQLite labels it is granted (`sqlite_databases`).
    pub(crate) sqlite_databases: HashSet<String>,
    /// Label -> database file; only labels the app defines.
    pub(crate) sqlite_files: Arc<HashMap<String, PathBuf>>,
    /// `allowed_outbound_hosts`, resolved; the error when the resolved
    /// variables made an entry invalid (outbound connections then fail, as
    /// in Spin).
    pub(crate) allowed_hosts: Result<AllowedHosts, String>,
    /// Its `environment`, as WASI environment variables.
    pub(crate) environment: Vec<(String, String)>,
    /// Where its stdout goes (log file, runner's stderr).
    pub(crate) stdout: TeeOutput,
    /// Where its stderr goes (log file, runner's stderr).
    pub(crate) stderr: TeeOutput,
    /// `--max-instance-memory`: `memory.grow` past it fails (returns -1),
    /// as in Spin; `None` leaves only the pool's 4 GiB.
    pub(crate) max_instance_memory: Option<usize>,
}

/// Per-store data: one instance's world.
pub(crate) struct HostState {
    /// The instance's resources (connections, streams, WASI handles).
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutboundHttp,
    limits: StoreLimits,
    /// What the component is granted, shared by its instances.
    pub(crate) component: Arc<ComponentConfig>,
    /// Pools of this component's PostgreSQL connections (shared by its
    /// instances, as Spin's pools are per component).
    pub(crate) postgres: Arc<crate::host_postgres::Pools>,
    /// When the instance's latest request expires (`--request-timeout`).
    pub(crate) deadline: Option<std::time::Instant>,
    /// SQLite connections the guest holds open.
    pub(crate) sqlite_connections: usize,
}

/// Marker for the `spin:*` bindings: they operate on the whole `HostState`.
pub(crate) struct SpinHost;

impl HasData for SpinHost {
    type Data<'a> = &'a mut HostState;
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// The `wasi:http` view of a store, as `ProxyHandler` asks for it.
pub(crate) fn http_view(state: &mut HostState) -> WasiHttpCtxView<'_> {
    state.http()
}

/// Outbound HTTP is not granted by this app's manifest and not implemented:
/// every request is denied, as Spin denies hosts missing from
/// `allowed_outbound_hosts`.
struct NoOutboundHttp;

type IoFuture = Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>;

impl WasiHttpHooks for NoOutboundHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: IoFuture,
    ) -> Box<
        dyn Future<Output = Result<(http::Response<wasmtime_wasi_http::WasiBody>, IoFuture), wasmtime_wasi_http::Error>>
            + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// The linker every component is instantiated with: what a guest may
/// import, and nothing else.
pub(crate) fn build_linker(engine: &Engine) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking wasi 0.2")?;
    wasmtime_wasi::p3::add_to_linker(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking wasi 0.3")?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking wasi:http 0.2")?;
    wasmtime_wasi_http::p3::add_to_linker(&mut linker)
        .map_err(anyhow::Error::from)
        .context("linking wasi:http 0.3")?;
    bindings::Host_::add_to_linker::<HostState, SpinHost>(&mut linker, |s| s)
        .map_err(anyhow::Error::from)
        .context("linking spin interfaces")?;
    Ok(linker)
}

/// A fresh store for one instance of `component`.
pub(crate) fn new_store(
    engine: &Engine,
    component: &Arc<ComponentConfig>,
    postgres: &Arc<crate::host_postgres::Pools>,
) -> Store<HostState> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(component.stdout.clone()).stderr(component.stderr.clone());
    for (k, v) in &component.environment {
        wasi.env(k, v);
    }
    let mut limits = StoreLimitsBuilder::new();
    if let Some(bytes) = component.max_instance_memory {
        limits = limits.memory_size(bytes);
    }
    let state = HostState {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: NoOutboundHttp,
        limits: limits.build(),
        component: component.clone(),
        postgres: postgres.clone(),
        deadline: None,
        sqlite_connections: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    store
}

/// A row stream and the future that reports how it ended.
pub(crate) type BufferedRows<R, E> = (
    wasmtime::component::StreamReader<R>,
    wasmtime::component::FutureReader<Result<(), E>>,
);

/// The row stream and completion future of a `*-async` query whose rows the
/// host has already fetched: the rows stream from memory, the future is
/// ready.
pub(crate) fn buffered_rows<R, E>(
    accessor: &wasmtime::component::Accessor<HostState, SpinHost>,
    rows: Vec<R>,
) -> wasmtime::Result<BufferedRows<R, E>>
where
    R: wasmtime::component::Lower + wasmtime::component::Lift + Unpin + Send + Sync + 'static,
    Result<(), E>: wasmtime::component::Lower + wasmtime::component::Lift + Send + Sync + 'static,
{
    accessor.with(|mut a| {
        let rows = wasmtime::component::StreamReader::new(&mut a, rows)?;
        let done = wasmtime::component::FutureReader::new(
            &mut a,
            std::future::ready(Ok::<_, wasmtime::Error>(Ok::<(), E>(()))),
        )?;
        Ok((rows, done))
    })
}
