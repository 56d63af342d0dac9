//! Whether inotify can see every change to a directory: only when every change to its file
//! system passes through this machine's kernel. A network or user-space file system (NFS,
//! SMB, FUSE such as sshfs or Docker Desktop's shares, 9p) can be changed from elsewhere
//! without one event here, so a snapshot built from one is never vouched for: its
//! interpreter keeps checking its files itself.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `statfs` magic numbers of the file systems only this kernel changes (linux/magic.h).
const LOCAL: &[u32] = &[
    0xEF53,      // ext2, ext3, ext4
    0x5846_5342, // xfs
    0x9123_683E, // btrfs
    0xF2F5_2010, // f2fs
    0x2FC1_2FC1, // zfs
    0xCA45_1A4E, // bcachefs
    0x0102_1994, // tmpfs
    0x8584_58F6, // ramfs
    0x794C_7630, // overlayfs (a container's image: its lower layers do not change)
    0x7371_7368, // squashfs
    0x9660,      // iso9660
];

/// Names of the others users meet most, for the message; any other is shown by number.
const NAMED: &[(u32, &str)] = &[
    (0x6969, "NFS"),
    (0xFF53_4D42, "SMB (cifs)"),
    (0xFE53_4D42, "SMB"),
    (0x6573_5546, "FUSE"),
    (0x0102_1997, "9p"),
    (0x00C3_6400, "Ceph"),
];

/// `None` when every change to `dir`'s file system is seen here; else what it is ("NFS").
pub fn unseen_changes(dir: &Path) -> io::Result<Option<String>> {
    Ok(kind_unseen(magic(dir)?))
}

/// What a file system with this magic number is when inotify may miss its changes.
fn kind_unseen(magic: u32) -> Option<String> {
    if LOCAL.contains(&magic) {
        return None;
    }
    Some(
        NAMED
            .iter()
            .find(|(number, _)| *number == magic)
            .map_or_else(|| format!("{magic:#x}"), |(_, name)| name.to_string()),
    )
}

fn magic(dir: &Path) -> io::Result<u32> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in the path"))?;
    // SAFETY: a plain C struct of integers, for which all zeros is a valid value.
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and outlives the call, which writes only into `stat`.
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // The field's width differs between C libraries; the magic numbers are 32 bits.
    Ok(stat.f_type as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_file_systems_are_seen_and_network_ones_are_named() {
        assert_eq!(kind_unseen(0xEF53), None);
        assert_eq!(kind_unseen(0x0102_1994), None);
        assert_eq!(kind_unseen(0x6969).as_deref(), Some("NFS"));
        assert_eq!(kind_unseen(0x6573_5546).as_deref(), Some("FUSE"));
        assert_eq!(kind_unseen(0x1234).as_deref(), Some("0x1234"));
    }

    #[test]
    fn the_test_machines_temporary_directories_are_local() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unseen_changes(dir.path()).unwrap(), None);
        assert!(unseen_changes(Path::new("/no/such/dir")).is_err());
    }
}
