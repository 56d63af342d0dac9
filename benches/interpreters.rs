//! hello.py and hello.php through wcgi (CPython and php-cgi for WASI, one instance per request)
//! and through Debian's native `python3` and `php-cgi` behind lighttpd's mod_cgi, measured in
//! the same run: medians of 50 sequential requests and their ratio. Needs lighttpd, python3
//! and php8.2-cgi (`apt-get install lighttpd python3 php8.2-cgi`); a missing native
//! interpreter skips its row. Run with `cargo bench --bench interpreters`.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/lighttpd.rs"]
mod lighttpd;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, client, php_interpreter, python_interpreter};
use lighttpd::{Lighttpd, installed};

const REQUESTS: usize = 50;
const HELLO_PY: &str = "import os\nprint('Content-Type: text/plain')\nprint()\nprint('hello from python', os.environ.get('QUERY_STRING', ''))\n";
const HELLO_PHP: &str = "<?php\nheader('Content-Type: text/plain');\necho 'hello from php ', $_SERVER['QUERY_STRING'], \"\\n\";\n";

/// One interpreter, served both ways.
struct Case {
    script: &'static str,
    source: &'static str,
    /// What the response starts with.
    greeting: &'static str,
    /// The native interpreter lighttpd runs, if installed.
    native: Option<PathBuf>,
    /// The wcgi package serving the same script from the docroot.
    manifest: String,
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

fn main() {
    let work = tempfile::tempdir().unwrap();
    let docroot = work.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    let cases = [
        Case {
            script: "hello.py",
            source: HELLO_PY,
            greeting: "hello from python",
            native: installed(&["/usr/bin/python3"]),
            manifest: format!(
                "[[module]]\nname = \"python\"\nsource = \"{}\"\nabi = \"wasi\"\n\n[[command]]\n\
                 name = \"hello\"\nmodule = \"python\"\nrunner = \"wcgi\"\n\n\
                 [command.annotations.wasi]\nmain-args = [\"/app/hello.py\"]\n\n[fs]\n\"app\" = \"{}\"\n",
                python_interpreter().join("python.wasm").display(),
                docroot.display()
            ),
        },
        Case {
            script: "hello.php",
            source: HELLO_PHP,
            greeting: "hello from php",
            native: installed(&["/usr/bin/php-cgi8.2", "/usr/bin/php-cgi"]),
            manifest: format!(
                "[[module]]\nname = \"php\"\nsource = \"{}\"\nabi = \"wasi\"\n\n[[command]]\n\
                 name = \"hello\"\nmodule = \"php\"\nrunner = \"wcgi\"\n\n\
                 [command.annotations.wcgi]\ndocument-root = \"/app\"\nscript-extensions = [\"php\"]\n\n\
                 [fs]\n\"app\" = \"{}\"\n",
                php_interpreter().join("php-cgi.wasm").display(),
                docroot.display()
            ),
        },
    ];
    for case in &cases {
        std::fs::write(docroot.join(case.script), case.source).unwrap();
    }
    let interpreters: Vec<(String, &Path)> = cases
        .iter()
        .filter_map(|case| {
            let extension = Path::new(case.script).extension()?.to_str()?;
            Some((format!(".{extension}"), case.native.as_deref()?))
        })
        .collect();
    let interpreters: Vec<(&str, &Path)> = interpreters
        .iter()
        .map(|(extension, binary)| (extension.as_str(), *binary))
        .collect();
    let lighttpd = Lighttpd::start(&docroot, &interpreters, &[], "");

    println!("median of {REQUESTS} sequential requests, same run, same script:");
    for case in &cases {
        let package = work.path().join(case.script.replace('.', "-"));
        std::fs::create_dir(&package).unwrap();
        std::fs::write(package.join("wasmer.toml"), &case.manifest).unwrap();
        let server = Server::start(&[&package]);
        let wasm = median_of(&server.url(&format!("/{}", case.script)), case.greeting);
        drop(server);
        let Some(native_binary) = &case.native else {
            println!(
                "  {:<10} wcgi {:>7.1} ms   native: not installed, no ratio",
                case.script,
                wasm.as_secs_f64() * 1e3
            );
            continue;
        };
        let native = median_of(&lighttpd.url(&format!("/{}", case.script)), case.greeting);
        println!(
            "  {:<10} wcgi {:>7.1} ms   native {} via lighttpd mod_cgi {:>6.1} ms   ratio {:.2}×",
            case.script,
            wasm.as_secs_f64() * 1e3,
            native_binary.display(),
            native.as_secs_f64() * 1e3,
            wasm.as_secs_f64() / native.as_secs_f64()
        );
    }
}
