//! Headless Chromium driven over WebDriver (chromedriver, both from
//! Debian's `chromium` and `chromium-driver`, which scripts/test.sh
//! installs), for the console tests. Each browser is its own
//! chromedriver process with its own profile; dropping it ends both.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::wd::TimeoutConfiguration;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long any one wait for the browser may take.
pub const BROWSER_WAIT: Duration = Duration::from_secs(20);

pub struct Browser {
    pub client: Client,
    /// `http://127.0.0.1:PORT` of the gateway.
    base: String,
    driver: Child,
    _profile: tempfile::TempDir,
}

/// Where the screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target folder")
        .to_path_buf();
    target.join("console-screenshots")
}

fn chromium() -> &'static str {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromium missing: scripts/test.sh installs it (apt-get install chromium chromium-driver)")
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session
    /// with a laptop-sized window.
    pub async fn start(base: &str) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let (driver, port) = start_driver();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    "--disable-extensions", "--window-size=1440,900",
                    "--lang=en-US", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let caps = caps.as_object().expect("an object").clone();
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        client
            .update_timeouts(TimeoutConfiguration::new(
                Some(Duration::from_secs(10)),
                Some(BROWSER_WAIT),
                Some(Duration::ZERO),
            ))
            .await
            .expect("timeouts set");
        Browser {
            client,
            base: base.to_owned(),
            driver,
            _profile: profile,
        }
    }

    /// Loads a path of the gateway.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("loading {path}: {e}"));
    }

    /// The path (and query) the browser is on.
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("current url");
        let path = url.path().to_owned();
        match url.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        }
    }

    /// The element `css` once it is there (waiting up to [`BROWSER_WAIT`]).
    pub async fn find(&self, css: &str) -> Element {
        match self
            .client
            .wait()
            .at_most(BROWSER_WAIT)
            .for_element(Locator::Css(css))
            .await
        {
            Ok(e) => e,
            Err(e) => panic!("no {css} on {}: {e}", self.path().await),
        }
    }

    /// Every element matching `css` now.
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client
            .find_all(Locator::Css(css))
            .await
            .expect("find_all")
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// Clicks `css` (a link or a submit button) and waits for the page it
    /// leads to.
    pub async fn click(&self, css: &str) {
        let before = self.client.find(Locator::Css("html")).await.ok();
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
        // The old page's root goes stale once the new one is loaded.
        if let Some(old) = before {
            let deadline = Instant::now() + BROWSER_WAIT;
            while old.tag_name().await.is_ok() {
                assert!(Instant::now() < deadline, "{css} led nowhere");
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        self.find("body").await;
    }

    /// Clicks something that stays on the page (a checkbox).
    pub async fn tick(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.expect("clear field");
        field.send_keys(text).await.expect("type into field");
    }

    /// Saves what the browser shows as `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("screenshot written");
    }

    /// Ends the session (Chromium quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// Starts chromedriver on a port it picks. Tried up to three times: with
/// `--port=0` it picks an IPv4 port and gives up when the same port is
/// taken on IPv6, which another process may have just done.
fn start_driver() -> (Child, u16) {
    let mut output = String::new();
    for _ in 0..3 {
        let mut driver = Command::new("chromedriver");
        driver
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group: dropping the browser ends chromedriver
            // and the Chromium it started, even after a failed assertion.
            .process_group(0);
        let mut driver = driver
            .spawn()
            .expect("chromedriver starts (apt-get install chromium-driver)");
        match driver_port(&mut driver) {
            Ok(port) => return (driver, port),
            Err(said) => {
                output += &said;
                let _ = driver.kill();
                let _ = driver.wait();
            }
        }
    }
    panic!("chromedriver did not start; it said:\n{output}");
}

/// The port chromedriver chose, from its start-up line; what it said
/// instead if it stopped or took longer than [`BROWSER_WAIT`].
fn driver_port(driver: &mut Child) -> Result<u16, String> {
    let out = driver.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let port = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| {
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse::<u16>().ok()
                });
            if tx.send((line, port)).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + BROWSER_WAIT;
    let mut said = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((_, Some(port))) => return Ok(port),
            Ok((line, None)) => {
                said += &line;
                said.push('\n');
            }
            Err(_) => return Err(said),
        }
    }
}
