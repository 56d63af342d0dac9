//! Floods anyone can send with one script: silent connections, more connections than the
//! server has descriptors for, and many large uploads at once. Each costs the attacker, never
//! the other clients.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, client, fixture};

/// Opens `count` connections that never send a byte.
fn silent_connections(server: &Server, count: usize) -> Vec<TcpStream> {
    raise_own_open_file_limit();
    (0..count)
        .map(|_| TcpStream::connect(("127.0.0.1", server.port)).expect("connect"))
        .collect()
}

/// This test process holds hundreds of connections at once, over several tests in parallel.
fn raise_own_open_file_limit() {
    static RAISED: std::sync::Once = std::sync::Once::new();
    RAISED.call_once(|| {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit read and write one struct we own.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            limit.rlim_cur = limit.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        assert!(
            limit.rlim_cur >= 4096,
            "the flood tests need `ulimit -Hn` of at least 4096, not {}",
            limit.rlim_cur
        );
    });
}

/// Whether the server has closed `stream` (a read sees end-of-file or a reset) within
/// `limit`; `false` if it is still open then.
fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut byte = [0u8; 1];
    match stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => panic!("the server sent bytes on a connection that sent nothing"),
        Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_reset) => true,
    }
}

/// A plain GET over a fresh connection; the status and how long the answer took.
fn raw_get(server: &Server, path: &str, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).expect("connect");
    stream.set_read_timeout(Some(limit)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    let text = String::from_utf8_lossy(&received);
    let status = text.lines().next().unwrap_or("").to_string();
    (status, started.elapsed())
}

#[test]
fn a_connection_that_never_sends_a_byte_is_closed_at_the_header_timeout() {
    let server = Server::start(&[
        fixture("hello").as_os_str(),
        "--header-timeout".as_ref(),
        "1s".as_ref(),
    ]);
    let opened = Instant::now();
    let mut silent = silent_connections(&server, 100);
    // Not before the timeout...
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        !closed_within(&mut silent[0], Duration::from_millis(10)),
        "closed after {:?}, before --header-timeout",
        opened.elapsed()
    );
    // ...but every one of them soon after it.
    for (n, stream) in silent.iter_mut().enumerate() {
        let left = Duration::from_millis(2500).saturating_sub(opened.elapsed());
        assert!(
            closed_within(stream, left.max(Duration::from_millis(1))),
            "silent connection {n} still open {:?} after it was accepted",
            opened.elapsed()
        );
    }
    assert_eq!(server.get_text("/").0, 200);
}

#[test]
fn silent_connections_beyond_the_open_file_limit_do_not_lock_out_other_clients() {
    // 256 descriptors: the default cap leaves room for the instances' files. The flood is
    // larger than the whole limit.
    let server = Server::start_with_open_file_limit(
        &[
            fixture("hello").as_os_str(),
            "--header-timeout".as_ref(),
            "2s".as_ref(),
        ],
        256,
    );
    assert!(
        server.log_contains("open-file limit 256; up to 128 connections"),
        "{}",
        server.logs()
    );
    let _flood = silent_connections(&server, 400);
    let (status, took) = raw_get(&server, "/", Duration::from_secs(10));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(took < Duration::from_secs(3), "answered after {took:?}");
    // Still serving while the flood is held open.
    for _ in 0..5 {
        assert_eq!(
            raw_get(&server, "/", Duration::from_secs(10)).0,
            "HTTP/1.1 200 OK"
        );
    }
}

#[test]
fn running_out_of_descriptors_is_one_episode_and_requests_are_answered_again() {
    // A cap above the descriptor limit, so accept itself fails with EMFILE.
    let server = Server::start_with_open_file_limit(
        &[
            fixture("hello").as_os_str(),
            "--header-timeout".as_ref(),
            "2s".as_ref(),
            "--max-connections".as_ref(),
            "1000".as_ref(),
        ],
        128,
    );
    let _flood = silent_connections(&server, 300);
    // Every new connection meets a full descriptor table, for two seconds.
    for _ in 0..20 {
        let (status, took) = raw_get(&server, "/", Duration::from_secs(10));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(took < Duration::from_secs(3), "answered after {took:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        server.log_contains("cannot accept connections"),
        "{}",
        server.logs()
    );
    // Not one line per refused accept (20 here): one per stretch of trouble, and the
    // trouble never stopped for the three seconds that end a stretch.
    let episodes = server.logs().matches("cannot accept connections").count();
    assert!(
        episodes <= 2,
        "{episodes} episode lines for one flood:\n{}",
        server.logs()
    );
}

#[test]
fn max_connections_holds_by_closing_the_longest_idle() {
    let server = Server::start(&[
        fixture("hello").as_os_str(),
        "--max-connections".as_ref(),
        "10".as_ref(),
    ]);
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(TcpStream::connect(("127.0.0.1", server.port)).unwrap());
        // Accepted in order, so "longest idle" is well defined.
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(500));
    let closed: Vec<bool> = silent
        .iter_mut()
        .map(|stream| closed_within(stream, Duration::from_millis(50)))
        .collect();
    let expected: Vec<bool> = (0..30).map(|n| n < 20).collect();
    assert_eq!(closed, expected, "which connections the server closed");
    // A new client gets in, as the eleventh, by pushing out the oldest idle one.
    assert_eq!(server.get_text("/").0, 200);
}

#[test]
fn a_connection_with_a_request_in_flight_is_never_closed_to_make_room() {
    let server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--max-connections".as_ref(),
        "2".as_ref(),
    ]);
    let busy = common::spawn_gets(&server.url("/?1500"), 2);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let (status, _) = raw_get(&server, "/?0", Duration::from_secs(10));
    assert_eq!(status, "HTTP/1.1 200 OK");
    // It had to wait for one of the two to finish.
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "answered after {:?}, while both connections were busy",
        started.elapsed()
    );
    for handle in busy {
        assert_eq!(handle.join().unwrap(), (200, "slept 1500ms\n".to_string()));
    }
}

/// 15 MB that every upload thread shares.
fn upload_body() -> &'static [u8] {
    static BODY: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BODY.get_or_init(|| (0..15_000_000u32).map(|i| (i % 251) as u8).collect())
}

fn byte_sum(bytes: &[u8]) -> u32 {
    bytes
        .iter()
        .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)))
}

#[test]
fn many_large_uploads_at_once_keep_server_memory_bounded() {
    let server = Server::start(&[
        fixture("upload").as_os_str(),
        "--max-concurrency".as_ref(),
        "4".as_ref(),
    ]);
    let body = upload_body();
    let expected = format!(
        "read {} bytes, sum {}, CONTENT_LENGTH={}\n",
        body.len(),
        byte_sum(body),
        body.len()
    );
    assert_eq!(server.get_text("/").0, 200);
    let baseline = server.peak_rss();
    let url = server.url("/?300");
    let uploads: Vec<_> = (0..64)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let response = client().post(&url).body(upload_body()).send().unwrap();
                (response.status().as_u16(), response.text().unwrap())
            })
        })
        .collect();
    let results: Vec<_> = uploads.into_iter().map(|h| h.join().unwrap()).collect();
    let grown = server.peak_rss().saturating_sub(baseline);
    let served = results.iter().filter(|result| result.0 == 200).count();
    for (status, text) in &results {
        match status {
            200 => assert_eq!(text, &expected),
            503 => {}
            other => panic!("upload got {other}: {text}"),
        }
    }
    assert!(served >= 4, "only {served} of 64 served: {results:?}");
    assert!(
        grown <= 256 * 1024 * 1024,
        "peak RSS grew by {} MiB for 64 uploads of 15 MB",
        grown / (1024 * 1024)
    );
}

#[test]
fn a_chunked_upload_is_spooled_and_its_length_told() {
    let server = Server::start(&[fixture("upload")]);
    let body = upload_body();
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(body));
    let response = client().post(server.url("/")).body(chunked).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.text().unwrap(),
        format!(
            "read {} bytes, sum {}, CONTENT_LENGTH={}\n",
            body.len(),
            byte_sum(body),
            body.len()
        )
    );
}

/// Sends a POST head declaring a body of `length` bytes, then as much of the body as the
/// server takes within `for_how_long`; returns how many bytes went out.
fn push_body(stream: &mut TcpStream, path: &str, length: u64, for_how_long: Duration) -> u64 {
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n"
    )
    .unwrap();
    stream
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let piece = vec![b'x'; 64 * 1024];
    let until = Instant::now() + for_how_long;
    let mut sent = 0u64;
    while Instant::now() < until && sent < length {
        match stream.write(&piece) {
            Ok(n) => sent += n as u64,
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(error) => panic!("the server dropped the upload after {sent} bytes: {error}"),
        }
    }
    sent
}

#[test]
fn a_guest_that_never_reads_stdin_stalls_the_upload_instead_of_growing_memory() {
    // `sleepy` never reads its stdin.
    let server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--max-body".as_ref(),
        "1GiB".as_ref(),
    ]);
    assert_eq!(server.get_text("/?0").0, 200);
    let before = server.rss();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    let sent = push_body(&mut stream, "/?3000", 1_000_000_000, Duration::from_secs(2));
    // What the kernel's socket buffers and a few pieces in flight hold, nowhere near 1 GB.
    assert!(
        sent < 48 * 1024 * 1024,
        "the server took {} MiB of a body nobody reads",
        sent / (1024 * 1024)
    );
    let grown = server.rss().saturating_sub(before);
    assert!(
        grown < 32 * 1024 * 1024,
        "RSS grew by {} MiB",
        grown / (1024 * 1024)
    );
}

#[test]
fn a_refused_request_is_refused_at_once_without_its_body() {
    let server = Server::start(&[
        fixture("sleepy").as_os_str(),
        "--max-concurrency".as_ref(),
        "1".as_ref(),
        "--max-queue".as_ref(),
        "1".as_ref(),
    ]);
    let busy = common::spawn_gets(&server.url("/?2000"), 2);
    std::thread::sleep(Duration::from_millis(500));
    // One runs, one waits: a third request is refused from its head alone, with its
    // 15 MB body still unsent.
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    write!(
        stream,
        "POST /?0 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 15000000\r\n\r\nfirst bytes"
    )
    .unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 503");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "refused after {:?}",
        started.elapsed()
    );
    for handle in busy {
        assert_eq!(handle.join().unwrap().0, 200);
    }
}

#[test]
fn bodies_over_max_body_get_413_without_starting_an_instance() {
    let tally = tempfile::tempdir().unwrap();
    let mapdir = format!("/tally:{}", tally.path().display());
    let server = Server::start(&[
        fixture("tally").as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
        "--max-body".as_ref(),
        "64KiB".as_ref(),
    ]);
    let runs = || common::tally_runs(tally.path());
    let declared = client()
        .post(server.url("/"))
        .body(vec![0u8; 65 * 1024 + 1])
        .send()
        .unwrap();
    assert_eq!(declared.status(), 413);
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(vec![0u8; 300 * 1024]));
    let chunked = client().post(server.url("/")).body(chunked).send().unwrap();
    assert_eq!(chunked.status(), 413);
    assert_eq!(runs(), 0, "an instance started for a refused body");
    // A body within the limit does start one.
    let within = client()
        .post(server.url("/"))
        .body(vec![0u8; 1024])
        .send()
        .unwrap();
    assert_eq!(within.status(), 200);
    assert_eq!(runs(), 1);
}
