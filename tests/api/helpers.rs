//! `TestServer`: Nudge on port 0 with its own data directory, in this process or as the binary.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::Duration;

use nudge::app::App;
use nudge::clock::Clock;

use nudge::client::{self, Socket};
use nudge::protocol::{ClientFrame, Hello, Reply, ServerFrame};

/// Limits no test reaches unless it is about them: `nudge loadgen` in a debug build sent 2,000
/// messages a second on each of 5 connections on a fast machine (1,000 was the limit before).
const GENEROUS_LIMITS: &str = "messages_per_second = 100000.0\nmessage_burst = 100000.0\n\
    messages_per_second_per_ip = 100000.0\nmax_connections_per_ip = 10000\nconnections_per_minute_per_ip = 1000000.0\n";
/// Tests run at every hour of the day: quiet hours are off unless a test is about them.
const NO_QUIET_HOURS: &str = "quiet_hours = \"\"\n";

/// A server for one test: most run in this process (`start*`: quick to start, and the test can
/// hold its clock); `spawn*` runs the `nudge` binary, for what only a process shows (SIGKILL,
/// SIGTERM, its output, its file mode mask, `/metrics`, whose counters a process shares).
pub struct TestServer {
    runs: Runs,
    pub addr: String,
    pub data: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

enum Runs {
    Process(Child),
    /// `server::start_with` on a thread of its own; the sender stops it.
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
        /// Weak: a stopped server must let go of its store, or a restart cannot open it.
        app: Weak<App>,
        clock: Clock,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    InProcess,
    Process,
}

/// `nudge serve`'s flags, parsed as the binary parses them.
#[derive(clap::Parser)]
struct Serve {
    #[command(flatten)]
    args: nudge::config::Args,
}

impl TestServer {
    /// A server on the starter intents and a fresh store.
    pub fn start() -> TestServer {
        TestServer::fresh(Kind::InProcess)
    }

    /// `start`, as a process of its own.
    pub fn spawn() -> TestServer {
        TestServer::fresh(Kind::Process)
    }

    fn fresh(kind: Kind) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = TestServer::launch(kind, &dir.path().join("data"), Path::new("intents"), &[]);
        server._dir = Some(dir);
        server
    }

    /// A server on the given data and intents directories, with extra `serve` flags (port 0
    /// unless they name a `--listen` address).
    pub fn start_on(data: &Path, intents: &Path, extra: &[&str]) -> TestServer {
        TestServer::launch(Kind::InProcess, data, intents, extra)
    }

    /// `start_on`, as a process of its own.
    pub fn spawn_on(data: &Path, intents: &Path, extra: &[&str]) -> TestServer {
        TestServer::launch(Kind::Process, data, intents, extra)
    }

    fn launch(kind: Kind, data: &Path, intents: &Path, extra: &[&str]) -> TestServer {
        let listen = if extra.contains(&"--listen") { &[][..] } else { &["--listen", "127.0.0.1:0"][..] };
        // Tests talk fast from one address; the rate limits get their own test.
        let config = data.with_extension("toml");
        if !extra.contains(&"--config") {
            std::fs::create_dir_all(data.parent().expect("data has a parent")).expect("mkdir");
            std::fs::write(&config, format!("{GENEROUS_LIMITS}{NO_QUIET_HOURS}")).expect("write test config");
        }
        let config_args = if extra.contains(&"--config") { vec![] } else { vec!["--config".into(), config] };
        let mut args: Vec<std::ffi::OsString> = vec!["serve".into()];
        args.extend(listen.iter().map(Into::into));
        args.extend(config_args.into_iter().map(Into::into));
        args.extend(["--data".into(), data.into(), "--intents".into(), intents.into()]);
        args.extend(extra.iter().map(Into::into));
        let args = crate::backend::args(&args);
        let (runs, addr) = match kind {
            Kind::Process => TestServer::process(&args),
            Kind::InProcess => TestServer::in_process(&args),
        };
        TestServer { runs, addr, data: data.to_path_buf(), _dir: None }
    }

    fn process(args: &[std::ffi::OsString]) -> (Runs, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nudge serve");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let addr = loop {
            let line = lines.next().expect("nudge serve exited before listening").expect("read stdout");
            if let Some(addr) = line.strip_prefix("nudge listening on http://") {
                break addr.to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (Runs::Process(child), addr)
    }

    /// `nudge serve` without the process: the same flags and configuration, the server on a
    /// thread with its own actix system, on a clock the test can move ahead.
    fn in_process(args: &[std::ffi::OsString]) -> (Runs, String) {
        let config = <Serve as clap::Parser>::try_parse_from(args).expect("serve flags").args.load().expect("config");
        let clock = Clock::movable();
        let (ready, started) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_clock = clock.clone();
        let thread = std::thread::spawn(move || {
            let app = actix_web::rt::System::new().block_on(async move {
                let running = match nudge::server::start_with(config, server_clock) {
                    Ok(running) => running,
                    Err(e) => {
                        let _ = ready.send(Err(e.to_string()));
                        return None;
                    }
                };
                let app = running.app.clone();
                let _ = ready.send(Ok((running.addr.to_string(), Arc::downgrade(&app))));
                if let Err(e) = running.run_until(async move { drop(stopped.await) }).await {
                    eprintln!("the test server's store did not flush: {e}");
                }
                Some(app)
            });
            // The store is closed (its lock released) when the last handle of the app is dropped;
            // actix's worker threads let go of theirs a moment after the server's future ends.
            // Dropped here, so that the store is closed once this thread has ended.
            let Some(mut app) = app else { return };
            for _ in 0..400 {
                match Arc::try_unwrap(app) {
                    Ok(app) => return drop(app),
                    Err(held) => app = held,
                }
                std::thread::sleep(Duration::from_millis(25));
            }
            panic!("a stopped test server still holds its store ({} handles)", Arc::strong_count(&app));
        });
        let (addr, app) = started.recv().expect("the server thread").unwrap_or_else(|e| panic!("nudge serve: {e}"));
        (Runs::InProcess { stop: Some(stop), thread: Some(thread), app, clock }, addr)
    }

    /// A server on `<dir>/data` whose configuration is the generous test limits plus `config`.
    pub fn start_configured(dir: &Path, intents: &Path, config: &str) -> TestServer {
        TestServer::configured(Kind::InProcess, dir, intents, config, &[])
    }

    /// `start_configured`, as a process of its own.
    pub fn spawn_configured(dir: &Path, intents: &Path, config: &str) -> TestServer {
        TestServer::configured(Kind::Process, dir, intents, config, &[])
    }

    /// `spawn_configured` with extra `serve` flags.
    pub fn spawn_configured_with(dir: &Path, intents: &Path, config: &str, extra: &[&str]) -> TestServer {
        TestServer::configured(Kind::Process, dir, intents, config, extra)
    }

    fn configured(kind: Kind, dir: &Path, intents: &Path, config: &str, extra: &[&str]) -> TestServer {
        let path = dir.join("nudge.toml");
        let quiet = if config.contains("quiet_hours") { "" } else { NO_QUIET_HOURS };
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(&path, format!("{GENEROUS_LIMITS}{quiet}{config}")).expect("write config");
        let mut args = vec!["--config", path.to_str().expect("utf-8")];
        args.extend(extra);
        TestServer::launch(kind, &dir.join("data"), intents, &args)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub async fn connect(&self) -> Socket {
        client::connect(&self.ws_url()).await.expect("connect")
    }

    /// The in-process server's clock: the system's, moved ahead as far as the test moved it.
    pub fn clock(&self) -> &Clock {
        match &self.runs {
            Runs::InProcess { clock, .. } => clock,
            Runs::Process(_) => panic!("a spawned server runs on the system clock: start it in process"),
        }
    }

    /// Moves the clock on by `by`, then returns once the outbox worker has looked at what is due
    /// then and has nothing more to do: what should have been sent is sent, and what is still
    /// waiting is not due. No sleeping in the hope that the worker has looked.
    pub async fn advance(&self, by: Duration) {
        self.clock().advance(by);
        self.outbox_settled().await;
    }

    /// Returns once the outbox worker has run every job due now (in process only).
    pub async fn outbox_settled(&self) {
        let Runs::InProcess { app, .. } = &self.runs else { panic!("in process only") };
        let app = app.upgrade().expect("the server runs");
        let settled = tokio::task::spawn_blocking(move || {
            let ticket = app.outbox_rounds.ask();
            app.store.outbox_signal().raise();
            app.outbox_rounds.wait(ticket, Duration::from_secs(30))
        });
        assert!(settled.await.expect("join"), "the outbox worker did not finish a round within 30 s");
    }

    /// Stops the server and lets go of its store (sled allows one opener), so the test can read
    /// the store or start a server on it again: a graceful stop in process, SIGKILL otherwise.
    pub fn stop(&mut self) {
        match &mut self.runs {
            Runs::Process(child) => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Runs::InProcess { stop, thread, .. } => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
                if let Some(thread) = thread.take() {
                    thread.join().expect("the server thread let go of its store");
                }
            }
        }
    }

    /// SIGKILL: no graceful shutdown, no final flush.
    pub fn kill(&mut self) {
        let Runs::Process(child) = &mut self.runs else { panic!("only a spawned server can be killed") };
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM, then waits for the process to exit and returns its exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let Runs::Process(child) = &mut self.runs else { panic!("only a spawned server gets SIGTERM") };
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        child.wait().expect("wait").code()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that failed mid-way must not hang on a shutdown or panic again while unwinding.
        if std::thread::panicking() {
            if let Runs::InProcess { stop, .. } = &mut self.runs
                && let Some(stop) = stop.take()
            {
                let _ = stop.send(());
            }
            if let Runs::Process(child) = &mut self.runs {
                let _ = child.kill();
            }
            return;
        }
        self.stop();
    }
}

/// Copies the starter pack (intents, emails and journeys) into `<dir>/intents`, passing each file's text
/// through `edit`; returns the copy's path.
pub fn copy_starter_pack(dir: &Path, edit: impl Fn(&str) -> String) -> PathBuf {
    let to = dir.join("intents");
    for sub in ["", nudge::intents::EMAILS_DIR, nudge::intents::JOURNEYS_DIR] {
        std::fs::create_dir_all(to.join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(Path::new("intents").join(sub)).expect("starter pack") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|x| x == "toml") {
                let text = edit(&std::fs::read_to_string(&path).expect("read"));
                std::fs::write(to.join(sub).join(path.file_name().expect("name")), text).expect("write");
            }
        }
    }
    to
}

/// Runs the `nudge` command line: (exit code, stdout, stderr).
pub fn run_nudge(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nudge")).args(crate::backend::args(args)).output().expect("run nudge");
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

pub async fn recv(socket: &mut Socket) -> ServerFrame {
    tokio::time::timeout(std::time::Duration::from_secs(10), client::recv(socket))
        .await
        .expect("a frame within 10 s")
        .expect("a frame")
}

pub async fn send(socket: &mut Socket, frame: ClientFrame) {
    client::send(socket, &frame).await.expect("send");
}

/// Says hello and returns (visitor, conversation, returning, greeting).
pub async fn hello(socket: &mut Socket, hello: Hello) -> (String, String, bool, Reply) {
    let w = welcome(socket, hello).await;
    (w.visitor, w.conversation, w.returning, w.greeting)
}

/// What `welcome` and the greeting say.
pub struct Welcomed {
    pub visitor: String,
    pub conversation: String,
    pub returning: bool,
    /// The resume key the widget keeps (a new visitor, an email link), if a new one was given.
    pub key: Option<String>,
    pub greeting: Reply,
}

pub async fn welcome(socket: &mut Socket, hello: Hello) -> Welcomed {
    send(socket, ClientFrame::Hello(hello)).await;
    let ServerFrame::Welcome { visitor, conversation, returning, key, .. } = recv(socket).await else {
        panic!("expected welcome");
    };
    Welcomed { visitor, conversation, returning, key, greeting: reply(socket).await }
}

/// The `hello` of a widget that kept the visitor id and the resume key it was given.
pub fn resume(visitor: &str, key: &Option<String>) -> Hello {
    Hello { visitor: Some(visitor.to_string()), key: key.clone(), ..Hello::default() }
}

pub async fn reply(socket: &mut Socket) -> Reply {
    match recv(socket).await {
        ServerFrame::Reply(reply) => reply,
        other => panic!("expected a reply, got {other:?}"),
    }
}

pub async fn say(socket: &mut Socket, text: &str) -> Reply {
    send(socket, ClientFrame::Say { text: text.into() }).await;
    reply(socket).await
}

pub async fn expect_error(socket: &mut Socket, code: nudge::protocol::ErrorCode) -> String {
    match recv(socket).await {
        ServerFrame::Error { code: got, message } if got == code => message,
        other => panic!("expected a {code:?} error, got {other:?}"),
    }
}

/// Sends a message and returns the text of every reply of the answer (a step may reply, then
/// ask the next question), skipping `tags` and `checkout` frames.
pub async fn say_all(socket: &mut nudge::client::Socket, text: &str) -> Vec<String> {
    send(socket, ClientFrame::Say { text: text.into() }).await;
    let mut replies = Vec::new();
    loop {
        // The answer may take a while on a busy machine; once it came, a short quiet ends it.
        let wait = if replies.is_empty() { 10_000 } else { 300 };
        let frame = tokio::time::timeout(std::time::Duration::from_millis(wait), nudge::client::recv(socket)).await;
        match frame {
            Ok(Ok(ServerFrame::Reply(reply))) => replies.push(reply.text),
            Ok(Ok(ServerFrame::Tags { .. } | ServerFrame::Checkout { .. })) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) if !replies.is_empty() => return replies,
            Err(_) => panic!("no reply to {text:?}"),
        }
    }
}

/// An HTTP client that does not follow redirects and does not treat 4xx as errors.
pub fn http() -> ureq::Agent {
    ureq::Agent::config_builder().max_redirects(0).http_status_as_error(false).build().into()
}

pub async fn get(url: String) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut response = http().get(&url).call().expect("GET");
        let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (response.status().as_u16(), location, response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .expect("join")
}

pub async fn post(
    url: String,
    key: Option<String>,
    content_type: &'static str,
    body: String,
) -> (u16, serde_json::Value) {
    tokio::task::spawn_blocking(move || {
        let mut request = http().post(&url).header("content-type", content_type);
        if let Some(key) = key {
            request = request.header("authorization", &format!("Bearer {key}"));
        }
        let mut response = request.send(body.as_bytes()).expect("POST");
        let body = response.body_mut().read_to_string().unwrap_or_default();
        (response.status().as_u16(), serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)))
    })
    .await
    .expect("join")
}

/// The key the shop sends with `POST /api/conversions`.
pub fn api_key(data: &Path) -> String {
    crate::backend::secrets(data).conversions_api_key
}

/// The admin password the tests set.
pub const PASSWORD: &str = "correct horse battery";

/// `nudge admin-password`, fed through standard input like a person would.
pub fn set_password(data: &Path, password: &str) -> (bool, String) {
    set_password_with(data, password, &[])
}

/// `set_password` with extra flags (`--store URL` of a database several nodes share).
pub fn set_password_with(data: &Path, password: &str, extra: &[&str]) -> (bool, String) {
    let mut args = vec![std::ffi::OsStr::new("admin-password"), "--data".as_ref(), data.as_os_str()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(crate::backend::args(&args))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nudge admin-password");
    let mut stdin = child.stdin.take().expect("stdin");
    std::io::Write::write_all(&mut stdin, format!("{password}\n").as_bytes()).expect("write password");
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).to_string())
}

/// A person answering a shopper who has just left: posts `form` until the answer is `status`
/// (the server learns of the closed socket a moment later), for at most 5 s; the last status.
pub async fn post_until(url: &str, cookie: &str, form: &str, status: u16) -> u16 {
    let mut got = 0;
    for _ in 0..100 {
        got = post_with(url.to_string(), cookie, form).await.0;
        if got == status {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    got
}

/// Logs in; returns (status, `Set-Cookie`).
/// Logs in as a browser on `origin` would (`None`: the server's own pages).
pub async fn login(server: &TestServer, password: &str, origin: Option<&str>) -> (u16, String) {
    let (url, body, origin) = (
        format!("{}/admin/login", server.url()),
        format!("password={}", password.replace(' ', "+")),
        origin.map_or_else(|| server.url(), str::to_string),
    );
    tokio::task::spawn_blocking(move || {
        let request =
            http().post(&url).header("content-type", "application/x-www-form-urlencoded").header("origin", &origin);
        let response = request.send(body.as_bytes()).expect("POST /admin/login");
        let cookie = response.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        (response.status().as_u16(), cookie)
    })
    .await
    .expect("join")
}

/// Logs in as a person who gave `name`: the `Cookie` header their browser then sends.
pub async fn login_as(server: &TestServer, password: &str, name: &str) -> String {
    let (url, origin) = (format!("{}/admin/login", server.url()), server.url());
    let body = format!("password={}&name={}", password.replace(' ', "+"), name.replace(' ', "+"));
    tokio::task::spawn_blocking(move || {
        let request =
            http().post(&url).header("content-type", "application/x-www-form-urlencoded").header("origin", &origin);
        let response = request.send(body.as_bytes()).expect("POST /admin/login");
        assert_eq!(response.status().as_u16(), 303, "logged in");
        let cookies: Vec<String> =
            response.headers().get_all("set-cookie").iter().filter_map(|v| Some(session(v.to_str().ok()?))).collect();
        cookies.join("; ")
    })
    .await
    .expect("join")
}

/// GET with a cookie: (status, headers as `name: value` lines, body).
pub async fn get_with(url: String, cookie: &str) -> (u16, String, String) {
    let cookie = cookie.to_string();
    tokio::task::spawn_blocking(move || {
        let mut response = http().get(&url).header("cookie", &cookie).call().expect("GET");
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| format!("{}: {}", k, v.to_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("\n");
        (response.status().as_u16(), headers, response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .expect("join")
}

pub fn session(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap_or("").to_string()
}

/// POSTs a form with a session cookie: (status, body).
/// POSTs a form as a browser on the server's own admin page would (with its `Origin`).
pub async fn post_with(url: String, cookie: &str, form: &str) -> (u16, String) {
    let (cookie, form) = (cookie.to_string(), form.to_string());
    let origin = url::Url::parse(&url).expect("url").origin().ascii_serialization();
    tokio::task::spawn_blocking(move || {
        let request = http()
            .post(&url)
            .header("cookie", &cookie)
            .header("origin", &origin)
            .header("content-type", "application/x-www-form-urlencoded");
        let mut response = request.send(form.as_bytes()).expect("POST");
        (response.status().as_u16(), response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .expect("join")
}

/// The seed of a randomized test: `NUDGE_TEST_SEED` when set (to replay a failure), else the
/// clock; printed either way, so a failing run says how to replay it.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("NUDGE_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(nudge::now_ms);
    eprintln!("{test}: seed {seed} (NUDGE_TEST_SEED={seed} replays it)");
    seed
}
