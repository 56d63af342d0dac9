//! `wcgi pack --preinit`: the container carries each pre-initialised command's snapshot as an
//! atom, and the command an annotation naming it with the key of its inputs.
//!
//! Snapshots are taken from the container just written, with the mounts, environment and
//! arguments `wcgi run FILE.webc` gives the command, so that the key computed here is the
//! one `wcgi run` computes: a run with the defaults uses the snapshot as it is, any other run
//! pre-initialises anew.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use bytes::Bytes;
use webc::v3::write::{DirEntry, Directory, FileEntry, SymlinkEntry, Writer};
use webc::v3::{ChecksumAlgorithm, SignatureAlgorithm, Timestamps};
use webc::{Container, PathSegment, Version, Volume};

use crate::cli::PackArgs;
use crate::digest::checksum;
use crate::package::{self, Cache, SNAPSHOT_ANNOTATION, SnapshotAnnotation};
use crate::preinit;
use crate::run;
use crate::runtime::GuestEngine;

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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let _context = runtime.enter();
    let cache = Cache::new(args.source.cache_dir.clone());
    let engine = GuestEngine::new(args.max_memory, 1, Some(cache.compiled_dir()));

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

/// Writes the container anew: its manifest with each command's snapshot annotation, its
/// atoms and the snapshots, its volumes copied entry by entry (contents and timestamps kept,
/// so the volumes a snapshot's key covers are unchanged).
fn with_atoms(v3: Bytes, snapshots: Vec<Embedded>) -> anyhow::Result<Bytes> {
    let container = Container::from_bytes_and_version(v3, Version::V3)
        .context("cannot read back the container just written")?;
    let mut manifest = container.manifest().clone();
    let mut atoms: BTreeMap<PathSegment, FileEntry> = BTreeMap::new();
    for (name, atom) in container.atoms() {
        atoms.insert(
            atom_name(&name)?,
            FileEntry::owned(atom.into_bytes(), Timestamps::default()),
        );
    }
    for snapshot in snapshots {
        let name = atom_name(&snapshot.atom)?;
        if atoms.contains_key(&name) {
            bail!(
                "cannot embed the snapshot of command \"{}\": the package already has an atom \
                 named \"{}\"",
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

    let mut writer = Writer::new(ChecksumAlgorithm::Sha256)
        .write_manifest(&manifest)?
        .write_atoms(atoms)?;
    for (name, volume) in container.volumes() {
        let tree = directory(&volume, &[])
            .with_context(|| format!("cannot copy volume \"{name}\" of the container"))?;
        writer.write_volume(&name, tree)?;
    }
    Ok(writer.finish(SignatureAlgorithm::None)?)
}

fn atom_name(name: &str) -> anyhow::Result<PathSegment> {
    name.parse()
        .with_context(|| format!("\"{name}\" is not a valid atom name"))
}

/// The directory at `path` in `volume`, as the v3 writer takes it.
fn directory(volume: &Volume, path: &[PathSegment]) -> anyhow::Result<Directory<'static>> {
    let entries = volume
        .read_dir(path)
        .with_context(|| format!("cannot list /{}", display(path)))?;
    let mut children = BTreeMap::new();
    for (name, _hash, metadata) in entries {
        let mut child = path.to_vec();
        child.push(name.clone());
        let timestamps = written(metadata.timestamps());
        let entry = if metadata.is_dir() {
            DirEntry::Dir(directory(volume, &child)?)
        } else if metadata.is_symlink() {
            let (target, _) = volume
                .read_link(child.as_slice())
                .with_context(|| format!("cannot read link /{}", display(&child)))?;
            DirEntry::Symlink(SymlinkEntry::owned(target, timestamps))
        } else {
            let (contents, _) = volume
                .read_file(child.as_slice())
                .with_context(|| format!("cannot read /{}", display(&child)))?;
            DirEntry::File(FileEntry::owned(contents.into_bytes(), timestamps))
        };
        children.insert(name, entry);
    }
    let timestamps = written(
        volume
            .metadata(path)
            .and_then(|metadata| metadata.timestamps()),
    );
    Ok(Directory::new(children, timestamps))
}

/// Timestamps as read (nanoseconds) in the form the v3 writer takes (it stores seconds, so
/// what it read back round-trips unchanged).
fn written(read: Option<webc::Timestamps>) -> Timestamps {
    read.map_or_else(Timestamps::default, |read| Timestamps {
        modified: std::time::UNIX_EPOCH + std::time::Duration::from_nanos(read.modified()),
    })
}

fn display(path: &[PathSegment]) -> String {
    path.iter()
        .map(|segment| segment.as_str())
        .collect::<Vec<_>>()
        .join("/")
}
