//! The WordPress example (`examples/wordpress`, assembled by its `setup.sh`) served by the real
//! binary, and the few HTTP steps tests and benchmarks share: install, log in.

use std::path::{Path, PathBuf};

use super::{Server, client, repo_root};

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "wcgi-Test-Passphrase-2026";
pub const SITE_TITLE: &str = "wcgi WordPress test";

/// The example's directory, once `setup.sh` has assembled it.
pub fn example_dir() -> PathBuf {
    let dir = repo_root().join("examples/wordpress");
    assert!(
        dir.join("site/wp-settings.php").is_file() && dir.join("php-cgi.wasm").is_file(),
        "the WordPress example is not assembled; run examples/wordpress/setup.sh (scripts/test does)"
    );
    dir
}

/// `wcgi run examples/wordpress` with its database in `data`, PHP warnings logged
/// (`WP_DEBUG=1`), plus `extra` arguments.
pub fn serve(data: &Path, extra: &[&str]) -> Server {
    let mapdir = format!("/data:{}", data.display());
    let mut args: Vec<String> = vec![
        example_dir().display().to_string(),
        "--mapdir".into(),
        mapdir,
        "--env".into(),
        "WP_DEBUG=1".into(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    Server::start(&args)
}

/// Runs WordPress's installer (the form's POST) on a fresh database.
pub fn install(base_url: &str) {
    let response = post_form(
        &format!("{base_url}/wp-admin/install.php?step=2"),
        &[
            ("weblog_title", SITE_TITLE),
            ("user_name", ADMIN_USER),
            ("admin_password", ADMIN_PASSWORD),
            ("admin_password2", ADMIN_PASSWORD),
            ("pw_weak", "1"),
            ("admin_email", "admin@example.com"),
            ("blog_public", "0"),
        ],
    )
    .expect("POST install.php");
    let status = response.status();
    let page = response.text().unwrap_or_default();
    assert!(
        status == 200 && page.contains("WordPress has been installed"),
        "install failed: {status}\n{page}"
    );
}

/// Logs in as the admin; returns the `Cookie` header value that keeps the session.
pub fn log_in(base_url: &str) -> String {
    let response = log_in_attempt(base_url).expect("POST wp-login.php");
    assert_eq!(response.status(), 302, "login did not redirect");
    let cookies: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|value| value.to_str().ok()?.split(';').next().map(str::to_string))
        .filter(|pair| pair.starts_with("wordpress_"))
        .collect();
    assert!(cookies.len() >= 2, "login set no session cookies");
    cookies.join("; ")
}

/// POSTs the login form once, with the test cookie WordPress checks for.
pub fn log_in_attempt(base_url: &str) -> reqwest::Result<reqwest::blocking::Response> {
    client()
        .post(format!("{base_url}/wp-login.php"))
        .header("Cookie", "wordpress_test_cookie=WP%20Cookie%20check")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("log", ADMIN_USER),
            ("pwd", ADMIN_PASSWORD),
            ("wp-submit", "Log In"),
            ("testcookie", "1"),
        ]))
        .send()
}

fn post_form(url: &str, fields: &[(&str, &str)]) -> reqwest::Result<reqwest::blocking::Response> {
    client()
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form_body(fields))
        .send()
}

fn form_body(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish()
}

/// PHP's complaints in a server log: the example sends them to the log, never to pages.
pub fn php_problems(log: &str) -> Vec<String> {
    const MARKERS: [&str; 5] = [
        "PHP Warning",
        "PHP Notice",
        "PHP Deprecated",
        "PHP Fatal error",
        "PHP Parse error",
    ];
    log.lines()
        .filter(|line| MARKERS.iter().any(|marker| line.contains(marker)))
        .map(str::to_string)
        .collect()
}
