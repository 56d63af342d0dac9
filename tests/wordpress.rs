//! Unmodified WordPress on SQLite (`examples/wordpress`) through the real binary over HTTP:
//! static assets from the host, PHP source never shown, and requests stopped by `--timeout`
//! leaving the site working. The real-browser test is in `wordpress_browser.rs`.

mod common;

use std::time::{Duration, Instant};

use common::wordpress::{self, SITE_TITLE};
use common::{Server, client, raw_get};

#[test]
fn wordpress_serves_its_assets_from_the_host_and_never_its_source() {
    let data = tempfile::tempdir().unwrap();
    let server = wordpress::serve(data.path(), &[]);
    let (status, _) = server.get_text("/");
    assert_eq!(status, 302, "a fresh site sends visitors to the installer");
    wordpress::install(&server.base_url);
    let (status, page) = server.get_text("/");
    assert_eq!(status, 200);
    assert!(page.contains(SITE_TITLE), "{page}");

    let css = server.get("/wp-includes/css/dashicons.min.css");
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css");
    assert!(css.headers().contains_key("etag"), "served by the host");
    let etag = css.headers()["etag"].clone();
    let cached = client()
        .get(server.url("/wp-includes/css/dashicons.min.css"))
        .header("If-None-Match", etag)
        .send()
        .unwrap();
    assert_eq!(cached.status(), 304);
    let problems = wordpress::php_problems(&server.logs());
    assert!(
        problems.is_empty(),
        "PHP complained:\n{}",
        problems.join("\n")
    );

    // A hidden file that exists is never served: its text must not show up.
    let htaccess = wordpress::example_dir().join("site/.htaccess");
    if !htaccess.exists() {
        std::fs::write(&htaccess, "# wcgi test: this file must never be served\n").unwrap();
    }
    let hidden_text = std::fs::read_to_string(&htaccess).unwrap();
    let hidden_line = hidden_text
        .lines()
        .find(|line| !line.trim().is_empty())
        .expect("a non-empty .htaccess");
    let (status, body) = raw_get(server.port, "/.htaccess");
    assert!(
        !body.contains(hidden_line),
        "/.htaccess was served: {status}"
    );
    assert_ne!(status, 200, "/.htaccess answered 200:\n{body}");

    // Run as scripts, never shown. (Run directly, wp-content/db.php fails for want of
    // WordPress around it, as it does under Apache.)
    for probe in [
        "/wp-config.php",
        "/wp-content/db.php",
        "/wp-includes/version.php",
        "/wp-includes/../wp-config.php",
        "/wp-includes/%2e%2e/wp-config.php",
        "/wp-config.php/",
        "/.htaccess",
    ] {
        let (status, body) = raw_get(server.port, probe);
        assert!(
            !body.contains("<?php") && !body.contains("DB_ENGINE") && !body.contains("$wp_version"),
            "{probe} showed PHP source: {status}"
        );
    }
}

#[test]
fn requests_stopped_by_the_timeout_leave_wordpress_working() {
    let data = tempfile::tempdir().unwrap();
    let server = wordpress::serve(data.path(), &[]);
    wordpress::install(&server.base_url);
    wordpress::log_in(&server.base_url);

    // Logins write (session tokens, user meta); stop them at different points of their run,
    // while the first server keeps serving the same database. Four at once on two cores can
    // all outlast 950 ms, so the last round leaves them time to complete.
    let mut statuses = Vec::new();
    for timeout in ["150ms", "500ms", "750ms", "850ms", "950ms", "10s"] {
        let impatient = wordpress::serve(data.path(), &["--timeout", timeout]);
        let attempts: Vec<_> = (0..4)
            .map(|_| {
                let base_url = impatient.base_url.clone();
                std::thread::spawn(move || {
                    // Each login is answered: completed (302, or 200 if WordPress showed the
                    // form again) or stopped before its head (504). php-cgi writes its head
                    // and its body separately, so a deadline can fall between the two: that
                    // response is cut short, as the README says of a guest stopped after its
                    // head. Any other status is a failure.
                    let response = wordpress::log_in_attempt(&base_url)
                        .unwrap_or_else(|error| panic!("a login got no answer: {error}"));
                    let status = response.status().as_u16();
                    let (body, clean) = common::read_body(response);
                    if !clean {
                        eprintln!("a {status} login was stopped after its head");
                        assert_ne!(status, 504, "a 504 must be whole");
                    }
                    if status == 504 {
                        assert_eq!(String::from_utf8_lossy(&body), "gateway timeout\n");
                    }
                    status
                })
            })
            .collect();
        statuses.extend(attempts.into_iter().map(|attempt| attempt.join().unwrap()));
    }
    eprintln!("login statuses under short timeouts: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|status| [200, 302, 504].contains(status)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&504),
        "no request was stopped; the test proves nothing: {statuses:?}"
    );
    assert!(
        statuses.contains(&302),
        "no login completed under any timeout: {statuses:?}"
    );

    let leftover_locks: Vec<_> = std::fs::read_dir(data.path())
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".lock"))
        .collect();
    assert!(leftover_locks.is_empty(), "locks left: {leftover_locks:?}");

    let started = Instant::now();
    let (status, page) = server.get_text("/");
    assert_eq!(status, 200);
    assert!(page.contains(SITE_TITLE));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the front page waited {:?} for the database",
        started.elapsed()
    );
    let cookies = wordpress::log_in(&server.base_url);
    let dashboard = client()
        .get(server.url("/wp-admin/"))
        .header("Cookie", cookies)
        .send()
        .unwrap();
    assert_eq!(dashboard.status(), 200);
    assert!(dashboard.text().unwrap().contains("Dashboard"));
    let problems = wordpress::php_problems(&server.logs());
    assert!(
        problems.is_empty(),
        "PHP complained:\n{}",
        problems.join("\n")
    );
}

#[test]
fn without_its_database_directory_the_site_says_what_to_map() {
    let server = Server::start(&[wordpress::example_dir()]);
    let (status, page) = server.get_text("/wp-admin/install.php");
    assert_eq!(status, 503);
    assert!(page.contains("--mapdir /data:"), "{page}");
    let (status, _) = server.get_text("/");
    assert_eq!(status, 503);
}
