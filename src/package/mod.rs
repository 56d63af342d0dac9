//! Package resolution: a reference given on the command line becomes a [`Package`], a list of
//! commands with their annotations, modules and volumes, independent of where it came from.

mod annotations;
mod command;
mod local_dir;
mod wasm_file;
mod webc_file;

use std::path::{Path, PathBuf};

use anyhow::bail;
use bytes::Bytes;

pub use command::{CommandSpec, ModuleSource};

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

/// Resolves what the user typed after `wcgi run`.
pub fn resolve(reference: &str) -> anyhow::Result<Package> {
    let path = Path::new(reference);
    if path.is_dir() {
        return local_dir::load(path);
    }
    if path.is_file() {
        return load_file(path);
    }
    if looks_like_registry_name(reference) {
        bail!(
            "`{reference}` is not a local file or directory, and registry packages are not \
             supported yet; download the package and pass its directory or .wasm file"
        );
    }
    bail!(
        "{reference}: no such file or directory (expected a directory with wasmer.toml, a .wasm or a .webc file)"
    );
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
        return webc_file::load(path, Bytes::from(bytes));
    }
    bail!(
        "{}: neither a WebAssembly module nor a .webc container",
        path.display()
    )
}

/// `namespace/name`, optionally with `@version` or a `registry:` prefix.
fn looks_like_registry_name(reference: &str) -> bool {
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let name = name.rsplit_once(':').map_or(name, |(_, name)| name);
    let mut parts = name.split('/');
    let valid = |part: Option<&str>| {
        part.is_some_and(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        })
    };
    valid(parts.next())
        && valid(parts.next())
        && parts.next().is_none()
        && !reference.starts_with('.')
}

/// The directory a relative host path in a manifest is relative to.
fn manifest_base(dir: &Path) -> PathBuf {
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_recognised() {
        assert!(looks_like_registry_name("myuser/pkg"));
        assert!(looks_like_registry_name("myuser/pkg@1.2"));
        assert!(looks_like_registry_name("wasmer.io:myuser/pkg"));
        assert!(!looks_like_registry_name("./x/y"));
        assert!(!looks_like_registry_name("a/b/c"));
        assert!(!looks_like_registry_name("hello.wasm"));
    }
}
