//! Beyond one machine: `wcgi compile` fills a cache that a fresh server (a new replica sharing
//! it) starts from without compiling or pre-initialising; the Kubernetes manifests in
//! `deploy/kubernetes/` are valid against the real schemas and their numbers agree with the
//! CLI's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Server, client, fixture, repo_root, run_wcgi};

#[test]
fn compile_fills_the_cache_so_that_run_starts_without_compiling() {
    let cache = tempfile::tempdir().unwrap();
    let compile = || {
        let output = run_wcgi(&[
            "compile".into(),
            fixture("preinit").into_os_string(),
            "--cache-dir".into(),
            cache.path().into(),
        ]);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let ready = |counts: &str| {
        format!(
            "Ready in {}: 1 command ({counts}); `wcgi run` with the same options starts without \
             compiling\n",
            cache.path().display()
        )
    };
    // The instrumented module the snapshot is taken with, then the snapshot.
    assert_eq!(
        compile(),
        ready("2 modules compiled now, 1 snapshot taken now")
    );
    assert_eq!(
        compile(),
        ready("0 modules compiled now, 0 snapshots taken now")
    );

    let server = Server::start(&[
        fixture("preinit").into_os_string(),
        "--cache-dir".into(),
        cache.path().into(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
    ]);
    assert!(
        server.log_contains("snapshot from the cache"),
        "{}",
        server.logs()
    );
    assert_eq!(server.get_text("/").0, 200);
    let scrape = client()
        .get(server.metrics_url())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        scrape.contains("wcgi_compiled_cache_total{result=\"hit\"} 1\n"),
        "{scrape}"
    );
    assert!(
        scrape.contains("wcgi_snapshot_cache_total{result=\"hit\"} 1\n"),
        "{scrape}"
    );
    assert!(!scrape.contains("result=\"miss\""), "{scrape}");
}

/// `kubernetes-validate` (`scripts/kubernetes-validate.sh` installs it; `scripts/test` passes
/// its path in `WCGI_KUBERNETES_VALIDATE`), else the one on `PATH`.
fn kubernetes_validate() -> Option<PathBuf> {
    std::env::var_os("WCGI_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .or_else(|| common::find_on_path("kubernetes-validate"))
}

/// Every document of a YAML file, read by the PyYAML that kubernetes-validate's venv carries.
fn yaml_documents(validator: &Path, file: &Path) -> Vec<serde_json::Value> {
    let python = validator.with_file_name("python3");
    let output = Command::new(&python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
        ])
        .arg(file)
        .output()
        .unwrap_or_else(|error| panic!("{}: {error}", python.display()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A `--flag`'s default as `wcgi run --help` states it.
fn run_default(help: &str, flag: &str) -> String {
    let words: Vec<&str> = help.split_whitespace().collect();
    let at = words.iter().position(|word| *word == flag).unwrap();
    let start = words[at..]
        .iter()
        .position(|word| *word == "[default:")
        .unwrap_or_else(|| panic!("{flag} has no default"));
    words[at + start + 1].trim_end_matches(']').to_string()
}

fn mebibytes(size: &str) -> u64 {
    let size = size.trim_end_matches('B').trim_end_matches('i');
    let (number, unit) = size.split_at(size.find(|c: char| !c.is_ascii_digit()).unwrap());
    let number: u64 = number.parse().unwrap();
    match unit {
        "M" => number,
        "G" => number * 1024,
        _ => panic!("unexpected size unit in {size}"),
    }
}

fn seconds(duration: &str) -> u64 {
    duration
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected whole seconds: {duration}"))
}

#[test]
fn the_kubernetes_manifests_are_valid_and_agree_with_the_cli() {
    let Some(validator) = kubernetes_validate() else {
        common::skip_tier(
            "kubernetes",
            "kubernetes-validate is not installed (scripts/kubernetes-validate.sh installs it)",
        );
        return;
    };
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    // The oldest Kubernetes they are meant for (preStop `sleep` is GA in 1.30) and the newest
    // the validator knows.
    for version in ["1.30.0", "1.37.0"] {
        let output = Command::new(&validator)
            .args(["--strict", "--kubernetes-version", version])
            .args(&files)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    let help = String::from_utf8(run_wcgi(&["run", "--help"]).stdout).unwrap();
    let mut deployments = 0;
    for file in &files {
        for document in yaml_documents(&validator, file) {
            if document["kind"] != "Deployment" {
                continue;
            }
            deployments += 1;
            let name = &document["metadata"]["name"];
            let pod = &document["spec"]["template"]["spec"];
            let container = &pod["containers"][0];
            let args: Vec<&str> = container["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|arg| arg.as_str().unwrap())
                .collect();
            assert_eq!(args[0], "run", "{name}");
            let flag = |flag: &str| {
                args.iter()
                    .find_map(|arg| arg.strip_prefix(&format!("{flag}=")))
                    .map(str::to_string)
            };
            let or_default = |name: &str| flag(name).unwrap_or_else(|| run_default(&help, name));

            // Memory: every instance slot at --max-memory, plus room for the server.
            let concurrency: u64 = flag("--max-concurrency")
                .unwrap_or_else(|| {
                    panic!("{name}: give --max-concurrency (the default follows the node's cores)")
                })
                .parse()
                .unwrap();
            let linear = concurrency * mebibytes(&or_default("--max-memory"));
            let limit = mebibytes(container["resources"]["limits"]["memory"].as_str().unwrap());
            assert!(
                limit >= linear + 128,
                "{name}: {limit} MiB for {linear} MiB of instances"
            );

            // Shutdown: preStop, then --shutdown-delay and --shutdown-grace, fit the grace period.
            let pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
                .as_u64()
                .unwrap_or(0);
            let shutdown =
                seconds(&or_default("--shutdown-delay")) + seconds(&or_default("--shutdown-grace"));
            let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
            assert!(
                grace >= pre_stop + shutdown,
                "{name}: terminationGracePeriodSeconds {grace} < {pre_stop} + {shutdown}"
            );

            // Probes on the health path, at the port wcgi listens on.
            let health =
                flag("--health-path").unwrap_or_else(|| panic!("{name}: no --health-path"));
            let port: u64 = flag("--addr")
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            let http_port = container["ports"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "http")
                .unwrap()["containerPort"]
                .as_u64()
                .unwrap();
            assert_eq!(http_port, port, "{name}");
            assert_eq!(
                container["readinessProbe"]["httpGet"]["path"],
                health.as_str(),
                "{name}"
            );
            if !container["livenessProbe"].is_null() {
                assert_eq!(
                    container["livenessProbe"]["httpGet"]["path"],
                    health.as_str()
                );
            }
            // A writable database directory: one replica, never two at once.
            if flag("--mapdir").is_some() {
                assert_eq!(document["spec"]["replicas"], 1, "{name}");
                assert_eq!(document["spec"]["strategy"]["type"], "Recreate", "{name}");
            }
        }
    }
    assert_eq!(deployments, 2);
}

#[test]
fn the_container_image_is_built_with_the_readmes_build_command() {
    let build = "cargo build --release --locked";
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("`{build}`")),
        "README names no build command"
    );
    let dockerfile =
        std::fs::read_to_string(repo_root().join("deploy/container/Dockerfile")).unwrap();
    let runs: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("RUN "))
        .collect();
    assert!(
        runs.iter()
            .any(|run| run.starts_with(&format!("RUN {build}"))),
        "{runs:?}"
    );
    assert!(dockerfile.contains("\nSTOPSIGNAL SIGTERM\n"));
    assert!(dockerfile.contains("\nUSER 10001:10001\n"));
}
