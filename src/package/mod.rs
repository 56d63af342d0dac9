//! Package resolution: a reference given on the command line becomes a [`Package`], a list of
//! commands with their annotations, modules and volumes, independent of where it came from.

mod annotations;
mod cache;
mod command;
mod local_dir;
mod publishing;
mod reference;
mod registry;
mod wasm_file;
mod webc_file;

use std::path::{Path, PathBuf};

use anyhow::bail;
use bytes::Bytes;

pub use annotations::{PreinitAnnotation, SNAPSHOT_ANNOTATION, SnapshotAnnotation};
pub use cache::Cache;
pub use command::{CommandSpec, ModuleSource};
pub use publishing::{Metadata, Release};
pub use reference::Reference;
pub use registry::{Registry, RegistrySettings};
pub use webc_file::load as load_container;

use crate::runtime::{Mount, MountSpec};

/// A package resolved from a reference, ready for a command to be chosen.
#[derive(Debug)]
pub struct Package {
    /// How the package is named in messages: `myuser/pkg`, or the path it was loaded from.
    pub display_name: String,
    /// The command served when `--entrypoint` is not given.
    pub entrypoint: Option<String>,
    pub commands: Vec<CommandSpec>,
    pub version: Option<String>,
    /// What the package was loaded from: `directory`, `.wasm file`, `.webc v3 container`.
    pub origin: String,
    /// Host directories the package maps into its guests (`[fs]`).
    pub volumes: Vec<MountSpec>,
    /// Volumes inside a `.webc` container, ready to mount.
    pub container_mounts: Vec<Mount>,
}

/// Resolves what the user typed after `wcgi run`: a local path first, else a registry
/// package, a release hash or a URL.
pub fn resolve(reference: &str, settings: &RegistrySettings) -> anyhow::Result<Package> {
    let path = Path::new(reference);
    if path.is_dir() {
        return local_dir::load(path);
    }
    if path.is_file() {
        return load_file(path);
    }
    match Reference::parse(reference)? {
        Some(parsed) => {
            let fetched = Registry::new(settings.clone()).fetch(&parsed)?;
            let label = parsed.to_string();
            let mut package = webc_file::load(&label, fetched.bytes)?;
            package.display_name = fetched.name.unwrap_or(label);
            package.version = fetched.version.or(package.version);
            Ok(package)
        }
        None => bail!(
            "{reference}: no such file or directory (expected a directory with wasmer.toml, a \
             .wasm or .webc file, or a registry package such as namespace/name)"
        ),
    }
}

/// Loads a directory with a wasmer.toml (for `wcgi pack`).
pub fn resolve_directory(dir: &Path) -> anyhow::Result<Package> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    local_dir::load(dir)
}

/// Picks the loader by the file's magic bytes, not its name.
fn load_file(path: &Path) -> anyhow::Result<Package> {
    let bytes = std::fs::read(path)
        .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
    if bytes.starts_with(b"\0asm") {
        return Ok(wasm_file::load(path, Bytes::from(bytes)));
    }
    if bytes.starts_with(b"\0webc") {
        return webc_file::load(&path.display().to_string(), Bytes::from(bytes));
    }
    bail!(
        "{}: neither a WebAssembly module nor a .webc container",
        path.display()
    )
}

/// The directory a relative host path in a manifest is relative to.
fn manifest_base(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}
