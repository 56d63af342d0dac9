//! SQLite's locks on WASI. With no `fcntl` locks, SQLite locks a database by creating a
//! `<db>.lock` directory (its unix-dotfile VFS): `mkdir` succeeds for one holder at a time.
//! Three things would break that across instances, and this module fixes them:
//!
//! - **Locks left behind.** An instance that ends while holding one — stopped at its deadline,
//!   trapped, abandoned by its client, or exiting without closing the database — would leave
//!   the lock, and every later request would find the database locked for good. Each instance
//!   sees its mounts through a ledger of the lock directories it creates; whatever it still
//!   holds when it has ended is removed: its holder is gone, and nobody else can have taken a
//!   lock that still exists.
//! - **Locks never seen released.** wasmer-wasix caches every path an instance has seen exist,
//!   and its `mkdir` answers "exists" from that cache without asking the filesystem again. A
//!   writer that once found the lock taken would then never get it, however long it waits, so
//!   concurrent writers fail with "database is locked". Lock directories held by someone
//!   else are therefore never reported to the instance as existing: its cache never holds one,
//!   and each `mkdir` reaches the host, whose answer is atomic. (SQLite only probes a lock to
//!   tell whether a journal is hot; believing it free only makes it try to take the lock,
//!   which `mkdir` decides.) The instance's own locks stay visible, as the engine stats what
//!   it has just created.
//! - **Two holders.** Above the mounts, the engine answers "already exists" from `mkdir` with
//!   success. Taking a held lock answers "try again" instead, which SQLite treats as busy.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::future::BoxFuture;
use wasmer_wasix::virtual_fs::{
    self, FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig, ReadDir,
    VirtualFile,
};

use super::Mount;

/// SQLite's dot-file lock: the database's name plus this suffix, made with `mkdir`.
const LOCK_SUFFIX: &str = ".lock";

/// The lock directories one instance holds.
#[derive(Default)]
pub struct LockLedger {
    held: Mutex<Vec<Held>>,
}

struct Held {
    mount: Mount,
    path: PathBuf,
}

impl LockLedger {
    /// The instance's view of `mount`, recording the locks taken through it.
    pub fn track(self: &Arc<Self>, mount: &Mount) -> Arc<dyn FileSystem + Send + Sync> {
        Arc::new(LockTrackingFileSystem {
            mount: mount.clone(),
            ledger: self.clone(),
        })
    }

    /// Removes the locks the ended instance still held; returns their guest paths.
    pub fn release_leftovers(&self) -> Vec<String> {
        let held = std::mem::take(&mut *self.held.lock().unwrap_or_else(PoisonError::into_inner));
        held.into_iter()
            .filter(|lock| lock.mount.filesystem.remove_dir(&lock.path).is_ok())
            .map(|lock| {
                let inside = lock.path.to_string_lossy();
                format!("{}{inside}", lock.mount.guest.trim_end_matches('/'))
            })
            .collect()
    }

    fn taken(&self, mount: &Mount, path: &Path) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Held {
                mount: mount.clone(),
                path: path.to_path_buf(),
            });
    }

    fn released(&self, mount: &Mount, path: &Path) {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|lock| !lock.is(mount, path));
    }

    fn holds(&self, mount: &Mount, path: &Path) -> bool {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|lock| lock.is(mount, path))
    }
}

impl Held {
    fn is(&self, mount: &Mount, path: &Path) -> bool {
        self.path == path && Arc::ptr_eq(&self.mount.filesystem, &mount.filesystem)
    }
}

fn is_lock(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.len() > LOCK_SUFFIX.len() && name.ends_with(LOCK_SUFFIX))
}

/// A mount as one instance sees it: everything passes through, lock directories are noted.
#[derive(Debug)]
struct LockTrackingFileSystem {
    mount: Mount,
    ledger: Arc<LockLedger>,
}

impl std::fmt::Debug for LockLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockLedger").finish_non_exhaustive()
    }
}

impl LockTrackingFileSystem {
    /// A lock directory someone else holds looks absent (see the module documentation).
    fn hide_others_lock(
        &self,
        path: &Path,
        metadata: virtual_fs::Result<Metadata>,
    ) -> virtual_fs::Result<Metadata> {
        match metadata {
            Ok(metadata)
                if metadata.is_dir() && is_lock(path) && !self.ledger.holds(&self.mount, path) =>
            {
                Err(FsError::EntryNotFound)
            }
            other => other,
        }
    }
}

impl FileSystem for LockTrackingFileSystem {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.mount.filesystem.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.mount.filesystem.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        if !is_lock(path) {
            return self.mount.filesystem.create_dir(path);
        }
        match self.mount.filesystem.create_dir(path) {
            Ok(()) => {
                self.ledger.taken(&self.mount, path);
                Ok(())
            }
            // The engine's mount layer turns "exists" into success (`mkdir -p` style), which
            // would hand one lock to two holders. "Try again" reaches SQLite as EAGAIN, which
            // it treats as busy: it waits and retries.
            Err(FsError::AlreadyExists) => Err(FsError::WouldBlock),
            Err(error) => Err(error),
        }
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.mount.filesystem.remove_dir(path)?;
        if is_lock(path) {
            self.ledger.released(&self.mount, path);
        }
        Ok(())
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, virtual_fs::Result<()>> {
        self.mount.filesystem.rename(from, to)
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.hide_others_lock(path, self.mount.filesystem.metadata(path))
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.hide_others_lock(path, self.mount.filesystem.symlink_metadata(path))
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.mount.filesystem.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl FileOpener for LockTrackingFileSystem {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        self.mount
            .filesystem
            .new_open_options()
            .options(conf.clone())
            .open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::mounts::MountOrigin;

    fn memory_mount() -> Mount {
        Mount {
            guest: "/data".into(),
            filesystem: Arc::new(virtual_fs::mem_fs::FileSystem::default()),
            origin: MountOrigin::Other,
            read_only: false,
        }
    }

    #[test]
    fn locks_still_held_at_the_end_are_removed() {
        let mount = memory_mount();
        let ledger = Arc::new(LockLedger::default());
        let seen = ledger.track(&mount);
        seen.create_dir(Path::new("/db.sqlite.lock")).unwrap();
        seen.create_dir(Path::new("/released.sqlite.lock")).unwrap();
        seen.remove_dir(Path::new("/released.sqlite.lock")).unwrap();
        seen.create_dir(Path::new("/uploads")).unwrap();

        // Its own lock is visible to the instance, as are directories that are not locks.
        assert!(
            seen.metadata(Path::new("/db.sqlite.lock"))
                .unwrap()
                .is_dir()
        );
        assert!(seen.metadata(Path::new("/uploads")).unwrap().is_dir());

        assert_eq!(ledger.release_leftovers(), ["/data/db.sqlite.lock"]);
        assert!(
            mount
                .filesystem
                .metadata(Path::new("/db.sqlite.lock"))
                .is_err()
        );
        assert!(mount.filesystem.metadata(Path::new("/uploads")).is_ok());
        assert!(ledger.release_leftovers().is_empty());
    }

    #[test]
    fn a_lock_another_instance_holds_is_left_alone() {
        let mount = memory_mount();
        let mine = Arc::new(LockLedger::default());
        let theirs = Arc::new(LockLedger::default());
        theirs
            .track(&mount)
            .create_dir(Path::new("/db.lock"))
            .unwrap();
        // Taking it fails while they hold it, so it is never recorded as ours.
        assert!(
            mine.track(&mount)
                .create_dir(Path::new("/db.lock"))
                .is_err()
        );
        assert!(mine.release_leftovers().is_empty());
        assert!(mount.filesystem.metadata(Path::new("/db.lock")).is_ok());
    }
}
