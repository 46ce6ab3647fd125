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
    if crate::backend::postgres().is_none() {
        eprintln!("two nodes need a shared store: runs in the PostgreSQL pass");
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
        commands.push(Command::Enqueue(OutboxItem::new(visitor, ConversationId::mint(now), job, "en", now, due)));
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
            TestServer::start_on(
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
    if crate::backend::postgres().is_none() {
        eprintln!("needs PostgreSQL: runs in the PostgreSQL pass");
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

/// `tests/postgres start|stop DIR`: a PostgreSQL server of this test's own, to stop under traffic.
fn own_postgres(action: &str, dir: &std::path::Path) -> String {
    let out =
        std::process::Command::new("bash").arg("tests/postgres").arg(action).arg(dir).output().expect("tests/postgres");
    assert!(out.status.success(), "tests/postgres {action}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test]
async fn replies_fail_while_the_database_is_away_and_the_node_recovers_by_itself() {
    if crate::backend::postgres().is_none() {
        eprintln!("about PostgreSQL going away: runs in the PostgreSQL pass");
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let cluster = dir.path().join("pg");
    let url = format!("{}/postgres", own_postgres("start", &cluster));
    let data = dir.path().join("data");
    let server = TestServer::start_on(&data, std::path::Path::new("intents"), &["--store", &url]);
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
