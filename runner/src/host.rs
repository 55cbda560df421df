//! The wasmtime side: engine configuration (pooling allocator, epoch
//! interruption), the linker with WASI 0.2/0.3, `wasi:http` and the `spin:*`
//! host interfaces, the per-store state, and the on-disk compiled-component
//! cache.

use crate::bindings;
use crate::outbound::AllowedHosts;
use crate::stdio::TeeOutput;
use crate::variables::Value;
use anyhow::{Context as _, Result};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasData, Linker, ResourceTable};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimits, StoreLimitsBuilder,
    UpdateDeadline,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

/// How often the epoch ticker advances: the longest a guest runs before it
/// yields to other requests, and the timeout's granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);

/// Everything a component instance may use, fixed at startup.
pub struct ComponentConfig {
    pub variables: HashMap<String, Value>,
    pub sqlite_databases: HashSet<String>,
    /// Label -> database file; only labels the app defines.
    pub sqlite_files: Arc<HashMap<String, PathBuf>>,
    pub allowed_hosts: AllowedHosts,
    pub environment: Vec<(String, String)>,
    pub stdout: TeeOutput,
    pub stderr: TeeOutput,
    /// Bound on connecting to an outbound database.
    pub connect_timeout: Duration,
}

/// Per-store data.
pub struct HostState {
    pub table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: NoOutboundHttp,
    pub limits: StoreLimits,
    pub component: Arc<ComponentConfig>,
    /// The CPU lane a long-running request holds while it runs (see
    /// [`set_deadline`]); released when the request ends.
    pub cpu_lane: CpuLane,
}

/// A request's hold on one of the [`cpu_lanes`], if it has one.
pub type CpuLane = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

/// Guest execution observed at this many epoch ticks makes a request
/// long-running: from then on it runs only while holding a CPU lane.
const LONG_RUNNING_TICKS: u32 = 3;

/// One lane per core: long-running requests (an image resize) take turns on
/// them, at most one per core at a time, so however many are in flight the
/// run queues never hold more than one long request per worker thread, and a
/// short request waits for at most one tick of it between its own steps.
fn cpu_lanes() -> &'static Arc<tokio::sync::Semaphore> {
    static LANES: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    LANES.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Arc::new(tokio::sync::Semaphore::new(cores))
    })
}

/// Gives up the lane a request holds (at the end of the request).
pub fn release_cpu_lane(store: &Store<HostState>) {
    let held = store.data().cpu_lane.lock().map(|mut l| l.take());
    drop(held);
}

/// Marker for the `spin:*` bindings: they operate on the whole `HostState`.
pub struct SpinHost;

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

pub fn http_view(state: &mut HostState) -> WasiHttpCtxView<'_> {
    state.http()
}

/// Outbound HTTP is not granted by this app's manifest and is not implemented:
/// every request is denied, as Spin denies hosts missing from
/// `allowed_outbound_hosts`.
struct NoOutboundHttp;

impl WasiHttpHooks for NoOutboundHttp {
    fn send_request(
        &mut self,
        _request: http::Request<wasmtime_wasi_http::WasiBody>,
        _options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<wasmtime_wasi_http::WasiBody>,
                        Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
                    ),
                    wasmtime_wasi_http::Error,
                >,
            > + Send,
    > {
        Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) })
    }
}

/// Engine-wide limits.
#[derive(Debug, Clone, Copy)]
pub struct EngineLimits {
    pub memory_limit_bytes: usize,
    /// Concurrent instances the pool is sized for.
    pub max_instances: u32,
}

pub fn build_engine(limits: EngineLimits) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.concurrency_support(true);
    config.epoch_interruption(true);
    let mut pool = PoolingAllocationConfig::default();
    let n = limits.max_instances;
    // spin-sdk components hold a handful of core instances, memories and
    // tables; the per-component maxima leave room for bigger ones.
    pool.total_component_instances(n)
        .total_core_instances(n * 16)
        .total_memories(n * 4)
        .total_tables(n * 8)
        .total_stacks(n)
        .max_core_instances_per_component(64)
        .max_memories_per_component(16)
        .max_tables_per_component(32)
        .max_memory_size(limits.memory_limit_bytes);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(e) => Ok(e),
        Err(pool_err) => {
            // Some sandboxes refuse the large virtual reservation the pool
            // needs; fall back to on-demand allocation (limits still apply
            // through the store's ResourceLimiter).
            eprintln!("runner: pooling allocator unavailable ({pool_err}); using on-demand allocation");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(anyhow::Error::from)
        }
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("runner-epoch".into())
            .spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub fn build_linker(engine: &Engine) -> Result<Linker<HostState>> {
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

/// A fresh store for one request (or one reusable instance).
pub fn new_store(
    engine: &Engine,
    component: &Arc<ComponentConfig>,
    memory_limit_bytes: usize,
    timeout: Duration,
) -> Store<HostState> {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(component.stdout.clone()).stderr(component.stderr.clone());
    for (k, v) in &component.environment {
        wasi.env(k, v);
    }
    let state = HostState {
        table: ResourceTable::new(),
        wasi: wasi.build(),
        http: WasiHttpCtx::new(),
        hooks: NoOutboundHttp,
        limits: StoreLimitsBuilder::new().memory_size(memory_limit_bytes).build(),
        component: component.clone(),
        cpu_lane: CpuLane::default(),
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limits);
    set_deadline(&mut store, timeout);
    store
}

/// Arms the request's deadline and its share of the CPU. At every epoch
/// tick a running guest yields to the executor, so a CPU-heavy request (an
/// image resize) takes turns with the others instead of holding a worker
/// thread until it ends; a request seen running at [`LONG_RUNNING_TICKS`]
/// ticks also queues for a CPU lane at each tick (see [`cpu_lanes`]). Once
/// `timeout` has passed it traps instead, even in a busy loop that never
/// calls the host. (Spin traps at the deadline but neither yields nor
/// queues: there a long guest keeps its worker thread, and requests queued
/// behind it wait.)
pub fn set_deadline(store: &mut Store<HostState>, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    let lane = store.data().cpu_lane.clone();
    let mut ticks_seen = 0u32;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |_| {
        if std::time::Instant::now() >= deadline {
            return Ok(UpdateDeadline::Interrupt);
        }
        ticks_seen += 1;
        if ticks_seen < LONG_RUNNING_TICKS {
            return Ok(UpdateDeadline::Yield(1));
        }
        let lane = lane.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                // Hand the lane to the next long request in line (the
                // semaphore is FIFO), let the short ones run, then queue.
                let held = lane.lock().map(|mut l| l.take());
                drop(held);
                tokio::task::yield_now().await;
                let permit = cpu_lanes().clone().acquire_owned().await.ok();
                if let Ok(mut l) = lane.lock() {
                    *l = permit;
                }
            }),
        ))
    });
}

/// Compiles `wasm_path`, or loads the artefact cached under `cache_dir`
/// (keyed by the wasm's SHA-256 and the engine's compatibility hash, which
/// covers the wasmtime version and compilation settings).
pub fn load_component(engine: &Engine, wasm_path: &Path, cache_dir: &Path) -> Result<Component> {
    let bytes = std::fs::read(wasm_path).with_context(|| format!("cannot read component {}", wasm_path.display()))?;
    let digest = Sha256::digest(&bytes);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let key = format!(
        "{}-{:016x}.cwasm",
        digest.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        h.finish()
    );
    // Concurrent loads of the same component in this process (e.g. parallel
    // tests) wait for one compile instead of each compiling it.
    let slot = {
        static IN_PROGRESS: std::sync::Mutex<Option<HashMap<String, Arc<std::sync::Mutex<()>>>>> =
            std::sync::Mutex::new(None);
        let mut map = IN_PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
        map.get_or_insert_with(HashMap::new)
            .entry(key.clone())
            .or_default()
            .clone()
    };
    let _compiling = slot.lock().unwrap_or_else(|p| p.into_inner());
    let cached = cache_dir.join(key);
    if cached.exists() {
        // SAFETY: the file was written by `Component::serialize` below under a
        // name derived from the exact wasm bytes and this engine's settings;
        // `deserialize_file` still checks the header, version and config.
        match unsafe { Component::deserialize_file(engine, &cached) } {
            Ok(c) => return Ok(c),
            Err(e) => eprintln!("runner: ignoring unusable cache entry {}: {e}", cached.display()),
        }
    }
    let component = Component::new(engine, &bytes)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot compile component {}", wasm_path.display()))?;
    if let Err(e) = write_cache(&component, cache_dir, &cached) {
        eprintln!("runner: cannot write compile cache {}: {e:#}", cached.display());
    }
    Ok(component)
}

fn write_cache(component: &Component, dir: &Path, path: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    // Unique per process and call, so concurrent writers never share a file;
    // the rename publishes only complete artefacts.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{seq}", std::process::id()));
    std::fs::write(&tmp, component.serialize()?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// A row stream and the future that reports how it ended.
pub type BufferedRows<R, E> = (
    wasmtime::component::StreamReader<R>,
    wasmtime::component::FutureReader<Result<(), E>>,
);

/// The row stream and completion future of a `*-async` query whose rows the
/// host has already fetched (SQLite and PostgreSQL both run the statement to
/// completion first): the rows stream from memory, the future is ready.
pub fn buffered_rows<R, E>(
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
