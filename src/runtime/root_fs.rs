//! The file system an instance sees: wasmer-wasix's virtual root (`/bin`, `/dev`, `/etc`,
//! `/tmp`...) in memory, fresh for every instance so nothing one request writes there is seen
//! by the next, with the command's mounts on top, each seen through what this instance has
//! already learnt of it (`lookup_memo`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use wasmer_wasix::WasiEnvBuilder;
use wasmer_wasix::virtual_fs::{
    ArcFileSystem, FileSystem, MountFileSystem, OverlayFileSystem, RootFileSystemBuilder,
};

use super::lookup_memo::LookupMemo;
use super::mounts::Mount;
use super::snapshot::MountReads;
use super::sqlite_locks::LockLedger;

type SharedFileSystem = Arc<dyn FileSystem + Send + Sync>;

/// How every instance's root is assembled, worked out once per program.
pub struct RootLayout {
    mounts: Vec<Mount>,
    current_dir: Option<String>,
}

impl RootLayout {
    pub fn new(mounts: Vec<Mount>, current_dir: Option<String>) -> Self {
        RootLayout {
            mounts,
            current_dir,
        }
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// Gives `builder` a fresh root with the mounts, the working directory and the preopens
    /// (`.` then `/`, the order WASI programs have always seen from wasmer); `locks` sees the
    /// SQLite locks taken through the mounts, and `reads` (a snapshot's init) which mounts
    /// are read from.
    pub fn install(
        &self,
        builder: &mut WasiEnvBuilder,
        locks: &Arc<LockLedger>,
        reads: Option<&Arc<MountReads>>,
    ) -> anyhow::Result<()> {
        // The virtual root must not create the directories the mounts provide.
        let mapped: Vec<&str> = self
            .mounts
            .iter()
            .map(|mount| mount.guest.as_str())
            .collect();
        let scratch: SharedFileSystem =
            Arc::new(RootFileSystemBuilder::default().build_tmp_ext(&mapped));
        let root = MountFileSystem::new();
        let mut root_layers: Vec<SharedFileSystem> = Vec::new();
        for mount in &self.mounts {
            let mut filesystem: SharedFileSystem = Arc::new(LookupMemo::new(locks.track(mount)));
            if let Some(reads) = reads {
                filesystem = reads.observe(&mount.guest, filesystem);
            }
            if mount.guest == "/" {
                root_layers.push(filesystem);
            } else {
                root.mount(Path::new(&mount.guest), filesystem)
                    .with_context(|| format!("mounting {}", mount.guest))?;
            }
        }
        let top: SharedFileSystem = if root_layers.is_empty() {
            scratch
        } else {
            Arc::new(OverlayFileSystem::new(
                ArcFileSystem::new(scratch),
                root_layers,
            ))
        };
        root.mount(Path::new("/"), top).context("mounting /")?;
        builder.set_mount_fs(root);

        if let Some(dir) = &self.current_dir {
            builder.set_current_dir(dir);
        }
        // Mount paths are absolute (`mounts::guest_path`), so none of them is `.` itself.
        let cwd = self.current_dir.as_deref().unwrap_or("/");
        builder.add_preopen_build(|dir| {
            dir.directory(cwd)
                .alias(".")
                .read(true)
                .write(true)
                .create(true)
        })?;
        builder.add_preopen_dir("/")?;
        Ok(())
    }
}
