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
        ("hey, how have you been?", "greeting"),
        ("Wie geht's?", "greeting"),
        ("did my stuff get shipped?", "order_status"),
    ] {
        assert_eq!(say(&mut socket, text).await.intent, intent, "{text}");
    }
}

/// Messages about other worlds that a shop pattern or a shop example matches word for word
/// ("how long does it take ...", "order a ...", "a refund for ..."): the scope gate sends each
/// to the fallback, in both languages. Written for this test, not taken from the eval set;
/// the whole written set and its rate are in `tests/fixtures/off_topic.csv` and the README.
#[tokio::test]
async fn messages_about_other_worlds_fall_back() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    for text in [
        "how long does it take grass seed to grow",
        "how long does it take to become a doctor",
        "how long do tomatoes take to ripen",
        "how long does it take for paint to dry",
        "order a large pepperoni pizza",
        "can you order me a taxi to the airport",
        "how do I get a refund for my concert tickets",
        "I need a refund for my plane ticket",
        "how do I complain to my landlord about mold",
        "I want to complain about my internet provider",
        "can I return to work after surgery",
        "what payment plan is best for my student loans",
        "what's the wifi password at the library",
        "how do I track my sleep",
        "what's the capital of Peru",
        "Wie lange dauert ein Medizinstudium",
        "Wie lange dauert es bis Rasensamen keimt",
        "Ich will mich über meinen Internetanbieter beschweren",
        "Wie funktioniert eine Solaranlage",
        "Wird es am Wochenende schneien",
    ] {
        assert_eq!(say(&mut socket, text).await.intent, "fallback", "{text}");
    }
    // ... while the shop's own questions, with names, places, people and typed-fast
    // spellings in them, still reach their intents.
    for (text, intent) in [
        ("do you deliver to Toronto?", "shipping_options"),
        ("I need the invoice for the order Anna Freeman placed", "invoice"),
        ("Where is the parcel I sent to my sister in Munich?", "order_status"),
        ("I dont know how to reset my password", "account"),
        ("goodnight", "goodbye"),
        ("Habt ihr Versandkosten nach Österreich?", "shipping_options"),
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
    let Welcomed { visitor, conversation, key, .. } = welcome(&mut first, Hello::default()).await;
    assert!(key.as_ref().is_some_and(|k| k.len() == 32), "a new visitor's widget gets a resume key");
    let greeting_variant = say(&mut first, "hello").await.text;
    drop(first);

    let mut again = server.connect().await;
    let back = welcome(&mut again, resume(&visitor, &key)).await;
    assert_eq!(
        (back.visitor.as_str(), back.conversation.as_str(), back.returning),
        (visitor.as_str(), conversation.as_str(), true)
    );
    assert_eq!(back.key, None, "the key it holds still holds");
    assert_eq!(say(&mut again, "hello").await.text, greeting_variant, "same visitor, same variant");

    // The visitor id alone (it is in the admin, in exports, in links of old) resumes nothing,
    // nor does it with a key of another visitor's.
    for key in [None, Some("0".repeat(32))] {
        let mut thief = server.connect().await;
        let stolen = welcome(&mut thief, resume(&visitor, &key)).await;
        assert!(stolen.visitor != visitor && !stolen.returning, "{key:?}");
        assert_ne!(say(&mut thief, "hello").await.text, "", "a new chat instead");
    }

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

/// `/metrics` has what an operator watches: reply and commit latency, the group commit, how
/// messages were routed, the open connections.
#[tokio::test]
async fn metrics_show_latency_group_commits_and_routes() {
    let server = TestServer::spawn();
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    say_all(&mut socket, "do you ship to Austria?").await;
    say_all(&mut socket, "how do I write a for loop in C++").await;
    let (status, _, body) = get(format!("{}/metrics", server.url())).await;
    assert_eq!(status, 200);
    for line in [
        "nudge_connections_open 1",
        "nudge_routes_total{how=\"pattern\"} 1",
        "nudge_routes_total{how=\"fallback\"} 1",
        // The hello's answer counts too.
        "nudge_reply_seconds_count 3",
        "nudge_reply_seconds_bucket{le=\"10\"} 3",
        "# TYPE nudge_store_commit_seconds histogram",
        "# TYPE nudge_store_group_batches histogram",
        "nudge_messages_total 2",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} in\n{body}");
    }
}
