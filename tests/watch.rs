//! `wcgi run --watch`: a changed module or manifest is built again in the background and
//! switched to without failing a request; a version that does not build keeps the old one
//! serving; a `modules.toml` edit that adds a route serves it.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, client, fixture, wait_for_log_count};

const GREETING: &[u8] = b"Hello from WebAssembly!";

/// The `hello` fixture answering `Hello from version-NNN!` (same length: only a data
/// segment's bytes change).
fn hello_version(version: usize) -> Vec<u8> {
    let wasm = std::fs::read(fixture("hello")).unwrap();
    let replacement = format!("Hello from version-{version:03}!");
    assert_eq!(replacement.len(), GREETING.len());
    let at = wasm
        .windows(GREETING.len())
        .position(|window| window == GREETING)
        .expect("the greeting in hello.wasm");
    let mut patched = wasm.clone();
    patched[at..at + GREETING.len()].copy_from_slice(replacement.as_bytes());
    patched
}

/// Replaces `path` as a build tool does: written beside it, then renamed over it.
fn replace(path: &Path, contents: &[u8]) {
    let temporary = path.with_extension("tmp");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn version_of(body: &str) -> Option<usize> {
    if body == "Hello from WebAssembly!\n" {
        return Some(0);
    }
    body.strip_prefix("Hello from version-")?
        .strip_suffix("!\n")?
        .parse()
        .ok()
}

#[test]
fn a_rebuilt_module_is_served_without_failing_a_request_and_a_broken_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("hello.wasm");
    std::fs::copy(fixture("hello"), &module).unwrap();
    let server = Arc::new(Server::start(&[
        module.clone().into_os_string(),
        "--watch".into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ]));

    // Steady load at c=8 while the module is replaced ten times.
    let stop = Arc::new(AtomicBool::new(false));
    let load: Vec<_> = (0..8)
        .map(|_| {
            let (server, stop) = (server.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = client();
                let (mut served, mut newest) = (0, 0);
                while !stop.load(Ordering::Relaxed) {
                    let response = http.get(server.url("/")).send().expect("a request failed");
                    assert_eq!(response.status(), 200);
                    let body = response.text().unwrap();
                    let version = version_of(&body).unwrap_or_else(|| panic!("{body:?}"));
                    assert!(version >= newest, "version {version} after {newest}");
                    newest = version;
                    served += 1;
                }
                served
            })
        })
        .collect();
    for version in 1..=10 {
        let written = Instant::now();
        replace(&module, &hello_version(version));
        loop {
            let (status, body) = server.get_text("/");
            assert_eq!(status, 200);
            if version_of(&body) == Some(version) {
                break;
            }
            assert!(
                written.elapsed() < Duration::from_secs(2),
                "version {version} not served 2 s after the write: {body:?}\n{}",
                server.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    stop.store(true, Ordering::Relaxed);
    let served: usize = load.into_iter().map(|thread| thread.join().unwrap()).sum();
    assert!(served > 0);

    // A module that does not compile: one error line naming the file; the old one serves on.
    replace(&module, b"not a module");
    wait_for_log_count(&server, "still serving the previous version", 1);
    let logs = server.logs();
    let error = logs
        .lines()
        .find(|line| line.contains("still serving the previous version"))
        .unwrap();
    assert!(error.contains(&module.display().to_string()), "{error}");
    assert_eq!(
        server.get_text("/"),
        (200, "Hello from version-010!\n".into())
    );
    assert_eq!(logs.matches("reloaded in ").count(), 10, "{logs}");

    let metrics_url = server.metrics_url();
    let scrape = client().get(metrics_url).send().unwrap().text().unwrap();
    assert!(
        scrape.contains("wcgi_reloads_total{result=\"ok\"} 10\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("wcgi_reloads_total{result=\"failed\"} 1\n"),
        "{scrape}"
    );
}

#[test]
fn a_modules_toml_edit_that_adds_a_route_serves_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("hello"), dir.path().join("hello.wasm")).unwrap();
    std::fs::write(dir.path().join("hello-1.wasm"), hello_version(1)).unwrap();
    let site = dir.path().join("modules.toml");
    let first = "[[module]]\nroute = \"/a\"\nmodule = \"hello.wasm\"\n";
    std::fs::write(&site, first).unwrap();
    let server = Server::start(&[site.clone().into_os_string(), "--watch".into()]);
    assert_eq!(server.get_text("/b").0, 404);

    replace(
        &site,
        format!("{first}\n[[module]]\nroute = \"/b\"\nmodule = \"hello-1.wasm\"\n").as_bytes(),
    );
    wait_for_log_count(&server, "reloaded in ", 1);
    assert_eq!(
        server.get_text("/b"),
        (200, "Hello from version-001!\n".into())
    );
    assert_eq!(
        server.get_text("/a"),
        (200, "Hello from WebAssembly!\n".into())
    );
    // The module the new route added is watched too.
    replace(&dir.path().join("hello-1.wasm"), &hello_version(2));
    wait_for_log_count(&server, "reloaded in ", 2);
    assert_eq!(
        server.get_text("/b"),
        (200, "Hello from version-002!\n".into())
    );
}
