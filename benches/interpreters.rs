//! hello.py and hello.php through wcgi (CPython and php-cgi for WASI, one instance per request),
//! once with the module's pre-initialisation snapshot (when it exports `wizer.initialize`) and
//! once with `--no-preinit`, and through what a host would run natively: Debian's `python3`
//! and `php-cgi` behind lighttpd's mod_cgi, and Debian's PHP-FPM with OPcache (a static pool
//! of two workers) behind lighttpd's mod_fastcgi. All in the same run on the same scripts:
//! medians of 50 sequential requests, and each wcgi row's ratio to the native rows.
//!
//! Needs lighttpd, python3, php8.2-cgi, php8.2-fpm and php8.2-opcache (`apt-get install
//! lighttpd python3 php8.2-cgi php8.2-fpm php8.2-opcache`); a missing one is named in one line
//! and its row skipped. Run with `cargo bench --bench interpreters`; built with `--features
//! llvm` it adds snapshot rows compiled by LLVM (`--compiler llvm`).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;
#[path = "support/php_fpm.rs"]
mod php_fpm;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, client, php_interpreter, python_interpreter, repo_root};
use lighttpd::{Lighttpd, installed, lighttpd_binary};
use php_fpm::PhpFpm;

const REQUESTS: usize = 50;
const HELLO_PY: &str = "import os\nprint('Content-Type: text/plain')\nprint()\nprint('hello from python', os.environ.get('QUERY_STRING', ''))\n";
const HELLO_PHP: &str = "<?php\nheader('Content-Type: text/plain');\necho 'hello from php ', $_SERVER['QUERY_STRING'], \"\\n\";\n";
/// Served by PHP-FPM once, so that its row is known to run with OPcache on.
const OPCACHE_PHP: &str = "<?php\nheader('Content-Type: text/plain');\nvar_export(opcache_get_status(false)['opcache_enabled'] ?? false);\n";

/// The wcgi rows: the snapshot (whenever the module can have one) and without; built with
/// `--features llvm`, also the snapshot compiled by LLVM.
fn wcgi_rows() -> Vec<(&'static str, &'static [&'static str])> {
    let mut rows: Vec<(&str, &[&str])> = vec![
        ("wcgi (snapshot)", &[]),
        ("wcgi (--no-preinit)", &["--no-preinit"]),
    ];
    if cfg!(feature = "llvm") {
        rows.push(("wcgi llvm (snapshot)", &["--compiler", "llvm"]));
    }
    rows
}

/// One interpreter, served both ways.
struct Case {
    script: &'static str,
    /// What the response starts with.
    greeting: &'static str,
    /// The wcgi package serving the same script from the docroot.
    manifest: String,
    /// The native servers for it: (row name, name in ratios, base URL).
    peers: Vec<(&'static str, &'static str, String)>,
}

fn median_of(url: &str, greeting: &str) -> Duration {
    let http = client();
    for _ in 0..3 {
        assert_eq!(http.get(url).send().unwrap().status(), 200, "{url}");
    }
    let mut times: Vec<Duration> = (0..REQUESTS)
        .map(|index| {
            let started = Instant::now();
            let body = http
                .get(format!("{url}?n={index}"))
                .send()
                .unwrap()
                .text()
                .unwrap();
            assert!(body.starts_with(greeting), "{body}");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[REQUESTS / 2]
}

/// One line naming a peer that cannot run and what to install; its row is skipped.
fn missing(peer: &str, reason: &str, install: &str) {
    eprintln!("*** MISSING PEER: {peer} ({reason}): its row is skipped; {install} ***");
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let docroot = work.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    std::fs::write(docroot.join("hello.py"), HELLO_PY).unwrap();
    std::fs::write(docroot.join("hello.php"), HELLO_PHP).unwrap();
    std::fs::write(docroot.join("opcache.php"), OPCACHE_PHP).unwrap();

    let have_lighttpd = lighttpd_binary().is_some();
    if !have_lighttpd {
        missing(
            "lighttpd",
            "not installed",
            "apt-get install lighttpd (every native row needs it)",
        );
    }
    let python = installed(&["/usr/bin/python3"]);
    let php_cgi = installed(&["/usr/bin/php-cgi8.2", "/usr/bin/php-cgi"]);
    if python.is_none() {
        missing("python3", "no /usr/bin/python3", "apt-get install python3");
    }
    if php_cgi.is_none() {
        missing(
            "php-cgi",
            "no /usr/bin/php-cgi8.2",
            "apt-get install php8.2-cgi",
        );
    }
    let cgi_interpreters: Vec<(&str, &Path)> = [(".py", &python), (".php", &php_cgi)]
        .into_iter()
        .filter_map(|(extension, binary)| Some((extension, binary.as_deref()?)))
        .collect();
    let cgi = (have_lighttpd && !cgi_interpreters.is_empty())
        .then(|| Lighttpd::start(&docroot, &cgi_interpreters, &[], ""));

    // PHP-FPM's pool and the lighttpd in front of it; dropped (both stopped) at the end.
    let fpm = match php_fpm::binary() {
        None => {
            missing(
                "PHP-FPM+OPcache",
                "no /usr/sbin/php-fpm8.2",
                php_fpm::INSTALL,
            );
            None
        }
        Some(_) if !have_lighttpd => None,
        Some(binary) => match PhpFpm::start(&binary, &[], &[]) {
            Err(reason) => {
                missing("PHP-FPM+OPcache", &reason, php_fpm::INSTALL);
                None
            }
            Ok(pool) => {
                let front = Lighttpd::start_fastcgi(&docroot, ".php", pool.socket(), &[], "");
                let probe = client().get(front.url("/opcache.php")).send().unwrap();
                let probe = probe.text().unwrap();
                assert_eq!(
                    probe,
                    "true",
                    "OPcache is off in PHP-FPM; its log:\n{}",
                    pool.log()
                );
                Some((front, pool))
            }
        },
    };

    let cases = [
        Case {
            script: "hello.py",
            greeting: "hello from python",
            manifest: format!(
                "[[module]]\nname = \"python\"\nsource = \"{}\"\nabi = \"wasi\"\n\n[[command]]\n\
                 name = \"hello\"\nmodule = \"python\"\nrunner = \"wcgi\"\n\n\
                 [command.annotations.wasi]\nmain-args = [\"/app/hello.py\"]\n\n[fs]\n\"app\" = \"{}\"\n",
                python_interpreter().join("python.wasm").display(),
                docroot.display()
            ),
            peers: cgi
                .iter()
                .filter(|_| python.is_some())
                .map(|server| ("python3 (mod_cgi)", "python3", server.url("")))
                .collect(),
        },
        Case {
            script: "hello.php",
            greeting: "hello from php",
            manifest: format!(
                "[[module]]\nname = \"php\"\nsource = \"{}\"\nabi = \"wasi\"\n\n[[command]]\n\
                 name = \"hello\"\nmodule = \"php\"\nrunner = \"wcgi\"\n\n\
                 [command.annotations.wcgi]\ndocument-root = \"/app\"\nscript-extensions = [\"php\"]\n\n\
                 [command.annotations.wasi]\n\
                 env = [\"PHPRC=/etc/php\", \"WCGI_PHP_PRECOMPILE=/app\"]\n\n\
                 [fs]\n\"app\" = \"{}\"\n\"/etc/php\" = \"{}\"\n",
                php_interpreter().join("php-cgi.wasm").display(),
                docroot.display(),
                // The php template's php.ini and start-up compile list, as `wcgi new` gives them.
                repo_root().join("templates/php/php").display()
            ),
            peers: fpm
                .iter()
                .map(|(front, _)| ("PHP-FPM+OPcache", "PHP-FPM+OPcache", front.url("")))
                .chain(
                    cgi.iter()
                        .filter(|_| php_cgi.is_some())
                        .map(|server| ("php-cgi (mod_cgi)", "php-cgi", server.url(""))),
                )
                .collect(),
        },
    ];

    println!("median of {REQUESTS} sequential requests, same run, same script:");
    let mut without_snapshot = Vec::new();
    for case in &cases {
        let path = format!("/{}", case.script);
        let package = work.path().join(case.script.replace('.', "-"));
        std::fs::create_dir(&package).unwrap();
        std::fs::write(package.join("wasmer.toml"), &case.manifest).unwrap();
        // The native rows first: the wcgi rows' ratios need them.
        let peers: Vec<(&str, &str, Duration)> = case
            .peers
            .iter()
            .map(|(name, short, base_url)| {
                (
                    *name,
                    *short,
                    median_of(&format!("{base_url}{path}"), case.greeting),
                )
            })
            .collect();
        for (name, extra) in wcgi_rows() {
            let mut args: Vec<&Path> = vec![&package];
            args.extend(extra.iter().map(Path::new));
            let server = Server::start(&args);
            let median = median_of(&server.url(&path), case.greeting);
            let snapshot_expected = !extra.contains(&"--no-preinit");
            if snapshot_expected
                && !server.logs().contains("pre-initialised with")
                && !without_snapshot.contains(&case.script)
            {
                without_snapshot.push(case.script);
            }
            let ratios: Vec<String> = peers
                .iter()
                .map(|(_, short, peer)| format!("{:.2}× {short}", ms(median) / ms(*peer)))
                .collect();
            let ratios = if ratios.is_empty() {
                "(no native row to compare with)".to_string()
            } else {
                format!("= {}", ratios.join(", "))
            };
            println!(
                "  {:<10} {name:<20} {:>7.2} ms  {ratios}",
                case.script,
                ms(median)
            );
        }
        for (name, _, median) in &peers {
            println!("  {:<10} {name:<20} {:>7.2} ms", case.script, ms(*median));
        }
    }
    if !without_snapshot.is_empty() {
        println!(
            "  (no wizer.initialize export for {}: its snapshot row ran without one, as --no-preinit)",
            without_snapshot.join(", ")
        );
    }
    let mut natives = Vec::new();
    if cgi.is_some() {
        let binaries: Vec<String> = [&python, &php_cgi]
            .into_iter()
            .flatten()
            .map(|path| path.display().to_string())
            .collect();
        natives.push(format!("{} via lighttpd mod_cgi", binaries.join(", ")));
    }
    if fpm.is_some() {
        natives.push(format!(
            "PHP-FPM+OPcache: {} (static pool of 2) via lighttpd mod_fastcgi",
            php_fpm::binary().unwrap().display()
        ));
    }
    if !natives.is_empty() {
        println!("  native: {}", natives.join("; "));
    }
}
