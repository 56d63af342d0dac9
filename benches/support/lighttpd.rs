//! Native baselines for benchmarks: Debian's lighttpd with mod_cgi on a free loopback port,
//! running Debian's own interpreters.
#![allow(dead_code)] // each benchmark uses a different part

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running lighttpd; stopped when dropped.
pub struct Lighttpd {
    child: Child,
    pub port: u16,
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
        let port = free_port();
        let assignments: Vec<String> = interpreters
            .iter()
            .map(|(extension, binary)| format!("\"{extension}\" => \"{}\"", binary.display()))
            .collect();
        // Modules that map URLs (mod_indexfile, mod_fastcgi...) go before mod_cgi.
        let modules: Vec<String> = extra_modules
            .iter()
            .chain(&["mod_cgi"])
            .map(|module| format!("\"{module}\""))
            .collect();
        let config_dir = tempfile::tempdir().unwrap().keep();
        let config = config_dir.join("lighttpd.conf");
        std::fs::write(
            &config,
            format!(
                "server.document-root = \"{}\"\nserver.port = {port}\nserver.bind = \"127.0.0.1\"\n\
                 server.modules = ({})\ncgi.assign = ({})\n{extra_config}\n",
                docroot.display(),
                modules.join(", "),
                assignments.join(", ")
            ),
        )
        .unwrap();
        let child = Command::new("lighttpd")
            .args(["-D", "-f"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lighttpd is needed for this benchmark: apt-get install lighttpd");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "lighttpd did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Lighttpd { child, port }
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

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
