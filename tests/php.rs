//! PHP through wcgi: the project's own php-cgi build (interpreters/php), served with the php
//! template's routing and php.ini, checked for what PHP apps rely on.

mod common;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use common::{Server, check_served, client, new_project};

/// A project made by `wcgi new --template php --interpreter php-cgi.wasm`, with a `data/`.
fn php_project(work: &Path) -> PathBuf {
    // The package directory interpreters/php/build.sh prints, as its README says to pass it.
    let interpreter = common::php_interpreter();
    let project = work.join("phpsite");
    new_project(&project, "php", Some(&interpreter));
    std::fs::create_dir_all(project.join("data/sessions")).unwrap();
    project
}

/// Serves `project` with app/ and data/ mapped from the host, as its README says.
fn serve(project: &Path, extra: &[&str]) -> Server {
    let app = format!("/app:{}", project.join("app").display());
    let data = format!("/data:{}", project.join("data").display());
    let mut args: Vec<OsString> = vec![
        project.into(),
        "--mapdir".into(),
        app.into(),
        "--mapdir".into(),
        data.into(),
    ];
    args.extend(extra.iter().map(OsString::from));
    Server::start(&args)
}

/// Leftover SQLite dot-file locks (`<db>.lock` directories) in `dir`.
fn sqlite_locks(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".lock"))
        .collect()
}

#[test]
fn the_php_template_serves_its_page_forms_and_live_edits() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    let server = serve(&project, &[]);

    let posted = check_served(&server, "Hello, world!");
    assert!(posted.contains("Hello, Ada Lovelace!"), "{posted}");
    assert!(server.get_text("/").1.contains("Served by PHP 8.2"));
    assert!(
        server
            .get_text("/?name=%3Cb%3E")
            .1
            .contains("Hello, &lt;b&gt;!")
    );

    for expected in 1..=3 {
        assert_eq!(
            server.get_text("/visits.php"),
            (200, format!("visits: {expected}\n"))
        );
    }
    // The front controller answers paths that name nothing; it says 404 itself.
    assert_eq!(server.get_text("/no/such/page").0, 404);
    // Files that are not scripts are never run nor shown, nor is anything outside app/.
    std::fs::write(project.join("app/secret.ini"), "password = hunter2\n").unwrap();
    for probe in ["/secret.ini", "/..%2fphp%2fphp.ini"] {
        let (status, body) = server.get_text(probe);
        assert_eq!(status, 404, "{probe}");
        assert!(
            !body.contains("hunter2") && !body.contains("display_errors"),
            "{body}"
        );
    }

    let script = project.join("app/index.php");
    let edited = std::fs::read_to_string(&script)
        .unwrap()
        .replace("Hello, ", "Howdy, ");
    std::fs::write(&script, edited).unwrap();
    assert!(server.get_text("/").1.contains("Howdy, world!"));
    assert!(sqlite_locks(&project.join("data")).is_empty());
}

/// One script for the PHP checks, dispatched on PATH_INFO (`/probe.php/get`).
const PROBE: &str = r#"<?php
$db = fn() => new PDO('sqlite:/data/probe.sqlite', null, null, [
    PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
    PDO::ATTR_TIMEOUT => 20,
]);
switch ($_SERVER['PATH_INFO'] ?? '') {
case '/get': echo json_encode($_GET); break;
case '/post': echo json_encode($_POST); break;
case '/cookie': echo json_encode($_COOKIE); break;
case '/server':
    echo json_encode(array_intersect_key($_SERVER, array_flip([
        'SCRIPT_NAME', 'SCRIPT_FILENAME', 'DOCUMENT_ROOT', 'PATH_INFO', 'REQUEST_URI',
        'PHP_SELF', 'QUERY_STRING', 'REQUEST_METHOD', 'HTTP_HOST'])));
    break;
case '/missing':
    header('X-Custom: yes');
    http_response_code(404);
    echo "custom not found\n";
    break;
case '/cookies':
    setcookie('first', 'one');
    setcookie('second', 'two', ['httponly' => true]);
    echo "two cookies\n";
    break;
case '/session':
    session_start();
    $_SESSION['visits'] = ($_SESSION['visits'] ?? 0) + 1;
    echo "session visits: {$_SESSION['visits']}\n";
    break;
case '/count':
    $pdo = $db();
    $pdo->exec('CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY)');
    $pdo->exec('INSERT INTO hits DEFAULT VALUES');
    echo 'count: ', $pdo->query('SELECT COUNT(*) FROM hits')->fetchColumn(), "\n";
    break;
case '/unfinished':
    // A SELECT left half-read when the script exits must not leave the database locked.
    $pdo = $db();
    $rows = $pdo->query('SELECT id FROM hits');
    echo 'first: ', $rows->fetchColumn(), "\n";
    exit(0);
case '/hold':
    // Takes the write lock and never lets go: the host stops it at its deadline.
    $pdo = $db();
    $pdo->exec('BEGIN IMMEDIATE');
    $pdo->exec('INSERT INTO hits DEFAULT VALUES');
    echo "holding\n";
    flush();
    while (true) {}
case '/fatal':
    echo "before the error\n";
    no_such_function();
    break;
case '/lock-ex':
    // No file locks on WASI: advisory locks are granted, so locked writes still happen.
    $written = file_put_contents('/data/locked.txt', 'written', LOCK_EX);
    $file = fopen('/data/locked.txt', 'r');
    echo $written, ' ', flock($file, LOCK_SH) ? 'locked' : 'refused', ' ', file_get_contents('/data/locked.txt'), "\n";
    break;
case '/random': echo strlen(random_bytes(16)), ' ', random_int(1, 6) <= 6 ? 'ok' : 'bad', "\n"; break;
case '/seeds':
    // Everything PHP seeds lazily: a snapshot must not hand one seed to every request.
    session_start();
    echo json_encode([
        'mt_rand' => [mt_rand(), mt_rand(), mt_rand()],
        'rand' => rand(),
        'shuffle' => str_shuffle('abcdefghijklmnop'),
        'lcg_value' => lcg_value(),
        'uniqid' => uniqid('', true),
        'session_id' => session_id(),
        'random_bytes' => bin2hex(random_bytes(8)),
    ]);
    break;
case '/own-writes':
    // One request changing files and looking at them again: every look sees the change.
    // clearstatcache() keeps PHP's own stat cache out of it; what is checked is the host's.
    $dir = '/data/own-writes';
    $look = function ($path) { clearstatcache(); return file_exists($path) ? (is_dir($path) ? 'dir' : filesize($path)) : 'none'; };
    $seen = [$look("$dir/file.txt")];
    mkdir($dir);
    $seen[] = $look($dir);
    file_put_contents("$dir/file.txt", 'abc');
    $seen[] = $look("$dir/file.txt");
    $file = fopen("$dir/file.txt", 'a');
    fwrite($file, 'defg'); fflush($file);
    $seen[] = $look("$dir/file.txt");
    fclose($file);
    rename("$dir/file.txt", "$dir/moved.txt");
    $seen[] = $look("$dir/file.txt");
    $seen[] = $look("$dir/moved.txt");
    unlink("$dir/moved.txt");
    $seen[] = $look("$dir/moved.txt");
    rmdir($dir);
    $seen[] = $look($dir);
    echo implode(' ', $seen), "\n";
    break;
case '/opcache':
    $status = opcache_get_status(false);
    echo json_encode([
        'enabled' => $status ? $status['opcache_enabled'] : false,
        'index_cached' => opcache_is_script_cached('/app/index.php'),
        'validates' => (bool) ini_get('opcache.validate_timestamps'),
        // wcgi's word to php-cgi, which takes it out of the request's environment.
        'told' => getenv('WCGI_SNAPSHOT_CURRENT') !== false || isset($_SERVER['WCGI_SNAPSHOT_CURRENT']),
    ]);
    break;
default: http_response_code(400); echo "unknown probe\n";
}
"#;

#[test]
fn php_sees_requests_and_shapes_responses() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &[]);

    let (status, body) = server.get_text("/probe.php/get?a=1&b[]=x&b[]=y");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"a":"1","b":["x","y"]}"#);

    let response = client()
        .post(server.url("/probe.php/post"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("field=hello+there&n=42")
        .send()
        .unwrap();
    assert_eq!(
        response.text().unwrap(),
        r#"{"field":"hello there","n":"42"}"#
    );

    let response = client()
        .get(server.url("/probe.php/cookie"))
        .header("Cookie", "flavour=oat; size=big")
        .send()
        .unwrap();
    assert_eq!(
        response.text().unwrap(),
        r#"{"flavour":"oat","size":"big"}"#
    );

    let response = server.get("/probe.php/server?q=1");
    let vars: serde_json::Value = response.json().unwrap();
    assert_eq!(vars["SCRIPT_NAME"], "/probe.php");
    assert_eq!(vars["SCRIPT_FILENAME"], "/app/probe.php");
    assert_eq!(vars["DOCUMENT_ROOT"], "/app");
    assert_eq!(vars["PATH_INFO"], "/server");
    assert_eq!(vars["PHP_SELF"], "/probe.php/server");
    assert_eq!(vars["REQUEST_URI"], "/probe.php/server?q=1");

    let response = server.get("/probe.php/missing");
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-custom"], "yes");
    assert_eq!(response.text().unwrap(), "custom not found\n");

    let response = server.get("/probe.php/cookies");
    let cookies: Vec<&str> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap())
        .collect();
    assert_eq!(cookies.len(), 2, "{cookies:?}");
    assert!(cookies[0].starts_with("first=one"), "{cookies:?}");
    assert!(cookies[1].starts_with("second=two") && cookies[1].contains("HttpOnly"));

    assert_eq!(
        server.get_text("/probe.php/random"),
        (200, "16 ok\n".into())
    );
    assert_eq!(
        server.get_text("/probe.php/lock-ex"),
        (200, "7 locked written\n".into())
    );
}

#[test]
fn requests_from_one_snapshot_share_no_random_state() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &[]);
    assert!(
        server.log_contains("pre-initialised with `wizer.initialize`"),
        "the template's php-cgi must run from a snapshot: {}",
        server.logs()
    );
    let seeds = || -> serde_json::Value { server.get("/probe.php/seeds").json().unwrap() };
    let (first, second) = (seeds(), seeds());
    for key in [
        "mt_rand",
        "rand",
        "shuffle",
        "lcg_value",
        "uniqid",
        "session_id",
        "random_bytes",
    ] {
        assert!(!first[key].is_null(), "{key}: {first}");
        assert_ne!(first[key], second[key], "{key} repeats across requests");
    }
}

#[test]
fn a_request_sees_the_files_it_changes_at_once() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &[]);
    // Twice: the second request must not see what the first one left behind either.
    for _ in 0..2 {
        let (status, body) = server.get_text("/probe.php/own-writes");
        assert_eq!(
            (status, body.as_str()),
            (200, "none dir 3 7 none 7 none none\n")
        );
    }
    assert!(!project.join("data/own-writes").exists());
}

#[test]
fn opcache_starts_with_the_sites_scripts_and_an_edit_is_seen_at_once() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    // OPcache leaves out files changed in the last 2 s (opcache.file_update_protection: they
    // may be half-written), so the script the test checks is made older than that.
    let script = project.join("app/index.php");
    let a_minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&script)
        .unwrap()
        .set_modified(a_minute_ago)
        .unwrap();
    let server = serve(&project, &[]);
    // index.php was compiled in the snapshot: no request has run it yet. /app is writable
    // here (a site edited live), so OPcache checks every script's timestamp itself.
    let status: serde_json::Value = server.get("/probe.php/opcache").json().unwrap();
    assert_eq!(
        status,
        serde_json::json!({"enabled": true, "index_cached": true, "validates": true, "told": false})
    );
    assert!(server.get_text("/").1.contains("Hello, world!"));
    let edited = std::fs::read_to_string(&script)
        .unwrap()
        .replace("Hello, ", "Edited, ");
    std::fs::write(&script, edited).unwrap();
    for _ in 0..3 {
        assert!(server.get_text("/").1.contains("Edited, world!"));
    }
    // Without the snapshot, php-cgi turns OPcache off: one request per instance, nothing to
    // reuse.
    drop(server);
    let server = serve(&project, &["--no-preinit"]);
    let status: serde_json::Value = server.get("/probe.php/opcache").json().unwrap();
    assert_eq!(
        status,
        serde_json::json!({"enabled": false, "index_cached": false, "validates": true, "told": false})
    );
    assert!(server.get_text("/").1.contains("Edited, world!"));
}

#[test]
fn a_read_only_site_skips_timestamp_checks_until_a_file_changes() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let script = project.join("app/index.php");
    let a_minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    for file in [&script, &project.join("app/probe.php")] {
        std::fs::File::options()
            .write(true)
            .open(file)
            .unwrap()
            .set_modified(a_minute_ago)
            .unwrap();
    }
    // /app as the package's read-only [fs] mount (as WordPress's example serves its site):
    // wcgi watches it and tells php-cgi while nothing there has changed.
    let data = format!("/data:{}", project.join("data").display());
    let args: Vec<OsString> = vec![project.clone().into(), "--mapdir".into(), data.into()];
    let server = Server::start(&args);
    let trusted = serde_json::json!({"enabled": true, "index_cached": true, "validates": false, "told": false});
    for _ in 0..2 {
        let status: serde_json::Value = server.get("/probe.php/opcache").json().unwrap();
        assert_eq!(status, trusted);
    }
    assert!(server.get_text("/").1.contains("Hello, world!"));

    let edited = std::fs::read_to_string(&script)
        .unwrap()
        .replace("Hello, ", "Edited, ");
    std::fs::write(&script, edited).unwrap();
    // The very next request sees the edit, and from then on OPcache checks timestamps.
    assert!(server.get_text("/").1.contains("Edited, world!"));
    let status: serde_json::Value = server.get("/probe.php/opcache").json().unwrap();
    assert_eq!(status["validates"], true);
}

#[test]
fn a_session_is_kept_across_requests() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &[]);

    let first = server.get("/probe.php/session");
    let cookie = first.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.starts_with("PHPSESSID="), "{cookie}");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert_eq!(first.text().unwrap(), "session visits: 1\n");
    let session = cookie.split(';').next().unwrap();
    let second = client()
        .get(server.url("/probe.php/session"))
        .header("Cookie", session)
        .send()
        .unwrap();
    assert_eq!(second.text().unwrap(), "session visits: 2\n");
    let stored = std::fs::read_dir(project.join("data/sessions"))
        .unwrap()
        .count();
    assert_eq!(stored, 1);
}

#[test]
fn sqlite_counts_and_concurrent_writers_all_land_with_no_lock_left() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &[]);

    for expected in 1..=3 {
        assert_eq!(
            server.get_text("/probe.php/count"),
            (200, format!("count: {expected}\n"))
        );
    }
    // A statement left unfinished at exit releases its lock: the next request still writes.
    assert_eq!(
        server.get_text("/probe.php/unfinished"),
        (200, "first: 1\n".into())
    );
    assert!(sqlite_locks(&project.join("data")).is_empty());
    assert_eq!(
        server.get_text("/probe.php/count"),
        (200, "count: 4\n".into())
    );

    for writer in common::spawn_gets(&server.url("/probe.php/count"), 20) {
        let (status, body) = writer.join().unwrap();
        assert_eq!(status, 200, "{body}");
        assert!(body.starts_with("count: "), "{body}");
    }
    assert_eq!(
        server.get_text("/probe.php/count"),
        (200, "count: 25\n".into())
    );
    assert!(sqlite_locks(&project.join("data")).is_empty());
}

#[test]
fn a_request_stopped_while_holding_the_database_leaves_it_usable() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &["--timeout", "2s"]);
    assert_eq!(
        server.get_text("/probe.php/count"),
        (200, "count: 1\n".into())
    );

    // Stopped at its deadline inside a write transaction: its row is rolled back, its lock
    // removed, and the next writer gets in at once instead of waiting out its busy timeout.
    let response = server.get("/probe.php/hold");
    let _ = common::read_body(response);
    let started = std::time::Instant::now();
    assert_eq!(
        server.get_text("/probe.php/count"),
        (200, "count: 2\n".into())
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(sqlite_locks(&project.join("data")).is_empty());
    assert!(server.log_contains("still holding SQLite locks; removed /data/probe.sqlite.lock"));
}

#[test]
fn a_fatal_error_is_a_500_with_the_details_in_the_log_only() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::write(project.join("app/probe.php"), PROBE).unwrap();
    let server = serve(&project, &["--timeout", "10s"]);

    let started = std::time::Instant::now();
    let response = server.get("/probe.php/fatal");
    assert_eq!(response.status(), 500);
    let body = response.text().unwrap();
    assert!(!body.contains("no_such_function"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(server.log_contains("Call to undefined function no_such_function()"));
    // The server is unharmed.
    assert_eq!(server.get_text("/").0, 200);
}

#[test]
fn a_packed_php_site_routes_scripts_inside_its_container() {
    let work = tempfile::tempdir().unwrap();
    let project = php_project(work.path());
    std::fs::create_dir(project.join("app/blog")).unwrap();
    std::fs::write(
        project.join("app/blog/index.php"),
        "<?php echo $_SERVER['SCRIPT_NAME'], ' ', ($_SERVER['PATH_INFO'] ?: '-'), \"\\n\";",
    )
    .unwrap();
    std::fs::write(project.join("app/notes.txt"), "not a script\n").unwrap();
    let container = work.path().join("site.webc");
    common::pack(&project, &container, "3");
    let server = Server::start(&[&container]);

    assert!(server.get_text("/").1.contains("Hello, world!"));
    assert_eq!(
        server.get_text("/blog/"),
        (200, "/blog/index.php -\n".to_string())
    );
    assert_eq!(
        server.get_text("/blog/index.php/x"),
        (200, "/blog/index.php /x\n".to_string())
    );
    assert_eq!(server.get("/blog").status(), 301);
    assert_eq!(server.get_text("/notes.txt").0, 404);
}
