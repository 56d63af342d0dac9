//! The process-wide WebAssembly engine and WASI runtime, built once at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use wasmer::Engine;
use wasmer::sys::{CompilerConfig, Cranelift, EngineBuilder, NativeEngineExt};
use wasmer_wasix::runtime::PluggableRuntime;
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::{Runtime, UnsupportedVirtualNetworking};

use super::memory_cap::MemoryCap;
use super::memory_image::MemoryImage;
use super::memory_pool::MemoryPool;

/// Set to `1`, every guest function compiled or loaded is named in `/tmp/perf-PID.map`, so that
/// `perf record` / `perf report` show guest frames by name (when the module has a name section).
const PERF_MAP_VAR: &str = "WCGI_PERF_MAP";

/// The shared WASI runtime handed to every instance.
pub type SharedRuntime = Arc<dyn Runtime + Send + Sync>;

/// What every program of the process shares: the engine with its memory cap, the WASI
/// runtime, and where compiled modules are cached. Built once, before any module compiles.
#[derive(Clone)]
pub struct GuestEngine {
    pub(super) engine: Engine,
    pub(super) runtime: SharedRuntime,
    /// Linear memory each instance may use, in bytes.
    pub(super) max_memory: u64,
    /// Where compiled modules are cached across runs; `None` compiles every time.
    pub(super) compiled_cache: Option<PathBuf>,
    /// The reusable memories every instance gets.
    pub(super) pool: Arc<MemoryPool>,
}

impl GuestEngine {
    /// Builds the engine (Cranelift: fast enough to compile interpreters at start-up, good
    /// code) and the sandboxed runtime. Instances can use at most `max_memory` bytes of linear
    /// memory each; `max_guests` may run at once, and as many memories are kept for reuse.
    /// Must be called inside a Tokio runtime.
    pub fn new(max_memory: u64, max_guests: usize, compiled_cache: Option<PathBuf>) -> Self {
        let pool = MemoryPool::new(max_guests);
        let mut compiler = Cranelift::default();
        if std::env::var_os(PERF_MAP_VAR).is_some_and(|value| value == "1") {
            compiler.enable_perfmap();
        }
        let mut engine: Engine = EngineBuilder::new(compiler).engine().into();
        engine.set_tunables(MemoryCap::new(max_memory, pool.clone()));
        GuestEngine {
            runtime: sandboxed_runtime(&engine),
            engine,
            max_memory,
            compiled_cache,
            pool,
        }
    }

    /// The engine for the instances of a program whose memory starts as `image`: the same
    /// engine (modules compiled by one run in the other), with tunables that map the image.
    pub(super) fn with_memory_image(&self, image: Arc<MemoryImage>) -> Engine {
        let mut engine = self.engine.clone();
        engine.set_tunables(MemoryCap::new(self.max_memory, self.pool.clone()).with_image(image));
        engine
    }
}

/// The WASI runtime every guest runs in. Must be called inside a Tokio runtime.
fn sandboxed_runtime(engine: &Engine) -> SharedRuntime {
    let tasks = TokioTaskManager::new(tokio::runtime::Handle::current());
    let mut runtime = PluggableRuntime::new(Arc::new(tasks));
    runtime.set_engine(engine.clone());
    // The default is the host's real network: a WASIX guest could open sockets anywhere.
    // Guests get no network at all.
    runtime.set_networking_implementation(UnsupportedVirtualNetworking::default());
    Arc::new(runtime)
}
