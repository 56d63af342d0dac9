//! WordPress through wcgi in a real browser: headless Chromium (Debian's package), driven over
//! the DevTools protocol, installs the site, opens the front page, logs in, opens the
//! dashboard and publishes a post from the block editor, then finds it on the front page.
//! Every response the pages cause is watched: any 4xx/5xx or failed load fails the test, as
//! does any PHP warning in a page or the server log. Screenshots go to
//! `$WCGI_SCREENSHOTS_DIR` (default `<target>/tmp/wordpress-screenshots`).
//!
//! Ignored by default because it needs Chromium; `scripts/test` runs it when Chromium is
//! installed, and `.ci/run` installs it.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};

use common::wordpress::{self, ADMIN_PASSWORD, ADMIN_USER, SITE_TITLE};

const POST_TITLE: &str = "Posted from Chromium through wcgi";
const POST_TEXT: &str = "Each request ran in a fresh WebAssembly instance.";

/// `$CHROMIUM`, else `chromium` or `chromium-browser` on `PATH`: where `scripts/test` looks.
fn chromium() -> Option<PathBuf> {
    match std::env::var_os("CHROMIUM").filter(|value| !value.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            common::find_on_path("chromium").or_else(|| common::find_on_path("chromium-browser"))
        }
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = std::env::var_os("WCGI_SCREENSHOTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wordpress-screenshots")
        });
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Everything the browser fetched since the last check.
#[derive(Default)]
struct Traffic {
    /// Request id → URL, for naming failed loads.
    requests: HashMap<String, String>,
    /// `(status, url)` of every response received.
    responses: Vec<(u32, String)>,
    /// Loads that got no response at all: `(url, error)`.
    failures: Vec<(String, String)>,
}

impl Traffic {
    /// Problems since the last check, then forgets what it saw. Failed loads from other
    /// sites are returned apart: this machine has no internet (the editor's welcome guide
    /// shows images from wordpress.org).
    fn take(&mut self, base_url: &str) -> (usize, Vec<String>, Vec<String>) {
        let seen = self.responses.len();
        let mut errors: Vec<String> = self
            .responses
            .iter()
            .filter(|(status, _)| *status >= 400)
            .map(|(status, url)| format!("{status} {url}"))
            .collect();
        let (ours, elsewhere): (Vec<_>, Vec<_>) = self
            .failures
            .drain(..)
            .map(|(url, error)| (url.starts_with(base_url), format!("{error} {url}")))
            .partition(|(ours, _)| *ours);
        errors.extend(ours.into_iter().map(|(_, failure)| failure));
        self.responses.clear();
        (
            seen,
            errors,
            elsewhere.into_iter().map(|(_, f)| f).collect(),
        )
    }
}

struct Session {
    base_url: String,
    tab: Arc<Tab>,
    traffic: Arc<Mutex<Traffic>>,
    shots: PathBuf,
}

impl Session {
    fn open(&self, url: &str) {
        self.tab.navigate_to(url).unwrap();
        self.tab.wait_until_navigated().unwrap();
    }

    /// Fails on any asset that answered 4xx/5xx or failed to load, and on PHP warnings in
    /// the page, since the last check.
    fn check_page(&self, step: &str) {
        // Late assets (fonts, lazy images) and XHRs get a moment to finish.
        std::thread::sleep(Duration::from_millis(500));
        let (seen, errors, elsewhere) = self.traffic.lock().unwrap().take(&self.base_url);
        assert!(seen > 0, "{step}: the browser reported no responses at all");
        assert!(
            errors.is_empty(),
            "{step}: failed requests:\n{}",
            errors.join("\n")
        );
        for failure in elsewhere {
            eprintln!("{step}: not reachable offline: {failure}");
        }
        let html = self.tab.get_content().unwrap();
        for marker in [
            "<b>Warning</b>",
            "<b>Notice</b>",
            "<b>Deprecated</b>",
            "Fatal error",
        ] {
            assert!(
                !html.contains(marker),
                "{step}: the page shows a PHP {marker}"
            );
        }
    }

    fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .tab
            .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
            .unwrap();
        let path = self.shots.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    fn type_into(&self, selector: &str, text: &str) {
        let field = self.tab.wait_for_element(selector).unwrap();
        field
            .call_js_fn("function () { this.value = ''; }", vec![], false)
            .unwrap();
        field.type_into(text).unwrap();
    }

    fn eval(&self, expression: &str) -> serde_json::Value {
        self.tab
            .evaluate(expression, true)
            .unwrap()
            .value
            .unwrap_or(serde_json::Value::Null)
    }

    /// Polls a JavaScript condition until it is true.
    fn wait_for(&self, what: &str, condition: &str, limit: Duration) {
        let started = Instant::now();
        while self.eval(condition) != serde_json::Value::Bool(true) {
            assert!(started.elapsed() < limit, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[test]
#[ignore = "needs Chromium; scripts/test runs it when Chromium is installed (.ci/run installs it)"]
fn a_browser_installs_logs_in_and_publishes_a_post() {
    let Some(chromium) = chromium() else {
        common::skip_tier(
            "browser",
            "Chromium is not installed (apt-get install chromium, or set CHROMIUM=/path/to/it)",
        );
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let server = wordpress::serve(data.path(), &[]);
    let base = server.base_url.clone();

    let browser = Browser::new(LaunchOptions {
        path: Some(chromium),
        // Root (CI) cannot use Chromium's sandbox; the page is our own test site.
        sandbox: false,
        window_size: Some((1280, 1000)),
        idle_browser_timeout: Duration::from_secs(180),
        ..LaunchOptions::default()
    })
    .unwrap();
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(60));
    let traffic = Arc::new(Mutex::new(Traffic::default()));
    let seen = traffic.clone();
    tab.register_response_handling(
        "statuses",
        Box::new(move |event, _body| {
            let response = event.response;
            seen.lock()
                .unwrap()
                .responses
                .push((response.status, response.url));
        }),
    )
    .unwrap();
    let failed = traffic.clone();
    tab.add_event_listener(Arc::new(move |event: &Event| match event {
        Event::NetworkRequestWillBeSent(sent) => {
            failed.lock().unwrap().requests.insert(
                sent.params.request_id.clone(),
                sent.params.request.url.clone(),
            );
        }
        // A navigation that replaces the page aborts what the old page was still loading.
        Event::NetworkLoadingFailed(load) if load.params.error_text != "net::ERR_ABORTED" => {
            let mut traffic = failed.lock().unwrap();
            let url = traffic
                .requests
                .get(&load.params.request_id)
                .cloned()
                .unwrap_or_default();
            traffic.failures.push((url, load.params.error_text.clone()));
        }
        _ => {}
    }))
    .unwrap();
    let session = Session {
        base_url: base.clone(),
        tab,
        traffic,
        shots: screenshots_dir(),
    };

    // Install: a fresh site sends the visitor to the installer.
    session.open(&format!("{base}/"));
    assert!(session.tab.get_url().contains("/wp-admin/install.php"));
    session.type_into("#weblog_title", SITE_TITLE);
    session.type_into("#user_login", ADMIN_USER);
    session.type_into("#pass1", ADMIN_PASSWORD);
    session.type_into("#admin_email", "admin@example.com");
    session.check_page("installer");
    session
        .tab
        .find_element("#submit")
        .unwrap()
        .click()
        .unwrap();
    session.tab.wait_until_navigated().unwrap();
    session
        .tab
        .wait_for_xpath("//h1[contains(., 'Success')]")
        .unwrap();
    session.check_page("installed");
    session.screenshot("1-installed.png");

    session.open(&format!("{base}/"));
    assert_eq!(session.tab.get_title().unwrap(), SITE_TITLE);
    session.check_page("front page");
    session.screenshot("2-front-page.png");

    session.open(&format!("{base}/wp-login.php"));
    session.type_into("#user_login", ADMIN_USER);
    session.type_into("#user_pass", ADMIN_PASSWORD);
    session.check_page("login form");
    session
        .tab
        .find_element("#wp-submit")
        .unwrap()
        .click()
        .unwrap();
    session.tab.wait_until_navigated().unwrap();
    session.tab.wait_for_element("#dashboard-widgets").unwrap();
    assert!(session.tab.get_url().contains("/wp-admin/"));
    session.check_page("dashboard");
    session.screenshot("3-dashboard.png");

    // Publish from the block editor through its own data store: the same REST requests,
    // nonce and cookies as the Publish button.
    session.open(&format!("{base}/wp-admin/post-new.php"));
    session.wait_for(
        "the block editor",
        "!!(window.wp && wp.data && wp.data.select('core/editor') \
          && wp.data.select('core/editor').getCurrentPostId())",
        Duration::from_secs(60),
    );
    let link = session.eval(&format!(
        "(async () => {{ \
           const editor = wp.data.dispatch('core/editor'); \
           editor.editPost({{ title: {title:?}, status: 'publish', \
             content: '<!-- wp:paragraph --><p>{text}</p><!-- /wp:paragraph -->' }}); \
           await editor.savePost(); \
           const post = wp.data.select('core/editor').getCurrentPost(); \
           return post.status === 'publish' ? post.link : 'not published: ' + post.status; \
         }})()",
        title = POST_TITLE,
        text = POST_TEXT,
    ));
    let link = link.as_str().expect("the post's link").to_string();
    assert!(link.starts_with(&base), "{link}");
    // The welcome guide would hide the post in the screenshot.
    session
        .eval("wp.data.dispatch('core/preferences').set('core/edit-post', 'welcomeGuide', false)");
    std::thread::sleep(Duration::from_millis(300));
    session.check_page("block editor");
    session.screenshot("4-editor.png");

    session.open(&format!("{base}/"));
    let front = session.tab.get_content().unwrap();
    assert!(
        front.contains(POST_TITLE),
        "the new post is not on the front page"
    );
    session.check_page("front page with the post");
    session.screenshot("5-front-page-with-post.png");

    session.open(&link);
    let post = session.tab.get_content().unwrap();
    assert!(post.contains(POST_TEXT));
    session.check_page("the new post");
    session.screenshot("6-new-post.png");

    let problems = wordpress::php_problems(&server.logs());
    assert!(
        problems.is_empty(),
        "PHP complained:\n{}",
        problems.join("\n")
    );
    eprintln!("screenshots in {}", session.shots.display());
}
