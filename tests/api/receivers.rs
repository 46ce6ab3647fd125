//! `Receiver`: a real SMTP server (aiosmtpd, `tests/smtp_server.py`) or a real HTTP server for the
//! tag webhook (`tests/webhook_server.py`) on a port of our choosing, so a test can stop it and
//! start it again on the same port (an outage). Both store what they receive as N.json files.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Receiver {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Receiver {
    /// An SMTP server on `port`, storing messages in `dir` (kept across restarts).
    pub fn smtp(port: u16, dir: &Path) -> Receiver {
        Receiver::start("tests/smtp_server.py", port, dir, &[])
    }

    /// A webhook receiver on `port` that answers 503 to the first `fail` requests.
    pub fn webhook(port: u16, dir: &Path, fail: u32) -> Receiver {
        Receiver::start("tests/webhook_server.py", port, dir, &["--fail", &fail.to_string()])
    }

    fn start(script: &str, port: u16, dir: &Path, extra: &[&str]) -> Receiver {
        // Debian's Python, where `python3-aiosmtpd` is installed (tests/run installs it).
        let python = if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" };
        let mut child = Command::new(python)
            .args([script, "--port", &port.to_string()])
            .args(extra)
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {script}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let line = lines.next().unwrap_or_else(|| panic!("{script} exited before listening")).expect("read");
        assert!(line.starts_with("listening on"), "{line}");
        Receiver { child, port, dir: dir.to_path_buf() }
    }

    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn webhook_url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/nudge", self.port)
    }

    /// Everything received so far, parsed, in arrival order.
    pub fn messages(&self) -> Vec<Value> {
        messages(&self.dir)
    }

    /// Waits until at least `n` messages have arrived (up to `within`) and returns them all.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = Instant::now() + within;
        loop {
            let messages = self.messages();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn messages(dir: &Path) -> Vec<Value> {
    let mut numbered: Vec<(u64, Value)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let n = path.file_name()?.to_str()?.strip_suffix(".json")?.parse().ok()?;
            Some((n, serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    numbered.into_iter().map(|(_, v)| v).collect()
}

/// The recipient and a header of a parsed message.
pub fn rcpt(message: &Value) -> &str {
    message["rcpt_tos"][0].as_str().unwrap_or("")
}

pub fn header<'a>(message: &'a Value, name: &str) -> &'a str {
    message["headers"][name].as_str().unwrap_or("")
}
