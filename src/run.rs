//! `wcgi run`: resolve the package, prepare its command once, then serve it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::cgi::StaticEnv;
use crate::cli::{RunArgs, SiteArgs};
use crate::modules_toml::{self, ModuleEntry};
use crate::package::{self, Cache, CommandSpec, ModuleSource, Package};
use crate::preinit;
use crate::runtime::{
    GuestEngine, GuestFiles, GuestLog, GuestProgram, Invocation, Mount, MountSpec, ProgramSpec,
    Provenance, SnapshotCurrency, stdin_channel, stdout_channel,
};
use crate::server::{
    self, App, AppState, Argv, ConnectionLimits, Limits, Operations, RoutePattern, RouteTable,
    Site, SiteHandle,
};
use crate::static_dirs;
use crate::tier_up::TierUp;
use crate::watch;

/// How long blocked guest threads may hold up the process exit after the server stopped.
const EXIT_GRACE: Duration = Duration::from_secs(1);

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    // Resolved before the async runtime starts: fetching may block on the network.
    let (site_name, parts) = site_parts(&args.site)?;
    let watched = watched_files(&args.site, &parts);

    let runtime = async_runtime()?;
    let result = (|| {
        // Opening mounts and building the WASI runtime need a Tokio context.
        let (app, engine) = {
            let _context = runtime.enter();
            prepare(&args, parts)?
        };
        let tier_up = TierUp::new(&args.site, &engine, app.site_handle(), runtime.handle())?;
        if args.watch {
            watch::start(
                &args.site,
                engine,
                app.site_handle(),
                runtime.handle(),
                watched,
                tier_up,
            )?;
        } else if let Some(tier_up) = tier_up {
            tier_up.spawn()?;
        }
        let connection_limits = ConnectionLimits {
            header_timeout: args.header_timeout,
            max_connections: args.max_connections.map(|n| n as usize),
            shutdown_grace: args.shutdown_grace,
        };
        let operations = Operations {
            health_path: args.health_path.clone(),
            shutdown_delay: args.shutdown_delay,
            metrics_addr: args.metrics_addr,
        };
        runtime.block_on(server::serve(
            app,
            args.addr,
            connection_limits,
            operations,
            move |addr| format!("Serving {site_name} on http://{addr}"),
        ))
    })();
    runtime.shutdown_timeout(EXIT_GRACE);
    result
}

/// The async runtime `run`, `compile` and `pack --preinit` open mounts and run guests in.
pub fn async_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("wcgi")
        .build()
        .context("cannot start the async runtime")
}

/// One app of the site, resolved: what it runs and where.
struct Part {
    route: RoutePattern,
    /// How it is named in messages.
    label: String,
    package: Package,
    command: CommandSpec,
    wasm: bytes::Bytes,
    /// Its `[[module]]`, for a `modules.toml` site.
    module: Option<ModuleEntry>,
}

/// What `wcgi run` serves, and its name for the banner: a package's command at `/...`, or
/// every `[[module]]` of a `modules.toml` at its route.
fn site_parts(args: &SiteArgs) -> anyhow::Result<(String, Vec<Part>)> {
    let settings = args.source.settings();
    let file = Path::new(&args.package);
    if !modules_toml::is_site_file(file) {
        let package = package::resolve(&args.package, &settings)?;
        let command = package.select_command(args.entrypoint.as_deref())?.clone();
        let wasm = command.load_module(&settings)?;
        let name = format!("{} (command \"{}\")", package.display_name, command.name);
        let part = Part {
            route: RoutePattern::Prefix(String::new()),
            label: format!("command \"{}\"", command.name),
            package,
            command,
            wasm,
            module: None,
        };
        return Ok((name, vec![part]));
    }
    let parts: Vec<Part> = modules_toml::resolve(file, &settings)?
        .into_iter()
        .map(|module| Part {
            route: module.entry.route.clone(),
            label: module.entry.label(),
            package: module.package,
            command: module.command,
            wasm: module.wasm,
            module: Some(module.entry),
        })
        .collect();
    let name = format!("{} ({} modules)", file.display(), parts.len());
    Ok((name, parts))
}

/// Everything that can be checked or done once happens here, before listening. Also gives
/// the engine, which a reload builds the site again with.
fn prepare(args: &RunArgs, parts: Vec<Part>) -> anyhow::Result<(AppState, GuestEngine)> {
    let max_guests = args
        .max_concurrency
        .map_or_else(default_concurrency, |n| n as usize);
    // Once per process, whatever it serves: the engine, its memory cap and pool, the runtime.
    let engine = GuestEngine::new(
        args.site.compiler,
        args.site.max_memory,
        max_guests,
        Some(Cache::new(args.site.source.cache_dir.clone()).compiled_dir()),
    )?;
    let site = build_site(&args.site, &engine, parts)?;
    let limits = Limits {
        timeout: args.timeout,
        max_body: args.max_body,
        max_guests,
        max_queue: args.max_queue,
    };
    Ok((AppState::new(site, limits)?, engine))
}

/// The site `wcgi run ARGS` serves, resolved, read and compiled: at start-up, and again
/// for each reload. Must be called inside a Tokio context.
pub fn load_site(args: &SiteArgs, engine: &GuestEngine) -> anyhow::Result<(Site, Vec<PathBuf>)> {
    let (_, parts) = site_parts(args)?;
    let watched = watched_files(args, &parts);
    Ok((build_site(args, engine, parts)?, watched))
}

/// Builds the site again with `engine` and serves it from now on (requests in flight keep the
/// one they started with): for each reload, and for the tier-up to LLVM's code. Gives the
/// files it was built from.
pub fn rebuild_site(
    args: &SiteArgs,
    engine: &GuestEngine,
    runtime: &tokio::runtime::Handle,
    site: &SiteHandle,
) -> anyhow::Result<Vec<PathBuf>> {
    let (built, files) = {
        // Mounts and the WASI runtime need a Tokio context.
        let _context = runtime.enter();
        load_site(args, engine)?
    };
    server::switch_site(site, built);
    Ok(files)
}

/// Every app of the site, at its route.
fn build_site(args: &SiteArgs, engine: &GuestEngine, parts: Vec<Part>) -> anyhow::Result<Site> {
    let is_site = parts.iter().any(|part| part.module.is_some());
    let mut routes = Vec::new();
    for part in parts {
        // A single package's errors already name its command.
        let app = match part.module {
            Some(_) => prepare_app(args, engine, &part).with_context(|| part.label.clone()),
            None => prepare_app(args, engine, &part),
        }?;
        if part.module.is_some() && app.program.exports_function(ROUTES_EXPORT) {
            for (route, entrypoint) in sub_routes(&app, &part)? {
                let label = format!("{} (`_routes`: {route} {entrypoint})", part.label);
                let sub_app = App {
                    entrypoint,
                    ..app.clone()
                };
                routes.push((route, label, Arc::new(sub_app)));
            }
        }
        routes.push((part.route, part.label, Arc::new(app)));
    }
    let routes = RouteTable::new(routes).map_err(anyhow::Error::msg)?;
    if is_site {
        for (pattern, name, _) in routes.iter() {
            tracing::info!("route {pattern} → {name}");
        }
    }
    Ok(Site {
        routes,
        unrouted_static: static_dirs::open_unrouted(&args.static_dirs)?,
        compiler: engine.compiler_name(),
    })
}

/// The files whose change `--watch` reloads the site for: a `modules.toml`, each package's
/// `wasmer.toml` or `.wasm`/`.webc` file, and the module files its commands run. Registry
/// packages have none.
fn watched_files(args: &SiteArgs, parts: &[Part]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut reference = |reference: &str| {
        let path = Path::new(reference);
        if path.is_dir() {
            files.push(path.join("wasmer.toml"));
        } else if path.is_file() {
            files.push(path.to_path_buf());
        }
    };
    reference(&args.package);
    for part in parts {
        if let Some(module) = &part.module {
            reference(&module.module);
        }
    }
    for part in parts {
        if let ModuleSource::File { path, .. } = &part.command.module {
            files.push(path.clone());
        }
    }
    let mut unique = Vec::new();
    for file in files {
        let file = std::path::absolute(&file).unwrap_or(file);
        if !unique.contains(&file) {
            unique.push(file);
        }
    }
    unique
}

/// The export WAGI calls once at start-up for a module's own routes.
const ROUTES_EXPORT: &str = "_routes";

/// What a module's `_routes` export prints, one `PATTERN ENTRYPOINT` a line: routes under the
/// module's own, each served by that export. Run once, as WAGI does.
fn sub_routes(app: &App, part: &Part) -> anyhow::Result<Vec<(RoutePattern, String)>> {
    let (body, stdin) = stdin_channel(CancellationToken::new());
    drop(body);
    let (stdout, mut output) = stdout_channel(CancellationToken::new());
    let invocation = Invocation {
        env: app
            .static_env
            .vars()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        stdin,
        stdout,
        stderr: GuestLog::new(ROUTES_EXPORT),
        deadline: tokio::time::Instant::now() + ROUTES_TIMEOUT,
        abandoned: CancellationToken::new(),
        entrypoint: ROUTES_EXPORT.to_string(),
        argv: None,
    };
    let program = app.program.clone();
    let handle = tokio::runtime::Handle::current();
    let guest = std::thread::spawn(move || {
        let _context = handle.enter();
        program.run(invocation)
    });
    let mut printed = Vec::new();
    while let Some(chunk) = output.blocking_recv() {
        printed.extend_from_slice(&chunk);
    }
    let exit = guest
        .join()
        .map_err(|_| anyhow::anyhow!("`{ROUTES_EXPORT}` crashed the thread it ran on"))?;
    if !exit.is_success() {
        anyhow::bail!("`{ROUTES_EXPORT}` {exit}");
    }
    let mut routes = Vec::new();
    for line in String::from_utf8_lossy(&printed).lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            [] => {}
            [pattern, entrypoint] => {
                let route = RoutePattern::parse(pattern)
                    .map_err(|error| anyhow::anyhow!("`{ROUTES_EXPORT}` printed {error}"))?
                    .under(&part.route);
                if !app.program.exports_function(entrypoint) {
                    anyhow::bail!(
                        "`{ROUTES_EXPORT}` routes {route} to `{entrypoint}`, which the module \
                         does not export"
                    );
                }
                routes.push((route, entrypoint.to_string()));
            }
            _ => anyhow::bail!(
                "`{ROUTES_EXPORT}` printed {line:?}; each line must be `PATTERN ENTRYPOINT`"
            ),
        }
    }
    Ok(routes)
}

/// How long a module's `_routes` may run.
const ROUTES_TIMEOUT: Duration = Duration::from_secs(10);

/// One app: its command compiled (or pre-initialised), its mounts, environment and files.
fn prepare_app(args: &SiteArgs, engine: &GuestEngine, part: &Part) -> anyhow::Result<App> {
    let command = &part.command;
    let module = part.module.as_ref();
    let routing = command
        .wcgi
        .script_routing()
        .map_err(|error| anyhow::anyhow!("command \"{}\": {error}", command.name))?;
    let volumes = module.map_or(&[][..], |module| &module.volumes[..]);
    let mounts = open_mounts(args, &part.package, volumes)?;
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
    let module_env = module.map_or_else(Vec::new, |module| module.environment.clone());
    let static_env = static_env(command, host_env, module_env, args.env.clone())?;
    for name in static_env.ignored() {
        tracing::warn!(
            "ignoring configured {name}: it describes the request and is set per request"
        );
    }

    let spec = program_spec(command, part.wasm.clone(), mounts, &args.args);
    let program = compile(args, command, engine, spec, &static_env)
        .with_context(|| format!("command \"{}\"", command.name))?;
    let mut app = App::new(Arc::new(program), static_env);
    app.routing = routing;
    app.static_files = static_files;
    if let Some(module) = module {
        if let Some(entrypoint) = &module.entrypoint {
            if !app.program.exports_function(entrypoint) {
                anyhow::bail!(
                    "entrypoint `{entrypoint}` is not a function the module exports; fix \
                     `entrypoint` or leave it out to call `_start`"
                );
            }
            app.entrypoint = entrypoint.clone();
        }
        // WAGI's default: the request path, then the query's items.
        app.argv = Argv::Template(module.argv.clone().unwrap_or_else(|| {
            vec![
                "${SCRIPT_NAME}${PATH_INFO}".to_string(),
                "${ARGS}".to_string(),
            ]
        }));
        app.slots = module
            .http_max_concurrency
            .map(|n| Arc::new(Semaphore::new(n.max(1) as usize)));
    }
    Ok(app)
}

/// The environment every instance of `command` starts from: the host's (with
/// `--forward-host-env`), under the command's annotations, under a `modules.toml` module's
/// `environment`, under `--env`.
pub fn static_env(
    command: &CommandSpec,
    host_env: Vec<(String, String)>,
    module_env: Vec<(String, String)>,
    cli_env: Vec<(String, String)>,
) -> anyhow::Result<StaticEnv> {
    let annotation_env = command
        .wasi
        .env_pairs()
        .map_err(|error| anyhow::anyhow!("command \"{}\": {error}", command.name))?;
    Ok(StaticEnv::from_layers([
        host_env,
        annotation_env,
        module_env,
        cli_env,
    ]))
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
    args: &SiteArgs,
    command: &CommandSpec,
    engine: &GuestEngine,
    spec: ProgramSpec,
    static_env: &StaticEnv,
) -> anyhow::Result<GuestProgram> {
    let preinitialised = |command: &CommandSpec| {
        preinitialised(args, command, engine, spec.clone(), static_env)
            .context("pre-initialisation failed (--no-preinit serves it without)")
    };
    let compile_snapshot = |(program, snapshot): (ProgramSpec, Option<SnapshotOf>)| {
        let compiled = GuestProgram::compile(engine, program)?;
        Ok::<_, anyhow::Error>(match snapshot {
            Some(snapshot) => compiled.with_snapshot_currency(Arc::new(snapshot.currency)),
            None => compiled,
        })
    };
    let (program, snapshot) = preinitialised(command)?;
    let embedded = snapshot
        .as_ref()
        .is_some_and(|snapshot| snapshot.provenance == Provenance::Embedded);
    match compile_snapshot((program, snapshot)) {
        Err(error) if embedded => {
            tracing::warn!(
                "the snapshot in the package does not load ({error:#}); pre-initialising anew"
            );
            let without = CommandSpec {
                embedded_snapshot: None,
                ..command.clone()
            };
            compile_snapshot(preinitialised(&without)?)
        }
        compiled => compiled,
    }
}

/// How a command's snapshot was obtained, and whether it stays current.
struct SnapshotOf {
    provenance: Provenance,
    currency: SnapshotCurrency,
}

/// The command with its module replaced by its snapshot, when it is pre-initialised.
fn preinitialised(
    args: &SiteArgs,
    command: &CommandSpec,
    engine: &GuestEngine,
    spec: ProgramSpec,
    static_env: &StaticEnv,
) -> anyhow::Result<(ProgramSpec, Option<SnapshotOf>)> {
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
    match snapshot.currency.never_because() {
        None => tracing::info!(
            "{} directories the snapshot was built from are watched: while none changes, \
             requests are told it is current ({}=1)",
            snapshot.currency.watched_dirs(),
            crate::runtime::CURRENT_ENV,
        ),
        Some(reason) => tracing::info!(
            "requests are not told the snapshot is current ({reason}): the guest checks its \
             files itself"
        ),
    }
    let spec = ProgramSpec {
        wasm: snapshot.wasm,
        ..spec
    };
    let of = SnapshotOf {
        provenance: snapshot.provenance,
        currency: snapshot.currency,
    };
    Ok((spec, Some(of)))
}

/// Package volumes, then a `modules.toml` module's `volumes`, then `--mapdir`, then `--dir`;
/// a later mount at the same guest path replaces an earlier one (so `--mapdir /app:./app`
/// overrides the package's `/app`).
fn open_mounts(
    args: &SiteArgs,
    package: &Package,
    module_volumes: &[MountSpec],
) -> anyhow::Result<Vec<Mount>> {
    let mut specs: Vec<(MountSpec, String)> = Vec::new();
    for volume in &package.volumes {
        specs.push((volume.clone(), format!("volume {}", volume.guest)));
    }
    for volume in module_volumes {
        specs.push((
            volume.clone(),
            format!("volumes \"{}\" = {}", volume.guest, volume.host.display()),
        ));
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
