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

impl<F: FileSystem> ContainedFileSystem<F> {
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
        match self.open_beneath(host_path, Beneath::Path { follow_last: true }) {
            Some(Ok(_)) => return Location::Inside,
            Some(Err(error)) if is_missing(&error) => return Location::Missing,
            _ => {}
        }
        match std::fs::canonicalize(host_path) {
            Ok(real) if real.starts_with(&self.root) => Location::Inside,
            Ok(_) => Location::Outside,
            Err(_) => Location::Missing,
        }
    }

    /// Opens `host_path` (under the root) with the kernel keeping the walk beneath the root;
    /// `None` where the kernel cannot decide (see `locate`), and the slow path must.
    fn open_beneath(&self, host_path: &Path, how: Beneath) -> Option<std::io::Result<OwnedFd>> {
        let root = self.root_fd.as_ref()?;
        let relative = host_path.strip_prefix(&self.root).ok()?;
        match open_beneath(root, relative, how) {
            Err(error) if is_undecided(&error) => None,
            result => Some(result),
        }
    }

    /// The metadata of `path`, read from the very file the containment check resolved (one
    /// `openat2` and an `fstat`, where checking then `stat`ing walked the path twice and
    /// could be raced by a link swapped in between).
    fn contained_metadata(&self, path: &Path, follow_last: bool) -> virtual_fs::Result<Metadata> {
        let host_path = self.host_path(path);
        match self.open_beneath(&host_path, Beneath::Path { follow_last }) {
            Some(Ok(fd)) => {
                let metadata = std::fs::File::from(fd).metadata()?;
                Ok(metadata.try_into()?)
            }
            Some(Err(error)) => Err(error.into()),
            None => {
                self.check(path, follow_last)?;
                if follow_last {
                    self.inner.metadata(path)
                } else {
                    self.inner.symlink_metadata(path)
                }
            }
        }
    }
}

/// How `open_beneath` opens what it resolves.
#[derive(Clone, Copy)]
enum Beneath {
    /// Path-only (`O_PATH`): to check a location or read its metadata. Without `follow_last`
    /// a last component that is a link is the link itself.
    Path { follow_last: bool },
    /// For reading and writing, with these `open(2)` flags.
    File { flags: libc::c_int },
}

/// The path does not exist (or a component of it is not a directory).
fn is_missing(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

/// What `RESOLVE_BENEATH` refuses without saying where the path leads (an absolute link, a
/// `..` above the root: `EXDEV`; too many links: `ELOOP`), or a kernel without `openat2`.
fn is_undecided(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::EXDEV | libc::ELOOP | libc::ENOSYS | libc::EAGAIN | libc::EPERM)
    )
}

/// Opens `relative` from `root` without leaving it (`RESOLVE_BENEATH`: no `..` above it, no
/// absolute path or link, no link leading out).
fn open_beneath(root: &OwnedFd, relative: &Path, how: Beneath) -> std::io::Result<OwnedFd> {
    let relative = if relative.as_os_str().is_empty() {
        Path::new(".")
    } else {
        relative
    };
    let path = std::ffi::CString::new(relative.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `open_how` is plain integers, for which zero is valid.
    let mut open_how: libc::open_how = unsafe { std::mem::zeroed() };
    let flags = match how {
        Beneath::Path { follow_last: true } => libc::O_PATH,
        Beneath::Path { follow_last: false } => libc::O_PATH | libc::O_NOFOLLOW,
        Beneath::File { flags } => {
            // As the standard library creates files; the kernel refuses a mode without O_CREAT.
            if flags & libc::O_CREAT != 0 {
                open_how.mode = 0o666;
            }
            flags
        }
    };
    open_how.flags = (flags | libc::O_CLOEXEC) as u64;
    open_how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid directory descriptor, a NUL-terminated path and an `open_how` of the
    // size passed; the descriptor returned is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &open_how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The `open(2)` flags for a guest's open options; `None` for a combination the standard
/// library would refuse (no access at all), left to it to say why.
fn open_flags(conf: &OpenOptionsConfig) -> Option<libc::c_int> {
    // Truncating wins over appending, which the standard library would refuse together.
    let append = conf.append() && !conf.truncate();
    let writes = conf.write() || append;
    let mut flags = match (conf.read(), writes) {
        (true, false) => libc::O_RDONLY,
        (false, true) => libc::O_WRONLY,
        (true, true) => libc::O_RDWR,
        (false, false) => return None,
    };
    if append {
        flags |= libc::O_APPEND;
    }
    if conf.truncate() {
        flags |= libc::O_TRUNC;
    }
    if conf.create_new() {
        flags |= libc::O_CREAT | libc::O_EXCL;
    } else if conf.create() {
        flags |= libc::O_CREAT;
    }
    Some(flags)
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
        self.contained_metadata(path, true)
    }
    fn symlink_metadata(&self, path: &Path) -> virtual_fs::Result<Metadata> {
        self.contained_metadata(path, false)
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
        // Opened here rather than by the host filesystem, whose files hand every call to
        // another thread (see `host_file`); in one `openat2` beneath the root where the kernel
        // can decide, so that the file checked is the file opened.
        let host_path = self.host_path(path);
        if let Some(flags) = open_flags(conf) {
            match self.open_beneath(&host_path, Beneath::File { flags }) {
                Some(Ok(fd)) => {
                    return Ok(Box::new(HostFile::new(std::fs::File::from(fd), host_path)));
                }
                Some(Err(error)) => return Err(error.into()),
                None => {}
            }
        }
        self.check(path, true)?;
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

    #[test]
    fn metadata_and_opens_are_of_the_file_the_check_resolved() {
        let (root, outside, fs) = contained();
        // A link inside: followed by metadata, itself for symlink_metadata.
        assert!(fs.metadata(Path::new("/relative-link")).unwrap().is_file());
        assert!(
            fs.symlink_metadata(Path::new("/relative-link"))
                .unwrap()
                .ft
                .is_symlink()
        );
        assert_eq!(
            fs.metadata(Path::new("/dir/public.txt")).unwrap().len(),
            "public".len() as u64
        );
        // A link leading out can be looked at, not followed.
        assert!(
            fs.symlink_metadata(Path::new("/out-file"))
                .unwrap()
                .ft
                .is_symlink()
        );
        let open = |path: &str, create: bool| {
            fs.new_open_options()
                .read(!create)
                .write(create)
                .create(create)
                .open(Path::new(path))
                .map(|_| ())
        };
        assert_eq!(open("/relative-link", false), Ok(()));
        assert_eq!(open("/out-file", false), Err(FsError::PermissionDenied));
        assert_eq!(
            open("/out-dir/secret.txt", false),
            Err(FsError::PermissionDenied)
        );
        assert_eq!(open("/dir/missing.txt", false), Err(FsError::EntryNotFound));
        // Created inside, never through a link leading out.
        assert_eq!(open("/dir/new.txt", true), Ok(()));
        assert!(root.path().join("dir/new.txt").is_file());
        assert_eq!(
            open("/out-dir/new.txt", true),
            Err(FsError::PermissionDenied)
        );
        assert!(!outside.path().join("new.txt").exists());
    }
}
