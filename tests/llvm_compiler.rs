//! `--compiler llvm` and `tiered`, in a wcgi built with the `llvm` feature: guests run and are
//! stopped at their deadline as under Cranelift, the two compilers' machine code is cached
//! apart, and `tiered` serves at once, then switches to LLVM's code.
#![cfg(feature = "llvm")]

mod common;

use std::time::{Duration, Instant};

use common::{Server, client, fixture, fixture_package, hello_example, wait_for_log_count};

#[test]
fn hello_is_served_and_cached_apart_from_cranelift() {
    let cache = tempfile::tempdir().unwrap();
    let compiled = cache.path().join("compiled");
    let entries = || std::fs::read_dir(&compiled).map_or(0, |dir| dir.count());
    for (compiler, expected_entries) in [("llvm", 2), ("cranelift", 4), ("llvm", 4)] {
        let server = Server::start(&[
            hello_example().as_os_str(),
            "--compiler".as_ref(),
            compiler.as_ref(),
            "--cache-dir".as_ref(),
            cache.path().as_os_str(),
        ]);
        let (status, page) = server.get_text("/");
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("<h1>Hello from WebAssembly!</h1>"), "{page}");
        // An artifact and its checksum per compiler: the second LLVM start finds its own.
        assert_eq!(entries(), expected_entries, "after a {compiler} start");
    }
}

#[test]
fn an_endless_loop_is_stopped_at_the_timeout() {
    let server = Server::start(&[
        fixture("spin").as_os_str(),
        "--compiler".as_ref(),
        "llvm".as_ref(),
        "--timeout".as_ref(),
        "1s".as_ref(),
    ]);
    let started = Instant::now();
    assert_eq!(server.get("/").status(), 504);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert!(server.log_contains("stopped at its deadline"));
    // The server goes on serving: the next request gets its own instance and deadline.
    assert_eq!(server.get("/").status(), 504);
}

#[test]
fn tiered_serves_at_once_then_switches_to_llvm() {
    let cache = tempfile::tempdir().unwrap();
    let compiled = cache.path().join("compiled");
    let entries = || std::fs::read_dir(&compiled).map_or(0, |dir| dir.count());
    let start = |package: &std::path::Path, watch: bool| {
        let mut args = vec![
            package.as_os_str().to_owned(),
            "--compiler".into(),
            "tiered".into(),
            "--cache-dir".into(),
            cache.path().into(),
            "--metrics-addr".into(),
            "127.0.0.1:0".into(),
        ];
        if watch {
            args.push("--watch".into());
        }
        let server = Server::start(&args);
        assert_serves_hello(&server);
        server
    };

    // Without --watch: Cranelift's code at once, then LLVM's; each an artifact and a checksum.
    let server = start(&hello_example(), false);
    wait_for_log_count(&server, "switched to LLVM's machine code", 1);
    assert_serves_hello(&server);
    assert_serving_compiler(&server, "llvm");
    assert_eq!(entries(), 4);

    // With --watch: a reload serves Cranelift's code, then tiers up again.
    let package = fixture_package("hello", "hello", "");
    let server = start(package.path(), true);
    wait_for_log_count(&server, "switched to LLVM's machine code", 1);
    let manifest = package.path().join("wasmer.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n# changed\n");
    std::fs::write(&manifest, text).unwrap();
    wait_for_log_count(&server, "reloaded in ", 1);
    wait_for_log_count(&server, "switched to LLVM's machine code", 2);
    assert_serves_hello(&server);
    assert_serving_compiler(&server, "llvm");
    assert_eq!(entries(), 8);
}

fn assert_serves_hello(server: &Server) {
    let (status, page) = server.get_text("/");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Hello from"), "{page}");
}

/// The metrics say the site served runs `compiler`'s code, and not the other's.
fn assert_serving_compiler(server: &Server, compiler: &str) {
    let metrics = client()
        .get(server.metrics_url())
        .send()
        .unwrap()
        .text()
        .unwrap();
    for (name, value) in [("cranelift", 0), ("llvm", 0)] {
        let value = if name == compiler { 1 } else { value };
        let line = format!("wcgi_serving_compiler{{compiler=\"{name}\"}} {value}\n");
        assert!(metrics.contains(&line), "{line}: {metrics}");
    }
}
