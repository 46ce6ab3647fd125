//! Hot reload: a fixed reply is served to a client that stays connected, a broken file leaves
//! the last good set serving, and a conversation in the middle of a flow goes on.

use std::path::Path;
use std::time::{Duration, Instant};

use nudge::protocol::Hello;

use crate::helpers::*;

/// Saves a file the way editors do: write a temporary file, then rename it over the old one.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, path).expect("rename");
}

async fn metric(server: &TestServer, name: &str) -> u64 {
    let url = format!("http://{}/metrics", server.addr);
    let body = tokio::task::spawn_blocking(move || {
        ureq::get(&url).call().expect("GET /metrics").body_mut().read_to_string().expect("body")
    })
    .await
    .expect("join");
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} in {body}"))
}

#[tokio::test]
async fn reloads_on_save_and_keeps_the_last_good_set() {
    let dir = tempfile::tempdir().expect("dir");
    let intents = copy_starter_pack(dir.path(), |text| text.to_string());
    let server = TestServer::spawn_on(&dir.path().join("data"), &intents, &[]);
    let mut socket = server.connect().await;
    hello(&mut socket, Hello::default()).await;
    assert!(say(&mut socket, "do you ship to Austria?").await.text.starts_with("We ship to all EU"));
    let mut shopper = server.connect().await;
    hello(&mut shopper, Hello::default()).await;
    say_all(&mut shopper, "I'm looking for boots").await;

    let shipping = intents.join("shipping.toml");
    let fixed = std::fs::read_to_string(&shipping).expect("read").replace("We ship to all EU", "Now we ship to all EU");
    save(&shipping, &fixed);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !say(&mut socket, "do you ship to Austria?").await.text.starts_with("Now we ship") {
        assert!(Instant::now() < deadline, "the fixed reply was never served");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(metric(&server, "nudge_intent_reloads_total").await, 1, "one save, one reload");

    // The conversation that was waiting for a size goes on with the new set.
    let replies = say_all(&mut shopper, "42").await;
    assert!(replies.last().expect("reply").contains("Which colour"), "{replies:?}");

    save(&intents.join("broken.toml"), "[[intent]]\nid = \"oops\"\npatterns = ['''(unclosed''']\n");
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&server, "nudge_intent_reload_failures_total").await == 0 {
        assert!(Instant::now() < deadline, "the broken file was never noticed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(say(&mut socket, "do you ship to Austria?").await.text.starts_with("Now we ship"), "last good set");
    assert_eq!(say(&mut socket, "where is my order").await.intent, "order_status");
}
