//! A command compiled once, and one fresh sandboxed instance of it per request.

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmer::{Engine, Extern, ExternType, Instance, Module, Store};
use wasmer_types::ModuleHash;
use wasmer_wasix::wasmer_wasix_types::wasi::{Errno, Signal};
use wasmer_wasix::{
    WasiEnvBuilder, WasiError, WasiFunctionEnv, WasiModuleInstanceHandles, WasiModuleTreeHandles,
};

use super::compiled_cache;
use super::engine::{GuestEngine, SharedRuntime};
use super::memory_cap::PAGE_SIZE;
use super::mounts::Mount;
use super::root_fs::RootLayout;
use super::sqlite_locks::LockLedger;
use super::stdio::{GuestLog, GuestStdin, GuestStdout};
use super::wasi_imports::WasiImports;
use super::watchdog::{StopReason, Watchdog};

/// Import namespaces the WASI runtime can satisfy.
const WASI_IMPORT_MODULES: [&str; 4] = [
    "wasi_snapshot_preview1",
    "wasi_unstable",
    "wasix_32v1",
    "wasix_64v1",
];

/// Everything needed to prepare a command, fixed for the life of the server.
pub struct ProgramSpec {
    /// The command name: the guest's `argv[0]`.
    pub name: String,
    pub wasm: Bytes,
    /// Arguments after `argv[0]`: the command's `main-args`, then the user's `-- ARGS`.
    pub args: Vec<String>,
    pub mounts: Vec<Mount>,
    /// The guest's working directory (the `cwd` of the WASI annotation).
    pub current_dir: Option<String>,
}

/// A compiled command, ready to be instantiated for each request.
pub struct GuestProgram {
    engine: Engine,
    runtime: SharedRuntime,
    module: Module,
    hash: ModuleHash,
    imports: WasiImports,
    name: String,
    args: Vec<String>,
    root: RootLayout,
}

/// The per-request inputs and outputs of one instance.
pub struct Invocation {
    pub env: Vec<(String, String)>,
    /// The request body, fed while the guest runs.
    pub stdin: GuestStdin,
    pub stdout: GuestStdout,
    pub stderr: GuestLog,
    /// When the instance is stopped if it is still running.
    pub deadline: Instant,
    /// Cancelled when nobody wants the response any more (the client went away); the
    /// instance is then stopped.
    pub abandoned: CancellationToken,
}

/// How an instance ended.
#[derive(Debug)]
pub enum GuestExit {
    /// `_start` returned or the guest called `proc_exit`.
    Exited(i32),
    /// The guest trapped (unreachable, out-of-bounds access, stack overflow...).
    Trapped(String),
    /// Stopped at its deadline.
    TimedOut,
    /// Stopped because its response was no longer wanted.
    Abandoned,
    /// The instance could not be set up.
    Failed(anyhow::Error),
}

impl GuestExit {
    pub fn is_success(&self) -> bool {
        matches!(self, GuestExit::Exited(0))
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::Exited(code) => write!(f, "exited with status {code}"),
            GuestExit::Trapped(trap) => write!(f, "trapped: {trap}"),
            GuestExit::TimedOut => write!(f, "was stopped at its deadline (--timeout)"),
            GuestExit::Abandoned => write!(f, "was stopped: the client went away"),
            GuestExit::Failed(error) => write!(f, "could not start: {error:#}"),
        }
    }
}

impl GuestProgram {
    /// Compiles the module with the process's engine (or loads it from the compiled cache)
    /// and checks it can run as a WASI command.
    pub fn compile(engine: &GuestEngine, spec: ProgramSpec) -> anyhow::Result<Self> {
        let module = compiled_cache::load_or_compile(
            &engine.engine,
            &spec.wasm,
            engine.max_memory,
            engine.compiled_cache.as_deref(),
        )?;
        check_is_wasi_command(&module)?;
        check_fits_memory_cap(&module, engine.max_memory)?;
        Ok(GuestProgram {
            runtime: engine.runtime.clone(),
            hash: ModuleHash::new(&spec.wasm),
            engine: engine.engine.clone(),
            imports: WasiImports::of(&module),
            module,
            name: spec.name,
            args: spec.args,
            root: RootLayout::new(spec.mounts, spec.current_dir),
        })
    }

    /// The mounts every instance gets.
    pub fn mounts(&self) -> &[Mount] {
        self.root.mounts()
    }

    /// Runs one fresh instance to completion on the calling thread, which must be allowed to
    /// block and must be inside a Tokio runtime context (e.g. a `spawn_blocking` thread).
    pub fn run(&self, invocation: Invocation) -> GuestExit {
        match self.instantiate_and_start(invocation) {
            Ok(exit) => exit,
            Err(error) => GuestExit::Failed(error),
        }
    }

    fn instantiate_and_start(&self, invocation: Invocation) -> anyhow::Result<GuestExit> {
        if invocation.abandoned.is_cancelled() {
            return Ok(GuestExit::Abandoned);
        }
        let request_id = invocation.stderr.request_id().to_string();
        let mut builder = WasiEnvBuilder::new(&self.name);
        builder.set_runtime(self.runtime.clone());
        builder.set_module_hash(self.hash);
        builder.add_args(&self.args);
        builder.add_envs(invocation.env);
        builder.set_stdin(Box::new(invocation.stdin));
        builder.set_stdout(Box::new(invocation.stdout));
        builder.set_stderr(Box::new(invocation.stderr));
        let locks = Arc::new(LockLedger::default());
        self.root.install(&mut builder, &locks)?;
        let env = builder.build()?;

        let mut store = Store::new(self.engine.clone());
        let mut wasi_env = WasiFunctionEnv::new(&mut store, env);
        let imports = self.imports.for_instance(&mut store, &wasi_env.env);
        let instance = match Instance::new(&mut store, &self.module, &imports)
            .map_err(anyhow::Error::from)
            .and_then(|instance| {
                attach_instance(&mut wasi_env, &mut store, &instance)?;
                Ok(instance)
            }) {
            Ok(instance) => instance,
            Err(error) => {
                // Closes the guest's files, so whoever waits on its stdout sees the end.
                wasi_env.on_exit(&mut store, Some(Errno::Noexec.into()));
                return Err(error);
            }
        };
        let start = instance.exports.get_function("_start")?.clone();

        let interrupter = store.interrupter();
        let process = wasi_env.data(&store).process.clone();
        let watchdog = Watchdog::arm(invocation.deadline, invocation.abandoned, move || {
            interrupter.interrupt();
            process.signal_process(Signal::Sigkill);
        });
        let result = start.call(&mut store, &[]);
        let stopped = watchdog.disarm();

        let exit = match result {
            Ok(_) => GuestExit::Exited(0),
            Err(error) => match error.downcast::<WasiError>() {
                Ok(WasiError::Exit(code)) => GuestExit::Exited(code.raw()),
                Ok(other) => GuestExit::Trapped(other.to_string()),
                Err(trap) => GuestExit::Trapped(trap.to_string()),
            },
        };
        // A guest that finished cleanly keeps its result even if the watchdog fired as it did.
        let exit = match (stopped, exit) {
            (_, exit) if exit.is_success() => exit,
            (Some(StopReason::TimedOut), _) => GuestExit::TimedOut,
            (Some(StopReason::Abandoned), _) => GuestExit::Abandoned,
            (None, exit) => exit,
        };
        let code = match exit {
            GuestExit::Exited(code) => code,
            _ => 1,
        };
        // Closes the guest's files, stdout included, so the response stream ends.
        wasi_env.on_exit(&mut store, Some(code.into()));
        // Dropping the store frees the instance's memory before the slot is given back.
        drop(instance);
        drop(store);
        let stale = locks.release_leftovers();
        if !stale.is_empty() {
            tracing::warn!(
                request = %request_id,
                "the instance ended ({exit}) still holding SQLite locks; removed {}",
                stale.join(", ")
            );
        }
        Ok(exit)
    }
}

/// Lets the WASI functions reach the instance's memory and exports, as wasmer-wasix's own
/// instantiation does.
fn attach_instance(
    wasi_env: &mut WasiFunctionEnv,
    store: &mut Store,
    instance: &Instance,
) -> anyhow::Result<()> {
    let memory = instance
        .exports
        .iter()
        .find_map(|(_, export)| match export {
            Extern::Memory(memory) => Some(memory.clone()),
            _ => None,
        })
        .context("the module exports no memory")?;
    let handles = WasiModuleInstanceHandles::new(memory, store, instance.clone(), None);
    wasi_env.initialize_handles_and_layout(
        store,
        instance.clone(),
        WasiModuleTreeHandles::Static(handles),
        None,
        true,
    )?;
    Ok(())
}

/// Refuses, before serving, a module whose initial memory is already over the cap.
fn check_fits_memory_cap(module: &Module, max_memory: u64) -> anyhow::Result<()> {
    let memories = module
        .exports()
        .map(|export| export.ty().clone())
        .chain(module.imports().map(|import| import.ty().clone()));
    for ty in memories {
        if let ExternType::Memory(memory) = ty {
            let needed = u64::from(memory.minimum.0) * PAGE_SIZE;
            if needed > max_memory {
                bail!(
                    "the module needs {} of memory at start, more than --max-memory {}; raise \
                     --max-memory",
                    bytesize::ByteSize::b(needed),
                    bytesize::ByteSize::b(max_memory)
                );
            }
        }
    }
    Ok(())
}

/// Refuses, before serving, modules that would fail on every request.
fn check_is_wasi_command(module: &Module) -> anyhow::Result<()> {
    if let Some(import) = module
        .imports()
        .find(|i| !WASI_IMPORT_MODULES.contains(&i.module()))
    {
        bail!(
            "the module imports `{}::{}`, which is not part of WASI; wcgi can only provide \
             WASI and WASIX imports",
            import.module(),
            import.name()
        );
    }
    let has_start = module
        .exports()
        .any(|export| export.name() == "_start" && matches!(export.ty(), ExternType::Function(_)));
    if !has_start {
        bail!(
            "the module has no `_start` function: it is a library (reactor), not a WASI \
             command; build it as a binary for wasm32-wasip1"
        );
    }
    // WASI functions read and write the guest's memory: without one, every request would fail.
    if !module
        .exports()
        .any(|export| matches!(export.ty(), ExternType::Memory(_)))
    {
        bail!(
            "the module exports no memory, which WASI needs to pass it its arguments and \
             data; build it for wasm32-wasip1"
        );
    }
    Ok(())
}
