//! From an email link to an attributed order, over real HTTP and WebSocket, read back with
//! `nudge export leads`; and every route refusing tampered tokens, foreign redirects and bad
//! conversions.

use std::path::Path;

use nudge::protocol::{ClientFrame, ErrorCode, Hello, ServerFrame};
use nudge::signing::Claims;
use serde_json::{Value, json};

use crate::helpers::*;

/// Every frame until the server goes quiet.
async fn frames(socket: &mut nudge::client::Socket) -> Vec<ServerFrame> {
    let mut out = Vec::new();
    while let Ok(Ok(frame)) =
        tokio::time::timeout(std::time::Duration::from_millis(300), nudge::client::recv(socket)).await
    {
        out.push(frame);
    }
    out
}

async fn say_frames(socket: &mut nudge::client::Socket, text: &str) -> Vec<ServerFrame> {
    send(socket, ClientFrame::Say { text: text.into() }).await;
    frames(socket).await
}

#[tokio::test]
async fn email_link_to_checkout_to_attributed_order() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut server = TestServer::start_on(&data, Path::new("intents"), &[]);
    let base = format!("http://{}", server.addr);
    let data_arg = data.to_str().expect("utf-8 path");
    let (code, link, err) = run_nudge(&[
        "link",
        "--email",
        " Ana@Example.com",
        "--name",
        "Ana",
        "--campaign",
        "spring",
        "--product",
        "sneakers",
        "--ttl",
        "7d",
        "--data",
        data_arg,
        "--public-url",
        &base,
    ]);
    assert_eq!(code, 0, "{err}");
    let link = link.trim().to_string();
    assert!(link.starts_with(&format!("{base}/c/")), "{link}");
    // The link is sealed: nobody who sees it learns the address, the name or the campaign.
    let sealed = link.rsplit('/').next().expect("token").split_once('.').expect("kid.sealed").1;
    use base64::Engine;
    let opened = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sealed).expect("base64url");
    let opened = String::from_utf8_lossy(&opened).to_lowercase();
    for secret in ["ana@example.com", "spring", "sneakers"] {
        assert!(!opened.contains(secret) && !link.to_lowercase().contains(secret), "{secret} readable in {link}");
    }

    let (status, location, _) = get(link.clone()).await;
    assert_eq!(status, 303);
    let token = location.strip_prefix("/chat?nudge=").expect("lands on /chat with the token").to_string();

    let mut socket = server.connect().await;
    let (visitor, conversation, _, greeting) =
        hello(&mut socket, Hello { token: Some(token.clone()), ..Hello::default() }).await;
    assert_eq!(greeting.intent, "welcome_named_product");
    assert!(greeting.text.starts_with("Hi Ana! Still thinking about the sneakers?"), "{}", greeting.text);
    assert_eq!(greeting.choices[0].value, "I'm looking for sneakers");

    // The same link on another device is the same visitor.
    let (status, _, _) = get(link.clone()).await;
    assert_eq!(status, 303);
    let mut phone = server.connect().await;
    let (same, _, returning, _) = hello(&mut phone, Hello { token: Some(token.clone()), ..Hello::default() }).await;
    assert_eq!((same.as_str(), returning), (visitor.as_str(), true));
    drop(phone);

    let mut checkout = None;
    for text in ["I'm looking for sneakers", "42", "black", "100", "yes"] {
        for frame in say_frames(&mut socket, text).await {
            if let ServerFrame::Checkout { url, label } = frame {
                assert_eq!(label, "Go to checkout");
                checkout = Some(url);
            }
        }
    }
    let checkout = checkout.expect("a checkout link once qualified");
    let checkout_token = checkout.strip_prefix(&format!("{base}/r/")).expect("a /r/ link").to_string();
    let (status, target, _) = get(checkout.clone()).await;
    assert_eq!((status, target.as_str()), (303, "https://shop.example/cart?sku=sneakers&size=42&utm_campaign=spring"));

    let order = json!({ "order_id": "A-1001", "checkout_token": checkout_token, "value": 119.9, "currency": "EUR" });
    let url = format!("{base}/api/conversions");
    let (status, body) = post(url.clone(), Some(api_key(&data)), "application/json", order.to_string()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["visitor"].as_str(), body["campaign"].as_str()), (Some(visitor.as_str()), Some("spring")));
    assert_eq!(body["conversation"].as_str(), Some(conversation.as_str()));
    let (status, body) = post(url, Some(api_key(&data)), "application/json", order.to_string()).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("duplicate")), "a repeated delivery counts once");

    // sled allows one process per store; PostgreSQL is read while nodes run.
    let (code, csv, err) = run_nudge(&["export", "leads", "--data", data_arg]);
    match crate::backend::postgres() {
        None => assert!(code == 1 && err.contains("in use by another nudge process"), "{err}"),
        Some(_) => assert!(code == 0 && csv.contains("ana@example.com"), "{err}\n{csv}"),
    }
    drop(socket);
    server.stop();

    let (code, jsonl, err) = run_nudge(&["export", "leads", "--data", data_arg, "--format", "jsonl", "--transcripts"]);
    assert_eq!(code, 0, "{err}");
    let leads: Vec<Value> = jsonl.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(leads.len(), 1, "{jsonl}");
    let lead = &leads[0];
    assert_eq!(lead["visitor"], visitor.as_str());
    assert_eq!((lead["name"].as_str(), lead["email"].as_str()), (Some("Ana"), Some("ana@example.com")));
    assert_eq!(lead["status"], "converted");
    for status in ["chatting", "qualified", "checkout_clicked", "converted"] {
        assert!(lead["status_at"][status].is_string(), "{status} time in {}", lead["status_at"]);
    }
    assert_eq!(lead["campaign"], "spring");
    assert_eq!(lead["preferences"]["size"]["value"], "42");
    assert_eq!(lead["preferences"]["colour"]["value"], "black");
    assert_eq!(lead["preferences"]["budget"]["value"], "100");
    assert_eq!(lead["preferences"]["size"]["message"], "42");
    assert_eq!(lead["consent"]["marketing"], true);
    assert_eq!(lead["orders"].as_array().map(Vec::len), Some(1), "the order attributed once");
    assert_eq!(lead["orders"][0]["value"], 119.9);
    assert!(lead["orders"][0]["variants"].as_array().is_some_and(|v| !v.is_empty()), "variants shown");
    assert_eq!(lead["conversations"][0]["source"]["campaign"], "spring");
    assert!(lead["conversations"][0]["transcript"].as_array().is_some_and(|t| t.len() > 10));

    let (code, csv, _) = run_nudge(&["export", "leads", "--data", data_arg, "--status", "converted"]);
    assert_eq!(code, 0);
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 2, "{csv}");
    assert!(rows[0].starts_with("visitor,name,email,consent_marketing"));
    assert!(rows[1].contains(",ana@example.com,") && rows[1].contains("size=42@"), "{}", rows[1]);
    let (_, none, _) = run_nudge(&["export", "leads", "--data", data_arg, "--status", "qualified"]);
    assert_eq!(none.lines().count(), 1, "only the header: the lead moved on");
}

#[tokio::test]
async fn tampered_tokens_foreign_targets_and_bad_conversions_are_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let server = TestServer::start_on(&data, Path::new("intents"), &[]);
    let base = format!("http://{}", server.addr);
    let signer = crate::backend::secrets(&data).signer().expect("signer");
    let far = u64::MAX / 2;
    let chat = Claims::Chat {
        email: "bo@example.com".into(),
        name: None,
        campaign: None,
        product: None,
        visitor: None,
        conversation: None,
        answer: None,
    };
    let good = signer.sign(&chat, far);
    let tampered = {
        let (head, sig) = good.rsplit_once('.').expect("token");
        let flipped = if sig.starts_with('A') { "B" } else { "A" };
        format!("{head}.{flipped}{}", &sig[1..])
    };
    let expired = signer.sign(&chat, 1);
    let foreign = signer.sign(
        &Claims::Checkout {
            visitor: nudge::ids::VisitorId::mint(0),
            conversation: nudge::ids::ConversationId::mint(0),
            target: "https://evil.example/phish".into(),
        },
        far,
    );
    for (path, status) in [
        (format!("/c/{tampered}"), 403),
        (format!("/c/{expired}"), 410),
        ("/c/not-a-token".to_string(), 400),
        // Cut short of a nonce and a tag: malformed. (Cut anywhere later, it fails to open, as
        // tampering does: 403.)
        (format!("/c/{}", &good[..good.find('.').expect("kid") + 8]), 400),
        (format!("/c/{}", &good[..good.len() / 2]), 403),
        (format!("/r/{tampered}"), 403),
        (format!("/r/{foreign}"), 403),
        (format!("/r/{good}"), 400),
    ] {
        let (got, location, body) = get(format!("{base}{path}")).await;
        assert_eq!(got, status, "{path}: {body}");
        assert!(location.is_empty(), "{path} must not redirect");
        assert!(body.contains("This link cannot be used"), "{path}: a page with the reason");
    }

    // A tampered token in `hello` is refused, and the chat still opens anonymously.
    let mut socket = server.connect().await;
    send(&mut socket, ClientFrame::Hello(Hello { token: Some(tampered.clone()), ..Hello::default() })).await;
    assert!(expect_error(&mut socket, ErrorCode::Unauthorized).await.contains("tampered"));
    assert!(matches!(recv(&mut socket).await, ServerFrame::Welcome { returning: false, .. }));

    let url = format!("{base}/api/conversions");
    let key = Some(api_key(&data));
    let order = |extra: Value| {
        let mut o = json!({ "order_id": "B-1", "value": 10, "currency": "EUR", "visitor": "0".repeat(32) });
        o.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        o.to_string()
    };
    for (key, content_type, body, status, reason) in [
        (None, "application/json", order(json!({})), 401, "Authorization"),
        (Some("wrong".to_string()), "application/json", order(json!({})), 401, "wrong API key"),
        (key.clone(), "text/plain", order(json!({})), 415, "application/json"),
        (key.clone(), "application/json", "{".to_string(), 400, "invalid body"),
        (key.clone(), "application/json", json!({ "order_id": "x" }).to_string(), 400, "missing field"),
        (key.clone(), "application/json", order(json!({ "currency": "euro" })), 400, "ISO 4217"),
        (key.clone(), "application/json", order(json!({ "value": -5 })), 400, "non-negative"),
        (key.clone(), "application/json", order(json!({ "visitor": "nope" })), 400, "`visitor`"),
        (key.clone(), "application/json", order(json!({ "checkout_token": tampered })), 400, "tampered"),
        (key.clone(), "application/json", order(json!({})), 404, "unknown visitor"),
    ] {
        let (got, body) = post(url.clone(), key, content_type, body).await;
        assert_eq!(got, status, "{body}");
        assert!(body.to_string().contains(reason), "{status}: {body}");
    }
}
