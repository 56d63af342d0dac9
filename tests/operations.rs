//! Running it for real: request ids kept from the client or made and sent back, and JSON logs
//! with one object per line and one access event per request.

mod common;

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
        assert!(event["duration_ms"].as_f64().unwrap() > 0.0);
        let id = event["request_id"].as_str().unwrap();
        assert!(id.starts_with('r'), "{id}");
    }
}
