//! The guest's filesystem seen from the host, through the same mounts the instances get: what
//! script routing (and anything else deciding before an instance starts) looks at.

use std::path::{Path, PathBuf};

use crate::cgi::{DocumentTree, EntryKind};

use super::{Mount, MountOrigin};

impl MountOrigin {
    /// Where `inside` (a path in the mount, starting with `/`) is.
    fn location(&self, inside: &str) -> HostLocation {
        let relative = inside.trim_start_matches('/');
        match self {
            MountOrigin::Host(root) => HostLocation::Host(root.join(relative)),
            MountOrigin::Volume { volume, inside } => HostLocation::InContainer {
                volume: volume.clone(),
                path: format!("{inside}{relative}"),
            },
            #[cfg(test)]
            MountOrigin::Other => HostLocation::Unmounted,
        }
    }
}

/// Where a guest path's files are, seen from the host.
#[derive(Debug, Clone)]
pub enum HostLocation {
    /// Under a host directory mount (`[fs]`, `--mapdir`, `--dir`): this host path.
    Host(PathBuf),
    /// Inside a volume of the package's container, at `path` in `volume`.
    InContainer { volume: webc::Volume, path: String },
    /// No mount holds it.
    Unmounted,
}

/// Every mount of the served command, looked up by guest path.
#[derive(Debug, Clone)]
pub struct GuestFiles {
    mounts: Vec<Mount>,
}

impl GuestFiles {
    pub fn new(mounts: Vec<Mount>) -> Self {
        GuestFiles { mounts }
    }

    /// Where a guest directory lives on the host, for serving its files without an instance.
    pub fn host_location(&self, guest_path: &str) -> HostLocation {
        let Some((mount, inside)) = self.locate(guest_path) else {
            return HostLocation::Unmounted;
        };
        mount.origin.location(inside)
    }

    /// Mounts nested strictly inside `guest_dir` (`/app/uploads` inside `/app`): the path below
    /// it and where their files are.
    pub fn nested_mounts(&self, guest_dir: &str) -> Vec<(String, HostLocation)> {
        let dir = guest_dir.trim_end_matches('/');
        self.mounts
            .iter()
            .filter_map(|mount| {
                let below = mount.guest.strip_prefix(dir)?;
                (below.len() > 1 && below.starts_with('/'))
                    .then(|| (below.to_string(), mount.origin.location("/")))
            })
            .collect()
    }

    /// The mount holding `guest_path` (the deepest one, as mounts may nest) and the path
    /// inside it.
    fn locate<'a>(&self, guest_path: &'a str) -> Option<(&Mount, &'a str)> {
        self.mounts
            .iter()
            .filter_map(|mount| {
                let inside = if mount.guest == "/" {
                    guest_path
                } else {
                    guest_path.strip_prefix(mount.guest.as_str())?
                };
                match inside {
                    "" => Some((mount, "/")),
                    _ if inside.starts_with('/') => Some((mount, inside)),
                    _ => None,
                }
            })
            .max_by_key(|(mount, _)| mount.guest.len())
    }
}

impl DocumentTree for GuestFiles {
    fn entry_kind(&self, guest_path: &str) -> Option<EntryKind> {
        let (mount, inside) = self.locate(guest_path)?;
        // Symlinks are followed, but the mount refuses those leading out of it.
        let metadata = mount.filesystem.metadata(Path::new(inside)).ok()?;
        if metadata.is_dir() {
            Some(EntryKind::Directory)
        } else if metadata.is_file() {
            Some(EntryKind::File)
        } else {
            None
        }
    }
}
