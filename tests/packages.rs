//! Serving packages: the bundled example, wasmer.toml directories with `[fs]`, and host
//! directories mapped with `--mapdir` / `--dir`, edited live.

mod common;

use common::{Server, fixture, fixture_package, hello_example, package_dir, raw_get};

#[test]
fn the_hello_example_answers_with_the_guests_page() {
    let server = Server::start(&[hello_example()]);
    let (status, body) = server.get_text("/greet?name=x");
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Hello from WebAssembly!</h1>"), "{body}");
    assert!(body.contains("GET /greet name=x"), "{body}");
}

/// A package whose only command is the `files` fixture, with `[fs] "app" = "site"`.
fn files_package() -> tempfile::TempDir {
    let package = fixture_package("files", "files", "[fs]\n\"app\" = \"site\"\n");
    std::fs::create_dir(package.path().join("site")).unwrap();
    std::fs::write(package.path().join("site/page.txt"), "from the package\n").unwrap();
    package
}

#[test]
fn fs_volumes_are_served_live_and_read_only() {
    let package = files_package();
    let server = Server::start(&[package.path()]);
    assert_eq!(
        server.get_text("/page.txt"),
        (200, "from the package\n".to_string())
    );
    std::fs::write(package.path().join("site/page.txt"), "edited\n").unwrap();
    assert_eq!(server.get_text("/page.txt"), (200, "edited\n".to_string()));

    let (status, _) = server.get_text("/write");
    assert_eq!(status, 403);
    assert!(!package.path().join("site/written-by-guest.txt").exists());
}

#[test]
fn mapdir_overrides_a_volume_and_edits_show_up_without_a_restart() {
    let package = files_package();
    let live = tempfile::tempdir().unwrap();
    std::fs::write(live.path().join("page.txt"), "version 1\n").unwrap();
    let mapdir = format!("/app:{}", live.path().display());
    let server = Server::start(&[
        package.path().as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);

    assert_eq!(
        server.get_text("/page.txt"),
        (200, "version 1\n".to_string())
    );
    std::fs::write(live.path().join("page.txt"), "version 2\n").unwrap();
    assert_eq!(
        server.get_text("/page.txt"),
        (200, "version 2\n".to_string())
    );

    // A plain --mapdir is writable.
    assert_eq!(server.get_text("/write").0, 200);
    let written = std::fs::read_to_string(live.path().join("written-by-guest.txt")).unwrap();
    assert_eq!(written, "guest was here");
}

#[test]
fn a_read_only_mapdir_refuses_writes() {
    let live = tempfile::tempdir().unwrap();
    std::fs::write(live.path().join("page.txt"), "read me\n").unwrap();
    let mapdir = format!("/app:{}:ro", live.path().display());
    let server = Server::start(&[
        fixture("files").as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);
    assert_eq!(server.get_text("/page.txt"), (200, "read me\n".to_string()));
    let (status, body) = server.get_text("/write");
    assert_eq!(status, 403, "{body}");
    assert!(!live.path().join("written-by-guest.txt").exists());
}

#[test]
fn the_guest_sees_only_what_was_mapped() {
    let server = Server::start(&[fixture("files")]);
    // Nothing is mounted at /app, and the host's files are not visible. The probe goes out
    // byte for byte: an HTTP client would resolve the `..` before sending.
    assert_eq!(server.get_text("/page.txt").0, 404);
    let (status, body) = raw_get(server.port, "/../etc/passwd");
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains("root:"), "{body}");

    // With a directory mapped at /app, `..` does not lead out of it to its host neighbours.
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir(outside.path().join("site")).unwrap();
    std::fs::write(outside.path().join("site/page.txt"), "mapped\n").unwrap();
    std::fs::write(outside.path().join("secret.txt"), "host secret\n").unwrap();
    let mapdir = format!("/app:{}", outside.path().join("site").display());
    let server = Server::start(&[
        fixture("files").as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);
    assert_eq!(server.get_text("/page.txt"), (200, "mapped\n".to_string()));
    for probe in [
        "/../secret.txt",
        "/sub/../../secret.txt",
        "/./../secret.txt",
        "/../etc/passwd",
    ] {
        let (status, body) = raw_get(server.port, probe);
        assert_eq!(status, 404, "{probe}: {body}");
        assert!(
            !body.contains("host secret") && !body.contains("root:"),
            "{probe}: {body}"
        );
    }
}

#[test]
fn dir_maps_a_host_directory_at_the_same_path() {
    let live = tempfile::tempdir().unwrap();
    std::fs::write(live.path().join("page.txt"), "same path\n").unwrap();
    let host_file = live.path().join("page.txt").display().to_string();
    let read = format!("/read?{host_file}");

    // Without --dir the guest cannot see the host path.
    let server = Server::start(&[fixture("files")]);
    assert_eq!(server.get_text(&read).0, 404);
    drop(server);

    let server = Server::start(&[
        fixture("files").as_os_str(),
        "--dir".as_ref(),
        live.path().as_os_str(),
    ]);
    assert_eq!(server.get_text(&read), (200, "same path\n".to_string()));
    // It is mounted at its own path, not at /app.
    assert_eq!(server.get_text("/page.txt").0, 404);
}

#[test]
fn a_bare_wasm_file_is_served_as_its_only_command() {
    let server = Server::start(&[fixture("hello")]);
    assert_eq!(
        server.get_text("/"),
        (200, "Hello from WebAssembly!\n".to_string())
    );
}

#[test]
fn entrypoint_selects_among_several_commands() {
    let manifest = format!(
        r#"
[[module]]
name = "hello"
source = "{hello}"
abi = "wasi"

[[module]]
name = "echo"
source = "{echo}"
abi = "wasi"

[[command]]
name = "hello"
module = "hello"
runner = "wcgi"

[[command]]
name = "echo"
module = "echo"
runner = "https://webc.org/runner/wcgi"
"#,
        hello = fixture("hello").display(),
        echo = fixture("echo").display()
    );
    let package = package_dir(&manifest);
    let server = Server::start(&[package.path().as_os_str(), "-e".as_ref(), "echo".as_ref()]);
    let response = common::client()
        .post(server.url("/"))
        .body("ping")
        .send()
        .unwrap();
    assert_eq!(response.text().unwrap(), "ping");
}

#[test]
fn compiled_modules_are_cached_across_runs_and_damage_is_repaired() {
    let cache = tempfile::tempdir().unwrap();
    let args = [
        fixture("env").into_os_string(),
        "--cache-dir".into(),
        cache.path().into(),
    ];
    let first = Server::start_with_log_level(&args, "wcgi=debug");
    assert_eq!(first.get_text("/").0, 200);
    assert!(
        first.log_contains("compiled the module"),
        "{}",
        first.logs()
    );
    drop(first);

    let entries: Vec<_> = std::fs::read_dir(cache.path().join("compiled"))
        .unwrap()
        .flatten()
        .collect();
    assert_eq!(entries.len(), 2, "an artifact and its checksum");
    let second = Server::start_with_log_level(&args, "wcgi=debug");
    assert_eq!(second.get_text("/").0, 200);
    assert!(
        second.log_contains("loaded the compiled module"),
        "{}",
        second.logs()
    );
    assert!(
        !second.logs().contains("compiled the module in"),
        "{}",
        second.logs()
    );
    drop(second);

    let artifact = entries
        .iter()
        .find(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .unwrap();
    std::fs::write(artifact.path(), b"not machine code").unwrap();
    let third = Server::start(&args);
    assert_eq!(third.get_text("/").0, 200);
    assert!(
        third.log_contains("damaged; compiling again"),
        "{}",
        third.logs()
    );
}
