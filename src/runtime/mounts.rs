//! Host directories made visible inside the guest, optionally read-only.

use std::fmt;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use futures_util::future::BoxFuture;

use super::host_file::HostFile;
use wasmer_wasix::virtual_fs::{
    self, FileOpener, FileSystem, FsError, Metadata, OpenOptions, OpenOptionsConfig, ReadDir,
    VirtualFile,
};

/// A host directory to mount at a guest path, as asked for by `[fs]`, `--mapdir` or `--dir`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute path inside the guest.
    pub guest: String,
    /// Host directory; relative paths are relative to the current directory.
    pub host: PathBuf,
    pub read_only: bool,
}

impl MountSpec {
    /// Parses `GUEST:HOST[:ro]`, the `--mapdir` syntax of Wasmer's CLI plus a read-only suffix.
    pub fn parse_mapdir(raw: &str) -> Result<Self, String> {
        let (spec, read_only) = match raw.strip_suffix(":ro") {
            Some(spec) => (spec, true),
            None => (raw, false),
        };
        let Some((guest, host)) = spec.split_once(':') else {
            return Err(format!("expected GUEST:HOST or GUEST:HOST:ro, got `{raw}`"));
        };
        if guest.is_empty() || host.is_empty() {
            return Err(format!(
                "both the guest path and the host path are needed in `{raw}`"
            ));
        }
        Ok(MountSpec {
            guest: guest_path(guest),
            host: PathBuf::from(host),
            read_only,
        })
    }

    /// `--dir HOST`: the host directory at the same path inside the guest.
    pub fn same_path(host: &Path) -> anyhow::Result<Self> {
        let absolute = std::path::absolute(host)
            .with_context(|| format!("cannot resolve --dir {}", host.display()))?;
        let guest = absolute
            .to_str()
            .with_context(|| format!("--dir {} is not a UTF-8 path", host.display()))?;
        Ok(MountSpec {
            guest: guest.to_string(),
            host: host.to_path_buf(),
            read_only: false,
        })
    }
}

/// A guest path as written in `[fs]` or `--mapdir`: relative names such as `app` mean `/app`.
pub fn guest_path(raw: &str) -> String {
    let trimmed = raw.trim_end_matches('/');
    match trimmed.strip_prefix('/') {
        Some(_) => trimmed.to_string(),
        None if trimmed.is_empty() => "/".to_string(),
        None => format!("/{}", trimmed.trim_start_matches("./")),
    }
}

/// A mount whose host side was checked and opened once at start-up and is shared by every
/// request (the host filesystem handle holds no per-instance state).
#[derive(Clone)]
pub struct Mount {
    pub guest: String,
    pub filesystem: Arc<dyn FileSystem + Send + Sync>,
    /// What the files are, for the host's own use (serving static files).
    pub origin: MountOrigin,
    /// Whether the guest is refused writes (container volumes, package `[fs]`, `:ro`).
    pub read_only: bool,
}

/// Where a mount's files come from.
#[derive(Clone)]
pub enum MountOrigin {
    /// A host directory (canonical path).
    Host(PathBuf),
    /// A directory (`inside`, `/` for all) of a `.webc` container's volume.
    Volume {
        volume: webc::Volume,
        inside: String,
    },
    /// An in-memory filesystem in unit tests.
    #[cfg(test)]
    Other,
}

impl fmt::Debug for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mount")
            .field("guest", &self.guest)
            .finish_non_exhaustive()
    }
}

impl Mount {
    /// Checks the host directory exists and opens it. Needs a Tokio runtime context.
    pub fn open(spec: &MountSpec, origin: &str) -> anyhow::Result<Self> {
        let host = &spec.host;
        if !host.exists() {
            bail!("{origin}: host directory {} does not exist", host.display());
        }
        if !host.is_dir() {
            bail!("{origin}: {} is not a directory", host.display());
        }
        let root = std::fs::canonicalize(host)
            .with_context(|| format!("{origin}: cannot open {}", host.display()))?;
        let host_fs =
            virtual_fs::host_fs::FileSystem::new(tokio::runtime::Handle::current(), &root)
                .map_err(|error| {
                    anyhow::anyhow!("{origin}: cannot open {}: {error}", host.display())
                })?;
        let contained = ContainedFileSystem::new(host_fs, root.clone());
        let filesystem: Arc<dyn FileSystem + Send + Sync> = if spec.read_only {
            Arc::new(ReadOnlyFileSystem(contained))
        } else {
            Arc::new(contained)
        };
        Ok(Mount {
            guest: spec.guest.clone(),
            filesystem,
            origin: MountOrigin::Host(root),
            read_only: spec.read_only,
        })
    }
}

impl Mount {
    /// A volume of a `.webc` container, mounted read-only; `inside` is the directory of the
    /// volume to mount (`/` for all of it).
    pub fn from_volume(guest: &str, volume: webc::Volume, inside: &str) -> Self {
        let volume_fs = virtual_fs::WebcVolumeFileSystem::new(volume.clone());
        let inside = inside.trim_end_matches('/');
        let origin = MountOrigin::Volume {
            volume,
            inside: format!("{inside}/"),
        };
        let filesystem: Arc<dyn FileSystem + Send + Sync> = if inside.is_empty() {
            Arc::new(ReadOnlyFileSystem(volume_fs))
        } else {
            Arc::new(ReadOnlyFileSystem(SubdirectoryFileSystem {
                inner: volume_fs,
                prefix: PathBuf::from(inside),
            }))
        };
        Mount {
            guest: guest.to_string(),
            filesystem,
            origin,
            read_only: true,
        }
    }
}

/// A directory of another filesystem seen as a root of its own (a volume whose files sit
/// below a prefix, as containers converted from webc v2 have them).
#[derive(Debug)]
pub struct SubdirectoryFileSystem<F> {
    inner: F,
    prefix: PathBuf,
}

impl<F> SubdirectoryFileSystem<F> {
    fn outer(&self, path: &Path) -> PathBuf {
        let mut outer = self.prefix.clone();
        for component in path.components() {
            match component {
                std::path::Component::Normal(part) => outer.push(part),
                std::path::Component::ParentDir if outer != self.prefix => {
                    outer.pop();
                }
                _ => {}
            }
        }
        outer
    }
}

impl<F: FileSystem> FileSystem for SubdirectoryFileSystem<F> {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.inner.readlink(&self.outer(path))
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        // Entries name their full path: give them back as paths of this filesystem.
        let entries = self.inner.read_dir(&self.outer(path))?;
        let entries = entries
            .map(|entry| {
                entry.map(|mut entry| {
                    if let Ok(inside) = entry.path.strip_prefix(&self.prefix) {
                        entry.path = Path::new("/").join(inside);
                    }
                    entry
                })
            })
            .collect::<virtual_fs::Result<Vec<_>>>()?;
        Ok(ReadDir::new(entries))
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.inner.create_dir(&self.outer(path))
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.inner.remove_dir(&self.outer(path))
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, virtual_fs::Result<()>> {
        Box::pin(async move { self.inner.rename(&self.outer(from), &self.outer(to)).await })
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.inner.metadata(&self.outer(path))
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.inner.symlink_metadata(&self.outer(path))
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.inner.remove_file(&self.outer(path))
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl<F: FileSystem> FileOpener for SubdirectoryFileSystem<F> {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        self.inner
            .new_open_options()
            .options(conf.clone())
            .open(self.outer(path))
    }
}

/// Keeps a guest inside its host directory. The host filesystem resolves `..` within the
/// mount, but the OS follows symlinks, so a link inside the directory pointing outside it would
/// hand out host files. Every path is resolved on the host first and refused if its real
/// location is outside the root.
#[derive(Debug)]
pub struct ContainedFileSystem<F> {
    inner: F,
    /// The mount's host directory, canonical.
    root: PathBuf,
    /// The root opened path-only, for the kernel to resolve paths beneath it; `None` where it
    /// cannot be opened.
    root_fd: Option<OwnedFd>,
}

/// Where a host path really is.
enum Location {
    Inside,
    Outside,
    Missing,
}

impl<F> ContainedFileSystem<F> {
    fn new(inner: F, root: PathBuf) -> Self {
        let root_fd = std::fs::File::open(&root).ok().map(OwnedFd::from);
        ContainedFileSystem {
            inner,
            root,
            root_fd,
        }
    }

    /// Checks where `path` really is. For a path that does not exist yet (a file about to be
    /// created), its closest existing ancestor is checked. With `follow_last = false` the last
    /// component itself is not resolved (it may be a symlink that is only read, not followed).
    fn check(&self, path: &Path, follow_last: bool) -> virtual_fs::Result<()> {
        let mut host_path = self.host_path(path);
        if !follow_last && host_path != self.root {
            host_path.pop();
        }
        loop {
            match self.locate(&host_path) {
                Location::Inside => return Ok(()),
                Location::Outside => return Err(FsError::PermissionDenied),
                Location::Missing if host_path.pop() && host_path.starts_with(&self.root) => {}
                Location::Missing => return Err(FsError::EntryNotFound),
            }
        }
    }

    /// Where a guest path of this mount is on the host, `..` resolved within the root (as the
    /// host filesystem resolves it).
    fn host_path(&self, path: &Path) -> PathBuf {
        let mut host_path = self.root.clone();
        for component in path.components() {
            match component {
                std::path::Component::Normal(part) => host_path.push(part),
                std::path::Component::ParentDir if host_path != self.root => {
                    host_path.pop();
                }
                _ => {}
            }
        }
        host_path
    }

    /// Resolves `host_path` (under the root). The kernel first, in one `openat2` that refuses
    /// to leave the root (a `realpath` walk cost a `readlink` per component of the whole host
    /// path, a tenth of a WordPress request); what that refuses or cannot decide (an absolute
    /// link, a kernel before 5.6) is resolved with `realpath` and compared.
    fn locate(&self, host_path: &Path) -> Location {
        if let (Some(root), Ok(relative)) = (&self.root_fd, host_path.strip_prefix(&self.root)) {
            match resolve_beneath(root, relative) {
                Ok(()) => return Location::Inside,
                Err(error)
                    if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
                {
                    return Location::Missing;
                }
                Err(_) => {}
            }
        }
        match std::fs::canonicalize(host_path) {
            Ok(real) if real.starts_with(&self.root) => Location::Inside,
            Ok(_) => Location::Outside,
            Err(_) => Location::Missing,
        }
    }
}

/// Resolves `relative` from `root` without leaving it (`RESOLVE_BENEATH`: no `..` above it, no
/// absolute path or link, no link leading out), following a last component that is a link.
fn resolve_beneath(root: &OwnedFd, relative: &Path) -> std::io::Result<()> {
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let path = std::ffi::CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `open_how` is plain integers, for which zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid directory descriptor, a NUL-terminated path and an `open_how` of the
    // size passed; the descriptor returned is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nothing else.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

impl<F: FileSystem> FileSystem for ContainedFileSystem<F> {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.check(path, false)?;
        self.inner.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.check(path, true)?;
        self.inner.read_dir(path)
    }
    fn create_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.check(path, true)?;
        self.inner.create_dir(path)
    }
    fn remove_dir(&self, path: &Path) -> virtual_fs::Result<()> {
        self.check(path, false)?;
        self.inner.remove_dir(path)
    }
    fn rename<'a>(&'a self, from: &'a Path, to: &'a Path) -> BoxFuture<'a, virtual_fs::Result<()>> {
        Box::pin(async move {
            self.check(from, false)?;
            self.check(to, false)?;
            self.inner.rename(from, to).await
        })
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.check(path, true)?;
        self.inner.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.check(path, false)?;
        self.inner.symlink_metadata(path)
    }
    fn remove_file(&self, path: &Path) -> virtual_fs::Result<()> {
        self.check(path, false)?;
        self.inner.remove_file(path)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl<F: FileSystem> FileOpener for ContainedFileSystem<F> {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        self.check(path, true)?;
        // Opened here rather than by the host filesystem, whose files hand every call to
        // another thread (see `host_file`); with its flags: truncating wins over appending,
        // which the standard library would refuse together.
        let host_path = self.host_path(path);
        let file = std::fs::OpenOptions::new()
            .read(conf.read())
            .write(conf.write())
            .create_new(conf.create_new())
            .create(conf.create())
            .append(conf.append() && !conf.truncate())
            .truncate(conf.truncate())
            .open(&host_path)?;
        Ok(Box::new(HostFile::new(file, host_path)))
    }
}

/// Wraps a filesystem and refuses every change to it. The engine's host filesystem has no
/// read-only mode, and an overlay would only hide writes in memory instead of rejecting them.
#[derive(Debug)]
pub struct ReadOnlyFileSystem<F>(pub F);

impl<F: FileSystem> FileSystem for ReadOnlyFileSystem<F> {
    fn readlink(&self, path: &Path) -> virtual_fs::Result<PathBuf> {
        self.0.readlink(path)
    }
    fn read_dir(&self, path: &Path) -> virtual_fs::Result<ReadDir> {
        self.0.read_dir(path)
    }
    fn create_dir(&self, _path: &Path) -> virtual_fs::Result<()> {
        Err(FsError::PermissionDenied)
    }
    fn remove_dir(&self, _path: &Path) -> virtual_fs::Result<()> {
        Err(FsError::PermissionDenied)
    }
    fn rename<'a>(
        &'a self,
        _from: &'a Path,
        _to: &'a Path,
    ) -> BoxFuture<'a, virtual_fs::Result<()>> {
        Box::pin(async { Err(FsError::PermissionDenied) })
    }
    fn metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.0.metadata(path)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.0.symlink_metadata(path)
    }
    fn remove_file(&self, _path: &Path) -> virtual_fs::Result<()> {
        Err(FsError::PermissionDenied)
    }
    fn new_open_options(&self) -> OpenOptions<'_> {
        OpenOptions::new(self)
    }
}

impl<F: FileSystem> FileOpener for ReadOnlyFileSystem<F> {
    fn open(
        &self,
        path: &Path,
        conf: &OpenOptionsConfig,
    ) -> virtual_fs::Result<Box<dyn VirtualFile + Send + Sync + 'static>> {
        if conf.write || conf.append || conf.create || conf.create_new || conf.truncate {
            return Err(FsError::PermissionDenied);
        }
        self.0.new_open_options().options(conf.clone()).open(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapdir_specs_parse() {
        let spec = MountSpec::parse_mapdir("/app:./site").unwrap();
        assert_eq!(
            spec,
            MountSpec {
                guest: "/app".into(),
                host: "./site".into(),
                read_only: false
            }
        );
        let spec = MountSpec::parse_mapdir("data:/srv/data:ro").unwrap();
        assert_eq!(
            spec,
            MountSpec {
                guest: "/data".into(),
                host: "/srv/data".into(),
                read_only: true
            }
        );
        assert!(MountSpec::parse_mapdir("/app").is_err());
        assert!(MountSpec::parse_mapdir(":x").is_err());
    }

    #[test]
    fn relative_guest_paths_are_rooted() {
        assert_eq!(guest_path("app"), "/app");
        assert_eq!(guest_path("./app/"), "/app");
        assert_eq!(guest_path("/db"), "/db");
        assert_eq!(guest_path("/"), "/");
    }
}

#[cfg(test)]
mod containment_tests {
    use super::*;

    /// A mount root with a file, a relative link to it, links leading out (to a file and to a
    /// directory) and an absolute link that stays inside; and the contained filesystem on it.
    fn contained() -> (tempfile::TempDir, tempfile::TempDir, impl FileSystem) {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "secret").unwrap();
        let root = tempfile::tempdir().unwrap();
        let real_root = std::fs::canonicalize(root.path()).unwrap();
        std::fs::create_dir(real_root.join("dir")).unwrap();
        std::fs::write(real_root.join("dir/public.txt"), "public").unwrap();
        let link = |target: &Path, name: &str| {
            std::os::unix::fs::symlink(target, real_root.join(name)).unwrap()
        };
        link(Path::new("dir/public.txt"), "relative-link");
        link(&real_root.join("dir/public.txt"), "absolute-inside");
        link(&outside.path().join("secret.txt"), "out-file");
        link(outside.path(), "out-dir");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _context = runtime.enter();
        let host_fs =
            virtual_fs::host_fs::FileSystem::new(runtime.handle().clone(), &real_root).unwrap();
        (root, outside, ContainedFileSystem::new(host_fs, real_root))
    }

    #[test]
    fn paths_that_resolve_outside_the_root_are_refused() {
        let (_root, _outside, fs) = contained();
        for inside in [
            "/dir/public.txt",
            "/relative-link",
            "/absolute-inside",
            "/dir",
            "/",
        ] {
            assert!(fs.metadata(Path::new(inside)).is_ok(), "{inside}");
        }
        for outside in ["/out-file", "/out-dir/secret.txt", "/out-dir"] {
            assert_eq!(
                fs.metadata(Path::new(outside)).unwrap_err(),
                FsError::PermissionDenied,
                "{outside}"
            );
        }
        // Not there at all: its closest existing ancestor is inside, so the host says so.
        assert_eq!(
            fs.metadata(Path::new("/dir/missing.txt")).unwrap_err(),
            FsError::EntryNotFound
        );
        // A file to be created under a link leading out is refused before it exists.
        assert_eq!(
            fs.metadata(Path::new("/out-dir/new.txt")).unwrap_err(),
            FsError::PermissionDenied
        );
    }
}
