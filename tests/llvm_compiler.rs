//! `--compiler llvm`, in a wcgi built with the `llvm` feature: guests run and are stopped at
//! their deadline as under Cranelift, and the two compilers' machine code is cached apart.
#![cfg(feature = "llvm")]

mod common;

use std::time::{Duration, Instant};

use common::{Server, fixture, hello_example};

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
