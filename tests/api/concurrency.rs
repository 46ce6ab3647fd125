//! Writers that touch one visitor at once: a chat session mid-flow while the checkout click, the
//! shop's order and the unsubscribe link land for the same visitor. Nobody writes a copy of the
//! profile, so after more chat messages every fact is still there.

use std::path::Path;

use nudge::domain::{Status, UNSUBSCRIBE_SOURCE};
use nudge::ids::{ConversationId, VisitorId};
use nudge::protocol::Hello;
use nudge::signing::Claims;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_click_an_order_and_an_unsubscribe_during_a_chat_all_stay() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_on(&data, Path::new("intents"), &[]);
    let mut socket = server.connect().await;
    let (visitor, conversation, ..) = hello(&mut socket, Hello::default()).await;
    for text in ["I'm looking for sneakers", "42"] {
        say_all(&mut socket, text).await;
    }

    // The session holds its copy of the profile from `hello` on; these land meanwhile.
    let signer = crate::backend::secrets(&data).signer().expect("signer");
    let id = VisitorId::parse(&visitor).expect("id");
    let expires = nudge::now_ms() / 1000 + 3600;
    let target = "https://shop.example/cart?sku=sneakers".to_string();
    let checkout =
        Claims::Checkout { visitor: id, conversation: ConversationId::parse(&conversation).expect("id"), target };
    // The click first (an order that lands before it makes it moot: a status only moves forward),
    // then the order and the unsubscribe together with more chat.
    let (click, _, _) = get(format!("{}/r/{}", server.url(), signer.sign(&checkout, expires))).await;
    let order = json!({ "order_id": "A-7", "visitor": visitor, "value": 120.0, "currency": "EUR" }).to_string();
    let key = api_key(&data);
    let convert = post(format!("{}/api/conversions", server.url()), Some(key), "application/json", order);
    let unsubscribe_url = format!("{}/u/{}", server.url(), signer.sign(&Claims::Unsubscribe { visitor: id }, expires));
    let unsubscribe =
        post(unsubscribe_url, None, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click".into());
    let chatting = async {
        say_all(&mut socket, "black").await;
        say_all(&mut socket, "120").await;
    };
    let ((converted, body), (unsubscribed, _), ()) = tokio::join!(convert, unsubscribe, chatting);
    assert_eq!((click, converted, unsubscribed), (303, 201, 200), "{body}");
    // More messages from the session that loaded the profile before all of it.
    say_all(&mut socket, "do you ship to Austria?").await;
    say_all(&mut socket, "thanks, that's all").await;
    drop(socket);
    server.stop();

    let store = crate::backend::open_store(&data).expect("store");
    let profile = store.visitor(&id).expect("read").expect("visitor");
    assert_eq!(profile.status, Status::Converted);
    assert!(profile.status_at.contains_key(&Status::CheckoutClicked), "{:?}", profile.status_at);
    assert_eq!(profile.orders, ["A-7"]);
    let consent = profile.consent.clone().expect("consent recorded");
    assert!(!consent.marketing, "the unsubscribe stays");
    assert_eq!(consent.source, UNSUBSCRIBE_SOURCE);
    for (name, value) in [("product", "sneakers"), ("size", "42"), ("colour", "black"), ("budget", "120")] {
        assert_eq!(profile.preference(name), Some(value), "{name}");
    }
    assert!(store.order("A-7").expect("read").is_some());
}
