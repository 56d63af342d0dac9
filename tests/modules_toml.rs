//! WAGI sites: `wcgi run modules.toml` serves each `[[module]]` at its route, the most
//! specific route winning whatever the file's order, each module with its own volumes,
//! environment, argv and entrypoint, and the sub-routes its `_routes` export lists.

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::registry::LocalRegistry;
use common::{Server, fixture, hello_example, pack, run_wcgi};

/// A site directory: the `wagi` fixture, a `data` volume with a mark, and `modules.toml`.
fn site(modules_toml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("wagi"), dir.path().join("wagi.wasm")).unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/mark"), "only for /dyn\n").unwrap();
    std::fs::write(dir.path().join("modules.toml"), modules_toml).unwrap();
    dir
}

fn serve(site: &Path, extra: &[&str]) -> Server {
    let mut args: Vec<OsString> = vec![site.join("modules.toml").into()];
    args.extend(extra.iter().map(OsString::from));
    Server::start(&args)
}

/// The `wagi` fixture's report, as `NAME=value` pairs.
fn report(server: &Server, path: &str) -> std::collections::BTreeMap<String, String> {
    let (status, body) = server.get_text(path);
    assert_eq!(status, 200, "{path}: {body}");
    body.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const MODULES: [&str; 5] = [
    "[[module]]\nroute = \"/...\"\nmodule = \"wagi.wasm\"\n",
    "[[module]]\nroute = \"/dyn/...\"\nmodule = \"file://wagi.wasm\"\n\
     environment = { GREETING = \"from /dyn\" }\nvolumes = { \"/data\" = \"data\" }\n",
    "[[module]]\nroute = \"/dyn/deeper/...\"\nmodule = \"wagi.wasm\"\n\
     argv = \"prog ${SCRIPT_NAME} ${ARGS} end\"\n",
    "[[module]]\nroute = \"/hello\"\nmodule = \"wagi.wasm\"\nentrypoint = \"hello\"\n",
    "[[module]]\nroute = \"/pkg/...\"\nmodule = \"PACKAGE\"\n",
];

fn modules_toml(order: &[usize]) -> String {
    let package = hello_example().display().to_string();
    order
        .iter()
        .map(|&index| MODULES[index].replace("PACKAGE", &package))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_most_specific_route_wins_whatever_the_order_in_the_file() {
    for order in [[0, 1, 2, 3, 4], [4, 3, 2, 1, 0]] {
        let site = site(&modules_toml(&order));
        let server = serve(site.path(), &[]);
        for (path, route) in [
            ("/", "/..."),
            ("/dynamo", "/..."),
            ("/dyn", "/dyn/..."),
            ("/dyn/x", "/dyn/..."),
            ("/dyn/deeper/x", "/dyn/deeper/..."),
            // `_routes` of the module at /dyn/...: under it, more specific than it.
            ("/dyn/wild/x", "/dyn/wild/..."),
        ] {
            assert_eq!(
                report(&server, path)["X_MATCHED_ROUTE"],
                route,
                "{path} {order:?}"
            );
        }
        // An entrypoint instead of `_start`; the `_routes` entry served by one too.
        for path in ["/hello", "/dyn/exact"] {
            assert_eq!(
                server.get_text(path),
                (200, "hello from the entrypoint\n".to_string()),
                "{path}"
            );
        }
        // A wasmer.toml package as a module.
        let (status, body) = server.get_text("/pkg/");
        assert_eq!(status, 200);
        assert!(body.contains("Hello"), "{body}");
    }
}

#[test]
fn each_module_gets_its_own_route_variables_environment_volumes_and_argv() {
    let site = site(&modules_toml(&[0, 1, 2]));
    let server = serve(site.path(), &[]);
    let dyn_report = report(&server, "/dyn/a%20b?x=1&y=%41");
    let expected = [
        ("SCRIPT_NAME", "/dyn"),
        ("PATH_INFO", "/a b"),
        ("X_MATCHED_ROUTE", "/dyn/..."),
        ("X_RAW_PATH_INFO", "/a%20b"),
        ("GREETING", "from /dyn"),
        // WAGI's default argv: the path, then the query's items.
        ("argv", "/dyn/a b x=1 y=A"),
        ("mark", "only for /dyn"),
    ];
    for (name, value) in expected {
        assert_eq!(dyn_report[name], value, "{name}");
    }
    assert_eq!(
        dyn_report["X_FULL_URL"],
        format!("{}/dyn/a%20b?x=1&y=%41", server.base_url)
    );

    // The catch-all: SCRIPT_NAME empty, none of /dyn's environment or volume.
    let root = report(&server, "/other/path");
    assert_eq!(root["SCRIPT_NAME"], "");
    assert_eq!(root["PATH_INFO"], "/other/path");
    assert_eq!(root["GREETING"], "-");
    assert_eq!(root["mark"], "-", "another module's volume is not visible");

    let deeper = report(&server, "/dyn/deeper?q=1&r=2");
    assert_eq!(deeper["argv"], "prog /dyn/deeper q=1 r=2 end");
    assert_eq!(deeper["PATH_INFO"], "");
}

#[test]
fn env_on_the_command_line_wins_over_a_modules_environment() {
    let site = site(&modules_toml(&[1]));
    let server = serve(site.path(), &["--env", "GREETING=from --env"]);
    assert_eq!(report(&server, "/dyn/")["GREETING"], "from --env");
}

#[test]
fn paths_no_route_claims_are_404_and_healthz_answers_unless_claimed() {
    let unclaimed = site(&modules_toml(&[1, 3]));
    let server = serve(unclaimed.path(), &[]);
    for path in ["/", "/dynamo", "/hello/x"] {
        assert_eq!(server.get_text(path).0, 404, "{path}");
    }
    assert_eq!(server.get_text("/healthz"), (200, "ok\n".to_string()));
    drop(server);

    let claimed = site(&format!(
        "{}\n[[module]]\nroute = \"/healthz\"\nmodule = \"wagi.wasm\"\n",
        modules_toml(&[1])
    ));
    let server = serve(claimed.path(), &[]);
    assert_eq!(report(&server, "/healthz")["X_MATCHED_ROUTE"], "/healthz");
}

#[test]
fn a_site_that_cannot_be_served_is_refused_at_start_up_in_one_line() {
    let refused = |modules_toml: &str| {
        let site = site(modules_toml);
        let output = run_wcgi(&[
            OsString::from("run"),
            site.path().join("modules.toml").into(),
        ]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        (site, stderr)
    };
    let (site, error) = refused(&format!("{}\n{}", MODULES[1], MODULES[1]));
    let wagi = site.path().join("wagi.wasm");
    assert_eq!(
        error,
        format!(
            "error: route /dyn/... is given twice, to module {0} at /dyn/... and to module {0} \
             at /dyn/...; give each its own route",
            wagi.display()
        )
    );

    let (site, error) = refused("[[module]]\nroute = \"/x\"\nmodule = \"missing.wasm\"\n");
    assert_eq!(
        error,
        format!(
            "error: {}: module missing.wasm at /x: missing.wasm: no such file or directory \
             (expected a directory with wasmer.toml, a .wasm or .webc file, or a registry \
             package such as namespace/name)",
            site.path().join("modules.toml").display()
        )
    );

    let (site, error) =
        refused("[[module]]\nroute = \"/x\"\nmodule = \"wagi.wasm\"\nentrypoint = \"nope\"\n");
    assert_eq!(
        error,
        format!(
            "error: module {} at /x: entrypoint `nope` is not a function the module exports; \
             fix `entrypoint` or leave it out to call `_start`",
            site.path().join("wagi.wasm").display()
        )
    );
}

#[test]
fn modules_can_be_webc_files_and_registry_packages() {
    let site = site("");
    let container = site.path().join("hello.webc");
    pack(&hello_example(), &container, "3");
    let registry = LocalRegistry::start();
    registry.publish("test/hello", "0.1.0", Some(&container), None, false);
    std::fs::write(
        site.path().join("modules.toml"),
        "[[module]]\nroute = \"/webc/...\"\nmodule = \"hello.webc\"\n\n\
         [[module]]\nroute = \"/registry/...\"\nmodule = \"test/hello@^0.1\"\n\
         command = \"hello\"\n",
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let cache_dir = cache.path().display().to_string();
    let server = serve(
        site.path(),
        &["--registry", &registry.endpoint, "--cache-dir", &cache_dir],
    );
    for path in ["/webc/", "/registry/"] {
        let (status, body) = server.get_text(path);
        assert_eq!(status, 200, "{path}: {body}");
        assert!(body.contains("Hello"), "{path}: {body}");
    }
    assert_eq!(server.get_text("/").0, 404);
}

#[test]
fn a_modules_own_share_of_instances_is_kept_and_its_waits_are_queued() {
    let site = site(
        "[[module]]\nroute = \"/slow\"\nmodule = \"wagi.wasm\"\nentrypoint = \"slow\"\n\
         http_max_concurrency = 1\n\n\
         [[module]]\nroute = \"/hello\"\nmodule = \"wagi.wasm\"\nentrypoint = \"hello\"\n",
    );
    // No queue: a request that cannot have an instance at once is refused.
    let server = serve(site.path(), &["--max-concurrency", "4", "--max-queue", "0"]);
    let first = common::spawn_gets(&server.url("/slow"), 1);
    // The first holds /slow's only share for 1.5 s.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(
        server.get_text("/slow"),
        (503, "server busy, retry later\n".to_string())
    );
    // Other modules still have the server's slots.
    assert_eq!(
        server.get_text("/hello"),
        (200, "hello from the entrypoint\n".to_string())
    );
    for handle in first {
        assert_eq!(handle.join().unwrap(), (200, "slow answer\n".to_string()));
    }
}

#[test]
fn a_local_redirect_lands_in_the_module_its_path_routes_to() {
    let site = site(
        "[[module]]\nroute = \"/go\"\nmodule = \"wagi.wasm\"\nentrypoint = \"redirect\"\n\n\
         [[module]]\nroute = \"/hello\"\nmodule = \"wagi.wasm\"\nentrypoint = \"hello\"\n",
    );
    let server = serve(site.path(), &[]);
    assert_eq!(
        server.get_text("/go"),
        (200, "hello from the entrypoint\n".to_string())
    );
}

#[test]
fn static_files_are_served_under_a_modules_route_and_under_none() {
    let site = site(&modules_toml(&[1]));
    std::fs::create_dir(site.path().join("assets")).unwrap();
    std::fs::write(site.path().join("assets/site.css"), "body {}\n").unwrap();
    let assets = format!("/assets:{}", site.path().join("assets").display());
    let dyn_assets = format!("/dyn/assets:{}", site.path().join("assets").display());
    let server = serve(site.path(), &["--static", &assets, "--static", &dyn_assets]);
    for path in ["/assets/site.css", "/dyn/assets/site.css"] {
        assert_eq!(
            server.get_text(path),
            (200, "body {}\n".to_string()),
            "{path}"
        );
    }
    assert_eq!(server.get_text("/assets/missing.css").0, 404);
    assert_eq!(report(&server, "/dyn/x")["X_MATCHED_ROUTE"], "/dyn/...");
}

#[test]
fn inspect_lists_the_routes_in_matching_order_with_what_serves_each() {
    let site = site(&modules_toml(&[0, 1, 2, 3]));
    let file = site.path().join("modules.toml");
    let output = run_wcgi(&[OsString::from("inspect"), file.clone().into()]);
    assert!(output.status.success());
    let wagi = site.path().join("wagi.wasm").display().to_string();
    let data = site.path().join("data").display().to_string();
    let routes = "those its `_routes` export prints, more specific than";
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!(
            "{file}: 4 modules; routes in matching order:\n\
             \x20 /hello -> {wagi}, command \"wagi\"\n\
             \x20   entrypoint: hello\n\
             \x20   sub-routes: {routes} /hello\n\
             \x20 /dyn/deeper/... -> {wagi}, command \"wagi\"\n\
             \x20   entrypoint: _start\n\
             \x20   sub-routes: {routes} /dyn/deeper/...\n\
             \x20   argv: prog ${{SCRIPT_NAME}} ${{ARGS}} end\n\
             \x20 /dyn/... -> {wagi}, command \"wagi\"\n\
             \x20   entrypoint: _start\n\
             \x20   sub-routes: {routes} /dyn/...\n\
             \x20   volume: /data <- {data}\n\
             \x20   environment: GREETING\n\
             \x20 /... -> {wagi}, command \"wagi\"\n\
             \x20   entrypoint: _start\n\
             \x20   sub-routes: {routes} /...\n",
            file = file.display()
        )
    );
}
