//! Registry packages against a local server speaking the Wasmer registry protocol: by name,
//! range, hash and URL; archived and v2-only versions; tokens; gzip; the verified cache and
//! `--offline`.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use common::registry::LocalRegistry;
use common::{Server, fixture, run_wcgi};

/// Packs the env fixture with `PACKAGE_VERSION=<version>` in its annotation env; returns
/// (v3, v2) container paths.
fn env_containers(dir: &Path, version: &str) -> (PathBuf, PathBuf) {
    let package = dir.join(format!("src-{version}"));
    std::fs::create_dir_all(&package).unwrap();
    std::fs::write(
        package.join("wasmer.toml"),
        format!(
            "[package]\nname = \"test/env\"\nversion = \"{version}\"\n\n[[module]]\nname = \"env\"\nsource = \"{}\"\nabi = \"wasi\"\n\n\
             [[command]]\nname = \"env\"\nmodule = \"env\"\nrunner = \"wcgi\"\n\n[command.annotations.wasi]\nenv = [\"PACKAGE_VERSION={version}\"]\n",
            fixture("env").display()
        ),
    )
    .unwrap();
    let mut outputs = Vec::new();
    for format in ["3", "2"] {
        let output = dir.join(format!("env-{version}-v{format}.webc"));
        common::pack(&package, &output, format);
        outputs.push(output);
    }
    (outputs[0].clone(), outputs[1].clone())
}

struct Setup {
    registry: LocalRegistry,
    cache: tempfile::TempDir,
    _work: tempfile::TempDir,
}

/// A registry with test/env 1.0.0, 1.1.0, 1.2.0-beta.1, 2.0.0 (archived), and test/old
/// (v2 only).
fn setup() -> Setup {
    let work = tempfile::tempdir().unwrap();
    let registry = LocalRegistry::start();
    for (version, archived) in [
        ("1.0.0", false),
        ("1.1.0", false),
        ("1.2.0-beta.1", false),
        ("2.0.0", true),
    ] {
        let (v3, v2) = env_containers(work.path(), version);
        registry.publish("test/env", version, Some(&v3), Some(&v2), archived);
    }
    let (_, v2) = env_containers(work.path(), "0.9.0");
    registry.publish("test/old", "0.9.0", None, Some(&v2), false);
    Setup {
        registry,
        cache: tempfile::tempdir().unwrap(),
        _work: work,
    }
}

impl Setup {
    fn args(&self, command: &str, package: &str, extra: &[&str]) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![command.into(), package.into()];
        args.extend(["--registry".into(), self.registry.endpoint.clone().into()]);
        args.extend(["--cache-dir".into(), self.cache.path().into()]);
        args.extend(extra.iter().map(OsString::from));
        args
    }

    /// Runs `wcgi COMMAND PACKAGE --registry .. --cache-dir .. EXTRA`; (success, stdout, stderr).
    fn wcgi(&self, command: &str, package: &str, extra: &[&str]) -> (bool, String, String) {
        let output = run_wcgi(&self.args(command, package, extra));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr,
        )
    }

    fn serve(&self, package: &str, extra: &[&str]) -> Server {
        let args = self.args("", package, extra);
        Server::start(&args[1..])
    }
}

fn served_version(server: &Server) -> String {
    let (status, text) = server.get_text("/");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix("PACKAGE_VERSION="))
        .unwrap()
        .to_string()
}

#[test]
fn run_by_name_serves_the_newest_release_then_works_offline() {
    let setup = setup();
    {
        let server = setup.serve("test/env", &[]);
        // 2.0.0 is archived and 1.2.0-beta.1 a pre-release: 1.1.0 is the newest.
        assert_eq!(served_version(&server), "1.1.0");
    }
    let endpoint = setup.registry.endpoint.clone();
    drop(setup.registry);
    let args: Vec<OsString> = vec![
        "test/env".into(),
        "--registry".into(),
        endpoint.into(),
        "--cache-dir".into(),
        setup.cache.path().into(),
        "--offline".into(),
    ];
    let server = Server::start(&args);
    assert_eq!(served_version(&server), "1.1.0");
}

#[test]
fn ranges_exact_versions_and_prereleases_select_the_right_release() {
    let setup = setup();
    for (reference, expected) in [
        ("test/env@1.0", "1.1.0"),
        ("test/env@=1.0.0", "1.0.0"),
        ("test/env@~1.0", "1.0.0"),
        ("test/env@>=1.2.0-beta.1", "1.2.0-beta.1"),
        ("test/env@latest", "1.1.0"),
    ] {
        let (ok, stdout, stderr) = setup.wcgi("inspect", reference, &[]);
        assert!(ok, "{reference}: {stderr}");
        assert!(
            stdout.starts_with(&format!("test/env {expected}  (.webc v3 container)")),
            "{reference}: {stdout}"
        );
    }
}

#[test]
fn versions_that_do_not_match_are_listed() {
    let setup = setup();
    let (ok, _, stderr) = setup.wcgi("inspect", "test/env@2", &[]);
    assert!(!ok);
    assert!(
        stderr
            .contains("no version of test/env matches ^2 (available: 1.0.0, 1.1.0, 1.2.0-beta.1)"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let (ok, _, stderr) = setup.wcgi("run", "test/missing", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("package test/missing was not found in the registry at http://127.0.0.1"),
        "{stderr}"
    );

    let (ok, _, stderr) = setup.wcgi("inspect", "test/env@beta", &[]);
    assert!(!ok);
    assert!(stderr.contains("named tags are not supported"), "{stderr}");
}

#[test]
fn a_v2_only_package_is_served() {
    let setup = setup();
    let (ok, stdout, stderr) = setup.wcgi("inspect", "test/old", &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("test/old 0.9.0  (.webc v2 container)"),
        "{stdout}"
    );
    let server = setup.serve("test/old", &[]);
    assert_eq!(served_version(&server), "0.9.0");
}

#[test]
fn releases_by_hash_and_by_url() {
    let setup = setup();
    let hash = setup.registry.file_hash("test/env", "1.0.0", "v3");
    let (ok, stdout, stderr) = setup.wcgi("pull", &format!("sha256:{hash}"), &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains(&format!("(sha256:{hash})")), "{stdout}");
    let server = setup.serve(&format!("sha256:{hash}"), &[]);
    assert_eq!(served_version(&server), "1.0.0");

    let url = format!("{}/files/test-env-1.1.0-v2.webc", setup.registry.base);
    let server = setup.serve(&url, &[]);
    assert_eq!(served_version(&server), "1.1.0");
}

#[test]
fn the_token_goes_to_the_registry_host_only() {
    let setup = setup();
    setup.registry.require_token("s3cret");
    let (ok, _, stderr) = setup.wcgi("pull", "test/env", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("refused the request (401 Unauthorized); pass a valid token with --token"),
        "{stderr}"
    );

    let (ok, _, stderr) = setup.wcgi("pull", "test/env@=1.0.0", &["--token", "s3cret"]);
    assert!(ok, "{stderr}");
    let seen = setup.registry.seen();
    assert!(seen.iter().any(
        |(path, auth)| path.starts_with("/files/") && auth.as_deref() == Some("Bearer s3cret")
    ));
}

#[test]
fn no_token_for_downloads_from_another_host() {
    let setup = setup();
    setup.registry.serve_from_foreign_host("test/env");
    let (ok, _, stderr) = setup.wcgi("pull", "test/env", &["--token", "s3cret"]);
    assert!(ok, "{stderr}");
    let seen = setup.registry.seen();
    assert!(
        seen.iter()
            .any(|(path, auth)| path == "/graphql" && auth.as_deref() == Some("Bearer s3cret"))
    );
    let downloads: Vec<_> = seen
        .iter()
        .filter(|(path, _)| path.starts_with("/files/"))
        .collect();
    assert!(!downloads.is_empty());
    assert!(
        downloads.iter().all(|(_, auth)| auth.is_none()),
        "{downloads:?}"
    );
}

#[test]
fn gzip_encoded_downloads_are_decoded_and_verified() {
    let setup = setup();
    setup.registry.set_gzip(true);
    let (ok, stdout, stderr) = setup.wcgi("pull", "test/env", &[]);
    assert!(ok, "{stderr}");
    let hash = setup.registry.file_hash("test/env", "1.1.0", "v3");
    let cached = setup.cache.path().join(format!("packages/{hash}.webc"));
    assert!(stdout.contains(&cached.display().to_string()), "{stdout}");
    assert!(std::fs::read(&cached).unwrap().starts_with(b"\0webc003"));
    // gzip was offered, and the one download really came compressed.
    let asked = setup.registry.download_encodings();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].1.as_deref().is_some_and(|v| v.contains("gzip")),
        "{asked:?}"
    );
    assert_eq!(setup.registry.gzipped(), 1);
}

#[test]
fn a_corrupt_cache_entry_is_fetched_again() {
    let setup = setup();
    let (ok, _, _) = setup.wcgi("pull", "test/env", &[]);
    assert!(ok);
    let hash = setup.registry.file_hash("test/env", "1.1.0", "v3");
    let cached = setup.cache.path().join(format!("packages/{hash}.webc"));
    std::fs::write(&cached, b"\0webc003 damaged").unwrap();
    let (ok, _, stderr) = setup.wcgi("pull", "test/env", &[]);
    assert!(ok, "{stderr}");
    assert!(stderr.contains("corrupt"), "{stderr}");
    assert!(std::fs::read(&cached).unwrap().len() > 1000);
}

#[test]
fn a_download_that_does_not_match_its_hash_is_refused() {
    let setup = setup();
    setup.registry.lie_about_hashes();
    let (ok, _, stderr) = setup.wcgi("pull", "test/env", &[]);
    assert!(!ok);
    assert!(stderr.contains("does not match its hash"), "{stderr}");
    assert!(
        std::fs::read_dir(setup.cache.path().join("packages"))
            .map_or(true, |mut d| d.next().is_none())
    );
}

#[test]
fn offline_without_a_cached_package_says_so() {
    let setup = setup();
    let (ok, _, stderr) = setup.wcgi("run", "test/env", &["--offline"]);
    assert!(!ok);
    assert!(stderr.contains("--offline"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn two_concurrent_pulls_of_the_same_package_both_succeed() {
    let setup = setup();
    let args = setup.args("pull", "test/env", &[]);
    let pulls: Vec<_> = (0..2)
        .map(|_| {
            let args = args.clone();
            std::thread::spawn(move || run_wcgi(&args))
        })
        .collect();
    for pull in pulls {
        let output = pull.join().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let server = setup.serve("test/env", &["--offline"]);
    assert_eq!(served_version(&server), "1.1.0");
}

/// Against the public Wasmer registry; needs the internet: `cargo test -- --ignored`.
#[test]
#[ignore = "needs network access to registry.wasmer.io"]
fn the_public_registry_answers() {
    let cache = tempfile::tempdir().unwrap();
    let output = run_wcgi(&[
        OsString::from("inspect"),
        "wasmer/hello".into(),
        "--cache-dir".into(),
        cache.path().into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("wasmer/hello "));
}

#[test]
fn a_command_can_run_a_module_of_a_dependency() {
    let setup = setup();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(
        app.path().join("wasmer.toml"),
        "[package]\nname = \"test/app\"\nversion = \"0.1.0\"\n\n[dependencies]\n\"test/env\" = \"^1\"\n\n\
         [[command]]\nname = \"site\"\nmodule = \"test/env:env\"\nrunner = \"wcgi\"\n\n\
         [command.annotations.wasi]\nenv = [\"PACKAGE_VERSION=app\"]\n",
    )
    .unwrap();
    let (ok, stdout, stderr) = setup.wcgi("inspect", &app.path().display().to_string(), &[]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("module: test/env:env (dependency, test/env@^1)"),
        "{stdout}"
    );

    let server = setup.serve(&app.path().display().to_string(), &[]);
    let (status, text) = server.get_text("/");
    assert_eq!(status, 200, "{text}");
    // The dependency's module runs as this package's command, with this command's annotations.
    assert!(
        text.contains("ARG 0=site") && text.contains("PACKAGE_VERSION=app"),
        "{text}"
    );
    drop(server);

    // Packed, the dependency travels in the container's `use` map and resolves the same way.
    let container = app.path().join("app.webc");
    let container_arg = container.display().to_string();
    common::pack(app.path(), &container, "3");
    let server = setup.serve(&container_arg, &[]);
    let (status, text) = server.get_text("/");
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("ARG 0=site") && text.contains("PACKAGE_VERSION=app"),
        "{text}"
    );

    std::fs::write(
        app.path().join("wasmer.toml"),
        "[[command]]\nname = \"site\"\nmodule = \"test/env:nope\"\nrunner = \"wcgi\"\n\n[dependencies]\n\"test/env\" = \"^1\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = setup.wcgi("run", &app.path().display().to_string(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("has no module \"nope\" (modules: env)"),
        "{stderr}"
    );
}

#[test]
fn the_token_saved_by_wasmer_login_is_used_for_its_registry() {
    let setup = setup();
    setup.registry.require_token("from-login");
    let wasmer_dir = tempfile::tempdir().unwrap();
    std::fs::write(
        wasmer_dir.path().join("wasmer.toml"),
        format!(
            "[registry]\nactive_registry = \"{0}\"\n\n[[registry.tokens]]\nregistry = \"https://registry.wasmer.io/graphql\"\ntoken = \"other\"\n\n\
             [[registry.tokens]]\nregistry = \"{0}\"\ntoken = \"from-login\"\n",
            setup.registry.endpoint
        ),
    )
    .unwrap();
    let output = common::run_wcgi_with_env(
        &setup.args("pull", "test/env", &[]),
        &[("WASMER_DIR", wasmer_dir.path().as_os_str())],
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let seen = setup.registry.seen();
    assert!(
        seen.iter()
            .all(|(_, auth)| auth.as_deref() == Some("Bearer from-login")),
        "{seen:?}"
    );
}

#[test]
fn an_unreachable_registry_and_an_archived_only_package_are_explained() {
    let setup = setup();
    let (_, v3) = env_containers(setup._work.path(), "3.0.0");
    setup
        .registry
        .publish("test/gone", "3.0.0", None, Some(&v3), true);
    let (ok, _, stderr) = setup.wcgi("inspect", "test/gone", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("package test/gone has only archived versions"),
        "{stderr}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let output = run_wcgi(&[
        OsString::from("pull"),
        "test/env".into(),
        "--registry".into(),
        format!("http://{closed}/graphql").into(),
        "--cache-dir".into(),
        setup.cache.path().into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach the registry at") && stderr.contains("--offline"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// Every cached registry answer, made older than the cache's 10 minutes.
fn age_cached_answers(cache: &Path) {
    let an_hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let entries = std::fs::read_dir(cache.join("queries")).expect("cached answers");
    let mut aged = 0;
    for entry in entries {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(an_hour_ago).unwrap();
        aged += 1;
    }
    assert!(aged > 0, "no registry answer was cached");
}

#[test]
fn registry_answers_are_cached_for_ten_minutes_then_asked_again() {
    let setup = setup();
    let (ok, _, stderr) = setup.wcgi("inspect", "test/env", &[]);
    assert!(ok, "{stderr}");
    let asked = setup.registry.queries();
    assert_eq!(asked, 1);

    // A fresh answer is used without asking again.
    let (ok, stdout, stderr) = setup.wcgi("inspect", "test/env", &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.starts_with("test/env 1.1.0 "), "{stdout}");
    assert_eq!(setup.registry.queries(), 1);

    // A stale one is asked again, and the new answer counts.
    age_cached_answers(setup.cache.path());
    setup.registry.publish(
        "test/env",
        "1.3.0",
        Some(env_containers(setup._work.path(), "1.3.0").0.as_path()),
        None,
        false,
    );
    let (ok, stdout, stderr) = setup.wcgi("inspect", "test/env", &[]);
    assert!(ok, "{stderr}");
    assert_eq!(setup.registry.queries(), 2);
    assert!(stdout.starts_with("test/env 1.3.0 "), "{stdout}");
}

#[test]
fn a_stale_answer_is_used_when_the_registry_is_down() {
    let setup = setup();
    {
        let server = setup.serve("test/env", &[]);
        assert_eq!(served_version(&server), "1.1.0");
    }
    age_cached_answers(setup.cache.path());
    let args = setup.args("", "test/env", &[]);
    drop(setup.registry);

    // Not --offline: the registry is asked, cannot be reached, and its last answer serves.
    let server = Server::start(&args[1..]);
    assert_eq!(served_version(&server), "1.1.0");
    assert!(
        server.log_contains("; using its last answer from the cache"),
        "{}",
        server.logs()
    );
}

#[test]
fn the_registry_and_the_token_come_from_the_environment() {
    let setup = setup();
    setup.registry.require_token("from-env");
    let cache = tempfile::tempdir().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let unreachable_url = format!("http://{closed}/graphql");
    let unreachable: &str = &unreachable_url;
    let endpoint: &str = &setup.registry.endpoint;
    let pull_with = |flags: &[&str], env: &[(&str, &str)]| {
        let env: Vec<(&str, &std::ffi::OsStr)> = env
            .iter()
            .map(|(key, value)| (*key, std::ffi::OsStr::new(value)))
            .collect();
        let mut args: Vec<OsString> = vec![
            "pull".into(),
            "test/env@=1.0.0".into(),
            "--cache-dir".into(),
            cache.path().into(),
        ];
        args.extend(flags.iter().map(OsString::from));
        let output = common::run_wcgi_with_env(&args, &env);
        let _ = std::fs::remove_dir_all(cache.path().join("queries"));
        let _ = std::fs::remove_dir_all(cache.path().join("packages"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let pull = |env: &[(&str, &str)]| pull_with(&[], env);
    let bearer = |token: &str| {
        let wanted = format!("Bearer {token}");
        setup
            .registry
            .seen()
            .iter()
            .any(|(_, auth)| auth.as_deref() == Some(wanted.as_str()))
    };

    for (registry_var, token_var) in [
        ("WCGI_REGISTRY", "WCGI_TOKEN"),
        ("WASMER_REGISTRY", "WASMER_TOKEN"),
    ] {
        let (ok, stderr) = pull(&[(registry_var, endpoint), (token_var, "from-env")]);
        assert!(ok, "{registry_var} and {token_var}: {stderr}");
    }
    assert!(bearer("from-env"));

    // Without the token the registry refuses, so the token really came from the variable.
    let (ok, stderr) = pull(&[("WCGI_REGISTRY", endpoint)]);
    assert!(!ok);
    assert!(
        stderr.contains("refused the request (401 Unauthorized)"),
        "{stderr}"
    );

    // The WCGI_ names win over the WASMER_ ones.
    let (ok, stderr) = pull(&[
        ("WCGI_REGISTRY", endpoint),
        ("WASMER_REGISTRY", unreachable),
        ("WCGI_TOKEN", "from-env"),
        ("WASMER_TOKEN", "wrong"),
    ]);
    assert!(ok, "{stderr}");
    assert!(!bearer("wrong"));
    // And the flags win over both.
    let (ok, stderr) = pull_with(
        &["--registry", endpoint, "--token", "from-flag"],
        &[("WCGI_REGISTRY", unreachable), ("WCGI_TOKEN", "from-env")],
    );
    assert!(!ok);
    assert!(
        stderr.contains("refused the request (401 Unauthorized)"),
        "{stderr}"
    );
    assert!(bearer("from-flag"));
}
