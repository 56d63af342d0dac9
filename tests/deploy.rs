//! Beyond one machine: `wcgi compile` fills a cache that a fresh server (a new replica sharing
//! it) starts from without compiling or pre-initialising.

mod common;

use common::{Server, client, fixture, run_wcgi, wait_for_log_count};

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
    wait_for_log_count(&server, "metrics on http://", 1);
    let logs = server.logs();
    let start = logs.find("metrics on ").unwrap() + "metrics on ".len();
    let url = logs[start..].split_whitespace().next().unwrap();
    let scrape = client().get(url).send().unwrap().text().unwrap();
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
