//! Bad input on the socket: each gets an error frame or a clean close, the server keeps serving
//! other clients, and nothing stored is damaged.

use futures_util::{SinkExt, StreamExt};
use nudge::protocol::{ClientFrame, ErrorCode, Hello, ServerFrame};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use crate::helpers::*;

#[tokio::test]
async fn recoverable_errors_keep_the_connection_usable() {
    let server = TestServer::start();
    let mut socket = server.connect().await;
    send(&mut socket, ClientFrame::Say { text: "hi".into() }).await;
    assert!(expect_error(&mut socket, ErrorCode::BadRequest).await.contains("hello first"));
    hello(&mut socket, Hello::default()).await;
    let long = "a".repeat(1001);
    for (raw, code, says) in [
        ("{not json", ErrorCode::BadRequest, "invalid JSON"),
        (r#"{"type":"shout","text":"hi"}"#, ErrorCode::BadRequest, "unknown frame type"),
        (r#"{"type":"say"}"#, ErrorCode::BadRequest, "missing field `text`"),
        (r#"{"text":"hi"}"#, ErrorCode::BadRequest, "`type`"),
        (r#"{"type":"say","text":"   "}"#, ErrorCode::BadRequest, "empty"),
        (&format!(r#"{{"type":"say","text":"{long}"}}"#), ErrorCode::TooLong, "at most 1000"),
        (r#"{"type":"hello"}"#, ErrorCode::BadRequest, "already"),
    ] {
        socket.send(Message::text(raw)).await.expect("send");
        let message = expect_error(&mut socket, code).await;
        assert!(message.contains(says), "{raw:.40}: {message}");
    }
    socket.send(Message::binary(vec![1u8, 2, 3])).await.expect("send");
    assert!(expect_error(&mut socket, ErrorCode::BadRequest).await.contains("binary"));
    assert_eq!(say(&mut socket, "do you ship to Austria?").await.intent, "shipping_options", "still usable");
}

/// Frames the codec cannot accept end the connection with an error frame and a close code; the
/// server keeps serving others and the transcript written before is intact.
#[tokio::test]
async fn fatal_frames_close_cleanly_and_damage_nothing() {
    let server = TestServer::start();
    let mut witness = server.connect().await;
    let (_, conversation, ..) = hello(&mut witness, Hello::default()).await;
    say(&mut witness, "where is my order?").await;

    let huge = format!(r#"{{"type":"say","text":"{}"}}"#, "x".repeat(100 * 1024));
    let invalid_utf8 = Message::Frame(Frame::message(vec![b'{', 0xff, 0xfe, b'}'], OpCode::Data(Data::Text), true));
    for (bad, code, close_code) in
        [(Message::text(huge), ErrorCode::TooLong, 1009u16), (invalid_utf8, ErrorCode::BadRequest, 1007)]
    {
        let mut attacker = server.connect().await;
        hello(&mut attacker, Hello::default()).await;
        // The server may close before the whole frame is written; that is fine.
        let _ = attacker.send(bad).await;
        expect_error(&mut attacker, code).await;
        match attacker.next().await {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(u16::from(frame.code), close_code),
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert_eq!(say(&mut witness, "how long does delivery take").await.intent, "delivery_time");
    }
    drop(witness);
    let mut server = server;
    server.stop();
    let store = crate::backend::open_store(&server.data).expect("store opens");
    let id = nudge::ids::ConversationId::parse(&conversation).expect("id");
    let texts: Vec<String> = store.transcript(&id).expect("transcript").into_iter().map(|e| e.text).collect();
    assert_eq!(texts.len(), 7, "greeting + 3 exchanges: {texts:?}");
    assert_eq!(texts[1], "where is my order?");
}

#[tokio::test]
async fn the_handshake_checks_origin_and_subprotocol() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = TestServer::start();
    let attempt_with = |origin: Option<&str>, protocol: Option<&str>, forwarded: Option<&str>| {
        let mut request = server.ws_url().into_client_request().expect("request");
        if let Some(host) = forwarded {
            request.headers_mut().insert("X-Forwarded-Host", host.parse().expect("header"));
        }
        if let Some(origin) = origin {
            request.headers_mut().insert("Origin", origin.parse().expect("header"));
        }
        if let Some(protocol) = protocol {
            request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
        }
        async move {
            match tokio_tungstenite::connect_async(request).await {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
                Err(e) => panic!("unexpected error {e}"),
            }
        }
    };
    let attempt = |origin: Option<&str>, protocol: Option<&str>| attempt_with(origin, protocol, None);
    let own = format!("http://{}", server.addr);
    assert_eq!(attempt(Some(&own), Some("chat.v1")).await, 101, "our own pages");
    assert_eq!(attempt(None, Some("chat.v1")).await, 101, "non-browser clients");
    assert_eq!(attempt(Some("https://evil.example"), Some("chat.v1")).await, 403, "cross-site hijacking");
    assert_eq!(attempt(Some(&own), None).await, 400, "no subprotocol");
    let forged = attempt_with(Some("https://evil.example"), Some("chat.v1"), Some("evil.example"));
    assert_eq!(forged.await, 403, "a forwarded host counts only from trusted proxies");

    let dir = tempfile::tempdir().expect("dir");
    let allowing = TestServer::start_on(
        &dir.path().join("data"),
        std::path::Path::new("intents"),
        &["--allowed-origins", "https://shop.example"],
    );
    let mut request = allowing.ws_url().into_client_request().expect("request");
    request.headers_mut().insert("Origin", "https://shop.example".parse().expect("header"));
    request.headers_mut().insert("Sec-WebSocket-Protocol", "chat.v1".parse().expect("header"));
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("allow-listed origin");
    send(&mut socket, ClientFrame::Hello(Hello::default())).await;
    assert!(matches!(recv(&mut socket).await, ServerFrame::Welcome { .. }));
}

#[tokio::test]
async fn a_hello_that_asks_to_keep_too_much_is_refused_and_a_visitor_who_only_said_hello_is_not_stored() {
    let mut server = TestServer::start();
    let mut socket = server.connect().await;
    let utm = (0..40).map(|i| (format!("key{i}"), "v".repeat(100))).collect();
    send(&mut socket, ClientFrame::Hello(Hello { utm, ..Hello::default() })).await;
    let message = expect_error(&mut socket, nudge::protocol::ErrorCode::TooLong).await;
    assert!(message.contains("4096 bytes"), "{message}");
    let (only_hello, ..) =
        hello(&mut socket, Hello { page: Some("https://shop.example/".into()), ..Hello::default() }).await;
    let mut talker = server.connect().await;
    let (talked, ..) = hello(&mut talker, Hello::default()).await;
    say(&mut talker, "do you ship to Austria?").await;
    drop((socket, talker));
    server.stop();
    let store = crate::backend::open_store(&server.data).expect("store");
    let id = |v: &str| nudge::ids::VisitorId::parse(v).expect("id");
    assert!(store.visitor(&id(&only_hello)).expect("read").is_none(), "a hello alone stores nothing");
    let talked = store.visitor(&id(&talked)).expect("read").expect("a visitor who said something");
    let conversation = store.latest_conversation(&talked.id).expect("read").expect("conversation");
    let transcript = store.transcript(&conversation.id).expect("read");
    assert_eq!(transcript.len(), 3, "the greeting, the message and its reply: {transcript:?}");
    assert_eq!(talked.visits, 1);
}
