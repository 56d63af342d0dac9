//! Soak test: good and hostile requests mixed at concurrency 32 for a fixed time (60 s by
//! default, `SOAK_SECONDS` to change), against the real binary on loopback. Prints counts,
//! latencies and the server's RSS; exits non-zero if any request got a wrong answer (a wrong
//! body, or a status other than the expected one, 503 + Retry-After or 504 after waiting too
//! long for a slot) or the server died. Run with `cargo bench --bench soak`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, client, fixture, random_bytes};

const CLIENTS: usize = 32;

/// (path, share in percent, expected status). Good requests also have their bodies checked.
const MIX: [(&str, u32, u16); 7] = [
    ("/hello", 45, 200),
    ("/echo", 20, 200),
    ("/big", 10, 200),
    ("/garbage", 10, 502),
    ("/trap", 7, 500),
    ("/bomb", 6, 500),
    ("/spin", 2, 504),
];

#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<(&'static str, u16), u64>,
    wrong: Vec<String>,
    good_latencies: Vec<Duration>,
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut server = Server::start(&[
        fixture("mixed").as_os_str(),
        "--timeout".as_ref(),
        "1s".as_ref(),
        "--max-memory".as_ref(),
        "64MiB".as_ref(),
        "--max-queue".as_ref(),
        "256".as_ref(),
    ]);
    let rss_start = server.rss();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();

    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let (tally, stop, base) = (tally.clone(), stop.clone(), server.base_url.clone());
            std::thread::spawn(move || {
                let http = client();
                let mut seed = 0x9e3779b97f4a7c15u64 ^ (worker as u64 + 1);
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut pick = (seed % 100) as u32;
                    let (path, _, expected) = *MIX
                        .iter()
                        .find(|(_, share, _)| {
                            let hit = pick < *share;
                            pick = pick.saturating_sub(*share);
                            hit
                        })
                        .unwrap();
                    sequence += 1;
                    let query = format!("{worker}-{sequence}");
                    let body = if path == "/echo" {
                        random_bytes((seed % 65536) as usize, seed)
                    } else {
                        Vec::new()
                    };
                    let sent = Instant::now();
                    let result = http
                        .post(format!("{base}{path}?{query}"))
                        .body(body.clone())
                        .send();
                    let outcome = result.and_then(|response| {
                        let status = response.status().as_u16();
                        let retry_after = response.headers().contains_key("retry-after");
                        response.bytes().map(|bytes| (status, retry_after, bytes))
                    });
                    let latency = sent.elapsed();
                    let mut tally = tally.lock().unwrap();
                    match outcome {
                        Ok((503, true, _)) => *tally.by_kind.entry((path, 503)).or_default() += 1,
                        Ok((status, _, bytes)) => {
                            *tally.by_kind.entry((path, status)).or_default() += 1;
                            let right_body = match path {
                                "/hello" => bytes.as_ref() == format!("hello {query}\n").as_bytes(),
                                "/echo" => bytes.as_ref() == body.as_slice(),
                                "/big" => {
                                    bytes.len() == 1 << 20 && bytes.iter().all(|&b| b == b'b')
                                }
                                _ => true,
                            };
                            // Under this load any request may time out waiting for a slot (504):
                            // that is the server protecting itself, not a wrong answer.
                            let acceptable = status == expected || status == 504;
                            if !acceptable || (status == 200 && !right_body) {
                                tally.wrong.push(format!(
                                    "{path}?{query}: {status}, {} bytes",
                                    bytes.len()
                                ));
                            } else if status == 200 {
                                tally.good_latencies.push(latency);
                            }
                        }
                        Err(error) => tally.wrong.push(format!("{path}?{query}: {error}")),
                    }
                }
            })
        })
        .collect();

    let mut rss_samples = Vec::new();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        assert!(server.is_alive(), "the server died");
        rss_samples.push(server.rss());
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let alive = server.is_alive() && server.get_text("/hello?after").0 == 200;

    let mut tally = tally.lock().unwrap();
    let total: u64 = tally.by_kind.values().sum();
    println!(
        "soak: {seconds}s, {CLIENTS} clients, {total} requests ({:.0}/s)",
        total as f64 / seconds as f64
    );
    for ((path, status), count) in &tally.by_kind {
        println!("  {path:<9} {status}  {count}");
    }
    tally.good_latencies.sort();
    let percentile = |p: usize| {
        tally
            .good_latencies
            .get(tally.good_latencies.len() * p / 100)
            .copied()
            .unwrap_or_default()
    };
    println!(
        "  good requests answered correctly: {} (p50 {:?}, p99 {:?})",
        tally.good_latencies.len(),
        percentile(50),
        percentile(99)
    );
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "  server RSS: {:.1} MiB at start, max {:.1} MiB, at end {:.1} MiB",
        mib(rss_start),
        mib(rss_samples.iter().copied().max().unwrap_or(0)),
        mib(*rss_samples.last().unwrap_or(&0))
    );
    println!(
        "  wrong answers: {}; server alive afterwards: {alive}",
        tally.wrong.len()
    );
    for wrong in tally.wrong.iter().take(10) {
        println!("    {wrong}");
    }
    let failed = !tally.wrong.is_empty() || !alive;
    drop(tally);
    drop(server); // exit() skips destructors: stop the server first
    if failed {
        std::process::exit(1);
    }
}
