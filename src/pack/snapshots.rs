//! `wcgi pack --preinit`: the container carries each pre-initialised command's snapshot as an
//! atom, and the command an annotation naming it with the key of its inputs.
//!
//! Snapshots are taken from the container just written, with the mounts, environment and
//! arguments `wcgi run FILE.webc` gives the command, so that the key computed here is the
//! one `wcgi run` computes: a run with the defaults uses the snapshot as it is, any other run
//! pre-initialises anew.

use anyhow::{Context, bail};
use bytes::Bytes;
use webc::v3::Timestamps;
use webc::v3::write::FileEntry;

use super::rewrite::{atom_name, rewrite};
use crate::cli::PackArgs;
use crate::digest::checksum;
use crate::package::{self, Cache, SNAPSHOT_ANNOTATION, SnapshotAnnotation};
use crate::preinit;
use crate::run;
use crate::runtime::{Compiler, GuestEngine};

/// `v3` (a container `wcgi pack` wrote) with the snapshots of its pre-initialised commands.
pub fn embed(v3: Bytes, args: &PackArgs) -> anyhow::Result<Bytes> {
    let snapshots = take_snapshots(v3.clone(), args)?;
    if snapshots.is_empty() {
        bail!(
            "--preinit: no command of {} is pre-initialised (none exports `wizer.initialize` or \
             names an init function with annotations.wcgi.preinit); pack without --preinit",
            args.dir.display()
        );
    }
    with_atoms(v3, snapshots)
}

/// A snapshot to embed, for one command.
struct Embedded {
    command: String,
    atom: String,
    key: String,
    wasm: Bytes,
}

fn take_snapshots(v3: Bytes, args: &PackArgs) -> anyhow::Result<Vec<Embedded>> {
    let package = package::load_container("the packed container", v3)?;
    // Fetched before the async runtime starts, as under `wcgi run`: fetching blocks.
    let mut commands = Vec::new();
    for command in package.commands.iter().filter(|command| command.is_wcgi()) {
        commands.push((command, command.load_module(&args.source.settings())?));
    }
    // Mounts and the WASI runtime need a Tokio context, as under `wcgi run`.
    let runtime = crate::run::async_runtime()?;
    let _context = runtime.enter();
    let cache = Cache::new(args.source.cache_dir.clone());
    // A snapshot is a module: which compiler runs the init function does not shape it.
    let engine = GuestEngine::new(
        Compiler::default(),
        args.max_memory,
        1,
        Some(cache.compiled_dir()),
    )?;

    let mut snapshots = Vec::new();
    for (command, wasm) in commands {
        let setting = preinit::setting(command, false);
        let spec = run::program_spec(command, wasm, package.container_mounts.clone(), &[]);
        let static_env = run::static_env(command, Vec::new(), Vec::new(), Vec::new())?;
        let snapshot = preinit::snapshot(
            command,
            &setting,
            &engine,
            &spec,
            &static_env,
            &cache.snapshot_dir(),
        )
        .with_context(|| format!("command \"{}\": pre-initialisation failed", command.name))?;
        if let Some(snapshot) = snapshot {
            snapshots.push(Embedded {
                atom: format!("{}.snapshot", command.name),
                command: command.name.clone(),
                key: snapshot.key,
                wasm: snapshot.wasm,
            });
        }
    }
    Ok(snapshots)
}

/// The container with each command's snapshot annotation and each snapshot as an atom.
fn with_atoms(v3: Bytes, snapshots: Vec<Embedded>) -> anyhow::Result<Bytes> {
    rewrite(v3, |manifest, atoms| {
        for snapshot in snapshots {
            let name = atom_name(&snapshot.atom)?;
            if atoms.contains_key(&name) {
                bail!(
                    "cannot embed the snapshot of command \"{}\": the package already has an \
                     atom named \"{}\"",
                    snapshot.command,
                    snapshot.atom
                );
            }
            let annotation = ciborium::Value::serialized(&SnapshotAnnotation {
                atom: snapshot.atom,
                key: snapshot.key,
                checksum: checksum(&snapshot.wasm),
            })
            .context("cannot encode the snapshot annotation")?;
            manifest
                .commands
                .get_mut(&snapshot.command)
                .context("a command vanished from the container")?
                .annotations
                .insert(SNAPSHOT_ANNOTATION.to_string(), annotation);
            atoms.insert(name, FileEntry::owned(snapshot.wasm, Timestamps::default()));
        }
        Ok(())
    })
}
