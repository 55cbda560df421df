//! Instance reuse as Spin 4 does it: each component gets a
//! `wasmtime_wasi_http::handler::ProxyHandler`, whose workers each own one
//! instance. A WASI 0.3 instance serves up to `max_requests` requests
//! (default 128), up to `max_concurrent` at once (16), and is dropped after
//! `idle_timeout` without work (1 s). A WASI 0.2 instance serves one request.
//! The three policies below are the ones `spin up` plugs into the same
//! handler (`crates/trigger-http/src/server.rs`).

use crate::host::{self, ComponentConfig, HostState};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::GuestTaskId;
use wasmtime::{Engine, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi_http::handler::{
    HandlerState, Instance, ProxyPre, ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

/// Spin 4.1's defaults for WASI 0.3 handlers (`spin up --help`).
#[derive(Debug, Clone, Copy)]
pub struct Reuse {
    /// `--max-instance-reuse-count`: requests one instance serves in all.
    pub max_requests: usize,
    /// `--max-instance-concurrent-reuse-count`: requests in flight at once.
    pub max_concurrent: usize,
    /// `--idle-instance-timeout`.
    pub idle_timeout: Duration,
    /// `--request-timeout`: none by default, as in Spin.
    pub request_timeout: Option<Duration>,
}

impl Default for Reuse {
    fn default() -> Self {
        Reuse {
            max_requests: 128,
            max_concurrent: 16,
            idle_timeout: Duration::from_secs(1),
            request_timeout: None,
        }
    }
}

/// One component's instances.
pub(crate) struct ComponentHandler {
    engine: Engine,
    pre: ProxyPre<HostState>,
    config: Arc<ComponentConfig>,
    postgres: Arc<crate::host_postgres::Pools>,
    reuse: Reuse,
}

impl ComponentHandler {
    /// The handler of one compiled component, with the reuse policy its
    /// WASI version gets in Spin.
    pub(crate) fn new(engine: Engine, pre: ProxyPre<HostState>, config: ComponentConfig, reuse: Reuse) -> Self {
        // Spin serves WASI 0.2 handlers with a fresh instance per request,
        // whatever the reuse flags say.
        let reuse = match pre {
            ProxyPre::P2(_) => Reuse {
                max_requests: 1,
                max_concurrent: 1,
                ..reuse
            },
            ProxyPre::P3(_) => reuse,
        };
        ComponentHandler {
            engine,
            pre,
            config: Arc::new(config),
            postgres: Default::default(),
            reuse,
        }
    }
}

impl HandlerState for ComponentHandler {
    type StoreData = HostState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<HostState, Expiration, Worker>> {
        let mut store = host::new_store(&self.engine, &self.config, &self.postgres);
        arm_timeout(&mut store, self.reuse.request_timeout.is_some());
        let proxy = self.pre.instantiate_async(&mut store).await?;
        Ok(Instance {
            store,
            proxy,
            view: host::http_view,
            expiration: Expiration {
                idle_timeout: self.reuse.idle_timeout,
                request_timeout: self.reuse.request_timeout.unwrap_or(Duration::MAX),
                sleep: Box::pin(tokio::time::sleep(Duration::from_secs(86_400))),
            },
            state: Worker {
                component: self.config.id.clone(),
                reuse: self.reuse,
            },
        })
    }
}

/// The epoch only enforces `--request-timeout`: a guest past its deadline
/// traps even in a loop that never calls the host. It never yields, so a
/// running guest keeps its thread until it returns, as in Spin. (Spin sets
/// no epoch deadline at all, so there a busy loop outlives its timeout.)
fn arm_timeout(store: &mut Store<HostState>, timeout: bool) {
    if !timeout {
        store.set_epoch_deadline(u64::MAX / 2);
        return;
    }
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(|store| match store.data().deadline {
        Some(deadline) if Instant::now() >= deadline => Ok(UpdateDeadline::Interrupt),
        _ => Ok(UpdateDeadline::Continue(1)),
    });
}

/// When a worker's instance goes: after `idle_timeout` without work, or
/// `request_timeout` after its latest request started.
pub(crate) struct Expiration {
    idle_timeout: Duration,
    request_timeout: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>, status: WorkerStatus, start: Instant) -> Poll<()> {
        let me = self.get_mut();
        let timeout = match status {
            WorkerStatus::Idle => me.idle_timeout,
            WorkerStatus::Requests | WorkerStatus::PostReturn => me.request_timeout,
        };
        let Some(deadline) = start.checked_add(timeout) else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if me.sleep.deadline() != deadline {
            me.sleep.as_mut().reset(deadline);
        }
        me.sleep.as_mut().poll(cx)
    }
}

/// How many requests a worker takes, and when each one expires.
pub(crate) struct Worker {
    component: String,
    reuse: Reuse,
}

impl WorkerState for Worker {
    type StoreData = HostState;
    type RequestData = ();

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.reuse.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.reuse.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, HostState>,
        (): (),
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        match self.reuse.request_timeout {
            Some(timeout) => {
                store.data_mut().deadline = Some(Instant::now() + timeout);
                Box::pin(tokio::time::sleep(timeout))
            }
            None => Box::pin(std::future::pending()),
        }
    }

    fn drop(&self, store: Store<HostState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            eprintln!("runner: component {:?}: instance dropped: {error:?}", self.component);
        }
        drop(store);
    }
}
