//! The runner against a real, deliberately misbehaving component
//! (`runner/tests/guest`), over TCP like any client: instance reuse, limits,
//! grants, variables, headers, streaming, connections. No mocks: every
//! request runs the built `.wasm`. Where Spin behaves a given way (reuse
//! counts, no yielding, no drain), the test pins the runner to it.

use runner::{App, Options, Reuse};
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
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(manifest_body: &str) -> Fixture {
        let dir = tempfile::Builder::new().prefix("runner-test-").tempdir().unwrap();
        let manifest = format!(
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n{}",
            manifest_body.replace("GUEST", &guest_wasm().display().to_string())
        );
        std::fs::write(dir.path().join("spin.toml"), manifest).unwrap();
        Fixture { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn options(&self) -> Options {
        Options {
            manifest: self.path().join("spin.toml"),
            state_dir: self.path().join(".spin"),
            env: Some(HashMap::new()),
            echo_component_output: false,
            ..Options::default()
        }
    }
}

/// Loads one app at a time: the first load compiles the guest into
/// wasmtime's cache and the others load it from there, instead of every
/// test compiling it in parallel.
async fn load(opts: Options) -> anyhow::Result<App> {
    static LOADING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = LOADING.lock().await;
    App::load(opts).await
}

/// An app served on a loopback port until dropped.
struct Served {
    addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn serve(app: App) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    Served {
        addr,
        _stop: stop,
        server,
    }
}

async fn load_and_serve(opts: Options) -> Served {
    serve(load(opts).await.unwrap()).await
}

const ONE_COMPONENT: &str = r#"
[[trigger.http]]
route = "/..."
component = "guest"
[component.guest]
source = "GUEST"
"#;

/// One request on a connection of its own, `Connection: close`: the status
/// line's code and the body (`Content-Length`-framed or to the close).
async fn request(addr: SocketAddr, head: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(head.as_bytes()).await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("no status line in {text:?}")))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    Ok((status, if chunked { dechunk(body) } else { body.to_string() }))
}

/// The data of a chunked body (the test guest answers without a length).
fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest[size..].trim_start_matches("\r\n");
    }
    out
}

async fn get(served: &Served, path: &str) -> (u16, String) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    request(served.addr, &head).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_is_a_500_and_the_next_request_still_works() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(f.options()).await;
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    assert_eq!(get(&app, "/trap").await, (500, String::new()), "Spin's empty 500");
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
    assert_eq!(get(&app, "/nope").await.0, 404, "guest's own 404");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_loop_times_out_at_the_request_timeout() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(Options {
        reuse: Reuse {
            request_timeout: Some(Duration::from_millis(500)),
            ..Reuse::default()
        },
        ..f.options()
    })
    .await;
    let start = Instant::now();
    let spinning = tokio::spawn(async move {
        let r = get(&app, "/spin").await;
        (r, app)
    });
    let ((status, _), app) = spinning.await.unwrap();
    assert_eq!(status, 500);
    // A bound only to turn a hang into a failure, not a performance check.
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "timeout took {:?}",
        start.elapsed()
    );
    assert_eq!(get(&app, "/ok").await.0, 200);
}

/// As in Spin, a running guest keeps its thread until it returns or times
/// out: on a single-threaded runtime nothing else is served meanwhile.
#[tokio::test(flavor = "current_thread")]
async fn a_busy_guest_keeps_its_thread_as_in_spin() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(Options {
        reuse: Reuse {
            request_timeout: Some(Duration::from_millis(800)),
            ..Reuse::default()
        },
        ..f.options()
    })
    .await;
    let addr = app.addr;
    let spin = "GET /spin HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let started = Instant::now();
    let spinning = tokio::spawn(async move { request(addr, spin).await.unwrap() });
    // On this one thread, the test itself runs again only once the guest
    // has given the thread back: at its timeout.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let head = "GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    assert_eq!(request(addr, head).await.unwrap().0, 200);
    assert!(spinning.is_finished(), "/ok was served while the busy guest still ran");
    assert_eq!(spinning.await.unwrap().0, 500);
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "the busy guest gave its thread back early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_cap_stops_a_growing_guest() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(Options {
        max_instance_memory: Some(32 << 20),
        ..f.options()
    })
    .await;
    assert_eq!(get(&app, "/alloc").await.0, 500);
    assert_eq!(get(&app, "/ok").await, (200, "ok".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_up_to_its_reuse_count() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(Options {
        reuse: Reuse {
            max_requests: 2,
            ..Reuse::default()
        },
        ..f.options()
    })
    .await;
    // Each instance serves two requests, then a fresh one takes over.
    for expected in ["1", "2", "1", "2", "1"] {
        assert_eq!(get(&app, "/count").await, (200, expected.into()));
    }
    assert_eq!(get(&app, "/trap").await.0, 500);
    assert_eq!(get(&app, "/ok").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_an_instance_serves_128_requests() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(f.options()).await;
    for n in 1..=128 {
        assert_eq!(get(&app, "/count").await, (200, n.to_string()));
    }
    assert_eq!(
        get(&app, "/count").await,
        (200, "1".into()),
        "the 129th gets a new instance"
    );
}

/// Spin's WASI 0.3 default: up to 16 requests in flight in one instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_serves_up_to_16_requests_at_once() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = std::sync::Arc::new(load_and_serve(f.options()).await);
    let waits: Vec<_> = (0..40)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { get(&app, "/wait?ms=400").await })
        })
        .collect();
    let mut instances = std::collections::HashMap::<String, u32>::new();
    for w in waits {
        let (status, body) = w.await.unwrap();
        assert_eq!(status, 200, "{body}");
        let (id, most) = body.split_once(' ').unwrap();
        let most: u32 = most.parse().unwrap();
        let seen = instances.entry(id.to_string()).or_default();
        *seen = (*seen).max(most);
    }
    let most = instances.values().copied().max().unwrap();
    assert!(most > 1, "no instance served two requests at once: {instances:?}");
    assert!(most <= 16, "an instance had {most} requests in flight: {instances:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_instances_expire_after_a_second() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(f.options()).await;
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
        r#"
[[trigger.http]]
route = "/headers/..."
component = "guest"
[component.guest]
source = "GUEST"
"#,
    );
    let app = load_and_serve(f.options()).await;
    let head =
        "GET /headers?x=1 HTTP/1.1\r\nHost: example.test:3000\r\nspin-path-info: forged\r\nConnection: close\r\n\r\n";
    let (status, body) = request(app.addr, head).await.unwrap();
    assert_eq!(status, 200);
    for line in [
        "spin-full-url: http://example.test:3000/headers?x=1".to_string(),
        "spin-path-info: ".into(),
        "spin-matched-route: /headers/...".into(),
        "spin-base-path: /".into(),
        "spin-raw-component-route: /headers/...".into(),
        "spin-component-route: /headers".into(),
    ] {
        assert!(
            body.lines().any(|l| l.trim_end() == line.trim_end()),
            "missing {line:?} in\n{body}"
        );
    }
    assert!(body.contains("spin-client-addr: 127.0.0.1:"), "{body}");
    // As in Spin, Spin's own headers are appended: a client's copy stays.
    assert!(body.contains("spin-path-info: forged"), "{body}");
    assert!(!body.contains("connection:"), "Connection is stripped: {body}");
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
    let f = Fixture::new(body);

    // Missing required variables stop startup and are all named.
    let err = load(f.options()).await.err().expect("must fail");
    let err = format!("{err:#}");
    assert!(err.contains("\"target\"") && err.contains("\"token\""), "{err}");

    let env = HashMap::from([
        ("SPIN_VARIABLE_TARGET".to_string(), "env".to_string()),
        ("SPIN_VARIABLE_TOKEN".to_string(), "s3cr3t".to_string()),
        ("SPIN_VARIABLE_GREETING".to_string(), "hi".to_string()),
    ]);
    let app = load_and_serve(Options {
        env: Some(env),
        variables: vec![("target".into(), "cli".into())],
        ..f.options()
    })
    .await;
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
    let f = Fixture::new(&manifest("/db", "/other"));
    let file = f.path().join("schema.sql");
    std::fs::write(&file, "CREATE TABLE t(x INTEGER); INSERT INTO t VALUES (42);").unwrap();
    let app = load_and_serve(Options {
        sqlite_statements: vec![
            format!("@{}", file.display()),
            // As in Spin, a statement given inline runs alone: the second never runs.
            "INSERT INTO t VALUES (7); INSERT INTO t VALUES (8);".into(),
        ],
        ..f.options()
    })
    .await;
    let (status, body) = get(&app, "/db?label=default").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("Integer(2)") && body.contains("Text(\"x\")") && body.contains("Null"),
        "{body}"
    );
    let (status, body) = get(&app, "/db?label=other").await;
    assert_eq!((status, body.as_str()), (403, "Error::AccessDenied"));

    // The startup statements ran against <state_dir>/sqlite_db.db.
    let db = rusqlite::Connection::open(f.path().join(".spin/sqlite_db.db")).unwrap();
    let xs: Vec<i64> = db
        .prepare("SELECT x FROM t ORDER BY rowid")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(xs, [42, 7]);

    // A component without the grant is denied even the default database.
    let f = Fixture::new(&manifest("/other", "/db"));
    let app = load_and_serve(f.options()).await;
    let (status, body) = get(&app, "/db?label=default").await;
    assert_eq!((status, body.as_str()), (403, "Error::AccessDenied"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_selected_components_are_served() {
    let f = Fixture::new(
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
    assert_eq!(app.routes().len(), 2);
    let app = serve(app).await;
    assert_eq!(get(&app, "/ok").await.0, 200);
    assert_eq!(get(&app, "/trap").await.0, 404);
    assert_eq!(get(&app, "/elsewhere").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_manifest_keys_stop_startup() {
    let f = Fixture::new(
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

/// The body streams to the guest: a guest that refuses it past 64 KiB
/// answers while the client is still sending, and the host has not read
/// (or held) the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_stream_to_the_guest() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(f.options()).await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let total: usize = 64 << 20;
    s.write_all(
        format!("POST /limit?max=65536 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {total}\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let (mut reader, mut writer) = s.into_split();
    let chunk = vec![b'x'; 64 << 10];
    let sender = tokio::spawn(async move {
        let mut sent = 0usize;
        while sent < total {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), reader.read(&mut answer))
        .await
        .expect("the guest answers before the body ends")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    drop(reader);
    let sent = sender.await.unwrap();
    assert!(sent < total, "the whole {total}-byte body was taken in");
}

/// Beyond Spin: a connection whose request head has not arrived within
/// `header_read_timeout` is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_request_head_is_cut_off() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(Options {
        header_read_timeout: Duration::from_millis(300),
        ..f.options()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(b"GET /ok HTTP/1.1\r\nHost: loc").await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection was left open");
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"), "answered anyway");
    assert_eq!(get(&app, "/ok").await.0, 200, "other connections are served");
}

/// Beyond Spin: at most `max_connections` connections are served at once;
/// the next waits until one closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_are_capped() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(Options {
        max_connections: 2,
        ..f.options()
    })
    .await;
    let idle_a = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let idle_b = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let head = "GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let third = tokio::spawn(request(app.addr, head));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !third.is_finished(),
        "a third connection was served beside two open ones"
    );
    drop(idle_a);
    let answered = tokio::time::timeout(Duration::from_secs(10), third).await;
    assert_eq!(answered.expect("served once a slot is free").unwrap().unwrap().0, 200);
    drop(idle_b);
}

/// As `spin up` does on SIGINT/SIGTERM: stop at once, no drain; a request in
/// flight gets no answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_immediate_as_in_spin() {
    let f = Fixture::new(ONE_COMPONENT);
    let app = load_and_serve(f.options()).await;
    assert_eq!(get(&app, "/ok").await.0, 200);
    let addr = app.addr;
    let head = "GET /wait?ms=3000 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let in_flight = tokio::spawn(request(addr, head));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let Served {
        _stop: stop, server, ..
    } = app;
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(2), server)
        .await
        .expect("the server stops at once")
        .unwrap()
        .unwrap();
    let cut = tokio::time::timeout(Duration::from_secs(2), in_flight)
        .await
        .expect("cut off")
        .unwrap();
    assert!(cut.is_err(), "the in-flight request was answered: {cut:?}");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
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
    let f = Fixture::new(&manifest("db.example:5432"));
    let app = load_and_serve(f.options()).await;
    let (status, body) = get(&app, "/pg").await;
    assert_eq!(status, 502);
    assert!(
        body.contains("ConnectionFailed") && body.contains("not permitted"),
        "{body}"
    );

    // An allowed but unreachable server fails fast with connection-failed.
    let f = Fixture::new(&manifest("127.0.0.1:1"));
    let app = load_and_serve(f.options()).await;
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
    let f = Fixture::new(&manifest(&format!("{}:{}", cfg.host, cfg.port)));
    let app = load_and_serve(Options {
        variables: vec![("pg_url".into(), url.clone())],
        ..f.options()
    })
    .await;
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
    pub(crate) struct Parts {
        pub(crate) host: String,
        pub(crate) port: u16,
    }

    pub(crate) fn parse(url: &str) -> Parts {
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

/// Concurrent inserts, each on its own connection as in Spin (waiting in
/// SQLite's busy handler for the write lock): each guest sees exactly what
/// autocommit gives it: its own `changes` and `last-insert-rowid`, a
/// constraint error for its own statement only, and its row committed when
/// `execute` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sqlite_writes_keep_autocommit_semantics() {
    let f = Fixture::new(
        r#"
[[trigger.http]]
route = "/kv"
component = "guest"
[component.guest]
source = "GUEST"
sqlite_databases = ["default"]
"#,
    );
    let app = std::sync::Arc::new(
        load_and_serve(Options {
            sqlite_statements: vec!["CREATE TABLE kv(id INTEGER PRIMARY KEY, k TEXT UNIQUE)".into()],
            ..f.options()
        })
        .await,
    );
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

/// Pooled connections (as Spin pools them: deadpool, `RecyclingMethod::Clean`)
/// are reused, and reset first: a session setting one request made is gone
/// for the next.
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
    let f = Fixture::new(&manifest);
    let app = load_and_serve(f.options()).await;
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
