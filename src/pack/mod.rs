//! `wcgi pack`: a wasmer.toml directory becomes one `.webc` (v3) file, so users can ship a
//! single file that `wcgi run` serves exactly as it served the directory.

mod snapshots;

use std::path::{Path, PathBuf};

use crate::atomic_file::write_atomically_shareable;
use crate::cli::PackArgs;
use crate::package::{self, ModuleSource};

pub fn pack(args: &PackArgs) -> anyhow::Result<()> {
    let dir = &args.dir;
    // Our own loader first: its errors name the field to fix.
    let package = package::resolve_directory(dir)?;
    for command in &package.commands {
        if let ModuleSource::File { .. } | ModuleSource::Unknown { .. } = command.module {
            command.load_module(&Default::default())?;
        }
    }

    let manifest = dir.join("wasmer.toml");
    let container = wasmer_package::package::Package::from_manifest(&manifest)
        .map_err(|error| anyhow::anyhow!("cannot pack {}: {error}", dir.display()))?;
    let v3 = container
        .serialize()
        .map_err(|error| anyhow::anyhow!("cannot write the container: {error}"))?;
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
