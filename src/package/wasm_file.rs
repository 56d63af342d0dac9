//! A bare `.wasm` file: a package with one wcgi command and no annotations.

use std::path::Path;

use bytes::Bytes;

use super::{CommandSpec, ModuleSource, Package};

pub fn load(path: &Path, wasm: Bytes) -> Package {
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_else(|| "main".to_string());
    Package {
        display_name: path.display().to_string(),
        entrypoint: None,
        commands: vec![CommandSpec {
            name,
            runner: "wcgi".to_string(),
            module: ModuleSource::Bytes(wasm),
            wasi: Default::default(),
            wcgi: Default::default(),
            embedded_snapshot: None,
        }],
        version: None,
        origin: ".wasm file".to_string(),
        volumes: Vec::new(),
        container_mounts: Vec::new(),
    }
}
