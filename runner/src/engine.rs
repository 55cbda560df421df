//! Engine setup, as `spin up` configures wasmtime: component model with
//! async, epoch interruption ticking every 10 ms, the pooling allocator
//! sized like Spin's defaults (and, like Spin, keeping resident what
//! `SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT` / `_TABLE_KEEP_RESIDENT` say
//! of a freed slot), and wasmtime's own compilation cache (on by default, in
//! `~/.cache/wasmtime`, as in Spin).

use anyhow::{Context as _, Result};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Cache, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Spin's `DEFAULT_EPOCH_TICK_INTERVAL`. The epoch only serves the request
/// timeout (see [`crate::handler`]); it never makes a guest yield.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Spin's default pool size (`SPIN_MAX_INSTANCE_COUNT`).
const POOLED_INSTANCES: u32 = 1000;

/// Spin's pooling limit on a linear memory: 4 GiB.
const MAX_MEMORY_SIZE: usize = 4 << 30;

/// The engine every component of the app is compiled for and run on.
pub(crate) fn build(cache: bool) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.wasm_component_model_async(true);
    config.concurrency_support(true);
    config.epoch_interruption(true);
    if cache {
        // `Cache::from_file(None)` reads wasmtime's default cache config, as
        // Spin does unless given `--cache` or `--disable-cache`.
        let cache = Cache::from_file(None).map_err(anyhow::Error::from);
        config.cache(Some(cache.context("wasmtime cache configuration")?));
    }
    let mut pool = PoolingAllocationConfig::default();
    let n = POOLED_INSTANCES;
    pool.total_component_instances(n)
        .total_memories(n)
        .total_tables(2 * n)
        .total_stacks(n)
        .total_core_instances(4 * n)
        .table_elements(100_000)
        .max_component_instance_size(10 << 20)
        .max_core_instance_size(10 << 20)
        .max_core_instances_per_component(200)
        .max_tables_per_component(64)
        .max_memories_per_component(32)
        .max_tables_per_module(2)
        .max_memories_per_module(2)
        .max_memory_size(MAX_MEMORY_SIZE)
        .linear_memory_keep_resident(spin_setting("SPIN_WASMTIME_LINEAR_MEMORY_KEEP_RESIDENT", 2 << 20))
        .table_keep_resident(spin_setting("SPIN_WASMTIME_TABLE_KEEP_RESIDENT", 512 << 10));
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => Ok(engine),
        Err(pool_err) => {
            // Spin probes the address space and falls back the same way when
            // the pool's virtual reservation is refused.
            eprintln!("runner: pooling allocator unavailable ({pool_err}); using on-demand allocation");
            config.allocation_strategy(InstanceAllocationStrategy::OnDemand);
            Engine::new(&config).map_err(anyhow::Error::from)
        }
    }
}

/// One of the pool settings Spin reads from its environment (spin
/// `crates/core/src/lib.rs`): the variable's value, else Spin's default. As
/// in Spin, a value that does not parse is an error at startup.
fn spin_setting(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|e| panic!("failed to parse {name}={value:?}: {e}")),
        Err(_) => default,
    }
}

/// Compiles a component, or loads it from the engine's cache.
pub(crate) fn load_component(engine: &Engine, wasm: &Path) -> Result<Component> {
    Component::from_file(engine, wasm)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot load component {}", wasm.display()))
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub(crate) struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    /// Starts the ticking thread; it stops with the ticker or the engine.
    pub(crate) fn start(engine: &Engine) -> EpochTicker {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = engine.weak();
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("runner-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .expect("spawn the epoch thread");
        EpochTicker { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
