//! `wcgi run`: resolve the package, prepare its command once, then serve it.

use std::time::Duration;

use anyhow::Context;

use crate::cgi::StaticEnv;
use crate::cli::RunArgs;
use crate::package::{self, Cache, CommandSpec, Package};
use crate::preinit;
use crate::runtime::{
    GuestEngine, GuestFiles, GuestProgram, Mount, MountSpec, ProgramSpec, Provenance,
};
use crate::server::{self, AppState, ConnectionLimits, Limits};
use crate::static_dirs;

/// How long blocked guest threads may hold up the process exit after the server stopped.
const EXIT_GRACE: Duration = Duration::from_secs(1);

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // Resolved before the async runtime starts: fetching may block on the network.
    let package = package::resolve(&args.package, &args.source.settings())?;
    let command = package.select_command(args.entrypoint.as_deref())?;
    let wasm = command.load_module(&args.source.settings())?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wcgi")
        .build()
        .context("cannot start the async runtime")?;
    let result = (|| {
        // Opening mounts and building the WASI runtime need a Tokio context.
        let app = {
            let _context = runtime.enter();
            prepare(&args, &package, command, wasm)?
        };
        let banner_name = package.display_name.clone();
        let command_name = command.name.clone();
        let connection_limits = ConnectionLimits {
            header_timeout: args.header_timeout,
            max_connections: args.max_connections.map(|n| n as usize),
            shutdown_grace: args.shutdown_grace,
        };
        runtime.block_on(server::serve(
            app,
            args.addr,
            connection_limits,
            move |addr| {
                format!("Serving {banner_name} (command \"{command_name}\") on http://{addr}")
            },
        ))
    })();
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}

/// Everything that can be checked or done once happens here, before listening.
fn prepare(
    args: &RunArgs,
    package: &Package,
    command: &CommandSpec,
    wasm: bytes::Bytes,
) -> anyhow::Result<AppState> {
    let routing = command
        .wcgi
        .script_routing()
        .map_err(|error| anyhow::anyhow!("command \"{}\": {error}", command.name))?;
    let mounts = open_mounts(args, package)?;
    let static_files =
        static_dirs::open(&args.static_dirs, command, &GuestFiles::new(mounts.clone()))?;
    for dir in static_files.dirs() {
        tracing::info!(
            "static files under {}/ from {}",
            dir.url_prefix,
            dir.dir.display()
        );
    }

    let host_env: Vec<(String, String)> = if args.forward_host_env {
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect()
    } else {
        Vec::new()
    };
    let static_env = static_env(command, host_env, args.env.clone())?;
    for name in static_env.ignored() {
        tracing::warn!(
            "ignoring configured {name}: it describes the request and is set per request"
        );
    }

    let max_guests = args
        .max_concurrency
        .map_or_else(default_concurrency, |n| n as usize);
    // Once per process, whatever it serves: the engine, its memory cap and pool, the runtime.
    let engine = GuestEngine::new(
        args.max_memory,
        max_guests,
        Some(Cache::new(args.source.cache_dir.clone()).compiled_dir()),
    );
    let spec = program_spec(command, wasm, mounts, &args.args);
    let program = compile(args, command, &engine, spec, &static_env)
        .with_context(|| format!("command \"{}\"", command.name))?;

    AppState::new(
        program,
        static_env,
        routing,
        static_files,
        Limits {
            timeout: args.timeout,
            max_body: args.max_body,
            max_guests,
            max_queue: args.max_queue,
        },
    )
}

/// The environment every instance of `command` starts from: the host's (with
/// `--forward-host-env`), under the command's annotations, under `--env`.
pub fn static_env(
    command: &CommandSpec,
    host_env: Vec<(String, String)>,
    cli_env: Vec<(String, String)>,
) -> anyhow::Result<StaticEnv> {
    let annotation_env = command
        .wasi
        .env_pairs()
        .map_err(|error| anyhow::anyhow!("command \"{}\": {error}", command.name))?;
    Ok(StaticEnv::from_layers([host_env, annotation_env, cli_env]))
}

/// The program `command` runs: its module, its `main-args` then `extra_args`, `mounts`.
pub fn program_spec(
    command: &CommandSpec,
    wasm: bytes::Bytes,
    mounts: Vec<Mount>,
    extra_args: &[String],
) -> ProgramSpec {
    ProgramSpec {
        name: command.name.clone(),
        wasm,
        args: command
            .wasi
            .main_args
            .iter()
            .chain(extra_args)
            .cloned()
            .collect(),
        mounts,
        current_dir: command.wasi.cwd.clone(),
    }
}

/// The command's program, from its snapshot when it is pre-initialised. A snapshot the
/// package carries that does not compile is replaced by one built here, never trusted.
fn compile(
    args: &RunArgs,
    command: &CommandSpec,
    engine: &GuestEngine,
    spec: ProgramSpec,
    static_env: &StaticEnv,
) -> anyhow::Result<GuestProgram> {
    let preinitialised = |command: &CommandSpec| {
        preinitialised(args, command, engine, spec.clone(), static_env)
            .context("pre-initialisation failed (--no-preinit serves it without)")
    };
    let (program, provenance) = preinitialised(command)?;
    match GuestProgram::compile(engine, program) {
        Err(error) if provenance == Some(Provenance::Embedded) => {
            tracing::warn!(
                "the snapshot in the package does not load ({error:#}); pre-initialising anew"
            );
            let without = CommandSpec {
                embedded_snapshot: None,
                ..command.clone()
            };
            GuestProgram::compile(engine, preinitialised(&without)?.0)
        }
        compiled => compiled,
    }
}

/// The command with its module replaced by its snapshot, when it is pre-initialised.
fn preinitialised(
    args: &RunArgs,
    command: &CommandSpec,
    engine: &GuestEngine,
    spec: ProgramSpec,
    static_env: &StaticEnv,
) -> anyhow::Result<(ProgramSpec, Option<Provenance>)> {
    let started = std::time::Instant::now();
    let Some(snapshot) = preinit::snapshot(
        command,
        &preinit::setting(command, args.no_preinit),
        engine,
        &spec,
        static_env,
        &Cache::new(args.source.cache_dir.clone()).snapshot_dir(),
    )?
    else {
        return Ok((spec, None));
    };
    let function = &snapshot.init_function;
    let elapsed = started.elapsed();
    match snapshot.provenance {
        Provenance::Embedded => tracing::info!(
            "pre-initialised with `{function}`: snapshot from the package ({elapsed:.1?})"
        ),
        Provenance::Cached => tracing::info!(
            "pre-initialised with `{function}`: snapshot from the cache ({elapsed:.1?})"
        ),
        Provenance::Built => tracing::info!(
            "pre-initialised with `{function}` in {elapsed:.1?}; snapshot cached for the next start"
        ),
    }
    let spec = ProgramSpec {
        wasm: snapshot.wasm,
        ..spec
    };
    Ok((spec, Some(snapshot.provenance)))
}

/// Package volumes, then `--mapdir`, then `--dir`; a later mount at the same guest path
/// replaces an earlier one (so `--mapdir /app:./app` overrides the package's `/app`).
fn open_mounts(args: &RunArgs, package: &Package) -> anyhow::Result<Vec<Mount>> {
    let mut specs: Vec<(MountSpec, String)> = Vec::new();
    for volume in &package.volumes {
        specs.push((volume.clone(), format!("volume {}", volume.guest)));
    }
    for mapdir in &args.mapdir {
        specs.push((
            mapdir.clone(),
            format!("--mapdir {}:{}", mapdir.guest, mapdir.host.display()),
        ));
    }
    for dir in &args.dir {
        specs.push((
            MountSpec::same_path(dir)?,
            format!("--dir {}", dir.display()),
        ));
    }
    let mut mounts: Vec<Mount> = package.container_mounts.clone();
    for (spec, origin) in &specs {
        let mount = Mount::open(spec, origin)?;
        mounts.retain(|existing| existing.guest != mount.guest);
        mounts.push(mount);
    }
    Ok(mounts)
}

/// Twice the CPU count: guests mostly compute, but some wait on I/O.
fn default_concurrency() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}
