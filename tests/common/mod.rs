//! Test harness: builds the guest fixtures, starts the real `wcgi` binary on a free loopback
//! port, and talks HTTP to it.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod registry;
pub mod wordpress;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// A cache directory for this test process, so tests never touch the user's cache.
pub fn test_cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir"))
        .path()
}

/// How long a server may take to compile its module and start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds a Cargo project for wasm32-wasip1 in release mode, once per test process.
fn build_wasm_project(dir: &Path) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--release",
            "--target",
            "wasm32-wasip1",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(dir.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cannot run cargo");
    assert!(
        status.success(),
        "building {} failed; is the target installed? (rustup target add wasm32-wasip1)",
        dir.display()
    );
}

/// Path of a fixture guest from `fixtures/src/bin/NAME.rs`.
pub fn fixture(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = repo_root().join("fixtures");
    BUILT.get_or_init(|| build_wasm_project(&dir));
    let path = dir.join(format!("target/wasm32-wasip1/release/{name}.wasm"));
    assert!(path.is_file(), "no fixture {}", path.display());
    path
}

/// The `examples/hello` package directory, with its module built.
pub fn hello_example() -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    let dir = repo_root().join("examples/hello");
    BUILT.get_or_init(|| build_wasm_project(&dir));
    dir
}

/// The python interpreter package directory made by `interpreters/python/build.sh` (built from
/// pinned sources once, cached outside the work tree; `scripts/test` builds it up front).
pub fn python_interpreter() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| interpreter_package("interpreters/python/build.sh"))
        .clone()
}

/// The php-cgi interpreter package directory made by `interpreters/php/build.sh` (built from
/// pinned sources once, cached outside the work tree; `scripts/test` builds it up front).
pub fn php_interpreter() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| interpreter_package("interpreters/php/build.sh"))
        .clone()
}

/// `wcgi new DIR --template TEMPLATE [--interpreter MODULE]`, which must succeed.
pub fn new_project(dir: &Path, template: &str, interpreter: Option<&Path>) {
    let mut args: Vec<std::ffi::OsString> = vec![
        "new".into(),
        dir.into(),
        "--template".into(),
        template.into(),
    ];
    if let Some(module) = interpreter {
        args.extend(["--interpreter".into(), module.into()]);
    }
    let output = run_wcgi(&args);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("Created a {template} project")),
        "{stdout}"
    );
}

/// Skips a test tier whose tools are missing, loudly; fails instead when the tier is listed in
/// `WCGI_REQUIRE_TIERS` (comma-separated: `scripts/test` and `.ci/run` list the tiers whose
/// tools they installed), so a tier that should have run never passes by skipping.
pub fn skip_tier(tier: &str, reason: &str) {
    let required = std::env::var("WCGI_REQUIRE_TIERS").unwrap_or_default();
    if required.split(',').any(|name| name.trim() == tier) {
        panic!("the {tier} tier is required (WCGI_REQUIRE_TIERS={required}) but {reason}");
    }
    eprintln!("\n*** SKIPPED: the {tier} tier does not run: {reason} ***\n");
}

/// An executable called `name` in a directory of `$PATH`, as the shell's `command -v` finds it.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// Runs a script that prints the directory of the interpreter package it made or reused.
fn interpreter_package(script: &str) -> PathBuf {
    let output = Command::new(repo_root().join(script))
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {script}: {error}"));
    assert!(output.status.success(), "{script} failed");
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// An axum app served on a free loopback port from a thread of its own, until the returned
/// sender is dropped or fired.
pub fn serve_in_background(
    app: axum::Router,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (address_tx, address_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            address_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    (address_rx.recv().unwrap(), stop_tx)
}

/// A temporary package directory holding `wasmer.toml` with the given text.
pub fn package_dir(manifest: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("wasmer.toml"), manifest).expect("write wasmer.toml");
    dir
}

/// A package directory whose one command `command` runs the fixture `fixture`; `rest` is
/// appended to its wasmer.toml (annotations, `[fs]`).
pub fn fixture_package(fixture_name: &str, command: &str, rest: &str) -> tempfile::TempDir {
    package_dir(&format!(
        "[package]\nname = \"test/{command}\"\nversion = \"0.1.0\"\n\n\
         [[module]]\nname = \"{fixture_name}\"\nsource = \"{wasm}\"\nabi = \"wasi\"\n\n\
         [[command]]\nname = \"{command}\"\nmodule = \"{fixture_name}\"\nrunner = \"wcgi\"\n\n\
         {rest}",
        wasm = fixture(fixture_name).display()
    ))
}

/// How many instances of the `tally` fixture ran with `/tally` mapped to `tally`.
pub fn tally_runs(tally: &Path) -> usize {
    std::fs::read_to_string(tally.join("runs"))
        .map(|runs| runs.lines().count())
        .unwrap_or(0)
}

/// A blocking HTTP client that does not follow redirects.
pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

/// GET / and a POSTed form field, against a served project; returns the page the POST got.
pub fn check_served(server: &Server, greeting: &str) -> String {
    let (status, page) = server.get_text("/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(greeting), "{page}");
    let response = client()
        .post(server.url("/"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("name=Ada+Lovelace%21")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().unwrap();
    assert!(
        page.contains("Ada Lovelace!") || page.contains("name=Ada+Lovelace%21"),
        "{page}"
    );
    page
}

/// `count` GETs of `url` at once, each from a thread of its own; join for (status, body).
pub fn spawn_gets(url: &str, count: usize) -> Vec<std::thread::JoinHandle<(u16, String)>> {
    (0..count)
        .map(|_| {
            let url = url.to_string();
            std::thread::spawn(move || {
                let response = client().get(&url).send().unwrap();
                (response.status().as_u16(), response.text().unwrap())
            })
        })
        .collect()
}

/// A running `wcgi run` process; killed when dropped.
pub struct Server {
    child: Child,
    pub base_url: String,
    pub port: u16,
    logs: Arc<Mutex<String>>,
}

impl Server {
    /// Starts `wcgi run --addr 127.0.0.1:0 ARGS...` and waits for its banner.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Server {
        Server::start_with_log_level(args, "info")
    }

    /// Like `start`, with another `WCGI_LOG` filter.
    pub fn start_with_log_level<S: AsRef<std::ffi::OsStr>>(args: &[S], log_level: &str) -> Server {
        Server::spawn(&["--addr", "127.0.0.1:0"], args, log_level, |_| {})
    }

    /// Starts `wcgi run ARGS...` without `--addr`: on the default address.
    pub fn start_on_the_default_address<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Server {
        Server::spawn(&[], args, "info", |_| {})
    }

    /// Like `start`, with the server's open-file limit (soft and hard) set to `limit`, as
    /// `ulimit -n` would for a service.
    pub fn start_with_open_file_limit<S: AsRef<std::ffi::OsStr>>(args: &[S], limit: u64) -> Server {
        Server::spawn(&["--addr", "127.0.0.1:0"], args, "info", |command| {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit, which is async-signal-safe, runs between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rlimit = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        })
    }

    fn spawn<S: AsRef<std::ffi::OsStr>>(
        address: &[&str],
        args: &[S],
        log_level: &str,
        configure: impl FnOnce(&mut Command),
    ) -> Server {
        let mut command = wcgi_command();
        command
            .arg("run")
            .args(address)
            .args(args)
            .env("WCGI_LOG", log_level);
        configure(&mut command);
        let mut child = command.spawn().expect("cannot start wcgi");

        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });

        let stdout = child.stdout.take().expect("stdout");
        let (banner_tx, banner_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = banner_tx.send(line);
            }
            for _ in lines {}
        });
        let banner = match banner_rx.recv_timeout(STARTUP_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("wcgi did not start; its log:\n{}", logs.lock().unwrap());
            }
        };
        let base_url = banner
            .split(" on ")
            .last()
            .filter(|url| url.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected banner: {banner}"))
            .to_string();
        let port = base_url.rsplit(':').next().unwrap().parse().expect("port");
        assert!(
            banner.starts_with("Serving "),
            "unexpected banner: {banner}"
        );
        Server {
            child,
            base_url,
            port,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        client().get(self.url(path)).send().expect("GET failed")
    }

    pub fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.get(path);
        let status = response.status().as_u16();
        (status, response.text().expect("body"))
    }

    /// Whether the log gets a line containing `needle` within a few seconds (the log is read
    /// on another thread, so a line written just before a response may arrive just after).
    pub fn log_contains(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's log so far (stderr).
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the server has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).expect("stat");
        // Fields after the command name (which may contain spaces) start after the last ')'.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
    }

    /// Resident memory of the server, in bytes.
    pub fn rss(&self) -> u64 {
        self.memory_status("VmRSS:")
    }

    /// The most resident memory the server has had so far, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.memory_status("VmHWM:")
    }

    fn memory_status(&self, field: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"));
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit; returns its status.
    pub fn terminate(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.stop_with(libc::SIGTERM, limit)
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits (at most `limit`) for the process to exit.
    pub fn interrupt(&mut self, limit: Duration) -> std::process::ExitStatus {
        self.stop_with(libc::SIGINT, limit)
    }

    fn stop_with(&mut self, signal: libc::c_int, limit: Duration) -> std::process::ExitStatus {
        send_signal(self.pid(), signal);
        self.wait_for_exit(limit)
    }

    /// Waits (at most `limit`) for the process to exit; returns its status.
    pub fn wait_for_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "wcgi did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The `/metrics` URL of `--metrics-addr`, as the server logged it at start-up.
    pub fn metrics_url(&self) -> String {
        wait_for_log_count(self, "metrics on http://", 1);
        let logs = self.logs();
        let start = logs.find("metrics on http://").unwrap() + "metrics on ".len();
        logs[start..].split_whitespace().next().unwrap().to_string()
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `wcgi` binary under test, with piped output and this process's cache directory.
fn wcgi_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wcgi"));
    command
        .env("WCGI_CACHE_DIR", test_cache_dir())
        // Nothing from the developer's own setup may leak into tests.
        .env("WASMER_DIR", test_cache_dir().join("no-wasmer-dir"))
        .env_remove("WCGI_TOKEN")
        .env_remove("WASMER_TOKEN")
        .env_remove("WCGI_REGISTRY")
        .env_remove("WASMER_REGISTRY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs `wcgi ARGS...` to completion (it must exit within a minute).
pub fn run_wcgi<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    run_wcgi_with_env(args, &[])
}

/// Like `run_wcgi`, with extra environment variables.
pub fn run_wcgi_with_env<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &std::ffi::OsStr)],
) -> Output {
    let mut command = wcgi_command();
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn().expect("cannot start wcgi");
    let pid = child.id();
    // `wait_with_output` reads stdout and stderr together while waiting, so a child writing
    // more than a pipe holds (64 KiB) never blocks; the deadline is kept from this thread.
    let (output_tx, output_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = output_tx.send(child.wait_with_output());
    });
    match output_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(output) => output.expect("output"),
        Err(_) => {
            send_signal(pid, libc::SIGKILL);
            panic!(
                "wcgi {:?} did not exit within a minute",
                args.iter()
                    .map(|a| a.as_ref().to_owned())
                    .collect::<Vec<_>>()
            );
        }
    }
}

/// Sends `signal` to process `pid` directly (no `kill` binary needed).
pub fn send_signal(pid: u32, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(pid).expect("pid");
    // SAFETY: kill(2) only reads its two integer arguments.
    let result = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        result,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// Waits (at most 10 s) until the server's log holds `needle` at least `count` times, e.g.
/// until that many guests said they are running; fails with the log otherwise.
pub fn wait_for_log_count(server: &Server, needle: &str, count: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while server.logs().matches(needle).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "the log never showed {needle:?} {count} times:\n{}",
            server.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `wcgi pack DIR -o OUTPUT --webc-version VERSION`, which must succeed; returns its stdout.
pub fn pack(dir: &Path, output: &Path, webc_version: &str) -> String {
    let result = run_wcgi(&[
        "pack".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        output.as_os_str(),
        "--webc-version".as_ref(),
        webc_version.as_ref(),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8_lossy(&result.stdout).into_owned()
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}

/// Reads a response's body fully, returning what arrived and whether it ended cleanly.
pub fn read_body(mut response: reqwest::blocking::Response) -> (Vec<u8>, bool) {
    let mut body = Vec::new();
    let clean = response.read_to_end(&mut body).is_ok();
    (body, clean)
}

/// Sends `GET RAW_TARGET` exactly as written (no client-side normalisation of `..` or
/// `%2e`), and returns the status and everything after the head.
pub fn raw_get(port: u16, raw_target: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {raw_target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .expect("read the response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, body.to_string())
}
