//! Several nodes on one PostgreSQL store, and what a node says when its database is wrong.
//! The multi-node tests run in the suite's PostgreSQL pass (`tests/run`); on the embedded store
//! they say they are skipped.

use std::time::Duration;

use nudge::domain::{Change, Job, OutboxItem, OutboxState};
use nudge::ids::{ConversationId, VisitorId};
use nudge::store::{Command, Location, Store};

use crate::helpers::*;
use crate::receivers::{Receiver, free_port, rcpt};

/// The metric `name` of the server at `url`.
async fn metric(url: &str, name: &str) -> u64 {
    let (_, _, text) = get(format!("{url}/metrics")).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

#[tokio::test]
async fn two_nodes_racing_for_the_same_outbox_run_each_job_once() {
    if !crate::backend::on_postgres("two nodes need a shared store") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = crate::backend::store_url(&dir.path().join("shared")).expect("a database");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    const JOBS: usize = 1000;
    // Due in a few seconds, so both nodes are up and polling when they come due.
    let store = Store::open_at(&Location::Postgres(url.clone())).expect("store");
    let (now, due) = (nudge::now_ms(), nudge::now_ms() + 4000);
    let mut commands = Vec::new();
    for i in 0..JOBS {
        let visitor = VisitorId::mint(now);
        let email = format!("racer{i}@example.com");
        commands.push(Command::Visitor { visitor, change: Change::Create { at: now, locale: "en".into() } });
        let preference =
            Change::Preference { name: "email".into(), value: email.clone(), at: now, message: email.clone() };
        commands.push(Command::Visitor { visitor, change: preference });
        let job = Job::ConfirmEmail { email };
        commands.push(Command::Enqueue(Box::new(OutboxItem::new(
            visitor,
            ConversationId::mint(now),
            job,
            "en",
            now,
            due,
        ))));
    }
    store.commit_blocking(commands).expect("1000 jobs");
    drop(store);

    let config = format!("smtp_url = \"{}\"\n", smtp.smtp_url());
    let nodes: Vec<TestServer> = ["a", "b"]
        .iter()
        .map(|node| {
            let node_dir = dir.path().join(node);
            std::fs::create_dir_all(&node_dir).expect("mkdir");
            std::fs::write(node_dir.join("nudge.toml"), &config).expect("config");
            let config = node_dir.join("nudge.toml");
            let config = config.to_str().expect("utf-8");
            TestServer::spawn_on(
                &node_dir.join("data"),
                std::path::Path::new("intents"),
                &["--config", config, "--store", &url],
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while smtp.messages().len() < JOBS && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Time for a duplicate to arrive, if a job ran twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut ran = Vec::new();
    for node in &nodes {
        ran.push(metric(&node.url(), "nudge_outbox_done_total").await);
    }

    eprintln!("jobs run per node: {ran:?}");
    let messages = smtp.messages();
    let mut recipients: Vec<&str> = messages.iter().map(rcpt).collect();
    recipients.sort();
    let sent = recipients.len();
    recipients.dedup();
    assert_eq!((sent, recipients.len()), (JOBS, JOBS), "every job ran, and none twice");
    assert_eq!(ran.iter().sum::<u64>(), JOBS as u64, "ran per node: {ran:?}");
    assert!(ran.iter().all(|n| *n > 0), "both nodes took jobs: {ran:?}");
    let store = Store::open_at(&Location::Postgres(url)).expect("store");
    let items: Vec<OutboxItem> = store.follow_ups().collect::<Result<_, _>>().expect("outbox");
    assert!(items.iter().all(|i| matches!(i.state, OutboxState::Sent { .. })), "all recorded as sent");
}

#[test]
fn a_wrong_or_unreachable_database_is_one_clear_line() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let refused = format!("postgres://nudge:hunter2@127.0.0.1:{}/nudge", free_port());
    let cases = [
        (
            vec!["serve", "--data", data, "--store", "mysql://shop@db/nudge"],
            "expected a postgres://USER@HOST:PORT/DB URL",
        ),
        (vec!["serve", "--data", data, "--store", &refused], "Connection refused"),
        (vec!["export", "leads", "--data", data, "--store", &refused], "Connection refused"),
        (vec!["migrate", "--data", data, "--store", "postgres://[::1"], "invalid"),
    ];
    for (args, expected) in cases {
        let (code, _, err) = run_nudge(&args);
        assert_eq!(code, 1, "{args:?}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {err}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(expected), "{args:?}: {err}");
        assert!(!err.contains("hunter2"), "the password is never printed: {err}");
    }
}

#[test]
fn a_database_migrated_by_a_newer_nudge_is_refused() {
    if !crate::backend::on_postgres("needs PostgreSQL") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let url = crate::backend::store_url(&data).expect("a database");
    let (code, out, err) = run_nudge(&["migrate", "--store", &url]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("version {}", nudge::store::SCHEMA_VERSION)), "{out}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.execute("INSERT INTO nudge_migrations (version) VALUES (99)", &[]).await.expect("a newer schema");
    });
    let data = data.to_str().expect("utf-8");
    let (code, _, err) = run_nudge(&["serve", "--listen", "127.0.0.1:0", "--data", data, "--store", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("schema is version 99, newer than this nudge knows"), "{err}");
}

#[test]
fn a_database_that_would_acknowledge_before_it_is_durable_is_refused() {
    if !crate::backend::on_postgres("needs PostgreSQL") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let url = crate::backend::store_url(&data).expect("a database");
    let database = url.rsplit('/').next().expect("database name").to_string();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(connection);
        let off = format!("ALTER DATABASE {database} SET synchronous_commit = off");
        client.batch_execute(&off).await.expect("synchronous_commit off");
    });
    // `migrate` opens the store as `serve` does, and ends either way.
    let (code, _, err) = run_nudge(&["migrate", "--data", data.to_str().expect("utf-8"), "--store", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("synchronous_commit = off"), "{err}");
}

/// `tests/postgres start|stop DIR`: a PostgreSQL server of this test's own, to stop under traffic.
fn own_postgres(action: &str, dir: &std::path::Path) -> String {
    let out =
        std::process::Command::new("bash").arg("tests/postgres").arg(action).arg(dir).output().expect("tests/postgres");
    assert!(out.status.success(), "tests/postgres {action}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn replies_fail_while_the_database_is_away_and_the_node_recovers_by_itself() {
    if !crate::backend::on_postgres("about PostgreSQL going away") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let cluster = dir.path().join("pg");
    let url = format!("{}/postgres", own_postgres("start", &cluster));
    let data = dir.path().join("data");
    let server = TestServer::spawn_on(&data, std::path::Path::new("intents"), &["--store", &url]);
    let mut socket = server.connect().await;
    let (_, conversation, _, _) = hello(&mut socket, nudge::protocol::Hello::default()).await;
    let mut answered = vec!["do you ship to Austria?".to_string()];
    say(&mut socket, &answered[0]).await;

    own_postgres("stop", &cluster);
    send(&mut socket, nudge::protocol::ClientFrame::Say { text: "what does shipping cost?".into() }).await;
    let message = expect_error(&mut socket, nudge::protocol::ErrorCode::Internal).await;
    assert!(message.contains("try again"), "{message}");

    own_postgres("start", &cluster);
    let mut recovered = false;
    for attempt in 0..20 {
        let text = format!("and to Germany? ({attempt})");
        send(&mut socket, nudge::protocol::ClientFrame::Say { text: text.clone() }).await;
        match recv(&mut socket).await {
            nudge::protocol::ServerFrame::Reply(_) => {
                answered.push(text);
                recovered = true;
                break;
            }
            nudge::protocol::ServerFrame::Error { code: nudge::protocol::ErrorCode::Internal, .. } => {
                tokio::time::sleep(Duration::from_millis(500)).await
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(recovered, "the node answers again once the database is back, without a restart");
    drop(socket);
    let store = Store::open_at(&Location::Postgres(url)).expect("store");
    let transcript = store.transcript(&ConversationId::parse(&conversation).expect("id")).expect("transcript");
    for text in &answered {
        let stored = transcript.iter().filter(|e| e.text == *text).count();
        assert_eq!(stored, 1, "{text:?} answered, so stored once: {transcript:?}");
    }
    own_postgres("stop", &cluster);
}

/// A shopper chatting through the proxy, who reconnects (to whichever node the proxy picks)
/// when the socket breaks and goes on in the same conversation.
struct Shopper {
    email: String,
    visitor: String,
    key: Option<String>,
    conversation: String,
    /// Every message that got its reply.
    answered: Vec<String>,
    reconnects: u32,
}

impl Shopper {
    async fn start(url: &str, email: &str) -> (Shopper, nudge::client::Socket) {
        let mut socket = nudge::client::connect(url).await.expect("connect through the proxy");
        let hello = nudge::protocol::Hello { campaign: Some("spring".into()), ..Default::default() };
        let welcomed = welcome(&mut socket, hello).await;
        let shopper = Shopper {
            email: email.into(),
            visitor: welcomed.visitor,
            key: welcomed.key,
            conversation: welcomed.conversation,
            answered: Vec::new(),
            reconnects: 0,
        };
        (shopper, socket)
    }

    /// Sends `text` until it is answered, reconnecting through the proxy after a broken socket;
    /// each attempt carries its number, so an attempt stored without its reply reaching us is
    /// told apart from the one answered.
    async fn say(&mut self, url: &str, socket: &mut nudge::client::Socket, text: &str) {
        for attempt in 0..40 {
            let text = format!("{text} [{attempt}]");
            if self.answered_now(socket, &text).await {
                self.answered.push(text);
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            let Ok(mut fresh) = nudge::client::connect(url).await else { continue };
            let welcomed = welcome(&mut fresh, resume(&self.visitor, &self.key)).await;
            assert_eq!(welcomed.conversation, self.conversation, "the same conversation on another node");
            self.key = welcomed.key.or(self.key.take());
            self.reconnects += 1;
            *socket = fresh;
        }
        panic!("{text:?} was never answered");
    }

    async fn answered_now(&self, socket: &mut nudge::client::Socket, text: &str) -> bool {
        let say = nudge::protocol::ClientFrame::Say { text: text.into() };
        if nudge::client::send(socket, &say).await.is_err() {
            return false;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), nudge::client::recv(socket)).await {
                Ok(Ok(nudge::protocol::ServerFrame::Reply(reply))) if reply.how.is_some() => return true,
                Ok(Ok(_)) => continue,
                _ => return false,
            }
        }
    }
}

#[tokio::test]
async fn three_nodes_behind_haproxy_keep_every_chat_and_follow_up_when_one_is_killed() {
    if !crate::backend::on_postgres("several nodes need a shared store") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = crate::backend::store_url(&dir.path().join("shared")).expect("a database");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    let intents = copy_starter_pack(dir.path(), |text| text.replace("after = \"1h\" }", "after = \"3s\" }"));
    let config = format!("smtp_url = \"{}\"\noutbox_lease_secs = 2\ndouble_opt_in = false\n", smtp.smtp_url());
    let mut nodes: Vec<TestServer> = ["a", "b", "c"]
        .iter()
        .map(|node| TestServer::spawn_configured_with(&dir.path().join(node), &intents, &config, &["--store", &url]))
        .collect();
    let port = |node: &TestServer| node.addr.rsplit(':').next().expect("port").to_string();
    let proxy_port = free_port();
    let haproxy_cfg = dir.path().join("haproxy.cfg");
    let template = std::fs::read_to_string("tests/fixtures/haproxy.cfg").expect("the proxy config");
    let filled = template
        .replace("{PROXY}", &proxy_port.to_string())
        .replace("{A}", &port(&nodes[0]))
        .replace("{B}", &port(&nodes[1]))
        .replace("{C}", &port(&nodes[2]));
    std::fs::write(&haproxy_cfg, filled).expect("write the proxy config");
    let _haproxy = Proxy(
        std::process::Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&haproxy_cfg)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("haproxy (tests/run installs it)"),
    );
    let proxy = format!("ws://127.0.0.1:{proxy_port}/ws");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while nudge::client::connect(&proxy).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "haproxy never listened");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Nine shoppers, three per node: each leaves an address (a follow-up is scheduled), then
    // chats on while node b is killed.
    const SHOPPERS: usize = 9;
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(SHOPPERS + 1));
    let shoppers: Vec<_> = (0..SHOPPERS)
        .map(|i| {
            let (proxy, ready) = (proxy.clone(), ready.clone());
            tokio::spawn(async move {
                let (mut shopper, mut socket) = Shopper::start(&proxy, &format!("node{i}@example.com")).await;
                for text in ["I'm looking for sneakers", "42", "black", "120"] {
                    shopper.say(&proxy, &mut socket, text).await;
                }
                let email = shopper.email.clone();
                shopper.say(&proxy, &mut socket, &email).await;
                shopper.say(&proxy, &mut socket, "yes").await;
                ready.wait().await;
                for n in 0..12 {
                    shopper.say(&proxy, &mut socket, &format!("do you ship to Austria? #{n}")).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                shopper
            })
        })
        .collect();
    ready.wait().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    nodes[1].kill();
    let mut done = Vec::new();
    for shopper in shoppers {
        done.push(shopper.await.expect("shopper"));
    }
    let reconnected = done.iter().filter(|s| s.reconnects > 0).count();
    assert!(reconnected > 0, "some shoppers were on the killed node and reconnected");
    eprintln!("{reconnected} of {SHOPPERS} shoppers reconnected to another node");

    let store = Store::open_at(&Location::Postgres(url.clone())).expect("store");
    for shopper in &done {
        let conversation = ConversationId::parse(&shopper.conversation).expect("id");
        let transcript = store.transcript(&conversation).expect("transcript");
        for text in &shopper.answered {
            let stored = transcript.iter().filter(|e| e.text == *text).count();
            assert_eq!(stored, 1, "{text:?} of {} answered, so stored once", shopper.email);
        }
    }

    // The follow-ups scheduled before the kill: each delivered, none twice but the one a
    // node may have had in flight when it died (sent again under the same Message-ID).
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    let delivered = |email: &str| smtp.messages().iter().filter(|m| rcpt(m) == email).count();
    while done.iter().any(|s| delivered(&s.email) == 0) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let messages = smtp.messages();
    let mut resent = 0;
    for shopper in &done {
        let mine: Vec<_> = messages.iter().filter(|m| rcpt(m) == shopper.email).collect();
        assert!(!mine.is_empty(), "the follow-up to {} was delivered", shopper.email);
        let mut ids: Vec<&str> = mine.iter().map(|m| crate::receivers::header(m, "message-id")).collect();
        ids.dedup();
        assert_eq!(ids.len(), 1, "one follow-up, however often sent: {ids:?}");
        resent += mine.len() - 1;
    }
    assert!(resent <= 1, "at most the job in flight on the killed node is sent again: {resent}");
    eprintln!("follow-ups sent again after the kill: {resent}");

    // A conversion posted to one node shows in the funnel read from another.
    let order = serde_json::json!({
        "order_id": "N-1", "visitor": done[0].visitor, "value": 50.0, "currency": "EUR"
    });
    let key = nudge::secrets::Secrets::load(Some(&store), dir.path()).expect("secrets").0.conversions_api_key;
    let (status, body) =
        post(format!("{}/api/conversions", nodes[0].url()), Some(key), "application/json", order.to_string()).await;
    assert_eq!(status, 201, "{body}");
    // The first node generated the admin password (and wrote it to its own data directory only);
    // it opens the admin on every node.
    let first: Vec<String> = ["a", "b", "c"]
        .iter()
        .filter_map(|node| std::fs::read_to_string(dir.path().join(node).join("data/admin-password.txt")).ok())
        .collect();
    assert_eq!(first.len(), 1, "one node generated the shared secrets");
    let (status, cookie) = login(&nodes[2], first[0].trim(), None).await;
    assert_eq!(status, 303, "logged in on node c with the password node a generated");
    let (_, _, funnel) = get_with(format!("{}/admin/api/funnel", nodes[2].url()), &cookie).await;
    let funnel: serde_json::Value = serde_json::from_str(&funnel).expect("json");
    let spring =
        funnel["campaigns"].as_array().expect("campaigns").iter().find(|c| c["campaign"] == "spring").expect("spring");
    assert_eq!((spring["visitors"].as_u64(), spring["converted"].as_u64()), (Some(SHOPPERS as u64), Some(1)));
    assert_eq!(spring["revenue"].as_f64(), Some(50.0));
}

/// haproxy, stopped however the test ends.
struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn work_that_one_node_at_a_time_may_do_is_skipped_while_another_does_it() {
    if !crate::backend::on_postgres("about several nodes") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = crate::backend::store_url(dir.path()).expect("a database");
    let (one, other) = (Store::open_at(&Location::Postgres(url.clone())), Store::open_at(&Location::Postgres(url)));
    let (one, other) = (one.expect("store"), other.expect("store"));
    let inside = one.exclusive("retention", || other.exclusive("retention", || ()).expect("try"));
    assert_eq!(inside.expect("lock"), Some(None), "the second node skips while the first sweeps");
    assert_eq!(other.exclusive("retention", || 7).expect("lock"), Some(7), "and sweeps once it is done");
    assert_eq!(other.exclusive("something else", || 8).expect("lock"), Some(8));
}

#[tokio::test]
async fn a_person_answers_on_one_node_a_shopper_whose_chat_is_on_another() {
    if !crate::backend::on_postgres("about several nodes") {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let url = crate::backend::store_url(&dir.path().join("shared")).expect("a database");
    let (set, err) = set_password_with(&dir.path().join("a").join("data"), PASSWORD, &["--store", &url]);
    assert!(set, "the password, set once for every node: {err}");
    let intents = std::path::Path::new("intents");
    let a = TestServer::spawn_configured_with(&dir.path().join("a"), intents, "", &["--store", &url]);
    let b = TestServer::spawn_configured_with(&dir.path().join("b"), intents, "", &["--store", &url]);

    let mut socket = a.connect().await;
    let (visitor, ..) = hello(&mut socket, nudge::protocol::Hello::default()).await;
    assert_eq!(say(&mut socket, "I want to talk to a human").await.intent, "human");
    let cookie = session(&login(&b, PASSWORD, None).await.1);
    // Node b learns that the chat is open on node a.
    let handoffs = format!("{}/admin/handoffs", b.url());
    let mut listed = String::new();
    for _ in 0..50 {
        listed = get_with(handoffs.clone(), &cookie).await.2;
        if listed.contains("<td>yes</td>") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listed.contains(&format!("/admin/leads/{visitor}")) && listed.contains("<td>yes</td>"), "{listed}");

    let reply_url = format!("{}/admin/leads/{visitor}/reply", b.url());
    let (status, body) = post_with(reply_url.clone(), &cookie, "text=Hi%2C+Maria+here+on+node+b.").await;
    assert_eq!(status, 303, "{body}");
    let answer = reply(&mut socket).await;
    assert_eq!((answer.intent.as_str(), answer.text.as_str()), ("agent", "Hi, Maria here on node b."));
    let (_, _, lead) = get_with(format!("{}/admin/leads/{visitor}", b.url()), &cookie).await;
    assert!(lead.contains("<td>agent</td><td>Hi, Maria here on node b.</td>"), "recorded by node a: {lead}");
    // Handing the chat back on node b reaches node a too: the bot answers again.
    let (status, _) = post_with(format!("{}/admin/leads/{visitor}/hand-back", b.url()), &cookie, "").await;
    assert_eq!(status, 303);
    assert_eq!(recv(&mut socket).await, nudge::protocol::ServerFrame::Handoff { agent: None });
    assert_eq!(say(&mut socket, "thanks!").await.intent, "thanks");

    drop(socket);
    let status = post_until(&reply_url, &cookie, "text=still+there%3F", 409).await;
    assert_eq!(status, 409, "the shopper left node a: nothing is sent");
}

#[test]
fn secrets_given_by_the_environment_win_over_the_stored_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let link = |env: &[(&str, &str)]| {
        let args =
            crate::backend::args(&["link", "--email", "ana@example.com", "--data", data.to_str().expect("utf-8")]);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("nudge link");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, stored, err) = link(&[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(stored.contains("/c/k1."), "the generated key signs: {stored}");
    let key = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY";
    let (code, given, err) = link(&[("NUDGE_SIGNING_KEYS", &format!("old=a2V5,env1={key}"))]);
    assert_eq!(code, Some(0), "{err}");
    assert!(given.contains("/c/env1."), "the last key listed signs: {given}");
    let (code, _, err) = link(&[("NUDGE_SIGNING_KEYS", "env1")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NUDGE_SIGNING_KEYS") && err.contains("expected kid=base64url-key"), "{err}");
    let (code, _, err) = link(&[("NUDGE_ADMIN_PASSWORD_HASH", "hunter2")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NUDGE_ADMIN_PASSWORD_HASH") && err.contains("not an Argon2 PHC string"), "{err}");
}
