//! Writing a v3 container anew with its manifest or atoms changed: what `wcgi pack` adds to
//! what wasmer-package writes (the package's identity, embedded snapshots).

use std::collections::BTreeMap;

use anyhow::Context;
use bytes::Bytes;
use webc::metadata::Manifest;
use webc::v3::write::{DirEntry, Directory, FileEntry, SymlinkEntry, Writer};
use webc::v3::{ChecksumAlgorithm, SignatureAlgorithm, Timestamps};
use webc::{Container, PathSegment, Version, Volume};

/// A container's atoms, by name, as the v3 writer takes them.
pub type Atoms = BTreeMap<PathSegment, FileEntry<'static>>;

/// `v3` with `edit` applied to its manifest and atoms; its volumes are copied entry by entry
/// (contents and timestamps kept, so whatever a snapshot's key covers is unchanged).
pub fn rewrite(
    v3: Bytes,
    edit: impl FnOnce(&mut Manifest, &mut Atoms) -> anyhow::Result<()>,
) -> anyhow::Result<Bytes> {
    let container = Container::from_bytes_and_version(v3, Version::V3)
        .context("cannot read back the container just written")?;
    let mut manifest = container.manifest().clone();
    let mut atoms = Atoms::new();
    for (name, atom) in container.atoms() {
        atoms.insert(
            atom_name(&name)?,
            FileEntry::owned(atom.into_bytes(), Timestamps::default()),
        );
    }
    edit(&mut manifest, &mut atoms)?;

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

pub fn atom_name(name: &str) -> anyhow::Result<PathSegment> {
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
