//! The process-wide WebAssembly engine and WASI runtime, built once at start-up.

use std::path::PathBuf;
use std::sync::Arc;

use wasmer::Engine;
#[cfg(feature = "llvm")]
use wasmer::sys::LLVM;
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

/// Which of wasmer's compilers turns guest modules into machine code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Compiler {
    /// Compiles quickly (php-cgi in seconds), good code.
    #[default]
    Cranelift,
    /// Compiles slowly (php-cgi in a minute or two, once: the result is cached), faster code
    /// for interpreters. Only in a wcgi built with the `llvm` cargo feature.
    Llvm,
    /// Cranelift at once, then LLVM in the background at low priority, switched to once built
    /// (see `tier_up`). Only in a wcgi built with the `llvm` cargo feature.
    Tiered,
}

impl Compiler {
    /// The configured compiler, or why this build cannot offer it.
    fn config(self) -> anyhow::Result<Box<dyn CompilerConfig>> {
        let perf_map = std::env::var_os(PERF_MAP_VAR).is_some_and(|value| value == "1");
        let mut config: Box<dyn CompilerConfig> = match self {
            Compiler::Cranelift => Box::new(Cranelift::default()),
            #[cfg(feature = "llvm")]
            Compiler::Llvm => Box::new(LLVM::new()),
            // The engine serving first; `tier_up` brings LLVM's.
            #[cfg(feature = "llvm")]
            Compiler::Tiered => Box::new(Cranelift::default()),
            #[cfg(not(feature = "llvm"))]
            Compiler::Llvm | Compiler::Tiered => anyhow::bail!(
                "this wcgi was built without the LLVM compiler; build it with `--features llvm` \
                 (needs LLVM 22: `apt-get install llvm-22-dev libpolly-22-dev`), or use \
                 --compiler cranelift"
            ),
        };
        if perf_map {
            config.enable_perfmap();
        }
        Ok(config)
    }
}

/// The shared WASI runtime handed to every instance.
pub type SharedRuntime = Arc<dyn Runtime + Send + Sync>;

/// What every program of the process shares: the engine with its memory cap, the WASI
/// runtime, and where compiled modules are cached. Built once, before any module compiles.
#[derive(Clone)]
pub struct GuestEngine {
    pub(super) engine: Engine,
    /// The compiler `engine` compiles with.
    compiler: Compiler,
    pub(super) runtime: SharedRuntime,
    /// Linear memory each instance may use, in bytes.
    pub(super) max_memory: u64,
    /// Where compiled modules are cached across runs; `None` compiles every time.
    pub(super) compiled_cache: Option<PathBuf>,
    /// The reusable memories every instance gets.
    pub(super) pool: Arc<MemoryPool>,
}

impl GuestEngine {
    /// Builds the engine with `compiler` and the sandboxed runtime. Instances can use at most
    /// `max_memory` bytes of linear memory each; `max_guests` may run at once, and as many
    /// memories are kept for reuse. Must be called inside a Tokio runtime.
    pub fn new(
        compiler: Compiler,
        max_memory: u64,
        max_guests: usize,
        compiled_cache: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        Self::build(
            compiler,
            max_memory,
            compiled_cache,
            MemoryPool::new(max_guests),
        )
    }

    /// The name of the compiler this engine's machine code comes from.
    pub fn compiler_name(&self) -> &'static str {
        match self.compiler {
            // `tiered` compiles with Cranelift; its LLVM engine is another `GuestEngine`.
            Compiler::Cranelift | Compiler::Tiered => "cranelift",
            Compiler::Llvm => "llvm",
        }
    }

    /// Another engine, with `compiler`, for the same instances: the same memory cap, compiled
    /// cache and pool of memories (which hold no code, so either engine's instances reuse
    /// them). Must be called inside a Tokio runtime.
    pub fn with_compiler(&self, compiler: Compiler) -> anyhow::Result<Self> {
        Self::build(
            compiler,
            self.max_memory,
            self.compiled_cache.clone(),
            self.pool.clone(),
        )
    }

    fn build(
        compiler: Compiler,
        max_memory: u64,
        compiled_cache: Option<PathBuf>,
        pool: Arc<MemoryPool>,
    ) -> anyhow::Result<Self> {
        let mut engine: Engine = EngineBuilder::new(compiler.config()?).engine().into();
        engine.set_tunables(MemoryCap::new(max_memory, pool.clone()));
        Ok(GuestEngine {
            runtime: sandboxed_runtime(&engine),
            engine,
            compiler,
            max_memory,
            compiled_cache,
            pool,
        })
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
