//! PHP-FPM with OPcache as a PHP host runs it, for benchmarks: Debian's `php-fpm8.2` master in
//! the foreground with its own configuration in a temporary directory, a static pool of two
//! workers on a unix socket there, Debian's php.ini with OPcache settings a default host has.
//! lighttpd's mod_fastcgi hands it the requests (`Lighttpd::start_fastcgi`).
#![allow(dead_code)] // each benchmark uses a different part

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What to install when `binary()` finds nothing or OPcache is not loaded.
pub const INSTALL: &str = "apt-get install php8.2-fpm php8.2-opcache php8.2-sqlite3 lighttpd";

/// Debian's php.ini for FPM: php.ini-production, the same file Debian installs for php-cgi
/// (`/etc/php/8.2/cgi/php.ini`), so the FPM and php-cgi rows run the same settings.
pub const DEBIAN_PHP_INI: &str = "/etc/php/8.2/fpm/php.ini";

/// OPcache as a default host has it: on, each file's timestamp checked at most every 2 s,
/// 128 MiB of shared memory (PHP's defaults, written out so the row does not depend on them).
const OPCACHE_SETTINGS: &str = "\n; OPcache, as a default PHP host has it\nopcache.enable = 1\n\
     opcache.validate_timestamps = 1\nopcache.revalidate_freq = 2\nopcache.memory_consumption = 128\n";

/// Debian's php-fpm, if installed (not a version manager's shim).
pub fn binary() -> Option<PathBuf> {
    ["/usr/sbin/php-fpm8.2"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
}

/// A running php-fpm master and its workers; all stopped when dropped.
pub struct PhpFpm {
    master: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl PhpFpm {
    /// Starts `binary` with Debian's php.ini plus OPcache, its workers' environment holding
    /// `env` (PHP's `getenv()` reads the workers' own environment, not the FastCGI parameters
    /// lighttpd's setenv adds). Fails with what to install when OPcache or one of
    /// `extensions` (as `php -m` names them) is not loaded.
    pub fn start(
        binary: &Path,
        extensions: &[&str],
        env: &[(&str, &str)],
    ) -> Result<PhpFpm, String> {
        let dir = tempfile::tempdir().unwrap();
        let php_ini = dir.path().join("php.ini");
        let socket = dir.path().join("php-fpm.sock");
        let log = dir.path().join("php-fpm.log");
        let base = std::fs::read_to_string(DEBIAN_PHP_INI).unwrap_or_default();
        std::fs::write(&php_ini, base + OPCACHE_SETTINGS).unwrap();

        // `-c FILE` replaces php.ini only: the extensions still come from Debian's conf.d.
        let modules = Command::new(binary)
            .arg("-c")
            .arg(&php_ini)
            .arg("-m")
            .output()
            .map_err(|error| format!("cannot run {}: {error}", binary.display()))?;
        let modules = String::from_utf8_lossy(&modules.stdout);
        for needed in ["Zend OPcache"].iter().chain(extensions) {
            if !modules.lines().any(|line| line.trim() == *needed) {
                return Err(format!("{} has no {needed}", binary.display()));
            }
        }

        // As root, php-fpm wants its workers to run as root said twice: `user = root` and -R.
        let root = unsafe { libc::geteuid() } == 0;
        let mut pool = format!(
            "[global]\nerror_log = {log}\ndaemonize = no\n\n\
             [bench]\nlisten = {socket}\npm = static\npm.max_children = 2\n",
            log = log.display(),
            socket = socket.display()
        );
        if root {
            pool.push_str("user = root\ngroup = root\n");
        }
        for (name, value) in env {
            pool.push_str(&format!("env[{name}] = {value}\n"));
        }
        let config = dir.path().join("php-fpm.conf");
        std::fs::write(&config, pool).unwrap();

        let mut command = Command::new(binary);
        command
            .arg("--nodaemonize")
            .arg("--fpm-config")
            .arg(&config)
            .arg("-c")
            .arg(&php_ini)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group, so that dropping it stops the workers too.
            .process_group(0);
        if root {
            command.arg("--allow-to-run-as-root");
        }
        // SAFETY: only prctl, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // Outside the terminal's process group, Ctrl-C would not reach the master:
                // it gets SIGTERM (and stops its workers) when the thread that started it,
                // the benchmark's main thread, ends instead.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let master = command
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", binary.display()))?;
        let mut fpm = PhpFpm {
            master,
            socket,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::os::unix::net::UnixStream::connect(&fpm.socket).is_err() {
            let exited = fpm.master.try_wait().unwrap().is_some();
            if exited || Instant::now() > deadline {
                return Err(format!(
                    "php-fpm did not start; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(fpm)
    }

    /// The unix socket the pool listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The master's log (start-up, workers that died).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("php-fpm.log")).unwrap_or_default()
    }
}

impl Drop for PhpFpm {
    fn drop(&mut self) {
        let group = -libc::pid_t::try_from(self.master.id()).unwrap();
        // SIGTERM: the master stops its workers and exits; whatever is left of the group
        // after that (or after 5 s) is killed.
        // SAFETY: kill(2) only reads its two integer arguments.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.master.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above.
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.master.wait();
    }
}
