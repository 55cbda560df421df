//! The HTTP loop, as `spin up` runs it: hyper's auto builder (HTTP/1.1 and
//! h2c) per accepted connection, every request handed to [`App::handle`],
//! bodies streamed both ways, no `TCP_NODELAY`, and no drain at shutdown.
//!
//! Two limits Spin does not have guard the runner's host: at most
//! `max_connections` connections are served at once (the rest wait in the
//! listen backlog), and a connection whose request head takes longer than
//! `header_read_timeout` to arrive is closed.

use crate::app::App;
use anyhow::Result;
use http::uri::Scheme;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

/// Accepts connections on `listener` and serves them until `shutdown`.
pub(crate) async fn serve(app: App, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let slots = Arc::new(Semaphore::new(app.options().max_connections));
    // Dropping the set aborts every connection: shutdown is immediate.
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return Ok(()),
            permit = slots.clone().acquire_owned() => permit?,
        };
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                connections.spawn(connection(app.clone(), stream, peer, permit));
            }
            Err(e) => {
                // Transient (e.g. too many open files): keep serving.
                eprintln!("runner: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
        while connections.try_join_next().is_some() {}
    }
}

async fn connection(app: App, stream: TcpStream, peer: SocketAddr, _slot: OwnedSemaphorePermit) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(app.options().header_read_timeout);
    let service = service_fn(move |request: http::Request<Incoming>| {
        let app = app.clone();
        async move {
            let request = request.map(|body| body.map_err(wasmtime_wasi_http::Error::Hyper).boxed_unsync());
            app.handle(request, Scheme::HTTP, peer).await
        }
    });
    // Spin logs a failed connection (a client gone mid-request) only at
    // `warn`, below its default filter; so does the runner: not at all.
    let _ = builder.serve_connection(TokioIo::new(stream), service).await;
}
