//! The loaded application: manifest, resolved variables, router, and one
//! [`ComponentHandler`] per component; and the request path Spin follows
//! (well-known routes, routing, the `spin-*` headers, the component's
//! handler, an empty `500` when the guest fails).

use crate::engine::{self, EpochTicker};
use crate::handler::{ComponentHandler, Reuse};
use crate::host::{self, ComponentConfig};
use crate::manifest::{DEFAULT_LABEL, Manifest, RouteConfig};
use crate::routes::{RouteMatch, Router};
use crate::stdio::{TeeOutput, Which};
use crate::variables::{self, Sources};
use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderName, HeaderValue, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Full};
use kit::outbound::{AllowedHost, AllowedHosts};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{ProxyHandler, ProxyPre};

/// Spin answers these itself, before routing.
const WELL_KNOWN_PREFIX: &str = "/.well-known/spin/";

/// How to load and serve the app: `runner up`'s flags, with Spin's names
/// and defaults, for the CLI, the component tests and the bench.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path to `spin.toml`.
    pub manifest: PathBuf,
    /// Runtime state (SQLite file, logs). Empty means `.spin` next to the
    /// manifest, as `spin up` does.
    pub state_dir: PathBuf,
    /// `--variable k=v` pairs.
    pub variables: Vec<(String, String)>,
    /// Environment for `SPIN_VARIABLE_*`; `None` reads the process environment.
    pub env: Option<HashMap<String, String>>,
    /// `--sqlite` arguments (`@file.sql` or a statement), run at startup
    /// against the `default` database.
    pub sqlite_statements: Vec<String>,
    /// Load only these components (`spin up --component-id`); other routes
    /// answer `404`.
    pub only_components: Option<Vec<String>>,
    /// Instance reuse and request timeout, Spin's flags and defaults.
    pub reuse: Reuse,
    /// `--max-instance-memory` in bytes; `None` as in Spin (the pool's 4 GiB).
    pub max_instance_memory: Option<usize>,
    /// Copy component stdout/stderr to the terminal (always written to
    /// `<state_dir>/logs/`).
    pub echo_component_output: bool,
    /// wasmtime's compilation cache (Spin's default); `false` is
    /// `--disable-cache`.
    pub cache: bool,
    /// Connections served at once; more wait in the listen backlog. Spin has
    /// no such cap.
    pub max_connections: usize,
    /// A connection whose request head has not fully arrived in this long is
    /// closed. Spin has no such timeout.
    pub header_read_timeout: Duration,
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
            reuse: Reuse::default(),
            max_instance_memory: None,
            echo_component_output: true,
            cache: true,
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

struct Inner {
    _ticker: EpochTicker,
    name: String,
    version: String,
    router: Router,
    components: HashMap<String, ProxyHandler<ComponentHandler>>,
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

/// A response as the server sends it: the guest's body streams through.
pub type Response = http::Response<WasiBody>;

impl App {
    /// Validates the manifest, resolves variables, runs `--sqlite`, and
    /// compiles (or loads from the cache) every selected component. All
    /// configuration problems are reported together.
    pub async fn load(opts: Options) -> Result<App> {
        let prepared = prepare(&opts, Purpose::Serve)?;
        let state_dir = prepared.state_dir.clone();
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create state dir {}", state_dir.display()))?;
        let default_db = state_dir.join("sqlite_db.db");
        // As `spin up`: before anything is compiled, whether or not a
        // component uses the database.
        crate::host_sqlite::run_startup_statements(&default_db, &opts.sqlite_statements)?;
        let uses_default = prepared
            .configs
            .values()
            .any(|c| c.sqlite_databases.contains(DEFAULT_LABEL));
        if uses_default {
            let shown = std::path::absolute(&default_db).unwrap_or(default_db);
            eprintln!("Storing default SQLite data to {:?}.", shown.display().to_string());
        }
        // Compilation is CPU-bound; keep it off the async workers.
        let reuse = opts.reuse;
        let cache = opts.cache;
        let compiled = tokio::task::spawn_blocking(move || compile(prepared, reuse, cache))
            .await
            .context("loader panicked")??;
        Ok(App {
            inner: Arc::new(Inner {
                _ticker: compiled.ticker,
                name: compiled.name,
                version: compiled.version,
                router: compiled.router,
                components: compiled.components,
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

    /// Where the SQLite file and the component logs live (`--state-dir`).
    pub fn state_dir(&self) -> &std::path::Path {
        &self.inner.state_dir
    }

    /// The options the app was loaded with.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// Handles one request as Spin does. An `Err` is what Spin cannot
    /// answer at all (no usable `Host`): the server closes the connection.
    pub async fn handle(
        &self,
        mut req: http::Request<WasiBody>,
        scheme: Scheme,
        client_addr: SocketAddr,
    ) -> Result<Response> {
        // Spin strips only `Connection` (and service-chaining hosts).
        req.headers_mut().remove(http::header::CONNECTION);
        let path = req.uri().path().to_string();
        if let Some(well_known) = path.strip_prefix(WELL_KNOWN_PREFIX) {
            return Ok(match well_known {
                "health" => full(StatusCode::OK, None, Bytes::from_static(b"OK")),
                "info" => self.info(),
                _ => empty(StatusCode::NOT_FOUND),
            });
        }
        let Some(m) = self.inner.router.route(&path) else {
            return Ok(empty(StatusCode::NOT_FOUND));
        };
        let Some(handler) = self.inner.components.get(&m.component) else {
            // Not selected with --component-id.
            return Ok(empty(StatusCode::NOT_FOUND));
        };
        set_absolute_uri(&mut req, scheme)?;
        if let Err(e) = add_spin_headers(&mut req, &m, client_addr) {
            eprintln!("runner: component {:?}: {e:#}", m.component);
            return Ok(empty(StatusCode::INTERNAL_SERVER_ERROR));
        }
        match handler.handle((), req).await {
            Ok(response) => Ok(response),
            Err(e) => {
                eprintln!("runner: component {:?} failed: {e:?}", m.component);
                Ok(empty(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }

    /// `/.well-known/spin/info`.
    fn info(&self) -> Response {
        let mut info = serde_json::Map::new();
        info.insert("name".into(), self.inner.name.clone().into());
        if !self.inner.version.is_empty() {
            info.insert("version".into(), self.inner.version.clone().into());
        }
        let body = serde_json::to_vec_pretty(&info).expect("a JSON object serialises");
        full(StatusCode::OK, Some("application/json"), Bytes::from(body))
    }

    /// Serves HTTP on `listener` until `shutdown` resolves, then stops at
    /// once: like `spin up`, in-flight requests are not drained.
    pub async fn serve(self, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        crate::server::serve(self, listener, shutdown).await
    }
}

/// A body-less answer of the host's own.
fn empty(status: StatusCode) -> Response {
    let mut r = http::Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    r
}

fn full(status: StatusCode, content_type: Option<&'static str>, body: Bytes) -> Response {
    let mut r = http::Response::new(Full::new(body).map_err(|never| match never {}).boxed_unsync());
    *r.status_mut() = status;
    if let Some(t) = content_type {
        r.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(t));
    }
    r
}

/// The guest sees an absolute URI: the server's scheme, the authority of
/// `Host` (or of the request line), and both must agree, as in Spin.
fn set_absolute_uri<B>(req: &mut http::Request<B>, scheme: Scheme) -> Result<()> {
    let header = req
        .headers()
        .get(http::header::HOST)
        .map(|h| -> Result<Authority> {
            let text = h.to_str().context("'Host' header is not valid UTF-8")?;
            text.parse().context("'Host' header contains an invalid authority")
        })
        .transpose()?;
    let mut parts = req.uri().clone().into_parts();
    let authority = match (header, parts.authority.take()) {
        (None, None) => bail!("no 'Host' header present in request"),
        (Some(a), None) | (None, Some(a)) => a,
        (Some(a), Some(b)) if a == b => a,
        _ => bail!("authority in 'Host' header does not match authority in URI"),
    };
    parts.scheme = Some(scheme);
    parts.authority = Some(authority);
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some("/".parse()?);
    }
    *req.uri_mut() = Uri::from_parts(parts)?;
    Ok(())
}

/// Appends Spin's `spin-*` headers after the client's own (so a client-sent
/// copy stays, ahead of Spin's, as in Spin).
fn add_spin_headers<B>(req: &mut http::Request<B>, m: &RouteMatch, client_addr: SocketAddr) -> Result<()> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_string();
    let scheme = req.uri().scheme_str().unwrap_or("http").to_string();
    let path_and_query = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let mut headers: Vec<(String, String)> = vec![
        ("spin-path-info".into(), m.path_info.clone()),
        ("spin-full-url".into(), format!("{scheme}://{host}{path_and_query}")),
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
    for (name, value) in headers {
        req.headers_mut()
            .append(HeaderName::from_bytes(name.as_bytes())?, HeaderValue::from_str(&value)?);
    }
    Ok(())
}

/// What compiling the prepared app yields.
struct Compiled {
    ticker: EpochTicker,
    name: String,
    version: String,
    router: Router,
    components: HashMap<String, ProxyHandler<ComponentHandler>>,
}

fn compile(prepared: Prepared, reuse: Reuse, cache: bool) -> Result<Compiled> {
    let Prepared {
        manifest,
        router,
        configs,
        ..
    } = prepared;
    let engine = engine::build(cache)?;
    let ticker = EpochTicker::start(&engine);
    let linker = host::build_linker(&engine)?;
    let mut components = HashMap::new();
    for (id, config) in configs {
        let path = manifest.source_path(&id)?;
        let component = engine::load_component(&engine, &path).with_context(|| format!("component {id:?}"))?;
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
        let handler = ComponentHandler::new(engine.clone(), pre, config, reuse);
        components.insert(id, ProxyHandler::new(handler));
    }
    Ok(Compiled {
        ticker,
        name: manifest.application.name.clone(),
        version: manifest.application.version.clone(),
        router,
        components,
    })
}

/// The app validated against the runner and its variables resolved, with
/// each selected component's configuration: everything but compilation.
struct Prepared {
    manifest: Manifest,
    router: Router,
    configs: HashMap<String, ComponentConfig>,
    state_dir: PathBuf,
}

/// What [`prepare`] prepares for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Serving: the component log files are opened; and, as in Spin, an
    /// `allowed_outbound_hosts` entry that only the resolved variables make
    /// invalid does not stop startup: the component's outbound connections
    /// fail instead.
    Serve,
    /// `runner check`: the state dir is not touched, and such an entry is a
    /// problem like any other.
    Check,
}

/// `runner check`: what `runner up` refuses at startup (the manifest,
/// missing variables, unknown components), without compiling or touching the
/// state dir, and also an allow-list entry that the resolved variables make
/// invalid (which `runner up`, like Spin, only reports). Returns the
/// `(route, component)` pairs.
pub fn check_startup(opts: &Options) -> Result<Vec<(String, String)>> {
    let prepared = prepare(opts, Purpose::Check)?;
    Ok(prepared
        .router
        .routes()
        .map(|(r, comp)| (r.to_string(), comp.to_string()))
        .collect())
}

/// `runner check --app-config`: each component's variables, as the
/// component will receive them, through the app's own config validation
/// (`kit::config`, the code each component runs on first use). Every bad
/// variable is named; values never appear (the validation reports names).
pub fn check_component_variables(opts: &Options) -> Result<()> {
    let prepared = prepare(opts, Purpose::Check)?;
    let mut problems = Vec::new();
    let mut ids: Vec<&String> = prepared.configs.keys().collect();
    ids.sort();
    for id in ids {
        let values = prepared.configs[id]
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.value.clone()))
            .collect();
        if let Err(e) = kit::config::Config::from_values(&values) {
            problems.push(format!("component {id:?}: {e}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the configuration is invalid:\n  - {}", problems.join("\n  - "))
    }
}

/// Loads the manifest, resolves variables, builds the router and each
/// selected component's configuration, reporting every problem at once.
fn prepare(opts: &Options, purpose: Purpose) -> Result<Prepared> {
    let manifest = Manifest::load(&opts.manifest)?;
    let env = match &opts.env {
        Some(e) => e.clone(),
        None => std::env::vars().collect(),
    };
    let sources = Sources {
        cli: opts.variables.clone(),
        env,
    };
    let app_vars = variables::resolve(&manifest, &sources)
        .map_err(|p| anyhow!("cannot start the application:\n  - {}", p.join("\n  - ")))?;

    let mut routes = Vec::new();
    for t in &manifest.http_triggers {
        if let RouteConfig::Route(r) = &t.route {
            routes.push((r.as_str(), t.component_id()?));
        }
    }
    let (router, duplicates) = Router::build(routes.iter().copied())?;
    for d in duplicates {
        eprintln!(
            "runner: route {:?} is declared more than once; component {:?} replaces {:?}",
            d.route, d.effective, d.replaced
        );
    }

    let mut problems = Vec::new();
    let routed: HashSet<&str> = routes.iter().map(|(_, c)| *c).collect();
    let selected: Vec<String> = match &opts.only_components {
        Some(only) => {
            for id in only {
                if !manifest.components.contains_key(id) {
                    problems.push(format!("--component-id {id:?}: no such component in the manifest"));
                }
            }
            only.clone()
        }
        None => {
            // Sorted, so that problems are reported in the same order each time.
            let mut routed: Vec<String> = routed.iter().map(|s| s.to_string()).collect();
            routed.sort();
            routed
        }
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
        let allowed_hosts = match allowed_hosts(&decl.allowed_outbound_hosts, &app_vars) {
            Ok(hosts) => Ok(hosts),
            Err(e) if purpose == Purpose::Serve => {
                eprintln!("runner: component {id:?}: {e}; as in Spin, it starts, and its outbound connections fail");
                Err(e)
            }
            Err(e) => {
                problems.push(format!("component {id:?}: {e}"));
                continue;
            }
        };
        let echo = opts.echo_component_output;
        let logs = (purpose == Purpose::Serve).then_some(log_dir.as_path());
        let outputs = (
            TeeOutput::open(logs, &id, Which::Stdout, echo),
            TeeOutput::open(logs, &id, Which::Stderr, echo),
        );
        let (stdout, stderr) = match outputs {
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
                id: id.clone(),
                variables: vars,
                sqlite_databases: decl.sqlite_databases.iter().cloned().collect(),
                sqlite_files: sqlite_files.clone(),
                allowed_hosts,
                environment: decl.environment.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                stdout,
                stderr,
                max_instance_memory: opts.max_instance_memory,
            },
        );
    }
    if !problems.is_empty() {
        bail!("cannot start the application:\n  - {}", problems.join("\n  - "));
    }
    Ok(Prepared {
        manifest,
        router,
        configs,
        state_dir,
    })
}

/// A component's `allowed_outbound_hosts`, its templates rendered with the
/// resolved variables; an entry that renders empty, `http://` or `https://`
/// is dropped, as Spin drops it. The error names the bad entry, and shows
/// what it resolved to unless that uses a secret.
fn allowed_hosts(entries: &[String], vars: &variables::ResolvedVariables) -> Result<AllowedHosts, String> {
    let mut hosts = Vec::new();
    for entry in entries {
        let rendered = variables::Template::parse(entry)
            .and_then(|t| t.render(vars))
            .map_err(|e| format!("allowed_outbound_hosts entry {entry:?}: {e:#}"))?;
        match AllowedHost::parse_rendered(&rendered.value) {
            Ok(host) => hosts.extend(host),
            Err(e) if rendered.secret => {
                return Err(format!(
                    "allowed_outbound_hosts entry {entry:?}: {e} (value hidden: it uses a secret variable)"
                ));
            }
            Err(e) => {
                return Err(format!(
                    "allowed_outbound_hosts entry {entry:?}: {e} (resolved to {:?})",
                    rendered.value
                ));
            }
        }
    }
    Ok(hosts.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
[variables]
db_host = { default = "db:5432" }
db_password = { default = "pw", secret = true }
optional_api = { default = "" }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
allowed_outbound_hosts = ["postgres://{{ db_host }}", "https://{{ optional_api }}", "postgres://x{{ db_password }}"]
"#;

    fn options(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> Options {
        let manifest = dir.path().join("spin.toml");
        std::fs::write(&manifest, MANIFEST).unwrap();
        Options {
            manifest,
            state_dir: dir.path().join("state"),
            env: Some(env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
            echo_component_output: false,
            ..Options::default()
        }
    }

    #[test]
    fn templated_entries_resolve_and_empty_ones_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let prepared = prepare(&options(&dir, &[]), Purpose::Check).unwrap();
        let allowed = prepared.configs["c"].allowed_hosts.as_ref().unwrap();
        assert!(allowed.allows_postgres("db", None));
        assert!(allowed.allows_postgres("xpw", Some(5432)));
        assert!(!allowed.allows_postgres("other", None));
    }

    #[test]
    fn an_entry_made_invalid_by_variables_fails_check_but_not_startup() {
        let dir = tempfile::tempdir().unwrap();
        let bad_host = [("SPIN_VARIABLE_DB_HOST", "db:99999")];
        let err = format!(
            "{:#}",
            prepare(&options(&dir, &bad_host), Purpose::Check).err().unwrap()
        );
        assert!(
            err.contains("\"postgres://{{ db_host }}\"") && err.contains("db:99999"),
            "{err}"
        );
        // As Spin: the app starts; the component's connections fail.
        let prepared = prepare(&options(&dir, &bad_host), Purpose::Serve).unwrap();
        assert!(prepared.configs["c"].allowed_hosts.is_err());
        // A secret's value stays out of the message.
        let bad_secret = [("SPIN_VARIABLE_DB_PASSWORD", "s3cr3t:x")];
        let err = format!(
            "{:#}",
            prepare(&options(&dir, &bad_secret), Purpose::Check).err().unwrap()
        );
        assert!(err.contains("value hidden") && !err.contains("s3cr3t"), "{err}");
    }
}
