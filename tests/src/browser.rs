//! A headless browser for the review desk's end-to-end tests: Debian's chromium driven through
//! its chromedriver with fantoccini. Each [`Browser`] has its own chromedriver on a free port,
//! its own fresh profile and its own language, so tests run in parallel and see what a first-time
//! visitor with that browser language would see.

use fantoccini::{Client, ClientBuilder};
pub use fantoccini::{Locator, elements::Element, key::Key};
use hyper_util::client::legacy::connect::HttpConnector;
use std::{
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
const MISSING: &str = "chromium and chromium-driver are needed for the desk's browser tests: \
                       `bash .ci/browser` installs them (Debian)";

/// How long chromedriver may take to listen: generous, since a debug build of the whole suite
/// may be keeping both cores busy.
const DRIVER_STARTUP: Duration = Duration::from_secs(20);
/// How long [`Browser::wait_for`] and [`Browser::wait_for_text`] wait.
const WAIT: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(50);

/// A headless chromium of a test's own. Use [`Browser::close`] at the end of a test; dropping
/// it (on a panic, say) kills chromedriver and chromium all the same.
pub struct Browser {
    /// The WebDriver session, for what the helpers below do not cover.
    pub client: Client,
    // Declared after `client`, so it is dropped after it.
    driver: Driver,
}

/// The chromedriver process, and with it the chromium it starts; the temporary directory with
/// the profile and the log.
struct Driver {
    child: Child,
    dir: PathBuf,
}

impl Driver {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("chromedriver.log")).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leaves chromium running when it is killed, so kill the process group
        // chromedriver leads (chromium's processes are in it), and before reaping chromedriver,
        // so that the group id cannot have been reused.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Browser {
    /// A browser whose language is American English (`Accept-Language: en-US,en;q=0.9`).
    pub async fn start() -> Browser {
        Self::start_with_language("en-US").await
    }

    /// A browser whose language is `lang` (e.g. "pl", "zh-CN"): what it sends as
    /// `Accept-Language`, and the language of its own user interface.
    pub async fn start_with_language(lang: &str) -> Browser {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            panic!("{MISSING}");
        }
        let dir = std::env::temp_dir().join(format!(
            "cw-browser-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let profile = dir.join("profile");
        std::fs::create_dir_all(&profile).expect("a temporary directory for the browser");
        let log = std::fs::File::create(dir.join("chromedriver.log")).expect("a log file");
        let port = crate::free_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a log file"))
            .stderr(log)
            // A group of its own, which the chromium it starts joins: Drop kills them together.
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("{CHROMEDRIVER} does not start ({e}): {MISSING}"));
        let mut driver = Driver { child, dir };
        wait_until_listening(&mut driver, port).await;

        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new",
                    // Tests often run as root (CI containers), where chromium's sandbox cannot
                    // start.
                    "--no-sandbox",
                    "--disable-gpu",
                    // /dev/shm is small in containers; chromium crashes when it runs out.
                    "--disable-dev-shm-usage",
                    "--disable-quic",
                    "--no-first-run",
                    // Nothing but the page under test on the network, and no background work
                    // competing with it for two cores.
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                    format!("--lang={lang}"),
                ],
                // --lang alone sets the interface language; Accept-Language comes from this.
                "prefs": { "intl.accept_languages": lang },
            }),
        );
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "chromedriver did not start chromium: {e}\nchromedriver's log:\n{}",
                    driver.log()
                )
            });
        Browser { client, driver }
    }

    /// Ends the WebDriver session (chromedriver closes chromium), then stops chromedriver and
    /// removes the profile.
    pub async fn close(self) {
        let Browser { client, driver } = self;
        let _ = client.close().await;
        drop(driver);
    }

    /// Where [`Browser::screenshot`] saves: `target/screenshots/desk` in the workspace.
    pub fn screenshots_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("the tests crate lies in the workspace")
            .join("target/screenshots/desk")
    }

    /// Saves what the window shows as `<screenshots_dir>/<name>.png` and returns that path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .client
            .screenshot()
            .await
            .unwrap_or_else(|e| panic!("screenshot {name:?}: {e}"));
        let dir = Self::screenshots_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }

    /// Loads `url` and waits until the page has loaded.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The URL the browser is at now.
    pub async fn current_url(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        }
    }

    /// The element `css` selects, which must be there already (see [`Browser::wait_for`]).
    pub async fn find(&self, css: &str) -> Element {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element,
            Err(e) => panic!("no element {css:?} at {}: {e}", self.current_url().await),
        }
    }

    /// The text of the element `css` selects, as rendered: hidden parts are left out.
    pub async fn text_of(&self, css: &str) -> String {
        self.find(css)
            .await
            .text()
            .await
            .unwrap_or_else(|e| panic!("text of {css:?}: {e}"))
    }

    /// Replaces what the input `css` selects holds by `value`, typed as a user would.
    pub async fn fill(&self, css: &str, value: &str) {
        let input = self.find(css).await;
        input
            .clear()
            .await
            .unwrap_or_else(|e| panic!("clear {css:?}: {e}"));
        input
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("type into {css:?}: {e}"));
    }

    /// Presses and releases `key` on the keyboard, wherever the focus is: what a person who
    /// works without a mouse does.
    pub async fn press(&self, key: Key) {
        use fantoccini::actions::{InputSource, KeyAction, KeyActions};
        let value = char::from(key);
        let keys = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value })
            .then(KeyAction::Up { value });
        self.client
            .perform_actions(keys)
            .await
            .unwrap_or_else(|e| panic!("press {key:?}: {e}"));
    }

    /// Clicks the element `css` selects.
    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css:?}: {e}"));
    }

    /// Waits (up to 15 s) until an element `css` selects is on the page, and returns it.
    pub async fn wait_for(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(WAIT)
            .every(POLL)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(element) => element,
            Err(fantoccini::error::CmdError::WaitTimeout) => panic!(
                "no element {css:?} within {WAIT:?} at {}",
                self.current_url().await
            ),
            Err(e) => panic!("waiting for {css:?} at {}: {e}", self.current_url().await),
        }
    }

    /// Waits (up to 15 s) until the text of the element `css` selects contains `needle`, and
    /// returns that text: for pages that change after loading, or after a click.
    pub async fn wait_for_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut last = None;
        loop {
            // The element may be missing, or replaced between finding it and reading it.
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
            {
                if text.contains(needle) {
                    return text;
                }
                last = Some(text);
            }
            if Instant::now() >= deadline {
                panic!(
                    "{css:?} did not come to contain {needle:?} within {WAIT:?} at {}; last text: {}",
                    self.current_url().await,
                    last.map_or("(no such element)".into(), |t| format!("{t:?}")),
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Waits until chromedriver accepts connections on `port`, or fails with its log.
async fn wait_until_listening(driver: &mut Driver, port: u16) {
    let deadline = Instant::now() + DRIVER_STARTUP;
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = driver.child.try_wait() {
            panic!(
                "chromedriver exited ({status}) before listening on port {port}:\n{}",
                driver.log()
            );
        }
        if Instant::now() >= deadline {
            panic!(
                "chromedriver did not listen on port {port} within {DRIVER_STARTUP:?}:\n{}",
                driver.log()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
