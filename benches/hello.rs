//! Per-request cost of wcgi against a baseline measured in the same run: a bare axum server
//! answering the same hello text from Rust code, on the same loopback, with the same client.
//! Prints medians, throughput and the ratios. Run with `cargo bench --bench hello`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Server, client, fixture};

const SEQUENTIAL: usize = 2000;
const CONCURRENT_CLIENTS: usize = 8;
const CONCURRENT_EACH: usize = 500;

struct Measurement {
    median: Duration,
    p99: Duration,
    throughput: f64,
}

fn measure(url: &str) -> Measurement {
    let http = client();
    for _ in 0..100 {
        http.get(url).send().unwrap().bytes().unwrap();
    }
    let mut latencies: Vec<Duration> = (0..SEQUENTIAL)
        .map(|_| {
            let started = Instant::now();
            let body = http.get(url).send().unwrap().bytes().unwrap();
            assert_eq!(body.as_ref(), b"Hello from WebAssembly!\n");
            started.elapsed()
        })
        .collect();
    latencies.sort();

    let started = Instant::now();
    let workers: Vec<_> = (0..CONCURRENT_CLIENTS)
        .map(|_| {
            let url = url.to_string();
            std::thread::spawn(move || {
                let http = client();
                for _ in 0..CONCURRENT_EACH {
                    http.get(&url).send().unwrap().bytes().unwrap();
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let throughput =
        (CONCURRENT_CLIENTS * CONCURRENT_EACH) as f64 / started.elapsed().as_secs_f64();
    Measurement {
        median: latencies[SEQUENTIAL / 2],
        p99: latencies[SEQUENTIAL * 99 / 100],
        throughput,
    }
}

/// The baseline: an axum server doing no work but answering the same bytes.
fn start_baseline() -> (String, tokio::sync::oneshot::Sender<()>) {
    let app = axum::Router::new().fallback(|| async {
        (
            [("content-type", "text/plain")],
            "Hello from WebAssembly!\n",
        )
    });
    let (address, stop) = common::serve_in_background(app);
    (format!("http://{address}/"), stop)
}

fn main() {
    let (baseline_url, _baseline) = start_baseline();
    let server = Server::start(&[fixture("hello")]);
    let wcgi_url = server.url("/");

    let baseline = measure(&baseline_url);
    let wcgi = measure(&wcgi_url);
    let rss_mib = server.rss() as f64 / (1 << 20) as f64;

    println!(
        "hello, {SEQUENTIAL} sequential keep-alive requests, then {CONCURRENT_CLIENTS}×{CONCURRENT_EACH} concurrent:"
    );
    for (name, m) in [("axum baseline", &baseline), ("wcgi (wasm)", &wcgi)] {
        println!(
            "  {name:<14} median {:>8.3} ms  p99 {:>8.3} ms  {:>8.0} req/s",
            m.median.as_secs_f64() * 1e3,
            m.p99.as_secs_f64() * 1e3,
            m.throughput
        );
    }
    println!(
        "  ratio wcgi/baseline: median latency {:.1}×, throughput {:.2}×; wcgi RSS {rss_mib:.1} MiB",
        wcgi.median.as_secs_f64() / baseline.median.as_secs_f64(),
        wcgi.throughput / baseline.throughput
    );
}
