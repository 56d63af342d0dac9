//! Compiled modules kept on disk across runs: an interpreter that takes seconds to compile
//! starts in tens of milliseconds the next time.
//!
//! An entry is keyed by everything that shapes the machine code (the module's bytes, the
//! engine version and compiler, the host CPU, the memory cap, which the engine bakes into
//! bounds checks)
//! and stored with a checksum. Anything that does not load cleanly is recompiled, never
//! trusted: loading compiled code is as powerful as running it, so entries are only read from
//! the user's own cache directory.

use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmer::{Engine, Module};

use crate::atomic_file::write_atomically;
use crate::digest::{checksum, sha256_hex};

fn entry_paths(engine: &Engine, dir: &Path, wasm: &[u8], max_memory: u64) -> (PathBuf, PathBuf) {
    let target = wasmer_types::target::Target::default();
    let shape = format!(
        "{}|wcgi {}|wasmer {}|{}|{}|{:?}|memory {max_memory}",
        sha256_hex(wasm),
        env!("CARGO_PKG_VERSION"),
        wasmer_types::VERSION,
        engine.deterministic_id(),
        target.triple(),
        target.cpu_features(),
    );
    let key = sha256_hex(shape.as_bytes());
    (
        dir.join(format!("{key}.bin")),
        dir.join(format!("{key}.checksum")),
    )
}

/// The compiled module, from `dir` when a sound entry exists, else compiled (and stored).
pub fn load_or_compile(
    engine: &Engine,
    wasm: &[u8],
    max_memory: u64,
    dir: Option<&Path>,
) -> anyhow::Result<Module> {
    let Some(dir) = dir else {
        return Module::new(engine, wasm).context("the module does not compile");
    };
    let (artifact, checksum_file) = entry_paths(engine, dir, wasm, max_memory);
    let cached = load(engine, &artifact, &checksum_file);
    crate::metrics::compiled_cache_lookup(cached.is_some());
    if let Some(module) = cached {
        tracing::debug!("loaded the compiled module from {}", artifact.display());
        return Ok(module);
    }
    let started = std::time::Instant::now();
    let module = Module::new(engine, wasm).context("the module does not compile")?;
    let took = started.elapsed();
    // Worth telling only when it was slow: the next start will skip it.
    if took > std::time::Duration::from_secs(1) {
        tracing::info!("compiled the module in {took:.1?}; cached for the next start");
    } else {
        tracing::debug!("compiled the module in {took:.1?}");
    }
    match module.serialize() {
        Ok(bytes) => {
            let stored = write_atomically(&artifact, &bytes)
                .and_then(|()| write_atomically(&checksum_file, checksum(&bytes).as_bytes()));
            if let Err(error) = stored {
                tracing::warn!("cannot cache the compiled module: {error:#}");
            }
        }
        Err(error) => tracing::warn!("cannot serialize the compiled module: {error}"),
    }
    Ok(module)
}

fn load(engine: &Engine, artifact: &Path, checksum_file: &Path) -> Option<Module> {
    let expected = std::fs::read_to_string(checksum_file).ok()?;
    let bytes = std::fs::read(artifact).ok()?;
    if checksum(&bytes) != expected.trim() {
        tracing::warn!(
            "compiled module {} is damaged; compiling again",
            artifact.display()
        );
        return None;
    }
    // SAFETY: the bytes are an artifact this engine version serialized for this host (the key
    // says so) and they match the checksum written with them; a failure is handled by
    // recompiling.
    match unsafe { Module::deserialize(engine, bytes) } {
        Ok(module) => Some(module),
        Err(error) => {
            tracing::warn!(
                "cannot load compiled module {}: {error}; compiling again",
                artifact.display()
            );
            None
        }
    }
}
