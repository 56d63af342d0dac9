//! `wcgi new`: every template creates a project that builds and serves.

mod common;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use common::{Server, check_served, client, new_project, run_wcgi};

#[test]
fn the_rust_template_builds_and_serves() {
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("my-site");
    new_project(&project, "rust", None);
    for file in [
        "Cargo.toml",
        "src/main.rs",
        "wasmer.toml",
        "README.md",
        ".gitignore",
    ] {
        assert!(project.join(file).is_file(), "{file}");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip1"])
        .current_dir(&project)
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .unwrap();
    assert!(status.success());
    let server = Server::start(&[&project]);
    check_served(&server, "Hello, world!");
    assert!(server.get_text("/?name=Bob").1.contains("Hello, Bob!"));
}

/// Debian's wasi-libc, where `scripts/test` also looks for it.
const WASI_LIBC: &str = "/usr/lib/wasm32-wasi/libc.a";

#[test]
fn the_c_template_builds_and_serves() {
    // scripts/test installs Debian's clang-14 and wasi-libc where it runs as root (CI), and
    // then requires this tier (WCGI_REQUIRE_TIERS=c).
    if common::find_on_path("clang-14").is_none() || !Path::new(WASI_LIBC).is_file() {
        common::skip_tier(
            "c",
            &format!(
                "clang-14 or {WASI_LIBC} is missing (apt-get install clang-14 lld-14 wasi-libc \
                 libclang-rt-dev-wasm32)"
            ),
        );
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("csite");
    new_project(&project, "c", None);
    let status = Command::new("./build.sh")
        .current_dir(&project)
        .status()
        .unwrap();
    assert!(status.success());
    let server = Server::start(&[&project]);
    check_served(&server, "Hello from C!");
}

#[test]
fn the_c_build_script_names_the_packages_when_clang_is_missing() {
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join("csite");
    new_project(&project, "c", None);
    // A PATH with the tools the script needs but no clang.
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let dirname = common::find_on_path("dirname").expect("dirname");
    std::os::unix::fs::symlink(dirname, bin.join("dirname")).unwrap();
    let output = Command::new("/bin/sh")
        .arg(project.join("build.sh"))
        .env("PATH", &bin)
        .env_remove("CLANG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apt-get install clang-14 lld-14 wasi-libc libclang-rt-dev-wasm32"),
        "{stderr}"
    );
    assert!(!project.join("main.wasm").exists());
}

#[test]
fn list_shows_every_template() {
    let output = run_wcgi(&["new", "--list"]);
    assert!(output.status.success());
    let listing = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(names, ["rust", "c", "python", "php"], "{listing}");
}

#[test]
fn a_non_empty_directory_is_refused_unless_forced() {
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("notes.txt"), "mine").unwrap();
    let output = run_wcgi(&[
        OsString::from("new"),
        work.path().into(),
        "-t".into(),
        "rust".into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("is not empty") && stderr.contains("--force"),
        "{stderr}"
    );
    assert!(!work.path().join("wasmer.toml").exists());

    let output = run_wcgi(&[
        OsString::from("new"),
        work.path().into(),
        "-t".into(),
        "rust".into(),
        "--force".into(),
    ]);
    assert!(output.status.success());
    assert!(work.path().join("wasmer.toml").is_file());
    assert_eq!(
        std::fs::read_to_string(work.path().join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn an_unknown_template_lists_the_known_ones() {
    let work = tempfile::tempdir().unwrap();
    let output = run_wcgi(&[
        OsString::from("new"),
        work.path().join("x").into(),
        "-t".into(),
        "cobol".into(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("unknown template \"cobol\" (templates: rust, c, python, php)"),
        "{stderr}"
    );
}

/// A project from the python template, with the project-built interpreter.
fn python_project(work: &Path) -> std::path::PathBuf {
    let interpreter = common::python_interpreter().join("python.wasm");
    let project = work.join("pysite");
    new_project(&project, "python", Some(&interpreter));
    project
}

/// Serves `project` with its `app/` mapped, plus `extra` flags, and checks that the
/// interpreter runs from a snapshot unless `--no-preinit` is among them.
fn serve_python(project: &Path, mapdirs: &[&str], extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![project.into()];
    for dir in ["app"].iter().chain(mapdirs) {
        args.push("--mapdir".into());
        args.push(format!("/{dir}:{}", project.join(dir).display()).into());
    }
    args.extend(extra.iter().map(OsString::from));
    let server = Server::start(&args);
    let snapshot = !extra.contains(&"--no-preinit");
    assert_eq!(
        server.log_contains("pre-initialised with `wizer.initialize`"),
        snapshot,
        "{}",
        server.logs()
    );
    server
}

/// Adds `module` to the template's `WCGI_PYTHON_PREIMPORT` list in `project`'s manifest.
fn add_preimport(project: &Path, module: &str) {
    let path = project.join("wasmer.toml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    let list_end = "urllib.parse\"";
    assert!(manifest.contains(list_end), "{manifest}");
    let manifest = manifest.replace(list_end, &format!("urllib.parse {module}\""));
    std::fs::write(path, manifest).unwrap();
}

#[test]
fn the_python_template_serves_forms_json_sqlite_and_live_edits() {
    check_python_template_site(&[]);
}

#[test]
fn the_python_template_serves_forms_json_sqlite_and_live_edits_without_a_snapshot() {
    check_python_template_site(&["--no-preinit"]);
}

fn check_python_template_site(extra: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let project = python_project(work.path());
    std::fs::create_dir(project.join("data")).unwrap();
    let server = serve_python(&project, &["data"], extra);

    check_served(&server, "Hello, world!");
    assert!(server.get_text("/?name=Bob").1.contains("Hello, Bob!"));

    let response = server.get("/api?x=1");
    assert_eq!(response.headers()["content-type"], "application/json");
    let json: serde_json::Value = response.json().unwrap();
    assert_eq!(json["method"], "GET");
    assert_eq!(json["query"]["x"][0], "1");

    for expected in 1..=3 {
        assert_eq!(
            server.get_text("/count"),
            (200, format!("visits: {expected}\n"))
        );
    }

    let script = project.join("app/index.py");
    let edited = std::fs::read_to_string(&script)
        .unwrap()
        .replace("Hello, ", "Howdy, ");
    std::fs::write(&script, edited).unwrap();
    assert!(server.get_text("/").1.contains("Howdy, world!"));
}

#[test]
fn each_python_request_sees_its_own_environment_argv_and_stdin_and_an_exception_costs_one() {
    check_python_requests_are_their_own(&[]);
}

#[test]
fn each_python_request_sees_its_own_environment_argv_and_stdin_without_a_snapshot() {
    check_python_requests_are_their_own(&["--no-preinit"]);
}

fn check_python_requests_are_their_own(extra: &[&str]) {
    let work = tempfile::tempdir().unwrap();
    let project = python_project(work.path());
    // `random` is imported into the snapshot, so each request must re-seed it.
    add_preimport(&project, "random");
    std::fs::write(
        project.join("app/index.py"),
        "import os, random, sys\n\
         query = os.environ.get('QUERY_STRING', '')\n\
         if query == 'raise':\n    raise RuntimeError('boom')\n\
         if query == 'leave-open':\n    left = open('/data/left-open.txt', 'w')\n    left.write('kept')\n\
         body = sys.stdin.read()\n\
         print('Content-Type: text/plain')\n\
         print('X-Random: %r' % random.random())\nprint()\n\
         print('query=' + query)\n\
         print('bytes=' + os.environb.get(b'QUERY_STRING', b'').decode())\n\
         print('probe=' + os.environ.get('HTTP_X_PROBE', '-'))\n\
         print('argv=' + ' '.join(sys.argv[1:]))\n\
         print('stdin=' + body)\n",
    )
    .unwrap();
    std::fs::create_dir(project.join("data")).unwrap();
    let mut args = extra.to_vec();
    args.extend(["--", "one", "two"]);
    let server = serve_python(&project, &["data"], &args);
    let send = |request: reqwest::blocking::RequestBuilder| {
        let response = request.send().unwrap();
        assert_eq!(response.status(), 200);
        let random = response.headers()["x-random"].to_str().unwrap().to_owned();
        (random, response.text().unwrap())
    };
    let (first_random, first) = send(client().get(server.url("/?a=1")).header("X-Probe", "p"));
    assert_eq!(
        first,
        "query=a=1\nbytes=a=1\nprobe=p\nargv=one two\nstdin=\n"
    );
    let (second_random, second) = send(client().post(server.url("/?b=2")).body("hello"));
    assert_eq!(
        second,
        "query=b=2\nbytes=b=2\nprobe=-\nargv=one two\nstdin=hello\n"
    );
    assert_ne!(
        first_random, second_random,
        "random repeats across requests"
    );
    // An exception is that request's 500, with its traceback in the log; the next is whole.
    assert_eq!(server.get_text("/?raise").0, 500);
    assert!(
        server.log_contains("RuntimeError: boom"),
        "{}",
        server.logs()
    );
    // A file the script leaves open is flushed and closed when it ends, as by finalisation.
    assert_eq!(server.get_text("/?leave-open").0, 200);
    assert_eq!(
        std::fs::read_to_string(project.join("data/left-open.txt")).unwrap(),
        "kept"
    );
    assert_eq!(
        server.get_text("/?c=3"),
        (
            200,
            "query=c=3\nbytes=c=3\nprobe=-\nargv=one two\nstdin=\n".into()
        )
    );
}

#[test]
fn a_python_module_that_cannot_be_pre_imported_stops_the_start() {
    let work = tempfile::tempdir().unwrap();
    let project = python_project(work.path());
    add_preimport(&project, "nosuchmodule");
    let app = format!("/app:{}", project.join("app").display());
    let output = run_wcgi(&[
        OsString::from("run"),
        project.into(),
        "--mapdir".into(),
        app.into(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("python: WCGI_PYTHON_PREIMPORT: cannot import nosuchmodule:")
            && stderr.contains("ModuleNotFoundError: No module named 'nosuchmodule'"),
        "{stderr}"
    );
    assert!(
        stderr.lines().any(|line| line
            == "error: command \"pysite\": pre-initialisation failed (--no-preinit serves it \
                without): the init function `wizer.initialize` exited (status 1) instead of \
                returning"),
        "{stderr}"
    );
}

/// A template whose interpreter is the registry package `package`: served through a local
/// registry, then again with the registry gone and `--offline`, from the cache.
fn check_interpreter_from_registry(template: &str, package: &str, version: &str, built: &Path) {
    let work = tempfile::tempdir().unwrap();
    let registry = common::registry::LocalRegistry::start();
    let cache = work.path().join("cache");
    let with_registry = |args: &[&std::ffi::OsStr], cache: &Path| {
        let mut all: Vec<OsString> = args.iter().map(|a| a.to_os_string()).collect();
        all.extend(["--registry".into(), registry.endpoint.clone().into()]);
        all.extend(["--cache-dir".into(), cache.into()]);
        all
    };
    // The interpreter, published as the release steps publish it.
    let publish = |dir: &Path, extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "publish".as_ref(),
            dir.as_os_str(),
            "--token".as_ref(),
            "t".as_ref(),
        ];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let output = run_wcgi(&with_registry(&args, &work.path().join("publisher")));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
    };
    publish(built, &[]);
    assert_eq!(
        registry.tagged()[0]["name"],
        package.split_once('/').unwrap().1
    );
    assert_eq!(registry.tagged()[0]["version"], version);

    // `wcgi new` fetches it, and `wcgi run` serves the project with no --interpreter.
    let project = work.path().join("site");
    let new = run_wcgi(&with_registry(
        &[
            "new".as_ref(),
            project.as_os_str(),
            "--template".as_ref(),
            template.as_ref(),
        ],
        &cache,
    ));
    let stderr = String::from_utf8_lossy(&new.stderr);
    assert!(
        new.status.success() && !stderr.contains("warning"),
        "{stderr}"
    );
    let mut args = with_registry(&[project.as_os_str()], &cache);
    let server = Server::start(&args);
    assert!(server.get_text("/").1.contains("Hello, world!"));
    drop(server);

    // The site published too, and served by name from a fresh cache.
    publish(&project, &["--namespace", "test", "--name", "site"]);
    let fresh = work.path().join("fresh");
    let server = Server::start(&with_registry(&["test/site@0.1.0".as_ref()], &fresh));
    assert!(server.get_text("/").1.contains("Hello, world!"));
    drop(server);

    drop(registry);
    args.push("--offline".into());
    let server = Server::start(&args);
    let page = server.get_text("/?name=offline").1;
    assert!(page.contains("Hello, offline!"), "{page}");
}

#[test]
fn a_template_whose_interpreter_the_registry_lacks_says_how_to_get_one() {
    let work = tempfile::tempdir().unwrap();
    let registry = common::registry::LocalRegistry::start();
    let project = work.path().join("site");
    let output = run_wcgi(&[
        OsString::from("new"),
        project.clone().into(),
        "--template".into(),
        "php".into(),
        "--registry".into(),
        registry.endpoint.clone().into(),
        "--cache-dir".into(),
        work.path().join("cache").into(),
    ]);
    assert!(output.status.success());
    assert!(
        project.join("wasmer.toml").is_file(),
        "the project is written"
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "warning: dependency wcgi/php@^8.2 of command \"site\": package wcgi/php was not \
             found in the registry at {}. The project is written; to serve it, use --registry \
             with a registry that has this package, or make the project again with \
             --interpreter DIR, DIR being what interpreters/php/build.sh in the wcgi \
             repository prints\n",
            registry.endpoint
        )
    );
}

#[test]
fn the_python_template_gets_its_interpreter_from_a_registry() {
    let built = common::python_interpreter();
    check_interpreter_from_registry("python", "wcgi/python", "3.11.2", &built);
}

#[test]
fn the_php_template_gets_its_interpreter_from_a_registry() {
    let built = common::php_interpreter();
    check_interpreter_from_registry("php", "wcgi/php", "8.2.32", &built);
}
