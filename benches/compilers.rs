//! Cranelift against LLVM (`--compiler llvm`) on the WordPress example's front page, from the
//! snapshot: two servers running at once, their requests interleaved in rounds, so that a
//! machine whose speed drifts (a shared VM) slows both alike. Prints each compiler's CPU time
//! per request (the server process's user + system time) and wall time, as medians over the
//! rounds, and LLVM's ratio to Cranelift.
//!
//! Needs a build with the `llvm` feature and the assembled example
//! (`examples/wordpress/setup.sh`): `cargo bench --features llvm --bench compilers`. The first
//! start compiles php-cgi with LLVM (a minute or two, twice: the module and its snapshot).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::{Server, client, wordpress};

const ROUNDS: usize = 7;
const REQUESTS_PER_ROUND: u32 = 10;

fn main() {
    if !cfg!(feature = "llvm") {
        eprintln!(
            "*** SKIPPED the compilers bench: it needs a wcgi built with LLVM (cargo bench \
             --features llvm --bench compilers) ***"
        );
        return;
    }
    let compilers = ["cranelift", "llvm"];
    let data: Vec<tempfile::TempDir> = compilers
        .iter()
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let servers: Vec<Server> = compilers
        .iter()
        .zip(&data)
        .map(|(compiler, data)| {
            let server = wordpress::serve(data.path(), &["--compiler", compiler]);
            wordpress::install(&server.base_url);
            server
        })
        .collect();
    let http = client();
    let front_page = |server: &Server| {
        let response = http.get(server.url("/")).send().unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.text().unwrap().contains(wordpress::SITE_TITLE));
    };
    for server in &servers {
        for _ in 0..3 {
            front_page(server);
        }
    }
    // (CPU, wall) per request, one sample per round and server.
    let mut samples: Vec<Vec<(Duration, Duration)>> = vec![Vec::new(); servers.len()];
    for _ in 0..ROUNDS {
        for (server, samples) in servers.iter().zip(&mut samples) {
            let cpu = server.cpu_time();
            let started = Instant::now();
            for _ in 0..REQUESTS_PER_ROUND {
                front_page(server);
            }
            samples.push((
                (server.cpu_time() - cpu) / REQUESTS_PER_ROUND,
                started.elapsed() / REQUESTS_PER_ROUND,
            ));
        }
    }
    let median = |mut values: Vec<Duration>| {
        values.sort();
        values[values.len() / 2]
    };
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    println!(
        "WordPress front page from the snapshot, {ROUNDS} interleaved rounds of \
         {REQUESTS_PER_ROUND} requests, medians per request:"
    );
    let mut cpu_medians = Vec::new();
    for (compiler, samples) in compilers.iter().zip(&samples) {
        let cpu = median(samples.iter().map(|sample| sample.0).collect());
        let wall = median(samples.iter().map(|sample| sample.1).collect());
        cpu_medians.push(cpu);
        println!(
            "  {compiler:<10} CPU {:>6.1} ms   wall {:>6.1} ms",
            ms(cpu),
            ms(wall)
        );
    }
    println!(
        "  llvm / cranelift CPU = {:.2}",
        ms(cpu_medians[1]) / ms(cpu_medians[0])
    );
}
