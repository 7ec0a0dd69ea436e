//! Headless Chromium driven through WebDriver (Debian's `chromium` and
//! `chromium-driver`; `.ci/run` installs them). `Chrome::start` returns `None`
//! (the test prints a notice and skips) when they are missing, except under
//! `CI=true`, where a missing browser fails the test.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Desktop and phone widths used for screenshots.
pub const DESKTOP: (u32, u32) = (1366, 900);
pub const PHONE: (u32, u32) = (390, 844);

pub struct Chrome {
    pub client: Client,
    driver: Child,
    pub downloads: tempfile::TempDir,
    _profile: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Chrome {
    pub async fn start() -> Option<Chrome> {
        let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
            .into_iter()
            .filter(|p| !Path::new(p).exists())
            .collect();
        if !missing.is_empty() {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true and {missing:?} not installed (apt-get install chromium chromium-driver)"
                );
            }
            eprintln!(
                "notice: skipping the browser test: {missing:?} not installed \
                 (apt-get install chromium chromium-driver)"
            );
            return None;
        }
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let caps = serde_json::json!({
            "goog:chromeOptions": {
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
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--lang=en-GB",
                    format!("--window-size={},{}", DESKTOP.0, DESKTOP.1),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "prefs": {
                    "download.default_directory": downloads.path().to_str().unwrap(),
                    "download.prompt_for_download": false,
                    "safebrowsing.enabled": false,
                },
            }
        });
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            let attempt = ClientBuilder::rustls()
                .unwrap()
                .capabilities(caps.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start a WebDriver session: {e}"),
            }
        };
        Some(Chrome {
            client,
            driver,
            downloads,
            _profile: profile,
        })
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    pub async fn css(&self, selector: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(selector))
            .await
            .unwrap_or_else(|e| panic!("no element {selector}: {e}"))
    }

    pub async fn exists(&self, selector: &str) -> bool {
        self.client.find(Locator::Css(selector)).await.is_ok()
    }

    pub async fn fill(&self, selector: &str, text: &str) {
        let e = self.css(selector).await;
        e.clear().await.unwrap();
        e.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, selector: &str) {
        self.css(selector).await.click().await.unwrap();
    }

    pub async fn text(&self, selector: &str) -> String {
        self.css(selector).await.text().await.unwrap()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    pub async fn login(&self, base: &str, username: &str, password: &str) {
        self.goto(&format!("{base}/console/login")).await;
        self.fill("#username", username).await;
        self.fill("#password", password).await;
        self.click("form button[type=submit]").await;
        self.wait_until_not_path("/console/login").await;
    }

    pub async fn logout(&self) {
        self.click(".topbar form button").await;
        self.wait_for_path("/console/login").await;
    }

    pub async fn wait_for_path(&self, path: &str) {
        let start = Instant::now();
        while self.path().await != path {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "still at {} instead of {path}",
                self.path().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_until_not_path(&self, path: &str) {
        let start = Instant::now();
        while self.path().await == path {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "still at {path}: {}",
                self.client.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A screenshot of the whole page at `width`, written to `dir/name.png`.
    pub async fn screenshot(&self, dir: &Path, name: &str, width: u32) -> PathBuf {
        self.screenshot_sized(dir, name, width, None).await
    }

    /// A screenshot at `width`: the whole page, or its first `height` pixels.
    pub async fn screenshot_sized(
        &self,
        dir: &Path,
        name: &str,
        width: u32,
        fixed: Option<u32>,
    ) -> PathBuf {
        self.client.set_window_size(width, 900).await.unwrap();
        // The window's own frame is not part of the page: add it back.
        let height = self
            .client
            .execute(
                "return Math.ceil(document.documentElement.scrollHeight \
                 + (window.outerHeight - window.innerHeight));",
                vec![],
            )
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(900) as u32;
        let frame = self
            .client
            .execute("return window.outerHeight - window.innerHeight;", vec![])
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0) as u32;
        let height = fixed.map_or(height, |h| h + frame);
        self.client
            .set_window_size(width, height.clamp(600, 6000))
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        self.client
            .set_window_size(DESKTOP.0, DESKTOP.1)
            .await
            .unwrap();
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Waits for a finished download and returns its path.
    pub async fn downloaded(&self, suffix: &str) -> PathBuf {
        let start = Instant::now();
        loop {
            let done: Vec<PathBuf> = std::fs::read_dir(self.downloads.path())
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(suffix))
                .collect();
            if let Some(p) = done.into_iter().next() {
                return p;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "no download ending in {suffix} in {}",
                self.downloads.path().display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots go: `$STEWARD_SCREENSHOTS` (relative to the workspace root),
/// else a folder under the target directory.
pub fn screenshot_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var("STEWARD_SCREENSHOTS") {
        Ok(d) if !d.is_empty() => root.join(d),
        _ => root.join("target/screenshots"),
    }
}
