//! wcgi against the systems its users would otherwise run, one after the other in one run, on
//! the same guest sources: Wasmer 7.1's WCGI runner, lighttpd + mod_cgi running the guests built
//! natively, and a bare axum hello (the floor). Load from Debian's `wrk` at c=1 and c=16 after a
//! warm-up. Prints req/s, p50/p99, server CPU per request (from `/proc/PID/stat`, children
//! included), peak RSS, threads under load and cold start, then the ratios.
//!
//! Run with `cargo bench --bench peers`; `WCGI_BENCH_BASELINE=/path/to/older/wcgi` adds a row
//! for an earlier build, measured in the same run. Needs `wrk` and `lighttpd` (`apt-get install wrk
//! lighttpd`). Wasmer 7.1 is looked for in `$WCGI_PEERS_DIR` (default `~/.cache/wcgi-peers`);
//! with `WCGI_BENCH_BUILD_PEERS=1` it is built there first (`cargo install wasmer-cli
//! --version =7.1.0`, 30-40 minutes on 2 cores), otherwise its rows are skipped with a message.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use lighttpd::free_port;

const WARM_UP: &str = "2s";
const MEASURE: &str = "5s";
const WASMER_VERSION: &str = "7.1.0";

/// One server under test, however it was started.
struct Running {
    pid: u32,
    port: u16,
    cold_start: Duration,
    /// Kept open while measuring Wasmer, whose accept loop stalls without one
    /// (wasmerio/wasmer#5047).
    _idle: Option<TcpStream>,
    _child: Option<ChildGuard>,
    _lighttpd: Option<lighttpd::Lighttpd>,
    _floor: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Starts one system afresh.
type Starter<'a> = Box<dyn Fn() -> Running + 'a>;

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// system, guest, connections, load, peak RSS, cold start
type Row = (String, &'static str, usize, Load, u64, Duration);

struct Load {
    requests_per_second: f64,
    p50: String,
    p99: String,
    cpu_ms_per_request: f64,
    threads: usize,
}

fn main() {
    for tool in ["wrk", "lighttpd"] {
        if common::find_on_path(tool).is_none() && !Path::new("/usr/sbin/lighttpd").exists() {
            eprintln!("peers: `{tool}` is needed: apt-get install wrk lighttpd");
            std::process::exit(2);
        }
    }
    let natives = build_native_guests();
    let wasmer = wasmer_cli();
    // An earlier wcgi build, to compare before and after in the same run.
    let baseline = std::env::var_os("WCGI_BENCH_BASELINE").map(PathBuf::from);
    let mut rows: Vec<Row> = Vec::new();
    for guest in ["hello", "work"] {
        let wasm = common::fixture(guest);
        let mut systems: Vec<(&str, Starter)> = vec![
            (
                "wcgi",
                Box::new(|| start_wcgi(Path::new(env!("CARGO_BIN_EXE_wcgi")), &wasm)),
            ),
            (
                "lighttpd native CGI",
                Box::new(|| start_lighttpd(&natives, guest)),
            ),
        ];
        if let Some(baseline) = &baseline {
            systems.insert(
                1,
                ("wcgi baseline", Box::new(|| start_wcgi(baseline, &wasm))),
            );
        }
        if let Some(wasmer) = &wasmer {
            systems.insert(
                1,
                (
                    "Wasmer 7.1 WCGI",
                    Box::new(|| start_wasmer(wasmer, &wasm, guest)),
                ),
            );
        }
        if guest == "hello" {
            systems.push(("axum floor", Box::new(start_floor)));
        }
        for (name, start) in &systems {
            // A first start fills caches (compiled modules); the second is the measured one.
            drop(start());
            let server = start();
            let url = format!("http://127.0.0.1:{}/", server.port);
            wrk(&url, 16, WARM_UP);
            for connections in [1, 16] {
                let load = measure(&server, &url, connections);
                rows.push((
                    name.to_string(),
                    guest,
                    connections,
                    load,
                    peak_rss(server.pid),
                    server.cold_start,
                ));
            }
        }
    }

    println!(
        "{:<20} {:<6} {:>3} {:>9} {:>9} {:>9} {:>11} {:>9} {:>8} {:>11}",
        "system",
        "guest",
        "c",
        "req/s",
        "p50",
        "p99",
        "CPU ms/req",
        "peak RSS",
        "threads",
        "cold start"
    );
    for (name, guest, connections, load, rss, cold) in &rows {
        println!(
            "{name:<20} {guest:<6} {connections:>3} {:>9.0} {:>9} {:>9} {:>11.3} {:>7.1}Mi {:>8} {:>9.1}ms",
            load.requests_per_second,
            load.p50,
            load.p99,
            load.cpu_ms_per_request,
            *rss as f64 / f64::from(1 << 20),
            load.threads,
            cold.as_secs_f64() * 1e3
        );
    }
    let find = |name: &str, guest: &str, connections: usize| {
        rows.iter()
            .find(|row| row.0 == name && row.1 == guest && row.2 == connections)
            .map(|row| &row.3)
    };
    println!();
    for guest in ["hello", "work"] {
        for connections in [1, 16] {
            let Some(ours) = find("wcgi", guest, connections) else {
                continue;
            };
            for peer in [
                "wcgi baseline",
                "Wasmer 7.1 WCGI",
                "lighttpd native CGI",
                "axum floor",
            ] {
                if let Some(theirs) = find(peer, guest, connections) {
                    println!(
                        "{guest} c={connections}: wcgi/{peer}: throughput {:.2}x, CPU per request {:.2}x",
                        ours.requests_per_second / theirs.requests_per_second,
                        ours.cpu_ms_per_request / theirs.cpu_ms_per_request
                    );
                }
            }
        }
    }
    if wasmer.is_none() {
        println!(
            "Wasmer {WASMER_VERSION}: skipped, not built in {}; set WCGI_BENCH_BUILD_PEERS=1 to build it (30-40 minutes)",
            peers_dir().display()
        );
    }
}

fn peers_dir() -> PathBuf {
    std::env::var_os("WCGI_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| dirs::home_dir().unwrap().join(".cache/wcgi-peers"))
}

/// Wasmer's CLI, built once into the peers cache when asked to.
fn wasmer_cli() -> Option<PathBuf> {
    let root = peers_dir().join(format!("wasmer-{WASMER_VERSION}"));
    let binary = root.join("bin/wasmer");
    if !binary.exists() && std::env::var_os("WCGI_BENCH_BUILD_PEERS").is_some() {
        eprintln!(
            "peers: building Wasmer {WASMER_VERSION} into {} (30-40 minutes)",
            root.display()
        );
        let status = Command::new("cargo")
            .args([
                "install",
                "wasmer-cli",
                "--locked",
                "--features",
                "cranelift",
            ])
            .arg(format!("--version=={WASMER_VERSION}"))
            .arg("--root")
            .arg(&root)
            .arg("--target-dir")
            .arg(peers_dir().join("wasmer-build"))
            .status()
            .expect("cannot run cargo install");
        assert!(status.success(), "building Wasmer {WASMER_VERSION} failed");
    }
    binary.exists().then_some(binary)
}

/// The fixture guests built for this machine, for lighttpd to run as CGI programs.
fn build_native_guests() -> PathBuf {
    let fixtures = common::repo_root().join("fixtures");
    let status = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--quiet",
            "--bin",
            "hello",
            "--bin",
            "work",
        ])
        .arg("--manifest-path")
        .arg(fixtures.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(fixtures.join("target"))
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("cannot run cargo");
    assert!(status.success(), "building the native guests failed");
    let docroot = tempfile::tempdir().unwrap().keep();
    for guest in ["hello", "work"] {
        std::fs::copy(
            fixtures.join(format!("target/release/{guest}")),
            docroot.join(format!("{guest}.cgi")),
        )
        .unwrap();
    }
    docroot
}

/// Starts `command` on `port` and times it to its first 200.
fn spawn_and_wait(mut command: Command, port: u16, path: &str) -> (ChildGuard, Duration) {
    let started = Instant::now();
    let child = ChildGuard(
        command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start the server"),
    );
    let cold_start = wait_for_200(port, path, started);
    (child, cold_start)
}

fn wait_for_200(port: u16, path: &str, started: Instant) -> Duration {
    use std::io::{Read, Write};
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no 200 on port {port}"
        );
        if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
            );
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            if answer.starts_with(b"HTTP/1.1 200") {
                return started.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn start_wcgi(binary: &Path, wasm: &Path) -> Running {
    let port = free_port();
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg(wasm)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn");
    let (child, cold_start) = spawn_and_wait(command, port, "/");
    Running {
        pid: child.0.id(),
        port,
        cold_start,
        _idle: None,
        _child: Some(child),
        _lighttpd: None,
        _floor: None,
    }
}

fn start_wasmer(wasmer: &Path, wasm: &Path, guest: &str) -> Running {
    let package = tempfile::tempdir().unwrap().keep();
    std::fs::copy(wasm, package.join(format!("{guest}.wasm"))).unwrap();
    std::fs::write(
        package.join("wasmer.toml"),
        format!(
            "[package]\nname = \"bench/{guest}\"\nversion = \"0.1.0\"\n\n\
             [[module]]\nname = \"{guest}\"\nsource = \"{guest}.wasm\"\nabi = \"wasi\"\n\n\
             [[command]]\nname = \"{guest}\"\nmodule = \"{guest}\"\n\
             runner = \"https://webc.org/runner/wcgi\"\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let mut command = Command::new(wasmer);
    command
        .arg("run")
        .arg(&package)
        .arg("--addr")
        .arg(format!("127.0.0.1:{port}"));
    let (child, cold_start) = spawn_and_wait(command, port, "/");
    let idle = TcpStream::connect(("127.0.0.1", port)).ok();
    Running {
        pid: child.0.id(),
        port,
        cold_start,
        _idle: idle,
        _child: Some(child),
        _lighttpd: None,
        _floor: None,
    }
}

fn start_lighttpd(docroot: &Path, guest: &str) -> Running {
    let started = Instant::now();
    // `"" =>` runs the file itself; `index-file` maps `/` to the guest, as the others serve it.
    let server = lighttpd::Lighttpd::start(
        docroot,
        &[(".cgi", Path::new(""))],
        &["mod_indexfile"],
        &format!("index-file.names = (\"{guest}.cgi\")"),
    );
    let cold_start = wait_for_200(server.port, "/", started);
    Running {
        pid: server.pid(),
        port: server.port,
        cold_start,
        _idle: None,
        _child: None,
        _lighttpd: Some(server),
        _floor: None,
    }
}

fn start_floor() -> Running {
    let started = Instant::now();
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "text/plain")],
            "Hello from WebAssembly!\n",
        )
    });
    let (address, stop) = common::serve_in_background(app);
    let cold_start = wait_for_200(address.port(), "/", started);
    Running {
        pid: std::process::id(),
        port: address.port(),
        cold_start,
        _idle: None,
        _child: None,
        _lighttpd: None,
        _floor: Some(stop),
    }
}

/// Runs wrk; returns its output.
fn wrk(url: &str, connections: usize, duration: &str) -> String {
    let threads = connections.min(2).to_string();
    let output = Command::new("wrk")
        .args([
            "--latency",
            "-t",
            &threads,
            "-c",
            &connections.to_string(),
            "-d",
            duration,
            url,
        ])
        .output()
        .expect("cannot run wrk");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn measure(server: &Running, url: &str, connections: usize) -> Load {
    let cpu_before = cpu_ticks(server.pid);
    let threads = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let sampler = {
        let threads = threads.clone();
        let pid = server.pid;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(2));
            threads.store(thread_count(pid), std::sync::atomic::Ordering::Relaxed);
        })
    };
    let output = wrk(url, connections, MEASURE);
    sampler.join().unwrap();
    let cpu = cpu_ticks(server.pid) - cpu_before;
    let requests: f64 = field(&output, "requests in", 0).parse().unwrap_or(0.0);
    let non_2xx: f64 = field(&output, "Non-2xx", 3).parse().unwrap_or(0.0);
    assert!(
        requests > 0.0,
        "no requests completed against {url}:\n{output}"
    );
    assert!(
        non_2xx == 0.0,
        "{non_2xx} failed requests against {url}:\n{output}"
    );
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Load {
        requests_per_second: field(&output, "Requests/sec", 1).parse().unwrap_or(0.0),
        p50: latency(&output, "50%"),
        p99: latency(&output, "99%"),
        cpu_ms_per_request: cpu as f64 / ticks_per_second * 1e3 / requests,
        threads: threads.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// Word `index` of the first line of wrk's output containing `label`.
fn field(output: &str, label: &str, index: usize) -> String {
    output
        .lines()
        .find(|line| line.contains(label))
        .and_then(|line| line.split_whitespace().nth(index))
        .unwrap_or("")
        .to_string()
}

fn latency(output: &str, percentile: &str) -> String {
    output
        .lines()
        .find(|line| line.trim_start().starts_with(percentile))
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("?")
        .to_string()
}

/// User + system time of the process and its waited-for children, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14-17 of the whole line.
    (11..15)
        .filter_map(|index| fields.get(index)?.parse::<u64>().ok())
        .sum()
}

fn thread_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |tasks| tasks.count())
}

fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}
