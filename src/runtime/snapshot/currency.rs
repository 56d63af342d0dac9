//! Whether a snapshot is still current: nothing it was built from has changed since.
//!
//! An interpreter that compiled scripts into its snapshot checks, on every request, that each
//! script it runs is unchanged on disk (php-cgi's OPcache: a few hundred `stat`s for a
//! WordPress page). wcgi can answer that once per request instead, and tells the guest so
//! with `WCGI_SNAPSHOT_CURRENT=1` in its environment. What init read from (`reads`) decides:
//!
//! - a container volume never changes;
//! - a read-only host directory is watched (inotify) from before the snapshot's key is
//!   computed, and the key holds that directory's tree: a snapshot from the cache matches
//!   what is there once watching has begun, and every change after it is an event;
//! - a writable host directory (`--mapdir`, a site edited live) is known to the key by its
//!   path only, so a snapshot whose init read from one is never vouched for.
//!
//! Each request asks as it starts, and pending events are read then and there: a request that
//! begins after a write has returned is never told the snapshot is current. A change is final
//! until the snapshot is taken again (a restart, or a reload under `--watch`); the guest then
//! checks its files itself, as it would with no snapshot. inotify sees changes made through
//! this machine's kernel only, so a tree that reaches onto a network or user-space file
//! system (NFS, SMB, FUSE, 9p: `local_fs`) is not vouched for either.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use inotify::{Inotify, WatchDescriptor, WatchMask};

use super::super::mounts::{Mount, MountOrigin};
use super::local_fs;

/// The variable a guest finds set to `1` while its snapshot is current.
pub const CURRENT_ENV: &str = "WCGI_SNAPSHOT_CURRENT";

/// Directories watched at most; a larger tree makes its snapshot never vouched for (each
/// watch costs kernel memory, and the default per-user limit may be 8,192).
const MAX_WATCHED_DIRS: usize = 8_192;

/// Every change to a directory's entries or to a file in it; reads (`IN_ACCESS`, `IN_OPEN`)
/// are not changes and requests make them all the time.
fn changes() -> WatchMask {
    WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::ONLYDIR
        | WatchMask::DONT_FOLLOW
}

/// The read-only host directories of a command, watched since before its snapshot was keyed.
pub struct Watching {
    watch: Result<Watch, String>,
}

impl Watching {
    /// Starts watching the trees of `mounts`' read-only host directories.
    pub fn start(mounts: &[Mount]) -> Self {
        let roots: Vec<&Path> = mounts
            .iter()
            .filter_map(|mount| match &mount.origin {
                MountOrigin::Host(path) if mount.read_only => Some(path.as_path()),
                _ => None,
            })
            .collect();
        Watching {
            watch: Watch::trees(&roots),
        }
    }

    /// The currency of the snapshot whose init read from `reads` (`None`: it does not say,
    /// so from any of the mounts), once it has been loaded or built.
    pub fn settle(self, mounts: &[Mount], reads: Option<&[String]>) -> SnapshotCurrency {
        let read_from = |mount: &&Mount| reads.is_none_or(|reads| reads.contains(&mount.guest));
        let unwatchable = mounts.iter().filter(read_from).find(|mount| {
            !matches!(
                (&mount.origin, mount.read_only),
                (MountOrigin::Volume { .. }, _) | (MountOrigin::Host(_), true)
            )
        });
        let watch = match (unwatchable, self.watch) {
            (Some(mount), _) => Err(format!(
                "its init read from {}, a writable directory",
                mount.guest
            )),
            (None, watch) => watch,
        };
        match watch {
            Ok(watch) => SnapshotCurrency {
                changed: AtomicBool::new(false),
                watch: Some(Mutex::new(watch)),
                reason_not: String::new(),
            },
            Err(reason) => SnapshotCurrency {
                changed: AtomicBool::new(true),
                watch: None,
                reason_not: reason,
            },
        }
    }
}

/// Whether a snapshot is current, asked at the start of every request.
pub struct SnapshotCurrency {
    /// Set for good at the first change (or from the start when it cannot be known).
    changed: AtomicBool,
    watch: Option<Mutex<Watch>>,
    /// Why the snapshot is never vouched for, when it is not.
    reason_not: String,
}

impl SnapshotCurrency {
    /// Whether nothing the snapshot was built from has changed, as of now.
    pub fn is_current(&self) -> bool {
        if self.changed.load(Ordering::Acquire) {
            return false;
        }
        let Some(watch) = &self.watch else {
            return false;
        };
        // Reading the events and recording what they say happen under one lock, so a request
        // never finds the queue drained by another that has not yet said it changed.
        let mut watch = watch.lock().unwrap_or_else(PoisonError::into_inner);
        if self.changed.load(Ordering::Acquire) {
            return false;
        }
        match watch.first_change() {
            None => true,
            Some(what) => {
                tracing::info!(
                    "{what} changed: the snapshot is no longer current, and the guest checks \
                     its files itself until the snapshot is taken again (restart wcgi)"
                );
                self.changed.store(true, Ordering::Release);
                false
            }
        }
    }

    /// Why the snapshot is never current, or `None` when it is watched.
    pub fn never_because(&self) -> Option<&str> {
        self.watch.is_none().then_some(self.reason_not.as_str())
    }

    /// How many directories are watched.
    pub fn watched_dirs(&self) -> usize {
        self.watch.as_ref().map_or(0, |watch| {
            watch
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .dirs
                .len()
        })
    }
}

/// An inotify instance watching every directory of some trees.
struct Watch {
    inotify: Inotify,
    dirs: HashMap<WatchDescriptor, PathBuf>,
}

impl Watch {
    fn trees(roots: &[&Path]) -> Result<Self, String> {
        let inotify = Inotify::init().map_err(|error| format!("inotify: {error}"))?;
        let mut watch = Watch {
            inotify,
            dirs: HashMap::new(),
        };
        let mut pending: Vec<PathBuf> = roots.iter().map(|root| root.to_path_buf()).collect();
        while let Some(dir) = pending.pop() {
            if watch.dirs.len() >= MAX_WATCHED_DIRS {
                return Err(format!(
                    "its directories are more than the {MAX_WATCHED_DIRS} wcgi watches"
                ));
            }
            match local_fs::unseen_changes(&dir) {
                Ok(None) => {}
                Ok(Some(kind)) => {
                    return Err(format!(
                        "{} is on {kind}, a file system whose changes made elsewhere inotify \
                         cannot see",
                        dir.display()
                    ));
                }
                Err(error) => return Err(format!("cannot watch {}: {error}", dir.display())),
            }
            let descriptor = watch
                .inotify
                .watches()
                .add(&dir, changes())
                .map_err(|error| format!("cannot watch {}: {error}", dir.display()))?;
            let entries = std::fs::read_dir(&dir)
                .map_err(|error| format!("cannot list {}: {error}", dir.display()))?;
            watch.dirs.insert(descriptor, dir);
            for entry in entries.flatten() {
                // Not following links: a mount's guest cannot reach beyond its directory.
                if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                    pending.push(entry.path());
                }
            }
        }
        Ok(watch)
    }

    /// What the first pending event changed, if any event is pending; reads them all.
    fn first_change(&mut self) -> Option<String> {
        let mut buffer = [0u8; 4096];
        let mut first = None;
        loop {
            match self.inotify.read_events(&mut buffer) {
                Ok(events) => {
                    for event in events {
                        first.get_or_insert_with(|| {
                            let dir = self.dirs.get(&event.wd);
                            match (dir, event.name) {
                                (Some(dir), Some(name)) => dir.join(name).display().to_string(),
                                (Some(dir), None) => dir.display().to_string(),
                                (None, _) => "a watched directory".to_string(),
                            }
                        });
                    }
                }
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return first,
                // The queue overflowed or inotify failed: anything may have changed.
                Err(error) => {
                    return Some(first.unwrap_or_else(|| format!("(inotify: {error}) a file")));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host directory as the currency sees it (its files are not served in these tests).
    fn host_mount(dir: &Path, guest: &str, read_only: bool) -> Mount {
        Mount {
            guest: guest.to_string(),
            filesystem: std::sync::Arc::new(wasmer_wasix::virtual_fs::mem_fs::FileSystem::default()),
            origin: MountOrigin::Host(dir.to_path_buf()),
            read_only,
        }
    }

    #[test]
    fn a_write_anywhere_in_a_read_only_tree_ends_currency_at_once() {
        let site = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(site.path().join("lib/deep")).unwrap();
        std::fs::write(site.path().join("lib/deep/a.php"), "one").unwrap();
        let mounts = [host_mount(site.path(), "/app", true)];
        let currency = Watching::start(&mounts).settle(&mounts, Some(&["/app".into()]));
        assert_eq!(currency.never_because(), None);
        assert_eq!(currency.watched_dirs(), 3);
        assert!(currency.is_current());
        assert!(currency.is_current());

        std::fs::write(site.path().join("lib/deep/a.php"), "two").unwrap();
        assert!(!currency.is_current());
        // For good, even with no new event.
        assert!(!currency.is_current());
    }

    #[test]
    fn a_new_directory_or_a_rename_is_a_change() {
        let site = tempfile::tempdir().unwrap();
        std::fs::write(site.path().join("a.php"), "one").unwrap();
        let mounts = [host_mount(site.path(), "/app", true)];
        let currency = Watching::start(&mounts).settle(&mounts, None);
        assert!(currency.is_current());
        std::fs::create_dir(site.path().join("new")).unwrap();
        assert!(!currency.is_current());

        let currency = Watching::start(&mounts).settle(&mounts, None);
        assert!(currency.is_current());
        std::fs::rename(site.path().join("a.php"), site.path().join("b.php")).unwrap();
        assert!(!currency.is_current());
    }

    #[test]
    fn a_tree_on_a_file_system_changed_elsewhere_is_never_current() {
        // procfs stands in for NFS or FUSE: neither of them is one inotify sees every change of.
        let mounts = [host_mount(Path::new("/proc/sys"), "/app", true)];
        let currency = Watching::start(&mounts).settle(&mounts, None);
        assert!(!currency.is_current());
        assert_eq!(
            currency.never_because(),
            Some(
                "/proc/sys is on 0x9fa0, a file system whose changes made elsewhere inotify cannot see"
            )
        );
    }

    #[test]
    fn a_writable_directory_init_read_from_is_never_current() {
        let site = tempfile::tempdir().unwrap();
        let data = tempfile::tempdir().unwrap();
        let mounts = [
            host_mount(site.path(), "/app", false),
            host_mount(data.path(), "/data", false),
        ];
        let read_app = Watching::start(&mounts).settle(&mounts, Some(&["/app".into()]));
        assert!(!read_app.is_current());
        assert_eq!(
            read_app.never_because(),
            Some("its init read from /app, a writable directory")
        );
        // Unknown reads count as reads from every mount.
        assert!(!Watching::start(&mounts).settle(&mounts, None).is_current());
        // A writable directory init never read from does not matter (a database's).
        let read_none = Watching::start(&mounts).settle(&mounts, Some(&[]));
        assert!(read_none.is_current());
        std::fs::write(data.path().join("db"), "rows").unwrap();
        assert!(read_none.is_current());
    }
}
