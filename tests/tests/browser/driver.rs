//! One headless Chromium per test, driven over WebDriver: a `chromedriver` process on a free
//! local port, one session on it, and the helpers the console's tests use.
//!
//! [`Browser::start`] finds `chromium` and `chromedriver` on `PATH`. Missing ones fail the test
//! under `CI=true` (`.ci/run` installs them) and skip it elsewhere, with a notice on stderr.
//! The driver runs in its own process group with a throwaway profile directory; dropping the
//! [`Browser`] (also while a test panics) kills the whole group, so no browser outlives its test,
//! and a watchdog in the group kills it when the test process dies without running destructors.
//! [`Browser::close`] ends the session politely first, for the normal path.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::cookies::Cookie;
use fantoccini::elements::Element;
use fantoccini::wd::{Capabilities, WindowHandle};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the helpers wait for an element or a text by default.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// How long chromedriver may take to answer on its port.
const DRIVER_PATIENCE: Duration = Duration::from_secs(15);

/// The browsers tried, in order, when looking on `PATH`.
const BROWSERS: [&str; 4] = [
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
];

/// The desktop window the session starts with.
pub(crate) const DESKTOP: (u32, u32) = (1280, 900);

/// A phone's window, for the narrow-layout checks ([`Browser::mobile`]).
pub(crate) const MOBILE: (u32, u32) = (375, 812);

/// Whether the suite runs under CI (`CI=true`), where nothing may be skipped.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The first executable called `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Whether `path` is a file someone may execute.
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The browser and driver binaries, or why they cannot be used.
fn tools() -> Result<(PathBuf, PathBuf), String> {
    let browser = BROWSERS.iter().find_map(|name| on_path(name));
    let driver = on_path("chromedriver");
    match (browser, driver) {
        (Some(browser), Some(driver)) => Ok((browser, driver)),
        (browser, driver) => {
            let mut missing = Vec::new();
            if browser.is_none() {
                missing.push("chromium");
            }
            if driver.is_none() {
                missing.push("chromedriver");
            }
            Err(format!(
                "{} not found on PATH; install them with\n    \
                 apt-get update && apt-get install -y chromium chromium-driver",
                missing.join(" and ")
            ))
        }
    }
}

/// The workspace root (the parent of this package's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package lives inside the workspace")
        .to_path_buf()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("cannot find a free local port")
        .port()
}

/// Whether the WebDriver server on `port` answers `/status` with `"ready": true` (within a
/// second: chromedriver keeps the connection open after its answer).
async fn driver_ready(port: u16) -> bool {
    let ask = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await.ok()?;
        let request = format!("GET /status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return Some(false);
            }
            answer.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&answer).replace(' ', "");
            if text.contains("\"ready\":true") {
                return Some(true);
            }
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ask).await,
        Ok(Some(true))
    )
}

/// Runs `$2...` (chromedriver) in place of the shell, with a watchdog in the background that
/// kills the process group once the test process `$1` is gone: a test killed from outside (a
/// timeout, Ctrl-C) runs no destructor, and its browser must not outlive it either.
const WATCHDOG: &str = r#"owner=$1; shift
(while kill -0 "$owner" 2>/dev/null; do sleep 0.5; done; kill -s KILL 0) </dev/null >/dev/null 2>&1 &
exec "$@""#;

/// A running chromedriver: its own process group, killed with everything it started on drop.
struct Driver {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Driver {
    /// Starts chromedriver on a free port and waits until it is ready; retries a port that was
    /// taken in between.
    async fn start(binary: &Path, dir: &Path) -> Driver {
        let log = dir.join("chromedriver.log");
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let child = {
                use std::os::unix::process::CommandExt;
                Command::new("sh")
                    .args(["-c", WATCHDOG, "sh", &std::process::id().to_string()])
                    .arg(binary)
                    .arg(format!("--port={port}"))
                    .arg(format!("--log-path={}", log.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
            };
            let mut driver = Driver {
                child,
                port,
                log: log.clone(),
            };
            let deadline = Instant::now() + DRIVER_PATIENCE;
            loop {
                if driver_ready(port).await {
                    return driver;
                }
                if let Ok(Some(status)) = driver.child.try_wait() {
                    last = format!("chromedriver exited with {status}: {}", driver.log_tail());
                    break;
                }
                if Instant::now() > deadline {
                    panic!(
                        "chromedriver did not answer on port {port} within {DRIVER_PATIENCE:?}: {}",
                        driver.log_tail()
                    );
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        panic!("chromedriver did not start: {last}");
    }

    /// The last lines of chromedriver's log, for failure messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group holds chromedriver and every browser process it started.
        if let Some(group) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless Chromium session for one test.
///
/// Helpers that look for an element wait up to [`WAIT`] for it and panic with the page's text
/// when it does not come; [`Browser::client`] gives the whole WebDriver API for the rest.
pub(crate) struct Browser {
    client: Client,
    // Field order matters: the driver (and its browser) dies before the profile is removed.
    driver: Driver,
    _profile: TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a [`DESKTOP`] window.
    ///
    /// `None` when chromium or chromedriver is missing outside CI (the caller returns, the test
    /// passes with a notice on stderr); under `CI=true` a missing one fails the test.
    pub(crate) async fn start() -> Option<Browser> {
        let (browser, driver) = match tools() {
            Ok(tools) => tools,
            Err(why) if under_ci() => panic!(
                "the browser tests need headless Chromium under CI=true: {why}\n\
                 (.ci/run installs both before the tests)"
            ),
            Err(why) => {
                eprintln!("note: skipping a browser test: {why}");
                return None;
            }
        };
        let profile = tempfile::Builder::new()
            .prefix("ledger-browser-")
            .tempdir()
            .expect("cannot create the browser's profile directory");
        let driver = Driver::start(&driver, profile.path()).await;
        let (width, height) = DESKTOP;
        let mut capabilities = Capabilities::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": browser,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().join("profile").display()),
                    "--no-first-run",
                    "--no-default-browser-check",
                    "--disable-extensions",
                ],
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start a session of {} through chromedriver: {e}\n{}",
                    browser.display(),
                    driver.log_tail()
                )
            });
        Some(Browser {
            client,
            driver,
            _profile: profile,
        })
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// Ends the session (the browser quits), then stops chromedriver.
    pub(crate) async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        drop(self);
    }

    /// Opens `url` and waits for the page to load.
    pub(crate) async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// The current page's URL.
    pub(crate) async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .expect("no current URL")
            .to_string()
    }

    /// The page's `<title>`.
    pub(crate) async fn title(&self) -> String {
        self.client.title().await.expect("cannot read the title")
    }

    /// The visible text of the page's body (empty while there is no body).
    pub(crate) async fn body_text(&self) -> String {
        match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// The first element matching `css`, waiting up to [`WAIT`] for it.
    pub(crate) async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(Duration::from_millis(50))
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(e) => panic!(
                "no element matches {css:?} after {WAIT:?} ({e}) on {}; the page reads:\n{}",
                self.url().await,
                self.body_text().await
            ),
        }
    }

    /// Every element matching `css` now (no waiting).
    pub(crate) async fn find_all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("cannot look for {css:?}: {e}"))
    }

    /// Whether an element matches `css` now (no waiting).
    pub(crate) async fn exists(&self, css: &str) -> bool {
        !self.find_all(css).await.is_empty()
    }

    /// The visible text of the first element matching `css`.
    pub(crate) async fn text_of(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("cannot read the text of {css:?}: {e}"))
    }

    /// An attribute of the first element matching `css` (`None` when it has none).
    pub(crate) async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .attr(name)
            .await
            .unwrap_or_else(|e| panic!("cannot read {name} of {css:?}: {e}"))
    }

    /// A property of the first element matching `css`, such as an input's current `value`.
    pub(crate) async fn prop(&self, css: &str, name: &str) -> Option<String> {
        self.find(css)
            .await
            .prop(name)
            .await
            .unwrap_or_else(|e| panic!("cannot read {name} of {css:?}: {e}"))
    }

    /// Waits up to [`WAIT`] until an element matching `css` contains `needle` in its text.
    pub(crate) async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        self.wait_for_text_within(css, needle, WAIT).await
    }

    /// Waits up to `timeout` until an element matching `css` contains `needle` in its text;
    /// returns that element's text, or panics with the page's text.
    pub(crate) async fn wait_for_text_within(
        &self,
        css: &str,
        needle: &str,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(elements) = self.client.find_all(Locator::Css(css)).await {
                for element in elements {
                    if let Ok(text) = element.text().await
                        && text.contains(needle)
                    {
                        return text;
                    }
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "no element matching {css:?} shows {needle:?} after {timeout:?} on {}; \
                     the page reads:\n{}",
                    self.url().await,
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits up to [`WAIT`] until an element matches `css`.
    pub(crate) async fn wait_for(&self, css: &str) {
        self.wait_for_within(css, WAIT).await;
    }

    /// Waits up to `timeout` until an element matches `css`, looking every 10 ms (close enough
    /// to time how soon a live page shows something); panics with the page's text.
    pub(crate) async fn wait_for_within(&self, css: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(found) = self.client.find_all(Locator::Css(css)).await
                && !found.is_empty()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "no element matches {css:?} after {timeout:?} on {}; the page reads:\n{}",
                    self.url().await,
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to [`WAIT`] until no element matches `css`; panics with the page's text.
    pub(crate) async fn wait_for_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(found) = self.client.find_all(Locator::Css(css)).await
                && found.is_empty()
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "an element still matches {css:?} after {WAIT:?} on {}; the page reads:\n{}",
                    self.url().await,
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits up to [`WAIT`] until `script` (a function body, `return ...`) gives `true`;
    /// `what` names the condition in the panic.
    pub(crate) async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(serde_json::Value::Bool(true)) = self.client.execute(script, Vec::new()).await
            {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "{what}: not so after {WAIT:?} on {}; the page reads:\n{}",
                    self.url().await,
                    self.body_text().await
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Panics unless every visible form control of the page (`input`, `select`, `textarea`,
    /// hidden inputs aside) has a `<label>`, an `aria-label` or an `aria-labelledby`.
    pub(crate) async fn assert_labelled(&self) {
        let unlabelled = self
            .eval(
                "return Array.from(document.querySelectorAll('input, select, textarea'))\
                   .filter(e => e.type !== 'hidden')\
                   .filter(e => !(e.labels && e.labels.length > 0)\
                     && !(e.getAttribute('aria-label') || '').trim()\
                     && !e.getAttribute('aria-labelledby'))\
                   .map(e => e.outerHTML);",
            )
            .await;
        assert_eq!(
            unlabelled,
            json!([]),
            "form controls without a label on {}",
            self.url().await
        );
    }

    /// Panics when the page scrolls sideways at the window's current width.
    pub(crate) async fn assert_no_horizontal_scroll(&self) {
        let widths = self
            .eval("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await;
        let (scroll, inner) = (widths[0].as_u64(), widths[1].as_u64());
        assert!(
            scroll.is_some() && scroll <= inner,
            "the page scrolls sideways on {}: scrollWidth {scroll:?} > innerWidth {inner:?}",
            self.url().await
        );
    }

    /// Clicks the first element matching `css`.
    pub(crate) async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {css:?}: {e}"));
    }

    /// Replaces the value of the field matching `css` with `text`, typed as a user would.
    pub(crate) async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field
            .clear()
            .await
            .unwrap_or_else(|e| panic!("cannot clear {css:?}: {e}"));
        field
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css:?}: {e}"));
    }

    /// Saves a PNG of the window as `docs/screenshots/<name>.png` in the workspace; returns
    /// its path.
    pub(crate) async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("cannot take the screenshot {name}: {e}"));
        let dir = workspace_root().join("docs").join("screenshots");
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }

    /// Resizes the window to `width` x `height` CSS pixels.
    pub(crate) async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .unwrap_or_else(|e| panic!("cannot resize the window to {width}x{height}: {e}"));
    }

    /// Resizes the window to a phone's [`MOBILE`] size.
    pub(crate) async fn mobile(&self) {
        self.resize(MOBILE.0, MOBILE.1).await;
    }

    /// Resizes the window back to the [`DESKTOP`] size.
    pub(crate) async fn desktop(&self) {
        self.resize(DESKTOP.0, DESKTOP.1).await;
    }

    /// The handle of the current window or tab.
    pub(crate) async fn window(&self) -> WindowHandle {
        self.client.window().await.expect("no current window")
    }

    /// Opens a new tab (or window) sharing the session's cookies and switches to it; returns
    /// its handle (the previous one is [`Browser::window`] before the call).
    pub(crate) async fn new_tab(&self) -> WindowHandle {
        let opened = self
            .client
            .new_window(true)
            .await
            .unwrap_or_else(|e| panic!("cannot open a new tab: {e}"));
        self.switch_to(&opened.handle).await;
        opened.handle
    }

    /// Makes `window` the current window or tab.
    pub(crate) async fn switch_to(&self, window: &WindowHandle) {
        self.client
            .switch_to_window(window.clone())
            .await
            .unwrap_or_else(|e| panic!("cannot switch to window {window:?}: {e}"));
    }

    /// The value of the cookie `name` on the current page's site, if it is set.
    pub(crate) async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_all_cookies()
            .await
            .unwrap_or_else(|e| panic!("cannot read the cookies: {e}"))
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
    }

    /// Sets the cookie `name` on the current page's host (path `/`, `SameSite=Lax`).
    pub(crate) async fn set_cookie(&self, name: &str, value: &str) {
        let url = self.client.current_url().await.expect("no current URL");
        let host = url
            .host_str()
            .expect("the current page has no host")
            .to_string();
        // An unset domain goes out as `null`, which Chromium refuses; so does `SameSite=None`
        // (the default) without `Secure`.
        let cookie = Cookie::parse(format!(
            "{name}={value}; Path=/; Domain={host}; SameSite=Lax"
        ))
        .unwrap_or_else(|e| panic!("not a cookie: {name}={value}: {e}"));
        self.client
            .add_cookie(cookie)
            .await
            .unwrap_or_else(|e| panic!("cannot set the cookie {name}: {e}"));
    }

    /// Deletes the cookie `name` on the current page's site (nothing when it is not set).
    pub(crate) async fn delete_cookie(&self, name: &str) {
        self.client
            .delete_cookie(name)
            .await
            .unwrap_or_else(|e| panic!("cannot delete the cookie {name}: {e}"));
    }

    /// Runs `script` in the page (`return ...` gives its value).
    pub(crate) async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .unwrap_or_else(|e| panic!("the script failed: {e}\n{script}"))
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Browser(chromedriver on port {})", self.driver.port)
    }
}
