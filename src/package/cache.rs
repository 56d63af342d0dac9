//! The download cache: containers stored by the sha256 of their bytes (verified on every
//! read), and short-lived answers to registry queries. Every write goes to a temporary file
//! that is renamed into place, so concurrent `wcgi` processes never see half a file.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use crate::atomic_file::write_atomically;
pub use crate::digest::sha256_hex;

/// How long a registry answer is reused without asking again (as Wasmer does).
pub const QUERY_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

impl Cache {
    /// `--cache-dir`, else `WCGI_CACHE_DIR`, else the user cache dir (`~/.cache/wcgi`).
    pub fn new(dir: Option<PathBuf>) -> Self {
        let root = dir
            .or_else(|| std::env::var_os("WCGI_CACHE_DIR").map(PathBuf::from))
            .or_else(|| dirs::cache_dir().map(|dir| dir.join("wcgi")))
            .unwrap_or_else(|| std::env::temp_dir().join("wcgi-cache"));
        Cache { root }
    }

    /// The cache's directory.
    pub fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Where compiled modules are kept.
    pub fn compiled_dir(&self) -> PathBuf {
        self.root.join("compiled")
    }

    /// Where pre-initialised snapshots of modules are kept.
    pub fn snapshot_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    pub fn package_path(&self, sha256: &str) -> PathBuf {
        self.root.join("packages").join(format!("{sha256}.webc"))
    }

    /// A cached container, only if its bytes still hash to its name. A corrupt entry is
    /// removed, so it is fetched again.
    pub fn package(&self, sha256: &str) -> Option<Bytes> {
        let path = self.package_path(sha256);
        let bytes = std::fs::read(&path).ok()?;
        if sha256_hex(&bytes) == sha256 {
            return Some(Bytes::from(bytes));
        }
        tracing::warn!(
            "cache entry {} is corrupt; fetching it again",
            path.display()
        );
        let _ = std::fs::remove_file(&path);
        None
    }

    /// Stores a container under its hash.
    pub fn store_package(&self, sha256: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let path = self.package_path(sha256);
        write_atomically(&path, bytes)?;
        Ok(path)
    }

    /// A cached query answer and its age.
    pub fn query(&self, key: &str) -> Option<(String, Duration)> {
        let path = self.query_path(key);
        let text = std::fs::read_to_string(&path).ok()?;
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok()?;
        let age = SystemTime::now()
            .duration_since(modified)
            .unwrap_or_default();
        Some((text, age))
    }

    pub fn store_query(&self, key: &str, answer: &str) {
        if let Err(error) = write_atomically(&self.query_path(key), answer.as_bytes()) {
            tracing::debug!("cannot cache a registry answer: {error:#}");
        }
    }

    fn query_path(&self, key: &str) -> PathBuf {
        self.root
            .join("queries")
            .join(format!("{}.json", sha256_hex(key.as_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrupt_entries_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(Some(dir.path().to_path_buf()));
        let hash = sha256_hex(b"container");
        cache.store_package(&hash, b"container").unwrap();
        assert_eq!(cache.package(&hash).as_deref(), Some(&b"container"[..]));
        std::fs::write(cache.package_path(&hash), b"tampered").unwrap();
        assert_eq!(cache.package(&hash), None);
        assert!(!cache.package_path(&hash).exists());
    }
}
