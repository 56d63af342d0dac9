//! The process-wide WebAssembly engine and WASI runtime, built once at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use wasmer::Engine;
use wasmer::sys::{Cranelift, EngineBuilder, NativeEngineExt};
use wasmer_wasix::runtime::PluggableRuntime;
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::{Runtime, UnsupportedVirtualNetworking};

use super::memory_cap::MemoryCap;
use super::memory_pool::MemoryPool;

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
}

impl GuestEngine {
    /// Builds the engine and the sandboxed runtime. `max_guests` instances may run at once:
    /// as many memories are kept for reuse. Must be called inside a Tokio runtime.
    pub fn new(max_memory: u64, max_guests: usize, compiled_cache: Option<PathBuf>) -> Self {
        let engine = new_engine(max_memory, max_guests);
        GuestEngine {
            runtime: sandboxed_runtime(&engine),
            engine,
            max_memory,
            compiled_cache,
        }
    }
}

/// A Cranelift engine (fast enough to compile interpreters at start-up, good code) whose
/// instances can use at most `max_memory` bytes of linear memory each, in memories reused
/// from a pool of `max_guests`.
fn new_engine(max_memory: u64, max_guests: usize) -> Engine {
    let mut engine: Engine = EngineBuilder::new(Cranelift::default()).engine().into();
    engine.set_tunables(MemoryCap::new(max_memory, MemoryPool::new(max_guests)));
    engine
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
