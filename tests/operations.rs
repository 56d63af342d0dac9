//! Running it for real: request ids kept from the client or made and sent back, JSON logs
//! with one object per line and one access event per request, Prometheus metrics on their own
//! listener, and a health path for load balancers that turns 503 while the server shuts down.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Server, client, fixture, wait_for_log_count};

#[test]
fn a_clients_request_id_is_kept_and_sent_back_else_one_is_made() {
    let server = Server::start(&[fixture("hello")]);
    let get = |id: Option<&str>| {
        let mut request = client().get(server.url("/"));
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        let response = request.send().unwrap();
        assert_eq!(response.status(), 200);
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(get(Some("abc-123:lb/7")), "abc-123:lb/7");
    assert!(
        server.log_contains("abc-123:lb/7 GET / 200"),
        "{}",
        server.logs()
    );
    // Unusable ones (too long, characters a log line or header should not carry) are replaced.
    for unusable in [&"x".repeat(129)[..], "has space", "quote\"d", ""] {
        let made = get(Some(unusable));
        assert!(
            made.starts_with('r') && made[1..].parse::<u64>().is_ok(),
            "{unusable:?} gave {made}"
        );
    }
    let made = get(None);
    assert!(
        made.starts_with('r') && made[1..].parse::<u64>().is_ok(),
        "{made}"
    );
    // Also on an answer the host gives itself.
    let response = client()
        .post(server.url("/"))
        .header("X-Request-Id", "big-1")
        .header("Content-Length", "999999999999")
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["x-request-id"], "big-1");
}

#[test]
fn json_logs_are_one_object_per_line_with_one_access_event_per_request() {
    let server = Server::start(&[
        fixture("hello").into_os_string(),
        "--log-format".into(),
        "json".into(),
    ]);
    for path in ["/", "/a?b=1&c", "/x/y"] {
        assert_eq!(server.get_text(path).0, 200, "{path}");
    }
    wait_for_log_count(&server, "\"target\":\"wcgi::access\"", 3);
    let mut access = Vec::new();
    for line in server.logs().lines() {
        let event: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|error| panic!("{error}: {line:?}"));
        assert!(event["timestamp"].is_string(), "{line}");
        assert!(event["level"].is_string(), "{line}");
        if event["target"] == "wcgi::access" {
            access.push(event);
        }
    }
    assert_eq!(access.len(), 3);
    let paths: Vec<&str> = access.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/", "/a?b=1&c", "/x/y"]);
    for event in &access {
        assert_eq!(event["method"], "GET");
        assert_eq!(event["status"], 200);
        assert_eq!(event["bytes"], "Hello from WebAssembly!\n".len());
        assert_eq!(event["route"], "/...");
        assert_eq!(event["outcome"], "complete");
        let duration = event["duration_ms"].as_f64().unwrap();
        let instance = event["instance_ms"].as_f64().unwrap();
        assert!(
            instance > 0.0 && instance <= duration,
            "instance {instance} ms, request {duration} ms"
        );
        let id = event["request_id"].as_str().unwrap();
        assert!(id.starts_with('r'), "{id}");
    }
}

/// One scrape: every sample as `name{labels}` → value, after checking the content type and
/// that a Prometheus text parser reads every sample line.
fn scrape(url: &str) -> BTreeMap<String, f64> {
    let response = client().get(url).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = response.text().unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");
    let sample_lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
    // The parser folds a histogram's bucket, sum and count lines into one sample: every
    // metric named on a sample line must come out of it.
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|error| panic!("{error}: {text}"));
    let parsed_names: std::collections::BTreeSet<&str> =
        parsed.samples.iter().map(|s| s.metric.as_str()).collect();
    for line in &sample_lines {
        let name = line.split(['{', ' ']).next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|family| parsed_names.contains(family))
            .unwrap_or(name);
        assert!(
            parsed_names.contains(family),
            "{line:?} not parsed: {parsed_names:?}"
        );
    }
    sample_lines
        .iter()
        .map(|line| {
            let (name, value) = line.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

#[test]
fn metrics_count_a_known_mix_of_requests_exactly() {
    let site = tempfile::tempdir().unwrap();
    for name in ["hello", "spin", "memory-bomb"] {
        std::fs::copy(fixture(name), site.path().join(format!("{name}.wasm"))).unwrap();
    }
    std::fs::write(
        site.path().join("modules.toml"),
        "[[module]]\nroute = \"/hello\"\nmodule = \"hello.wasm\"\n\n\
         [[module]]\nroute = \"/spin\"\nmodule = \"spin.wasm\"\n\n\
         [[module]]\nroute = \"/bomb\"\nmodule = \"memory-bomb.wasm\"\n",
    )
    .unwrap();
    std::fs::create_dir(site.path().join("assets")).unwrap();
    std::fs::write(site.path().join("assets/a.txt"), "static\n").unwrap();
    let server = Server::start(&[
        site.path().join("modules.toml").into_os_string(),
        "--metrics-addr".into(),
        "127.0.0.1:0".into(),
        "--timeout".into(),
        "1s".into(),
        "--max-memory".into(),
        "64MiB".into(),
        "--static".into(),
        format!("/assets:{}", site.path().join("assets").display()).into(),
    ]);
    let url = server.metrics_url();
    assert_ne!(
        url,
        server.url("/metrics"),
        "metrics must not be on the app's port"
    );

    for _ in 0..5 {
        assert_eq!(server.get_text("/hello").0, 200);
    }
    assert_eq!(server.get_text("/spin").0, 504);
    assert_eq!(server.get_text("/bomb").0, 500);
    let too_large = client()
        .post(server.url("/hello"))
        .header("Content-Length", "999999999999")
        .send()
        .unwrap();
    assert_eq!(too_large.status(), 413);
    assert_eq!(server.get_text("/assets/a.txt"), (200, "static\n".into()));
    // The app's own address has no metrics.
    assert_eq!(server.get_text("/metrics").0, 404);
    wait_for_log_count(&server, " GET /metrics 404", 1);

    let samples = scrape(&url);
    let value = |name: &str| {
        *samples
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
    };
    assert_eq!(
        value("wcgi_requests_total{route=\"/hello\",status=\"2xx\"}"),
        5.0
    );
    assert_eq!(
        value("wcgi_requests_total{route=\"/hello\",status=\"4xx\"}"),
        1.0
    );
    assert_eq!(
        value("wcgi_requests_total{route=\"/spin\",status=\"5xx\"}"),
        1.0
    );
    assert_eq!(
        value("wcgi_requests_total{route=\"/bomb\",status=\"5xx\"}"),
        1.0
    );
    // The static file and /metrics: no route claims them.
    assert_eq!(value("wcgi_requests_total{route=\"\",status=\"2xx\"}"), 1.0);
    assert_eq!(value("wcgi_requests_total{route=\"\",status=\"4xx\"}"), 1.0);
    let requests: f64 = samples
        .iter()
        .filter(|(name, _)| name.starts_with("wcgi_requests_total{"))
        .map(|(_, value)| value)
        .sum();
    assert_eq!(requests, 10.0);
    assert_eq!(
        value("wcgi_request_duration_seconds_count{route=\"/hello\",status=\"2xx\"}"),
        5.0
    );
    assert_eq!(value("wcgi_instance_duration_seconds_count"), 7.0);
    assert_eq!(value("wcgi_timeouts_total"), 1.0);
    assert_eq!(value("wcgi_memory_limit_hits_total"), 1.0);
    assert_eq!(value("wcgi_refusals_total{reason=\"body_too_large\"}"), 1.0);
    assert_eq!(value("wcgi_static_responses_total"), 1.0);
    assert_eq!(value("wcgi_instances_running"), 0.0);
    assert_eq!(value("wcgi_requests_waiting"), 0.0);
    // Each of the three modules was looked up in the compiled-module cache once.
    let lookups: f64 = ["hit", "miss"]
        .iter()
        .filter_map(|result| {
            samples.get(&format!("wcgi_compiled_cache_total{{result=\"{result}\"}}"))
        })
        .sum();
    assert_eq!(lookups, 3.0);
}

#[test]
fn the_health_path_answers_200_while_serving_and_503_while_shutting_down() {
    // Off by default: the path is the app's.
    let plain = Server::start(&[fixture("hello")]);
    assert_eq!(
        plain.get_text("/ready"),
        (200, "Hello from WebAssembly!\n".into())
    );
    drop(plain);

    let mut server = Server::start(&[
        fixture("hello").into_os_string(),
        "--health-path".into(),
        "/ready".into(),
        "--shutdown-delay".into(),
        "2s".into(),
    ]);
    let response = server.get("/ready");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(response.text().unwrap(), "ok\n");
    assert_eq!(
        server.get_text("/ready/x").0,
        200,
        "only the exact path is the server's"
    );

    let signalled = Instant::now();
    common::send_signal(server.pid(), libc::SIGTERM);
    wait_for_log_count(&server, "shutting down: still serving for 2s", 1);
    // During the delay: the health path says so, and the site is still served, on new
    // connections too.
    assert_eq!(server.get_text("/ready"), (503, "shutting down\n".into()));
    assert_eq!(
        server.get_text("/"),
        (200, "Hello from WebAssembly!\n".into())
    );
    assert!(signalled.elapsed() < Duration::from_secs(2));
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        signalled.elapsed() >= Duration::from_secs(2),
        "exited before the delay was over"
    );
    assert!(server.log_contains("shutting down: no new connections"));
}

#[test]
fn a_sites_own_healthz_also_turns_503_while_shutting_down() {
    let site = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("hello"), site.path().join("hello.wasm")).unwrap();
    std::fs::write(
        site.path().join("modules.toml"),
        "[[module]]\nroute = \"/hello\"\nmodule = \"hello.wasm\"\n",
    )
    .unwrap();
    let mut server = Server::start(&[
        site.path().join("modules.toml").into_os_string(),
        "--shutdown-delay".into(),
        "1s".into(),
    ]);
    assert_eq!(server.get_text("/healthz"), (200, "ok\n".into()));
    common::send_signal(server.pid(), libc::SIGTERM);
    wait_for_log_count(&server, "shutting down: still serving for 1s", 1);
    assert_eq!(server.get_text("/healthz"), (503, "shutting down\n".into()));
    assert_eq!(server.get_text("/hello").0, 200);
    assert!(server.wait_for_exit(Duration::from_secs(10)).success());
}
