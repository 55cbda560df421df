//! `runner up | check | bench-instantiate`: the `spin up` flags the app
//! uses, with Spin's names and defaults.

use anyhow::{Context, Result, anyhow};
use clap::{Args, Parser, Subcommand};
use runner::{App, Options, Reuse};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "runner",
    about = "The app's Spin components on wasmtime, as `spin up` serves them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the application (like `spin up`).
    Up {
        #[command(flatten)]
        app: AppArgs,
        /// IP address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:3000", env = "SPIN_HTTP_LISTEN_ADDR")]
        listen: SocketAddr,
    },
    /// Check the manifest, variables and allow-lists without serving.
    Check {
        #[command(flatten)]
        app: AppArgs,
        /// Also validate each component's variables with the app's own
        /// config validation (kit::config), naming every bad one.
        #[arg(long)]
        app_config: bool,
    },
    /// Time in-process requests to one route (instance cost).
    BenchInstantiate {
        #[command(flatten)]
        app: AppArgs,
        /// The route to request (GET).
        #[arg(long)]
        path: String,
        /// Requests to time.
        #[arg(short, default_value_t = 1000)]
        n: usize,
    },
}

#[derive(Args)]
struct AppArgs {
    /// The manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    manifest: PathBuf,
    /// Variables as KEY=VALUE or KEY=@FILE; beat SPIN_VARIABLE_<NAME>.
    #[arg(long = "variable", value_name = "KEY=VALUE")]
    variables: Vec<String>,
    /// SQLite statement or @file.sql, run against the default database at start.
    #[arg(long = "sqlite")]
    sqlite: Vec<String>,
    /// State directory (SQLite file, logs); default `.spin` beside the manifest.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Serve only these components (others' routes answer 404).
    #[arg(short = 'c', long = "component-id", alias = "component")]
    components: Vec<String>,
    /// Requests one WASI 0.3 instance serves before it is dropped.
    #[arg(long, default_value_t = Reuse::default().max_requests)]
    max_instance_reuse_count: usize,
    /// Requests one WASI 0.3 instance serves at once.
    #[arg(long, default_value_t = Reuse::default().max_concurrent)]
    max_instance_concurrent_reuse_count: usize,
    /// Time an idle instance is kept for reuse (e.g. 1s, 500ms).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    idle_instance_timeout: Duration,
    /// Request timeout (e.g. 30s, 500ms); none by default, as in Spin.
    #[arg(long, value_parser = parse_duration)]
    request_timeout: Option<Duration>,
    /// Largest linear memory of an instance, in bytes; none by default.
    #[arg(long, env = "SPIN_MAX_INSTANCE_MEMORY")]
    max_instance_memory: Option<usize>,
    /// Silence component output on the terminal (it still goes to the log files).
    #[arg(short, long)]
    quiet: bool,
    /// Compile components on every start instead of using wasmtime's cache.
    #[arg(long, env = "DISABLE_WASMTIME_CACHE")]
    disable_cache: bool,
    /// Connections served at once (beyond Spin, which has no cap).
    #[arg(long, default_value_t = Options::default().max_connections)]
    max_connections: usize,
    /// Time a connection may take to send a request head (beyond Spin, which
    /// has no such timeout).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    header_read_timeout: Duration,
}

impl AppArgs {
    fn options(self) -> Result<Options> {
        let variables = self
            .variables
            .iter()
            .map(|v| runner::parse_cli_variable(v))
            .collect::<Result<_>>()?;
        if self.max_instance_reuse_count == 0 || self.max_instance_concurrent_reuse_count == 0 {
            return Err(anyhow!("instance reuse counts must be at least 1"));
        }
        Ok(Options {
            manifest: self.manifest,
            state_dir: self.state_dir.unwrap_or_default(),
            variables,
            env: None,
            sqlite_statements: self.sqlite,
            only_components: (!self.components.is_empty()).then_some(self.components),
            reuse: Reuse {
                max_requests: self.max_instance_reuse_count,
                max_concurrent: self.max_instance_concurrent_reuse_count,
                idle_timeout: self.idle_instance_timeout,
                request_timeout: self.request_timeout,
            },
            max_instance_memory: self.max_instance_memory,
            echo_component_output: !self.quiet,
            cache: !self.disable_cache,
            max_connections: self.max_connections,
            header_read_timeout: self.header_read_timeout,
        })
    }
}

/// Spin's duration syntax: a bare number is seconds; `s`, `ms`, `us`, `ns`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let number = |n: &str| n.parse::<u64>().map_err(|e| format!("invalid duration {s:?}: {e}"));
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if let Some(n) = s.strip_suffix("ms") {
        Ok(Duration::from_millis(number(n)?))
    } else if let Some(n) = s.strip_suffix("us") {
        Ok(Duration::from_micros(number(n)?))
    } else if let Some(n) = s.strip_suffix("ns") {
        Ok(Duration::from_nanos(number(n)?))
    } else if let Some(n) = s.strip_suffix('s') {
        Ok(Duration::from_secs(number(n)?))
    } else {
        Err(format!("invalid duration {s:?}: use a number with s, ms, us or ns"))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Up { app, listen } => up(app.options()?, listen).await,
        Command::Check { app, app_config } => {
            let opts = app.options()?;
            let routes = runner::check_startup(&opts)?;
            if app_config {
                runner::check_component_variables(&opts)?;
            }
            println!("{}: OK ({} routes)", opts.manifest.display(), routes.len());
            Ok(())
        }
        Command::BenchInstantiate { app, path, n } => bench(app.options()?, &path, n).await,
    }
}

async fn up(opts: Options, listen: SocketAddr) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let app = App::load(opts).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("\nServing {base}");
    println!("Available Routes:");
    for (route, component) in app.routes() {
        match route.strip_suffix("/...") {
            Some(prefix) => println!("  {component}: {base}{prefix} (wildcard)"),
            None => println!("  {component}: {base}{route}"),
        }
    }
    app.serve(listener, shutdown_signal()).await
}

/// SIGINT or SIGTERM: `spin up` then exits at once, and so does the runner.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Times `n` sequential in-process GETs of `path`, body read to the end.
async fn bench(mut opts: Options, path: &str, n: usize) -> Result<()> {
    opts.echo_component_output = false;
    let start = Instant::now();
    let app = App::load(opts).await?;
    println!("load (compile or cache) : {:?}", start.elapsed());
    let client: SocketAddr = "127.0.0.1:1".parse()?;
    let once = async || -> Result<u16> {
        let request = http::Request::get(path)
            .header("host", "localhost")
            .body(runner::empty_body())
            .context("request")?;
        let response = app.handle(request, http::uri::Scheme::HTTP, client).await?;
        let status = response.status().as_u16();
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .map_err(|e| anyhow!("response body: {e}"))?;
        Ok(status)
    };
    println!("status of {path}: {}", once().await?);
    for _ in 0..20 {
        once().await?;
    }
    let mut samples = Vec::with_capacity(n);
    let total = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        once().await?;
        samples.push(t.elapsed());
    }
    let total = total.elapsed();
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "n={} mean={:?} p50={:?} p90={:?} p99={:?} ({:.0} req/s sequential, in-process)",
        samples.len(),
        total / samples.len() as u32,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples.len() as f64 / total.as_secs_f64()
    );
    Ok(())
}
