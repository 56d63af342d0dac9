//! Replicas behind a real load balancer, on loopback: three `wcgi` processes serving the
//! CPU-bound `work` guest behind Debian's haproxy, which health-checks `--health-path`.
//! Under a steady load of 32 connections it measures:
//!
//! 1. a rolling restart: each replica in turn gets SIGTERM (its health path turns 503 for the
//!    `--shutdown-delay`, haproxy takes it out, it drains and exits) and is started again;
//!    failed requests, target 0;
//! 2. one replica killed with SIGKILL, then started again: failed requests, which should be
//!    only those it had in flight (haproxy retries connection failures elsewhere);
//! 3. throughput through haproxy with 1, 2 and 3 replicas, each replica pinned to one core
//!    with `taskset` and given one instance slot, so that the figure means something here.
//!
//! Bounded: a few seconds a phase. Needs haproxy and taskset (`apt-get install haproxy`).
//! Run with `cargo bench --bench replicas`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lighttpd::free_port;

const CONNECTIONS: usize = 32;
const SHUTDOWN_DELAY: &str = "1500ms";
const THROUGHPUT_WINDOW: Duration = Duration::from_secs(4);

/// One `wcgi run` replica on a fixed port (kept across restarts), pinned to `core`.
struct Replica {
    port: u16,
    core: usize,
    child: Option<Child>,
}

impl Replica {
    fn start(port: u16, core: usize) -> Replica {
        let mut replica = Replica {
            port,
            core,
            child: None,
        };
        replica.spawn();
        replica
    }

    fn spawn(&mut self) {
        let mut child = Command::new("taskset")
            .arg("-c")
            .arg(self.core.to_string())
            .arg(env!("CARGO_BIN_EXE_wcgi"))
            .arg("run")
            .arg(common::fixture("work"))
            .args(["--addr", &format!("127.0.0.1:{}", self.port)])
            .args(["--health-path", "/healthz"])
            .args(["--shutdown-delay", SHUTDOWN_DELAY])
            .args(["--shutdown-grace", "5s"])
            .args(["--max-concurrency", "1", "--max-queue", "256"])
            .env("WCGI_CACHE_DIR", common::test_cache_dir())
            .env("WCGI_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start wcgi under taskset");
        // The banner says it listens.
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut banner)
            .unwrap();
        assert!(banner.starts_with("Serving"), "replica: {banner:?}");
        self.child = Some(child);
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(&mut self) -> Duration {
        let started = Instant::now();
        common::send_signal(self.pid(), libc::SIGTERM);
        let status = self.child.take().unwrap().wait().unwrap();
        assert!(status.success(), "replica exited with {status:?}");
        started.elapsed()
    }

    fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        let _ = child.wait();
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// haproxy in front of `ports`, health-checking `/healthz` every 100 ms.
struct Balancer {
    port: u16,
    child: Child,
    _config: tempfile::TempDir,
}

impl Balancer {
    fn start(haproxy: &Path, ports: &[u16]) -> Balancer {
        let port = free_port();
        let servers: String = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("    server r{i} 127.0.0.1:{p} check\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 4096\n\
             defaults\n    mode http\n    timeout connect 1s\n    timeout client 30s\n\
             \x20   timeout server 30s\n    retries 3\n    option redispatch\n\
             frontend site\n    bind 127.0.0.1:{port}\n    default_backend replicas\n\
             backend replicas\n    balance roundrobin\n    option httpchk GET /healthz\n\
             \x20   http-check expect status 200\n\
             \x20   default-server inter 100ms fall 1 rise 2\n{servers}"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start haproxy");
        let balancer = Balancer {
            port,
            child,
            _config: dir,
        };
        // Up when every server passed its first checks and a request goes through.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = common::client()
                .get(balancer.url())
                .send()
                .is_ok_and(|r| r.status() == 200);
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "haproxy never served a request");
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(500));
        balancer
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 32 keep-alive clients requesting as fast as they are answered.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<std::sync::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let threads = (0..CONNECTIONS)
            .map(|_| {
                let (stop, ok, failed, failures) =
                    (stop.clone(), ok.clone(), failed.clone(), failures.clone());
                let url = url.to_string();
                std::thread::spawn(move || {
                    let http = common::client();
                    while !stop.load(Ordering::Relaxed) {
                        let outcome =
                            http.get(&url)
                                .send()
                                .map_err(|e| e.to_string())
                                .and_then(|r| {
                                    let status = r.status();
                                    let body = r.text().map_err(|e| e.to_string())?;
                                    if status == 200 && body.starts_with("work done") {
                                        Ok(())
                                    } else {
                                        Err(format!("{status}: {body:.60}"))
                                    }
                                });
                        match outcome {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(why) => {
                                failures.lock().unwrap().push(why);
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            failures,
            threads,
        }
    }

    /// `(answered, failed)` so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }

    fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

fn haproxy_binary() -> Option<PathBuf> {
    common::find_on_path("haproxy").or_else(|| {
        let sbin = PathBuf::from("/usr/sbin/haproxy");
        sbin.is_file().then_some(sbin)
    })
}

fn summary(failures: &[String]) -> String {
    let mut distinct: Vec<&String> = failures.iter().collect();
    distinct.sort();
    distinct.dedup();
    distinct
        .iter()
        .take(3)
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

fn main() {
    let Some(haproxy) = haproxy_binary() else {
        eprintln!(
            "replicas: haproxy is not installed (apt-get install haproxy); nothing to measure"
        );
        return;
    };
    if common::find_on_path("taskset").is_none() {
        eprintln!("replicas: taskset is not installed (util-linux); nothing to measure");
        return;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut replicas: Vec<Replica> = (0..3)
        .map(|i| Replica::start(free_port(), i % cores))
        .collect();
    let ports: Vec<u16> = replicas.iter().map(|r| r.port).collect();
    println!(
        "3 wcgi replicas of the `work` guest (about 1 ms of CPU a request; one instance slot \
         each, pinned to cores {:?}) behind haproxy {}, {CONNECTIONS} connections",
        replicas.iter().map(|r| r.core).collect::<Vec<_>>(),
        haproxy.display()
    );

    // 1. Rolling restart.
    let balancer = Balancer::start(&haproxy, &ports);
    let load = Load::start(&balancer.url());
    std::thread::sleep(Duration::from_secs(1));
    let mut drains = Vec::new();
    for replica in &mut replicas {
        drains.push(replica.terminate());
        replica.spawn();
        // Back in haproxy's rotation after two good checks.
        std::thread::sleep(Duration::from_millis(600));
    }
    std::thread::sleep(Duration::from_millis(500));
    let (answered, _) = load.counts();
    let failures = load.stop();
    println!(
        "rolling restart (SIGTERM, drain, start again, each of 3): {} failed of {} requests \
         (target 0); each replica exited {:.1?} to {:.1?} after SIGTERM \
         (--shutdown-delay {SHUTDOWN_DELAY}){}",
        failures.len(),
        answered + failures.len() as u64,
        drains.iter().min().unwrap(),
        drains.iter().max().unwrap(),
        if failures.is_empty() {
            String::new()
        } else {
            format!(": {}", summary(&failures))
        }
    );

    // 2. SIGKILL one replica, then start it again.
    let load = Load::start(&balancer.url());
    std::thread::sleep(Duration::from_secs(1));
    replicas[1].kill();
    std::thread::sleep(Duration::from_secs(1));
    replicas[1].spawn();
    std::thread::sleep(Duration::from_secs(1));
    let (answered, _) = load.counts();
    let failures = load.stop();
    println!(
        "one replica killed (SIGKILL) and started again: {} failed of {} requests (only its \
         in-flight ones should fail: one instance slot, plus what waited in its queue){}",
        failures.len(),
        answered + failures.len() as u64,
        if failures.is_empty() {
            String::new()
        } else {
            format!(": {}", summary(&failures))
        }
    );
    drop(balancer);

    // 3. Throughput with 1, 2 and 3 replicas.
    let mut rates = Vec::new();
    for count in 1..=3 {
        let balancer = Balancer::start(&haproxy, &ports[..count]);
        let load = Load::start(&balancer.url());
        std::thread::sleep(Duration::from_secs(1));
        let (before, _) = load.counts();
        let started = Instant::now();
        std::thread::sleep(THROUGHPUT_WINDOW);
        let (after, _) = load.counts();
        let rate = (after - before) as f64 / started.elapsed().as_secs_f64();
        let failures = load.stop();
        assert!(failures.is_empty(), "{}", summary(&failures));
        rates.push(rate);
    }
    println!(
        "throughput through haproxy: 1 replica {:.0} req/s, 2 replicas {:.0} req/s ({:.2}×), 3 \
         replicas {:.0} req/s ({:.2}×) on {cores} cores (the load generator and haproxy share \
         them)",
        rates[0],
        rates[1],
        rates[1] / rates[0],
        rates[2],
        rates[2] / rates[0]
    );
}
