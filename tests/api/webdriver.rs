//! A small W3C WebDriver client for Debian's `chromedriver` driving headless `chromium`.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub struct Browser {
    driver: Child,
    agent: ureq::Agent,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const SHADOW: &str = "shadow-6066-11e4-a52e-4f735466cecf";

impl Browser {
    /// Headless Chromium emulating a screen of `width` × `height` CSS pixels.
    pub fn start(width: u32, height: u32) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver (Debian package chromium-driver; `.ci/run` installs it)");
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while agent.get(format!("{base}/status")).call().is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless=new".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-dev-shm-usage".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args,
                "mobileEmulation": {"deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": false}}
            }
        }}});
        let mut browser = Browser { driver, agent, session: String::new() };
        browser.session = format!("{base}/session");
        let created = browser.call("POST", "", caps);
        browser.session = format!("{base}/session/{}", created["sessionId"].as_str().expect("session id"));
        browser
    }

    fn call(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.session);
        let response = match method {
            "GET" => self.agent.get(&url).call(),
            "DELETE" => self.agent.delete(&url).call(),
            _ => self.agent.post(&url).send_json(&body),
        };
        let mut response = response.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let value: Value = response.body_mut().read_json().expect("json");
        if !response.status().is_success() {
            panic!("{method} {path}: {}", value["value"]);
        }
        value["value"].clone()
    }

    /// Emulates `prefers-color-scheme: dark` (Chromium's DevTools protocol, through chromedriver).
    pub fn dark(&self) {
        let params = json!({ "features": [{ "name": "prefers-color-scheme", "value": "dark" }] });
        self.call("POST", "/goog/cdp/execute", json!({ "cmd": "Emulation.setEmulatedMedia", "params": params }));
    }

    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", json!({ "url": url }));
    }

    /// Runs `script` (a function body) in the page and returns its result.
    pub fn js(&self, script: &str) -> Value {
        self.call("POST", "/execute/sync", json!({ "script": script, "args": [] }))
    }

    /// Polls `script` until it returns something truthy.
    pub fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.js(script);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The first element of the page that `selector` selects.
    pub fn find(&self, selector: &str) -> String {
        let found = self.call("POST", "/element", json!({"using": "css selector", "value": selector}));
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("{selector}: {found}")).to_string()
    }

    /// An element inside the shadow root of the element `host` selects.
    pub fn in_shadow(&self, host: &str, selector: &str) -> String {
        let host = self.call("POST", "/element", json!({"using": "css selector", "value": host}));
        let host = host[ELEMENT].as_str().unwrap_or_else(|| panic!("host element: {host}"));
        let root = self.call("GET", &format!("/element/{host}/shadow"), Value::Null);
        let root = root[SHADOW].as_str().expect("shadow root");
        let found =
            self.call("POST", &format!("/shadow/{root}/element"), json!({"using": "css selector", "value": selector}));
        found[ELEMENT].as_str().expect("element").to_string()
    }

    pub fn click(&self, element: &str) {
        self.call("POST", &format!("/element/{element}/click"), json!({}));
    }

    /// Types into an element like a user (`\u{E007}` is Enter, `\u{E00C}` Escape).
    pub fn type_into(&self, element: &str, keys: &str) {
        self.call("POST", &format!("/element/{element}/value"), json!({ "text": keys }));
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.agent.delete(&self.session).call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
