//! Soak test: good and hostile requests mixed at concurrency 32 for a fixed time (60 s by
//! default, `SOAK_SECONDS` to change), against the real binary on loopback, after a baseline
//! measured in the same run: the same server answering only good requests for a sixth of that
//! time. Prints counts, latencies against the baseline and the server's RSS; exits non-zero if
//! any request got a wrong answer (a wrong body, or a status other than the expected one, 503 +
//! Retry-After or 504 after waiting too long for a slot), if fewer than `FLOOR` of the requests
//! of any kind got their expected answer (so a server that times out everything fails), or if
//! the server died. Run with `cargo bench --bench soak`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, client, fixture, random_bytes};

const CLIENTS: usize = 32;

/// The share of the requests of each kind that must get their expected status (and, for good
/// requests, the right body); the rest may be refused (503) or time out in the queue (504).
const FLOOR: f64 = 0.9;

/// (path, share in percent, expected status). Good requests also have their bodies checked.
type Mix = [(&'static str, u32, u16)];

const SOAK_MIX: [(&str, u32, u16); 7] = [
    ("/hello", 45, 200),
    ("/echo", 20, 200),
    ("/big", 10, 200),
    ("/garbage", 10, 502),
    ("/trap", 7, 500),
    ("/bomb", 6, 500),
    ("/spin", 2, 504),
];

/// The baseline: the same good requests, in the same proportions, and nothing hostile.
const BASELINE_MIX: [(&str, u32, u16); 3] =
    [("/hello", 60, 200), ("/echo", 27, 200), ("/big", 13, 200)];

#[derive(Default)]
struct Tally {
    /// (path, status) → count.
    by_kind: BTreeMap<(&'static str, u16), u64>,
    /// path → requests that got the expected status (and body).
    expected: BTreeMap<&'static str, u64>,
    wrong: Vec<String>,
    good_latencies: Vec<Duration>,
}

impl Tally {
    fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    fn sent(&self, path: &str) -> u64 {
        self.by_kind
            .iter()
            .filter(|((p, _), _)| *p == path)
            .map(|(_, count)| count)
            .sum()
    }

    fn percentile(&self, p: usize) -> Duration {
        self.good_latencies
            .get(self.good_latencies.len() * p / 100)
            .copied()
            .unwrap_or_default()
    }

    /// Paths whose share of expected answers is under the floor: (path, share).
    fn under_floor(&self, mix: &Mix) -> Vec<(&'static str, f64)> {
        mix.iter()
            .filter_map(|(path, _, _)| {
                let sent = self.sent(path);
                let share = self.expected.get(path).copied().unwrap_or(0) as f64 / sent as f64;
                // A path with no request at all is under the floor too (share is NaN).
                (sent == 0 || share < FLOOR).then_some((*path, if sent == 0 { 0.0 } else { share }))
            })
            .collect()
    }
}

/// `CLIENTS` clients sending requests picked from `mix` for `seconds`; while they run, `watch`
/// is called once a second.
fn load(base_url: &str, mix: &'static Mix, seconds: u64, mut watch: impl FnMut()) -> Tally {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|worker| {
            let (tally, stop, base) = (tally.clone(), stop.clone(), base_url.to_string());
            std::thread::spawn(move || {
                let http = client();
                let mut seed = 0x9e3779b97f4a7c15u64 ^ (worker as u64 + 1);
                let mut sequence = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let mut pick = (seed % 100) as u32;
                    let (path, _, expected) = *mix
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
                            // A request may time out waiting for a slot (504): the server
                            // protecting itself, not a wrong answer; the floor bounds how often.
                            let acceptable = status == expected || status == 504;
                            if !acceptable || (status == 200 && !right_body) {
                                tally.wrong.push(format!(
                                    "{path}?{query}: {status}, {} bytes",
                                    bytes.len()
                                ));
                            } else if status == expected {
                                *tally.expected.entry(path).or_default() += 1;
                                if status == 200 {
                                    tally.good_latencies.push(latency);
                                }
                            }
                        }
                        Err(error) => tally.wrong.push(format!("{path}?{query}: {error}")),
                    }
                }
            })
        })
        .collect();
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(1));
        watch();
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let mut tally = std::mem::take(&mut *tally.lock().unwrap());
    tally.good_latencies.sort();
    tally
}

fn ratio(value: Duration, baseline: Duration) -> f64 {
    value.as_secs_f64() / baseline.as_secs_f64().max(1e-9)
}

fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let baseline_seconds = (seconds / 6).max(2);
    let mut server = Server::start(&[
        fixture("mixed").as_os_str(),
        "--timeout".as_ref(),
        "1s".as_ref(),
        "--max-memory".as_ref(),
        "64MiB".as_ref(),
        "--max-queue".as_ref(),
        "256".as_ref(),
    ]);

    let base_url = server.base_url.clone();
    let baseline = load(&base_url, &BASELINE_MIX, baseline_seconds, || {});
    let baseline_rate = baseline.total() as f64 / baseline_seconds as f64;
    println!(
        "baseline: {baseline_seconds}s, good requests only: {} ({baseline_rate:.0}/s), p50 {:?}, p99 {:?}",
        baseline.total(),
        baseline.percentile(50),
        baseline.percentile(99)
    );

    let rss_start = server.rss();
    let mut rss_samples = Vec::new();
    let mut died = false;
    let tally = load(&base_url, &SOAK_MIX, seconds, || {
        if server.is_alive() {
            rss_samples.push(server.rss());
        } else {
            died = true;
        }
    });
    let alive = !died && server.is_alive() && server.get_text("/hello?after").0 == 200;

    let total = tally.total();
    println!(
        "soak: {seconds}s, {CLIENTS} clients, {total} requests ({:.0}/s)",
        total as f64 / seconds as f64
    );
    for ((path, status), count) in &tally.by_kind {
        println!("  {path:<9} {status}  {count}");
    }
    let (p50, p99) = (tally.percentile(50), tally.percentile(99));
    println!(
        "  good requests answered correctly: {} (p50 {p50:?} = {:.2}× baseline, p99 {p99:?} = {:.2}× baseline)",
        tally.good_latencies.len(),
        ratio(p50, baseline.percentile(50)),
        ratio(p99, baseline.percentile(99)),
    );
    for (path, _, _) in &SOAK_MIX {
        let sent = tally.sent(path);
        let expected = tally.expected.get(path).copied().unwrap_or(0);
        println!(
            "  {path:<9} {expected}/{sent} as expected ({:.1} %)",
            100.0 * expected as f64 / sent.max(1) as f64
        );
    }
    let mib = |bytes: u64| bytes as f64 / (1 << 20) as f64;
    println!(
        "  server RSS: {:.1} MiB at start, max {:.1} MiB, at end {:.1} MiB",
        mib(rss_start),
        mib(rss_samples.iter().copied().max().unwrap_or(0)),
        mib(*rss_samples.last().unwrap_or(&0))
    );
    let under_floor: Vec<_> = [
        baseline.under_floor(&BASELINE_MIX),
        tally.under_floor(&SOAK_MIX),
    ]
    .concat();
    println!(
        "  wrong answers: {} (baseline: {}); under the {:.0} % floor: {under_floor:?}; server alive afterwards: {alive}",
        tally.wrong.len(),
        baseline.wrong.len(),
        FLOOR * 100.0
    );
    for wrong in baseline.wrong.iter().chain(&tally.wrong).take(10) {
        println!("    {wrong}");
    }
    let failed =
        !tally.wrong.is_empty() || !baseline.wrong.is_empty() || !under_floor.is_empty() || !alive;
    drop(server); // exit() skips destructors: stop the server first
    if failed {
        std::process::exit(1);
    }
}
