//! Native baselines for benchmarks: Debian's lighttpd on a free loopback port, running Debian's
//! own interpreters through mod_cgi, or handing PHP to a PHP-FPM pool through mod_fastcgi.
#![allow(dead_code)] // each benchmark uses a different part

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running lighttpd; stopped when dropped.
pub struct Lighttpd {
    child: Child,
    pub port: u16,
    /// Its configuration, removed after it stops.
    _config_dir: tempfile::TempDir,
}

impl Drop for Lighttpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Lighttpd {
    /// Serves `docroot`, running files with the given extensions (`".php"`) through their
    /// interpreters; `extra_config` is appended to the configuration (modules it needs
    /// beyond mod_cgi go in `extra_modules`).
    pub fn start(
        docroot: &Path,
        interpreters: &[(&str, &Path)],
        extra_modules: &[&str],
        extra_config: &str,
    ) -> Lighttpd {
        let assignments: Vec<String> = interpreters
            .iter()
            .map(|(extension, binary)| format!("\"{extension}\" => \"{}\"", binary.display()))
            .collect();
        Lighttpd::launch(
            docroot,
            "mod_cgi",
            &format!("cgi.assign = ({})", assignments.join(", ")),
            extra_modules,
            extra_config,
        )
    }

    /// Serves `docroot`, handing files ending in `extension` (`".php"`) to the FastCGI server
    /// listening on the unix socket `socket` (a PHP-FPM pool) through mod_fastcgi, as a PHP
    /// host would; otherwise like `start`.
    pub fn start_fastcgi(
        docroot: &Path,
        extension: &str,
        socket: &Path,
        extra_modules: &[&str],
        extra_config: &str,
    ) -> Lighttpd {
        // check-local: lighttpd answers 404 itself for scripts that are not in the docroot,
        // and sets SCRIPT_FILENAME from the docroot, which PHP-FPM runs.
        Lighttpd::launch(
            docroot,
            "mod_fastcgi",
            &format!(
                "fastcgi.server = (\"{extension}\" => ((\"socket\" => \"{}\", \"check-local\" => \"enable\")))",
                socket.display()
            ),
            extra_modules,
            extra_config,
        )
    }

    /// Starts lighttpd with `handler_module` and its configuration, and waits until it listens.
    fn launch(
        docroot: &Path,
        handler_module: &str,
        handler_config: &str,
        extra_modules: &[&str],
        extra_config: &str,
    ) -> Lighttpd {
        let port = free_port();
        // Modules that map URLs (mod_indexfile, mod_setenv...) go before the one that runs
        // scripts (mod_cgi, mod_fastcgi).
        let modules: Vec<String> = extra_modules
            .iter()
            .chain(&[handler_module])
            .map(|module| format!("\"{module}\""))
            .collect();
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("lighttpd.conf");
        std::fs::write(
            &config,
            format!(
                "server.document-root = \"{}\"\nserver.port = {port}\nserver.bind = \"127.0.0.1\"\n\
                 server.modules = ({})\n{handler_config}\n{extra_config}\n",
                docroot.display(),
                modules.join(", "),
            ),
        )
        .unwrap();
        let binary = lighttpd_binary().unwrap_or_else(|| PathBuf::from("lighttpd"));
        let mut command = Command::new(binary);
        command
            .args(["-D", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: only prctl, which is async-signal-safe, runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // A benchmark killed outside the terminal (no Ctrl-C to the whole group) does
                // not run Drop: lighttpd gets SIGTERM when the thread that started it ends.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .expect("lighttpd is needed for this benchmark: apt-get install lighttpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "lighttpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Lighttpd {
            child,
            port,
            _config_dir: config_dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Debian's own binary, not a version manager's shim (which would add a shell per request).
pub fn installed(candidates: &[&str]) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
}

/// The lighttpd to run: the one on `$PATH`, else Debian's in `/usr/sbin` (which a user's
/// `$PATH` may lack).
pub fn lighttpd_binary() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("lighttpd"))
                .find(|candidate| candidate.is_file())
        })
        .or_else(|| installed(&["/usr/sbin/lighttpd"]))
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
