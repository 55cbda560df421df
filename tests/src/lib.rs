//! Harness for the component tests: each test serves the real `.wasm` of
//! its routes on a loopback port, with a fresh state directory (so a fresh
//! `.spin/sqlite_db.db`), and talks to it over HTTP/1.1 like any client.
//!
//! The engine is `TEST_ENGINE`: `runner` (the default: the project's runner,
//! in this process) or `spin` (real `spin up`, started per harness with
//! `--state-dir`, `--sqlite` migrations, `--component-id` and the test
//! variables; `spin` must be on `PATH`). The same tests run on both.
//!
//! With `TEST_DATABASE_URL` set (`tests/postgres.sh` does it), every harness
//! gets a fresh PostgreSQL database instead, and the same tests run against
//! PostgreSQL through Spin's `spin:postgres` interface.
//!
//! The HTTP/1.1 client the tests talk through ([`Connection`], [`Reply`]) is
//! in `http_client.rs`, re-exported here. Every answer is checked for framing
//! on the way in: `Content-Length` is present and true, and nothing is
//! chunked. The suite itself is `tests/suite/`.

mod http_client;

pub use http_client::{Connection, Reply};

use bytes::Bytes;
use http::{Request, StatusCode};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository root, where `spin.toml` lives.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What serves the app under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Runner,
    Spin,
}

impl Engine {
    /// `TEST_ENGINE`, `runner` when unset. Anything else is a mistake.
    pub fn under_test() -> Engine {
        match std::env::var("TEST_ENGINE").as_deref() {
            Err(_) | Ok("") | Ok("runner") => Engine::Runner,
            Ok("spin") => Engine::Spin,
            Ok(other) => panic!("TEST_ENGINE={other:?}: use runner or spin"),
        }
    }
}

/// An app serving some components on a loopback port.
pub struct Harness {
    pub addr: SocketAddr,
    pub engine: Engine,
    /// The PostgreSQL database of this harness, with the PostgreSQL suite.
    pub database_url: Option<String>,
    server: Server,
    state: tempfile::TempDir,
}

enum Server {
    /// The runner inside this test process.
    Runner(Option<tokio::sync::oneshot::Sender<()>>),
    /// An engine in a process of its own (real `spin up`, or the runner's
    /// binary for [`Harness::load_as_process`]), and how to start it again.
    Process(Child, Launch),
}

/// What starts an engine process: kept so that a test can crash it and start
/// it again on the same state directory.
#[derive(Clone)]
struct Launch {
    program: PathBuf,
    variables: Vec<(String, String)>,
    components: Vec<String>,
    max_instance_memory: Option<usize>,
}

/// How to load the app.
#[derive(Default)]
pub struct Setup<'a> {
    pub components: &'a [&'a str],
    pub variables: &'a [(&'a str, &'a str)],
    /// Variables the harness would set that this test leaves unset.
    pub omit: &'a [&'a str],
    /// The engine's `--max-instance-memory` (bytes), when the test sets one.
    pub max_instance_memory: Option<usize>,
}

impl Harness {
    /// The route's component alone, default variables.
    pub async fn route(component: &str) -> Harness {
        Harness::load(Setup {
            components: &[component],
            ..Setup::default()
        })
        .await
    }

    /// Both order components on one database (create, then read back),
    /// default variables.
    pub async fn orders() -> Harness {
        Harness::load(Setup {
            components: &["orders-create", "orders-get"],
            ..Setup::default()
        })
        .await
    }

    /// Starts the engine under test.
    pub async fn load(setup: Setup<'_>) -> Harness {
        Harness::load_on(Engine::under_test(), setup).await
    }

    pub async fn load_on(engine: Engine, setup: Setup<'_>) -> Harness {
        Harness::try_load_on(engine, setup)
            .await
            .unwrap_or_else(|e| panic!("the app loads on {engine:?}: {e}"))
    }

    /// Starts the engine under test; `Err` holds what it said when it
    /// refused to start.
    pub async fn try_load(setup: Setup<'_>) -> Result<Harness, String> {
        Harness::try_load_on(Engine::under_test(), setup).await
    }

    pub async fn try_load_on(engine: Engine, setup: Setup<'_>) -> Result<Harness, String> {
        Harness::start(engine, setup, false).await
    }

    /// The engine under test in a process of its own, even the runner (its
    /// release binary), so that [`Harness::crash_and_restart`] can kill it.
    pub async fn load_as_process(setup: Setup<'_>) -> Harness {
        let engine = Engine::under_test();
        Harness::start(engine, setup, true)
            .await
            .unwrap_or_else(|e| panic!("the app loads on {engine:?}: {e}"))
    }

    /// SIGKILLs the engine process (its whole process group: nothing runs
    /// any shutdown code) and starts it again on the same state directory
    /// and database, as after a crash.
    pub async fn crash_and_restart(&mut self) {
        let Server::Process(child, launch) = &mut self.server else {
            panic!("crash_and_restart needs Harness::load_as_process");
        };
        kill_group(child);
        let launch = launch.clone();
        let (addr, child) = start_process(self.state.path(), &launch)
            .await
            .unwrap_or_else(|e| panic!("restart after the crash: {e}"));
        self.addr = addr;
        self.server = Server::Process(child, launch);
    }

    async fn start(engine: Engine, setup: Setup<'_>, as_process: bool) -> Result<Harness, String> {
        let state = tempfile::Builder::new().prefix("component-test-").tempdir().unwrap();
        let mut variables = vec![("jwt_secret".to_string(), JWT_SECRET.to_string())];
        // An empty database every time, and no `--sqlite`: the app brings
        // its schema up to date by itself, as it must when deployed.
        if let Some(url) = fresh_postgres_database().await {
            variables.push(("db_host".into(), host_port(&url)));
            variables.push(("database_url".into(), url));
        }
        variables.extend(setup.variables.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        variables.retain(|(k, _)| !setup.omit.contains(&k.as_str()));
        let components: Vec<String> = setup.components.iter().map(|c| c.to_string()).collect();
        let database_url = variables
            .iter()
            .find(|(k, _)| k == "database_url")
            .map(|(_, v)| v.clone());
        let program = match engine {
            Engine::Runner if !as_process => None,
            Engine::Runner => Some(root().join("target/release/runner")),
            Engine::Spin => Some(PathBuf::from("spin")),
        };
        let mut harness = match program {
            None => start_runner(state, variables, components, setup.max_instance_memory).await?,
            Some(program) => {
                let launch = Launch {
                    program,
                    variables,
                    components,
                    max_instance_memory: setup.max_instance_memory,
                };
                let (addr, child) = start_process(state.path(), &launch).await?;
                Harness {
                    addr,
                    database_url: None,
                    engine,
                    server: Server::Process(child, launch),
                    state,
                }
            }
        };
        harness.database_url = database_url;
        Ok(harness)
    }

    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// Sends one request on a connection of its own.
    pub async fn send(&self, request: Request<Bytes>) -> Reply {
        self.connect().await.send(request).await
    }

    /// A keep-alive connection for several requests.
    pub async fn connect(&self) -> Connection {
        Connection::open(self.addr).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Bytes::new()).unwrap()).await
    }

    /// A GET as [`USER`].
    pub async fn get_as_user(&self, path: &str) -> Reply {
        self.send(
            Request::get(path)
                .header("authorization", bearer(USER))
                .body(Bytes::new())
                .unwrap(),
        )
        .await
    }

    /// A JSON POST without credentials.
    pub async fn post_json(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        self.send(
            Request::post(path)
                .header("content-type", "application/json")
                .body(body.into())
                .unwrap(),
        )
        .await
    }

    /// A JSON POST as [`USER`].
    pub async fn post_as_user(&self, path: &str, body: impl Into<Bytes>) -> Reply {
        let request = Request::post(path)
            .header("content-type", "application/json")
            .header("authorization", bearer(USER))
            .body(body.into())
            .unwrap();
        self.send(request).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        match &mut self.server {
            Server::Runner(stop) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
            Server::Process(child, _) => kill_group(child),
        }
    }
}

/// The runner, in this process, serving on an ephemeral port.
async fn start_runner(
    state: tempfile::TempDir,
    variables: Vec<(String, String)>,
    components: Vec<String>,
    max_instance_memory: Option<usize>,
) -> Result<Harness, String> {
    let options = runner::Options {
        manifest: root().join("spin.toml"),
        state_dir: state.path().to_path_buf(),
        variables,
        env: Some(Default::default()),
        only_components: Some(components),
        echo_component_output: false,
        max_instance_memory,
        ..Default::default()
    };
    let app = runner::App::load(options).await.map_err(|e| format!("{e:#}"))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok(Harness {
        addr,
        database_url: None,
        engine: Engine::Runner,
        server: Server::Runner(Some(stop)),
        state,
    })
}

/// An engine process (real `spin up`, or the runner's binary, which takes
/// the same arguments), in a process group of its own (spin starts a
/// trigger child), on a free port; ready once its health route answers.
async fn start_process(state: &Path, launch: &Launch) -> Result<(SocketAddr, Child), String> {
    // A port picked by the kernel can be taken before the engine binds it;
    // then it says so and the harness tries another.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut command = Command::new(&launch.program);
        command
            .arg("up")
            .arg("--from")
            .arg(root().join("spin.toml"))
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--state-dir")
            .arg(state)
            .current_dir(state);
        for component in &launch.components {
            command.arg("--component-id").arg(component);
        }
        for (name, value) in &launch.variables {
            command.arg("--variable").arg(format!("{name}={value}"));
        }
        if let Some(bytes) = launch.max_instance_memory {
            command.arg("--max-instance-memory").arg(bytes.to_string());
        }
        // Only the test's variables: none from the environment.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SPIN_VARIABLE_") {
                command.env_remove(name);
            }
        }
        let output = state.join("engine-output.txt");
        let log = std::fs::File::create(&output).unwrap();
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let program = launch.program.display();
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start `{program}` (is it on PATH, or built?): {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                if said.contains("already in use") || said.contains("Address in use") {
                    break;
                }
                return Err(format!("{program} up exited ({status}):\n{said}"));
            }
            if health(addr).await {
                return Ok((addr, child));
            }
            if Instant::now() > deadline {
                kill_group(&mut child);
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                return Err(format!("{program} up did not answer within 300 s:\n{said}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Err(format!("{} found no free port in 5 tries", launch.program.display()))
}

async fn health(addr: SocketAddr) -> bool {
    let Ok(mut connection) = tokio::time::timeout(Duration::from_secs(1), Connection::try_open(addr)).await else {
        return false;
    };
    let Ok(connection) = connection.as_mut() else {
        return false;
    };
    let request = Request::get("/.well-known/spin/health").body(Bytes::new()).unwrap();
    matches!(connection.try_send(request).await, Ok(r) if r.status == StatusCode::OK)
}

fn kill_group(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: signals the process group this harness created for the child.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
    }
    let _ = child.wait();
}

/// Asserts `value` is valid against `schemas/<schema_file>` (formats asserted).
pub fn assert_valid(schema_file: &str, value: &Value) {
    let text = std::fs::read_to_string(root().join("schemas").join(schema_file)).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{value} breaks {schema_file}: {errors:?}");
}

/// A valid order body.
pub fn order_body(user: &str) -> String {
    serde_json::json!({"userId": user, "items": [{"productId": "sku-42", "quantity": 2}]}).to_string()
}

pub const USER: &str = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e";

/// The `jwt_secret` every harness runs with.
pub const JWT_SECRET: &str = "component-tests-secret-0123456789abcdef";

/// Signs `claims` (HS256) with `secret`.
pub fn sign(claims: &Value, secret: &str) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
}

/// `Bearer <token>` for `user`, valid for an hour.
pub fn bearer(user: &str) -> String {
    let exp = chrono::Utc::now().timestamp() + 3600;
    format!(
        "Bearer {}",
        sign(&serde_json::json!({"sub": user, "exp": exp}), JWT_SECRET)
    )
}

/// The superuser URL of the test PostgreSQL server, when the suite runs on it.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.is_empty())
}

/// `host:port` of a `postgres://` URL, for `allowed_outbound_hosts`.
fn host_port(url: &str) -> String {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    authority.rsplit('@').next().unwrap_or(authority).to_string()
}

/// With the PostgreSQL suite: an empty database of its own for one
/// harness, as a URL.
async fn fresh_postgres_database() -> Option<String> {
    let admin_url = postgres_admin_url()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .expect("test PostgreSQL");
    tokio::spawn(connection);
    client.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
    Some(format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0))
}

/// The migration versions the app's database records, in order (from its
/// SQLite file, or its PostgreSQL database), to check nothing ran twice.
pub async fn recorded_migrations(h: &Harness) -> Vec<i64> {
    let sql = "SELECT version FROM schema_migrations ORDER BY version";
    match postgres_admin_url() {
        Some(_) => {
            let url = h.database_url.clone().expect("a PostgreSQL harness has a database");
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            client.query(sql, &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
        }
        None => {
            let db = rusqlite::Connection::open(h.state_dir().join("sqlite_db.db")).unwrap();
            let mut statement = db.prepare(sql).unwrap();
            statement
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
    }
}
