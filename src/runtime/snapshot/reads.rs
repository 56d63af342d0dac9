//! Which mounts an init function read from, recorded while it runs and kept in the snapshot
//! it leaves (a custom section), so that a snapshot from the cache or a package says it too.
//! What a snapshot holds can only have come from those mounts: whether it is still current
//! (`currency`) depends on them alone. A file opened or a directory listed counts as a read;
//! a `stat` alone does not (the snapshot keeps contents, not metadata: php-cgi clears its
//! realpath and stat caches before the snapshot is taken).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use wasm_encoder::{CustomSection, Section};
use wasmer_wasix::virtual_fs::{
    self, FileOpener, FileSystem, Metadata, OpenOptions, OpenOptionsConfig, ReadDir, VirtualFile,
};
use wasmparser::{Parser, Payload};

/// The custom section naming the mounts (guest paths, one per line) init read from.
const READS_SECTION: &str = "wcgi.snapshot.reads";

/// The guest paths of the mounts an instance has read from.
#[derive(Debug, Default)]
pub struct MountReads {
    read: Mutex<Vec<String>>,
}

impl MountReads {
    /// `filesystem` (the instance's view of the mount at `guest`), recording reads through it.
    pub fn observe(
        self: &Arc<Self>,
        guest: &str,
        filesystem: Arc<dyn FileSystem + Send + Sync>,
    ) -> Arc<dyn FileSystem + Send + Sync> {
        Arc::new(ReadRecordingFileSystem {
            inner: filesystem,
            guest: guest.to_string(),
            recorded: AtomicBool::new(false),
            reads: self.clone(),
        })
    }

    /// The mounts read from, in the order of their first read.
    pub fn guests(&self) -> Vec<String> {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, guest: &str) {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(guest.to_string());
    }
}

/// `snapshot` with the section recording that init read from `guests`.
pub fn append_reads_section(snapshot: &mut Vec<u8>, guests: &[String]) {
    let listing = guests.join("\n");
    CustomSection {
        name: READS_SECTION.into(),
        data: listing.as_bytes().into(),
    }
    .append_to(snapshot);
}

/// The mounts a snapshot's init read from, as recorded in it; `None` when it does not say (a
/// snapshot from an older wcgi), which must be taken as "any of them".
pub fn recorded_reads(snapshot: &[u8]) -> Option<Vec<String>> {
    for payload in Parser::new(0).parse_all(snapshot) {
        let Ok(payload) = payload else {
            return None;
        };
        if let Payload::CustomSection(section) = payload
            && section.name() == READS_SECTION
        {
            let listing = std::str::from_utf8(section.data()).ok()?;
            return Some(
                listing
                    .lines()
                    .filter(|line| !line.is_empty())
                    .map(str::to_string)
                    .collect(),
            );
        }
    }
    None
}

#[derive(Debug)]
struct ReadRecordingFileSystem {
    inner: Arc<dyn FileSystem + Send + Sync>,
    guest: String,
    recorded: AtomicBool,
    reads: Arc<MountReads>,
}

impl ReadRecordingFileSystem {
    fn read(&self) {
        if !self.recorded.swap(true, Ordering::Relaxed) {
            self.reads.record(&self.guest);
        }
    }
}

impl FileSystem for ReadRecordingFileSystem {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.inner.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.read();
        self.inner.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.inner.create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.inner.remove_dir(path)
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, virtual_fs::Result<()>> {
        self.inner.rename(from, to)
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.inner.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.inner.symlink_metadata(path)
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.inner.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for ReadRecordingFileSystem {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        self.read();
        self.inner
            .new_open_options()
            .options(conf.clone())
            .open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reads_section_round_trips_and_its_absence_says_so() {
        let empty_module = wasm_encoder::Module::new().finish();
        assert_eq!(recorded_reads(&empty_module), None);

        let mut snapshot = empty_module.clone();
        append_reads_section(&mut snapshot, &["/app".into(), "/etc/php".into()]);
        wasmparser::Validator::new()
            .validate_all(&snapshot)
            .unwrap();
        assert_eq!(
            recorded_reads(&snapshot),
            Some(vec!["/app".to_string(), "/etc/php".to_string()])
        );

        let mut read_nothing = empty_module;
        append_reads_section(&mut read_nothing, &[]);
        assert_eq!(recorded_reads(&read_nothing), Some(vec![]));
    }
}
