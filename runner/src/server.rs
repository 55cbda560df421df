//! HTTP/1.1 front end on hyper: accept until shutdown, then stop accepting,
//! ask every connection to finish its in-flight request, and wait for them
//! up to the drain deadline.

use crate::app::App;
use anyhow::Result;
use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub async fn serve(app: App, listener: tokio::net::TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Transient (e.g. too many open files): keep serving.
                        eprintln!("runner: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                connections.spawn(connection(app.clone(), stream, peer, stop_rx.clone()));
                while connections.try_join_next().is_some() {}
            }
        }
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drain = app.drain_timeout();
    let all_done = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(drain, all_done).await.is_err() {
        eprintln!(
            "runner: {} connection(s) still busy after {}ms; closing them",
            connections.len(),
            drain.as_millis()
        );
        connections.abort_all();
    }
    Ok(())
}

async fn connection(app: App, stream: tokio::net::TcpStream, peer: SocketAddr, mut stop: watch::Receiver<bool>) {
    let service = service_fn(move |req: http::Request<Incoming>| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(respond(&app, req, peer).await) }
    });
    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            // Finishes the request in flight (if any), then closes.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn respond(app: &App, req: http::Request<Incoming>, peer: SocketAddr) -> http::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = match Limited::new(body, app.max_request_body_bytes()).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            let status = if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::BAD_REQUEST
            };
            return status_only(status);
        }
    };
    match app.handle(http::Request::from_parts(parts, body), peer).await {
        Ok(resp) => resp.map(Full::new),
        Err(e) => {
            eprintln!("runner: request failed: {e:#}");
            status_only(StatusCode::INTERNAL_SERVER_ERROR)
        }
    }
}

fn status_only(status: StatusCode) -> http::Response<Full<Bytes>> {
    let mut r = http::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}
