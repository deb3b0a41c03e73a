//! A headless Chromium driven over WebDriver: the distribution's `chromium` and `chromedriver`
//! (`scripts/test` installs them when missing), spoken to with plain HTTP + JSON.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which WebDriver names an element.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A running chromedriver with one browser session.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    /// Where the browser saves downloads.
    pub downloads: PathBuf,
    _profile: tempfile::TempDir,
    _downloads: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium window of `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        for binary in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(binary).exists(),
                "{binary} is missing: the browser tests need Debian's chromium and \
                 chromium-driver (scripts/test installs them)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let profile = tempfile::tempdir().unwrap();
        let downloads = tempfile::tempdir().unwrap();
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            downloads: downloads.path().to_owned(),
            _profile: profile,
            _downloads: downloads,
        };
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage",
                    format!("--user-data-dir={}", browser._profile.path().display()),
                    format!("--window-size={width},{height}"),
                ],
                "prefs": {
                    "download.default_directory": browser.downloads.display().to_string(),
                    "download.prompt_for_download": false,
                },
            },
        }}});
        let deadline = Instant::now() + Duration::from_secs(20);
        let session = loop {
            let request = browser.http.post(browser.url("/session"));
            match with_json(request, &capabilities).send().await {
                Ok(response) => {
                    let body = json_of(response).await;
                    let id = body["value"]["sessionId"].as_str();
                    break id
                        .unwrap_or_else(|| panic!("no session: {body}"))
                        .to_owned();
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("chromedriver does not answer: {err}"),
            }
        };
        browser.base = format!("{}/session/{session}", browser.base);
        browser
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a WebDriver command; panics on a WebDriver error.
    async fn command(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, self.url(path));
        let request = match body {
            Value::Null => request,
            body => with_json(request, &body),
        };
        let response = json_of(request.send().await.unwrap()).await;
        if let Some(error) = response["value"]["error"].as_str() {
            panic!(
                "WebDriver {path}: {error}: {}",
                response["value"]["message"]
            );
        }
        response["value"].clone()
    }

    /// Opens `url`.
    pub async fn open(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", json!({ "url": url }))
            .await;
    }

    /// Resizes the window.
    pub async fn resize(&self, width: u32, height: u32) {
        let rect = json!({ "width": width, "height": height });
        self.command(reqwest::Method::POST, "/window/rect", rect)
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        let body = json!({ "script": script, "args": args });
        self.command(reqwest::Method::POST, "/execute/sync", body)
            .await
    }

    /// Waits until `script` returns a truthy value; panics with `what` after 30 s.
    pub async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.eval(script, json!([])).await;
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(text) => !text.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element `css` selects.
    async fn element(&self, css: &str) -> String {
        let query = json!({ "using": "css selector", "value": css });
        let found = self.command(reqwest::Method::POST, "/element", query).await;
        found[ELEMENT].as_str().unwrap().to_owned()
    }

    /// Clicks the element `css` selects, as a user would.
    pub async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Types `text` into the element `css` selects, as a user would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.command(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        let keys = json!({ "text": text });
        self.command(reqwest::Method::POST, &format!("/element/{id}/value"), keys)
            .await;
    }

    /// Saves a screenshot of the window as `path` (PNG).
    pub async fn screenshot(&self, path: &Path) {
        let png = self
            .command(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// Waits for a finished download (no partial `.crdownload` left) and returns its path.
    pub async fn downloaded(&self) -> PathBuf {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let files: Vec<PathBuf> = std::fs::read_dir(&self.downloads)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect();
            let partial = files
                .iter()
                .any(|path| path.extension().is_some_and(|ext| ext == "crdownload"));
            if let [file] = files.as_slice() {
                if !partial {
                    return file.clone();
                }
            }
            assert!(Instant::now() < deadline, "no download finished: {files:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn with_json(request: reqwest::RequestBuilder, body: &Value) -> reqwest::RequestBuilder {
    request
        .header("content-type", "application/json")
        .body(body.to_string())
}

async fn json_of(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes)
        .unwrap_or_else(|err| panic!("chromedriver: {err}: {}", String::from_utf8_lossy(&bytes)))
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ending the session closes Chromium; then chromedriver can go.
        use std::io::{Read, Write};
        let rest = self.base.trim_start_matches("http://");
        if let Some((addr, path)) = rest.split_once('/') {
            if let Ok(mut stream) = std::net::TcpStream::connect(addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request =
                    format!("DELETE /{path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
                let _ = stream.write_all(request.as_bytes());
                let _ = stream.read_to_end(&mut Vec::new());
            }
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
