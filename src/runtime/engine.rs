//! The process-wide WebAssembly engine and WASI runtime, built once at start-up.

use std::sync::Arc;

use wasmer::Engine;
use wasmer::sys::{Cranelift, EngineBuilder};
use wasmer_wasix::runtime::PluggableRuntime;
use wasmer_wasix::runtime::task_manager::tokio::TokioTaskManager;
use wasmer_wasix::{Runtime, UnsupportedVirtualNetworking};

/// The shared WASI runtime handed to every instance.
pub type SharedRuntime = Arc<dyn Runtime + Send + Sync>;

/// A Cranelift engine: fast enough to compile interpreters at start-up, good code.
pub fn new_engine() -> Engine {
    EngineBuilder::new(Cranelift::default()).engine().into()
}

/// The WASI runtime every guest runs in. Must be called inside a Tokio runtime.
pub fn sandboxed_runtime(engine: &Engine) -> SharedRuntime {
    let tasks = TokioTaskManager::new(tokio::runtime::Handle::current());
    let mut runtime = PluggableRuntime::new(Arc::new(tasks));
    runtime.set_engine(engine.clone());
    // The default is the host's real network: a WASIX guest could open sockets anywhere.
    // Guests get no network at all.
    runtime.set_networking_implementation(UnsupportedVirtualNetworking::default());
    Arc::new(runtime)
}
