//! A small WebDriver client (the W3C protocol over HTTP, with reqwest) and a headless Chromium
//! session through `chromedriver`: enough for the console's end-to-end tests to load pages,
//! fill and submit forms, click, read text and take screenshots.
//!
//! Debian's `chromium` and `chromium-driver` packages provide the browser and the driver
//! (`.ci/run` installs them); `GRIDSYNC_CHROMEDRIVER` and `GRIDSYNC_CHROMIUM` name others.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use serde_json::{Value, json};

/// The W3C element reference key.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_binary(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.exists())
            .or_else(|| {
                let lib = Path::new("/usr/lib/chromium").join(n);
                lib.exists().then_some(lib)
            })
    })
}

/// A running `chromedriver` and one headless Chromium session.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
    driver: Child,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Result<Self> {
        let driver_bin = find_binary("GRIDSYNC_CHROMEDRIVER", &["chromedriver"]).context(
            "chromedriver not found: install Debian's chromium and chromium-driver \
             (.ci/run does), or set GRIDSYNC_CHROMEDRIVER",
        )?;
        let chromium = find_binary("GRIDSYNC_CHROMIUM", &["chromium", "chromium-browser", "chrome"])
            .context("chromium not found: install Debian's chromium (.ci/run does), or set GRIDSYNC_CHROMIUM")?;
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.local_addr()?.port()
        };
        let driver = Command::new(&driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", driver_bin.display()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        let base = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(20) {
                bail!("chromedriver did not answer on port {port}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--lang=zh-CN", format!("--window-size={width},{height}"),
                ],
            },
        }}});
        let mut browser = Self {
            http,
            base,
            session: String::new(),
            driver,
        };
        let v = browser.call("POST", "/session", caps).await?;
        browser.session = v["sessionId"]
            .as_str()
            .context("no session id from chromedriver")?
            .to_owned();
        Ok(browser)
    }

    async fn call(&self, method: &str, path: &str, body: Value) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body)?),
        };
        let resp = req.send().await?;
        let status = resp.status();
        let v: Value = serde_json::from_slice(&resp.bytes().await?)?;
        if !status.is_success() {
            bail!("webdriver {method} {path}: {status}: {}", v["value"]);
        }
        Ok(v["value"].clone())
    }

    fn s(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    /// Loads `url` (and waits for the page to load).
    pub async fn goto(&self, url: &str) -> Result<()> {
        self.call("POST", &self.s("/url"), json!({ "url": url }))
            .await
            .map(|_| ())
    }

    /// The current URL.
    pub async fn url(&self) -> Result<String> {
        Ok(self
            .call("GET", &self.s("/url"), Value::Null)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The first element matching a CSS selector (waiting up to 10 s for it to appear).
    pub async fn find(&self, css: &str) -> Result<String> {
        let started = Instant::now();
        loop {
            let r = self
                .call(
                    "POST",
                    &self.s("/element"),
                    json!({"using": "css selector", "value": css}),
                )
                .await;
            match r {
                Ok(v) => {
                    return v[ELEMENT]
                        .as_str()
                        .map(str::to_owned)
                        .with_context(|| format!("no element reference in {v}"));
                }
                Err(_) if started.elapsed() < Duration::from_secs(10) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(e.context(format!("finding {css}"))),
            }
        }
    }

    /// How many elements match a CSS selector now.
    pub async fn count(&self, css: &str) -> Result<usize> {
        let v = self
            .call(
                "POST",
                &self.s("/elements"),
                json!({"using": "css selector", "value": css}),
            )
            .await?;
        Ok(v.as_array().map_or(0, Vec::len))
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) -> Result<()> {
        let e = self.find(css).await?;
        self.call("POST", &self.s(&format!("/element/{e}/click")), json!({}))
            .await
            .map(|_| ())
    }

    /// Types `text` into the first element matching `css` (a file input takes a path).
    pub async fn fill(&self, css: &str, text: &str) -> Result<()> {
        let e = self.find(css).await?;
        self.call(
            "POST",
            &self.s(&format!("/element/{e}/value")),
            json!({ "text": text }),
        )
        .await
        .map(|_| ())
    }

    /// Chooses the option with `value` in the first `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) -> Result<()> {
        self.click(&format!("{css} option[value=\"{value}\"]"))
            .await
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> Result<String> {
        let e = self.find(css).await?;
        Ok(self
            .call("GET", &self.s(&format!("/element/{e}/text")), Value::Null)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// The page's HTML.
    pub async fn source(&self) -> Result<String> {
        Ok(self
            .call("GET", &self.s("/source"), Value::Null)
            .await?
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Runs a script in the page and returns its value.
    pub async fn script(&self, script: &str) -> Result<Value> {
        self.call(
            "POST",
            &self.s("/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Saves a PNG screenshot of the window to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let v = self
            .call("GET", &self.s("/screenshot"), Value::Null)
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().context("no screenshot data")?)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, png)?;
        Ok(())
    }

    /// Deletes every cookie of the current site (signs the browser out locally).
    pub async fn clear_cookies(&self) -> Result<()> {
        self.call("DELETE", &self.s("/cookie"), Value::Null)
            .await
            .map(|_| ())
    }
}
