//! The runner against a real, deliberately misbehaving component
//! (`runner/tests/guest`): limits, isolation, grants, variables, headers,
//! draining. No mocks: every request runs the built `.wasm`.

use bytes::Bytes;
use runner::{App, Options};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target"))
}

/// The guest component, built once per test run (a no-op when `make test`
/// already built it).
fn guest_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(workspace_dir())
            .args([
                "build",
                "--profile",
                "component",
                "--target",
                "wasm32-wasip2",
                "-p",
                "runner-test-guest",
            ])
            .status()
            .expect("run cargo to build the test guest");
        assert!(status.success(), "building runner-test-guest failed");
        let wasm = target_dir().join("wasm32-wasip2/component/runner_test_guest.wasm");
        assert!(wasm.exists(), "{} missing", wasm.display());
        wasm
    })
}

/// A scratch directory with a manifest; removed on drop.
struct Fixture {
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    fn new(name: &str, manifest_body: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("runner-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let manifest = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n{}",
            manifest_body.replace("GUEST", &guest_wasm().display().to_string())
        );
        std::fs::write(dir.join("spin.toml"), manifest).unwrap();
        Fixture { dir }
    }

    fn options(&self) -> Options {
        Options {
            manifest: self.dir.join("spin.toml"),
            state_dir: self.dir.join(".spin"),
            env: Some(HashMap::new()),
            echo_component_output: false,
            // One compile for the whole test run.
            cache_dir: Some(target_dir().join("runner-test-cache")),
            ..Options::default()
        }
    }
}

/// Loads one app at a time: the first load compiles the guest into the shared
/// cache and the others deserialize it, instead of every test compiling it
/// in parallel.
async fn load(opts: Options) -> anyhow::Result<App> {
    static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = LOADING.lock().await;
    App::load(opts).await
}

const ONE_COMPONENT: &str = r#"
[[trigger.http]]
route = "/..."
component = "guest"
[component.guest]
source = "GUEST"
"#;

fn client() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

async fn get(app: &App, path: &str) -> (u16, String) {
    let req = http::Request::get(format!("http://localhost{path}"))
        .body(Bytes::new())
        .unwrap();
    let resp = app.handle(req, client()).await.unwrap();
    (
        resp.status().as_u16(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_a_500_and_the_next_request_still_works() {
    let f = Fixture::new("trap", ONE_COMPONENT);
    let app = load(f.options()).await.unwrap();
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    assert_eq!(get(&app, "/trap").await.0, 500);
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    assert_eq!(get(&app, "/nope").await.0, 404, "guest's own 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_times_out_without_blocking_other_requests() {
    let f = Fixture::new("timeout", ONE_COMPONENT);
    let app = load(Options {
        timeout: Duration::from_millis(500),
        ..f.options()
    })
    .await
    .unwrap();
    let start = Instant::now();
    let spinning = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/spin").await }
    });
    // Meanwhile another request is served by its own instance.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    let (status, _) = spinning.await.unwrap();
    assert_eq!(status, 500);
    let took = start.elapsed();
    // A bound only to turn a hang into a failure, not a performance check.
    assert!(took < Duration::from_secs(20), "timeout took {took:?}");
    assert_eq!(get(&app, "/ok").await.0, 200);
}

/// One executor thread: the busy guest must yield it every epoch tick, or the
/// second request could not be served until the first one timed out.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_yields_its_thread_to_other_requests() {
    let f = Fixture::new("yield", ONE_COMPONENT);
    let app = load(Options {
        timeout: Duration::from_secs(5),
        ..f.options()
    })
    .await
    .unwrap();
    let spinning = tokio::spawn({
        let app = app.clone();
        async move { get(&app, "/spin").await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    assert!(!spinning.is_finished(), "the busy guest ended before /ok was served");
    assert_eq!(spinning.await.unwrap().0, 500, "the busy guest still times out");
}

/// More long-running guests than CPU lanes: they take turns on the lanes,
/// short requests are still served meanwhile, and each long one still ends
/// at its deadline (none is left waiting for a lane forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_guests_share_the_cpu_lanes_and_short_requests_pass() {
    let f = Fixture::new("lanes", ONE_COMPONENT);
    let app = load(Options {
        timeout: Duration::from_secs(3),
        ..f.options()
    })
    .await
    .unwrap();
    let lanes = std::thread::available_parallelism().map_or(1, usize::from);
    let spinning: Vec<_> = (0..lanes * 2 + 1)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get(&app, "/spin").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..5 {
        assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    }
    assert!(spinning.iter().all(|s| !s.is_finished()), "a busy guest ended early");
    for s in spinning {
        assert_eq!(s.await.unwrap().0, 500, "every busy guest times out");
    }
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cap_stops_a_growing_guest() {
    let f = Fixture::new("memory", ONE_COMPONENT);
    let app = load(Options {
        memory_limit_bytes: 32 << 20,
        timeout: Duration::from_secs(20),
        ..f.options()
    })
    .await
    .unwrap();
    assert_eq!(get(&app, "/alloc").await.0, 500);
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_reuse_serves_sequential_requests() {
    let f = Fixture::new("reuse", ONE_COMPONENT);
    let app = load(Options {
        max_instance_reuse_count: 2,
        ..f.options()
    })
    .await
    .unwrap();
    // Each instance serves two requests, then a fresh one takes over.
    for expected in ["1", "2", "1", "2", "1"] {
        assert_eq!(get(&app, "/count").await, (200, expected.into()));
    }
    assert_eq!(get(&app, "/trap").await.0, 500);
    assert_eq!(get(&app, "/ok").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_expire_after_a_second() {
    let f = Fixture::new("idle", ONE_COMPONENT);
    let app = load(f.options()).await.unwrap();
    assert_eq!(get(&app, "/count").await, (200, "1".into()));
    assert_eq!(get(&app, "/count").await, (200, "2".into()), "reused while fresh");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        get(&app, "/count").await,
        (200, "1".into()),
        "a new instance after the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_headers_reach_the_component() {
    let f = Fixture::new(
        "headers",
        r#"
[[trigger.http]]
route = "/headers/..."
component = "guest"
[component.guest]
source = "GUEST"
"#,
    );
    let app = load(f.options()).await.unwrap();
    let req = http::Request::get("/headers?x=1")
        .header("host", "example.test:3000")
        .header("spin-path-info", "forged")
        .body(Bytes::new())
        .unwrap();
    let resp = app.handle(req, client()).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = String::from_utf8_lossy(resp.body()).into_owned();
    for line in [
        "spin-full-url: http://example.test:3000/headers?x=1",
        "spin-path-info: ",
        "spin-matched-route: /headers/...",
        "spin-base-path: /",
        "spin-raw-component-route: /headers/...",
        "spin-component-route: /headers",
        "spin-client-addr: 127.0.0.1:40000",
    ] {
        assert!(
            body.lines().any(|l| l.trim_end() == line.trim_end()),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(!body.contains("forged"), "client-sent spin-* headers are replaced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_come_from_cli_env_and_defaults() {
    let body = r#"
[variables]
greeting = { default = "hello" }
target = { required = true }
token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "guest"
[component.guest]
source = "GUEST"
variables = { message = "{{ greeting }}, {{ target }}", token = "{{ token }}" }
"#;
    let f = Fixture::new("vars", body);

    // Missing required variables stop startup and are all named.
    let err = load(f.options()).await.err().expect("must fail");
    let err = format!("{err:#}");
    assert!(err.contains("\"target\"") && err.contains("\"token\""), "{err}");

    let env = HashMap::from([
        ("SPIN_VARIABLE_TARGET".to_string(), "env".to_string()),
        ("SPIN_VARIABLE_TOKEN".to_string(), "s3cr3t".to_string()),
        ("SPIN_VARIABLE_GREETING".to_string(), "hi".to_string()),
    ]);
    let app = load(Options {
        env: Some(env),
        variables: vec![("target".into(), "cli".into())],
        ..f.options()
    })
    .await
    .unwrap();
    assert_eq!(get(&app, "/var?name=message").await, (200, "hi, cli".into()));
    assert_eq!(get(&app, "/var?name=token").await, (200, "s3cr3t".into()));
    // Application variables are not visible unless mapped to the component.
    let (status, body) = get(&app, "/var?name=greeting").await;
    assert_eq!(status, 404);
    assert!(body.contains("Undefined"), "{body}");
    let (status, body) = get(&app, "/var?name=Not-Valid").await;
    assert_eq!(status, 404);
    assert!(body.contains("InvalidName"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_grants_are_enforced_and_startup_statements_run() {
    // The guest serves `/db`; `granted` owns that route, `denied` another.
    let manifest = |granted: &str, denied: &str| {
        format!(
            r#"
[[trigger.http]]
route = "{granted}"
component = "granted"
[[trigger.http]]
route = "{denied}"
component = "denied"
[component.granted]
source = "GUEST"
sqlite_databases = ["default"]
[component.denied]
source = "GUEST"
"#
        )
    };
    let f = Fixture::new("grants", &manifest("/db", "/other"));
    let app = load(Options {
        sqlite_statements: vec!["CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (42);".into()],
        ..f.options()
    })
    .await
    .unwrap();
    let (status, body) = get(&app, "/db?label=default").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Integer(2)") && body.contains("Text(\"x\")") && body.contains("Null"),
        "{body}"
    );
    let (status, body) = get(&app, "/db?label=other").await;
    assert_eq!((status, body.as_str()), (403, "Error::AccessDenied"));

    // The startup statements ran against <state_dir>/sqlite_db.db.
    let db = rusqlite::Connection::open(f.dir.join(".spin/sqlite_db.db")).unwrap();
    let x: i64 = db.query_row("SELECT x FROM t", [], |r| r.get(0)).unwrap();
    assert_eq!(x, 42);

    // A component without the grant is denied even the default database.
    let f = Fixture::new("grants-denied", &manifest("/other", "/db"));
    let app = load(f.options()).await.unwrap();
    let (status, body) = get(&app, "/db?label=default").await;
    assert_eq!((status, body.as_str()), (403, "Error::AccessDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_selected_components_are_served() {
    let f = Fixture::new(
        "only",
        r#"
[[trigger.http]]
route = "/ok"
component = "one"
[[trigger.http]]
route = "/trap"
component = "two"
[component.one]
source = "GUEST"
[component.two]
source = "GUEST"
"#,
    );
    let app = load(Options {
        only_components: Some(vec!["one".into()]),
        ..f.options()
    })
    .await
    .unwrap();
    assert_eq!(get(&app, "/ok").await.0, 200);
    assert_eq!(get(&app, "/trap").await.0, 404);
    assert_eq!(get(&app, "/elsewhere").await.0, 404);
    assert_eq!(app.routes().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_manifest_keys_stop_startup() {
    let f = Fixture::new(
        "unsupported",
        r#"
[[trigger.http]]
route = "/..."
component = "guest"
[component.guest]
source = "GUEST"
dependencies = { "a:b/c" = "1.0.0" }
"#,
    );
    let err = load(f.options()).await.err().expect("must fail");
    assert!(format!("{err:#}").contains("unknown field `dependencies`"), "{err:#}");
}

async fn raw_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    s.read_to_string(&mut out).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_in_flight_requests() {
    let f = Fixture::new("drain", ONE_COMPONENT);
    let app = load(f.options()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async {
        let _ = stop_rx.await;
    }));
    assert!(raw_get(addr, "/ok").await.unwrap().starts_with("HTTP/1.1 200"));

    let in_flight = tokio::spawn(raw_get(addr, "/sleep?ms=1500"));
    // Let the request reach the guest before shutdown starts.
    tokio::time::sleep(Duration::from_millis(400)).await;
    stop_tx.send(()).unwrap();
    let resp = in_flight.await.unwrap().unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("slept 1500"), "{resp}");
    tokio::time::timeout(Duration::from_secs(20), server)
        .await
        .expect("server stops after draining")
        .unwrap()
        .unwrap();
    assert!(raw_get(addr, "/ok").await.is_err(), "no longer accepting");
}

/// Needs a PostgreSQL server: set `RUNNER_TEST_PG_URL`
/// (e.g. `postgres://postgres@127.0.0.1:5432/postgres`). Without it the test
/// says so and checks only the refusal paths, which need no server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trip_and_outbound_check() {
    // `make test-postgres` runs this again with tests/postgres.sh's server.
    let url = std::env::var("RUNNER_TEST_PG_URL")
        .or_else(|_| std::env::var("TEST_DATABASE_URL"))
        .ok();
    let manifest = |allowed: &str| {
        format!(
            r#"
[variables]
pg_url = {{ default = "postgres://postgres@127.0.0.1:1/postgres" }}
pg_host = {{ default = "{allowed}" }}
[[trigger.http]]
route = "/pg"
component = "guest"
[[trigger.http]]
route = "/pg-session"
component = "guest"
[component.guest]
source = "GUEST"
variables = {{ pg_url = "{{{{ pg_url }}}}" }}
allowed_outbound_hosts = ["postgres://{{{{ pg_host }}}}"]
"#
        )
    };
    // A host outside allowed_outbound_hosts is refused before connecting.
    let f = Fixture::new("pg-denied", &manifest("db.example:5432"));
    let app = load(f.options()).await.unwrap();
    let (status, body) = get(&app, "/pg").await;
    assert_eq!(status, 502);
    assert!(
        body.contains("ConnectionFailed") && body.contains("not permitted"),
        "{body}"
    );

    // An allowed but unreachable server fails fast with connection-failed.
    let f = Fixture::new("pg-down", &manifest("127.0.0.1:1"));
    let app = load(f.options()).await.unwrap();
    let start = Instant::now();
    let (status, body) = get(&app, "/pg").await;
    assert_eq!(status, 502);
    assert!(body.contains("ConnectionFailed"), "{body}");
    assert!(start.elapsed() < Duration::from_secs(20), "connect is bounded");

    let Some(url) = url else {
        eprintln!("RUNNER_TEST_PG_URL not set: PostgreSQL round trip not exercised");
        return;
    };
    let cfg: url_parts::Parts = url_parts::parse(&url);
    let f = Fixture::new("pg", &manifest(&format!("{}:{}", cfg.host, cfg.port)));
    let app = load(Options {
        variables: vec![("pg_url".into(), url.clone())],
        ..f.options()
    })
    .await
    .unwrap();
    let (status, body) = get(&app, "/pg").await;
    assert_eq!(status, 200, "{body}");
    for needle in [
        "inserted=1",
        "id:DbDataType::Uuid",
        "at:DbDataType::Datetime",
        "Uuid(\"7c9e6679-7425-40de-944b-e07fc1f90ae7\")",
        "Str(\"café\")",
        "Int64(9223372036854775807)",
        "Datetime((2024, 2, 29, 23, 59, 58, 123456000))",
        "Jsonb([123, 34, 97, 34, 58, 91, 49, 44, 50, 93, 125])",
        "DbNull",
        "Int32(-7)",
        "QueryFailed(QueryError::DbError",
        "42P01",
        r#"message: "relation \"no_such_table\" does not exist""#,
    ] {
        assert!(body.contains(needle), "missing {needle:?} in\n{body}");
    }
}

/// Host and port of a `postgres://` URL, enough for the allow-list.
mod url_parts {
    pub struct Parts {
        pub host: String,
        pub port: u16,
    }

    pub fn parse(url: &str) -> Parts {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        let authority = rest.split('/').next().unwrap_or("");
        let hostport = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().unwrap_or(5432)),
            None => (hostport.to_string(), 5432),
        };
        Parts { host, port }
    }
}

/// Concurrent inserts are group-committed by the host's writer, yet each
/// guest sees exactly what autocommit gives it: its own `changes` and
/// `last-insert-rowid`, a constraint error for its own statement only, and
/// its row committed when `execute` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sqlite_writes_keep_autocommit_semantics() {
    let f = Fixture::new(
        "writer",
        r#"
[[trigger.http]]
route = "/kv"
component = "guest"
[component.guest]
source = "GUEST"
sqlite_databases = ["default"]
"#,
    );
    let app = load(Options {
        sqlite_statements: vec!["CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT UNIQUE)".into()],
        ..f.options()
    })
    .await
    .unwrap();
    // 40 distinct keys and 10 that repeat one of them, all at once.
    let keys: Vec<String> = (0..40)
        .map(|i| format!("k{i}"))
        .chain((0..10).map(|_| "k7".into()))
        .collect();
    let tasks: Vec<_> = keys
        .iter()
        .map(|k| {
            let app = app.clone();
            let path = format!("/kv?k={k}");
            tokio::spawn(async move { get(&app, &path).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    let mut conflicts = 0;
    for task in tasks {
        let (status, body) = task.await.unwrap();
        if status == 409 {
            assert!(body.contains("UNIQUE constraint failed: kv.k"), "{body}");
            conflicts += 1;
            continue;
        }
        assert_eq!(status, 200, "{body}");
        // "(1, id) (0, id) [Value::Integer(id)]": one row changed and its rowid; the
        // empty UPDATE changes nothing and leaves the rowid; the row is there.
        let id: i64 = body.split(&[' ', ')'][..]).nth(1).unwrap().parse().unwrap();
        assert_eq!(body, format!("(1, {id}) (0, {id}) [Value::Integer({id})]"));
        assert!(ids.insert(id), "two inserts reported rowid {id}");
    }
    assert_eq!((ids.len(), conflicts), (40, 10));
}

/// Pooled connections (as Spin pools them) are reused, and reset first: a
/// session setting one request made is gone for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connections_are_pooled_and_reset() {
    let Ok(url) = std::env::var("RUNNER_TEST_PG_URL").or_else(|_| std::env::var("TEST_DATABASE_URL")) else {
        eprintln!("no PostgreSQL URL: pooling not exercised (make test-postgres runs it)");
        return;
    };
    let cfg: url_parts::Parts = url_parts::parse(&url);
    let manifest = format!(
        r#"
[[trigger.http]]
route = "/pg-session"
component = "guest"
[component.guest]
source = "GUEST"
variables = {{ pg_url = "{url}" }}
allowed_outbound_hosts = ["postgres://{}:{}"]
"#,
        cfg.host, cfg.port
    );
    let f = Fixture::new("pg-pool", &manifest);
    let app = load(f.options()).await.unwrap();
    let mut pids = std::collections::HashSet::new();
    let mut reused = false;
    // The connection returns to the pool after its reset, off the request's
    // path: a later request, not necessarily the next, gets it.
    for _ in 0..50 {
        let (status, body) = get(&app, "/pg-session").await;
        assert_eq!(status, 200, "{body}");
        let (pid, name) = body.split_once(' ').unwrap();
        assert_eq!(
            name, r#"DbValue::Str("")"#,
            "a pooled session kept another request's setting"
        );
        if !pids.insert(pid.to_string()) {
            reused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(reused, "no connection was reused in 50 sequential requests: {pids:?}");
}
