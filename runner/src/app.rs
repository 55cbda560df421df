//! The loaded application: manifest + resolved variables + router + compiled
//! components, and the request path (route, `spin-*` headers, a fresh
//! instance, limits, `500` on trap or timeout).

use crate::host::{self, ComponentConfig, EngineLimits, EpochTicker, HostState};
use crate::manifest::{DEFAULT_LABEL, Manifest, RouteConfig};
use crate::outbound::{AllowedHost, AllowedHosts};
use crate::routes::{RouteMatch, Router};
use crate::stdio::{TeeOutput, Which};
use crate::variables::{self, Sources};
use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Full};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{AsContextMut, Engine, Store};
use wasmtime_wasi_http::handler::{Prepared, Proxy, ProxyPre};

/// Well-known route Spin answers itself.
const HEALTH_ROUTE: &str = "/.well-known/spin/health";

/// Spin's default `--max-instance-reuse-count` for WASI 0.3 HTTP handlers.
pub const DEFAULT_MAX_INSTANCE_REUSE_COUNT: u32 = 128;

/// Idle instances kept per component between requests: as many as a
/// loaded component commonly has in flight, so that a steady load is served
/// by reused instances rather than fresh ones. (Spin serves up to 16
/// concurrent requests per instance instead; this runner reuses sequentially.)
const MAX_IDLE_INSTANCES_PER_COMPONENT: usize = 32;

/// How long an idle instance is kept, as Spin's default
/// `idle_instance_timeout`: a burst's extra instances, and their memory, go
/// soon after it.
const IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct Options {
    /// Path to `spin.toml`.
    pub manifest: PathBuf,
    /// Runtime state (SQLite file, logs, compile cache). Empty means `.spin`
    /// next to the manifest, as `spin up` does.
    pub state_dir: PathBuf,
    /// `--variable k=v` pairs.
    pub variables: Vec<(String, String)>,
    /// Environment for `SPIN_VARIABLE_*`; `None` reads the process environment.
    pub env: Option<HashMap<String, String>>,
    /// `--sqlite` arguments (`@file.sql` or a statement), run at startup
    /// against the `default` database.
    pub sqlite_statements: Vec<String>,
    /// Load only these components; routes of others answer `404`.
    pub only_components: Option<Vec<String>>,
    /// Per-request wall-clock limit.
    pub timeout: Duration,
    /// Per-instance linear memory limit.
    pub memory_limit_bytes: usize,
    /// How many requests one instance serves (one after another) before it
    /// is dropped: Spin's `--max-instance-reuse-count`, whose default for
    /// WASI 0.3 handlers is 128. `1` gives every request a fresh instance.
    pub max_instance_reuse_count: u32,
    /// Copy component stdout/stderr to the terminal (always written to
    /// `<state_dir>/logs/`).
    pub echo_component_output: bool,
    /// How long `serve` waits for in-flight requests after shutdown starts.
    pub drain_timeout: Duration,
    /// Bound on connecting to an outbound database.
    pub connect_timeout: Duration,
    /// Concurrent instances the pooling allocator is sized for.
    pub max_instances: u32,
    /// Largest request body accepted over HTTP (bigger is `413`).
    pub max_request_body_bytes: usize,
    /// Compiled-component cache; `None` means `<state_dir>/cache`.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            manifest: PathBuf::from("spin.toml"),
            state_dir: PathBuf::new(),
            variables: Vec::new(),
            env: None,
            sqlite_statements: Vec::new(),
            only_components: None,
            timeout: Duration::from_secs(30),
            memory_limit_bytes: 256 << 20,
            max_instance_reuse_count: DEFAULT_MAX_INSTANCE_REUSE_COUNT,
            echo_component_output: true,
            drain_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_instances: 100,
            max_request_body_bytes: 64 << 20,
            cache_dir: None,
        }
    }
}

struct Loaded {
    config: Arc<ComponentConfig>,
    pre: ProxyPre<HostState>,
    /// Idle instances, oldest first.
    idle: Mutex<Vec<Idle>>,
}

/// A reusable instance between requests.
struct Idle {
    store: Store<HostState>,
    proxy: Proxy,
    /// Requests it has served.
    served: u32,
    since: std::time::Instant,
}

struct Inner {
    engine: Engine,
    _ticker: EpochTicker,
    router: Router,
    components: HashMap<String, Loaded>,
    /// Idle instances across components: each holds a slot of the instance
    /// pool, so together they may use at most half of it.
    idle_total: std::sync::atomic::AtomicUsize,
    opts: Options,
    state_dir: PathBuf,
}

/// A loaded application; cheap to clone and shareable across tasks.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

// Tests and servers share one `App` across tasks and threads.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<App>();
};

impl App {
    /// Validates the manifest, resolves variables, prepares the state
    /// directory and compiles every routed component. All configuration
    /// problems are reported together.
    pub async fn load(opts: Options) -> Result<App> {
        let opts2 = opts.clone();
        // Compilation is CPU-bound; keep it off the async workers.
        tokio::task::spawn_blocking(move || Self::load_blocking(opts2))
            .await
            .context("loader panicked")?
    }

    fn load_blocking(opts: Options) -> Result<App> {
        let checked = check(&opts, true)?;
        let Checked {
            manifest,
            app_vars: _,
            router,
            mut configs,
            state_dir,
        } = checked;
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;

        let default_db = state_dir.join("sqlite_db.db");
        if !opts.sqlite_statements.is_empty() {
            let used = manifest
                .components
                .values()
                .any(|c| c.sqlite_databases.iter().any(|d| d == DEFAULT_LABEL));
            if used {
                crate::host_sqlite::run_startup_statements(&default_db, &opts.sqlite_statements)?;
            } else {
                // `spin up` skips `--sqlite` when no component uses the database.
                eprintln!("runner: no component uses the default SQLite database; --sqlite statements skipped");
            }
        }

        let engine = host::build_engine(EngineLimits {
            memory_limit_bytes: opts.memory_limit_bytes,
            max_instances: opts.max_instances,
        })?;
        let ticker = EpochTicker::start(&engine);
        let linker = host::build_linker(&engine)?;
        let cache_dir = opts.cache_dir.clone().unwrap_or_else(|| state_dir.join("cache"));
        let mut components = HashMap::new();
        for (id, config) in configs.drain() {
            let path = manifest.source_path(&id)?;
            let component =
                host::load_component(&engine, &path, &cache_dir).with_context(|| format!("component {id:?}"))?;
            let pre = linker
                .instantiate_pre(&component)
                .map_err(anyhow::Error::from)
                .with_context(|| {
                    format!(
                        "component {id:?} ({}) needs an import the runner does not provide",
                        path.display()
                    )
                })?;
            let pre = match wasmtime_wasi_http::p3::bindings::ServicePre::new(pre.clone()) {
                Ok(p) => ProxyPre::P3(p),
                Err(p3_err) => match wasmtime_wasi_http::p2::bindings::ProxyPre::new(pre) {
                    Ok(p) => ProxyPre::P2(p),
                    Err(_) => bail!(
                        "component {id:?} exports neither wasi:http/handler@0.3.0 nor wasi:http/incoming-handler@0.2: {p3_err}"
                    ),
                },
            };
            components.insert(
                id,
                Loaded {
                    config: Arc::new(config),
                    pre,
                    idle: Mutex::new(Vec::new()),
                },
            );
        }
        Ok(App {
            inner: Arc::new(Inner {
                engine,
                _ticker: ticker,
                router,
                components,
                idle_total: Default::default(),
                opts,
                state_dir,
            }),
        })
    }

    /// `(route, component)` for every served route, in manifest order.
    pub fn routes(&self) -> Vec<(String, String)> {
        self.inner
            .router
            .routes()
            .map(|(r, c)| (r.to_string(), c.to_string()))
            .collect()
    }

    pub fn state_dir(&self) -> &std::path::Path {
        &self.inner.state_dir
    }

    /// Handles one request in-process, with the full body collected.
    pub async fn handle(&self, req: http::Request<Bytes>, client_addr: SocketAddr) -> Result<http::Response<Bytes>> {
        let path = req.uri().path().to_string();
        if path == HEALTH_ROUTE {
            return Ok(text(StatusCode::OK, "OK"));
        }
        let Some(m) = self.inner.router.route(&path) else {
            return Ok(text(StatusCode::NOT_FOUND, ""));
        };
        let Some(loaded) = self.inner.components.get(&m.component) else {
            return Ok(text(StatusCode::NOT_FOUND, ""));
        };
        let req = prepare_request(req, &m, client_addr)?;
        let timeout = self.inner.opts.timeout;
        match tokio::time::timeout(timeout, self.call(loaded, req)).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => {
                eprintln!("runner: component {:?} failed: {e:#}", m.component);
                Ok(text(StatusCode::INTERNAL_SERVER_ERROR, ""))
            }
            Err(_) => {
                eprintln!(
                    "runner: component {:?} timed out after {}ms",
                    m.component,
                    timeout.as_millis()
                );
                Ok(text(StatusCode::INTERNAL_SERVER_ERROR, ""))
            }
        }
    }

    async fn call(&self, loaded: &Loaded, req: http::Request<Bytes>) -> Result<http::Response<Bytes>> {
        let opts = &self.inner.opts;
        let (mut store, proxy, served) = match self.take_idle(loaded)? {
            Some(Idle {
                mut store,
                proxy,
                served,
                ..
            }) => {
                host::set_deadline(&mut store, opts.timeout);
                (store, proxy, served)
            }
            None => {
                let mut store = host::new_store(
                    &self.inner.engine,
                    &loaded.config,
                    opts.memory_limit_bytes,
                    opts.timeout,
                );
                let proxy = loaded.pre.instantiate_async(&mut store).await?;
                (store, proxy, 0)
            }
        };
        // A trap or an error returns early: that instance (and any CPU lane
        // it held) is dropped, never reused.
        let resp = invoke(&mut store, &proxy, req).await?;
        host::release_cpu_lane(&store);
        if served + 1 < opts.max_instance_reuse_count {
            self.put_idle(
                loaded,
                Idle {
                    store,
                    proxy,
                    served: served + 1,
                    since: std::time::Instant::now(),
                },
            )?;
        }
        Ok(resp)
    }

    /// The most recently used idle instance, after dropping the ones idle
    /// for longer than [`IDLE_INSTANCE_TIMEOUT`] (outside the lock: dropping
    /// an instance returns its memory to the pool).
    fn take_idle(&self, loaded: &Loaded) -> Result<Option<Idle>> {
        let now = std::time::Instant::now();
        let (taken, stale) = {
            let mut idle = loaded.idle.lock().map_err(|_| anyhow!("poisoned"))?;
            // Oldest first, so the expired ones are a prefix.
            let expired = idle.partition_point(|i| now.duration_since(i.since) > IDLE_INSTANCE_TIMEOUT);
            let stale: Vec<Idle> = idle.drain(..expired).collect();
            (idle.pop(), stale)
        };
        let gone = stale.len() + usize::from(taken.is_some());
        self.inner.idle_total.fetch_sub(gone, Ordering::Relaxed);
        Ok(taken)
    }

    /// Keeps `instance` for a later request, within the per-component and
    /// the global idle budgets; otherwise drops it (outside the lock).
    fn put_idle(&self, loaded: &Loaded, instance: Idle) -> Result<()> {
        let budget = self.inner.opts.max_instances as usize / 2;
        if self.inner.idle_total.fetch_add(1, Ordering::Relaxed) >= budget {
            self.inner.idle_total.fetch_sub(1, Ordering::Relaxed);
            return Ok(());
        }
        let rejected = {
            let mut idle = loaded.idle.lock().map_err(|_| anyhow!("poisoned"))?;
            if idle.len() < MAX_IDLE_INSTANCES_PER_COMPONENT {
                idle.push(instance);
                None
            } else {
                Some(instance)
            }
        };
        if rejected.is_some() {
            self.inner.idle_total.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Serves HTTP/1.1 on `listener` until `shutdown` resolves, then stops
    /// accepting and lets in-flight requests finish (up to `drain_timeout`).
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        crate::server::serve(self, listener, shutdown).await
    }

    pub(crate) fn max_request_body_bytes(&self) -> usize {
        self.inner.opts.max_request_body_bytes
    }

    pub(crate) fn drain_timeout(&self) -> Duration {
        self.inner.opts.drain_timeout
    }
}

/// Runs the guest's handler for one request and collects the response.
async fn invoke(
    store: &mut Store<HostState>,
    proxy: &Proxy,
    req: http::Request<Bytes>,
) -> Result<http::Response<Bytes>> {
    let req = req.map(|b| {
        Full::new(b)
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync()
    });
    let (tx, rx) = futures::channel::oneshot::channel();
    let result = store
        .run_concurrent(async |accessor| -> wasmtime::Result<http::Response<Bytes>> {
            let prepared = accessor.with(|mut s| Prepared::new(s.as_context_mut(), proxy, req, host::http_view, tx))?;
            // The call and the body collection run together: a guest may
            // still be writing its body when its handler call returns (p3) or
            // block on a full body pipe before returning (p2).
            let call = prepared.run(accessor, std::future::pending::<()>());
            let collect = async {
                let resp = rx
                    .await
                    .map_err(|_| wasmtime::format_err!("the guest produced no response"))??;
                let (parts, body) = resp.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(|e| wasmtime::format_err!("response body failed: {e}"))?
                    .to_bytes();
                Ok::<_, wasmtime::Error>(http::Response::from_parts(parts, body))
            };
            let (called, collected) = futures::join!(call, collect);
            called?;
            collected
        })
        .await?;
    Ok(result?)
}

fn text(status: StatusCode, body: &'static str) -> http::Response<Bytes> {
    let mut r = http::Response::new(Bytes::from_static(body.as_bytes()));
    *r.status_mut() = status;
    if !body.is_empty() {
        r.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    r
}

/// Adds Spin's `spin-*` headers (overriding client-sent ones, as Spin does)
/// and gives the guest an absolute URI.
fn prepare_request(req: http::Request<Bytes>, m: &RouteMatch, client_addr: SocketAddr) -> Result<http::Request<Bytes>> {
    let (mut parts, body) = req.into_parts();
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_string());
    let scheme = parts.uri.scheme_str().unwrap_or("http").to_string();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".to_string());
    let full_url = format!("{scheme}://{host}{path_and_query}");
    let mut headers: Vec<(String, String)> = vec![
        ("spin-path-info".into(), m.path_info.clone()),
        ("spin-full-url".into(), full_url.clone()),
        ("spin-matched-route".into(), m.based_route()),
        ("spin-base-path".into(), "/".into()),
        ("spin-raw-component-route".into(), m.raw_route.clone()),
        ("spin-component-route".into(), m.raw_route_or_prefix().to_string()),
        ("spin-client-addr".into(), client_addr.to_string()),
    ];
    for (name, value) in &m.named {
        headers.push((
            format!("spin-path-match-{}", name.replace('_', "-").to_ascii_lowercase()),
            value.clone(),
        ));
    }
    for (k, v) in headers {
        parts
            .headers
            .insert(HeaderName::from_bytes(k.as_bytes())?, HeaderValue::from_str(&v)?);
    }
    parts.uri = full_url.parse().context("cannot build the request URI")?;
    Ok(http::Request::from_parts(parts, body))
}

/// The result of validating a manifest against the runner and the variable
/// sources, before anything is compiled.
struct Checked {
    manifest: Manifest,
    #[allow(dead_code)]
    app_vars: variables::ResolvedVariables,
    router: Router,
    configs: HashMap<String, ComponentConfig>,
    state_dir: PathBuf,
}

/// `runner check`: validates the manifest and resolves every variable and
/// templated allow-list entry, returning every problem found.
pub fn check_only(opts: &Options) -> Result<Vec<(String, String)>> {
    let c = check(opts, false)?;
    Ok(c.router
        .routes()
        .map(|(r, comp)| (r.to_string(), comp.to_string()))
        .collect())
}

/// `open_logs` is false for `runner check`, which must not touch the state dir.
/// `runner check --config-schema FILE`: validates each component's rendered
/// variables (an object of strings, as the component sees them) against a
/// JSON Schema, naming every bad variable. A secret variable's value never
/// appears in the messages.
pub fn check_config_schema(opts: &Options, schema_path: &std::path::Path) -> Result<()> {
    let schema_text =
        std::fs::read_to_string(schema_path).with_context(|| format!("cannot read {}", schema_path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&schema_text).with_context(|| format!("{} is not JSON", schema_path.display()))?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| anyhow!("{} is not a valid JSON Schema: {e}", schema_path.display()))?;
    let checked = check(opts, false)?;
    let mut problems = Vec::new();
    let mut ids: Vec<&String> = checked.configs.keys().collect();
    ids.sort();
    for id in ids {
        let vars = &checked.configs[id].variables;
        let object: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.value.clone())))
            .collect();
        let instance = serde_json::Value::Object(object);
        for e in validator.iter_errors(&instance) {
            let pointer = e.instance_path().as_str().to_string();
            let name = pointer
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or("")
                .to_string();
            let keyword = e.kind().keyword().to_string();
            let secret = vars.get(&name).is_some_and(|v| v.secret)
                || vars
                    .values()
                    .any(|v| v.secret && e.to_string().contains(&v.value) && !v.value.is_empty());
            let message = if keyword == "additionalProperties" {
                "not a variable this schema knows".to_string()
            } else if secret {
                format!("fails `{keyword}` (value hidden: secret)")
            } else {
                e.to_string()
            };
            let what = if name.is_empty() {
                "variables".to_string()
            } else {
                format!("variable {name:?}")
            };
            problems.push(format!("component {id:?}: {what}: {message}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!(
            "the configuration does not match {}:\n  - {}",
            schema_path.display(),
            problems.join("\n  - ")
        )
    }
}

fn check(opts: &Options, open_logs: bool) -> Result<Checked> {
    let manifest = Manifest::load(&opts.manifest)?;
    let env = match &opts.env {
        Some(e) => e.clone(),
        None => std::env::vars().collect(),
    };
    let sources = Sources {
        cli: opts.variables.clone(),
        env,
    };
    let mut problems = Vec::new();
    let app_vars = match variables::resolve(&manifest, &sources) {
        Ok(v) => v,
        Err(p) => {
            problems.extend(p);
            variables::ResolvedVariables::default()
        }
    };
    if !problems.is_empty() {
        bail!("cannot start the application:\n  - {}", problems.join("\n  - "));
    }

    let mut routes = Vec::new();
    for t in &manifest.http_triggers {
        if let RouteConfig::Route(r) = &t.route {
            routes.push((r.as_str(), t.component_id()?));
        }
    }
    let (router, duplicates) = Router::build(routes.iter().copied())?;
    for d in duplicates {
        eprintln!(
            "runner: warning: route {:?} is declared more than once; component {:?} replaces {:?}",
            d.route, d.effective, d.replaced
        );
    }

    let routed: HashSet<&str> = routes.iter().map(|(_, c)| *c).collect();
    let selected: Vec<String> = match &opts.only_components {
        Some(only) => {
            for id in only {
                if !manifest.components.contains_key(id) {
                    problems.push(format!("--component {id:?}: no such component in the manifest"));
                }
            }
            only.clone()
        }
        None => routed.iter().map(|s| s.to_string()).collect(),
    };

    let state_dir = if opts.state_dir.as_os_str().is_empty() {
        manifest.dir.join(".spin")
    } else {
        opts.state_dir.clone()
    };
    let sqlite_files = Arc::new(HashMap::from([(
        DEFAULT_LABEL.to_string(),
        state_dir.join("sqlite_db.db"),
    )]));
    let log_dir = state_dir.join("logs");

    let mut configs = HashMap::new();
    for id in selected {
        let Some(decl) = manifest.components.get(&id) else {
            continue;
        };
        let vars = match variables::component_variables(&manifest, &id, &app_vars) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("component {id:?}: {e:#}"));
                continue;
            }
        };
        let mut allowed = Vec::new();
        for entry in &decl.allowed_outbound_hosts {
            let rendered = variables::Template::parse(entry).and_then(|t| t.render(&app_vars));
            match rendered.and_then(|v| {
                AllowedHost::parse(&v.value)
                    .map_err(|e| (e, v.secret))
                    .map_err(|(e, secret)| {
                        if secret {
                            anyhow!("{e} (value hidden: it uses a secret variable)")
                        } else {
                            anyhow!("{e} (resolved to {:?})", v.value)
                        }
                    })
            }) {
                Ok(h) => allowed.push(h),
                Err(e) => problems.push(format!(
                    "component {id:?}: allowed_outbound_hosts entry {entry:?}: {e:#}"
                )),
            }
        }
        let echo = opts.echo_component_output;
        let logs = open_logs.then_some(log_dir.as_path());
        let stdout = TeeOutput::open(logs, &id, Which::Stdout, echo);
        let stderr = TeeOutput::open(logs, &id, Which::Stderr, echo);
        let (stdout, stderr) = match (stdout, stderr) {
            (Ok(o), Ok(e)) => (o, e),
            (Err(e), _) | (_, Err(e)) => {
                problems.push(format!(
                    "component {id:?}: cannot open log files in {}: {e}",
                    log_dir.display()
                ));
                continue;
            }
        };
        configs.insert(
            id.clone(),
            ComponentConfig {
                variables: vars,
                sqlite_databases: decl.sqlite_databases.iter().cloned().collect(),
                sqlite_files: sqlite_files.clone(),
                allowed_hosts: AllowedHosts(allowed),
                environment: decl.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                stdout,
                stderr,
                connect_timeout: opts.connect_timeout,
            },
        );
    }
    if !problems.is_empty() {
        bail!("cannot start the application:\n  - {}", problems.join("\n  - "));
    }
    Ok(Checked {
        manifest,
        app_vars,
        router,
        configs,
        state_dir,
    })
}
