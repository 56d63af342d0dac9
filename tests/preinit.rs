//! Pre-initialisation: a module exporting `wizer.initialize` is started once at start-up and
//! every request instantiates the snapshot of what init left, fresh. The `preinit` fixture
//! fills a table of primes in init and reports where its state came from.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::{Server, fixture_package, run_wcgi};

/// The fixture as a package: `main-args` and an annotation env the init function records.
fn preinit_package(annotations_wcgi: &str) -> tempfile::TempDir {
    fixture_package(
        "preinit",
        "preinit",
        &format!(
            "[command.annotations.wasi]\nmain-args = [\"--flag\"]\n\
             env = [\"PREINIT_MARK=from-annotation\"]\n\n\
             [command.annotations.wcgi]\n{annotations_wcgi}\n"
        ),
    )
}

fn serve(package: &Path, cache: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![package.into(), "--cache-dir".into(), cache.into()];
    args.extend(extra.iter().map(OsString::from));
    Server::start(&args)
}

/// What the fixture answers, line by line, without the prime table's numbers.
fn state_lines(server: &Server, path: &str) -> Vec<String> {
    let (status, body) = server.get_text(path);
    assert_eq!(status, 200, "{body}");
    let mut lines = body.lines().map(String::from);
    assert_eq!(
        lines.next().unwrap(),
        "primes=20000 last=224737 checksum=15278111751987059739",
        "the table must be complete and right, snapshot or not"
    );
    lines.collect()
}

#[test]
fn requests_start_from_the_snapshot_and_read_their_own_environment() {
    let work = tempfile::tempdir().unwrap();
    let package = preinit_package("");
    let server = serve(package.path(), &work.path().join("cache"), &[]);
    assert!(
        server.log_contains("pre-initialised with `wizer.initialize` in"),
        "{}",
        server.logs()
    );

    for query in ["first=1", "second=2"] {
        assert_eq!(
            state_lines(&server, &format!("/x?{query}")),
            [
                "from-snapshot=true init-runs=1",
                "init-saw=from-annotation",
                &format!("query={query}"),
                "mark-now=from-annotation",
                "argv=preinit --flag",
                "big=absent",
                "init-file=-",
                // It read no mount: nothing it was built from can change.
                "snapshot-current=1",
            ],
        );
    }
}

#[test]
fn a_large_snapshot_is_mapped_and_what_a_request_writes_never_reaches_the_next() {
    let work = tempfile::tempdir().unwrap();
    let package = preinit_package("");
    // One instance at a time, so each request reuses the memory the previous one scribbled on.
    let server = serve(
        package.path(),
        &work.path().join("cache"),
        &["--env", "PREINIT_MODE=big", "--max-concurrency", "1"],
    );
    assert!(
        server.log_contains("of initial memory mapped copy-on-write into each instance"),
        "{}",
        server.logs()
    );
    for _ in 0..4 {
        assert_eq!(state_lines(&server, "/")[5], "big=intact");
    }
}

#[test]
fn an_init_function_may_end_with_exit_0() {
    let work = tempfile::tempdir().unwrap();
    let package = preinit_package("");
    let server = serve(
        package.path(),
        &work.path().join("cache"),
        &["--env", "PREINIT_MODE=exit0"],
    );
    assert_eq!(
        state_lines(&server, "/")[..2],
        ["from-snapshot=true init-runs=1", "init-saw=from-annotation"]
    );
}

#[test]
fn preinit_is_off_with_the_flag_or_the_annotation() {
    let work = tempfile::tempdir().unwrap();
    let cold = [
        "from-snapshot=false init-runs=0",
        "init-saw=-",
        "query=q=1",
        "mark-now=from-annotation",
        "argv=preinit --flag",
        "big=absent",
        "init-file=-",
        "snapshot-current=-",
    ];
    let package = preinit_package("");
    let server = serve(
        package.path(),
        &work.path().join("cache"),
        &["--no-preinit"],
    );
    assert_eq!(state_lines(&server, "/?q=1"), cold);
    assert!(!server.log_contains("pre-initialised"), "{}", server.logs());
    drop(server);

    let package = preinit_package("preinit = false");
    let server = serve(package.path(), &work.path().join("cache"), &[]);
    assert_eq!(state_lines(&server, "/?q=1"), cold);
}

#[test]
fn snapshots_are_cached_rebuilt_when_damaged_and_when_an_input_changes() {
    let work = tempfile::tempdir().unwrap();
    let cache = work.path().join("cache");
    let package = preinit_package("");
    let built = "snapshot cached for the next start";
    let reused = "snapshot from the cache";

    let server = serve(package.path(), &cache, &[]);
    assert!(server.log_contains(built), "{}", server.logs());
    drop(server);
    let server = serve(package.path(), &cache, &[]);
    assert!(server.log_contains(reused), "{}", server.logs());
    assert_eq!(
        state_lines(&server, "/")[0],
        "from-snapshot=true init-runs=1"
    );
    drop(server);

    // A damaged entry is noticed and replaced, never served.
    let snapshots: Vec<_> = std::fs::read_dir(cache.join("snapshots"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "wasm"))
        .collect();
    assert_eq!(snapshots.len(), 1, "{snapshots:?}");
    let mut bytes = std::fs::read(&snapshots[0]).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&snapshots[0], &bytes).unwrap();
    let server = serve(package.path(), &cache, &[]);
    assert!(
        server.log_contains("is damaged; pre-initialising again"),
        "{}",
        server.logs()
    );
    assert!(server.log_contains(built), "{}", server.logs());
    assert_eq!(
        state_lines(&server, "/")[0],
        "from-snapshot=true init-runs=1"
    );
    drop(server);

    // What init sees is part of the key: another environment or argv is another snapshot.
    let server = serve(package.path(), &cache, &["--env", "PREINIT_MARK=changed"]);
    assert!(server.log_contains(built), "{}", server.logs());
    assert_eq!(state_lines(&server, "/")[1], "init-saw=changed");
    drop(server);
    let server = serve(package.path(), &cache, &["--", "extra"]);
    assert!(server.log_contains(built), "{}", server.logs());
    assert_eq!(state_lines(&server, "/")[4], "argv=preinit --flag extra");
}

#[test]
fn a_changed_file_in_a_read_only_mount_rebuilds_the_snapshot() {
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::write(conf.join("mark"), "one\n").unwrap();
    // Package [fs] volumes are read-only.
    let package = preinit_package(&format!(
        "\n[fs]\n\"/etc/preinit\" = \"{}\"",
        conf.display()
    ));
    let cache = work.path().join("cache");
    let server = serve(package.path(), &cache, &[]);
    assert_eq!(state_lines(&server, "/")[6], "init-file=one");
    drop(server);

    std::fs::write(conf.join("mark"), "two, longer\n").unwrap();
    let server = serve(package.path(), &cache, &[]);
    assert!(
        server.log_contains("snapshot cached for the next start"),
        "{}",
        server.logs()
    );
    assert_eq!(state_lines(&server, "/")[6], "init-file=two, longer");
}

#[test]
fn requests_are_told_the_snapshot_is_current_until_a_file_it_was_built_from_changes() {
    let work = tempfile::tempdir().unwrap();
    let conf = work.path().join("conf");
    std::fs::create_dir_all(conf.join("sub")).unwrap();
    std::fs::write(conf.join("mark"), "one\n").unwrap();
    let package = preinit_package(&format!(
        "\n[fs]\n\"/etc/preinit\" = \"{}\"",
        conf.display()
    ));
    let cache = work.path().join("cache");
    let server = serve(package.path(), &cache, &[]);
    assert!(
        server.log_contains("2 directories the snapshot was built from are watched"),
        "{}",
        server.logs()
    );
    for _ in 0..2 {
        let lines = state_lines(&server, "/");
        assert_eq!(lines[6..], ["init-file=one", "snapshot-current=1"]);
    }
    drop(server);

    // A cached snapshot too: its key holds the tree as it was when watching began.
    let server = serve(package.path(), &cache, &[]);
    assert!(
        server.log_contains("snapshot from the cache"),
        "{}",
        server.logs()
    );
    assert_eq!(state_lines(&server, "/")[7], "snapshot-current=1");
    // Any change in the tree, even to a file init did not read, and seen by the very next
    // request: it starts after the write has returned.
    std::fs::write(conf.join("sub/other"), "new").unwrap();
    assert_eq!(state_lines(&server, "/")[7], "snapshot-current=-");
    std::fs::remove_file(conf.join("sub/other")).unwrap();
    assert_eq!(
        state_lines(&server, "/")[7],
        "snapshot-current=-",
        "a change is final until the snapshot is taken again"
    );
    assert!(
        server.log_contains("sub/other changed: the snapshot is no longer current"),
        "{}",
        server.logs()
    );
    drop(server);

    // The same directory writable: the snapshot's key knows it by its path only. (And the
    // variable is wcgi's word alone, never the user's environment's.)
    let mapdir = format!("/etc/preinit:{}", conf.display());
    let server = serve(
        package.path(),
        &cache,
        &["--mapdir", &mapdir, "--env", "WCGI_SNAPSHOT_CURRENT=1"],
    );
    assert!(
        server.log_contains("its init read from /etc/preinit, a writable directory"),
        "{}",
        server.logs()
    );
    assert_eq!(
        state_lines(&server, "/")[6..],
        ["init-file=one", "snapshot-current=-"]
    );
}

#[test]
fn an_init_function_that_fails_stops_start_up_with_one_line() {
    let work = tempfile::tempdir().unwrap();
    let package = preinit_package("");
    let error = |mode: &str| {
        let output = run_wcgi(&[
            OsString::from("run"),
            package.path().into(),
            "--cache-dir".into(),
            work.path().join("cache").into(),
            "--env".into(),
            format!("PREINIT_MODE={mode}").into(),
            // Writable, for the `leak-fd` mode.
            "--mapdir".into(),
            format!("/data:{}", work.path().display()).into(),
        ]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        // The progress line ("running `wizer.initialize` …") aside, one line.
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains(" INFO "))
            .collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        lines[0].to_string()
    };
    let prefix = "error: command \"preinit\": pre-initialisation failed (--no-preinit serves it \
                  without): the init function";
    let trapped = error("trap");
    assert!(
        trapped.starts_with(&format!(
            "{prefix} `wizer.initialize` trapped: RuntimeError: unreachable"
        )),
        "{trapped}"
    );
    assert_eq!(
        error("exit"),
        format!("{prefix} `wizer.initialize` exited (status 3) instead of returning")
    );
    let leaked = error("leak-fd");
    assert!(
        leaked.starts_with(&format!("{prefix} left file descriptor "))
            && leaked.ends_with(
                " open; requests would not have it (close every file it opens before returning)"
            ),
        "{leaked}"
    );

    // A named init function must exist.
    let package = preinit_package("preinit = \"no.such.export\"");
    let output = run_wcgi(&[OsString::from("run"), package.path().into()]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "error: command \"preinit\": pre-initialisation failed (--no-preinit serves it without): \
         annotations.wcgi.preinit names `no.such.export`, which the module does not export as a \
         function"
    );
}

#[test]
fn inspect_says_whether_a_command_is_pre_initialised() {
    let inspect = |package: &Path| {
        let output = run_wcgi(&[OsString::from("inspect"), package.into()]);
        assert!(output.status.success());
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let on = inspect(preinit_package("").path());
    assert!(
        on.contains(
            "    pre-initialised: yes, at start-up with `wizer.initialize` (snapshot cached)\n"
        ),
        "{on}"
    );
    let off = inspect(preinit_package("preinit = false").path());
    assert!(
        off.contains("    pre-initialised: no (annotation preinit = false)\n"),
        "{off}"
    );
}

#[test]
fn pack_preinit_embeds_the_snapshot_and_a_run_with_other_inputs_takes_its_own() {
    let work = tempfile::tempdir().unwrap();
    let package = preinit_package("\n[fs]\n\"/etc/preinit\" = \"conf\"");
    std::fs::create_dir(package.path().join("conf")).unwrap();
    std::fs::write(package.path().join("conf/mark"), "packed\n").unwrap();
    let webc = work.path().join("preinit.webc");
    let output = run_wcgi(&[
        OsString::from("pack"),
        package.path().into(),
        "--preinit".into(),
        "-o".into(),
        webc.clone().into(),
        "--cache-dir".into(),
        work.path().join("pack-cache").into(),
    ]);
    assert!(output.status.success(), "{output:?}");

    let inspected = run_wcgi(&[OsString::from("inspect"), webc.clone().into()]);
    let inspected = String::from_utf8_lossy(&inspected.stdout).into_owned();
    assert!(
        inspected.contains("    pre-initialised: yes, snapshot embedded in the package ("),
        "{inspected}"
    );

    // A fresh cache: the snapshot comes from the container, init does not run.
    let cache = work.path().join("cache");
    let server = serve(&webc, &cache, &[]);
    assert!(
        server.log_contains("pre-initialised with `wizer.initialize`: snapshot from the package"),
        "{}",
        server.logs()
    );
    assert!(
        !server.log_contains("ran `wizer.initialize`"),
        "{}",
        server.logs()
    );
    let lines = state_lines(&server, "/?q=1");
    assert_eq!(lines[0], "from-snapshot=true init-runs=1");
    assert_eq!(lines[1], "init-saw=from-annotation");
    assert_eq!(lines[6], "init-file=packed");
    drop(server);

    // Another environment: the embedded snapshot does not fit, one is taken for this run.
    let server = serve(&webc, &cache, &["--env", "PREINIT_MARK=changed"]);
    assert!(
        server.log_contains("the package's snapshot was taken with other inputs"),
        "{}",
        server.logs()
    );
    assert_eq!(state_lines(&server, "/")[1], "init-saw=changed");
    drop(server);

    // A damaged snapshot in the container is noticed and replaced, never served.
    let snapshot = std::fs::read_dir(work.path().join("pack-cache/snapshots"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|e| e == "wasm"))
        .unwrap();
    let snapshot = std::fs::read(snapshot).unwrap();
    let mut container = std::fs::read(&webc).unwrap();
    let at = container
        .windows(snapshot.len())
        .position(|window| window == snapshot)
        .expect("the snapshot is in the container as it is");
    container[at + snapshot.len() / 2] ^= 0xff;
    let damaged = work.path().join("damaged.webc");
    std::fs::write(&damaged, &container).unwrap();
    let server = serve(&damaged, &work.path().join("cache-2"), &[]);
    assert!(
        server.log_contains("the package's snapshot is damaged; pre-initialising again"),
        "{}",
        server.logs()
    );
    assert_eq!(
        state_lines(&server, "/")[0],
        "from-snapshot=true init-runs=1"
    );
}

#[test]
fn pack_preinit_of_a_package_without_an_init_function_is_refused() {
    let package = fixture_package("hello", "hello", "");
    let output = run_wcgi(&[
        OsString::from("pack"),
        package.path().into(),
        "--preinit".into(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        format!(
            "error: --preinit: no command of {} is pre-initialised (none exports \
             `wizer.initialize` or names an init function with annotations.wcgi.preinit); pack \
             without --preinit",
            package.path().display()
        )
    );
    assert!(
        !package.path().join("hello-0.1.0.webc").exists(),
        "nothing is written"
    );
}
