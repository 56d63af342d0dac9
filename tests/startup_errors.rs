//! Bad input at start-up: one line on stderr saying what is wrong, exit status 1, no panic.

mod common;

use std::ffi::OsString;

use common::{fixture, fixture_package, hello_example, package_dir, run_wcgi};

/// Runs `wcgi run ARGS...` and returns its single error line.
fn startup_error(args: &[OsString]) -> String {
    let mut full: Vec<OsString> = vec!["run".into()];
    full.extend_from_slice(args);
    let output = run_wcgi(&full);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        output.stdout.is_empty(),
        "nothing may be served: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    lines[0].to_string()
}

fn manifest_with_command(
    module_name: &str,
    command_module: &str,
    runner: &str,
    source: &str,
) -> String {
    format!(
        r#"
[package]
name = "test/broken"
version = "0.1.0"

[[module]]
name = "{module_name}"
source = "{source}"
abi = "wasi"

[[command]]
name = "wcgi"
module = "{command_module}"
runner = "{runner}"
"#
    )
}

#[test]
fn a_directory_without_wasmer_toml() {
    let empty = tempfile::tempdir().unwrap();
    let error = startup_error(&[empty.path().into()]);
    assert!(error.contains("no wasmer.toml"), "{error}");
}

#[test]
fn a_command_naming_an_unknown_module() {
    // The seed example's typo: the module is called "server", the command says "wcgi".
    let wasm = fixture("hello").display().to_string();
    let package = package_dir(&manifest_with_command("server", "wcgi", "wcgi", &wasm));
    let error = startup_error(&[package.path().into()]);
    assert!(error.contains("uses module \"wcgi\""), "{error}");
    assert!(error.contains("defined: server"), "{error}");
}

#[test]
fn a_module_whose_file_is_missing() {
    let package = package_dir(&manifest_with_command(
        "server",
        "server",
        "wcgi",
        "target/missing.wasm",
    ));
    let error = startup_error(&[package.path().into()]);
    assert!(error.contains("missing.wasm does not exist"), "{error}");
    let missing = package.path().join("nothing.wasm");
    let error = startup_error(&[missing.into()]);
    assert!(error.contains("no such file or directory"), "{error}");
}

#[test]
fn a_command_that_is_not_wcgi() {
    let wasm = fixture("hello").display().to_string();
    let package = package_dir(&manifest_with_command("server", "server", "wasi", &wasm));
    let error = startup_error(&[package.path().into()]);
    assert!(error.contains("runner \"wasi\""), "{error}");
}

#[test]
fn an_unknown_entrypoint() {
    let error = startup_error(&[hello_example().into(), "-e".into(), "nope".into()]);
    assert!(
        error.contains("no command \"nope\" (commands: hello)"),
        "{error}"
    );
}

#[test]
fn a_mapdir_whose_host_directory_does_not_exist() {
    let error = startup_error(&[
        fixture("hello").into(),
        "--mapdir".into(),
        "/app:/definitely/not/here".into(),
    ]);
    assert!(
        error.contains("/definitely/not/here does not exist"),
        "{error}"
    );
}

#[test]
fn a_file_that_is_not_webassembly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.wasm");
    std::fs::write(&file, "#!/bin/sh\necho hi\n").unwrap();
    let error = startup_error(&[file.into()]);
    assert!(
        error.contains("neither a WebAssembly module nor a .webc container"),
        "{error}"
    );
}

#[test]
fn a_module_that_does_not_compile() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.wasm");
    std::fs::write(&file, b"\0asm\x01\0\0\0\x01\xff").unwrap();
    let error = startup_error(&[file.into()]);
    assert!(error.contains("does not compile"), "{error}");
}

#[test]
fn a_module_without_memory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-memory.wasm");
    let module = wasmer::wat2wasm(br#"(module (func (export "_start")))"#).unwrap();
    std::fs::write(&file, module).unwrap();
    let error = startup_error(&[file.into()]);
    assert!(error.contains("the module exports no memory"), "{error}");
}

#[test]
fn a_malformed_manifest_names_its_line() {
    let package = package_dir("[package]\nname = \"x\"\nversion = 1.0.0\n");
    let error = startup_error(&[package.path().into()]);
    assert!(error.contains("wasmer.toml line 3"), "{error}");
}

#[test]
fn a_port_already_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let error = startup_error(&[
        fixture("hello").into(),
        "--addr".into(),
        addr.clone().into(),
    ]);
    assert!(
        error.contains(&format!("cannot listen on {addr}")),
        "{error}"
    );
    assert!(error.contains("--addr"), "{error}");
}

#[test]
fn a_bad_entry_in_the_annotation_env() {
    // The same rules as --env: a NUL byte cannot be passed to a guest, so the start fails
    // instead of every request.
    for (entry, expected) in [
        (
            r#""BAD=a\u0000b""#,
            r#"annotations.wasi.env: environment variables cannot contain NUL bytes: "BAD=a\0b""#,
        ),
        (
            r#""LONELY""#,
            "annotations.wasi.env: expected KEY=VALUE, got `LONELY`",
        ),
    ] {
        let package = fixture_package(
            "env",
            "env",
            &format!("[command.annotations.wasi]\nenv = [\"GOOD=1\", {entry}]\n"),
        );
        let error = startup_error(&[package.path().into()]);
        assert!(error.contains("command \"env\": "), "{error}");
        assert!(error.ends_with(expected), "{error}");
    }
}

#[cfg(not(feature = "llvm"))]
#[test]
fn the_llvm_compiler_in_a_build_without_it() {
    for compiler in ["llvm", "tiered"] {
        let error = startup_error(&[hello_example().into(), "--compiler".into(), compiler.into()]);
        assert_eq!(
            error,
            "error: this wcgi was built without the LLVM compiler; build it with `--features \
             llvm` (needs LLVM 22: `apt-get install llvm-22-dev libpolly-22-dev`), or use \
             --compiler cranelift",
            "--compiler {compiler}"
        );
    }
}
