//! The chat.v1 conversation over a real socket.

use nudge::protocol::{ClientFrame, Hello};

use crate::helpers::*;

#[tokio::test]
async fn english_and_german_messages_reach_their_intents() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    let (visitor, _, returning, greeting) = hello(&mut socket, Hello::default()).await;
    assert_eq!(visitor.len(), 32);
    assert!(!returning);
    assert_eq!(greeting.intent, "welcome");
    for (text, intent) in [
        ("hi", "greeting"),
        ("do you ship to Austria?", "shipping_options"),
        ("how long does delivery take?", "delivery_time"),
        ("where is my order?", "order_status"),
        ("what is your return policy?", "return_policy"),
        ("Hallo", "greeting"),
        ("Wie lange dauert die Lieferung?", "delivery_time"),
        ("Versendet ihr nach Österreich?", "shipping_options"),
        ("what's the capital of Peru", "fallback"),
    ] {
        assert_eq!(say(&mut socket, text).await.intent, intent, "{text}");
    }
}

#[tokio::test]
async fn replies_follow_the_shoppers_language() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    let pack = nudge::intents::IntentSet::load(std::path::Path::new("intents")).expect("starter pack");
    let written_in = |intent: &str, locale: &str, text: &str| {
        pack.get(intent).expect(intent).reply(locale).variants.iter().any(|v| v.render(|_| None) == text)
    };
    let (.., greeting) = hello(&mut socket, Hello { locale: Some("de-AT".into()), ..Hello::default() }).await;
    assert!(written_in("welcome", "de", &greeting.text), "greets in German: {}", greeting.text);
    let reply = say(&mut socket, "how long does delivery take?").await;
    assert!(written_in("delivery_time", "en", &reply.text), "switches to English: {}", reply.text);
    let reply = say(&mut socket, "Wie lange dauert die Lieferung?").await;
    assert!(written_in("delivery_time", "de", &reply.text), "back to German: {}", reply.text);
}

#[tokio::test]
async fn a_returning_visitor_keeps_profile_and_conversation() {
    let server = TestServer::start();
    let mut first = server.connect().await;
    let (visitor, conversation, ..) = hello(&mut first, Hello::default()).await;
    let greeting_variant = say(&mut first, "hello").await.text;
    drop(first);

    let mut again = server.connect().await;
    let (same, resumed, returning, _) =
        hello(&mut again, Hello { visitor: Some(visitor.clone()), ..Hello::default() }).await;
    assert_eq!((same.as_str(), resumed.as_str(), returning), (visitor.as_str(), conversation.as_str(), true));
    assert_eq!(say(&mut again, "hello").await.text, greeting_variant, "same visitor, same variant");

    // An id the server never minted starts a new visitor instead of failing.
    let mut stranger = server.connect().await;
    let (new_id, _, returning, _) =
        hello(&mut stranger, Hello { visitor: Some("f".repeat(32)), ..Hello::default() }).await;
    assert!(!returning);
    assert_ne!(new_id, "f".repeat(32));
}

#[tokio::test]
async fn quick_reply_choices_route_their_value() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    let (.., greeting) = hello(&mut socket, Hello::default()).await;
    let shipping = greeting.choices.iter().find(|c| c.label == "Shipping").expect("a Shipping choice");
    send(&mut socket, ClientFrame::Choose { value: shipping.value.clone() }).await;
    let reply = reply(&mut socket).await;
    assert_eq!(reply.intent, "shipping_options");
    let next = reply.choices.first().expect("a follow-up choice").value.clone();
    send(&mut socket, ClientFrame::Choose { value: next }).await;
    assert_eq!(crate::helpers::reply(&mut socket).await.intent, "delivery_time");
}
