//! The accept loop: HTTP/1.1 with keep-alive and HTTP/2 on each connection, deadlines for
//! request heads (silent and slow-loris clients are cut off), a cap on open connections, and
//! graceful shutdown with a bounded grace.
//!
//! Written on hyper-util rather than `axum::serve` because the latter sets no timer, so a
//! client trickling its headers would hold a connection forever.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::cgi_handler::ConnectionAddrs;
use super::connections::{Connections, GuardedBody};

/// How long the accept loop waits before trying again when it cannot accept and nothing
/// else tells it that room was made (descriptors freed by guests closing files, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Connection-level settings.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a client may take to send a request's head, counted from the moment its
    /// connection is accepted, and on a keep-alive connection from the end of the previous
    /// response.
    pub header_timeout: Duration,
    /// Most connections open at once; past it the longest-idle one is closed. `None`
    /// derives it from the open-file limit.
    pub max_connections: Option<usize>,
    /// How long requests in flight may run after shutdown begins.
    pub shutdown_grace: Duration,
}

/// Accepts connections until `stopping` is cancelled, then waits for open connections to
/// finish their requests, for at most the shutdown grace.
pub async fn accept_until(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    max_connections: usize,
    stopping: CancellationToken,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let connections = Connections::new(max_connections);
    let mut episode = AcceptEpisode::default();

    loop {
        let accepted = tokio::select! {
            accepted = accept_with_room(&listener, &connections, &mut episode) => accepted,
            () = stopping.cancelled() => break,
        };
        let (stream, remote) = accepted;
        // Heads and body chunks go out as separate writes; with Nagle's algorithm each small
        // response would wait for the client's delayed ACK (~40 ms).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("cannot disable Nagle's algorithm for {remote}: {error}");
        }
        let local = stream.local_addr().unwrap_or(remote);
        let addrs = ConnectionAddrs { local, remote };
        let connection = Arc::new(connections.open());
        let first_head = CancellationToken::new();
        let service = {
            let connection = connection.clone();
            let first_head = first_head.clone();
            let router = router.clone();
            hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                first_head.cancel();
                let in_flight = connection.request_started();
                request.extensions_mut().insert(ConnectInfo(addrs));
                let request = request.map(axum::body::Body::new);
                let router = router.clone();
                async move {
                    let response = router
                        .oneshot(request)
                        .await
                        .unwrap_or_else(|never| match never {});
                    // The connection is busy until the response's body is done with.
                    Ok::<_, Infallible>(
                        response
                            .map(|body| axum::body::Body::new(GuardedBody::new(body, in_flight))),
                    )
                }
            })
        };
        let serving = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let serving = graceful.watch(serving.into_owned());
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            tokio::select! {
                result = serving => {
                    if let Err(error) = result {
                        tracing::debug!("connection from {remote} ended: {error}");
                    }
                }
                () = first_head_missed(&first_head, header_timeout) => {
                    tracing::debug!("closed the connection from {remote}: no request head within {header_timeout:?}");
                }
                () = connection.closing().cancelled() => {
                    tracing::debug!("closed the idle connection from {remote} to make room");
                }
            }
            // Dropping `connection` here gives its place back.
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

/// Resolves if the connection's first request head is not complete in time. hyper's own
/// header timer starts only once a first byte arrives, so a client that sends nothing would
/// otherwise hold its connection for ever.
async fn first_head_missed(first_head: &CancellationToken, header_timeout: Duration) {
    if tokio::time::timeout(header_timeout, first_head.cancelled())
        .await
        .is_ok()
    {
        std::future::pending::<()>().await;
    }
}

/// Accepts the next connection and makes room for it: under the connection cap, or by
/// closing the longest-idle connection. If every connection has a request in flight, the new
/// one waits (the only one over the cap) and nothing more is accepted until room frees. When
/// the process is out of descriptors, an idle connection is closed to free one, and requests
/// already accepted go on.
async fn accept_with_room(
    listener: &TcpListener,
    connections: &Connections,
    episode: &mut AcceptEpisode,
) -> (TcpStream, std::net::SocketAddr) {
    let mut troubled = false;
    let accepted = loop {
        match listener.accept().await {
            Ok(accepted) => break accepted,
            Err(error) if is_out_of_descriptors(&error) => {
                troubled = true;
                episode.begin(Trouble::OutOfDescriptors(error));
                if !connections.close_longest_idle() {
                    wait_for_room(connections).await;
                }
                // Let the closed connection's task release its descriptor.
                tokio::task::yield_now().await;
            }
            Err(error) => {
                // Per-connection failures (the client reset before we accepted it) are
                // not an episode; back off briefly in case it is something persistent.
                tracing::debug!("cannot accept a connection: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    while connections.make_room().is_err() {
        troubled = true;
        episode.begin(Trouble::AtCapacity(connections.max()));
        wait_for_room(connections).await;
    }
    if !troubled {
        episode.end_if_quiet();
    }
    accepted
}

async fn wait_for_room(connections: &Connections) {
    let _ = tokio::time::timeout(ACCEPT_RETRY, connections.changed()).await;
}

fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
        || error.kind() == io::ErrorKind::OutOfMemory
}

/// Why new connections are not being accepted.
#[derive(Debug)]
enum Trouble {
    AtCapacity(usize),
    OutOfDescriptors(io::Error),
}

/// A stretch of time during which connections could not be accepted at once: logged once
/// when it begins and once when it is over, not on every retry. It is over when accepting has
/// needed no help for [`EPISODE_QUIET`]; during a flood, accepts succeed between failures.
#[derive(Debug, Default)]
struct AcceptEpisode {
    since: Option<Instant>,
    last_trouble: Option<Instant>,
}

/// How long accepting must go smoothly before an episode counts as over. Longer than TCP's
/// first two SYN retransmission gaps (1 s, then 2 s): a flood that overflows the accept
/// backlog arrives in waves that far apart, and each wave is the same episode.
const EPISODE_QUIET: Duration = Duration::from_secs(3);

impl AcceptEpisode {
    fn begin(&mut self, trouble: Trouble) {
        self.last_trouble = Some(Instant::now());
        if self.since.is_some() {
            return;
        }
        self.since = self.last_trouble;
        match trouble {
            Trouble::AtCapacity(max) => tracing::warn!(
                "{max} connections open, all with requests in flight (--max-connections): \
                 new connections wait until one is free"
            ),
            Trouble::OutOfDescriptors(error) => tracing::warn!(
                "cannot accept connections: {error}; closing idle connections, requests in \
                 flight go on, accepting resumes as soon as a descriptor frees (raise \
                 `ulimit -n` or lower --max-connections)"
            ),
        }
    }

    /// Called after an accept that needed no help.
    fn end_if_quiet(&mut self) {
        let (Some(since), Some(last)) = (self.since, self.last_trouble) else {
            return;
        };
        if last.elapsed() >= EPISODE_QUIET {
            tracing::warn!(
                "accepting connections normally again, after {:.1}s of trouble",
                (last - since).as_secs_f64()
            );
            self.since = None;
        }
    }
}
