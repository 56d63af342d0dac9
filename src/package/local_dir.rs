//! A directory with a `wasmer.toml`: modules are read from disk, `[fs]` directories are
//! mounted live, so edits show up on the next request.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use wasmer_config::package::{Command, Manifest, ModuleReference};

use super::annotations::{WasiAnnotation, WcgiAnnotation, from_annotations};
use super::reference::Reference;
use super::{CommandSpec, ModuleSource, Package, manifest_base};
use crate::runtime::{MountSpec, guest_path};

const MANIFEST_FILE: &str = "wasmer.toml";

pub fn load(dir: &Path) -> anyhow::Result<Package> {
    let manifest_path = dir.join(MANIFEST_FILE);
    if !manifest_path.is_file() {
        bail!(
            "{}: no {MANIFEST_FILE} in this directory; create one (see wasmer.toml.example) \
             or pass a .wasm file",
            dir.display()
        );
    }
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest = Manifest::parse(&text).map_err(|error| {
        let line = error
            .span()
            .map(|span| text[..span.start].lines().count().max(1));
        let location = line.map(|l| format!(" line {l}")).unwrap_or_default();
        anyhow::anyhow!(
            "{}{location}: {}",
            manifest_path.display(),
            error.message().trim()
        )
    })?;
    let base = manifest_base(dir);
    let field_error = |field: String, message: String| {
        anyhow::anyhow!("{}: {field}: {message}", manifest_path.display())
    };

    let module_paths: HashMap<&str, &Path> = manifest
        .modules
        .iter()
        .map(|m| (m.name.as_str(), m.source.as_path()))
        .collect();
    let defined: Vec<String> = manifest.modules.iter().map(|m| m.name.clone()).collect();

    let mut commands = Vec::new();
    for command in &manifest.commands {
        let name = command.get_name().to_string();
        let (runner, annotations) = match command {
            Command::V2(v2) => {
                let annotations = v2
                    .get_annotations(&base)
                    .map_err(|error| field_error(format!("command \"{name}\""), error))?;
                (v2.runner.clone(), annotations)
            }
            // The deprecated command form has no runner: it is a plain WASI command.
            #[allow(deprecated)]
            Command::V1(_) => ("wasi".to_string(), None),
        };
        let annotation_error = |error: String| field_error(format!("command \"{name}\""), error);
        let wasi: WasiAnnotation = from_annotations(annotations.as_ref(), "wasi")
            .map_err(annotation_error)?
            .unwrap_or_default();
        let wcgi: WcgiAnnotation = from_annotations(annotations.as_ref(), "wcgi")
            .map_err(annotation_error)?
            .unwrap_or_default();

        let module = match (wasi.atom.as_ref(), command.get_module()) {
            (Some(atom), _) | (None, ModuleReference::CurrentPackage { module: atom }) => {
                match module_paths.get(atom.as_str()) {
                    Some(source) => ModuleSource::File {
                        module: atom.to_string(),
                        path: base.join(source),
                    },
                    None => ModuleSource::Unknown {
                        module: atom.to_string(),
                        defined: defined.clone(),
                    },
                }
            }
            (None, ModuleReference::Dependency { dependency, module }) => {
                ModuleSource::Dependency {
                    dependency: dependency.clone(),
                    source: manifest.dependencies.get(dependency).map(|requirement| {
                        Reference::Named {
                            registry: None,
                            name: dependency.clone(),
                            requirement: requirement.clone(),
                        }
                    }),
                    module: module.clone(),
                }
            }
        };
        commands.push(CommandSpec {
            name,
            runner,
            module,
            wasi,
            wcgi,
            embedded_snapshot: None,
        });
    }

    let mut volumes = Vec::new();
    for (guest, host) in &manifest.fs {
        let host_path = base.join(host);
        if !host_path.is_dir() {
            return Err(field_error(
                format!("[fs] \"{guest}\" = \"{}\"", host.display()),
                format!("host directory {} does not exist", host_path.display()),
            ));
        }
        // Package volumes are read-only, as they are inside a .webc; use --mapdir for
        // directories the guest may write to.
        volumes.push(MountSpec {
            guest: guest_path(guest),
            host: host_path,
            read_only: true,
        });
    }

    let package = manifest.package.as_ref();
    Ok(Package {
        display_name: package
            .and_then(|p| p.name.clone())
            .unwrap_or_else(|| dir.display().to_string()),
        origin: "directory".to_string(),
        version: package.and_then(|p| p.version.as_ref().map(|v| v.to_string())),
        entrypoint: package.and_then(|p| p.entrypoint.clone()),
        commands,
        volumes,
        container_mounts: Vec::new(),
    })
}
