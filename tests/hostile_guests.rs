//! Hostile guests and clients cost one request, never the server.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, client, fixture, read_body};

/// Waits until the server has been idle (under 5 % of one core) for a second, or fails.
fn assert_goes_idle(server: &Server) {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let before = server.cpu_time();
        std::thread::sleep(Duration::from_secs(1));
        let used = server.cpu_time() - before;
        if used <= Duration::from_millis(50) {
            return;
        }
        assert!(
            Instant::now() < give_up,
            "server still busy: {used:?} of CPU per second"
        );
    }
}

#[test]
fn an_endless_loop_is_stopped_at_the_timeout() {
    let server = Server::start(&[
        fixture("spin").as_os_str(),
        "--timeout".as_ref(),
        "1s".as_ref(),
    ]);
    let started = Instant::now();
    let response = server.get("/");
    let took = started.elapsed();
    assert_eq!(response.status(), 504);
    assert!(
        took >= Duration::from_millis(900),
        "answered too early: {took:?}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    assert_goes_idle(&server);
    assert!(server.log_contains("stopped at its deadline"));
}

#[test]
fn a_guest_blocked_in_a_system_call_is_stopped_at_the_timeout() {
    let server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--timeout".as_ref(),
        "1s".as_ref(),
    ]);
    let started = Instant::now();
    assert_eq!(server.get("/").status(), 504);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // The same server still serves a guest that finishes in time.
    assert_eq!(server.get_text("/?10"), (200, "slept 10ms\n".to_string()));
}

#[test]
fn a_memory_bomb_fails_alone() {
    let server = Server::start(&[
        fixture("memory-bomb").as_os_str(),
        "--max-memory".as_ref(),
        "64MiB".as_ref(),
    ]);
    let rss_before = server.rss();
    for _ in 0..3 {
        assert_eq!(server.get("/").status(), 500);
    }
    // The instances' memory is given back.
    let grown = server.rss().saturating_sub(rss_before);
    assert!(grown < 48 << 20, "RSS grew by {} MiB", grown >> 20);
}

#[test]
fn a_module_needing_more_memory_than_the_cap_is_refused_at_start() {
    let output = common::run_wcgi(&[
        "run".as_ref(),
        fixture("hello").as_os_str(),
        "--max-memory".as_ref(),
        "64KiB".as_ref(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("raise --max-memory"), "{stderr}");
}

#[test]
fn fifty_megabytes_stream_with_bounded_server_memory() {
    let server = Server::start(&[fixture("big-output")]);
    let rss_before = server.rss();
    let mut response = server.get("/?50");
    assert_eq!(response.status(), 200);
    // Read slowly at first: the guest must wait for us rather than fill the server's memory.
    let mut chunk = vec![0u8; 1 << 20];
    response.read_exact(&mut chunk).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let rss_while_stalled = server.rss();
    let mut total = chunk.len() as u64;
    let mut peak = rss_while_stalled;
    loop {
        let read = response.read(&mut chunk).unwrap();
        if read == 0 {
            break;
        }
        total += read as u64;
        if total % (8 << 20) < read as u64 {
            peak = peak.max(server.rss());
        }
    }
    assert_eq!(total, 50 << 20);
    let growth = peak.saturating_sub(rss_before);
    assert!(growth < 64 << 20, "server RSS grew by {} MiB", growth >> 20);
    // While the client stalled, the guest was held back instead of piling up its output:
    // an unbounded buffer would have taken most of the 50 MB here.
    let stalled_growth = rss_while_stalled.saturating_sub(rss_before);
    assert!(
        stalled_growth < 16 << 20,
        "RSS grew by {} MiB while the client stalled",
        stalled_growth >> 20
    );
}

#[test]
fn oversized_and_garbage_heads_are_bad_gateways() {
    let server = Server::start(&[
        fixture("huge-head").as_os_str(),
        "--timeout".as_ref(),
        "5s".as_ref(),
    ]);
    for path in ["/line", "/block", "/forever"] {
        let started = Instant::now();
        assert_eq!(server.get(path).status(), 502, "{path}");
        // Well before the 5 s timeout (under the whole suite's load it can take 3 s).
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    assert_goes_idle(&server);
}

#[test]
fn large_bodies_get_413() {
    let server = Server::start(&[
        fixture("env").as_os_str(),
        "--max-body".as_ref(),
        "64KiB".as_ref(),
    ]);
    let response = client()
        .post(server.url("/"))
        .body(vec![1u8; 65 * 1024])
        .send()
        .unwrap();
    assert_eq!(response.status(), 413);
    // Refused as the chunks arrive, and the client, still sending, sees the 413 (the server
    // reads a little more before closing, so the connection is not reset under it).
    // A client library stops sending, and reports an error instead of the response, when
    // the response arrives before it finished: the server reads on a little before answering.
    for _ in 0..5 {
        let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(vec![1u8; 200 * 1024]));
        let response = client().post(server.url("/")).body(chunked).send().unwrap();
        assert_eq!(response.status(), 413);
    }
    // And sent raw, to check the exact answer.
    for _ in 0..5 {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(
            stream,
            "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..13 {
            write!(stream, "{:x}\r\n", chunk.len()).unwrap();
            stream.write_all(&chunk).unwrap();
            stream.write_all(b"\r\n").unwrap();
        }
        stream.write_all(b"0\r\n\r\n").unwrap();
        let (received, _) = read_until_closed(stream, Duration::from_secs(10));
        assert!(
            received.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
            "{received}"
        );
        assert!(
            received.ends_with("\r\n\r\nrequest body too large\n"),
            "{received}"
        );
    }
    let (status, _) = server.get_text("/");
    assert_eq!(status, 200);
}

#[test]
fn a_flood_beyond_the_queue_gets_503_with_retry_after() {
    let server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--max-concurrency".as_ref(),
        "1".as_ref(),
        "--max-queue".as_ref(),
        "1".as_ref(),
    ]);
    let url = server.url("/?2000");
    let send = |url: String| {
        std::thread::spawn(move || {
            let response = client().get(&url).send().unwrap();
            let retry_after = response.headers().get("retry-after").cloned();
            (response.status().as_u16(), retry_after)
        })
    };
    // One request takes the only slot (its guest says so in the log), one takes the only
    // place in the queue, and the four after them find both full.
    let running = send(url.clone());
    common::wait_for_log_count(&server, "sleepy: sleeping 2000ms", 1);
    let queued = send(url.clone());
    std::thread::sleep(Duration::from_millis(300));
    let refused_at = Instant::now();
    let flood: Vec<_> = (0..4).map(|_| send(url.clone())).collect();
    let flood: Vec<_> = flood.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(
        refused_at.elapsed() < Duration::from_secs(1),
        "refusals took {:?}: they must not wait",
        refused_at.elapsed()
    );
    for (status, retry_after) in &flood {
        assert_eq!(*status, 503, "{flood:?}");
        assert_eq!(retry_after.as_ref().map(|v| v.as_bytes()), Some(&b"1"[..]));
    }
    assert_eq!(running.join().unwrap(), (200, None));
    assert_eq!(queued.join().unwrap(), (200, None));
    assert_eq!(server.get_text("/?1"), (200, "slept 1ms\n".to_string()));
}

#[test]
fn a_client_that_disconnects_stops_its_guest() {
    let server = Server::start(&[fixture("big-output")]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(stream, "GET /?100000 HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut start = [0u8; 4096];
    stream.read_exact(&mut start).unwrap();
    drop(stream);
    assert_goes_idle(&server);
    assert!(server.log_contains("(cut short)"), "{}", server.logs());
    assert_eq!(server.get_text("/?0").0, 200);
}

#[test]
fn graceful_shutdown_answers_every_request_in_flight() {
    let mut server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--max-concurrency".as_ref(),
        "20".as_ref(),
    ]);
    let handles = common::spawn_gets(&server.url("/?3000"), 20);
    // Let every request reach its guest, then ask the server to stop.
    std::thread::sleep(Duration::from_millis(1500));
    let status = server.terminate(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}");
    for handle in handles {
        assert_eq!(handle.join().unwrap(), (200, "slept 3000ms\n".to_string()));
    }
}

#[test]
fn shutdown_does_not_wait_past_its_grace() {
    let mut server = Server::start(&[
        fixture("spin").as_os_str(),
        "--shutdown-grace".as_ref(),
        "500ms".as_ref(),
    ]);
    // The guest sends a head and a line, then spins: the request is in flight at SIGTERM.
    let mut response = server.get("/?head");
    assert_eq!(response.status(), 200);
    let mut first_line = [0u8; 9];
    response.read_exact(&mut first_line).unwrap();
    assert_eq!(&first_line, b"spinning\n");

    let started = Instant::now();
    let status = server.terminate(Duration::from_secs(5));
    let took = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        took >= Duration::from_millis(450),
        "exited after {took:?}, before its grace was up"
    );
    assert!(took < Duration::from_secs(2), "exited after {took:?}");
    assert!(
        server
            .log_contains("requests still running after the 500ms shutdown grace; exiting anyway"),
        "{}",
        server.logs()
    );
    // The spinning guest never finished its response: the client sees it cut, not complete.
    let (rest, clean) = read_body(response);
    assert!(!clean, "the cut response ended cleanly");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn symlinks_and_dot_dots_cannot_leave_a_mapped_directory() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "host secret\n").unwrap();
    let mapped = tempfile::tempdir().unwrap();
    std::fs::write(mapped.path().join("public.txt"), "public\n").unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        mapped.path().join("link.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), mapped.path().join("linkdir")).unwrap();
    std::os::unix::fs::symlink("public.txt", mapped.path().join("inside-link.txt")).unwrap();
    let mapdir = format!("/app:{}", mapped.path().display());
    let server = Server::start(&[
        fixture("files").as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);

    assert_eq!(
        server.get_text("/public.txt"),
        (200, "public\n".to_string())
    );
    assert_eq!(
        server.get_text("/inside-link.txt"),
        (200, "public\n".to_string())
    );
    let outside_name = outside.path().file_name().unwrap().to_str().unwrap();
    for probe in [
        "/link.txt".to_string(),
        "/linkdir/secret.txt".to_string(),
        format!("/%2e%2e/{outside_name}/secret.txt"),
        format!("/..%2f{outside_name}%2fsecret.txt"),
        "/%2e%2e/%2e%2e/%2e%2e/etc/passwd".to_string(),
    ] {
        let (status, body) = server.get_text(&probe);
        assert_eq!(status, 404, "{probe}: {body}");
        assert!(
            !body.contains("host secret") && !body.contains("root:"),
            "{probe}: {body}"
        );
    }
}

#[test]
fn a_cut_response_never_looks_complete() {
    let server = Server::start(&[
        fixture("big-output").as_os_str(),
        "--timeout".as_ref(),
        "1s".as_ref(),
    ]);
    // 100 GB cannot be sent in a second: the stream is cut at the deadline.
    let response = server.get("/?100000");
    assert_eq!(response.status(), 200);
    let (body, clean) = read_body(response);
    assert!(
        !clean,
        "a cut response must not end cleanly ({} bytes)",
        body.len()
    );
}

/// Reads from `stream` until the server closes it; returns what arrived and when it closed.
fn read_until_closed(mut stream: TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

#[test]
fn a_client_trickling_its_headers_is_cut_off() {
    let server = Server::start(&[
        fixture("hello").as_os_str(),
        "--header-timeout".as_ref(),
        "1s".as_ref(),
    ]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(stream, "GET / HTTP/1.1\r\nHost: localhost\r\n").unwrap();
    let writer = stream.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let mut writer = writer;
        for index in 0..20 {
            std::thread::sleep(Duration::from_millis(300));
            if write!(writer, "X-Slow-{index}: 1\r\n").is_err() {
                return;
            }
        }
    });
    let (received, closed_after) = read_until_closed(stream, Duration::from_secs(10));
    assert!(
        closed_after < Duration::from_secs(3),
        "connection held for {closed_after:?}"
    );
    assert!(!received.contains("Hello"), "{received}");
    trickle.join().unwrap();
    assert_eq!(server.get_text("/").0, 200);
}

#[test]
fn a_client_stalling_its_body_gets_408() {
    let server = Server::start(&[
        fixture("echo").as_os_str(),
        "--timeout".as_ref(),
        "1s".as_ref(),
    ]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stream,
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000\r\n\r\nonly ten b"
    )
    .unwrap();
    let (received, closed_after) = read_until_closed(stream, Duration::from_secs(10));
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(
        closed_after < Duration::from_secs(3),
        "took {closed_after:?}"
    );
    // The body streams into the running guest, which was blocked reading it: it was stopped
    // at the deadline, and the server serves on.
    assert!(
        server.log_contains(
            "was stopped at its deadline (--timeout) while its body was still arriving"
        ),
        "{}",
        server.logs()
    );
    assert_eq!(server.get_text("/").0, 200);
}

#[test]
fn an_idle_server_uses_no_cpu_and_serves_new_connections() {
    // Wasmer 7.1's WCGI runner spun a core while idle and hung on a second connection
    // without keep-alive (wasmerio/wasmer#5047).
    let server = Server::start(&[fixture("hello")]);
    assert_goes_idle(&server);
    for _ in 0..20 {
        let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        write!(
            stream,
            "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let (received, _) = read_until_closed(stream, Duration::from_secs(5));
        assert!(received.starts_with("HTTP/1.1 200"), "{received}");
        assert!(received.contains("Hello from WebAssembly!\n"), "{received}");
    }
    assert_goes_idle(&server);
}

#[test]
fn lock_directories_an_ended_instance_still_holds_are_removed() {
    // SQLite on WASI locks with `<db>.lock` directories; a guest that exits or is stopped while
    // holding one must not lock the database for every later request.
    let data = tempfile::tempdir().unwrap();
    let mapdir = format!("/data:{}", data.path().display());
    let server = Server::start(&[
        fixture("files").as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
        "--timeout".as_ref(),
        "1s".as_ref(),
    ]);
    assert_eq!(
        server.get_text("/lock?/data/exit.sqlite.lock"),
        (200, "locked\n".to_string())
    );
    assert!(!data.path().join("exit.sqlite.lock").exists());
    assert!(server.log_contains("removed /data/exit.sqlite.lock"));

    // Stopped at its deadline while holding the lock: the response is cut, the lock is not left.
    let response = server.get("/lock?/data/spin.sqlite.lock&spin");
    assert_eq!(response.status(), 200, "the guest did not take the lock");
    let (body, clean) = read_body(response);
    assert_eq!(String::from_utf8_lossy(&body), "locked\n");
    assert!(
        !clean,
        "a guest stopped at its deadline cannot have finished its response"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while data.path().join("spin.sqlite.lock").exists() {
        assert!(
            Instant::now() < deadline,
            "the lock of a stopped instance stayed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        server.log_contains("still holding SQLite locks; removed /data/spin.sqlite.lock"),
        "{}",
        server.logs()
    );

    // A lock held by someone else (here: made on the host) is never touched, and directories
    // that are not locks stay.
    std::fs::create_dir(data.path().join("held.sqlite.lock")).unwrap();
    assert_eq!(server.get_text("/lock?/data/held.sqlite.lock").0, 409);
    assert!(data.path().join("held.sqlite.lock").exists());
    assert_eq!(server.get_text("/lock?/data/uploads").0, 200);
    assert!(data.path().join("uploads").is_dir());
}
