//! `wcgi publish` against a local registry that speaks the Wasmer protocol: the container is
//! uploaded to a signed URL without the token, pushed as a release and tagged with its
//! version and metadata; what was published is served and pulled by name, byte for byte.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::registry::LocalRegistry;
use common::{Server, fixture, pack, package_dir, run_wcgi};

const README: &str = "# site\n\nA site that says hello.\n";

/// A package test/site 1.0.0 serving the `hello` fixture, with metadata and a readme.
fn site_package(version: Option<&str>) -> tempfile::TempDir {
    let version = version
        .map(|v| format!("version = \"{v}\"\n"))
        .unwrap_or_default();
    let dir = package_dir(&format!(
        "[package]\nname = \"test/site\"\n{version}description = \"A site\"\n\
         license = \"MIT\"\nreadme = \"README.md\"\nrepository = \"https://example.com/site\"\n\n\
         [[module]]\nname = \"hello\"\nsource = \"{wasm}\"\nabi = \"wasi\"\n\n\
         [[command]]\nname = \"site\"\nmodule = \"hello\"\nrunner = \"wcgi\"\n",
        wasm = fixture("hello").display()
    ));
    std::fs::write(dir.path().join("README.md"), README).unwrap();
    dir
}

struct Publisher {
    registry: LocalRegistry,
    cache: tempfile::TempDir,
}

impl Publisher {
    fn new() -> Publisher {
        let registry = LocalRegistry::start();
        registry.require_token("secret");
        Publisher {
            registry,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    /// `wcgi COMMAND ARGS --registry .. --cache-dir ..`: (exit code, stdout, stderr).
    fn wcgi(&self, command: &str, args: &[&OsString]) -> (Option<i32>, String, String) {
        let mut all: Vec<OsString> = vec![command.into()];
        all.extend(args.iter().map(|a| (*a).clone()));
        all.extend(["--registry".into(), self.registry.endpoint.clone().into()]);
        all.extend(["--cache-dir".into(), self.cache.path().into()]);
        let output = run_wcgi(&all);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr,
        )
    }

    fn publish(&self, package: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
        let mut args: Vec<OsString> = vec![package.into()];
        args.extend(extra.iter().map(OsString::from));
        self.wcgi("publish", &args.iter().collect::<Vec<_>>())
    }

    /// A one-line refusal, exit code 1, and what it says.
    fn refused(&self, package: &Path, extra: &[&str]) -> String {
        let (code, _, stderr) = self.publish(package, extra);
        assert_eq!(code, Some(1), "{stderr}");
        let stderr = stderr.trim().to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    }
}

#[test]
fn a_published_directory_is_served_by_name_and_pulled_byte_for_byte() {
    let publisher = Publisher::new();
    let registry = &publisher.registry;
    let site = site_package(Some("1.0.0"));
    // Asked for before it exists: the registry's answer is cached, and must not hide the
    // version once it is published.
    let name = OsString::from("test/site@1.0.0");
    let token = [OsString::from("--token"), OsString::from("secret")];
    let (code, _, stderr) = publisher.wcgi("pull", &[&name, &token[0], &token[1]]);
    assert_eq!(code, Some(1), "{stderr}");
    let (code, stdout, stderr) = publisher.publish(site.path(), &["--token", "secret"]);
    assert_eq!(code, Some(0), "{stderr}");
    let published = registry.published_container("test/site", "1.0.0");
    assert_eq!(
        stdout.lines().next().unwrap(),
        format!(
            "Published test/site@1.0.0 ({}, sha256:{}) to {}",
            bytesize::ByteSize::b(published.len() as u64),
            registry.file_hash("test/site", "1.0.0", "v3"),
            registry.endpoint
        )
    );
    // Exactly what `wcgi pack` writes for the directory.
    let packed = site.path().join("packed.webc");
    pack(site.path(), &packed, "3");
    assert_eq!(published, std::fs::read(&packed).unwrap());

    // The version and metadata are the registry's.
    let tagged = registry.tagged();
    assert_eq!(tagged.len(), 1);
    let wasmer_toml = std::fs::read_to_string(site.path().join("wasmer.toml")).unwrap();
    for (field, value) in [
        ("namespace", "test"),
        ("name", "site"),
        ("version", "1.0.0"),
        ("description", "A site"),
        ("license", "MIT"),
        ("readme", README),
        ("repository", "https://example.com/site"),
        ("manifest", wasmer_toml.as_str()),
    ] {
        assert_eq!(tagged[0][field], value, "{field}");
    }

    // The token goes to the registry, never to the upload host.
    let seen = registry.seen();
    let uploads: Vec<_> = seen
        .iter()
        .filter(|(path, _)| path.starts_with("/uploads/"))
        .collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].1, None);
    for (path, auth) in seen.iter().filter(|(path, _)| path == "/graphql") {
        assert_eq!(auth.as_deref(), Some("Bearer secret"), "{path}");
    }

    // Served, described and pulled by name from fresh caches.
    let fresh = tempfile::tempdir().unwrap();
    let fresh_cache = fresh.path().display().to_string();
    let by_name = [
        "test/site@1.0.0",
        "--registry",
        &registry.endpoint,
        "--token",
        "secret",
        "--cache-dir",
        &fresh_cache,
    ];
    let server = Server::start(&by_name);
    assert_eq!(
        server.get_text("/"),
        (200, "Hello from WebAssembly!\n".to_string())
    );
    drop(server);
    let inspect = run_wcgi(&[&["inspect"][..], &by_name].concat());
    let description = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        description.starts_with("test/site 1.0.0  "),
        "{description}"
    );
    let (code, said, stderr) = publisher.wcgi("pull", &[&name, &token[0], &token[1]]);
    assert_eq!(code, Some(0), "{stderr}");
    let path = said.trim().rsplit(" into ").next().unwrap();
    assert_eq!(std::fs::read(path).unwrap(), published, "{said}");

    // A version is published once.
    assert_eq!(
        publisher.refused(site.path(), &["--token", "secret"]),
        format!(
            "error: test/site@1.0.0 is already in the registry at {}; a version is never \
             replaced, so raise `version` in wasmer.toml",
            registry.endpoint
        )
    );
    assert_eq!(registry.tagged().len(), 1);
}

#[test]
fn a_webc_is_published_unchanged_and_a_dry_run_sends_nothing() {
    let publisher = Publisher::new();
    let registry = &publisher.registry;
    let site = site_package(Some("1.0.0"));
    let container = site.path().join("site.webc");
    pack(site.path(), &container, "3");
    let bytes = std::fs::read(&container).unwrap();

    let (code, stdout, stderr) = publisher.publish(&container, &["--dry-run"]);
    assert_eq!(code, Some(0), "{stderr}");
    let sha256 = {
        use sha2::Digest;
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(
        stdout,
        format!(
            "Would publish test/site@1.0.0 ({}, sha256:{sha256}) to {}\n\
             \x20 description: A site\n\
             \x20 license: MIT\n\
             \x20 readme: {} bytes\n\
             \x20 repository: https://example.com/site\n\
             Dry run: nothing was sent.\n",
            bytesize::ByteSize::b(bytes.len() as u64),
            registry.endpoint,
            README.len()
        )
    );
    assert!(registry.seen().is_empty(), "{:?}", registry.seen());

    let (code, _, stderr) = publisher.publish(
        &container,
        &[
            "--token",
            "secret",
            "--namespace",
            "other",
            "--name",
            "copy",
        ],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(registry.published_container("other/copy", "1.0.0"), bytes);
    assert_eq!(registry.tagged()[0]["readme"], README);
}

#[test]
fn what_cannot_be_published_is_refused_in_one_line() {
    let publisher = Publisher::new();
    let registry = &publisher.registry;
    let site = site_package(Some("1.0.0"));
    let endpoint = &registry.endpoint;
    assert_eq!(
        publisher.refused(site.path(), &[]),
        format!(
            "error: publishing to {endpoint} needs a token: pass --token, set WCGI_TOKEN (or \
             WASMER_TOKEN), or log in with `wasmer login`"
        )
    );
    assert_eq!(
        publisher.refused(site.path(), &["--token", "wrong"]),
        format!(
            "error: the registry at {endpoint} refused the request (401 Unauthorized); pass a \
             valid token with --token or WCGI_TOKEN"
        )
    );
    let unversioned = site_package(None);
    assert_eq!(
        publisher.refused(unversioned.path(), &["--token", "secret"]),
        format!(
            "error: {} has no version to publish; set `version = \"0.1.0\"` under [package] in \
             wasmer.toml",
            unversioned.path().display()
        )
    );
    registry.limit_uploads(1024);
    let refusal = publisher.refused(site.path(), &["--token", "secret"]);
    assert!(
        refusal.starts_with("error: the registry refuses a package this large (")
            && refusal.ends_with(
                "): packages are limited to 1 KiB; leave out what it need not carry (a \
                 .wasmerignore file lists what `wcgi pack` skips)"
            ),
        "{refusal}"
    );
    assert!(registry.tagged().is_empty());
}
