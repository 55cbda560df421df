//! `runner up | check | bench-instantiate`: a `spin up`-shaped CLI.

use anyhow::{Context, Result, anyhow, bail};
use runner::{App, Options};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str = "\
usage:
  runner up    [--listen 127.0.0.1:3000] [--from spin.toml] [--variable KEY=VALUE]...
               [--sqlite @file.sql | --sqlite STATEMENT]... [--state-dir DIR]
               [--timeout-ms N] [--memory-mb N] [--component ID]... [--max-instance-reuse-count N]
               [--quiet-components]
  runner check [--from spin.toml] [--variable KEY=VALUE]... [--config-schema schema.json]
  runner bench-instantiate [--from spin.toml] [--variable KEY=VALUE]... --path /route [-n N]

Variables also come from SPIN_VARIABLE_<NAME> environment variables.";

struct Cli {
    command: String,
    listen: SocketAddr,
    opts: Options,
    bench_path: Option<String>,
    bench_n: usize,
    config_schema: Option<PathBuf>,
}

fn parse(args: Vec<String>) -> Result<Cli> {
    let mut it = args.into_iter();
    let command = it.next().ok_or_else(|| anyhow!("missing command"))?;
    if !matches!(command.as_str(), "up" | "check" | "bench-instantiate") {
        bail!("unknown command {command:?}");
    }
    let mut cli = Cli {
        command,
        listen: "127.0.0.1:3000".parse()?,
        opts: Options::default(),
        bench_path: None,
        bench_n: 1000,
        config_schema: None,
    };
    let mut only = Vec::new();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || -> Result<String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| anyhow!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => cli.listen = value()?.parse().context("--listen")?,
            "-f" | "--from" | "--file" => cli.opts.manifest = PathBuf::from(value()?),
            "--variable" => cli
                .opts
                .variables
                .push(runner::variables::parse_cli_variable(&value()?)?),
            "--sqlite" => cli.opts.sqlite_statements.push(value()?),
            "--state-dir" => cli.opts.state_dir = PathBuf::from(value()?),
            "--timeout-ms" => cli.opts.timeout = Duration::from_millis(value()?.parse().context("--timeout-ms")?),
            "--memory-mb" => {
                let mb: usize = value()?.parse().context("--memory-mb")?;
                cli.opts.memory_limit_bytes = mb << 20;
            }
            "--component" => only.push(value()?),
            "--max-instance-reuse-count" => {
                let n: u32 = value()?.parse().context("--max-instance-reuse-count")?;
                if n == 0 {
                    bail!("--max-instance-reuse-count must be at least 1");
                }
                cli.opts.max_instance_reuse_count = n;
            }
            "--quiet-components" => cli.opts.echo_component_output = false,
            "--config-schema" => cli.config_schema = Some(PathBuf::from(value()?)),
            "--path" => cli.bench_path = Some(value()?),
            "-n" => cli.bench_n = value()?.parse().context("-n")?,
            other => bail!("unknown option {other:?}"),
        }
    }
    if !only.is_empty() {
        cli.opts.only_components = Some(only);
    }
    Ok(cli)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return if args.is_empty() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let cli = match parse(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("runner: {e:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("runner: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command.as_str() {
        "check" => {
            let routes = runner::check_only(&cli.opts)?;
            if let Some(schema) = &cli.config_schema {
                runner::check_config_schema(&cli.opts, schema)?;
            }
            println!("{}: OK ({} routes)", cli.opts.manifest.display(), routes.len());
            Ok(())
        }
        "up" => up(cli).await,
        "bench-instantiate" => bench(cli).await,
        _ => unreachable!(),
    }
}

async fn up(cli: Cli) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let app = App::load(cli.opts).await?;
    let base = format!("http://{}", listener.local_addr()?);
    println!("Serving {base}");
    println!("Available Routes:");
    for (route, component) in app.routes() {
        match route.strip_suffix("/...") {
            Some(prefix) => println!("  {component}: {base}{prefix} (wildcard)"),
            None => println!("  {component}: {base}{route}"),
        }
    }
    app.serve(listener, shutdown_signal()).await?;
    println!("runner: stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
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
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    eprintln!("runner: shutting down, draining in-flight requests");
}

/// Times `handle` (fresh instance + call + collected response) for one route.
async fn bench(mut cli: Cli) -> Result<()> {
    let path = cli
        .bench_path
        .clone()
        .ok_or_else(|| anyhow!("bench-instantiate needs --path"))?;
    cli.opts.echo_component_output = false;
    let start = Instant::now();
    let app = App::load(cli.opts).await?;
    println!("load (compile or cache) : {:?}", start.elapsed());
    let addr: SocketAddr = "127.0.0.1:1".parse()?;
    let request = || {
        http::Request::get(format!("http://localhost{path}"))
            .body(bytes::Bytes::new())
            .expect("request")
    };
    let first = app.handle(request(), addr).await?;
    println!("status of {path}: {}", first.status());
    for _ in 0..20 {
        app.handle(request(), addr).await?;
    }
    let mut samples = Vec::with_capacity(cli.bench_n);
    let total = Instant::now();
    for _ in 0..cli.bench_n {
        let t = Instant::now();
        app.handle(request(), addr).await?;
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
