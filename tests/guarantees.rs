//! Promises the README makes about a running server that no other test checks, each checked
//! against the real binary over loopback.

mod common;

use std::time::{Duration, Instant};

use common::{Server, client, fixture, wait_for_log_count};

#[test]
fn guests_have_no_network() {
    // A port the guest would reach if it had the host's network.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = Server::start(&[fixture("net")]);
    let (status, body) = server.get_text(&format!("/?{port}"));
    assert_eq!(status, 200, "{body}");
    // std refuses on its own; the WASIX socket opens, but connecting is not supported.
    assert_eq!(
        body,
        "std connect: Unsupported\nsock_open: errno 0\nsock_connect: 58\n"
    );
    match listener.accept() {
        Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the guest reached the host's network: {other:?}"),
    }
}

/// The access-log lines in a server's log so far.
fn access_lines(server: &Server) -> Vec<String> {
    server
        .logs()
        .lines()
        .filter(|line| line.contains("wcgi::access"))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_request_gets_exactly_one_access_log_line() {
    let assets = tempfile::tempdir().unwrap();
    std::fs::write(assets.path().join("a.txt"), "static\n").unwrap();
    let static_dir = format!("/assets:{}", assets.path().display());
    let server = Server::start(&[
        fixture("responses").as_os_str(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);
    let requests = [
        "/one",
        "/two",
        "/local",        // served through a local redirect: two instances, one request
        "/chain?3",      // three hops
        "/not-found",    // a 404 from the guest
        "/assets/a.txt", // a static file, no instance
    ];
    for path in requests {
        let (status, _) = server.get_text(path);
        assert!(status == 200 || status == 404, "{path}: {status}");
    }
    let response = client()
        .post(server.url("/posted"))
        .body("x")
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let expected = requests.len() + 1;

    let deadline = Instant::now() + Duration::from_secs(5);
    while access_lines(&server).len() < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Give a duplicate line the time to show up.
    std::thread::sleep(Duration::from_millis(300));
    let lines = access_lines(&server);
    assert_eq!(lines.len(), expected, "{lines:#?}");
    // The line names the path and query the client asked for, and the final status.
    let logged = [
        " GET /one 200 ",
        " GET /two 200 ",
        " GET /local 200 ",
        " GET /chain?3 200 ",
        " GET /not-found 404 ",
        " GET /assets/a.txt 200 ",
        " POST /posted 200 ",
    ];
    for needle in logged {
        let matching = lines.iter().filter(|line| line.contains(needle)).count();
        assert_eq!(matching, 1, "{needle}: {lines:#?}");
    }
}

#[test]
fn guest_stderr_is_logged_up_to_64_kib_per_request() {
    let server = Server::start(&[fixture("noisy")]);
    // 2000 lines of 100 bytes: 200 000 bytes, of which 65 536 are logged.
    assert_eq!(
        server.get_text("/?2000"),
        (200, "wrote 200000 bytes to stderr\n".to_string())
    );
    assert!(
        server.log_contains("stderr over 65536 bytes; 134464 more bytes not logged"),
        "{}",
        server.logs()
    );
    let logs = server.logs();
    let noise: Vec<&str> = logs.lines().filter(|l| l.contains("noise 0")).collect();
    // 655 whole lines (65 500 bytes), then the first 36 bytes of the next one.
    assert_eq!(noise.len(), 656);
    assert!(noise[654].contains(&"n".repeat(86)), "{}", noise[654]);
    assert!(
        noise[655].contains("noise 000655 ") && !noise[655].contains(&"n".repeat(30)),
        "{}",
        noise[655]
    );
    assert!(!logs.contains("noise 000656"));
    assert!(logs.len() < 200_000, "the log took {} bytes", logs.len());
}

#[test]
fn sigint_stops_gracefully_like_sigterm() {
    let mut server = Server::start(&[fixture("sleepy")]);
    let url = server.url("/?1500");
    let request = std::thread::spawn(move || {
        let response = client().get(&url).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    });
    wait_for_log_count(&server, "sleepy: sleeping 1500ms", 1);
    let status = server.interrupt(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(request.join().unwrap(), (200, "slept 1500ms\n".to_string()));
    assert!(server.log_contains("shutting down: no new connections"));
}

#[test]
fn the_timeout_counts_the_time_spent_in_the_queue() {
    let server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--max-concurrency".as_ref(),
        "1".as_ref(),
        "--timeout".as_ref(),
        "2s".as_ref(),
    ]);
    let first_url = server.url("/?1800");
    let first = std::thread::spawn(move || {
        let response = client().get(&first_url).send().unwrap();
        (response.status().as_u16(), response.text().unwrap())
    });
    wait_for_log_count(&server, "sleepy: sleeping 1800ms", 1);
    // Waits ~1.8 s for the slot, then needs 1.5 s: within 2 s only if the wait is not counted.
    let started = Instant::now();
    let (status, body) = server.get_text("/?1500");
    let took = started.elapsed();
    assert_eq!((status, body.as_str()), (504, "gateway timeout\n"));
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_millis(2800),
        "answered after {took:?}, the timeout is 2s"
    );
    assert_eq!(first.join().unwrap(), (200, "slept 1800ms\n".to_string()));
}

#[test]
fn static_files_answer_only_get_and_head() {
    let assets = tempfile::tempdir().unwrap();
    std::fs::write(assets.path().join("form.txt"), "a static file\n").unwrap();
    let static_dir = format!("/assets:{}", assets.path().display());
    let server = Server::start(&[
        fixture("env").as_os_str(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);
    assert_eq!(
        server.get_text("/assets/form.txt"),
        (200, "a static file\n".to_string())
    );
    let head = client()
        .head(server.url("/assets/form.txt"))
        .send()
        .unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "14");
    // Other methods reach the command, which sees the request as it was sent.
    for method in ["POST", "PUT", "DELETE"] {
        let response = client()
            .request(method.parse().unwrap(), server.url("/assets/form.txt"))
            .body("field=1")
            .send()
            .unwrap();
        assert_eq!(response.status(), 200, "{method}");
        let text = response.text().unwrap();
        assert!(
            text.contains(&format!("\nREQUEST_METHOD={method}\n"))
                && text.contains("\nPATH_INFO=/assets/form.txt\n")
                && text.ends_with("STDIN_LENGTH 7\n"),
            "{method}: {text}"
        );
    }
}

#[test]
fn max_concurrency_defaults_to_twice_the_cores() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let slots = 2 * cores;
    let server = Server::start(&[fixture("sleepy")]);
    let requests = common::spawn_gets(&server.url("/?3000"), slots + 1);
    // `slots` guests start at once; the one more waits for a slot.
    wait_for_log_count(&server, "sleepy: sleeping 3000ms", slots);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        server.logs().matches("sleepy: sleeping 3000ms").count(),
        slots,
        "more than 2 × {cores} guests ran at once"
    );
    for request in requests {
        assert_eq!(request.join().unwrap(), (200, "slept 3000ms\n".to_string()));
    }
    assert_eq!(
        server.logs().matches("sleepy: sleeping 3000ms").count(),
        slots + 1
    );
}

#[test]
fn addr_defaults_to_port_8000_on_loopback() {
    if let Err(error) = std::net::TcpListener::bind("127.0.0.1:8000") {
        eprintln!(
            "\n*** SKIPPED addr_defaults_to_port_8000_on_loopback: 127.0.0.1:8000 is taken \
             ({error}); the default --addr was NOT checked ***\n"
        );
        return;
    }
    let server = Server::start_on_the_default_address(&[fixture("hello")]);
    assert_eq!(server.base_url, "http://127.0.0.1:8000");
    let (status, body) = server.get_text("/");
    assert_eq!((status, body.as_str()), (200, "Hello from WebAssembly!\n"));
}
