//! CGI behaviour over real HTTP against the real binary: environment, body, response heads,
//! failures, streaming and concurrency.

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, Instant};

use common::{Server, client, fixture, fixture_package, random_bytes, read_body};

/// Parses the env guest's output into (argv, environment, stdin length).
fn parse_env_dump(text: &str) -> (Vec<String>, BTreeMap<String, String>, usize) {
    let mut args = Vec::new();
    let mut env = BTreeMap::new();
    let mut stdin_length = usize::MAX;
    for line in text.lines() {
        if let Some(arg) = line.strip_prefix("ARG ") {
            args.push(arg.split_once('=').unwrap().1.to_string());
        } else if let Some(length) = line.strip_prefix("STDIN_LENGTH ") {
            stdin_length = length.parse().unwrap();
        } else {
            let (key, value) = line.split_once('=').expect("KEY=VALUE line");
            let previous = env.insert(key.to_string(), value.to_string());
            assert!(previous.is_none(), "{key} appears twice");
        }
    }
    (args, env, stdin_length)
}

#[test]
fn the_guest_sees_every_meta_variable_and_no_credentials() {
    let server = Server::start(&[fixture("env")]);
    let response = client()
        .post(server.url("/some/path%20x?a=1&b=two%21"))
        .header("Content-Type", "text/plain")
        .header("X-Custom", "yes")
        .header("Authorization", "Basic c2VjcmV0OnBhc3M=")
        .header("Proxy", "http://evil.test")
        .body("hello")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let (args, env, stdin_length) = parse_env_dump(&response.text().unwrap());

    let port = server.port.to_string();
    let expected = [
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", port.as_str()),
        ("REQUEST_METHOD", "POST"),
        ("REQUEST_URI", "/some/path%20x?a=1&b=two%21"),
        ("QUERY_STRING", "a=1&b=two%21"),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", "/some/path x"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("CONTENT_TYPE", "text/plain"),
        ("CONTENT_LENGTH", "5"),
        ("HTTP_X_CUSTOM", "yes"),
        ("AUTH_TYPE", "Basic"),
        ("REDIRECT_STATUS", "200"),
        ("DOCUMENT_ROOT", "/app/"),
        ("SCRIPT_FILENAME", "/app/some/path x"),
    ];
    for (key, value) in expected {
        assert_eq!(env.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert!(env["SERVER_SOFTWARE"].starts_with("wcgi/"));
    assert!(env["REMOTE_PORT"].parse::<u16>().unwrap() > 0);
    assert!(env["HTTP_HOST"].ends_with(&port));
    for withheld in [
        "HTTP_AUTHORIZATION",
        "HTTP_PROXY",
        "HTTP_CONTENT_TYPE",
        "HTTP_CONTENT_LENGTH",
    ] {
        assert!(!env.contains_key(withheld), "{withheld} must not be passed");
    }
    assert!(
        env.values().all(|value| !value.contains("c2VjcmV0")),
        "credentials leaked"
    );
    assert_eq!(stdin_length, 5);
    assert_eq!(args, ["env"]);
}

#[test]
fn a_request_without_a_body_has_no_content_variables() {
    let server = Server::start(&[fixture("env")]);
    let (status, text) = server.get_text("/");
    assert_eq!(status, 200);
    let (_, env, stdin_length) = parse_env_dump(&text);
    assert!(!env.contains_key("CONTENT_LENGTH"));
    assert!(!env.contains_key("CONTENT_TYPE"));
    assert_eq!(env["QUERY_STRING"], "");
    assert_eq!(env["PATH_INFO"], "/");
    assert_eq!(stdin_length, 0);
}

#[test]
fn a_chunked_body_gets_its_real_length() {
    let server = Server::start(&[fixture("env")]);
    let body = vec![b'x'; 100_000];
    // A reader of unknown length makes the client use chunked transfer encoding.
    let response = client()
        .post(server.url("/"))
        .body(reqwest::blocking::Body::new(std::io::Cursor::new(body)))
        .send()
        .unwrap();
    let (_, env, stdin_length) = parse_env_dump(&response.text().unwrap());
    assert_eq!(env["CONTENT_LENGTH"], "100000");
    assert_eq!(stdin_length, 100_000);
}

#[test]
fn five_megabytes_of_random_bytes_come_back_identical() {
    let server = Server::start(&[fixture("echo")]);
    let body = random_bytes(5 * 1024 * 1024, 0x5eed);
    let response = client()
        .post(server.url("/"))
        .body(body.clone())
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed.as_ref() == body.as_slice(), "echoed body differs");
}

#[test]
fn annotations_and_flags_reach_the_guest_in_order_of_precedence() {
    let package = fixture_package(
        "env",
        "server",
        r#"
[command.annotations.wasi]
env = ["FROM_ANNOTATION=a", "OVERRIDDEN=annotation", "DOCUMENT_ROOT=/srv/", "REQUEST_METHOD=FAKE", "HTTP_X_ADMIN=1"]
main-args = ["--flag", "value with spaces"]
"#,
    );
    let server = Server::start(&[
        package.path().as_os_str(),
        "--env".as_ref(),
        "OVERRIDDEN=flag".as_ref(),
        "--env".as_ref(),
        "QUERY_STRING=fake".as_ref(),
        "--".as_ref(),
        "extra".as_ref(),
    ]);
    let (status, text) = server.get_text("/?real=1");
    assert_eq!(status, 200);
    let (args, env, _) = parse_env_dump(&text);
    assert_eq!(args, ["server", "--flag", "value with spaces", "extra"]);
    assert_eq!(env["FROM_ANNOTATION"], "a");
    assert_eq!(env["OVERRIDDEN"], "flag");
    assert_eq!(env["DOCUMENT_ROOT"], "/srv/");
    assert_eq!(env["REQUEST_METHOD"], "GET");
    assert_eq!(env["QUERY_STRING"], "real=1");
    assert!(!env.contains_key("HTTP_X_ADMIN"));
    assert!(server.log_contains("ignoring configured REQUEST_METHOD"));
}

#[test]
fn the_host_environment_is_forwarded_only_when_asked() {
    let plain = Server::start(&[fixture("env")]);
    let (_, env, _) = parse_env_dump(&plain.get_text("/").1);
    assert!(!env.contains_key("CARGO_MANIFEST_DIR") && !env.contains_key("HOME"));

    let forwarding = Server::start(&[fixture("env").as_os_str(), "--forward-host-env".as_ref()]);
    let (_, env, _) = parse_env_dump(&forwarding.get_text("/").1);
    assert_eq!(env.get("WCGI_LOG").map(String::as_str), Some("info"));
}

#[test]
fn response_heads_become_the_right_http_responses() {
    let server = Server::start(&[fixture("responses")]);

    let response = server.get("/not-found");
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().unwrap(), "nothing here\n");

    let response = server.get("/absolute");
    assert_eq!(response.status(), 302);
    assert_eq!(
        response.headers()["location"],
        "https://example.test/elsewhere"
    );

    let response = server.get("/moved");
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "/new-home");

    let response = server.get("/local");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("location").is_none());
    assert_eq!(response.text().unwrap(), "target reached: GET from=local\n");

    let response = server.get("/cookies");
    let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1; Path=/", "b=2; HttpOnly"]);

    let response = server.get("/lf-only");
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["x-head-style"], "lf");
    assert_eq!(response.text().unwrap(), "lf body\n");

    let response = server.get("/hop-by-hop");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("keep-alive").is_none());
    assert_eq!(response.text().unwrap(), "ok\n");
}

#[test]
fn a_post_that_redirects_locally_becomes_a_get() {
    let server = Server::start(&[fixture("responses")]);
    let response = client()
        .post(server.url("/local"))
        .body("form=1")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().unwrap(), "target reached: GET from=local\n");
}

#[test]
fn local_redirects_stop_after_ten_hops() {
    let server = Server::start(&[fixture("responses")]);
    // Ten hops are allowed (README: "at most 10 hops"), the eleventh is refused.
    assert_eq!(
        server.get_text("/chain?10"),
        (200, "end of the chain\n".to_string())
    );
    assert_eq!(
        server.get_text("/chain?11"),
        (500, "too many local redirects\n".to_string())
    );
    assert_eq!(
        server.get_text("/loop"),
        (500, "too many local redirects\n".to_string())
    );
    assert!(server.log_contains("more than 10 local redirects"));
    assert_eq!(server.get_text("/target").0, 200);
}

#[test]
fn forbidden_bytes_in_a_reflected_header_are_a_bad_gateway() {
    // A bare CR (which some clients and proxies treat as a line break) or a NUL inside a
    // header value must never reach the client.
    let server = Server::start(&[fixture("responses")]);
    for probe in ["/reflect?x%0dSet-Cookie:%20evil=1", "/reflect?x%00y"] {
        let response = server.get(probe);
        assert_eq!(response.status(), 502, "{probe}");
        assert!(response.headers().get("set-cookie").is_none());
        assert!(response.headers().get("x-reflected").is_none());
    }
    let response = server.get("/reflect?harmless");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-reflected"], "harmless");
}

/// Starts a server for a misbehaving guest, checks the status and the whole body of a request
/// to it (a fixed error page: details go to the log only), and that the same server then
/// serves the next request (to a path the guest handles the same way).
fn assert_fails_with(guest: &str, expected_status: u16, expected_page: &str) -> Server {
    let server = Server::start(&[fixture(guest)]);
    for _ in 0..2 {
        let response = server.get("/");
        assert_eq!(response.status(), expected_status, "{guest}");
        assert_eq!(response.text().unwrap(), expected_page, "{guest}");
    }
    server
}

#[test]
fn garbage_output_is_a_bad_gateway() {
    let server = assert_fails_with("garbage", 502, "bad gateway\n");
    assert!(server.log_contains("not of the form"));
}

#[test]
fn a_trap_is_an_internal_server_error() {
    let server = assert_fails_with("trap", 500, "internal server error\n");
    assert!(server.log_contains("trapped"));
}

#[test]
fn a_non_zero_exit_before_the_head_is_an_internal_server_error() {
    let server = assert_fails_with("exit-code", 500, "internal server error\n");
    assert!(server.log_contains("exited with status 3"));
    let logs = server.logs();
    assert!(logs.contains("exited with status 3"), "{logs}");
    // stderr goes to the log, tagged with the request, never to the client.
    assert!(
        logs.lines()
            .any(|l| l.contains("failing on purpose") && l.contains("request=r")),
        "{logs}"
    );
}

#[test]
fn a_non_zero_exit_after_a_whole_response_delivers_it() {
    // php-cgi's fatal errors: a complete 500 page, then exit status 255.
    let server = Server::start(&[fixture("responses")]);
    let response = server.get("/fatal");
    assert_eq!(response.status(), 500);
    let (body, clean) = read_body(response);
    assert!(clean, "the response the guest wrote must arrive whole");
    assert_eq!(body, b"fatal page\n");
    assert!(server.log_contains("exited with status 255 after sending its response"));
}

#[test]
fn a_trap_after_the_head_cuts_the_response_short() {
    let mut server = Server::start(&[fixture("trap-after-head")]);
    for _ in 0..3 {
        // Depending on timing the connection is cut before or after the head went out; either
        // way the client must not see a complete-looking response.
        match client().get(server.url("/")).send() {
            Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
            Ok(response) => {
                assert_eq!(response.status(), 200);
                let (body, clean) = read_body(response);
                assert!(!clean, "the response must not look complete");
                assert!(body.is_empty() || body.starts_with(b"partial body"));
            }
        }
    }
    assert!(server.is_alive());
    assert!(server.log_contains("response cut short"));
}

#[test]
fn the_body_streams_while_the_guest_runs() {
    let server = Server::start(&[fixture("slow")]);
    let started = Instant::now();
    let mut response = server.get("/");
    assert_eq!(response.status(), 200);
    let mut first = [0u8; 8];
    response.read_exact(&mut first).unwrap();
    let first_chunk_after = started.elapsed();
    let mut rest = String::new();
    response.read_to_string(&mut rest).unwrap();
    let total = started.elapsed();
    assert_eq!(&first, b"chunk 0\n");
    assert!(rest.ends_with("chunk 9\n"), "{rest}");
    assert!(
        total >= Duration::from_millis(1800),
        "guest finished too early: {total:?}"
    );
    assert!(
        first_chunk_after < Duration::from_millis(1000),
        "first chunk arrived after {first_chunk_after:?}, the guest ran {total:?}"
    );
}

#[test]
fn concurrent_requests_each_get_their_own_response() {
    let server = Server::start(&[fixture("env")]);
    let url = server.url("/");
    let handles: Vec<_> = (0..32)
        .map(|index| {
            let url = format!("{url}concurrent/{index}?n={index}");
            std::thread::spawn(move || {
                let response = client()
                    .post(&url)
                    .header("X-Index", index.to_string())
                    .body(format!("body-{index}"))
                    .send()
                    .unwrap();
                assert_eq!(response.status(), 200);
                (index, response.text().unwrap())
            })
        })
        .collect();
    for handle in handles {
        let (index, text) = handle.join().unwrap();
        let (_, env, stdin_length) = parse_env_dump(&text);
        assert_eq!(env["QUERY_STRING"], format!("n={index}"));
        assert_eq!(env["PATH_INFO"], format!("/concurrent/{index}"));
        assert_eq!(env["HTTP_X_INDEX"], index.to_string());
        assert_eq!(stdin_length, format!("body-{index}").len());
    }
}

#[test]
fn every_request_starts_from_a_pristine_instance() {
    let server = Server::start(&[fixture("fresh")]);
    for _ in 0..3 {
        assert_eq!(server.get_text("/"), (200, "memory=1 file=1\n".to_string()));
    }
}

#[test]
fn oversized_bodies_are_refused() {
    let server = Server::start(&[
        fixture("echo").as_os_str(),
        "--max-body".as_ref(),
        "1KiB".as_ref(),
    ]);
    let response = client()
        .post(server.url("/"))
        .body(vec![0u8; 2048])
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    let response = client()
        .post(server.url("/"))
        .body(vec![7u8; 1024])
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().unwrap().len(), 1024);
}

#[test]
fn http2_clients_are_served_and_see_their_protocol() {
    let server = Server::start(&[fixture("env")]);
    let http2 = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for _ in 0..3 {
        let response = http2.get(server.url("/h2?x=1")).send().unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        let (_, env, _) = parse_env_dump(&response.text().unwrap());
        assert_eq!(env["SERVER_PROTOCOL"], "HTTP/2.0");
        assert_eq!(env["QUERY_STRING"], "x=1");
    }
}

#[test]
fn paths_that_cannot_become_environment_text_are_bad_requests() {
    // PATH_INFO is decoded text: bytes that are not UTF-8, or a NUL, cannot be passed.
    let server = Server::start(&[fixture("env")]);
    for probe in ["/%ff", "/a%00b"] {
        assert_eq!(server.get_text(probe).0, 400, "{probe}");
    }
    assert_eq!(server.get_text("/%C3%A9").0, 200);
}
