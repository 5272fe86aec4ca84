//! Headless Chromium for the browser tests: starts `chromedriver` on a free
//! loopback port, opens WebDriver sessions (with or without JavaScript)
//! through fantoccini, saves screenshots under
//! `target/browser-screenshots/<backend>/` and runs an accessibility check
//! inside the page.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::helpers::Backend;

/// How long chromedriver may take to listen, and a session to open.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any page may take to load, or a condition to become true.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one WebDriver command (a click, a script) may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// One browser at a time: the machine running the tests is small, and two
/// Chromiums side by side make both slow enough to hit the timeouts.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Whether the tests run in CI, where a missing browser is a failure.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// An executable: the file the environment override names, else the first
/// of `names` found on `PATH`.
fn find_program(env_override: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_override) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

/// A running chromedriver, killed (with the browsers it started) on drop.
pub struct Driver {
    child: Child,
    port: u16,
    browser: PathBuf,
    _turn: tokio::sync::MutexGuard<'static, ()>,
}

/// Whether a session runs page scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scripts {
    Enabled,
    Disabled,
}

impl Driver {
    /// Starts chromedriver, or returns `None` (after saying so on stderr)
    /// when Chromium or chromedriver is not installed and the tests do not
    /// run in CI. In CI (`CI` set) a missing browser fails the test.
    pub async fn start() -> Option<Driver> {
        let browser = find_program("ASSENT_TEST_CHROMIUM", &["chromium", "chromium-browser"]);
        let driver = find_program("ASSENT_TEST_CHROMEDRIVER", &["chromedriver"]);
        let (Some(browser), Some(driver)) = (browser, driver) else {
            let missing = "Chromium or chromedriver is not installed \
                (Debian: apt-get install chromium chromium-driver; or point \
                ASSENT_TEST_CHROMIUM and ASSENT_TEST_CHROMEDRIVER at them)";
            if in_ci() {
                panic!("{missing}; CI must run the browser tests");
            }
            eprintln!("SKIPPED browser test: {missing}");
            return None;
        };
        let turn = ONE_BROWSER.lock().await;
        // Its own process group, so the browsers it starts can be killed
        // with it if a test fails half-way.
        let mut child = Command::new(&driver)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver.display()));
        let stdout = child.stdout.take().expect("chromedriver's stdout is piped");
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        // Reads the port from the start-up line, then drains the pipe so
        // chromedriver never blocks on a full one.
        std::thread::spawn(move || {
            let mut port_tx = Some(port_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = started_on_port(&line)
                    && let Some(tx) = port_tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let mut running = Driver {
            child,
            port: 0,
            browser,
            _turn: turn,
        };
        running.port = match tokio::time::timeout(START_TIMEOUT, port_rx).await {
            Ok(Ok(port)) => port,
            Ok(Err(_)) => panic!("chromedriver exited before it listened"),
            Err(_) => panic!("chromedriver did not listen within {START_TIMEOUT:?}"),
        };
        Some(running)
    }

    /// Opens a browser session.
    pub async fn session(&self, scripts: Scripts, backend: Backend) -> Session {
        let profile = tempfile::tempdir().expect("a browser profile directory");
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--window-size=1024,1280".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-crash-reporter".to_owned(),
            // Every name but the loopback address fails to resolve: the
            // browser reaches nothing but the app under test.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut prefs = json!({});
        if scripts == Scripts::Disabled {
            args.push("--blink-settings=scriptEnabled=false".to_owned());
            prefs = json!({ "profile.managed_default_content_settings.javascript": 2 });
        }
        let capabilities = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": {
                "pageLoad": PAGE_TIMEOUT.as_millis() as u64,
                "script": COMMAND_TIMEOUT.as_millis() as u64,
                "implicit": 0,
            },
            "goog:chromeOptions": {
                "binary": self.browser.display().to_string(),
                "args": args,
                "prefs": prefs,
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        // Both of rustls' crypto providers are compiled into the tests
        // (reqwest brings ring, fantoccini's hyper-rustls aws-lc-rs), so
        // rustls cannot pick one by itself. Chromedriver is spoken to over
        // plain HTTP; the provider is never used, but must exist.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let connecting = ClientBuilder::rustls()
            .expect("a WebDriver HTTP client")
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await_within(START_TIMEOUT, "opening a browser session")
            .await;
        let client = connecting.unwrap_or_else(|e| panic!("opening a browser session: {e}"));
        let session = Session {
            client,
            scripts,
            screenshots: screenshot_dir(backend),
            _profile: profile,
        };
        session.check_scripting().await;
        session.check_the_accessibility_check().await;
        session
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left running.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a process group id we created; no memory is
        // touched.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The port in chromedriver's "ChromeDriver was started successfully on
/// port 12345." line.
fn started_on_port(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim().trim_end_matches('.').parse().ok()
}

/// Where a backend's screenshots go: `target/browser-screenshots/<backend>`.
fn screenshot_dir(backend: Backend) -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target dir>/tmp`, wherever the target is.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .to_path_buf();
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let dir = target.join("browser-screenshots").join(name);
    std::fs::create_dir_all(&dir).expect("the screenshot directory");
    dir
}

/// A future with a deadline; panics with `what` when it passes.
trait AwaitWithin: std::future::IntoFuture + Sized {
    async fn await_within(self, limit: Duration, what: &str) -> Self::Output {
        match tokio::time::timeout(limit, self).await {
            Ok(output) => output,
            Err(_) => panic!("{what}: no answer within {limit:?}"),
        }
    }
}

impl<F: std::future::IntoFuture> AwaitWithin for F {}

/// One browser session: a window on the app under test.
pub struct Session {
    client: Client,
    scripts: Scripts,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Session {
    /// Whether page scripts run in this session.
    pub fn scripts(&self) -> Scripts {
        self.scripts
    }

    /// Opens a URL and waits until it has loaded.
    pub async fn open(&self, url: &str) {
        self.client
            .goto(url)
            .await_within(PAGE_TIMEOUT, "loading a page")
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// The path of the current page's URL.
    pub async fn path(&self) -> String {
        self.client
            .current_url()
            .await_within(COMMAND_TIMEOUT, "reading the URL")
            .await
            .expect("the current URL")
            .path()
            .to_owned()
    }

    /// The visible text of the first element matching a CSS selector.
    pub async fn text(&self, css: &str) -> String {
        self.element(css)
            .await
            .text()
            .await_within(COMMAND_TIMEOUT, "reading text")
            .await
            .unwrap_or_else(|e| panic!("the text of {css}: {e}"))
    }

    /// The visible texts of every element matching a CSS selector.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        self.try_texts(css)
            .await
            .unwrap_or_else(|e| panic!("the texts of {css}: {e}"))
    }

    /// Like `texts`, but reports WebDriver errors.
    async fn try_texts(&self, css: &str) -> Result<Vec<String>, fantoccini::error::CmdError> {
        let elements = self
            .client
            .find_all(Locator::Css(css))
            .await_within(COMMAND_TIMEOUT, "finding elements")
            .await?;
        let mut texts = Vec::new();
        for element in elements {
            texts.push(
                element
                    .text()
                    .await_within(COMMAND_TIMEOUT, "reading text")
                    .await?,
            );
        }
        Ok(texts)
    }

    /// An attribute of the first element matching a CSS selector.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.element(css)
            .await
            .attr(name)
            .await_within(COMMAND_TIMEOUT, "reading an attribute")
            .await
            .unwrap_or_else(|e| panic!("{css}[{name}]: {e}"))
    }

    /// Whether a checkbox is ticked.
    pub async fn is_ticked(&self, css: &str) -> bool {
        self.element(css)
            .await
            .is_selected()
            .await_within(COMMAND_TIMEOUT, "reading a checkbox")
            .await
            .unwrap_or_else(|e| panic!("{css} selected: {e}"))
    }

    /// Types into a field.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.element(css)
            .await
            .send_keys(text)
            .await_within(COMMAND_TIMEOUT, "typing")
            .await
            .unwrap_or_else(|e| panic!("typing into {css}: {e}"));
    }

    /// Clicks the first element matching a CSS selector.
    pub async fn click(&self, css: &str) {
        self.element(css)
            .await
            .click()
            .await_within(PAGE_TIMEOUT, "clicking")
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Presses the button labelled `name`, as a person would.
    pub async fn press(&self, name: &str) {
        let xpath = format!("//button[normalize-space(.)={}]", xpath_literal(name));
        let button = match self
            .client
            .find(Locator::XPath(&xpath))
            .await_within(COMMAND_TIMEOUT, "finding a button")
            .await
        {
            Ok(button) => button,
            Err(e) => panic!("no button {name:?} on {}: {e}", self.describe().await),
        };
        button
            .click()
            .await_within(PAGE_TIMEOUT, "pressing a button")
            .await
            .unwrap_or_else(|e| panic!("pressing {name:?}: {e}"));
    }

    /// Follows the link with this text.
    pub async fn follow(&self, link_text: &str) {
        let link = self
            .client
            .find(Locator::LinkText(link_text))
            .await_within(COMMAND_TIMEOUT, "finding a link")
            .await
            .unwrap_or_else(|e| panic!("no link {link_text:?}: {e}"));
        link.click()
            .await_within(PAGE_TIMEOUT, "following a link")
            .await
            .unwrap_or_else(|e| panic!("following {link_text:?}: {e}"));
    }

    /// Waits until the page's `h1` reads `expected`.
    pub async fn wait_for_heading(&self, expected: &str) {
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        loop {
            // A page still loading may swap its elements under a read;
            // that is "not yet", not a failure.
            if let Ok(headings) = self.try_texts("h1").await
                && headings.iter().any(|h| h == expected)
            {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "waited {PAGE_TIMEOUT:?} for the heading {expected:?}; the page: {}",
                    self.describe().await
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Checks the page's accessibility and saves a screenshot as
    /// `NN-name.png`.
    pub async fn record(&self, file_name: &str) {
        let problems = self.accessibility_problems().await;
        assert!(
            problems.is_empty(),
            "{file_name}: accessibility problems: {problems:#?}"
        );
        let png = self
            .client
            .screenshot()
            .await_within(COMMAND_TIMEOUT, "taking a screenshot")
            .await
            .unwrap_or_else(|e| panic!("screenshot of {file_name}: {e}"));
        let path = self.screenshots.join(format!("{file_name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Runs the accessibility check in the page (a WebDriver script, which
    /// runs even where the page's own scripts are disabled).
    pub async fn accessibility_problems(&self) -> Vec<String> {
        let answer = self
            .client
            .execute(ACCESSIBILITY_CHECK, Vec::new())
            .await_within(COMMAND_TIMEOUT, "the accessibility check")
            .await
            .unwrap_or_else(|e| panic!("running the accessibility check: {e}"));
        serde_json::from_value(answer).expect("the check returns a list of strings")
    }

    /// Closes the browser.
    pub async fn close(self) {
        self.client
            .close()
            .await_within(COMMAND_TIMEOUT, "closing the browser")
            .await
            .expect("closing the browser");
    }

    async fn element(&self, css: &str) -> fantoccini::elements::Element {
        match self
            .client
            .find(Locator::Css(css))
            .await_within(COMMAND_TIMEOUT, "finding an element")
            .await
        {
            Ok(element) => element,
            Err(e) => panic!("no {css} on {}: {e}", self.describe().await),
        }
    }

    /// The URL and text of the page, for failure messages.
    async fn describe(&self) -> String {
        let url = self
            .client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default();
        let text = match self.client.find(Locator::Css("body")).await {
            Ok(body) => body.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        format!("{url}\n{text}")
    }

    /// Makes sure the session really does (or does not) run page scripts,
    /// with a page that shows one thing with scripts and another without.
    async fn check_scripting(&self) {
        self.open(
            "data:text/html,<html lang=en><title>probe</title>\
             <noscript><p id=off>off</p></noscript>\
             <p id=on hidden>on</p><script>document.getElementById('on').hidden=false</script></html>",
        )
        .await;
        let shown = self.texts("p").await.join(" ");
        let expected = match self.scripts {
            Scripts::Enabled => "on",
            Scripts::Disabled => "off",
        };
        assert_eq!(shown.trim(), expected, "page scripts: {:?}", self.scripts);
    }
}

impl Session {
    /// Makes sure the accessibility check finds each kind of problem it
    /// looks for, on a page that has one of each (and a few things done
    /// right, which it must not report).
    async fn check_the_accessibility_check(&self) {
        self.open(
            "data:text/html,<html><title>flawed</title><body>\
             <label for=named>Named</label><input id=named>\
             <label>Wrapped <input id=wrapped></label>\
             <input id=bare><input aria-label=Search id=aria>\
             <button id=empty></button><button>Fine</button>\
             <p id=faint style='color: rgb(170, 170, 170)'>faint</p>\
             <p style='color: rgb(255, 255, 255); background: rgb(11, 83, 148)'>inverse</p>\
             <p style='position: absolute; left: -9999px; color: rgb(250, 250, 250)'>off the page</p>\
             </body></html>",
        )
        .await;
        let problems = self.accessibility_problems().await;
        let expected = [
            "<html> has no lang",
            "input#bare has no label",
            "button#empty has no accessible name",
            "p#faint: contrast 2.32:1",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (found, wanted) in problems.iter().zip(expected) {
            assert!(found.starts_with(wanted), "{found:?} is not {wanted:?}");
        }
    }
}

/// An XPath string literal for any text.
fn xpath_literal(text: &str) -> String {
    if !text.contains('"') {
        format!("\"{text}\"")
    } else if !text.contains('\'') {
        format!("'{text}'")
    } else {
        let parts: Vec<String> = text.split('"').map(|p| format!("\"{p}\"")).collect();
        format!("concat({})", parts.join(", '\"', "))
    }
}

/// The accessibility check, run in the page: `<html lang>` is set; every
/// visible field has a label (`label[for]`, a wrapping label, `aria-label`
/// or `aria-labelledby`); every button and link has an accessible name; and
/// every visible text has a contrast of at least 4.5:1 with its effective
/// background (WCAG 2 relative luminance, backgrounds composited up the
/// tree onto the white canvas). Returns the problems found.
const ACCESSIBILITY_CHECK: &str = r#"
const problems = [];
const describe = (el) => {
  let d = el.tagName.toLowerCase();
  if (el.id) d += '#' + el.id;
  if (el.className && typeof el.className === 'string') d += '.' + el.className.trim().split(/\s+/).join('.');
  return d;
};
const visible = (el) => {
  if (el.closest('[aria-hidden="true"], [hidden]')) return false;
  const style = getComputedStyle(el);
  if (style.display === 'none' || style.visibility !== 'visible' || Number(style.opacity) === 0) return false;
  const r = el.getBoundingClientRect();
  if (r.width < 1 || r.height < 1) return false;
  // Moved off the page (the honeypot field).
  if (r.right <= 0 || r.bottom <= 0) return false;
  return true;
};
const parse = (color) => {
  const m = /rgba?\(([^)]*)\)/.exec(color);
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
};
const over = (top, bottom) => {
  const a = top.a + bottom.a * (1 - top.a);
  if (a === 0) return { r: 255, g: 255, b: 255, a: 0 };
  const mix = (t, b) => (t * top.a + b * bottom.a * (1 - top.a)) / a;
  return { r: mix(top.r, bottom.r), g: mix(top.g, bottom.g), b: mix(top.b, bottom.b), a };
};
const background = (el) => {
  const layers = [];
  for (let node = el; node && node.nodeType === 1; node = node.parentElement) {
    const c = parse(getComputedStyle(node).backgroundColor);
    if (c && c.a > 0) {
      layers.push(c);
      if (c.a >= 1) break;
    }
  }
  let bg = { r: 255, g: 255, b: 255, a: 1 };
  for (let i = layers.length - 1; i >= 0; i--) bg = over(layers[i], bg);
  return bg;
};
const luminance = (c) => {
  const channel = (v) => {
    const s = v / 255;
    return s <= 0.04045 ? s / 12.92 : Math.pow((s + 0.055) / 1.055, 2.4);
  };
  return 0.2126 * channel(c.r) + 0.7152 * channel(c.g) + 0.0722 * channel(c.b);
};
const contrast = (a, b) => {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
};
const name = (el) => {
  const labelledBy = (el.getAttribute('aria-labelledby') || '').split(/\s+/).filter(Boolean)
    .map((id) => document.getElementById(id)).filter(Boolean).map((n) => n.textContent).join(' ');
  return (el.getAttribute('aria-label') || labelledBy || el.textContent || el.value || el.title || '').trim();
};

if (!document.documentElement.getAttribute('lang')) problems.push('<html> has no lang');
if (!document.title.trim()) problems.push('the page has no title');

const buttonTypes = ['submit', 'button', 'reset', 'image'];
for (const el of document.querySelectorAll('input, select, textarea')) {
  if (el.type === 'hidden' || buttonTypes.includes(el.type) || !visible(el)) continue;
  const labels = Array.from(el.labels || []).filter((l) => l.textContent.trim());
  const aria = (el.getAttribute('aria-label') || '').trim() || (el.getAttribute('aria-labelledby') || '').trim();
  if (labels.length === 0 && !aria) problems.push(describe(el) + ' has no label');
}
for (const el of document.querySelectorAll('button, [role="button"], a[href], ' + buttonTypes.map((t) => 'input[type="' + t + '"]').join(', '))) {
  if (!visible(el)) continue;
  if (!name(el)) problems.push(describe(el) + ' has no accessible name');
}
for (const el of document.body.querySelectorAll('*')) {
  const ownText = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
  const field = (el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT' && !['checkbox', 'radio', 'hidden'].includes(el.type))) && el.value;
  if (!(ownText || field) || !visible(el)) continue;
  const style = getComputedStyle(el);
  const color = parse(style.color);
  if (!color) { problems.push(describe(el) + ': unreadable color ' + style.color); continue; }
  const bg = background(el);
  const ratio = contrast(over(color, bg), bg);
  if (ratio < 4.5) {
    problems.push(describe(el) + ': contrast ' + ratio.toFixed(2) + ':1 (' + style.color + ' on rgb(' +
      [bg.r, bg.g, bg.b].map(Math.round).join(', ') + '))');
  }
}
return problems;
"#;
