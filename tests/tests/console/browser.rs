//! A real browser for the console's tests: Debian's Chromium driven
//! through chromedriver (WebDriver over plain HTTP on localhost), headless,
//! with a fresh profile and none of Chromium's background connections
//! (the test machines' network refuses them).
//!
//! Each test starts its own chromedriver on a free port and waits for it
//! to say it is ready, with a deadline. Where no browser is installed the
//! tests skip with a notice; CI installs one (`.ci/run`), which makes them
//! mandatory there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// How long chromedriver may take to come up, and a page to load.
const STARTUP: Duration = Duration::from_secs(30);
pub const PAGE: Duration = Duration::from_secs(15);

/// A browser session and the chromedriver serving it.
pub struct Browser {
    pub client: Client,
    driver: tokio::process::Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A browser, or none (with a notice) where Chromium or chromedriver
    /// is not installed.
    pub async fn start() -> anyhow::Result<Option<Self>> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            eprintln!(
                "skipping the browser test: {CHROMIUM} and {CHROMEDRIVER} are not installed \
                 (apt-get install chromium chromium-driver; CI does)"
            );
            return Ok(None);
        }
        let profile = tempfile::tempdir()?;
        let (driver, url) = start_driver().await?;
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--disable-dev-shm-usage",
                    "--window-size=1280,960",
                    "--lang=zh-CN",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&url)
            .await
            .context("starting a Chromium session through chromedriver")?;
        Ok(Some(Self {
            client,
            driver,
            _profile: profile,
        }))
    }

    /// Ends the session (chromedriver closes the browser) and chromedriver.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        let client = self.client.clone();
        let closed = client.close().await;
        self.stop_driver();
        let _ = self.driver.wait().await;
        closed.context("closing the browser")
    }

    fn stop_driver(&mut self) {
        // The browser is a child of chromedriver, in its process group:
        // both end, also when a test stopped before `finish`.
        #[cfg(unix)]
        if let Some(pid) = self
            .driver
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.driver.start_kill();
    }

    /// Goes to `url` and waits for `element` to be there.
    pub async fn open(
        &self,
        url: &str,
        element: &str,
    ) -> anyhow::Result<fantoccini::elements::Element> {
        self.client.goto(url).await?;
        self.wait_for(element).await
    }

    /// Waits (up to `PAGE`) for an element to be there.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(PAGE)
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css:?} on the page"))
    }

    /// Waits (up to `PAGE`) until the page's address satisfies `done`.
    pub async fn wait_for_url(&self, done: impl Fn(&url::Url) -> bool) -> anyhow::Result<url::Url> {
        let deadline = tokio::time::Instant::now() + PAGE;
        loop {
            let url = self.client.current_url().await?;
            if done(&url) {
                return Ok(url);
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "the page stayed at {url}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The text of the first element `css` finds.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.client.find(Locator::Css(css)).await?.text().await?)
    }

    /// Saves a screenshot of the page as `<name>.png`: into `docs/console/`
    /// when `UPDATE_CONSOLE_SCREENSHOTS` is set (how the documentation's
    /// pictures are made), else beside the test's build, so that every
    /// run takes them without touching the repository. The whole page is
    /// taken (the window grown to its height, up to 2,400 pixels, then put
    /// back).
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let height = self
            .client
            .execute("return document.documentElement.scrollHeight", vec![])
            .await?
            .as_u64()
            .unwrap_or(0);
        let (width, before) = self.client.get_window_size().await?;
        let grow = height + 140 > before;
        if grow {
            self.client
                .set_window_size(width as u32, (height + 140).min(2_400) as u32)
                .await?;
        }
        let png = self.client.screenshot().await;
        if grow {
            self.client
                .set_window_size(width as u32, before as u32)
                .await?;
        }
        let png = png?;
        anyhow::ensure!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let dir = if std::env::var_os("UPDATE_CONSOLE_SCREENSHOTS").is_some() {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console")
        } else {
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots")
        };
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

/// Starts chromedriver on a free port and waits until it is ready: its
/// process and its address. A port taken between choosing and binding
/// makes chromedriver exit; another is tried.
async fn start_driver() -> anyhow::Result<(tokio::process::Child, String)> {
    let http = reqwest::Client::new();
    let mut last = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = tokio::process::Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        #[cfg(unix)]
        command.process_group(0);
        let mut driver = command.spawn().context("starting chromedriver")?;
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            if let Some(status) = driver.try_wait()? {
                last = format!("chromedriver exited ({status}) on port {port}");
                break;
            }
            let ready = http
                .get(format!("{url}/status"))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()
                .map(|r| r.json::<serde_json::Value>());
            if let Some(body) = ready
                && body.await.ok().is_some_and(|b| b["value"]["ready"] == true)
            {
                return Ok((driver, url));
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = driver.start_kill();
                anyhow::bail!("chromedriver was not ready within {STARTUP:?}");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    anyhow::bail!("chromedriver did not start: {last}")
}
