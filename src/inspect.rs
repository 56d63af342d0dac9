//! `wcgi inspect`: what a package contains, for any source kind, or which module serves
//! which route of a `modules.toml` site.

use std::fmt::Write as _;
use std::path::Path;

use bytesize::ByteSize;
use wasmer_wasix::virtual_fs::FileSystem;

use crate::cli::InspectArgs;
use crate::modules_toml::{self, SiteModule};
use crate::package::{self, CommandSpec, ModuleSource, Package};
use crate::runtime::{PreinitSetting, exports_function};
use crate::server::RouteTable;

pub fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let settings = args.source.settings();
    let path = Path::new(&args.package);
    if modules_toml::is_site_file(path) {
        let modules = modules_toml::resolve(path, &settings)?;
        print!("{}", describe_site(path, &modules));
        return Ok(());
    }
    let package = package::resolve(&args.package, &settings)?;
    print!("{}", describe(&package));
    Ok(())
}

/// A `modules.toml`'s routes in the order requests are matched against them (the most
/// specific first), each with what serves it.
fn describe_site(path: &Path, modules: &[SiteModule]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} modules; routes in matching order:",
        path.display(),
        modules.len()
    );
    let table = RouteTable::new(
        modules
            .iter()
            .map(|module| (module.entry.route.clone(), String::new(), module))
            .collect(),
    );
    // `resolve` has already refused duplicate routes.
    let Ok(table) = table else { return out };
    for (route, _, module) in table.iter() {
        let entry = &module.entry;
        let version = match &module.package.version {
            Some(version) => format!(" {version}"),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {route} -> {}{version}, command \"{}\"",
            entry.module, module.command.name
        );
        let entrypoint = entry.entrypoint.as_deref().unwrap_or("_start");
        let _ = writeln!(out, "    entrypoint: {entrypoint}");
        if exports_function(&module.wasm, "_routes").unwrap_or(false) {
            let _ = writeln!(
                out,
                "    sub-routes: those its `_routes` export prints, more specific than {route}"
            );
        }
        for volume in &entry.volumes {
            let _ = writeln!(
                out,
                "    volume: {} <- {}",
                volume.guest,
                volume.host.display()
            );
        }
        if !entry.environment.is_empty() {
            let names: Vec<&str> = entry.environment.iter().map(|(k, _)| k.as_str()).collect();
            let _ = writeln!(out, "    environment: {}", names.join(", "));
        }
        if let Some(argv) = &entry.argv {
            let _ = writeln!(out, "    argv: {}", argv.join(" "));
        }
        if let Some(share) = entry.http_max_concurrency {
            let _ = writeln!(out, "    http_max_concurrency: {share}");
        }
    }
    out
}

fn describe(package: &Package) -> String {
    let mut out = String::new();
    let version = package.version.as_deref().unwrap_or("(no version)");
    let _ = writeln!(
        out,
        "{} {version}  ({})",
        package.display_name, package.origin
    );
    if let Some(entrypoint) = &package.entrypoint {
        let _ = writeln!(out, "entrypoint: {entrypoint}");
    }
    let _ = writeln!(out, "commands:");
    for command in &package.commands {
        describe_command(&mut out, command);
    }
    if !package.volumes.is_empty() || !package.container_mounts.is_empty() {
        let _ = writeln!(out, "volumes:");
    }
    for volume in &package.volumes {
        let files = count_host_files(&volume.host);
        let _ = writeln!(
            out,
            "  {} <- {} ({}, read-only)",
            volume.guest,
            volume.host.display(),
            files_count(files)
        );
    }
    for mount in &package.container_mounts {
        let files = count_files(mount.filesystem.as_ref(), Path::new("/"));
        let _ = writeln!(
            out,
            "  {} (in the container, {}, read-only)",
            mount.guest,
            files_count(files)
        );
    }
    out
}

fn describe_command(out: &mut String, command: &CommandSpec) {
    let served = if command.is_wcgi() {
        ""
    } else {
        "  (not served: runner is not wcgi)"
    };
    let _ = writeln!(
        out,
        "  {}  runner: {}{served}",
        command.name, command.runner
    );
    let module = match &command.module {
        ModuleSource::Bytes(bytes) => format!("{}", ByteSize::b(bytes.len() as u64)),
        ModuleSource::File { module, path } => match std::fs::metadata(path) {
            Ok(metadata) => format!(
                "{module}, {}, {}",
                path.display(),
                ByteSize::b(metadata.len())
            ),
            Err(_) => format!("{module}, {} (missing)", path.display()),
        },
        ModuleSource::Unknown { module, .. } => format!("{module} (no such module)"),
        ModuleSource::Dependency {
            dependency,
            source,
            module,
        } => match source {
            Some(reference) => format!("{dependency}:{module} (dependency, {reference})"),
            None => format!("{dependency}:{module} (dependency missing from [dependencies])"),
        },
    };
    let _ = writeln!(out, "    module: {module}");
    if let Some(dialect) = &command.wcgi.dialect {
        let _ = writeln!(out, "    wcgi dialect: {dialect}");
    }
    match command.wcgi.script_routing() {
        Ok(None) => {}
        Ok(Some(routing)) => {
            let extensions: Vec<String> = routing
                .script_extensions
                .iter()
                .map(|extension| format!("*.{extension}"))
                .collect();
            let _ = writeln!(
                out,
                "    scripts: {} under {} (index: {}; front controller: {})",
                extensions.join(", "),
                routing.document_root,
                routing.index_files.join(", "),
                routing.front_controller.as_deref().unwrap_or("none")
            );
        }
        Err(error) => {
            let _ = writeln!(out, "    scripts: invalid routing: {error}");
        }
    }
    for (url_path, guest_dir) in &command.wcgi.static_dirs {
        let _ = writeln!(
            out,
            "    static: {url_path} from {guest_dir} (served by the host)"
        );
    }
    if !command.wasi.env.is_empty() {
        let _ = writeln!(out, "    env: {:?}", command.wasi.env);
    }
    if !command.wasi.main_args.is_empty() {
        let _ = writeln!(out, "    main-args: {:?}", command.wasi.main_args);
    }
    if let Some(cwd) = &command.wasi.cwd {
        let _ = writeln!(out, "    cwd: {cwd}");
    }
    if let Some(preinit) = describe_preinit(command) {
        let _ = writeln!(out, "    pre-initialised: {preinit}");
    }
}

/// Whether `wcgi run` pre-initialises the command, when that can be told without fetching.
fn describe_preinit(command: &CommandSpec) -> Option<String> {
    let setting = crate::preinit::setting(command, false);
    if let Some(snapshot) = command.embedded_snapshot.as_ref()
        && setting != PreinitSetting::Off
    {
        return Some(format!(
            "yes, snapshot embedded in the package ({}; used when run with its own volumes, \
             environment and arguments)",
            bytesize::ByteSize::b(snapshot.wasm.len() as u64)
        ));
    }
    let wasm = match &command.module {
        _ if setting == PreinitSetting::Off => {
            return Some("no (annotation preinit = false)".into());
        }
        ModuleSource::Bytes(bytes) => bytes.to_vec(),
        ModuleSource::File { path, .. } => std::fs::read(path).ok()?,
        // Known only once the dependency is fetched.
        ModuleSource::Dependency { .. } | ModuleSource::Unknown { .. } => return None,
    };
    Some(match setting.init_function(&wasm) {
        Ok(Some(function)) => format!("yes, at start-up with `{function}` (snapshot cached)"),
        Ok(None) => return None,
        Err(error) => format!("fails: {error}"),
    })
}

fn files_count(count: usize) -> String {
    if count == 1 {
        "1 file".to_string()
    } else {
        format!("{count} files")
    }
}

fn count_host_files(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_host_files(&entry.path()),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}

fn count_files(filesystem: &dyn FileSystem, dir: &Path) -> usize {
    let Ok(entries) = filesystem.read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => count_files(filesystem, &entry.path),
            Ok(_) => 1,
            Err(_) => 0,
        })
        .sum()
}
