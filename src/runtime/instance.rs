//! A command compiled once, and one fresh sandboxed instance of it per request.

use std::fmt;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wasmer::{Engine, Extern, ExternType, FunctionEnv, Instance, Module, RuntimeError, Store};
use wasmer_types::ModuleHash;
use wasmer_wasix::VirtualFile;
use wasmer_wasix::wasmer_wasix_types::wasi::{Errno, Signal};
use wasmer_wasix::{
    WasiEnv, WasiEnvBuilder, WasiError, WasiFunctionEnv, WasiModuleInstanceHandles,
    WasiModuleTreeHandles,
};

use super::compiled_cache;
use super::engine::{GuestEngine, SharedRuntime};
use super::memory_cap::PAGE_SIZE;
use super::memory_image::MemoryImage;
use super::mounts::Mount;
use super::root_fs::RootLayout;
use super::snapshot::{CURRENT_ENV, MountReads, SnapshotCurrency};
use super::sqlite_locks::LockLedger;
use super::stdio::{GuestLog, GuestStdin, GuestStdout, stdin_channel};
use super::wasi_imports::WasiImports;
use super::watchdog::{StopReason, Watchdog};

/// Import namespaces the WASI runtime can satisfy.
const WASI_IMPORT_MODULES: [&str; 4] = [
    "wasi_snapshot_preview1",
    "wasi_unstable",
    "wasix_32v1",
    "wasix_64v1",
];

/// How long an init function may run before start-up gives up on it.
const PREINIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// Everything needed to prepare a command, fixed for the life of the server.
#[derive(Clone)]
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
    /// For a snapshot: whether what it was built from is unchanged, told to each request.
    currency: Option<Arc<SnapshotCurrency>>,
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
    /// The export to call: `_start`, or another that the program exports.
    pub entrypoint: String,
    /// This request's argv, `argv[0]` first; `None` for the program's own.
    pub argv: Option<Vec<String>>,
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
        // Large data (a snapshot's) is mapped into each instance instead of copied.
        let (wasm, instance_engine) = match MemoryImage::split(&spec.wasm)? {
            Some((stripped, image)) => {
                tracing::info!(
                    "{} of initial memory mapped copy-on-write into each instance",
                    bytesize::ByteSize::b(image.len() as u64)
                );
                (
                    Bytes::from(stripped),
                    engine.with_memory_image(Arc::new(image)),
                )
            }
            None => (spec.wasm.clone(), engine.engine.clone()),
        };
        let module = compiled_cache::load_or_compile(
            &engine.engine,
            &wasm,
            engine.max_memory,
            engine.compiled_cache.as_deref(),
        )?;
        check_is_wasi_command(&module)?;
        check_fits_memory_cap(&module, engine.max_memory)?;
        Ok(GuestProgram {
            runtime: engine.runtime.clone(),
            // Of the module as compiled: for a snapshot, its data is in the image.
            hash: ModuleHash::new(&wasm),
            engine: instance_engine,
            imports: WasiImports::of(&module),
            module,
            name: spec.name,
            args: spec.args,
            root: RootLayout::new(spec.mounts, spec.current_dir),
            currency: None,
        })
    }

    /// The program of a snapshot, whose requests are told while it is `currency`'s current.
    pub fn with_snapshot_currency(self, currency: Arc<SnapshotCurrency>) -> Self {
        GuestProgram {
            currency: Some(currency),
            ..self
        }
    }

    /// Whether the program exports a function called `name` (an entrypoint to call).
    pub fn exports_function(&self, name: &str) -> bool {
        self.module
            .exports()
            .any(|export| export.name() == name && matches!(export.ty(), ExternType::Function(_)))
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
        let stdio = Stdio {
            stdin: Box::new(invocation.stdin),
            stdout: Box::new(invocation.stdout),
            stderr: Box::new(invocation.stderr),
        };
        let mut env = invocation.env;
        // wcgi's word alone: never one from the command's environment or `--env`.
        env.retain(|(name, _)| name != CURRENT_ENV);
        if self
            .currency
            .as_ref()
            .is_some_and(|currency| currency.is_current())
        {
            env.push((CURRENT_ENV.to_string(), "1".to_string()));
        }
        let mut live = self.instantiate(env, invocation.argv, stdio, None)?;
        let (result, stopped) = live.call(
            &invocation.entrypoint,
            invocation.deadline,
            invocation.abandoned,
        )?;
        let exit = match result {
            Ok(()) => GuestExit::Exited(0),
            Err(error) => exit_of(error),
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
        let stale = live.finish(code);
        if !stale.is_empty() {
            tracing::warn!(
                request = %request_id,
                "the instance ended ({exit}) still holding SQLite locks; removed {}",
                stale.join(", ")
            );
        }
        Ok(exit)
    }

    /// Runs the init function `function` in a fresh instance (no stdin, its output logged,
    /// the environment `env`, at most [`PREINIT_TIMEOUT`]), then lets `inspect` read the
    /// instance before it is torn down; `reads` records the mounts it read from. An init
    /// function must return (or exit with 0): another exit, a trap or running out of time is
    /// an error.
    pub(super) fn preinitialise<T>(
        &self,
        function: &str,
        env: Vec<(String, String)>,
        reads: &Arc<MountReads>,
        inspect: impl FnOnce(&mut Store, &Instance, &FunctionEnv<WasiEnv>) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let (no_body, stdin) = stdin_channel(CancellationToken::new());
        drop(no_body);
        let stdio = Stdio {
            stdin: Box::new(stdin),
            stdout: Box::new(GuestLog::new("pre-init")),
            stderr: Box::new(GuestLog::new("pre-init")),
        };
        let mut live = self.instantiate(env, None, stdio, Some(reads))?;
        let deadline = Instant::now() + PREINIT_TIMEOUT;
        let (result, stopped) = live.call(function, deadline, CancellationToken::new())?;
        let finished = match (result, stopped) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(_)) => Err(anyhow::anyhow!(
                "the init function `{function}` did not return within {PREINIT_TIMEOUT:?}"
            )),
            (Err(error), None) => match exit_of(error) {
                // A program that cannot unwind (php-cgi after a fatal error while compiling a
                // script in init: no longjmp on WASI) finishes its init and exits with 0.
                GuestExit::Exited(0) => Ok(()),
                GuestExit::Exited(code) => Err(anyhow::anyhow!(
                    "the init function `{function}` exited (status {code}) instead of returning"
                )),
                // The first line: the wasm backtrace after it would make start-up's one-line
                // error unreadable.
                GuestExit::Trapped(trap) => Err(anyhow::anyhow!(
                    "the init function `{function}` trapped: {}",
                    trap.lines().next().unwrap_or_default().trim_end()
                )),
                other => Err(anyhow::anyhow!("the init function `{function}` {other}")),
            },
        };
        let outcome =
            finished.and_then(|()| inspect(&mut live.store, &live.instance, &live.wasi_env.env));
        live.finish(if outcome.is_ok() { 0 } else { 1 });
        outcome
    }

    /// A fresh instance attached to a fresh WASI environment, not started; `reads`, if any,
    /// records the mounts it reads from.
    fn instantiate(
        &self,
        env: Vec<(String, String)>,
        argv: Option<Vec<String>>,
        stdio: Stdio,
        reads: Option<&Arc<MountReads>>,
    ) -> anyhow::Result<LiveInstance> {
        let mut builder = match argv.as_deref() {
            Some([program, args @ ..]) => {
                let mut builder = WasiEnvBuilder::new(program);
                builder.add_args(args);
                builder
            }
            _ => {
                let mut builder = WasiEnvBuilder::new(&self.name);
                builder.add_args(&self.args);
                builder
            }
        };
        builder.set_runtime(self.runtime.clone());
        builder.set_module_hash(self.hash);
        builder.add_envs(env);
        builder.set_stdin(stdio.stdin);
        builder.set_stdout(stdio.stdout);
        builder.set_stderr(stdio.stderr);
        let locks = Arc::new(LockLedger::default());
        self.root.install(&mut builder, &locks, reads)?;
        let env = builder.build()?;

        let mut store = Store::new(self.engine.clone());
        let mut wasi_env = WasiFunctionEnv::new(&mut store, env);
        let imports = self.imports.for_instance(&mut store, &wasi_env.env);
        match Instance::new(&mut store, &self.module, &imports)
            .map_err(anyhow::Error::from)
            .and_then(|instance| {
                attach_instance(&mut wasi_env, &mut store, &instance)?;
                Ok(instance)
            }) {
            Ok(instance) => Ok(LiveInstance {
                store,
                wasi_env,
                instance,
                locks,
            }),
            Err(error) => {
                // Closes the guest's files, so whoever waits on its stdout sees the end.
                wasi_env.on_exit(&mut store, Some(Errno::Noexec.into()));
                Err(error)
            }
        }
    }
}

/// The guest's three standard files.
struct Stdio {
    stdin: Box<dyn VirtualFile + Send + Sync>,
    stdout: Box<dyn VirtualFile + Send + Sync>,
    stderr: Box<dyn VirtualFile + Send + Sync>,
}

/// An instance attached to its WASI environment.
struct LiveInstance {
    store: Store,
    wasi_env: WasiFunctionEnv,
    instance: Instance,
    locks: Arc<LockLedger>,
}

impl LiveInstance {
    /// Calls the exported `function` until it returns, exits or traps, or until `deadline`
    /// or `abandoned` stops it (then also says which).
    fn call(
        &mut self,
        function: &str,
        deadline: Instant,
        abandoned: CancellationToken,
    ) -> anyhow::Result<(Result<(), RuntimeError>, Option<StopReason>)> {
        let function = self.instance.exports.get_function(function)?.clone();
        let interrupter = self.store.interrupter();
        let process = self.wasi_env.data(&self.store).process.clone();
        let watchdog = Watchdog::arm(deadline, abandoned, move || {
            interrupter.interrupt();
            process.signal_process(Signal::Sigkill);
        });
        let result = function.call(&mut self.store, &[]).map(drop);
        Ok((result, watchdog.disarm()))
    }

    /// Closes the guest's files (stdout included, so the response stream ends), frees the
    /// instance's memory before the slot is given back, and removes the SQLite locks it still
    /// held, which it returns.
    fn finish(mut self, code: i32) -> Vec<String> {
        self.wasi_env.on_exit(&mut self.store, Some(code.into()));
        drop(self.instance);
        drop(self.store);
        self.locks.release_leftovers()
    }
}

/// How a call that did not return ended.
fn exit_of(error: RuntimeError) -> GuestExit {
    match error.downcast::<WasiError>() {
        Ok(WasiError::Exit(code)) => GuestExit::Exited(code.raw()),
        Ok(other) => GuestExit::Trapped(other.to_string()),
        Err(trap) => GuestExit::Trapped(trap.to_string()),
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
