//! The WordPress example's front page and dashboard through wcgi (php-cgi for WASI, one
//! instance per request, assets from the host) and through Debian's native `php-cgi8.2`
//! behind lighttpd mod_cgi, on the same docroot in the same run: median and p95 of 20
//! sequential requests each, and their ratio. Each server has its own fresh database,
//! installed and logged into first.
//!
//! Needs the assembled example (`examples/wordpress/setup.sh`), lighttpd, php8.2-cgi and
//! php8.2-sqlite3 (`apt-get install lighttpd php8.2-cgi php8.2-sqlite3`).
//! Run with `cargo bench --bench wordpress`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;

use std::time::{Duration, Instant};

use common::{client, wordpress};
use lighttpd::{Lighttpd, installed};

const REQUESTS: usize = 20;
const WARM_UP: usize = 3;

/// One page, timed: `(median, p95)`.
fn time_page(url: &str, cookie: Option<&str>, expect: &str) -> (Duration, Duration) {
    let http = client();
    let fetch = || {
        let mut request = http.get(url);
        if let Some(cookie) = cookie {
            request = request.header("Cookie", cookie);
        }
        let started = Instant::now();
        let response = request.send().unwrap();
        let status = response.status();
        let body = response.text().unwrap();
        let elapsed = started.elapsed();
        assert!(status == 200 && body.contains(expect), "{url}: {status}");
        elapsed
    };
    for _ in 0..WARM_UP {
        fetch();
    }
    let mut times: Vec<Duration> = (0..REQUESTS).map(|_| fetch()).collect();
    times.sort();
    let p95 = times[(REQUESTS * 95).div_ceil(100) - 1];
    (times[REQUESTS / 2], p95)
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn main() {
    let site = wordpress::example_dir().join("site");
    let php_cgi = installed(&["/usr/bin/php-cgi8.2"])
        .expect("Debian's php-cgi is the baseline: apt-get install php8.2-cgi php8.2-sqlite3");

    let wcgi_data = tempfile::tempdir().unwrap();
    let wcgi = wordpress::serve(wcgi_data.path(), &[]);
    let native_data = tempfile::tempdir().unwrap();
    let native = Lighttpd::start(
        &site,
        &[(".php", &php_cgi)],
        &["mod_setenv"],
        &format!(
            "index-file.names = (\"index.php\")\n\
             setenv.add-environment = (\"WP_DATA_DIR\" => \"{}\", \"WP_DEBUG\" => \"1\")\n",
            native_data.path().display()
        ),
    );

    let mut rows = Vec::new();
    for (name, base_url) in [("wcgi", wcgi.base_url.clone()), ("native", native.url(""))] {
        wordpress::install(&base_url);
        let cookie = wordpress::log_in(&base_url);
        let front = time_page(&format!("{base_url}/"), None, wordpress::SITE_TITLE);
        let dashboard = time_page(&format!("{base_url}/wp-admin/"), Some(&cookie), "Dashboard");
        rows.push((name, front, dashboard));
    }

    println!(
        "WordPress 6.8 on SQLite, {REQUESTS} sequential requests after {WARM_UP} warm-up, same run \
         (native: {} via lighttpd mod_cgi)",
        php_cgi.display()
    );
    println!(
        "  {:<8} {:>22} {:>22}",
        "", "front page median/p95", "dashboard median/p95"
    );
    for (name, front, dashboard) in &rows {
        println!(
            "  {name:<8} {:>10.0} / {:>5.0} ms {:>10.0} / {:>5.0} ms",
            ms(front.0),
            ms(front.1),
            ms(dashboard.0),
            ms(dashboard.1)
        );
    }
    let (wasm, native) = (&rows[0], &rows[1]);
    println!(
        "  {:<8} {:>10.2}× / {:>4.2}× {:>12.2}× / {:>4.2}×",
        "ratio",
        ms(wasm.1.0) / ms(native.1.0),
        ms(wasm.1.1) / ms(native.1.1),
        ms(wasm.2.0) / ms(native.2.0),
        ms(wasm.2.1) / ms(native.2.1)
    );
    let problems = wordpress::php_problems(&wcgi.logs());
    if !problems.is_empty() {
        println!("PHP complained through wcgi:\n{}", problems.join("\n"));
    }
}
