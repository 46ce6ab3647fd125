//! Every answered message is on disk: the server is killed without a graceful shutdown and the
//! store reopened on the same data directory.

use nudge::domain::Speaker;
use nudge::ids::ConversationId;
use nudge::protocol::Hello;

use crate::helpers::*;

#[tokio::test]
async fn answered_messages_survive_sigkill() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let intents = std::path::Path::new("intents");
    let mut server = TestServer::spawn_on(&data, intents, &[]);
    let messages = ["hi", "do you ship to Austria?", "how long does delivery take", "Wo ist meine Bestellung?"];
    let mut conversations = Vec::new();
    // Several concurrent clients, so their flushes are grouped.
    let clients = (0..8).map(|_| {
        let url = server.ws_url();
        tokio::spawn(async move {
            let mut socket = nudge::client::connect(&url).await.expect("connect");
            let (visitor, conversation, ..) = hello(&mut socket, Hello::default()).await;
            let mut answered = Vec::new();
            for text in messages {
                answered.push((text, say(&mut socket, text).await));
            }
            (visitor, conversation, answered)
        })
    });
    for client in clients.collect::<Vec<_>>() {
        conversations.push(client.await.expect("client"));
    }
    server.kill();

    let store = crate::backend::open_store(&data).expect("reopen after SIGKILL");
    for (visitor, conversation, answered) in conversations {
        let id = ConversationId::parse(&conversation).expect("id");
        let entries = store.transcript(&id).expect("transcript");
        assert_eq!(entries.len(), 1 + 2 * answered.len(), "greeting plus every exchange");
        for (i, (text, reply)) in answered.iter().enumerate() {
            let (said, answer) = (&entries[1 + 2 * i], &entries[2 + 2 * i]);
            assert_eq!((said.from, said.text.as_str()), (Speaker::Shopper, *text));
            assert_eq!((answer.from, answer.text.as_str()), (Speaker::Bot, reply.text.as_str()));
            assert_eq!(answer.intent.as_deref(), Some(reply.intent.as_str()));
            assert!(answer.variant.is_some(), "the reply variant shown is recorded");
        }
        let visitor = nudge::ids::VisitorId::parse(&visitor).expect("id");
        assert!(store.visitor(&visitor).expect("read").is_some(), "profile stored");
    }
    drop(store);

    // And the server starts again on the same directory, with the visitor known.
    let restarted = TestServer::spawn_on(&data, intents, &[]);
    let mut socket = restarted.connect().await;
    let (_, _, returning, _) = hello(&mut socket, Hello::default()).await;
    assert!(!returning, "a new visitor is still new");
}
