//! `wcgi pack`: a wasmer.toml directory becomes one `.webc` (v3) file, so users can ship a
//! single file that `wcgi run` serves exactly as it served the directory.

mod rewrite;
mod snapshots;

use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use webc::metadata::annotations::Wapm;

use crate::atomic_file::write_atomically_shareable;
use crate::cli::PackArgs;
use crate::package::{self, ModuleSource, Package};

pub fn pack(args: &PackArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    let (package, v3) = container(dir)?;
    let v3 = if args.preinit {
        snapshots::embed(v3, args)?
    } else {
        v3
    };
    let bytes = match args.webc_version {
        2 => webc::migration::v3_to_v2(v3)
            .map_err(|error| anyhow::anyhow!("cannot convert the container to webc v2: {error}"))?
            .into_bytes(),
        _ => v3,
    };

    let output = match &args.output {
        Some(output) => output.clone(),
        None => default_output(
            dir,
            package.display_name.as_str(),
            package.version.as_deref(),
        ),
    };
    if let Some(parent) = output.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        anyhow::bail!(
            "cannot write {}: directory {} does not exist",
            output.display(),
            parent.display()
        );
    }
    write_atomically_shareable(&output, &bytes)?;
    println!(
        "Packed {} into {} ({})",
        package.display_name,
        output.display(),
        bytesize::ByteSize::b(bytes.len() as u64)
    );
    Ok(())
}

/// The v3 container of the wasmer.toml package in `dir`, with its name, version and
/// description in the `wapm` annotation, as Wasmer's own packages carry them (wasmer-package
/// leaves them out, keeping them for the registry alone), so that the file says what it is
/// and can be published as it is.
pub fn container(dir: &Path) -> anyhow::Result<(Package, Bytes)> {
    // Our own loader first: its errors name the field to fix.
    let package = package::resolve_directory(dir)?;
    for command in &package.commands {
        if let ModuleSource::File { .. } | ModuleSource::Unknown { .. } = command.module {
            command.load_module(&Default::default())?;
        }
    }

    let manifest_path = dir.join("wasmer.toml");
    let container = wasmer_package::package::Package::from_manifest(&manifest_path)
        .map_err(|error| anyhow::anyhow!("cannot pack {}: {error}", dir.display()))?;
    let v3 = container
        .serialize()
        .map_err(|error| anyhow::anyhow!("cannot write the container: {error}"))?;
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("cannot read {}", manifest_path.display()))?;
    let manifest = wasmer_config::package::Manifest::parse(&text)
        .map_err(|error| anyhow::anyhow!("{}: {error}", manifest_path.display()))?;
    let Some(identity) = manifest.package else {
        return Ok((package, v3));
    };
    let v3 = rewrite::rewrite(v3, |webc_manifest, _atoms| {
        let mut wapm = match webc_manifest.package.get(Wapm::KEY) {
            Some(value) => value
                .deserialized::<Wapm>()
                .context("the container's wapm annotation is unreadable")?,
            None => Wapm::new(None, None, None),
        };
        wapm.name = identity.name.clone();
        wapm.version = identity.version.as_ref().map(ToString::to_string);
        wapm.description = identity.description.clone();
        let value =
            ciborium::Value::serialized(&wapm).context("cannot encode the wapm annotation")?;
        webc_manifest.package.insert(Wapm::KEY.to_string(), value);
        Ok(())
    })?;
    Ok((package, v3))
}

/// `NAME-VERSION.webc` in the package directory, from the package name without namespace.
fn default_output(dir: &Path, name: &str, version: Option<&str>) -> PathBuf {
    let short = name
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty() && !n.contains('.'))
        .unwrap_or("package");
    let file = match version {
        Some(version) => format!("{short}-{version}.webc"),
        None => format!("{short}.webc"),
    };
    dir.join(file)
}
