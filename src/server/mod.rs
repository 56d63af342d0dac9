//! The HTTP server: axum wiring, connection info, the startup banner and graceful shutdown.

mod access_log;
mod cgi_handler;
mod connections;
mod fd_limit;
mod guest_threads;
mod listener;
mod metrics_endpoint;
mod request_body;
mod route_table;
mod static_files;
mod static_response;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cgi::{ScriptRouting, StaticEnv};
use crate::runtime::{GuestFiles, GuestProgram};
pub use access_log::log_access_as_fields;
pub use listener::ConnectionLimits;
pub use route_table::{RoutePattern, RouteTable};
pub use static_files::{StaticDir, StaticFiles, normalise_prefix};

/// Per-request limits, from the command line.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock limit per request, queueing included.
    pub timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub max_body: u64,
    /// Instances allowed to run at once.
    pub max_guests: usize,
    /// Requests allowed to wait for an instance.
    pub max_queue: usize,
}

/// One app of a site: a program and everything that belongs to it alone. The sub-routes a
/// module lists in `_routes` are apps of their own sharing its program.
#[derive(Clone)]
pub struct App {
    pub program: Arc<GuestProgram>,
    pub static_env: StaticEnv,
    /// Script routing under a document root, when the command asks for it.
    pub routing: Option<ScriptRouting>,
    /// The guest's mounts, for decisions made before an instance starts.
    pub guest_files: GuestFiles,
    /// Directories whose files the host serves without an instance.
    pub static_files: StaticFiles,
    /// The export each request calls: `_start`, or a WAGI module's `entrypoint`.
    pub entrypoint: String,
    /// How a request's argv is made.
    pub argv: Argv,
    /// This app's own share of the instance slots (WAGI's `http_max_concurrency`), if any.
    pub slots: Option<Arc<Semaphore>>,
}

/// A request's argv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Argv {
    /// The program's own: the command name, `main-args`, `-- ARGS` (a wasmer.toml package).
    Program,
    /// WAGI's template: words, where `${SCRIPT_NAME}` is the matched route's path and
    /// `${ARGS}` the query's `&`-separated items. WAGI's default is `${SCRIPT_NAME} ${ARGS}`.
    Template(Vec<String>),
}

impl App {
    pub fn new(program: Arc<GuestProgram>, static_env: StaticEnv) -> Self {
        App {
            // Routing looks at the same mounts the instances get.
            guest_files: GuestFiles::new(program.mounts().to_vec()),
            program,
            static_env,
            routing: None,
            static_files: StaticFiles::default(),
            entrypoint: "_start".to_string(),
            argv: Argv::Program,
            slots: None,
        }
    }
}

/// What is served: which app serves which paths, and the files under paths no route claims.
/// Replaced whole when a reload rebuilds it; a request keeps the one it started with.
pub struct Site {
    pub routes: RouteTable<Arc<App>>,
    /// What `--static` serves under paths no route claims (under a route, its app's own
    /// static files, which include `--static`, decide).
    pub unrouted_static: StaticFiles,
    /// Which compiler made its machine code (`cranelift`, `llvm`).
    pub compiler: &'static str,
}

/// The site being served, replaceable while requests run.
pub type SiteHandle = Arc<ArcSwap<Site>>;

/// Serves `site` from now on; requests in flight finish on the one they started with.
pub fn switch_site(handle: &SiteHandle, site: Site) {
    crate::metrics::serving_compiler(site.compiler);
    handle.store(Arc::new(site));
}

/// Shared by every request; built once before listening. What is server-wide lives here;
/// what belongs to one app, in its [`App`].
pub struct AppState {
    site: SiteHandle,
    pub limits: Limits,
    /// One permit per instance allowed to run at once.
    guest_slots: Arc<Semaphore>,
    /// Where the instances run: one thread per permit.
    guest_threads: guest_threads::GuestThreads,
    waiting: AtomicUsize,
    next_request: AtomicU64,
    /// `--health-path`, answered by the server itself.
    health_path: Option<String>,
    /// Set once a shutdown signal arrived: the health path answers 503.
    draining: AtomicBool,
}

/// Why a request did not get an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The wait queue is full.
    QueueFull,
    /// No instance became free before the request's deadline.
    WaitedTooLong,
}

impl AppState {
    pub fn new(site: Site, limits: Limits) -> anyhow::Result<Self> {
        crate::metrics::serving_compiler(site.compiler);
        Ok(AppState {
            site: Arc::new(ArcSwap::from_pointee(site)),
            guest_slots: Arc::new(Semaphore::new(limits.max_guests)),
            guest_threads: guest_threads::GuestThreads::start(limits.max_guests)?,
            limits,
            waiting: AtomicUsize::new(0),
            next_request: AtomicU64::new(1),
            health_path: None,
            draining: AtomicBool::new(false),
        })
    }

    /// Whether `path` is the health path, and if so whether the server is healthy: `None` for
    /// any other path.
    fn health(&self, path: &str) -> Option<bool> {
        (self.health_path.as_deref() == Some(path)).then(|| self.serving())
    }

    /// Whether no shutdown signal has arrived yet.
    fn serving(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// The handle a reload replaces the site through.
    pub fn site_handle(&self) -> SiteHandle {
        self.site.clone()
    }

    fn next_request_id(&self) -> String {
        format!("r{}", self.next_request.fetch_add(1, Ordering::Relaxed))
    }

    /// A slot to run one instance in (and one of the app's own share, if it has one): at once
    /// if they are free, else after waiting in the bounded queue until they free up or the
    /// deadline passes. Waiting for an app's share takes a place in the queue like any wait.
    async fn admit(
        &self,
        app_slots: Option<&Arc<Semaphore>>,
        deadline: Instant,
    ) -> Result<Admission, Refusal> {
        let at_once = || {
            let app = match app_slots {
                Some(slots) => Some(slots.clone().try_acquire_owned().ok()?),
                None => None,
            };
            let server = self.guest_slots.clone().try_acquire_owned().ok()?;
            Some(Admission {
                _app: app,
                _server: server,
            })
        };
        if let Some(admission) = at_once() {
            return Ok(admission);
        }
        let _place = QueuePlace::take(&self.waiting, self.limits.max_queue)?;
        let wait = async {
            let app = match app_slots {
                Some(slots) => Some(slots.clone().acquire_owned().await?),
                None => None,
            };
            let server = self.guest_slots.clone().acquire_owned().await?;
            Ok::<_, tokio::sync::AcquireError>(Admission {
                _app: app,
                _server: server,
            })
        };
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(admission)) => Ok(admission),
            Ok(Err(_)) | Err(_) => Err(Refusal::WaitedTooLong),
        }
    }
}

/// The right to run one instance, given back when the instance ends and this is dropped.
pub struct Admission {
    _app: Option<OwnedSemaphorePermit>,
    _server: OwnedSemaphorePermit,
}

/// A place in the wait queue, given back when dropped.
struct QueuePlace<'a>(&'a AtomicUsize);

impl<'a> QueuePlace<'a> {
    fn take(waiting: &'a AtomicUsize, max: usize) -> Result<Self, Refusal> {
        let before = waiting.fetch_add(1, Ordering::SeqCst);
        crate::metrics::metrics().requests_waiting.inc();
        let place = QueuePlace(waiting);
        if before >= max {
            return Err(Refusal::QueueFull);
        }
        Ok(place)
    }
}

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
        crate::metrics::metrics().requests_waiting.dec();
    }
}

/// What the server offers operators besides the site.
#[derive(Debug, Clone, Default)]
pub struct Operations {
    /// `--health-path`.
    pub health_path: Option<String>,
    /// `--shutdown-delay`: how long to go on serving after a shutdown signal.
    pub shutdown_delay: Duration,
    /// `--metrics-addr`.
    pub metrics_addr: Option<SocketAddr>,
}

/// Binds `addr`, prints the banner, and serves until SIGINT or SIGTERM (and the shutdown
/// delay after it); then lets requests in flight finish for at most the shutdown grace.
pub async fn serve(
    mut app: AppState,
    addr: SocketAddr,
    limits: ConnectionLimits,
    operations: Operations,
    banner: impl FnOnce(SocketAddr) -> String,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr}; is another server using it? choose another with --addr")
    })?;
    let local = listener
        .local_addr()
        .context("cannot read the listening address")?;
    if let Some(metrics_addr) = operations.metrics_addr {
        metrics_endpoint::start(metrics_addr).await?;
    }
    app.health_path = operations.health_path;
    let max_connections = fd_limit::connection_cap(limits.max_connections, app.limits.max_guests);
    // Registered before the banner: a signal sent as soon as it appears must stop the server
    // gracefully, not kill it with the default action.
    let signal = shutdown_signal().context("cannot listen for SIGINT and SIGTERM")?;
    // Printed on stdout, flushed: scripts and tests wait for this line.
    println!("{}", banner(local));

    let app = Arc::new(app);
    let router = Router::new()
        .fallback(cgi_handler::serve_request)
        .with_state(app.clone());
    let stopping = CancellationToken::new();
    let signalled = stopping.clone();
    let delay = operations.shutdown_delay;
    tokio::spawn(async move {
        signal.await;
        app.draining.store(true, Ordering::Relaxed);
        if !delay.is_zero() {
            tracing::info!(
                "shutting down: still serving for {} (the health path answers 503)",
                humantime::format_duration(delay)
            );
            tokio::time::sleep(delay).await;
        }
        tracing::info!("shutting down: no new connections, finishing requests in flight");
        signalled.cancel();
    });
    listener::accept_until(listener, router, limits, max_connections, stopping).await;
    tracing::info!("stopped");
    Ok(())
}

/// Listens for SIGINT (Ctrl-C) and SIGTERM from now on; the future resolves on either.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Listens for Ctrl-C; the future resolves on it.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
