//! `.webc` containers made by `wcgi pack` (v2 and v3) serve exactly like their directory,
//! and `wcgi inspect` describes every kind of package.

mod common;

use std::path::{Path, PathBuf};

use common::{Server, client, fixture, hello_example, package_dir, run_wcgi};

/// A package whose commands are the `responses` and `files` fixtures, with `[fs] "app" = "site"`.
fn fixture_package() -> tempfile::TempDir {
    let manifest = format!(
        r#"
[package]
name = "test/suite"
version = "1.2.3"
entrypoint = "responses"

[[module]]
name = "responses"
source = "{responses}"
abi = "wasi"

[[module]]
name = "files"
source = "{files}"
abi = "wasi"

[[command]]
name = "responses"
module = "responses"
runner = "wcgi"

[[command]]
name = "files"
module = "files"
runner = "wcgi"

[command.annotations.wasi]
env = ["FROM_ANNOTATION=yes"]

[fs]
"app" = "site"
"#,
        responses = fixture("responses").display(),
        files = fixture("files").display()
    );
    let package = package_dir(&manifest);
    std::fs::create_dir_all(package.path().join("site/sub")).unwrap();
    std::fs::write(package.path().join("site/page.txt"), "from the package\n").unwrap();
    std::fs::write(package.path().join("site/sub/deep.txt"), "deep\n").unwrap();
    package
}

fn pack(dir: &Path, version: &str) -> PathBuf {
    let output = dir.join(format!("suite-v{version}.webc"));
    let stdout = common::pack(dir, &output, version);
    assert!(stdout.starts_with("Packed test/suite into "), "{stdout}");
    let magic = std::fs::read(&output).unwrap();
    assert_eq!(&magic[..8], format!("\0webc00{version}").as_bytes());
    // A file to ship, created as any tool creates one (0666 less the umask, 022 here), not
    // private like a cache entry.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&output).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o644, "{}", output.display());
    output
}

/// Status, headers (without Date) and body of a GET.
fn snapshot(server: &Server, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let response = client().get(server.url(path)).send().unwrap();
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        // Per request, not per package: the date and the request id.
        .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
        .collect();
    headers.sort();
    (status, headers, response.bytes().unwrap().to_vec())
}

#[test]
fn packed_containers_answer_byte_for_byte_like_the_directory() {
    let package = fixture_package();
    let v3 = pack(package.path(), "3");
    let v2 = pack(package.path(), "2");
    let paths = [
        "/not-found",
        "/absolute",
        "/moved",
        "/local",
        "/cookies",
        "/lf-only",
        "/hop-by-hop",
        "/x",
    ];
    let files_paths = ["/page.txt", "/sub/deep.txt", "/missing.txt", "/write"];

    let reference = Server::start(&[package.path()]);
    let reference_files =
        Server::start(&[package.path().as_os_str(), "-e".as_ref(), "files".as_ref()]);
    for container in [&v3, &v2] {
        let server = Server::start(&[container]);
        for path in paths {
            assert_eq!(
                snapshot(&server, path),
                snapshot(&reference, path),
                "{} {path}",
                container.display()
            );
        }
        let files = Server::start(&[container.as_os_str(), "-e".as_ref(), "files".as_ref()]);
        for path in files_paths {
            assert_eq!(
                snapshot(&files, path),
                snapshot(&reference_files, path),
                "{} {path}",
                container.display()
            );
        }
    }
}

#[test]
fn container_volumes_are_read_only_and_mapdir_still_adds_host_dirs() {
    let package = fixture_package();
    let container = pack(package.path(), "3");
    // The container holds its own copy: editing the source directory changes nothing.
    std::fs::write(package.path().join("site/page.txt"), "edited later\n").unwrap();
    let server = Server::start(&[container.as_os_str(), "-e".as_ref(), "files".as_ref()]);
    assert_eq!(
        server.get_text("/page.txt"),
        (200, "from the package\n".to_string())
    );
    assert_eq!(server.get_text("/write").0, 403);

    let live = tempfile::tempdir().unwrap();
    std::fs::write(live.path().join("page.txt"), "from the host\n").unwrap();
    let mapdir = format!("/app:{}", live.path().display());
    let server = Server::start(&[
        container.as_os_str(),
        "-e".as_ref(),
        "files".as_ref(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);
    assert_eq!(
        server.get_text("/page.txt"),
        (200, "from the host\n".to_string())
    );
}

#[test]
fn the_hello_example_serves_the_same_from_a_container() {
    let dir = hello_example();
    let output = tempfile::tempdir().unwrap();
    let container = output.path().join("hello.webc");
    let result = run_wcgi(&[
        "pack".as_ref(),
        dir.as_os_str(),
        "-o".as_ref(),
        container.as_os_str(),
    ]);
    assert!(result.status.success());
    let server = Server::start(&[&container]);
    let (status, body) = server.get_text("/");
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Hello from WebAssembly!</h1>"), "{body}");
}

fn inspect(target: &Path) -> String {
    let result = run_wcgi(&["inspect".as_ref(), target.as_os_str()]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8(result.stdout).unwrap()
}

#[test]
fn inspect_describes_every_kind_of_package() {
    let package = fixture_package();
    let text = inspect(package.path());
    assert!(text.starts_with("test/suite 1.2.3  (directory)"), "{text}");
    assert!(text.contains("entrypoint: responses"), "{text}");
    assert!(text.contains("  files  runner: wcgi"), "{text}");
    assert!(text.contains("env: [\"FROM_ANNOTATION=yes\"]"), "{text}");
    assert!(
        text.contains("/app <- ") && text.contains("(2 files, read-only)"),
        "{text}"
    );

    // The container says which package and version it holds (the `wapm` annotation).
    let text = inspect(&pack(package.path(), "3"));
    assert!(
        text.starts_with("test/suite 1.2.3  (.webc v3 container)"),
        "{text}"
    );
    assert!(
        text.contains("  responses  runner: https://webc.org/runner/wcgi"),
        "{text}"
    );
    assert!(
        text.contains("/app (in the container, 2 files, read-only)"),
        "{text}"
    );

    let text = inspect(&pack(package.path(), "2"));
    assert!(
        text.starts_with("test/suite 1.2.3  (.webc v2 container)"),
        "{text}"
    );
    assert!(
        text.contains("/app (in the container, 2 files, read-only)"),
        "{text}"
    );

    let text = inspect(&fixture("env"));
    assert!(
        text.contains("(.wasm file)") && text.contains("  env  runner: wcgi"),
        "{text}"
    );
}

#[test]
fn bad_containers_and_packs_fail_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("fake.webc");
    std::fs::write(&fake, b"\0webc003 but then nothing sensible").unwrap();
    let result = run_wcgi(&["run".as_ref(), fake.as_os_str()]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("fake.webc") && !stderr.contains("panicked"),
        "{stderr}"
    );

    let broken = package_dir(
        "[[module]]\nname = \"m\"\nsource = \"nothing.wasm\"\nabi = \"wasi\"\n\n[[command]]\nname = \"c\"\nmodule = \"m\"\nrunner = \"wcgi\"\n",
    );
    let result = run_wcgi(&["pack".as_ref(), broken.path().as_os_str()]);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing.wasm does not exist"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn files_are_recognised_by_their_magic_bytes_not_their_names() {
    let package = fixture_package();
    let work = tempfile::tempdir().unwrap();
    // A v3 and a v2 container without a .webc name, and a module named like a container.
    let v3 = work.path().join("x.bin");
    std::fs::copy(pack(package.path(), "3"), &v3).unwrap();
    let v2 = work.path().join("suite");
    std::fs::copy(pack(package.path(), "2"), &v2).unwrap();
    let module = work.path().join("hello.webc");
    std::fs::copy(fixture("hello"), &module).unwrap();

    for container in [&v3, &v2] {
        let server = Server::start(&[container.as_os_str(), "-e".as_ref(), "files".as_ref()]);
        assert_eq!(
            server.get_text("/page.txt"),
            (200, "from the package\n".to_string()),
            "{}",
            container.display()
        );
    }
    assert!(inspect(&v3).contains("(.webc v3 container)"));
    assert!(inspect(&v2).contains("(.webc v2 container)"));
    let server = Server::start(&[&module]);
    assert_eq!(
        server.get_text("/"),
        (200, "Hello from WebAssembly!\n".to_string())
    );
    assert!(inspect(&module).contains("(.wasm file)"));
}

#[test]
fn inspect_prints_a_description_larger_than_a_pipe_holds() {
    // Over 100 KiB of output: whoever runs wcgi must read it while waiting (as the test
    // harness does), and all of it arrives.
    let entries: Vec<String> = (0..5000)
        .map(|index| format!("\"VARIABLE_{index:05}=value\""))
        .collect();
    let package = common::fixture_package(
        "env",
        "big",
        &format!(
            "[command.annotations.wasi]\nenv = [{}]\n",
            entries.join(", ")
        ),
    );
    let text = inspect(package.path());
    assert!(text.len() > 100 * 1024, "{} bytes", text.len());
    assert!(
        text.contains("\"VARIABLE_00000=value\", \"VARIABLE_00001=value\"")
            && text.contains("\"VARIABLE_04999=value\"]"),
        "{}",
        &text[..500]
    );
}
