//! Erasure and retention: a shopper who asks to be forgotten in the chat, a marketer who erases a
//! lead in the admin, `nudge erase` on the command line, and the retention sweep.

use std::path::Path;

use nudge::domain::{Change, Conversation, Entry, Profile, Source, Speaker};
use nudge::ids::{ConversationId, TurnId, VisitorId};
use nudge::protocol::{ClientFrame, Hello, ServerFrame};
use nudge::store::Command;

use crate::helpers::*;

/// A shopper from an email link who tells us size, colour, budget and consent (a follow-up is
/// scheduled); returns (visitor, conversation).
/// The token of a fresh email link for ana@example.com, as `/c/` hands it to `/chat`.
async fn email_link_token(server: &TestServer) -> String {
    let data = server.data.to_str().expect("utf-8").to_string();
    let url = server.url();
    let args = ["link", "--email", "ana@example.com", "--name", "Ana", "--data", &data, "--public-url", &url];
    let (code, link, err) = run_nudge(&args);
    assert_eq!(code, 0, "{err}");
    let (_, location, _) = get(link.trim().to_string()).await;
    location.strip_prefix("/chat?nudge=").expect("token").to_string()
}

/// A shopper who came by an email link and ran the shoe flow: (visitor, conversation, resume key).
async fn known_shopper(server: &TestServer, socket: &mut nudge::client::Socket) -> (String, String, Option<String>) {
    let token = email_link_token(server).await;
    let Welcomed { visitor, conversation, key, .. } =
        welcome(socket, Hello { token: Some(token), ..Hello::default() }).await;
    assert!(key.is_some(), "an email link gives the widget a resume key");
    for text in ["I'm looking for sneakers", "42", "black", "120", "yes"] {
        say_all(socket, text).await;
    }
    (visitor, conversation, key)
}

#[tokio::test]
async fn a_shopper_who_asks_to_be_forgotten_is_erased_everywhere() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let mut socket = server.connect().await;
    let (visitor, conversation, key) = known_shopper(&server, &mut socket).await;

    send(&mut socket, ClientFrame::Say { text: "Please delete all my personal data".into() }).await;
    let reply = reply(&mut socket).await;
    assert_eq!(reply.intent, "erase_data");
    let ServerFrame::Welcome { visitor: fresh, returning, .. } = recv(&mut socket).await else {
        panic!("a new welcome after the erasure");
    };
    assert!(fresh != visitor && !returning, "the chat goes on as a new visitor");
    assert_eq!(say(&mut socket, "do you ship to Austria?").await.intent, "shipping_options");
    // The old id and key from the widget's storage find nothing any more.
    let mut again = server.connect().await;
    let (other, _, returning, _) = hello(&mut again, resume(&visitor, &key)).await;
    assert!(other != visitor && !returning);
    drop((socket, again));
    server.stop();

    let store = crate::backend::open_store(&server.data).expect("store");
    let old = VisitorId::parse(&visitor).expect("id");
    assert_eq!(store.visitor(&old).expect("read"), None);
    assert!(store.is_erased(&old).expect("read"));
    assert_eq!(store.visitor_by_email("ana@example.com").expect("read"), None, "the email link is gone");
    assert!(store.conversations_of(&old).expect("read").is_empty());
    assert!(store.transcript(&ConversationId::parse(&conversation).expect("id")).expect("read").is_empty());
    let follow_ups: Vec<_> = store.follow_ups().collect::<Result<_, _>>().expect("outbox");
    assert!(follow_ups.iter().all(|f| f.visitor != old), "the planned email is gone");
    let everything: String = store.visitors().map(|p| format!("{:?}", p.expect("profile"))).collect();
    assert!(!everything.contains("ana@example.com") && !everything.contains("Ana"), "{everything}");
    // What the shopper said afterwards belongs to the new visitor.
    let fresh = VisitorId::parse(&fresh).expect("id");
    let transcript = store.transcript(&store.latest_conversation(&fresh).expect("read").expect("conversation").id);
    assert!(transcript.expect("read").iter().any(|e| e.text == "do you ship to Austria?"));
    drop(store);

    // Gone from the disk too, not only from the trees: no file in the data directory holds the
    // address or a word the shopper said before asking to be forgotten (sled keeps removed
    // values in its log until the store is compacted, which opening it after an erasure does).
    let mut files = vec![server.data.clone()];
    let mut searched = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).expect("dir").map(|e| e.expect("entry").path()));
            continue;
        }
        let bytes = std::fs::read(&path).expect("file");
        searched += bytes.len();
        for secret in ["ana@example.com", "looking for sneakers", "delete all my personal data"] {
            let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
            assert!(!found, "{secret:?} still on disk in {}", path.display());
        }
    }
    assert!(searched > 0);
    let again = crate::backend::open_store(&server.data).expect("a compacted store opens");
    assert!(again.is_erased(&old).expect("read") && again.visitor(&fresh).expect("read").is_some());
}

#[tokio::test]
async fn marketers_erase_from_the_admin_and_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    assert!(set_password(&data, PASSWORD).0);
    let mut server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let mut socket = server.connect().await;
    let (visitor, ..) = known_shopper(&server, &mut socket).await;
    let cookie = session(&login(&server, PASSWORD, None).await.1);
    let erase = format!("{}/admin/leads/{visitor}/erase", server.url());
    let (status, _) = post(erase.clone(), None, "application/x-www-form-urlencoded", String::new()).await;
    assert_eq!(status, 303, "without a session: to the login");
    // One click erases nothing: the lead's address (or id) must be typed.
    for confirm in ["", "confirm=", "confirm=someone%40example.com"] {
        let (status, body) = post_with(erase.clone(), &cookie, confirm).await;
        assert!(status == 400 && body.contains("Nothing was erased"), "{confirm:?}: {status} {body}");
    }
    assert_eq!(get_with(format!("{}/admin/leads/{visitor}", server.url()), &cookie).await.0, 200, "still there");
    let (status, body) = post_with(erase, &cookie, "confirm=+Ana%40Example.com+").await;
    assert!(status == 200 && body.contains("is erased"), "a notice says what happened: {status} {body}");
    let cookie = session(&login(&server, PASSWORD, None).await.1);
    assert_eq!(get_with(format!("{}/admin/leads/{visitor}", server.url()), &cookie).await.0, 404);
    // The chat still open writes nothing back.
    say_all(&mut socket, "where is my order?").await;
    drop(socket);

    // Another shopper, erased from the command line while the server is stopped.
    let mut socket = server.connect().await;
    let (second, ..) = known_shopper(&server, &mut socket).await;
    drop(socket);
    server.stop();
    let data_arg = data.to_str().expect("utf-8");
    let (code, out, err) = run_nudge(&["erase", "--email", "ana@example.com", "--data", data_arg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("erased visitor {second}"));
    let (code, _, err) = run_nudge(&["erase", "--email", "ana@example.com", "--data", data_arg]);
    assert_ne!(code, 0);
    assert!(err.contains("no such visitor"), "{err}");
    let store = crate::backend::open_store(&data).expect("store");
    for id in [visitor, second] {
        let id = VisitorId::parse(&id).expect("id");
        assert_eq!(store.visitor(&id).expect("read"), None);
        assert!(store.conversations_of(&id).expect("read").is_empty());
    }
}

#[test]
fn the_retention_sweep_expires_old_conversations_and_forgotten_visitors() {
    let dir = tempfile::tempdir().expect("dir");
    let store = crate::backend::open_store(dir.path()).expect("store");
    let day = 24 * 60 * 60 * 1000;
    let now = nudge::now_ms();
    let mut writes = Vec::new();
    // One visitor seen today with one old and one new conversation; one not seen for a year.
    let mut add = |last_seen: u64, conversations: &[u64]| {
        let profile = Profile::new(VisitorId::mint(last_seen), last_seen, "en");
        writes.push(Command::Visitor {
            visitor: profile.id,
            change: Change::Create { at: last_seen, locale: "en".into() },
        });
        let ids: Vec<ConversationId> = conversations.iter().map(|at| ConversationId::mint(*at)).collect();
        for (id, at) in ids.iter().zip(conversations) {
            let conversation = Conversation {
                id: *id,
                visitor: profile.id,
                started_at: *at,
                last_at: *at,
                locale: "en".into(),
                source: Source::default(),
                pending: None,
            };
            let entry = Entry {
                at: *at,
                from: Speaker::Shopper,
                text: "hi".into(),
                intent: None,
                how: None,
                confidence: None,
                variant: None,
            };
            writes.push(Command::OpenConversation(Box::new(conversation)));
            writes.push(Command::AppendTurn { conversation: *id, turn: TurnId::mint(*at), entries: vec![entry] });
        }
        (profile.id, ids)
    };
    let (active, talks) = add(now, &[now - 400 * day, now - day]);
    let (gone, _) = add(now - 400 * day, &[now - 400 * day]);
    store.commit_blocking(writes).expect("commit");

    assert_eq!(nudge::retention::sweep(&store, now - 365 * day, now).expect("sweep"), (1, 1));
    assert!(store.visitor(&gone).expect("read").is_none());
    assert!(store.visitor(&active).expect("read").is_some());
    assert!(store.transcript(&talks[0]).expect("read").is_empty(), "the old conversation is gone");
    assert_eq!(store.transcript(&talks[1]).expect("read").len(), 1, "the recent one stays");
    assert_eq!(store.conversations_of(&active).expect("read").len(), 1);
    assert_eq!(nudge::retention::sweep(&store, now - 365 * day, now).expect("sweep"), (0, 0), "nothing twice");
}

#[tokio::test]
async fn the_data_directory_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    // A directory made by an earlier version, open to everyone.
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut server = TestServer::spawn_on(&data, Path::new("intents"), &[]);
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    say(&mut socket, "do you ship to Austria?").await;
    drop(socket);
    server.kill();
    let mut checked = 0;
    let mut todo = vec![data.clone()];
    while let Some(path) = todo.pop() {
        let meta = std::fs::metadata(&path).expect("metadata");
        let mode = meta.permissions().mode() & 0o777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{}", path.display());
            todo.extend(std::fs::read_dir(&path).expect("read dir").map(|e| e.expect("entry").path()));
        } else {
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", path.display());
        }
        checked += 1;
    }
    // On PostgreSQL the store and the secrets are in the database: the directory and the first
    // admin password are left.
    let least = if crate::backend::postgres().is_some() { 2 } else { 6 };
    assert!(checked >= least, "the store, the mail directory and the secrets were checked: {checked}");
}

#[tokio::test]
async fn an_erasure_removes_the_mail_files_written_to_the_shopper() {
    let dir = tempfile::tempdir().expect("dir");
    let intents = copy_starter_pack(dir.path(), |text| text.replace("after = \"1h\" }", "after = \"1s\" }"));
    let server = TestServer::start_configured(dir.path(), &intents, "");
    let mut socket = server.connect().await;
    known_shopper(&server, &mut socket).await;
    let mail = server.data.join("mail");
    let mentions = |dir: &Path| -> usize {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .filter(|text| text.contains("ana@example.com"))
                    .count()
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while mentions(&mail) == 0 {
        assert!(std::time::Instant::now() < deadline, "the follow-up was never written");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    send(&mut socket, ClientFrame::Say { text: "Please delete all my personal data".into() }).await;
    assert_eq!(reply(&mut socket).await.intent, "erase_data");
    assert!(matches!(recv(&mut socket).await, ServerFrame::Welcome { .. }));
    assert_eq!(mentions(&mail), 0, "no mail file names the address any more");
}

#[tokio::test]
async fn a_visitor_id_alone_resumes_nothing_and_no_chat_is_told_the_address() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    let Welcomed { visitor, key, .. } = welcome(&mut socket, Hello::default()).await;
    for text in ["I'm looking for sneakers", "42", "black", "120", "ana@example.com", "yes"] {
        say_all(&mut socket, text).await;
    }
    drop(socket);
    // Whoever learnt the visitor id (the admin, an export) gets a new, empty chat.
    let mut other = server.connect().await;
    let stranger = welcome(&mut other, resume(&visitor, &None)).await;
    assert!(stranger.visitor != visitor && !stranger.returning);
    assert_eq!(say(&mut other, "do you have a discount code?").await.intent, "discount");
    // The shopper's own widget, with its key, is known, and still not told the address it typed.
    let mut own = server.connect().await;
    assert!(welcome(&mut own, resume(&visitor, &key)).await.returning);
    let answer = say(&mut own, "do you have a discount code?").await;
    assert_eq!(answer.intent, "discount_known");
    assert!(!answer.text.contains("ana@example.com"), "{}", answer.text);
}

#[tokio::test]
async fn an_email_link_proves_the_address_once_then_the_widget_key_resumes() {
    let server = TestServer::start();
    let token = email_link_token(&server).await;
    // Opened twice before anyone chats (a mail scanner, a second tab): both are the shopper.
    let mut scanner = server.connect().await;
    let first = welcome(&mut scanner, Hello { token: Some(token.clone()), ..Hello::default() }).await;
    drop(scanner);
    let mut socket = server.connect().await;
    let Welcomed { visitor, key, .. } =
        welcome(&mut socket, Hello { token: Some(token.clone()), ..Hello::default() }).await;
    assert_eq!(first.visitor, visitor);
    assert_eq!(say(&mut socket, "hello").await.intent, "greeting");
    drop(socket);

    // Chatted through once, the link is spent: a forwarded email opens an anonymous chat.
    let mut forwarded = server.connect().await;
    send(&mut forwarded, ClientFrame::Hello(Hello { token: Some(token.clone()), ..Hello::default() })).await;
    let ServerFrame::Error { code, message } = recv(&mut forwarded).await else { panic!("an error first") };
    assert_eq!(code, nudge::protocol::ErrorCode::Unauthorized);
    assert!(message.contains("already used"), "{message}");
    let ServerFrame::Welcome { visitor: stranger, returning, .. } = recv(&mut forwarded).await else {
        panic!("then a welcome")
    };
    assert!(stranger != visitor && !returning);
    assert_eq!(reply(&mut forwarded).await.intent, "welcome", "not greeted by the shopper's name");

    // The shopper's own widget resumes through its key.
    let mut own = server.connect().await;
    let back = welcome(&mut own, resume(&visitor, &key)).await;
    assert!(back.returning && back.visitor == visitor);
}
