//! Static files served by the host (`--static`, the `static` annotation): no instance, HTTP
//! caching and ranges, precompressed variants, and nothing served that should stay private.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Server, fixture, fixture_package, pack, random_bytes, raw_get, run_wcgi};

/// A client that sends only the Accept-Encoding a test sets, and never decompresses.
fn plain_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_gzip()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[test]
fn a_thousand_requests_for_a_static_megabyte_start_no_instance() {
    let dir = tempfile::tempdir().unwrap();
    let (tally, assets) = (dir.path().join("tally"), dir.path().join("assets"));
    std::fs::create_dir_all(&tally).unwrap();
    std::fs::create_dir_all(&assets).unwrap();
    let megabyte = random_bytes(1 << 20, 7);
    std::fs::write(assets.join("big.bin"), &megabyte).unwrap();
    let mapdir = format!("/tally:{}", tally.display());
    let static_dir = format!("/assets:{}", assets.display());
    let server = Server::start(&[
        fixture("tally").as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);

    let started = Instant::now();
    let url = server.url("/assets/big.bin");
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (url, megabyte) = (url.clone(), megabyte.clone());
            std::thread::spawn(move || {
                let client = plain_client();
                for _ in 0..125 {
                    let response = client.get(&url).send().unwrap();
                    assert_eq!(response.status(), 200);
                    assert!(response.bytes().unwrap() == megabyte, "body differs");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    eprintln!(
        "1000 GETs of a 1 MiB static file took {:?}",
        started.elapsed()
    );
    assert_eq!(
        common::tally_runs(&tally),
        0,
        "a static request started an instance"
    );

    // The tally counts: a request for anything else does start one.
    assert_eq!(
        server.get_text("/assets/missing.bin"),
        (200, "runs: 1\n".into())
    );
    assert_eq!(server.get_text("/page"), (200, "runs: 2\n".into()));
    assert_eq!(common::tally_runs(&tally), 2);
}

struct Assets {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    server: Server,
}

/// The hello guest, with `/static` served from a directory holding `data.bin` (1000 bytes)
/// and `style.css` with precompressed variants.
fn assets_server() -> Assets {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("public");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("data.bin"), random_bytes(1000, 3)).unwrap();
    std::fs::write(root.join("style.css"), "body { color: teal }\n").unwrap();
    std::fs::write(root.join("style.css.gz"), b"gzip bytes").unwrap();
    std::fs::write(root.join("style.css.br"), b"brotli bytes").unwrap();
    let static_dir = format!("/static:{}", root.display());
    let server = Server::start(&[
        fixture("hello").as_os_str(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);
    Assets {
        _dir: dir,
        root,
        server,
    }
}

fn header(response: &reqwest::blocking::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn ranges_etags_and_not_modified_work() {
    let assets = assets_server();
    let client = plain_client();
    let url = assets.server.url("/static/data.bin");
    let data = std::fs::read(assets.root.join("data.bin")).unwrap();

    let full = client.get(&url).send().unwrap();
    assert_eq!(full.status(), 200);
    assert_eq!(header(&full, "content-type"), "application/octet-stream");
    assert_eq!(header(&full, "accept-ranges"), "bytes");
    let etag = header(&full, "etag");
    let last_modified = header(&full, "last-modified");
    assert!(etag.starts_with('"'), "a strong entity tag: {etag}");
    assert_eq!(full.bytes().unwrap(), data);

    let part = client
        .get(&url)
        .header("Range", "bytes=100-199")
        .send()
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(header(&part, "content-range"), "bytes 100-199/1000");
    assert_eq!(header(&part, "etag"), etag);
    assert_eq!(part.bytes().unwrap(), data[100..200]);
    let tail = client
        .get(&url)
        .header("Range", "bytes=-10")
        .send()
        .unwrap();
    assert_eq!(tail.bytes().unwrap(), data[990..]);
    let beyond = client
        .get(&url)
        .header("Range", "bytes=5000-")
        .send()
        .unwrap();
    assert_eq!(beyond.status(), 416);

    let cached = client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(cached.status(), 304);
    assert_eq!(header(&cached, "etag"), etag);
    assert!(cached.bytes().unwrap().is_empty());
    let weak = format!("\"other\", W/{etag}");
    let cached = client
        .get(&url)
        .header("If-None-Match", weak)
        .send()
        .unwrap();
    assert_eq!(
        cached.status(),
        304,
        "If-None-Match compares weakly, in lists"
    );
    let by_date = client
        .get(&url)
        .header("If-Modified-Since", &last_modified)
        .send()
        .unwrap();
    assert_eq!(by_date.status(), 304);
    let other_tag = client
        .get(&url)
        .header("If-None-Match", "\"other\"")
        .header("If-Modified-Since", &last_modified)
        .send()
        .unwrap();
    assert_eq!(
        other_tag.status(),
        200,
        "If-None-Match decides over the date"
    );
    let head = client.head(&url).send().unwrap();
    assert_eq!(
        (head.status().as_u16(), header(&head, "etag")),
        (200, etag.clone())
    );

    // A changed file: the old tag no longer matches, and an If-Range with it gets it all.
    let changed = random_bytes(1000, 4);
    let file = std::fs::File::options()
        .write(true)
        .open(assets.root.join("data.bin"))
        .unwrap();
    std::io::Write::write_all(&mut &file, &changed).unwrap();
    file.set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let fresh = client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(fresh.status(), 200);
    let new_etag = header(&fresh, "etag");
    assert_ne!(new_etag, etag);
    let stale_range = client
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", &etag)
        .send()
        .unwrap();
    assert_eq!(stale_range.status(), 200);
    assert_eq!(stale_range.bytes().unwrap(), changed);
    let current_range = client
        .get(&url)
        .header("Range", "bytes=0-9")
        .header("If-Range", &new_etag)
        .send()
        .unwrap();
    assert_eq!(current_range.status(), 206);
    assert_eq!(current_range.bytes().unwrap(), changed[..10]);
}

#[test]
fn precompressed_variants_follow_accept_encoding() {
    let assets = assets_server();
    let client = plain_client();
    let url = assets.server.url("/static/style.css");
    let fetch = |accept: Option<&str>| {
        let mut request = client.get(&url);
        if let Some(accept) = accept {
            request = request.header("Accept-Encoding", accept);
        }
        let response = request.send().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "content-type"), "text/css");
        assert_eq!(header(&response, "vary"), "accept-encoding");
        let encoding = response
            .headers()
            .get("content-encoding")
            .map(|value| value.to_str().unwrap().to_string());
        let etag = header(&response, "etag");
        (encoding, etag, response.text().unwrap())
    };
    let (plain_encoding, plain_etag, plain) = fetch(None);
    assert_eq!(
        (plain_encoding, plain.as_str()),
        (None, "body { color: teal }\n")
    );
    let (gzip_encoding, gzip_etag, gzip) = fetch(Some("gzip"));
    assert_eq!(
        (gzip_encoding.as_deref(), gzip.as_str()),
        (Some("gzip"), "gzip bytes")
    );
    let (br_encoding, br_etag, br) = fetch(Some("gzip, br"));
    assert_eq!(
        (br_encoding.as_deref(), br.as_str()),
        (Some("br"), "brotli bytes")
    );
    // Each variant is other bytes, so each has its own tag.
    assert_ne!(plain_etag, gzip_etag);
    assert_ne!(gzip_etag, br_etag);
    let cached = client
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .header("If-None-Match", &plain_etag)
        .send()
        .unwrap();
    assert_eq!(
        cached.status(),
        200,
        "the plain file's tag does not validate the gzip one"
    );
}

#[test]
fn traversal_hidden_files_and_scripts_are_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("sub")).unwrap();
    std::fs::write(dir.path().join("secret.txt"), "SECRET-OUTSIDE").unwrap();
    std::fs::write(public.join("config.php"), "<?php $password = 'SECRET-PHP';").unwrap();
    std::fs::write(public.join("Upper.PHP"), "<?php 'SECRET-UPPER';").unwrap();
    std::fs::write(public.join("config.php~"), "<?php 'SECRET-BACKUP';").unwrap();
    std::fs::write(public.join("config.php.bak"), "<?php 'SECRET-BAK';").unwrap();
    std::fs::write(public.join(".env"), "SECRET-DOTFILE").unwrap();
    std::fs::write(public.join("sub/ok.txt"), "fine").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), public.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(dir.path(), public.join("parent")).unwrap();
    let static_dir = format!("/s:{}", public.display());
    let server = Server::start(&[
        fixture("hello").as_os_str(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);

    assert_eq!(raw_get(server.port, "/s/sub/ok.txt"), (200, "fine".into()));
    let probes = [
        "/s/../secret.txt",
        "/s/sub/../../secret.txt",
        "/s/%2e%2e/secret.txt",
        "/s/sub/%2E%2E/%2e%2e/secret.txt",
        "/s/..%2fsecret.txt",
        "/s/sub%2f..%2f..%2fsecret.txt",
        "/s/link.txt",
        "/s/parent/secret.txt",
        "/s/config.php",
        "/s/Upper.PHP",
        "/s/config.php~",
        "/s/config.php.bak",
        "/s/config.php/",
        "/s/config.php%00.txt",
        "/s/.env",
        "/s/sub/../.env",
    ];
    for probe in probes {
        let (status, body) = raw_get(server.port, probe);
        assert!(!body.contains("SECRET"), "{probe} leaked: {status} {body}");
        // Whatever the host refuses goes to the command (here, the hello guest) or is a 400.
        assert!(
            body.contains("Hello from WebAssembly!") || status == 400,
            "{probe}: {status} {body}"
        );
    }
}

/// A package serving the hello guest with `static = { STATIC }`, and `[fs] "/app" = "site"`
/// when `with_site`.
fn hello_package(static_entry: &str, with_site: bool) -> tempfile::TempDir {
    let fs = if with_site {
        "[fs]\n\"/app\" = \"site\"\n"
    } else {
        ""
    };
    fixture_package(
        "hello",
        "hello",
        &format!("[command.annotations.wcgi]\nstatic = {{ {static_entry} }}\n\n{fs}"),
    )
}

#[test]
fn the_static_annotation_serves_a_volume_and_flags_override_it() {
    let package = hello_package(r#""/" = "/app/public""#, true);
    let site = package.path().join("site");
    std::fs::create_dir_all(site.join("public")).unwrap();
    std::fs::write(site.join("public/robots.txt"), "from the volume").unwrap();
    let other = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(other.path().join("public")).unwrap();
    std::fs::write(other.path().join("public/robots.txt"), "from --mapdir").unwrap();
    std::fs::write(other.path().join("robots.txt"), "from --static").unwrap();

    let inspect = run_wcgi(&["inspect".as_ref(), package.path().as_os_str()]);
    let shown = String::from_utf8_lossy(&inspect.stdout);
    assert!(shown.contains("static: / from /app/public"), "{shown}");

    let server = Server::start(&[package.path()]);
    assert_eq!(
        server.get_text("/robots.txt"),
        (200, "from the volume".into())
    );
    // Directories and misses are the command's.
    assert_eq!(
        server.get_text("/"),
        (200, "Hello from WebAssembly!\n".into())
    );
    assert_eq!(
        server.get_text("/nope.txt"),
        (200, "Hello from WebAssembly!\n".into())
    );
    // Live: a file added while serving is served.
    std::fs::write(site.join("public/new.txt"), "added").unwrap();
    assert_eq!(server.get_text("/new.txt"), (200, "added".into()));
    drop(server);

    let mapdir = format!("/app:{}", other.path().display());
    let server = Server::start(&[
        package.path().as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);
    assert_eq!(
        server.get_text("/robots.txt"),
        (200, "from --mapdir".into())
    );
    drop(server);

    // A directory mounted inside the static one (WordPress's uploads) is served from its mount.
    let uploads = tempfile::tempdir().unwrap();
    std::fs::write(uploads.path().join("photo.txt"), "uploaded").unwrap();
    let mapdir = format!("/app/public/uploads:{}", uploads.path().display());
    let server = Server::start(&[
        package.path().as_os_str(),
        "--mapdir".as_ref(),
        mapdir.as_ref(),
    ]);
    assert_eq!(
        server.get_text("/uploads/photo.txt"),
        (200, "uploaded".into())
    );
    assert_eq!(
        server.get_text("/robots.txt"),
        (200, "from the volume".into())
    );
    drop(server);

    let static_dir = format!("/:{}", other.path().display());
    let server = Server::start(&[
        package.path().as_os_str(),
        "--static".as_ref(),
        static_dir.as_ref(),
    ]);
    assert_eq!(
        server.get_text("/robots.txt"),
        (200, "from --static".into())
    );
}

#[test]
fn static_settings_that_cannot_work_stop_the_start() {
    let package = hello_package(r#""/" = "/nowhere""#, false);
    let output = run_wcgi(&["run".as_ref(), package.path().as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("annotations.wcgi.static \"/\": no volume holds /nowhere"),
        "{stderr}"
    );

    let package = hello_package(r#""assets" = "/app""#, true);
    std::fs::create_dir(package.path().join("site")).unwrap();
    let output = run_wcgi(&["run".as_ref(), package.path().as_os_str()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(
            "annotations.wcgi.static \"assets\": the URL path \"assets\" must start with `/`"
        ),
        "{stderr}"
    );

    let output = run_wcgi(&[
        "run".as_ref(),
        fixture("hello").as_os_str(),
        "--static".as_ref(),
        "/assets:/does/not/exist".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("--static /assets:/does/not/exist: /does/not/exist is not a directory"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn static_files_inside_a_packed_container_are_served_by_the_host() {
    let package = hello_package(r#""/assets" = "/app/public""#, true);
    let public = package.path().join("site/public");
    std::fs::create_dir_all(public.join("css")).unwrap();
    std::fs::write(public.join("css/site.css"), "packed { color: red }").unwrap();
    std::fs::write(public.join("secret.php"), "<?php 'SECRET';").unwrap();
    let out = tempfile::tempdir().unwrap();
    for version in ["2", "3"] {
        let webc = out.path().join(format!("site-v{version}.webc"));
        pack(package.path(), &webc, version);
        let server = Server::start(&[&webc]);
        let css = server.get("/assets/css/site.css");
        assert_eq!(css.status(), 200);
        assert!(
            css.headers().contains_key("etag"),
            "v{version}: served by the host"
        );
        assert_eq!(css.headers()["content-type"], "text/css");
        assert_eq!(css.text().unwrap(), "packed { color: red }");
        let (status, body) = server.get_text("/assets/secret.php");
        assert_eq!(
            (status, body.contains("SECRET")),
            (200, false),
            "v{version}"
        );
        assert_eq!(
            server.get_text("/assets/missing.css"),
            (200, "Hello from WebAssembly!\n".into())
        );
        drop(server);
    }

    // The unpacked copy goes when the server stops, and a killed server's copy is swept by
    // the next one.
    let unpacked_by = |pid: u32| {
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                name.starts_with(&format!("wcgi-static-{pid}-"))
            })
            .count()
    };
    let webc = out.path().join("site-v3.webc");
    let killed = Server::start(&[&webc]);
    let killed_pid = killed.pid();
    assert_eq!(unpacked_by(killed_pid), 1);
    drop(killed);
    assert_eq!(unpacked_by(killed_pid), 1, "SIGKILL leaves it");
    let mut server = Server::start(&[&webc]);
    assert_eq!(unpacked_by(killed_pid), 0, "the next start sweeps it");
    let pid = server.pid();
    assert_eq!(unpacked_by(pid), 1);
    assert!(server.terminate(Duration::from_secs(15)).success());
    assert_eq!(unpacked_by(pid), 0, "a stopped server removes its own");
}
