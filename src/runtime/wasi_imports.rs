//! The host functions an instance is given: only the WASI namespaces its module imports.
//!
//! wasmer-wasix's own instantiation builds every namespace it knows (`wasi_unstable`,
//! `wasi_snapshot_preview1`, `wasix_32v1`, `wasix_64v1`: several hundred functions, each
//! allocated and its signature registered) for every instance. A plain `wasm32-wasip1`
//! module needs one of them.

use wasmer::{AsStoreMut, FunctionEnv, Imports, Module};
use wasmer_wasix::{WasiEnv, WasiVersion, generate_import_object_from_env, get_wasi_versions};

/// Which namespaces a module's instances need, worked out once per module.
pub struct WasiImports {
    versions: Vec<WasiVersion>,
}

impl WasiImports {
    pub fn of(module: &Module) -> Self {
        let versions = get_wasi_versions(module, false)
            .map(|versions| versions.into_iter().collect())
            .unwrap_or_default();
        WasiImports { versions }
    }

    /// The imports for one instance, bound to its environment.
    pub fn for_instance(&self, store: &mut impl AsStoreMut, env: &FunctionEnv<WasiEnv>) -> Imports {
        let mut imports = Imports::new();
        for version in &self.versions {
            imports.extend(&generate_import_object_from_env(store, env, *version));
        }
        imports
    }
}
