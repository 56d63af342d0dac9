//! The process's open-file limit, and the connection cap derived from it.
//!
//! Every connection is a descriptor, and so is every file a guest opens through a mount. A
//! server that lets connections take them all can no longer accept anyone, nor can its guests
//! open their scripts; the cap keeps room for both.

use std::io;

/// Descriptors kept for the listener, the runtime, logs and the compiled-module cache.
const RESERVED_FOR_SERVER: u64 = 64;
/// Descriptors kept for each instance allowed to run at once (its scripts, databases, locks).
const RESERVED_PER_INSTANCE: u64 = 32;
/// The default cap never exceeds this, however high the limit: beyond it an attacker's idle
/// connections would cost more memory than descriptors.
const DEFAULT_CAP: u64 = 16_384;

/// The open-file limit after [`raise_soft_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimit {
    pub before: u64,
    pub now: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as most servers do at start-up (many
/// systems start services with a soft limit of 1024).
#[cfg(unix)]
pub fn raise_soft_limit() -> io::Result<OpenFileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        }
    }
    Ok(OpenFileLimit {
        before: as_count(before),
        now: as_count(limit.rlim_cur),
    })
}

#[cfg(not(unix))]
pub fn raise_soft_limit() -> io::Result<OpenFileLimit> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(unix)]
fn as_count(limit: libc::rlim_t) -> u64 {
    if limit == libc::RLIM_INFINITY {
        u64::MAX
    } else {
        limit
    }
}

/// The connection cap when `--max-connections` is not given: the limit less what the server
/// and its instances need, but never less than half the limit.
pub fn default_max_connections(open_files: u64, max_instances: usize) -> usize {
    let reserved = RESERVED_FOR_SERVER + RESERVED_PER_INSTANCE * max_instances as u64;
    let cap = open_files
        .saturating_sub(reserved)
        .max(open_files / 2)
        .clamp(1, DEFAULT_CAP);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// `--max-connections`, or a cap derived from the open-file limit, which is raised to its
/// hard limit first. Logged once, so operators see the figure their server runs with.
pub fn connection_cap(flag: Option<usize>, max_instances: usize) -> usize {
    let limit = raise_soft_limit();
    let cap = match (flag, &limit) {
        (Some(n), _) => n,
        (None, Ok(limit)) => default_max_connections(limit.now, max_instances),
        (None, Err(_)) => default_max_connections(1024, max_instances),
    };
    match limit {
        Ok(limit) if limit.now > limit.before => tracing::info!(
            "open-file limit raised from {} to {}; up to {cap} connections",
            limit.before,
            limit.now
        ),
        Ok(limit) => tracing::info!("open-file limit {}; up to {cap} connections", limit.now),
        Err(error) => {
            tracing::info!("cannot read the open-file limit ({error}); up to {cap} connections")
        }
    }
    cap
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_room_for_the_server_and_its_instances() {
        assert_eq!(default_max_connections(1024, 4), 1024 - 64 - 4 * 32);
        // A low limit keeps half for connections.
        assert_eq!(default_max_connections(256, 8), 128);
        // A huge one is capped.
        assert_eq!(default_max_connections(1 << 20, 4), 16_384);
        assert_eq!(default_max_connections(u64::MAX, 4), 16_384);
        assert_eq!(default_max_connections(1, 4), 1);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_soft_limit().unwrap();
        assert!(limit.now >= limit.before);
        let mut now = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) }, 0);
        assert_eq!(now.rlim_cur, now.rlim_max);
    }
}
