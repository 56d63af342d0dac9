//! Script routing under a document root (`[command.annotations.wcgi] document-root`), the way
//! php-cgi apps expect it. The `env` fixture stands in for the interpreter: it prints the
//! variables it was given, so each test sees exactly which script a path was routed to.

mod common;

use std::collections::BTreeMap;

use common::{Server, client, fixture_package, run_wcgi};

fn routed_site(routing: &str) -> tempfile::TempDir {
    let package = fixture_package(
        "env",
        "site",
        &format!("[command.annotations.wcgi]\n{routing}\n\n[fs]\n\"/srv/www\" = \"www\"\n"),
    );
    let www = package.path().join("www");
    std::fs::create_dir_all(www.join("blog")).unwrap();
    std::fs::create_dir_all(www.join("empty")).unwrap();
    for file in [
        "index.php",
        "x.php",
        "blog/index.php",
        "style.css",
        "config.ini",
    ] {
        std::fs::write(www.join(file), "<?php // source that must never be shown\n").unwrap();
    }
    package
}

const PHP_ROUTING: &str = r#"
document-root = "/srv/www"
script-extensions = ["php"]
front-controller = "/index.php"
"#;

/// The guest's variables for a request, or the status when the server answered itself.
fn variables(server: &Server, path: &str) -> Result<BTreeMap<String, String>, u16> {
    let (status, body) = server.get_text(path);
    if status != 200 || body.contains("never be shown") {
        return Err(status);
    }
    Ok(body
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn assert_routed(server: &Server, path: &str, script_name: &str, path_info: &str) {
    let vars = variables(server, path).unwrap_or_else(|status| panic!("{path}: {status}"));
    assert_eq!(vars["SCRIPT_NAME"], script_name, "{path}");
    assert_eq!(vars["PATH_INFO"], path_info, "{path}");
    assert_eq!(
        vars["SCRIPT_FILENAME"],
        format!("/srv/www{script_name}"),
        "{path}"
    );
    assert_eq!(vars["DOCUMENT_ROOT"], "/srv/www", "{path}");
}

#[test]
fn paths_run_the_script_they_name_with_the_rest_as_path_info() {
    let site = routed_site(PHP_ROUTING);
    let server = Server::start(&[site.path()]);
    assert_routed(&server, "/", "/index.php", "");
    assert_routed(&server, "/x.php", "/x.php", "");
    assert_routed(&server, "/x.php/extra/more?q=1", "/x.php", "/extra/more");
    assert_routed(&server, "/blog/", "/blog/index.php", "");
    assert_routed(&server, "/blog/index.php/a%20b", "/blog/index.php", "/a b");

    let vars = variables(&server, "/x.php/extra?q=1").unwrap();
    assert_eq!(vars["PATH_TRANSLATED"], "/srv/www/extra");
    assert_eq!(vars["REQUEST_URI"], "/x.php/extra?q=1");
    assert_eq!(vars["QUERY_STRING"], "q=1");
    assert!(
        !variables(&server, "/x.php")
            .unwrap()
            .contains_key("PATH_TRANSLATED")
    );
}

#[test]
fn paths_naming_nothing_go_to_the_front_controller() {
    let site = routed_site(PHP_ROUTING);
    let server = Server::start(&[site.path()]);
    assert_routed(&server, "/2024/05/hello-world/", "/index.php", "");
    assert_routed(&server, "/missing.php", "/index.php", "");
    assert_routed(&server, "/empty/", "/index.php", "");
    let vars = variables(&server, "/2024/05/hello-world/?p=1").unwrap();
    assert_eq!(vars["REQUEST_URI"], "/2024/05/hello-world/?p=1");
}

#[test]
fn without_a_front_controller_unknown_paths_are_not_found() {
    let site = routed_site("document-root = \"/srv/www\"\nscript-extensions = [\"php\"]");
    let server = Server::start(&[site.path()]);
    assert_routed(&server, "/", "/index.php", "");
    assert_eq!(variables(&server, "/nothing/here"), Err(404));
    assert_eq!(variables(&server, "/empty/"), Err(404));
}

#[test]
fn a_directory_without_its_slash_is_redirected() {
    let site = routed_site(PHP_ROUTING);
    let server = Server::start(&[site.path()]);
    let response = client().get(server.url("/blog?x=1")).send().unwrap();
    assert_eq!(response.status(), 301);
    assert_eq!(response.headers()["location"], "/blog/?x=1");
}

#[test]
fn files_that_are_not_scripts_are_neither_run_nor_shown() {
    let site = routed_site(PHP_ROUTING);
    let server = Server::start(&[site.path()]);
    // (The client normalises `..` and `%2e%2e` itself; an encoded slash gets a `..` through.)
    for path in [
        "/style.css",
        "/config.ini",
        "/..%2fwww%2fconfig.ini",
        "/blog/..%2fx.php",
    ] {
        assert_eq!(variables(&server, path), Err(404), "{path}");
    }
}

#[test]
fn edits_to_the_document_root_route_at_once() {
    let site = routed_site("document-root = \"/srv/www\"\nscript-extensions = [\"php\"]");
    let server = Server::start(&[site.path()]);
    assert_eq!(variables(&server, "/new.php"), Err(404));
    std::fs::write(site.path().join("www/new.php"), "<?php\n").unwrap();
    assert_routed(&server, "/new.php/x", "/new.php", "/x");
}

#[test]
fn bad_routing_annotations_are_refused_before_listening() {
    for (routing, expected) in [
        (
            "document-root = \"srv\"\nscript-extensions = [\"php\"]",
            "annotations.wcgi.document-root must be an absolute guest path",
        ),
        (
            "document-root = \"/srv\"\nscript-extensions = [\".php\"]",
            "write \"php\", not \".php\"",
        ),
        (
            "front-controller = \"/index.php\"",
            "annotations.wcgi.front-controller needs annotations.wcgi.document-root",
        ),
    ] {
        let site = routed_site(routing);
        let output = run_wcgi(&[std::ffi::OsStr::new("run"), site.path().as_os_str()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.trim().lines().count() == 1, "{stderr}");
        assert!(stderr.contains(expected), "{routing}: {stderr}");
        assert!(stderr.contains("command \"site\""), "{stderr}");
    }
}

#[test]
fn inspect_shows_the_routing() {
    let site = routed_site(PHP_ROUTING);
    let output = run_wcgi(&[std::ffi::OsStr::new("inspect"), site.path().as_os_str()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "scripts: *.php under /srv/www (index: index.php; front controller: /index.php)"
        ),
        "{stdout}"
    );
}

#[test]
fn undecodable_paths_are_bad_requests_before_routing() {
    let site = routed_site(PHP_ROUTING);
    let server = Server::start(&[site.path()]);
    assert_eq!(variables(&server, "/%ff.php"), Err(400));
}
