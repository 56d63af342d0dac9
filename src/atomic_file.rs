//! Writing files so that readers, including other `wcgi` processes, never see half of one.

use std::path::Path;

use anyhow::Context;

/// Writes to a temporary file in the same directory, then renames it into place.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut temporary = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    std::io::Write::write_all(&mut temporary, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    temporary
        .persist(path)
        .map_err(|error| anyhow::anyhow!("cannot write {}: {}", path.display(), error.error))?;
    Ok(())
}
