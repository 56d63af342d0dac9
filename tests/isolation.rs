//! Every request gets a fresh instance: nothing an instance leaves in linear memory, its
//! globals or its files is seen by the next, even when the next one reuses the same memory
//! reservation (one instance slot, so every request does) and even when the earlier one
//! trapped, was stopped at its deadline, or hit the memory cap.

mod common;

use common::{Server, fixture};

/// A seed unique to this run, from which the guest derives its secret.
fn seed() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}")
}

#[test]
fn no_secret_survives_into_the_next_instance_however_the_last_one_ended() {
    let server = Server::start(&[
        fixture("secrets").as_os_str(),
        "--max-concurrency".as_ref(),
        "1".as_ref(),
        "--timeout".as_ref(),
        "1s".as_ref(),
        "--max-memory".as_ref(),
        "32MiB".as_ref(),
    ]);
    let seed = seed();
    let check = |after: &str| {
        let (status, body) = server.get_text(&format!("/?seed={seed}&then=exit"));
        assert_eq!((status, body.as_str()), (200, "clean\n"), "after {after}");
    };
    check("nothing");
    // (how the planting request ends, the status it gets)
    let endings = [
        ("exit", 200), // a few pages: zeroed in place
        ("big", 200),  // megabytes past the initial memory: dropped
        ("trap", 500),
        ("spin", 504),
        ("grow", 500),
        ("exit", 200),
    ];
    for (then, expected) in endings {
        let (status, body) = server.get_text(&format!("/?seed={seed}&then={then}"));
        // A guest that finds stale memory where it expects zeros may crash instead.
        assert_eq!(status, expected, "then={then}: {body}");
        check(then);
        check(&format!("{then}, twice"));
    }
}

/// A module whose mutable global and memory word start at 0 in a fresh instance; it answers
/// whether they did, then sets both.
const GLOBAL_AND_MEMORY: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $planted (mut i32) (i32.const 0))
  (data (i32.const 64) "Content-Type: text/plain\0d\0a\0d\0afresh\0a")
  (data (i32.const 128) "Content-Type: text/plain\0d\0a\0d\0aLEAKED\0a")
  (func (export "_start")
    (if (i32.or (global.get $planted) (i32.load (i32.const 4096)))
      (then
        (i32.store (i32.const 0) (i32.const 128))
        (i32.store (i32.const 4) (i32.const 35)))
      (else
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 34))))
    (global.set $planted (i32.const 0x5EC12E7))
    (i32.store (i32.const 4096) (i32.const 0x5EC12E7))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#;

#[test]
fn globals_and_memory_start_fresh_in_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("globals.wasm");
    std::fs::write(
        &module,
        wasmer::wat2wasm(GLOBAL_AND_MEMORY.as_bytes()).unwrap(),
    )
    .unwrap();
    let server = Server::start(&[
        module.as_os_str(),
        "--max-concurrency".as_ref(),
        "1".as_ref(),
    ]);
    for request in 0..20 {
        assert_eq!(
            server.get_text("/"),
            (200, "fresh\n".to_string()),
            "request {request}"
        );
    }
}

/// A module with a megabyte of data (so its memory starts as a mapped image) that checks three
/// words a fresh instance must see as the module defines them: one inside the image (`AAAA`),
/// one past it (zero) and one in a page it grows (zero). It answers whether they were, then
/// overwrites all three.
fn module_with_a_memory_image() -> String {
    format!(
        r#"
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 32)
  (data (i32.const 64) "Content-Type: text/plain\0d\0a\0d\0afresh\0a")
  (data (i32.const 128) "Content-Type: text/plain\0d\0a\0d\0aLEAKED\0a")
  (data (i32.const 1024) "{fill}")
  (func (export "_start")
    (local $grown i32)
    (local.set $grown (i32.mul (memory.grow (i32.const 1)) (i32.const 65536)))
    (if (i32.or
          (i32.or
            (i32.ne (i32.load (i32.const 8192)) (i32.const 0x41414141))
            (i32.load (i32.const 0x180000)))
          (i32.load (local.get $grown)))
      (then
        (i32.store (i32.const 0) (i32.const 128))
        (i32.store (i32.const 4) (i32.const 35)))
      (else
        (i32.store (i32.const 0) (i32.const 64))
        (i32.store (i32.const 4) (i32.const 34))))
    (i32.store (i32.const 8192) (i32.const 0x5EC12E7))
    (i32.store (i32.const 0x180000) (i32.const 0x5EC12E7))
    (i32.store (local.get $grown) (i32.const 0x5EC12E7))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
"#,
        fill = "A".repeat(1 << 20)
    )
}

#[test]
fn a_memory_image_is_whole_again_in_every_instance() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("image.wasm");
    std::fs::write(
        &module,
        wasmer::wat2wasm(module_with_a_memory_image().as_bytes()).unwrap(),
    )
    .unwrap();
    // One instance slot: every request reuses the reservation the previous one wrote in.
    let server = Server::start(&[
        module.as_os_str(),
        "--max-concurrency".as_ref(),
        "1".as_ref(),
    ]);
    assert!(
        server.log_contains("of initial memory mapped copy-on-write into each instance"),
        "{}",
        server.logs()
    );
    for request in 0..10 {
        assert_eq!(
            server.get_text("/"),
            (200, "fresh\n".to_string()),
            "request {request}"
        );
    }
}
