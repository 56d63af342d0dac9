//! Reading what an init function left: its mutable globals and memories, from the exports the
//! instrumented module added, and a check that it left no file open but the preopens (a
//! request's instance would not have that file, only the number the snapshot remembers).

use anyhow::{Context, bail};
use wasmer::{Extern, FunctionEnv, Instance, Store, Value};
use wasmer_wasix::{WasiEnv, WasiVersion, generate_import_object_from_env};

use super::instrument::{StateLayout, global_export, memory_export};
use super::rewrite::{CapturedState, GlobalValue};

/// Descriptors up to this number are checked (the WASI runtime hands out the lowest free one).
const HIGHEST_FD_CHECKED: i32 = 4096;
/// WASI's `errno` for success.
const ERRNO_SUCCESS: i32 = 0;

pub fn capture(
    store: &mut Store,
    instance: &Instance,
    env: &FunctionEnv<WasiEnv>,
    layout: &StateLayout,
) -> anyhow::Result<CapturedState> {
    let mut globals = Vec::with_capacity(layout.globals.len());
    for slot in &layout.globals {
        let global = instance.exports.get_global(&global_export(slot.index))?;
        globals.push(match global.get(store) {
            Value::I32(v) => GlobalValue::I32(v),
            Value::I64(v) => GlobalValue::I64(v),
            Value::F32(v) => GlobalValue::F32(v.to_bits()),
            Value::F64(v) => GlobalValue::F64(v.to_bits()),
            other => bail!(
                "global {} holds {other:?}, which a snapshot cannot hold",
                slot.index
            ),
        });
    }
    let mut memories = Vec::with_capacity(layout.memories.len());
    for &index in &layout.memories {
        let memory = instance.exports.get_memory(&memory_export(index))?;
        memories.push(
            memory
                .view(store)
                .copy_to_vec()
                .context("cannot read the memory init left")?,
        );
    }
    // The probes below write into guest memory (address 0): only after it was copied.
    check_only_preopens_open(store, env)?;
    Ok(CapturedState { globals, memories })
}

/// Fails naming the first descriptor past stdio that is open and is not a preopen.
fn check_only_preopens_open(store: &mut Store, env: &FunctionEnv<WasiEnv>) -> anyhow::Result<()> {
    let wasi = generate_import_object_from_env(store, env, WasiVersion::Snapshot1);
    let function = |name: &str| match wasi.get_export("wasi_snapshot_preview1", name) {
        Some(Extern::Function(function)) => Ok(function),
        _ => bail!("the WASI runtime has no {name}"),
    };
    let (fdstat_get, prestat_get) = (function("fd_fdstat_get")?, function("fd_prestat_get")?);
    let errno = |store: &mut Store, function: &wasmer::Function, fd: i32| -> anyhow::Result<i32> {
        let results = function.call(store, &[Value::I32(fd), Value::I32(0)])?;
        match results.first() {
            Some(Value::I32(errno)) => Ok(*errno),
            _ => bail!("unexpected result from a WASI call"),
        }
    };
    for fd in 3..=HIGHEST_FD_CHECKED {
        if errno(store, &fdstat_get, fd)? == ERRNO_SUCCESS
            && errno(store, &prestat_get, fd)? != ERRNO_SUCCESS
        {
            bail!(
                "the init function left file descriptor {fd} open; requests would not have it \
                 (close every file it opens before returning)"
            );
        }
    }
    Ok(())
}
