//! Follow-up emails through a real SMTP server: scheduled by the flow, sent once with a resume
//! link and one-click unsubscribe headers; kept through an SMTP outage, dead-lettered on a
//! permanent refusal, and not sent to shoppers who converted or unsubscribed meanwhile.

use std::path::Path;
use std::time::Duration;

use nudge::domain::{Job, OutboxItem, OutboxState};
use nudge::ids::VisitorId;
use nudge::protocol::{ClientFrame, Consent, Hello, ServerFrame};
use serde_json::json;

use crate::helpers::*;
use crate::receivers::{Receiver, free_port, header, rcpt};

const FLOW: [&str; 4] = ["I'm looking for sneakers", "42", "black", "120"];

/// Shoppers here type their addresses into the chat; double opt-in, which holds their
/// follow-ups until they confirm, has its own test below.
const NO_DOUBLE_OPT_IN: &str = "double_opt_in = false\n";

/// The starter pack with follow-ups due a second after they are scheduled.
fn quick_pack(dir: &Path) -> std::path::PathBuf {
    copy_starter_pack(dir, |text| text.replace("after = \"1h\" }", "after = \"1s\" }"))
}

/// Runs the shoe flow to its end with `email` and marketing consent; returns the visitor id and
/// the widget's resume key.
async fn shop(server: &TestServer, email: &str) -> (String, Option<String>) {
    let mut socket = server.connect().await;
    let Welcomed { visitor, key, .. } = welcome(&mut socket, Hello::default()).await;
    for text in FLOW.into_iter().chain([email, "yes"]) {
        say_all(&mut socket, text).await;
    }
    (visitor, key)
}

/// The follow-up emails in the outbox (not the other jobs).
fn emails(store: &nudge::store::Store) -> Vec<OutboxItem> {
    let all = store.follow_ups().collect::<Result<Vec<_>, _>>().expect("outbox");
    all.into_iter().filter(|item| matches!(item.job, Job::Email { .. })).collect()
}

async fn metric(server: &TestServer, name: &str) -> u64 {
    let (_, _, body) = get(format!("{}/metrics", server.url())).await;
    body.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

async fn wait_for_metric(server: &TestServer, name: &str, at_least: u64) {
    for _ in 0..300 {
        if metric(server, name).await >= at_least {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} never reached {at_least}");
}

#[tokio::test]
async fn a_follow_up_is_sent_once_and_its_links_resume_and_unsubscribe() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    // No resume window: only the email's link can bring the shopper back into the same conversation.
    let config = format!(
        "smtp_url = \"{}\"\nmail_from = \"Shoe Shop <shop@example.com>\"\nresume_window_secs = 0\n{NO_DOUBLE_OPT_IN}",
        smtp.smtp_url()
    );
    let mut server = TestServer::start_configured(dir.path(), &quick_pack(dir.path()), &config);
    let (visitor, key) = shop(&server, "ana@example.com").await;

    let messages = smtp.wait_for(1, Duration::from_secs(20));
    assert_eq!(messages.len(), 1, "one follow-up");
    let mail = &messages[0];
    assert_eq!(rcpt(mail), "ana@example.com");
    assert_eq!(mail["mail_from"], "shop@example.com");
    // The starter email is an A/B test: the visitor's variant, by the same hash as replies.
    let variant = nudge::dialogue::choose_variant(&VisitorId::parse(&visitor).expect("id"), "your_selection", 2);
    let subjects = ["Your sneakers picks in size 42", "Still thinking about those sneakers? Size 42 is waiting"];
    assert_eq!(header(mail, "subject"), subjects[variant]);
    let text = mail["text"].as_str().expect("a text part");
    let html = mail["html"].as_str().expect("an HTML part");
    let wrote = ["sneakers in size 42, black, up to 120 €", "sneakers in size 42, black are still here"];
    assert!(text.contains(wrote[variant]), "{text}");
    // The resume link goes through `/l/` (which counts the click) in both parts; the HTML part
    // carries an open pixel.
    let tracked_prefix = format!("{}/l/", server.url());
    let tracked = text.split_whitespace().find(|w| w.starts_with(&tracked_prefix)).expect("a tracked link").to_string();
    assert!(!text.contains(&format!("{}/c/", server.url())), "no untracked resume link: {text}");
    assert!(html.contains(&format!("<a href=\"{tracked_prefix}")), "{html}");
    let pixel = html.split("<img src=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a pixel").to_string();
    assert!(pixel.starts_with(&format!("{}/o/", server.url())), "{pixel}");
    let unsubscribe = header(mail, "list-unsubscribe").trim_matches(['<', '>']).to_string();
    assert!(unsubscribe.starts_with(&format!("{}/u/", server.url())), "{unsubscribe}");
    assert!(text.contains(&unsubscribe), "the text names the same unsubscribe link");
    assert_eq!(header(mail, "list-unsubscribe-post"), "List-Unsubscribe=One-Click");

    // Opened twice, clicked once: counted once each; a tampered pixel or link gets a 4xx and
    // no redirect.
    for _ in 0..2 {
        assert_eq!(get(pixel.clone()).await.0, 200, "the pixel (a GIF, not UTF-8 text)");
    }
    let tamper = |url: &str| format!("{}{}", &url[..url.len() - 1], if url.ends_with('A') { 'B' } else { 'A' });
    for bad in [tamper(&pixel), tamper(&tracked)] {
        let (status, location, _) = get(bad.clone()).await;
        assert!((400..500).contains(&status) && location.is_empty(), "{bad}: {status} {location}");
    }
    let (status, resume, _) = get(tracked).await;
    assert_eq!(status, 303);
    assert!(resume.starts_with(&format!("{}/c/", server.url())), "the click leads to the resume link: {resume}");

    // The resume link leads back to the same visitor.
    let (status, location, _) = get(resume).await;
    assert_eq!(status, 303);
    let token = location.strip_prefix("/chat?nudge=").expect("lands on /chat").to_string();
    let mut socket = server.connect().await;
    let (same, resumed, returning, _) = hello(&mut socket, Hello { token: Some(token), ..Hello::default() }).await;
    assert_eq!((same.as_str(), returning), (visitor.as_str(), true));

    // Unsubscribe: GET only asks (mail scanners follow links), POST is RFC 8058 one-click.
    let (status, _, page) = get(unsubscribe.clone()).await;
    assert_eq!(status, 200);
    assert!(page.contains("<form method=\"post\""), "{page}");
    let one_click =
        || post(unsubscribe.clone(), None, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click".into());
    assert_eq!(one_click().await.0, 200);
    assert_eq!(one_click().await.0, 200, "unsubscribing twice is fine");
    let (status, _) = post(format!("{}/u/not-a-token", server.url()), None, "text/plain", String::new()).await;
    assert_eq!(status, 400);
    // The chat opened before the unsubscribe writes its copy of the profile, and its page's consent
    // banner still says yes; the unsubscribe stays.
    send(&mut socket, nudge::protocol::ClientFrame::Consent(Consent { marketing: true, ads: true })).await;
    recv(&mut socket).await;
    say_all(&mut socket, "I'm looking for boots").await;
    let mut later = server.connect().await;
    let consent = Some(Consent { marketing: true, ads: true });
    hello(&mut later, Hello { consent, ..crate::helpers::resume(&visitor, &key) }).await;
    drop(later);

    // Sent once: nothing more arrives, whatever falls due meanwhile.
    server.advance(Duration::from_secs(3600)).await;
    assert_eq!(smtp.messages().len(), 1);
    server.stop();
    let store = crate::backend::open_store(&server.data).expect("store");
    let items: Vec<_> = emails(&store);
    let (sent, later): (Vec<_>, Vec<_>) = items.iter().partition(|i| matches!(i.state, OutboxState::Sent { .. }));
    assert_eq!(sent.len(), 1);
    assert_eq!(header(mail, "message-id"), format!("<{}@127.0.0.1>", sent[0].id), "the outbox id names the message");
    assert_eq!(resumed, sent[0].conversation.to_string(), "the link resumed the conversation it followed up on");
    // The boots flow finished again after the unsubscribe: its follow-up was not sent.
    assert_eq!(later.len(), 1);
    assert!(matches!(&later[0].state, OutboxState::Skipped { reason, .. } if reason == "no marketing consent"));
    let profile = store.visitor(&VisitorId::parse(&visitor).expect("id")).expect("read").expect("visitor");
    assert_eq!(profile.preference("product"), Some("boots"), "the open chat wrote the profile after the unsubscribe");
    let consent = profile.consent.expect("consent");
    assert!(!consent.marketing, "unsubscribed");
    assert_eq!(consent.source, "unsubscribe_link");
    let funnel = nudge::admin::report::funnel(&store, &[]).expect("funnel");
    let row = funnel.emails.iter().find(|e| e.email == "your_selection").expect("the email's row");
    assert_eq!((row.sent, row.opened, row.clicked, row.converted), (1, 1, 1, 0));
    assert_eq!(row.variant as usize, variant, "the variant sent is recorded");
}

#[tokio::test]
async fn follow_ups_outlast_an_smtp_outage_and_are_only_sent_while_wanted() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = format!("smtp_url = \"smtp://127.0.0.1:{port}\"\nmail_retry_secs = 1\n{NO_DOUBLE_OPT_IN}");
    let mut server = TestServer::spawn_configured(dir.path(), &quick_pack(dir.path()), &config);
    let key = api_key(&server.data);

    shop(&server, "ana@example.com").await;
    shop(&server, "bounce@example.com").await;
    shop(&server, "busy@example.com").await;
    // Converts before the mail goes out: the follow-up is cancelled.
    let (cara, _) = shop(&server, "cara@example.com").await;
    let order = json!({ "order_id": "A-1", "visitor": cara, "value": 99.0, "currency": "EUR" }).to_string();
    let (status, body) = post(format!("{}/api/conversions", server.url()), Some(key), "application/json", order).await;
    assert_eq!(status, 201, "{body}");
    // Says no more emails in the chat: skipped at send time.
    let mut dan = server.connect().await;
    hello(&mut dan, Hello::default()).await;
    for text in FLOW.into_iter().chain(["dan@example.com", "yes", "stop emailing me"]) {
        say_all(&mut dan, text).await;
    }

    // SMTP is down: every attempt fails and is retried.
    wait_for_metric(&server, "nudge_outbox_retries_total", 4).await;
    assert_eq!(metric(&server, "nudge_outbox_done_total").await, 0);
    let mut smtp = Receiver::smtp(port, &dir.path().join("smtp"));
    let sent = smtp.wait_for(2, Duration::from_secs(30));
    let mut to: Vec<&str> = sent.iter().map(rcpt).collect();
    to.sort();
    assert_eq!(to, ["ana@example.com", "busy@example.com"], "delivered after the outage; busy after its 451");
    wait_for_metric(&server, "nudge_outbox_dead_total", 1).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 2, "nothing else, and nothing twice");
    smtp.stop();
    server.kill();

    let store = crate::backend::open_store(&server.data).expect("store");
    let mut states: Vec<(String, String)> = Vec::new();
    for item in emails(&store) {
        let profile = store.visitor(&item.visitor).expect("read").expect("visitor");
        let detail = match &item.state {
            OutboxState::Dead { error, .. } => error.clone(),
            OutboxState::Skipped { reason, .. } | OutboxState::Cancelled { reason, .. } => reason.clone(),
            _ => String::new(),
        };
        states.push((profile.preference("email").unwrap_or("").to_string(), format!("{} {detail}", item.state.name())));
    }
    states.sort();
    let expect = |email: &str, state: &str| {
        let found = states.iter().find(|(e, _)| e == email).map(|(_, s)| s.as_str()).unwrap_or("missing");
        assert!(found.starts_with(state), "{email}: {found}");
    };
    expect("ana@example.com", "sent");
    expect("busy@example.com", "sent");
    expect("bounce@example.com", "dead");
    expect("cara@example.com", "cancelled converted");
    expect("dan@example.com", "skipped no marketing consent");
    assert_eq!(states.len(), 5, "{states:?}");
}

/// Runs the flow with `email`, tolerating the server dying; true when the last answer (the one
/// that schedules the follow-up) arrived.
async fn shop_until_killed(url: String, email: String) -> bool {
    let Ok(mut socket) = nudge::client::connect(&url).await else { return false };
    if nudge::client::send(&mut socket, &ClientFrame::Hello(Hello::default())).await.is_err() {
        return false;
    }
    for text in FLOW.iter().map(|t| t.to_string()).chain([email, "yes".into()]) {
        if nudge::client::send(&mut socket, &ClientFrame::Say { text }).await.is_err() {
            return false;
        }
        // Every frame of the greeting and of this answer, until its first routed reply.
        loop {
            match nudge::client::recv(&mut socket).await {
                Ok(ServerFrame::Reply(r)) if r.intent == "lead_summary" => return true,
                Ok(ServerFrame::Reply(r)) if r.how.is_some() => break,
                Ok(_) => continue,
                Err(_) => return false,
            }
        }
    }
    false
}

#[tokio::test]
async fn killed_at_random_moments_every_acknowledged_follow_up_is_delivered_once() {
    let mut seed = crate::helpers::seed("kill-point");
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    let intents = copy_starter_pack(dir.path(), |text| text.replace("after = \"1h\" }", "after = \"0s\" }"));
    // On PostgreSQL a killed node's claims are free again when their leases run out: soon here.
    let config =
        format!("smtp_url = \"{}\"\nmail_retry_secs = 1\noutbox_lease_secs = 2\n{NO_DOUBLE_OPT_IN}", smtp.smtp_url());
    let mut acknowledged = Vec::new();
    const ROUNDS: usize = 4;
    for round in 0..ROUNDS {
        let mut server = TestServer::spawn_configured(dir.path(), &intents, &config);
        let clients: Vec<_> = (0..6)
            .map(|client| {
                let email = format!("r{round}c{client}@example.com");
                let shopping = tokio::spawn(shop_until_killed(server.ws_url(), email.clone()));
                (email, shopping)
            })
            .collect();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = 50 + (seed >> 33) % 550;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        for (email, shopping) in clients {
            if shopping.await.expect("client") {
                acknowledged.push(email);
            }
        }
        eprintln!("round {round}: killed after {delay} ms; {} messages delivered so far", smtp.messages().len());
    }
    // A last start delivers what is left.
    let mut server = TestServer::spawn_configured(dir.path(), &intents, &config);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !acknowledged.iter().all(|a| smtp.messages().iter().any(|m| rcpt(m) == a))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // What a killed node had claimed but nobody acknowledged is run once its lease is out (on
    // PostgreSQL, which can be read while the server runs: until nothing waits).
    let settled = std::time::Instant::now() + Duration::from_secs(30);
    while crate::backend::postgres().is_some() && std::time::Instant::now() < settled {
        let store = crate::backend::open_store(&server.data).expect("store");
        if emails(&store).iter().all(|item| item.state != OutboxState::Pending) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.kill();
    let messages = smtp.messages();

    let store = crate::backend::open_store(&server.data).expect("store");
    let items: Vec<_> = emails(&store);
    let mut ids: Vec<&str> = messages.iter().map(|m| header(m, "message-id")).collect();
    ids.sort();
    ids.dedup();
    for email in &acknowledged {
        assert!(messages.iter().any(|m| rcpt(m) == email), "acknowledged follow-up to {email} was never delivered");
    }
    for item in &items {
        assert!(matches!(item.state, OutboxState::Sent { .. }), "{:?}", item.state);
        assert!(ids.contains(&format!("<{}@127.0.0.1>", item.id).as_str()), "{} sent but not received", item.id);
    }
    assert_eq!(ids.len(), items.len(), "every message received is one of the outbox's");
    // A kill between the SMTP server's 250 and the record of it resends that one message, under
    // the same Message-ID; the worker sends one at a time, so at most one per kill.
    let resent = messages.len() - ids.len();
    assert!(resent <= ROUNDS, "{resent} resends after {ROUNDS} kills");
    eprintln!(
        "{} follow-ups acknowledged, {} scheduled, {} delivered, {resent} resent after a kill",
        acknowledged.len(),
        items.len(),
        ids.len()
    );
}

#[tokio::test]
async fn a_name_with_line_breaks_is_mailed_safely_and_later_follow_ups_still_go_out() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    let config = format!("smtp_url = \"{}\"\n{NO_DOUBLE_OPT_IN}", smtp.smtp_url());
    let server = TestServer::spawn_configured(dir.path(), &quick_pack(dir.path()), &config);
    let data = server.data.to_str().expect("utf-8").to_string();
    let url = server.url();
    let name = "Ann\r\nBcc: eve@evil.example\nX";
    let args = ["link", "--email", "ann@example.com", "--name", name, "--data", &data, "--public-url", &url];
    let (code, link, err) = run_nudge(&args);
    assert_eq!(code, 0, "{err}");
    let (_, location, _) = get(link.trim().to_string()).await;
    let token = location.strip_prefix("/chat?nudge=").expect("token").to_string();
    let mut socket = server.connect().await;
    hello(&mut socket, Hello { token: Some(token), ..Hello::default() }).await;
    for text in FLOW.into_iter().chain(["yes"]) {
        say_all(&mut socket, text).await;
    }
    // A follow-up scheduled after Ann's, for another shopper.
    shop(&server, "bo@example.com").await;

    let messages = smtp.wait_for(2, Duration::from_secs(20));
    let mut to: Vec<&str> = messages.iter().map(rcpt).collect();
    to.sort();
    assert_eq!(to, ["ann@example.com", "bo@example.com"], "both delivered, and to nobody else");
    let ann = messages.iter().find(|m| rcpt(m) == "ann@example.com").expect("Ann's email");
    let header_to = header(ann, "to");
    assert!(!header_to.contains('\n') && !header_to.contains('\r'), "{header_to:?}");
    assert!(header(ann, "bcc").is_empty(), "no header was injected");
    assert_eq!(ann["rcpt_tos"].as_array().map(Vec::len), Some(1));
    let (status, _, body) = get(format!("{url}/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    assert_eq!(metric(&server, "nudge_outbox_running").await, 1);
}

#[tokio::test]
async fn an_address_typed_in_the_chat_is_confirmed_before_any_marketing_email() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    let config = format!("smtp_url = \"{}\"\n", smtp.smtp_url());
    let mut server = TestServer::spawn_configured(dir.path(), &quick_pack(dir.path()), &config);
    let (visitor, key) = shop(&server, "ana@example.com").await;

    // The first email asks to confirm; the follow-up due a second later is not sent.
    let first = smtp.wait_for(1, Duration::from_secs(20));
    assert_eq!(rcpt(&first[0]), "ana@example.com");
    assert_eq!(header(&first[0], "subject"), "Please confirm your email address");
    let text = first[0]["text"].as_str().expect("a text part");
    let prefix = format!("{}/v/", server.url());
    let link = text.split_whitespace().find(|w| w.starts_with(&prefix)).expect("a confirmation link").to_string();
    wait_for_metric(&server, "nudge_outbox_skipped_total", 1).await;
    assert_eq!(smtp.messages().len(), 1, "no marketing email before the confirmation");

    // GET only asks (mail scanners follow links); the POST confirms.
    let (status, _, page) = get(link.clone()).await;
    assert_eq!(status, 200);
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert_eq!(post(link.clone(), None, "application/x-www-form-urlencoded", String::new()).await.0, 200);
    let (status, _) = post(format!("{}/v/not-a-token", server.url()), None, "text/plain", String::new()).await;
    assert_eq!(status, 400);

    // Confirmed: the next follow-up goes out, and no second confirmation is asked.
    let mut socket = server.connect().await;
    hello(&mut socket, resume(&visitor, &key)).await;
    say_all(&mut socket, "I'm looking for boots").await;
    let all = smtp.wait_for(2, Duration::from_secs(20));
    assert_eq!(all.len(), 2);
    assert!(header(&all[1], "subject").contains("boots"), "{}", header(&all[1], "subject"));
    drop(socket);
    server.kill();
    let store = crate::backend::open_store(&server.data).expect("store");
    let profile = store.visitor(&VisitorId::parse(&visitor).expect("id")).expect("read").expect("visitor");
    let confirmed = profile.confirmed.expect("the confirmation is recorded");
    assert_eq!((confirmed.email.as_str(), confirmed.source.as_str()), ("ana@example.com", "confirmation link"));
    let skipped: Vec<_> =
        emails(&store).into_iter().filter(|i| matches!(i.state, OutboxState::Skipped { .. })).collect();
    assert!(
        matches!(&skipped[0].state, OutboxState::Skipped { reason, .. } if reason.contains("not confirmed")),
        "{skipped:?}"
    );
}

/// One marketing email a day at most, and none in the shopper's quiet hours: a follow-up that
/// hits either waits (it is not dropped) until the limit allows it.
#[tokio::test]
async fn the_daily_cap_and_the_shoppers_quiet_hours_hold_follow_ups_back() {
    use jiff::{Timestamp, tz::TimeZone};
    let dir = tempfile::tempdir().expect("dir");
    let mut smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    // Quiet from this hour to two hours later in Kolkata (UTC+5:30); in the shop's zone (UTC)
    // it is not quiet now, so only the shopper's zone can hold an email back.
    let kolkata = Timestamp::now().to_zoned(TimeZone::get("Asia/Kolkata").expect("zone"));
    let (from, to) = (kolkata.hour(), (kolkata.hour() + 2) % 24);
    let config = format!(
        "smtp_url = \"{}\"\nquiet_hours = \"{from:02}:00-{to:02}:00\"\ntimezone = \"UTC\"\n{NO_DOUBLE_OPT_IN}",
        smtp.smtp_url()
    );
    let mut server = TestServer::start_configured(dir.path(), &quick_pack(dir.path()), &config);

    // Ana (no time zone from her widget: the shop's) gets her first follow-up; the second one
    // the same day waits for the cap.
    let (ana, key) = shop(&server, "ana@example.com").await;
    assert_eq!(smtp.wait_for(1, Duration::from_secs(20)).len(), 1);
    let mut socket = server.connect().await;
    hello(&mut socket, resume(&ana, &key)).await;
    assert!(say_all(&mut socket, "now I need boots").await.concat().contains("Here's what I noted: boots"));
    // Bo's widget says Kolkata, where it is quiet now.
    let mut bo = server.connect().await;
    let hello_bo = Hello { timezone: Some("Asia/Kolkata".into()), ..Hello::default() };
    let Welcomed { visitor: bo_id, .. } = welcome(&mut bo, hello_bo).await;
    for text in FLOW.into_iter().chain(["bo@example.com", "yes"]) {
        say_all(&mut bo, text).await;
    }
    // Both due a second later: the worker looks, and holds them back.
    server.advance(Duration::from_secs(5)).await;
    assert_eq!(smtp.messages().len(), 1, "neither the second email nor Bo's went out");
    server.stop();

    let store = crate::backend::open_store(&server.data).expect("store");
    let items = emails(&store);
    let of =
        |visitor: &str| -> Vec<&OutboxItem> { items.iter().filter(|i| i.visitor.to_string() == visitor).collect() };
    let ana_items = of(&ana);
    let sent_at = ana_items.iter().find_map(|i| match i.state {
        OutboxState::Sent { at } => Some(at),
        _ => None,
    });
    let waiting = ana_items.iter().find(|i| i.state == OutboxState::Pending).expect("the second follow-up waits");
    assert_eq!(waiting.last_error.as_deref(), Some("waiting: at most 1 marketing email(s) a day"));
    assert_eq!(Some(waiting.due_at), sent_at.map(|at| at + 24 * 3_600_000), "due when the first is a day old");
    let bo_item = of(&bo_id).into_iter().find(|i| i.state == OutboxState::Pending).expect("Bo's follow-up waits");
    assert_eq!(bo_item.last_error.as_deref(), Some("waiting: quiet hours in Asia/Kolkata"));
    let due = Timestamp::from_millisecond(bo_item.due_at as i64)
        .expect("ms")
        .to_zoned(TimeZone::get("Asia/Kolkata").expect("zone"));
    assert_eq!((due.hour(), due.minute()), (to, 0), "due when the quiet hours end in Kolkata");
    assert_eq!(bo_item.attempts, 0, "waiting spends no attempt");
    smtp.stop();
}
