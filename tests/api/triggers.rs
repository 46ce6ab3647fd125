//! Proactive triggers over HTTP: which the widget may check alone, which only the server can
//! answer (segments, tags) and only to the widget holding the visitor's key, and the count of
//! each one shown.

use nudge::protocol::Hello;
use serde_json::json;

use crate::helpers::*;

/// One trigger for anyone (an A/B test of two teasers), one on a tag, one on a segment.
pub(crate) const TRIGGERS: &str = r#"
[[segment]]
id = "gave_a_size"
description = "Told us their shoe size"
preferences = ["size"]

[[trigger]]
id = "ab"
page = "/d*o"
after = "1s"
action = "teaser"
intent = "find_running_shoes"

[trigger.en]
teaser = ["Running shoes in 30 seconds?", "Need a hand choosing shoes?"]

[trigger.de]
teaser = ["Laufschuhe in 30 Sekunden?", "Hilfe bei der Schuhwahl?"]

[[trigger]]
id = "sneaker_fans"
tags = ["interest:sneakers"]
action = "teaser"
intent = "discount"

[[trigger]]
id = "sized"
segment = "gave_a_size"
action = "open"
intent = "discount"
"#;

/// The starter pack with `TRIGGERS` instead of its own.
pub(crate) fn pack(dir: &std::path::Path) -> std::path::PathBuf {
    copy_starter_pack(dir, |text| if text.contains("[[trigger]]") { TRIGGERS.to_string() } else { text.to_string() })
}

fn ids(body: &serde_json::Value) -> Vec<&str> {
    body["triggers"].as_array().expect("triggers").iter().filter_map(|t| t["id"].as_str()).collect()
}

#[tokio::test]
async fn triggers_on_tags_and_segments_are_answered_only_to_the_visitor_s_key() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), &pack(dir.path()), &[]);
    let url = format!("{}/widget/triggers", server.url());
    let (status, _, body) = get(url.clone()).await;
    assert_eq!(status, 200);
    let anyone: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ids(&anyone), ["ab"], "only what the widget can check alone");
    assert_eq!(anyone["triggers"][0]["teaser"]["en"][1], "Need a hand choosing shoes?");

    // The widget posts as a CORS-simple request: text/plain, no preflight.
    let ask = |visitor: &str, key: &str| {
        let body = json!({ "visitor": visitor, "key": key }).to_string();
        post(url.clone(), None, "text/plain;charset=UTF-8", body)
    };
    let mut socket = server.connect().await;
    let shopper = welcome(&mut socket, Hello::default()).await;
    let key = shopper.key.expect("a new visitor's key");
    // Only said hello: not stored yet, so it is in no segment and has no tags.
    let (status, body) = ask(&shopper.visitor, &key).await;
    assert_eq!((status, ids(&body)), (200, vec!["ab"]), "{body}");

    say_all(&mut socket, "I'm looking for sneakers").await;
    let (status, body) = ask(&shopper.visitor, &key).await;
    assert_eq!((status, ids(&body)), (200, vec!["ab", "sneaker_fans"]), "the tag holds: {body}");
    say_all(&mut socket, "42").await;
    let (_, body) = ask(&shopper.visitor, &key).await;
    assert_eq!(ids(&body), ["ab", "sneaker_fans", "sized"], "in the segment now: {body}");

    // Someone else's key, or none that parses, learns nothing of the visitor.
    let (status, body) = ask(&shopper.visitor, "not-the-key").await;
    assert_eq!(status, 403, "{body}");
    assert!(body["error"].as_str().is_some_and(|e| e.contains("key")), "{body}");
    let (status, body) = ask("nobody", &key).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = post(url.clone(), None, "text/plain", "{".into()).await;
    assert_eq!(status, 400, "{body}");

    // Each trigger shown is counted, per variant; an unknown one or variant is refused.
    let shown = format!("{url}/shown");
    for (body, want) in [
        (json!({ "trigger": "ab", "variant": 1 }), 204),
        (json!({ "trigger": "sized" }), 204),
        (json!({ "trigger": "gone", "variant": 0 }), 400),
        (json!({ "trigger": "ab", "variant": 2 }), 400),
    ] {
        let (status, answer) = post(shown.clone(), None, "text/plain", body.to_string()).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
}
