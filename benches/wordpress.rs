//! The WordPress example's front page and dashboard, in the same run on the same docroot:
//! through wcgi (php-cgi for WASI, one instance per request, assets from the host) with the
//! module's pre-initialisation snapshot, with it while the docroot is mapped writable for live
//! edits (`--mapdir /app:site`: the snapshot is never current, so every script's timestamp is
//! checked), and with `--no-preinit`; through Debian's PHP-FPM with OPcache (a static pool of
//! two workers) behind lighttpd mod_fastcgi, as a PHP host runs it; and through Debian's
//! native `php-cgi8.2` behind lighttpd mod_cgi. Median and p95 of 20 sequential requests each,
//! and each wcgi row's ratio to PHP-FPM and to php-cgi. Each server has its own fresh
//! database, installed and logged into first. For the wcgi rows it also prints the start-up
//! (spawn to banner) with an empty cache, which compiles the module and builds the snapshot,
//! and a second start-up on that cache.
//!
//! Needs the assembled example (`examples/wordpress/setup.sh`), lighttpd, php8.2-cgi,
//! php8.2-fpm, php8.2-opcache and php8.2-sqlite3 (`apt-get install lighttpd php8.2-cgi
//! php8.2-fpm php8.2-opcache php8.2-sqlite3`); a missing one is named in one line and its row
//! skipped. Run with `cargo bench --bench wordpress`; built with `--features llvm` it adds a
//! snapshot row compiled by LLVM (`--compiler llvm`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, client, wordpress};
use lighttpd::{Lighttpd, installed, lighttpd_binary};
use php_fpm::PhpFpm;

const REQUESTS: usize = 20;
const WARM_UP: usize = 3;
const FPM: &str = "PHP-FPM+OPcache";
const PHP_CGI: &str = "php-cgi";

/// `(median, p95)` of one page.
type Timing = (Duration, Duration);

struct Row {
    name: &'static str,
    front: Timing,
    dashboard: Timing,
    /// wcgi only: start-up with an empty cache, then with what the first start cached.
    start_ups: Option<(Duration, Duration)>,
}

/// One page, timed: `(median, p95)`.
fn time_page(url: &str, cookie: Option<&str>, expect: &str) -> Timing {
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

/// Installs WordPress on the server's fresh database, logs in, and times both pages.
fn measure(base_url: &str) -> (Timing, Timing) {
    wordpress::install(base_url);
    let cookie = wordpress::log_in(base_url);
    let front = time_page(&format!("{base_url}/"), None, wordpress::SITE_TITLE);
    let dashboard = time_page(&format!("{base_url}/wp-admin/"), Some(&cookie), "Dashboard");
    (front, dashboard)
}

/// `wordpress::serve`, timed from spawn to banner.
fn start_wcgi(data: &Path, extra: &[&str]) -> (Server, Duration) {
    let started = Instant::now();
    let server = wordpress::serve(data, extra);
    (server, started.elapsed())
}

/// What both lighttpd rows add to its configuration: the docroot's index, and the database
/// directory and WP_DEBUG in the environment as wcgi's `--mapdir /data:...` and `--env` give
/// them (lighttpd's own SERVER_SOFTWARE stays, for both).
fn lighttpd_config(data: &Path) -> String {
    format!(
        "index-file.names = (\"index.php\")\n\
         setenv.add-environment = (\"WP_DATA_DIR\" => \"{}\", \"WP_DEBUG\" => \"1\")\n",
        data.display()
    )
}

/// One line naming a peer that cannot run and what to install; its row is skipped.
fn missing(peer: &str, reason: &str, install: &str) {
    eprintln!("*** MISSING PEER: {peer} ({reason}): its row is skipped; {install} ***");
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn main() {
    let site = wordpress::example_dir().join("site");
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let mut without_snapshot = false;

    // The docroot mapped writable, as `wcgi run . --mapdir /app:./app` serves a site being
    // edited: the snapshot is never current, so OPcache checks every script's timestamp.
    let live_site = format!("/app:{}", site.display());
    let live = ["--mapdir", live_site.as_str()];
    let mut wcgi_rows = vec![
        ("wcgi (snapshot)", &[][..]),
        ("wcgi (live /app)", &live[..]),
        ("wcgi (--no-preinit)", &["--no-preinit"][..]),
    ];
    // Built with `--features llvm`: the same with wasmer's LLVM compiler.
    if cfg!(feature = "llvm") {
        wcgi_rows.push(("wcgi llvm (snapshot)", &["--compiler", "llvm"][..]));
    }
    for (name, extra) in wcgi_rows {
        let data = tempfile::tempdir().unwrap();
        // A cache of its own, so that the first start compiles (and snapshots) from scratch
        // and the second finds only what the first left.
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().display().to_string();
        let args: Vec<&str> = extra
            .iter()
            .copied()
            .chain(["--cache-dir", &cache_dir])
            .collect();
        let (first, first_start) = start_wcgi(data.path(), &args);
        drop(first);
        let (server, cached_start) = start_wcgi(data.path(), &args);
        let (front, dashboard) = measure(&server.base_url);
        let logs = server.logs();
        without_snapshot |=
            !extra.contains(&"--no-preinit") && !logs.contains("pre-initialised with");
        problems.extend(wordpress::php_problems(&logs));
        rows.push(Row {
            name,
            front,
            dashboard,
            start_ups: Some((first_start, cached_start)),
        });
    }

    // How the native rows that ran were served, for the table's last line.
    let mut natives = Vec::new();
    let have_lighttpd = lighttpd_binary().is_some();
    if !have_lighttpd {
        missing(
            "lighttpd",
            "not installed",
            "apt-get install lighttpd (both native rows need it)",
        );
    }
    match php_fpm::binary() {
        None => missing(FPM, "no /usr/sbin/php-fpm8.2", php_fpm::INSTALL),
        Some(_) if !have_lighttpd => {}
        Some(binary) => {
            let data = tempfile::tempdir().unwrap();
            let data_dir = data.path().display().to_string();
            // wp-config.php reads WP_DATA_DIR and WP_DEBUG with getenv(), which under FPM
            // sees the pool's environment, not the FastCGI parameters lighttpd adds.
            let env = [("WP_DATA_DIR", data_dir.as_str()), ("WP_DEBUG", "1")];
            match PhpFpm::start(&binary, &["pdo_sqlite"], &env) {
                Err(reason) => missing(FPM, &reason, php_fpm::INSTALL),
                Ok(pool) => {
                    let front = Lighttpd::start_fastcgi(
                        &site,
                        ".php",
                        pool.socket(),
                        &["mod_setenv"],
                        &lighttpd_config(data.path()),
                    );
                    let (front_page, dashboard) = measure(&front.url(""));
                    natives.push(format!(
                        "{FPM}: {} (static pool of 2) via lighttpd mod_fastcgi",
                        binary.display()
                    ));
                    rows.push(Row {
                        name: FPM,
                        front: front_page,
                        dashboard,
                        start_ups: None,
                    });
                }
            }
        }
    }
    match installed(&["/usr/bin/php-cgi8.2"]) {
        None => missing(
            PHP_CGI,
            "no /usr/bin/php-cgi8.2",
            "apt-get install php8.2-cgi php8.2-sqlite3",
        ),
        Some(_) if !have_lighttpd => {}
        Some(php_cgi) => {
            let data = tempfile::tempdir().unwrap();
            let native = Lighttpd::start(
                &site,
                &[(".php", &php_cgi)],
                &["mod_setenv"],
                &lighttpd_config(data.path()),
            );
            let (front, dashboard) = measure(&native.url(""));
            natives.push(format!(
                "{PHP_CGI}: {} via lighttpd mod_cgi",
                php_cgi.display()
            ));
            rows.push(Row {
                name: PHP_CGI,
                front,
                dashboard,
                start_ups: None,
            });
        }
    }

    println!(
        "WordPress 6.8 on SQLite, {REQUESTS} sequential requests after {WARM_UP} warm-up, same run"
    );
    println!(
        "  {:<20} {:>22} {:>22} {:>24}",
        "", "front page median/p95", "dashboard median/p95", "start-up empty/cached"
    );
    for row in &rows {
        let start_ups = row.start_ups.map_or(String::new(), |(first, cached)| {
            format!("{:>9.0} / {:>5.0} ms", ms(first), ms(cached))
        });
        let line = format!(
            "  {:<20} {:>10.0} / {:>5.0} ms {:>10.0} / {:>5.0} ms {start_ups:>24}",
            row.name,
            ms(row.front.0),
            ms(row.front.1),
            ms(row.dashboard.0),
            ms(row.dashboard.1),
        );
        println!("{}", line.trim_end());
    }
    // Medians only: each wcgi row against each native row that ran.
    let peers: Vec<&Row> = rows.iter().filter(|row| row.start_ups.is_none()).collect();
    for row in rows.iter().filter(|row| row.start_ups.is_some()) {
        let ratios = |page: fn(&Row) -> Timing| -> String {
            let ratios: Vec<String> = peers
                .iter()
                .map(|peer| format!("{:.2}× {}", ms(page(row).0) / ms(page(peer).0), peer.name))
                .collect();
            if ratios.is_empty() {
                "no native row".into()
            } else {
                ratios.join(", ")
            }
        };
        println!(
            "  {:<20} front page = {}; dashboard = {}",
            row.name,
            ratios(|row| row.front),
            ratios(|row| row.dashboard)
        );
    }
    if !natives.is_empty() {
        println!("  {}", natives.join("; "));
    }
    println!(
        "  (start-up: spawn to banner; \"empty\" compiles php-cgi.wasm and builds the snapshot, \
         \"cached\" is the start-up with cached snapshot)"
    );
    if without_snapshot {
        println!(
            "  (examples/wordpress/php-cgi.wasm exports no wizer.initialize: the snapshot row ran \
             without one, as --no-preinit)"
        );
    }
    if !problems.is_empty() {
        println!("PHP complained through wcgi:\n{}", problems.join("\n"));
    }
}
