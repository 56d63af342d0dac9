//! `wcgi run`: resolve the package, prepare its command once, then serve it.

use std::time::Duration;

use anyhow::Context;

use crate::cgi::StaticEnv;
use crate::cli::RunArgs;
use crate::package::{self, Cache, CommandSpec, Package, PreinitAnnotation};
use crate::runtime::{
    GuestEngine, GuestFiles, GuestProgram, Mount, MountSpec, PreinitSetting, ProgramSpec,
    Provenance, SnapshotSource,
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
    let annotation_env = command
        .wasi
        .env_pairs()
        .map_err(|error| anyhow::anyhow!("command \"{}\": {error}", command.name))?;
    let static_env = StaticEnv::from_layers([host_env, annotation_env, args.env.clone()]);
    for name in static_env.ignored() {
        tracing::warn!(
            "ignoring configured {name}: it describes the request and is set per request"
        );
    }

    let guest_args = command
        .wasi
        .main_args
        .iter()
        .chain(&args.args)
        .cloned()
        .collect();
    let max_guests = args
        .max_concurrency
        .map_or_else(default_concurrency, |n| n as usize);
    // Once per process, whatever it serves: the engine, its memory cap and pool, the runtime.
    let engine = GuestEngine::new(
        args.max_memory,
        max_guests,
        Some(Cache::new(args.source.cache_dir.clone()).compiled_dir()),
    );
    let spec = ProgramSpec {
        name: command.name.clone(),
        wasm,
        args: guest_args,
        mounts,
        current_dir: command.wasi.cwd.clone(),
    };
    let spec = preinitialised(args, command, &engine, spec, &static_env).with_context(|| {
        format!(
            "command \"{}\": pre-initialisation failed (--no-preinit serves it without)",
            command.name
        )
    })?;
    let program = GuestProgram::compile(&engine, spec)
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

/// Whether `command` is pre-initialised, by its `preinit` annotation and `--no-preinit`.
pub fn preinit_setting(command: &CommandSpec, disabled: bool) -> PreinitSetting {
    match (&command.wcgi.preinit, disabled) {
        (_, true) | (Some(PreinitAnnotation::Enabled(false)), _) => PreinitSetting::Off,
        (None | Some(PreinitAnnotation::Enabled(true)), _) => PreinitSetting::Auto,
        (Some(PreinitAnnotation::Function(name)), _) => PreinitSetting::Function(name.clone()),
    }
}

/// The command with its module replaced by its snapshot, when it is pre-initialised.
fn preinitialised(
    args: &RunArgs,
    command: &CommandSpec,
    engine: &GuestEngine,
    spec: ProgramSpec,
    static_env: &StaticEnv,
) -> anyhow::Result<ProgramSpec> {
    let setting = preinit_setting(command, args.no_preinit);
    let Some(init_function) = setting.init_function(&spec.wasm)? else {
        return Ok(spec);
    };
    let env: Vec<(String, String)> = static_env
        .vars()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let cache_dir = Cache::new(args.source.cache_dir.clone()).snapshot_dir();
    let started = std::time::Instant::now();
    let (wasm, provenance) = SnapshotSource {
        engine,
        spec: &spec,
        env: &env,
        init_function: &init_function,
        cache_dir: Some(&cache_dir),
    }
    .load_or_build()?;
    match provenance {
        Provenance::Cached => tracing::info!(
            "pre-initialised with `{init_function}`: snapshot from the cache ({:.1?})",
            started.elapsed()
        ),
        Provenance::Built => tracing::info!(
            "pre-initialised with `{init_function}` in {:.1?}; snapshot cached for the next start",
            started.elapsed()
        ),
    }
    Ok(ProgramSpec { wasm, ..spec })
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
