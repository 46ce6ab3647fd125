//! A whole marketing flow over the socket: interest → size (one invalid answer) → colour →
//! budget → email → consent, with the stored preferences checked afterwards.

use nudge::ids::VisitorId;
use nudge::protocol::Hello;

use crate::helpers::*;

#[tokio::test]
async fn interest_to_email_with_consent() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_on(&data, std::path::Path::new("intents"), &[]);
    let mut socket = server.connect().await;
    let (visitor, ..) = hello(&mut socket, Hello::default()).await;

    for (say, expect_last) in [
        ("I'm looking for sneakers", "What size do you wear"),
        ("size 99", "I need an EU size between 35 and 48"),
        ("43", "Which colour"),
        ("black please", "budget"),
        ("about 120 euros", "email address"),
        ("ana(at)example", "doesn't look like an email"),
        ("ana@example.com", "offers by email"),
        ("yes", "Here's what I noted: sneakers, size 43, black, up to 120 €."),
    ] {
        let replies = say_all(&mut socket, say).await;
        let last = replies.last().expect("a reply");
        assert!(last.contains(expect_last), "{say:?} -> {replies:?}");
    }
    // A question already answered is not asked again; a new interest starts from what is known.
    let replies = say_all(&mut socket, "now I need boots").await;
    assert!(replies.last().expect("reply").contains("Here's what I noted: boots, size 43"), "{replies:?}");

    drop(socket);
    server.stop();
    let store = crate::backend::open_store(&data).expect("store");
    let profile = store.visitor(&VisitorId::parse(&visitor).expect("id")).expect("read").expect("profile");
    let value = |name: &str| profile.preferences.get(name).map(|p| p.value.as_str());
    assert_eq!(value("product"), Some("boots"));
    assert_eq!(value("size"), Some("43"));
    assert_eq!(value("colour"), Some("black"));
    assert_eq!(value("budget"), Some("120"));
    assert_eq!(value("email"), Some("ana@example.com"));
    assert_eq!(value("marketing_consent"), Some("yes"));
    assert_eq!(profile.preferences["size"].message, "43", "the message a preference came from");
    assert!(profile.consent.as_ref().is_some_and(|c| c.marketing && c.source == "chat"));
    assert!(profile.tags.contains("interest:sneakers") && profile.tags.contains("interest:boots"));
    assert_eq!(profile.score, 10 + 20 + 10 + 20);
}

#[tokio::test]
async fn a_clear_change_of_subject_leaves_the_question() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    say_all(&mut socket, "I'm looking for boots").await;
    let replies = say_all(&mut socket, "do you ship to Austria?").await;
    assert!(replies[0].contains("We ship to"), "{replies:?}");
    // The question was dropped: declining now is just a message, not an answer to it.
    let replies = say_all(&mut socket, "no thanks").await;
    assert!(!replies.iter().any(|r| r.contains("size")), "{replies:?}");
}

#[tokio::test]
async fn declining_skips_to_the_next_question() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    say_all(&mut socket, "Ich suche Laufschuhe in Größe 40").await;
    let replies = say_all(&mut socket, "schwarz").await;
    assert!(replies.last().expect("reply").contains("Budget"), "German flow: {replies:?}");
    let replies = say_all(&mut socket, "lieber nicht").await;
    assert!(replies.join(" ").contains("alle Preisklassen"), "{replies:?}");
    assert!(replies.last().expect("reply").contains("E-Mail-Adresse"), "{replies:?}");
    let replies = say_all(&mut socket, "nein").await;
    // No email, so no consent question: the flow ends with the summary.
    // Choices read in the conversation's language, as the quick replies say them.
    let summary = replies.last().expect("reply");
    assert!(
        summary.starts_with("Notiert: Laufschuhe, Größe 40, schwarz. Ich stelle"),
        "no budget, no `bis €`: {summary}"
    );
}

/// Every frame the server sends for one message (until it goes quiet).
async fn frames_for(socket: &mut nudge::client::Socket, text: &str) -> Vec<nudge::protocol::ServerFrame> {
    send(socket, nudge::protocol::ClientFrame::Say { text: text.into() }).await;
    let mut frames = Vec::new();
    while let Ok(Ok(frame)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), nudge::client::recv(socket)).await
    {
        frames.push(frame);
    }
    frames
}

#[tokio::test]
async fn asking_to_check_out_gets_the_link_once_the_size_is_known() {
    use nudge::protocol::ServerFrame;
    let server = TestServer::start();
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    // The product is known, the size not; the score is far below the qualifying 30.
    say_all(&mut socket, "I'm looking for boots").await;
    let frames = frames_for(&mut socket, "I'll take them").await;
    let texts: Vec<&str> = frames
        .iter()
        .filter_map(|f| if let ServerFrame::Reply(r) = f { Some(r.text.as_str()) } else { None })
        .collect();
    assert_eq!(texts.first(), Some(&"Great choice!"), "{frames:?}");
    assert!(texts.last().is_some_and(|t| t.contains("What size")), "the size is asked first: {frames:?}");
    assert!(!frames.iter().any(|f| matches!(f, ServerFrame::Checkout { .. })), "no link without a size");

    let frames = frames_for(&mut socket, "41").await;
    let link =
        frames.iter().find_map(|f| if let ServerFrame::Checkout { url, .. } = f { Some(url.clone()) } else { None });
    assert!(link.as_ref().is_some_and(|url| url.contains("/r/")), "{frames:?}");
    assert!(
        frames.iter().any(|f| matches!(f, ServerFrame::Reply(r) if r.text == "Here's your checkout link for boots in size 41. The cart is filled in for you.")),
        "{frames:?}"
    );
}

/// What a new shopper tries first, each in a fresh chat: asking whether the shop has a product
/// starts the shoe finder with what the message already says, a value the shop cannot take is
/// answered instead of dropped, and no reply asks for a number it was just given.
#[tokio::test]
async fn first_messages_start_the_flow_with_what_they_say() {
    let server = TestServer::start();
    for (message, expect) in [
        ("do you have boots?", &["What size do you wear"][..]),
        ("size 99", &["between 35 and 48", "Which kind are you after?"][..]),
        ("200 euros", &["Which kind are you after?"][..]),
        ("habt ihr Sneaker in 44?", &["Welche Farbe"][..]),
        ("where is my order 12345?", &["I've noted order 12345"][..]),
        ("I want to cancel order #55123", &["I've noted order 55123"][..]),
    ] {
        let mut socket = server.connect().await;
        hello(&mut socket, Hello::default()).await;
        let replies = say_all(&mut socket, message).await;
        let all = replies.join("\n");
        for part in expect {
            assert!(all.contains(part), "{message:?} -> {replies:?}");
        }
        assert!(!all.contains("give me your order number") && !all.contains("Send me the order number"), "{all}");
    }
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    send(&mut socket, nudge::protocol::ClientFrame::Say { text: "habt ihr Sneaker in 44?".into() }).await;
    let reply = reply(&mut socket).await;
    let noted: Vec<(&str, &str)> = reply.captured.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(noted, [("product", "sneakers"), ("size", "44")]);
}

#[tokio::test]
async fn a_conversation_resumed_mid_flow_comes_back_with_its_history_and_its_open_question() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let mut socket = server.connect().await;
    let Welcomed { visitor, key, .. } = welcome(&mut socket, Hello::default()).await;
    say_all(&mut socket, "I'm looking for sneakers").await;
    say_all(&mut socket, "42").await;
    drop(socket);

    let mut again = server.connect().await;
    send(&mut again, nudge::protocol::ClientFrame::Hello(resume(&visitor, &key))).await;
    let nudge::protocol::ServerFrame::Welcome { history, returning, .. } = recv(&mut again).await else {
        panic!("expected welcome");
    };
    assert!(returning);
    let lines: Vec<(&str, &str)> = history.iter().map(|l| (l.from.as_str(), l.text.as_str())).collect();
    assert_eq!(lines.first().map(|l| l.0), Some("bot"), "the greeting first: {lines:?}");
    assert!(
        lines.contains(&("shopper", "I'm looking for sneakers")) && lines.contains(&("shopper", "42")),
        "{lines:?}"
    );
    assert!(lines.last().is_some_and(|(from, text)| *from == "bot" && text.contains("Which colour")), "{lines:?}");
    // Not the greeting: the open question again, with its quick replies, and the next message
    // is its answer.
    let asked = reply(&mut again).await;
    assert!(asked.text.contains("Which colour") && !asked.choices.is_empty(), "{asked:?}");
    let next = say_all(&mut again, "black").await;
    assert!(next.last().is_some_and(|r| r.contains("budget")), "the colour taken, the budget asked: {next:?}");
}

#[tokio::test]
async fn a_deep_link_opens_the_chat_in_its_flow_and_only_start_intents_can_be_opened() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let mut socket = server.connect().await;
    let start = Some("find_running_shoes".to_string());
    let Welcomed { greeting, .. } = welcome(&mut socket, Hello { start, ..Hello::default() }).await;
    assert_eq!(greeting.text, "Let's find your running shoes.", "no greeting: the flow");
    let asked = reply(&mut socket).await;
    assert!(asked.text.contains("What size"), "the product is known, the size asked: {asked:?}");
    let next = say_all(&mut socket, "43").await;
    assert!(next.last().is_some_and(|r| r.contains("Which colour")), "{next:?}");

    let mut other = server.connect().await;
    let hello_frame = nudge::protocol::ClientFrame::Hello(Hello { start: Some("refund".into()), ..Hello::default() });
    send(&mut other, hello_frame).await;
    assert!(matches!(recv(&mut other).await, nudge::protocol::ServerFrame::Welcome { .. }));
    let message = expect_error(&mut other, nudge::protocol::ErrorCode::BadRequest).await;
    assert!(
        message.contains("`refund` is not an intent a chat can open in") && message.contains("find_running_shoes"),
        "{message}"
    );
    assert_eq!(reply(&mut other).await.intent, "welcome", "the greeting instead");
}
