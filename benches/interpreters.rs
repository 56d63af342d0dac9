//! The same hello.py through wcgi (CPython for WASI, one instance per request) and through
//! native `python3` behind lighttpd's mod_cgi, measured in the same run: medians of 50
//! requests and their ratio. Needs lighttpd and python3 (`apt-get install lighttpd`).
//! Run with `cargo bench --bench interpreters`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, client, python_interpreter};

const REQUESTS: usize = 50;
const HELLO_PY: &str = "import os\nprint('Content-Type: text/plain')\nprint()\nprint('hello from python', os.environ.get('QUERY_STRING', ''))\n";

fn median_of(url: &str) -> Duration {
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
            assert!(body.starts_with("hello from python"), "{body}");
            started.elapsed()
        })
        .collect();
    times.sort();
    times[REQUESTS / 2]
}

struct Lighttpd(Child);

impl Drop for Lighttpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_lighttpd(docroot: &std::path::Path, port: u16) -> Lighttpd {
    // Debian's python3, not a version manager's shim (which would add a shell script per run).
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3".to_string()
    } else {
        String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v python3"])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
    };
    let config = docroot.parent().unwrap().join("lighttpd.conf");
    std::fs::write(
        &config,
        format!(
            "server.document-root = \"{}\"\nserver.port = {port}\nserver.bind = \"127.0.0.1\"\n\
             server.modules = (\"mod_cgi\")\ncgi.assign = (\".py\" => \"{}\")\n",
            docroot.display(),
            python.trim()
        ),
    )
    .unwrap();
    let child = Command::new("lighttpd")
        .args(["-D", "-f"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("lighttpd is needed for this benchmark: apt-get install lighttpd");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "lighttpd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Lighttpd(child)
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let docroot = work.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    std::fs::write(docroot.join("hello.py"), HELLO_PY).unwrap();

    let package = work.path().join("package");
    std::fs::create_dir(&package).unwrap();
    std::fs::write(
        package.join("wasmer.toml"),
        format!(
            "[[module]]\nname = \"python\"\nsource = \"{}\"\nabi = \"wasi\"\n\n[[command]]\nname = \"hello\"\n\
             module = \"python\"\nrunner = \"wcgi\"\n\n[command.annotations.wasi]\nmain-args = [\"/app/hello.py\"]\n\n[fs]\n\"app\" = \"{}\"\n",
            python_interpreter().join("python.wasm").display(),
            docroot.display()
        ),
    )
    .unwrap();

    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _lighttpd = start_lighttpd(&docroot, free_port);
    let native = median_of(&format!("http://127.0.0.1:{free_port}/hello.py"));

    let server = Server::start(&[&package]);
    let wasm = median_of(&server.url("/"));

    println!("hello.py, median of {REQUESTS} sequential requests:");
    println!(
        "  native python3 via lighttpd mod_cgi  {:>8.1} ms",
        native.as_secs_f64() * 1e3
    );
    println!(
        "  CPython 3.12 wasm via wcgi           {:>8.1} ms",
        wasm.as_secs_f64() * 1e3
    );
    println!(
        "  ratio wcgi/native: {:.2}×",
        wasm.as_secs_f64() / native.as_secs_f64()
    );
}
