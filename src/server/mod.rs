//! The HTTP server: axum wiring, connection info, the startup banner and graceful shutdown.

mod access_log;
mod cgi_handler;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use axum::Router;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cgi::StaticEnv;
use crate::runtime::GuestProgram;
use cgi_handler::ConnectionAddrs;

/// Shared by every request; built once before listening.
pub struct AppState {
    pub program: GuestProgram,
    pub static_env: StaticEnv,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// One permit per guest allowed to run at once.
    pub guest_slots: Arc<Semaphore>,
    next_request: AtomicU64,
}

impl AppState {
    pub fn new(
        program: GuestProgram,
        static_env: StaticEnv,
        max_body: usize,
        max_guests: usize,
    ) -> Self {
        AppState {
            program,
            static_env,
            max_body,
            guest_slots: Arc::new(Semaphore::new(max_guests)),
            next_request: AtomicU64::new(1),
        }
    }

    fn next_request_id(&self) -> String {
        format!("r{}", self.next_request.fetch_add(1, Ordering::Relaxed))
    }
}

impl Connected<IncomingStream<'_, TcpListener>> for ConnectionAddrs {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        let remote = *stream.remote_addr();
        let local = stream.io().local_addr().unwrap_or(remote);
        ConnectionAddrs { local, remote }
    }
}

/// Binds `addr`, prints the banner, and serves until SIGINT or SIGTERM.
pub async fn serve(
    app: AppState,
    addr: SocketAddr,
    banner: impl FnOnce(SocketAddr) -> String,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}; is another server using it? choose another with --addr")
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    // Printed on stdout, flushed: scripts and tests wait for this line.
    println!("{}", banner(local));

    let router = Router::new()
        .fallback(cgi_handler::serve_request)
        .with_state(Arc::new(app));
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<ConnectionAddrs>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("the server stopped unexpectedly")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}
