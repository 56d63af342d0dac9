//! The accept loop: HTTP/1.1 with keep-alive and HTTP/2 on each connection, a deadline for
//! request heads (slow-loris clients are cut off), and graceful shutdown with a bounded grace.
//!
//! Written on hyper-util rather than `axum::serve` because the latter sets no timer, so a
//! client trickling its headers would hold a connection forever.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::cgi_handler::ConnectionAddrs;

/// Connection-level settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's head.
    pub header_timeout: Duration,
    /// How long requests in flight may run after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Accepts connections until `stopping` is cancelled, then waits for open connections to
/// finish their requests, for at most the shutdown grace.
pub async fn accept_until(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stopping: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();

    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually out of file descriptors: back off instead of spinning.
                    tracing::warn!("cannot accept a connection: {error}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopping.cancelled() => break,
        };
        // Heads and body chunks go out as separate writes; with Nagle's algorithm each small
        // response would wait for the client's delayed ACK (~40 ms).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("cannot disable Nagle's algorithm for {remote}: {error}");
        }
        let local = stream.local_addr().unwrap_or(remote);
        let addrs = ConnectionAddrs { local, remote };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(addrs));
            let request = request.map(axum::body::Body::new);
            let router = router.clone();
            async move {
                Ok::<_, Infallible>(
                    router
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|never| match never {}),
                )
            }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("connection from {remote} ended: {error}");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(limits.shutdown_grace) => {
            tracing::warn!(
                "requests still running after the {:?} shutdown grace; exiting anyway",
                limits.shutdown_grace
            );
        }
    }
}
