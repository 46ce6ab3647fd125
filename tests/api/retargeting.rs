//! Retargeting: tag events posted, signed, to the shop's webhook (a real HTTP server) for
//! visitors with ads consent, retried while it fails; the cart-abandonment check tagging a
//! shopper who was offered checkout and did not buy.

use std::path::Path;
use std::time::Duration;

use nudge::ids::VisitorId;
use nudge::protocol::{Consent, Hello};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::receivers::{Receiver, free_port};

/// A shopper through the shoe flow to the checkout offer; returns the visitor id.
async fn shop(server: &TestServer, ads: bool) -> String {
    let mut socket = server.connect().await;
    let consent = Some(Consent { marketing: true, ads });
    let (visitor, ..) = hello(&mut socket, Hello { consent, ..Hello::default() }).await;
    for text in ["I'm looking for sneakers", "42", "black", "120", "no thanks", "no"] {
        say_all(&mut socket, text).await;
    }
    visitor
}

fn events_for<'a>(events: &'a [Value], visitor: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            serde_json::from_str::<Value>(e["body"].as_str().unwrap_or("")).is_ok_and(|b| b["visitor"] == visitor)
        })
        .collect()
}

fn tag_of(event: &Value) -> String {
    let body: Value = serde_json::from_str(event["body"].as_str().expect("body")).expect("json body");
    body["tag"].as_str().expect("tag").to_string()
}

#[tokio::test]
async fn tag_events_reach_the_webhook_signed_and_abandoned_carts_are_tagged() {
    let dir = tempfile::tempdir().expect("dir");
    // The receiver has a bad moment first: two 503s, which are retried.
    let hook = Receiver::webhook(free_port(), &dir.path().join("hook"), 2);
    let config =
        format!("tag_webhook_url = \"{}\"\nabandoned_after_secs = 2\nmail_retry_secs = 1\n", hook.webhook_url());
    let mut server = TestServer::start_configured(dir.path(), Path::new("intents"), &config);
    let secret = crate::backend::secrets(&server.data).webhook_secret;

    let ana = shop(&server, true).await;
    let bo = shop(&server, false).await;
    let cara = shop(&server, true).await;
    // Cara buys before the abandonment check: she is no abandoner.
    let order = json!({ "order_id": "C-1", "visitor": cara, "value": 80.0, "currency": "EUR" }).to_string();
    let key = api_key(&server.data);
    assert_eq!(post(format!("{}/api/conversions", server.url()), Some(key), "application/json", order).await.0, 201);

    // Ana: interest and qualified tags at once, cart_abandoner after the check.
    let mut received = Vec::new();
    for _ in 0..300 {
        received = hook.messages();
        if events_for(&received, &ana).iter().any(|e| tag_of(e) == "cart_abandoner") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut tags: Vec<String> = events_for(&received, &ana).iter().map(|e| tag_of(e)).collect();
    tags.sort();
    assert_eq!(tags, ["cart_abandoner", "interest:sneakers", "qualified_interest"], "{received:?}");
    for event in &received {
        assert_eq!(event["path"], "/hooks/nudge");
        let headers = &event["headers"];
        let (timestamp, body) =
            (headers["x-nudge-timestamp"].as_str().expect("timestamp"), event["body"].as_str().expect("body"));
        let expected = format!("v1={}", nudge::outbox::sign(&secret, timestamp, body));
        assert_eq!(headers["x-nudge-signature"].as_str(), Some(expected.as_str()), "signed with the webhook secret");
        assert_eq!(headers["content-type"], "application/json");
    }
    // Whatever could still be retried is due.
    server.advance(Duration::from_secs(5)).await;
    let received = hook.messages();
    assert!(events_for(&received, &bo).is_empty(), "no ads consent, no events");
    assert!(!events_for(&received, &cara).iter().any(|e| tag_of(e) == "cart_abandoner"), "cara bought");
    assert_eq!(events_for(&received, &ana).len(), 3, "each event once, after the 503s were retried");
    server.stop();

    let store = crate::backend::open_store(&server.data).expect("store");
    let tags = |id: &str| store.visitor(&VisitorId::parse(id).expect("id")).expect("read").expect("visitor").tags;
    assert!(tags(&ana).contains("cart_abandoner"));
    assert!(tags(&bo).contains("cart_abandoner"), "tagged even without ads consent; only the event needs it");
    assert!(!tags(&cara).contains("cart_abandoner"));
}
