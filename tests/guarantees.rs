//! Promises the README makes about a running server that no other test checks, each checked
//! against the real binary over loopback.

mod common;

use common::{Server, fixture};

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
