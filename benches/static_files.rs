//! Static files through wcgi (`--static`, tower-http, no instance) against lighttpd serving the
//! same directory, measured in the same run with the same client: a 5 KiB stylesheet and a
//! 1 MiB asset, median latency of sequential GETs and throughput with 8 clients.
//! Needs lighttpd (`apt-get install lighttpd`). Run with `cargo bench --bench static_files`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;

use std::time::{Duration, Instant};

use common::{Server, client, fixture, random_bytes};
use lighttpd::Lighttpd;

const SEQUENTIAL: usize = 1000;
const CLIENTS: usize = 8;
const EACH: usize = 250;

/// `(median, requests per second with CLIENTS clients)`.
fn measure(url: &str, expected: &[u8]) -> (Duration, f64) {
    let http = client();
    let fetch = |http: &reqwest::blocking::Client| {
        let body = http.get(url).send().unwrap().bytes().unwrap();
        assert!(body.as_ref() == expected, "{url}: wrong body");
    };
    for _ in 0..50 {
        fetch(&http);
    }
    let mut latencies: Vec<Duration> = (0..SEQUENTIAL)
        .map(|_| {
            let started = Instant::now();
            fetch(&http);
            started.elapsed()
        })
        .collect();
    latencies.sort();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..CLIENTS {
            scope.spawn(|| {
                let http = client();
                for _ in 0..EACH {
                    fetch(&http);
                }
            });
        }
    });
    let throughput = (CLIENTS * EACH) as f64 / started.elapsed().as_secs_f64();
    (latencies[SEQUENTIAL / 2], throughput)
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("site.css", random_bytes(5 * 1024, 1)),
        ("big.bin", random_bytes(1 << 20, 2)),
    ];
    for (name, bytes) in &files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let static_dir = format!("/:{}", dir.path().display());
    let wcgi = Server::start(&[
        fixture("hello").as_os_str(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);
    let native = Lighttpd::start(dir.path(), &[], &[], "");

    println!(
        "static files, {SEQUENTIAL} sequential GETs (median) and {CLIENTS} clients × {EACH} (throughput), same run:"
    );
    for (name, bytes) in &files {
        let (wcgi_median, wcgi_rate) = measure(&wcgi.url(&format!("/{name}")), bytes);
        let (native_median, native_rate) = measure(&native.url(&format!("/{name}")), bytes);
        println!(
            "  {name:<9} wcgi {:>7.3} ms {:>7.0} req/s   lighttpd {:>7.3} ms {:>7.0} req/s   \
             latency ratio {:.2}×, throughput ratio {:.2}×",
            wcgi_median.as_secs_f64() * 1e3,
            wcgi_rate,
            native_median.as_secs_f64() * 1e3,
            native_rate,
            wcgi_median.as_secs_f64() / native_median.as_secs_f64(),
            wcgi_rate / native_rate
        );
    }
}
