//! A `.webc` container (v2 or v3): commands and atoms from its manifest, volumes mounted
//! read-only straight from the container (nothing is unpacked to disk).

use anyhow::{Context, bail};
use bytes::Bytes;
use webc::metadata::annotations::Atom;
use webc::{Container, Version};

use super::annotations::{
    SNAPSHOT_ANNOTATION, SnapshotAnnotation, WasiAnnotation, WcgiAnnotation, from_annotation_map,
};
use super::reference::Reference;
use super::{CommandSpec, ModuleSource, Package};
use crate::runtime::{EmbeddedSnapshot, Mount, guest_path};

/// Loads a container; `label` names it in messages (a path, or what the user typed).
pub fn load(label: &str, bytes: Bytes) -> anyhow::Result<Package> {
    let shown = label;
    let version = webc::detect(bytes.as_ref())
        .with_context(|| format!("{shown}: not a readable .webc container"))?;
    if version == Version::V1 {
        bail!("{shown}: .webc version 1 is obsolete; rebuild the package (e.g. with `wcgi pack`)");
    }
    let container = Container::from_bytes_and_version(bytes, version)
        .with_context(|| format!("{shown}: the .webc container is damaged"))?;
    let manifest = container.manifest();

    let mut commands = Vec::new();
    for (name, command) in &manifest.commands {
        let field = |error: String| anyhow::anyhow!("{shown}: command \"{name}\": {error}");
        let wasi: WasiAnnotation = from_annotation_map(&command.annotations, "wasi")
            .map_err(field)?
            .unwrap_or_default();
        let wcgi: WcgiAnnotation = from_annotation_map(&command.annotations, "wcgi")
            .map_err(field)?
            .unwrap_or_default();
        let atom: Option<Atom> =
            from_annotation_map(&command.annotations, "atom").map_err(field)?;
        let module = match (atom, wasi.atom.clone()) {
            (
                Some(Atom {
                    dependency: Some(dependency),
                    name: atom,
                    ..
                }),
                _,
            ) => ModuleSource::Dependency {
                source: dependency_reference(manifest, &dependency)?,
                dependency,
                module: atom,
            },
            (Some(Atom { name: atom, .. }), _) | (None, Some(atom)) => {
                match container.get_atom(&atom) {
                    Some(buffer) => ModuleSource::Bytes(buffer.into_bytes()),
                    None => ModuleSource::Unknown {
                        module: atom,
                        defined: container.atoms().into_keys().collect(),
                    },
                }
            }
            (None, None) => bail!("{shown}: command \"{name}\" names no atom to run"),
        };
        let embedded_snapshot =
            from_annotation_map::<SnapshotAnnotation>(&command.annotations, SNAPSHOT_ANNOTATION)
                .map_err(field)?
                .and_then(|snapshot| embedded_snapshot(&container, name, snapshot));
        commands.push(CommandSpec {
            name: name.clone(),
            runner: command.runner.clone(),
            module,
            wasi,
            wcgi,
            embedded_snapshot,
        });
    }

    let mut container_mounts = Vec::new();
    let volumes = container.volumes();
    let mappings = manifest
        .filesystem()
        .ok()
        .flatten()
        .map(|m| m.0)
        .unwrap_or_default();
    for mapping in mappings {
        if let Some(dependency) = &mapping.from {
            bail!(
                "{shown}: a volume of dependency \"{dependency}\" is mapped; dependencies are not supported yet"
            );
        }
        let volume = volumes
            .get(&mapping.volume_name)
            .cloned()
            .with_context(|| {
                format!(
                    "{shown}: the filesystem maps volume \"{}\", which the container lacks",
                    mapping.volume_name
                )
            })?;
        let inside = mapping.host_path.as_deref().unwrap_or("/");
        container_mounts.push(Mount::from_volume(
            &guest_path(&mapping.mount_path),
            volume,
            inside,
        ));
    }

    let wapm = manifest.wapm().ok().flatten();
    let display_name = match wapm.as_ref().and_then(|w| w.name.clone()) {
        Some(name) => name,
        None => label.to_string(),
    };
    Ok(Package {
        display_name,
        version: wapm.and_then(|w| w.version),
        origin: format!(".webc {} container", version_name(version)),
        entrypoint: manifest.entrypoint.clone(),
        commands,
        volumes: Vec::new(),
        container_mounts,
    })
}

/// The snapshot a command's annotation points to; one whose atom is missing is rebuilt at
/// start-up, as if the package had none.
fn embedded_snapshot(
    container: &Container,
    command: &str,
    snapshot: SnapshotAnnotation,
) -> Option<EmbeddedSnapshot> {
    let Some(atom) = container.get_atom(&snapshot.atom) else {
        tracing::warn!(
            "command \"{command}\": the container lacks its snapshot atom \"{}\"; it will be \
             pre-initialised at start-up",
            snapshot.atom
        );
        return None;
    };
    Some(EmbeddedSnapshot {
        key: snapshot.key,
        checksum: snapshot.checksum,
        wasm: atom.into_bytes(),
    })
}

fn version_name(version: Version) -> &'static str {
    if version == Version::V2 {
        "v2"
    } else if version == Version::V3 {
        "v3"
    } else {
        "(unknown version)"
    }
}

/// Where the container's `use` map says a dependency comes from: `namespace/name@requirement`
/// in a registry, or a URL of a container.
fn dependency_reference(
    manifest: &webc::metadata::Manifest,
    alias: &str,
) -> anyhow::Result<Option<Reference>> {
    use webc::metadata::UrlOrManifest;
    match manifest.use_map.get(alias) {
        None => Ok(None),
        Some(UrlOrManifest::RegistryDependentUrl(text)) => {
            Reference::parse(text)?.map(Some).with_context(|| {
                format!("dependency \"{alias}\" names `{text}`, which is not a package reference")
            })
        }
        Some(UrlOrManifest::Url(url)) => Ok(Some(Reference::Url(url.clone()))),
        Some(UrlOrManifest::Manifest(_)) => {
            bail!(
                "dependency \"{alias}\" is embedded as a manifest, which wcgi does not read; rebuild the container"
            )
        }
    }
}
