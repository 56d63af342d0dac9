//! `wcgi publish`: a package goes to the registry under its name and version, so that
//! `wcgi run namespace/name@version` serves it anywhere. A directory is packed first, exactly
//! as `wcgi pack` packs it; a `.webc` is uploaded unchanged.

use std::path::Path;

use anyhow::{Context, bail};
use bytes::Bytes;
use webc::metadata::annotations::Wapm;
use webc::{Container, Version};

use crate::cli::PublishArgs;
use crate::pack;
use crate::package::{Metadata, Registry, Release};

pub fn publish(args: &PublishArgs) -> anyhow::Result<()> {
    let release = release(args)?;
    let registry = Registry::new(args.source.settings());
    let endpoint = registry.publish_endpoint()?;
    let what = format!(
        "{}@{} ({}, sha256:{})",
        release.full_name(),
        release.version,
        bytesize::ByteSize::b(release.container.len() as u64),
        release.sha256()
    );
    if args.dry_run {
        println!("Would publish {what} to {endpoint}");
        for (field, value) in metadata_fields(&release.metadata) {
            println!("  {field}: {value}");
        }
        println!("Dry run: nothing was sent.");
        return Ok(());
    }
    let version = registry.publish(&release)?;
    println!("Published {what} to {endpoint}");
    println!("Serve it with: wcgi run {}@{version}", release.full_name());
    Ok(())
}

/// The metadata sent along, as `--dry-run` shows it (long texts by their size).
fn metadata_fields(metadata: &Metadata) -> Vec<(&'static str, String)> {
    let size = |text: &String| format!("{} bytes", text.len());
    [
        ("description", metadata.description.clone()),
        ("license", metadata.license.clone()),
        ("readme", metadata.readme.as_ref().map(size)),
        ("repository", metadata.repository.clone()),
        ("homepage", metadata.homepage.clone()),
        ("manifest", metadata.manifest.as_ref().map(size)),
    ]
    .into_iter()
    .filter_map(|(field, value)| Some((field, value?)))
    .collect()
}

/// The package as it will be published: its container, name, version and metadata, with
/// `--namespace` and `--name` applied.
fn release(args: &PublishArgs) -> anyhow::Result<Release> {
    let path = &args.package;
    let shown = path.display();
    let (container, identity, metadata) = if path.is_dir() {
        from_directory(path)?
    } else if path.is_file() {
        from_container(path)?
    } else {
        bail!(
            "{shown}: no such file or directory (expected a directory with wasmer.toml or a \
             .webc file)"
        );
    };
    let (namespace, name) = match identity.name.as_deref().and_then(|n| n.split_once('/')) {
        Some((namespace, name)) => (Some(namespace.to_string()), Some(name.to_string())),
        None => (None, identity.name.clone()),
    };
    let (Some(namespace), Some(name)) = (
        args.namespace.clone().or(namespace),
        args.name.clone().or(name),
    ) else {
        bail!(
            "{shown} has no package name to publish under; set `name = \"namespace/name\"` under \
             [package] in wasmer.toml, or pass --namespace and --name"
        );
    };
    let Some(version) = identity.version else {
        bail!(
            "{shown} has no version to publish; set `version = \"0.1.0\"` under [package] in \
             wasmer.toml"
        );
    };
    semver::Version::parse(&version).map_err(|error| {
        anyhow::anyhow!("{shown}: version {version:?} is not a semantic version ({error})")
    })?;
    Ok(Release {
        namespace,
        name,
        version,
        container,
        metadata,
    })
}

/// A package's name and version as its files give them.
struct Identity {
    name: Option<String>,
    version: Option<String>,
}

/// A wasmer.toml directory: packed as `wcgi pack` packs it; metadata from `[package]`.
fn from_directory(dir: &Path) -> anyhow::Result<(Bytes, Identity, Metadata)> {
    let (_, container) = pack::container(dir)?;
    let manifest_path = dir.join("wasmer.toml");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest = wasmer_config::package::Manifest::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", manifest_path.display()))?;
    let Some(package) = manifest.package else {
        bail!(
            "{} has no [package] table; add one with `name = \"namespace/name\"` and \
             `version = \"0.1.0\"`",
            manifest_path.display()
        );
    };
    let readme = match &package.readme {
        Some(readme) => Some(std::fs::read_to_string(dir.join(readme)).with_context(|| {
            format!(
                "{}: readme {} cannot be read",
                manifest_path.display(),
                readme.display()
            )
        })?),
        None => None,
    };
    let identity = Identity {
        name: package.name.clone(),
        version: package.version.as_ref().map(ToString::to_string),
    };
    let metadata = Metadata {
        description: package.description.clone(),
        license: package.license.clone(),
        readme,
        repository: package.repository.clone(),
        homepage: package.homepage.clone(),
        manifest: Some(text),
    };
    Ok((container, identity, metadata))
}

/// A `.webc` file, unchanged; name, version and metadata from its `wapm` annotation.
fn from_container(file: &Path) -> anyhow::Result<(Bytes, Identity, Metadata)> {
    let shown = file.display();
    let bytes = Bytes::from(std::fs::read(file).with_context(|| format!("cannot read {shown}"))?);
    let version = webc::detect(bytes.as_ref()).with_context(|| {
        format!(
            "{shown}: not a .webc container (publish a directory with wasmer.toml or a .webc file)"
        )
    })?;
    if version == Version::V1 {
        bail!("{shown}: .webc version 1 is obsolete; rebuild the package with `wcgi pack`");
    }
    let container = Container::from_bytes_and_version(bytes.clone(), version)
        .with_context(|| format!("{shown}: the .webc container is damaged"))?;
    let wapm: Option<Wapm> = container
        .manifest()
        .wapm()
        .with_context(|| format!("{shown}: its wapm annotation is unreadable"))?;
    let Some(wapm) = wapm else {
        bail!(
            "{shown} does not say which package it holds (no wapm annotation); pack it with \
             `wcgi pack`, or pass --namespace and --name"
        );
    };
    let readme = wapm.readme.as_ref().and_then(|readme| {
        let volume = container.get_volume(&readme.volume)?;
        let (contents, _) = volume.read_file(readme.path.as_str())?;
        Some(String::from_utf8_lossy(&contents).into_owned())
    });
    let metadata = Metadata {
        description: wapm.description.clone(),
        license: wapm.license.clone(),
        readme,
        repository: wapm.repository.clone(),
        homepage: wapm.homepage.clone(),
        manifest: None,
    };
    let identity = Identity {
        name: wapm.name,
        version: wapm.version,
    };
    Ok((bytes, identity, metadata))
}
