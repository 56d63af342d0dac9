//! The directories whose files the host serves for a command: its `static` annotation, found
//! on the host through the mounts (unpacked first when inside a container), and `--static`.

use std::path::Path;

use anyhow::{Context, bail};

use crate::cli::StaticSpec;
use crate::package::CommandSpec;
use crate::runtime::{GuestFiles, HostLocation, guest_path};
use crate::server::{StaticDir, StaticFiles, normalise_prefix};

/// The command's `static` annotation (guest directories, found on the host through the
/// mounts), then `--static`; a later entry for a URL path replaces an earlier one. Directories
/// inside a `.webc` container are unpacked once, into a temporary directory kept while serving.
pub fn open(
    flags: &[StaticSpec],
    command: &CommandSpec,
    guest_files: &GuestFiles,
) -> anyhow::Result<StaticFiles> {
    let mut dirs: Vec<StaticDir> = Vec::new();
    let mut add = |dir: StaticDir| {
        dirs.retain(|existing| existing.url_prefix != dir.url_prefix);
        dirs.push(dir);
    };
    let mut unpacked: Option<tempfile::TempDir> = None;
    for (url_path, guest_dir) in &command.wcgi.static_dirs {
        let origin = format!(
            "command \"{}\": annotations.wcgi.static {url_path:?}",
            command.name
        );
        normalise_prefix(url_path).map_err(|error| anyhow::anyhow!("{origin}: {error}"))?;
        let guest_dir = guest_path(guest_dir);
        // A mount nested inside the directory (`--mapdir /app/uploads:…`) shows its own files
        // there, in the guest and so here too.
        let nested = guest_files
            .nested_mounts(&guest_dir)
            .into_iter()
            .map(|(below, location)| {
                (
                    format!("{}{below}", url_path.trim_end_matches('/')),
                    location,
                )
            });
        let top = (url_path.clone(), guest_files.host_location(&guest_dir));
        for (url_path, location) in std::iter::once(top).chain(nested) {
            let dir = match location {
                HostLocation::Host(dir) => dir,
                HostLocation::InContainer { volume, path } => {
                    let root = match &unpacked {
                        Some(root) => root,
                        None => unpacked.insert(unpack_root().with_context(|| {
                            format!("{origin}: cannot make a directory to unpack the container's files into")
                        })?),
                    };
                    let dir = root.path().join(unpacked_dir_name(&url_path));
                    volume.unpack(path.as_str(), &dir).map_err(|error| {
                        anyhow::anyhow!(
                            "{origin}: cannot unpack {path} from the container: {error}"
                        )
                    })?;
                    tracing::info!(
                        "{origin}: unpacked {path} from the container into {}",
                        dir.display()
                    );
                    dir
                }
                HostLocation::Unmounted => bail!(
                    "{origin}: no volume holds {guest_dir}; mount it in [fs] or with --mapdir"
                ),
            };
            add(StaticDir::open(&url_path, &dir, &origin)?);
        }
    }
    for dir in flag_dirs(flags)? {
        add(dir);
    }
    Ok(StaticFiles::new(dirs, &command.wcgi.script_extensions).keeping(unpacked))
}

/// `--static` alone: what the host serves under paths no route of a site claims.
pub fn open_unrouted(flags: &[StaticSpec]) -> anyhow::Result<StaticFiles> {
    Ok(StaticFiles::new(flag_dirs(flags)?, &[]))
}

fn flag_dirs(flags: &[StaticSpec]) -> anyhow::Result<Vec<StaticDir>> {
    flags
        .iter()
        .map(|spec| {
            let origin = format!("--static {}:{}", spec.url_path, spec.dir.display());
            StaticDir::open(&spec.url_path, &spec.dir, &origin)
        })
        .collect()
}

/// A temporary directory named after this process, after removing those of processes that
/// were killed before they could remove their own.
fn unpack_root() -> std::io::Result<tempfile::TempDir> {
    const PREFIX: &str = "wcgi-static-";
    let temp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&temp) {
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|name| {
                name.strip_prefix(PREFIX)?
                    .split('-')
                    .next()?
                    .parse::<u32>()
                    .ok()
            });
            let gone = pid.is_some_and(|pid| {
                Path::new("/proc/self").exists() && !Path::new(&format!("/proc/{pid}")).exists()
            });
            if gone {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    tempfile::Builder::new()
        .prefix(&format!("{PREFIX}{}-", std::process::id()))
        .tempdir()
}

/// A directory name for a URL path's unpacked files (`/` → `root`, `/a/b` → `a%2Fb`).
fn unpacked_dir_name(url_path: &str) -> String {
    match url_path.trim_matches('/') {
        "" => "root".to_string(),
        path => path.replace('%', "%25").replace('/', "%2F"),
    }
}
