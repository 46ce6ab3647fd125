//! Journeys through a real SMTP server: the starter pack's cart abandonment, browse abandonment
//! and welcome, with waits shortened to seconds; what the admin reports of them.

use std::path::Path;
use std::time::Duration;

use nudge::domain::{Job, OutboxState};
use nudge::protocol::{ClientFrame, Consent, Hello, ServerFrame};
use serde_json::json;

use crate::helpers::*;
use crate::receivers::{Receiver, free_port, header, rcpt};

/// The starter pack with its journeys' waits in seconds: the cart reminder after 1 s, the last
/// call 6 s later, the browse reminder after 1 s; `welcome` waits `welcome`.
fn quick_journeys(dir: &Path, welcome: &str) -> std::path::PathBuf {
    copy_starter_pack(dir, |text| {
        if !text.contains("[[journey]]") {
            return text.to_string();
        }
        // And one journey an intent enters: asking for a person tags the visitor.
        let asked = "\n[[journey]]\nid = \"asked\"\nintent = \"human\"\n\n[[journey.step]]\nafter = \"0s\"\ntag = \"asked_for_a_person\"\n";
        text.replace("after = \"1h\"", "after = \"1s\"")
            .replace("after = \"23h\"", "after = \"6s\"")
            .replace("after = \"2h\"", "after = \"1s\"")
            .replace("after = \"30min\"", &format!("after = \"{welcome}\""))
            + asked
    })
}

fn config(smtp: &Receiver, cap: u32) -> String {
    format!(
        "smtp_url = \"{}\"\ndouble_opt_in = false\njourney_sweep_secs = 1\nmax_marketing_emails_per_day = {cap}\n",
        smtp.smtp_url()
    )
}

/// A shopper who goes through the shoe flow to the checkout link with `email` and consent.
async fn cart_abandoner(server: &TestServer, email: &str) -> String {
    let mut socket = server.connect().await;
    let (visitor, ..) = hello(&mut socket, Hello::default()).await;
    for text in ["I'm looking for sneakers", "42", "black", "120", email, "yes"] {
        say_all(&mut socket, text).await;
    }
    visitor
}

/// A shopper from an email link (so the address is known) with marketing consent, who says what
/// they want and goes no further.
async fn browser(server: &TestServer, email: &str) -> String {
    let data = server.data.to_str().expect("utf-8").to_string();
    let (code, link, err) = run_nudge(&["link", "--email", email, "--data", &data, "--public-url", &server.url()]);
    assert_eq!(code, 0, "{err}");
    let (_, location, _) = get(link.trim().to_string()).await;
    let token = location.strip_prefix("/chat?nudge=").expect("token").to_string();
    let mut socket = server.connect().await;
    let consent = Some(Consent { marketing: true, ads: false });
    let (visitor, ..) = hello(&mut socket, Hello { token: Some(token), consent, ..Hello::default() }).await;
    say_all(&mut socket, "I'm looking for boots").await;
    visitor
}

fn link_in(mail: &serde_json::Value, prefix: &str) -> String {
    let text = mail["text"].as_str().expect("a text part");
    text.split_whitespace().find(|w| w.starts_with(prefix)).expect("a tracked link").to_string()
}

#[tokio::test]
async fn a_cart_abandoner_is_reminded_until_they_buy_and_a_browser_gets_the_browse_email() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), &quick_journeys(dir.path(), "1h"), &config(&smtp, 0));
    let cara = cart_abandoner(&server, "cara@example.com").await;
    browser(&server, "ben@example.com").await;

    let first = smtp.wait_for(2, Duration::from_secs(30));
    let to = |mail: &serde_json::Value| rcpt(mail).to_string();
    let reminder = first.iter().find(|m| to(m) == "cara@example.com").expect("the cart reminder");
    assert_eq!(header(reminder, "subject"), "You left something behind: your sneakers");
    let browse = first.iter().find(|m| to(m) == "ben@example.com").expect("the browse reminder");
    assert_eq!(header(browse, "subject"), "Still looking for boots?");

    // Cara opens the reminder, clicks through and buys: the last call is not sent.
    let html = reminder["html"].as_str().expect("html");
    let pixel = html.split("<img src=\"").nth(1).and_then(|rest| rest.split('"').next()).expect("a pixel");
    assert_eq!(get(pixel.to_string()).await.0, 200);
    assert_eq!(get(link_in(reminder, &format!("{}/l/", server.url()))).await.0, 303);
    let order = json!({ "order_id": "J-1", "visitor": cara, "value": 99.0, "currency": "EUR" }).to_string();
    let key = api_key(&server.data);
    let (status, body) = post(format!("{}/api/conversions", server.url()), Some(key), "application/json", order).await;
    assert_eq!(status, 201, "{body}");
    // The last call is due 6 s after the reminder.
    server.advance(Duration::from_secs(8)).await;
    let all = smtp.messages();
    assert_eq!(
        all.len(),
        2,
        "no last call after the order, nothing else: {:?}",
        all.iter().map(to).collect::<Vec<_>>()
    );

    let cookie = login_as(&server, PASSWORD, "Maria").await;
    let (status, _, body) = get_with(format!("{}/admin/api/journeys", server.url()), &cookie).await;
    assert_eq!(status, 200, "{body}");
    let report: serde_json::Value = serde_json::from_str(&body).expect("json");
    let journey =
        |id: &str| report["journeys"].as_array().expect("journeys").iter().find(|j| j["journey"] == id).cloned();
    let cart = journey("cart_abandonment").expect("cart abandonment");
    assert_eq!(cart["entered"], 1);
    let step = |n: usize, key: &str| cart["steps"][n][key].clone();
    assert_eq!((step(0, "sent"), step(0, "opened"), step(0, "clicked")), (json!(1), json!(1), json!(1)));
    assert_eq!((step(0, "converted"), step(0, "revenue")), (json!(1), json!(99.0)));
    assert_eq!((step(1, "sent"), step(1, "ended")), (json!(0), json!(1)), "the run ended at the last call");
    assert!(step(0, "variants")[0]["probability_best"].is_number(), "{cart}");
    let browse = journey("browse_abandonment").expect("browse abandonment");
    assert_eq!((browse["entered"].clone(), browse["steps"][0]["sent"].clone()), (json!(1), json!(1)));
    let (_, _, segments) = get_with(format!("{}/admin/api/segments", server.url()), &cookie).await;
    let segments: serde_json::Value = serde_json::from_str(&segments).expect("json");
    let size = |id: &str| {
        segments["segments"]
            .as_array()
            .expect("segments")
            .iter()
            .find(|s| s["segment"] == id)
            .map(|s| s["size"].clone())
    };
    assert_eq!(
        (size("browsers"), size("cart_abandoners"), size("subscribers")),
        (Some(json!(1)), Some(json!(0)), Some(json!(2)))
    );
    // The segment's members, and the audience export of a segment.
    let (_, _, page) = get_with(format!("{}/admin?segment=browsers&visitors=all", server.url()), &cookie).await;
    assert!(page.contains("ben@example.com") && !page.contains("cara@example.com"), "{page}");
    let (status, _, _) = get_with(format!("{}/admin?segment=nobody", server.url()), &cookie).await;
    assert_eq!(status, 400, "an unknown segment");

    // An intent that enters a journey: its step runs after the answer.
    let mut socket = server.connect().await;
    let (dora, ..) = hello(&mut socket, Hello::default()).await;
    assert_eq!(say(&mut socket, "I want to talk to a human").await.intent, "human");
    let mut tagged = false;
    for _ in 0..100 {
        let (_, _, body) = get_with(format!("{}/admin/api/leads", server.url()), &cookie).await;
        let leads: serde_json::Value = serde_json::from_str(&body).expect("json");
        let lead = leads["leads"].as_array().expect("leads").iter().find(|l| l["id"] == dora.as_str()).cloned();
        if lead.is_some_and(|l| l["tags"].as_array().is_some_and(|t| t.iter().any(|t| t == "asked_for_a_person"))) {
            tagged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(tagged, "the journey entered by the `human` intent tagged the visitor");
}

#[tokio::test]
async fn the_daily_cap_holds_across_journeys() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    // Ben is a subscriber and a browser: welcome and browse reminder fall due together.
    let mut server = TestServer::start_configured(dir.path(), &quick_journeys(dir.path(), "1s"), &config(&smtp, 1));
    browser(&server, "ben@example.com").await;
    let sent = smtp.wait_for(1, Duration::from_secs(30));
    server.advance(Duration::from_secs(4)).await;
    assert_eq!(smtp.messages().len(), 1, "one marketing email a day, whichever journey: {sent:?}");
    server.stop();
    let store = crate::backend::open_store(&server.data).expect("store");
    let steps: Vec<_> =
        store.follow_ups().filter_map(Result::ok).filter(|item| matches!(item.job, Job::Journey { .. })).collect();
    let held: Vec<_> = steps
        .iter()
        .filter(|i| i.state == OutboxState::Pending && i.last_error.as_deref().is_some_and(|e| e.contains("a day")))
        .collect();
    assert_eq!((steps.len(), held.len()), (2, 1), "the other waits for tomorrow: {steps:?}");
}

#[tokio::test]
async fn killed_at_random_moments_every_due_step_is_delivered_and_none_twice_beyond_the_one_in_flight() {
    let mut seed = nudge::now_ms();
    eprintln!("kill-point seed {seed}");
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    // One two-step journey for every subscriber.
    let drip = "[[segment]]\nid = \"subscribers\"\nemail = true\nmarketing = true\n\n\
                [[journey]]\nid = \"drip\"\nsegment = \"subscribers\"\n\n\
                [[journey.step]]\nafter = \"0s\"\nemail = \"welcome\"\n\n\
                [[journey.step]]\nafter = \"2s\"\nemail = \"win_back\"\n";
    let intents =
        copy_starter_pack(dir.path(), |text| if text.contains("[[journey]]") { drip.into() } else { text.into() });
    let config = format!("{}outbox_lease_secs = 2\nmail_retry_secs = 1\n", config(&smtp, 0));
    let mut server = TestServer::spawn_configured(dir.path(), &intents, &config);
    let mut shoppers = Vec::new();
    for i in 0..8 {
        let email = format!("s{i}@example.com");
        browser(&server, &email).await;
        shoppers.push(email);
    }
    const KILLS: usize = 4;
    for round in 0..KILLS {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let delay = 100 + (seed >> 33) % 700;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill();
        eprintln!("round {round}: killed after {delay} ms; {} messages so far", smtp.messages().len());
        server = TestServer::spawn_configured(dir.path(), &intents, &config);
    }
    let delivered = |to: &str, subject: &str| {
        smtp.messages().iter().filter(|m| rcpt(m) == to && header(m, "subject").starts_with(subject)).count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while !shoppers.iter().all(|s| delivered(s, "Welcome") > 0 && delivered(s, "We miss you") > 0)
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A step a killed server sent but could not mark sent is sent again once its lease (2 s)
    // runs out: wait out a lease and a retry before looking, or it is still pending.
    tokio::time::sleep(Duration::from_secs(4)).await;
    server.kill();

    let messages = smtp.messages();
    let store = crate::backend::open_store(&server.data).expect("store");
    let steps: Vec<_> =
        store.follow_ups().filter_map(Result::ok).filter(|item| matches!(item.job, Job::Journey { .. })).collect();
    for shopper in &shoppers {
        assert!(
            delivered(shopper, "Welcome") >= 1 && delivered(shopper, "We miss you") >= 1,
            "both steps to {shopper}"
        );
    }
    assert_eq!(steps.len(), 2 * shoppers.len(), "one run per shopper, two steps each");
    let mut ids: Vec<&str> = messages.iter().map(|m| header(m, "message-id")).collect();
    ids.sort();
    ids.dedup();
    for item in &steps {
        assert!(matches!(item.state, OutboxState::Sent { .. }), "{:?}", item.state);
        assert!(ids.contains(&format!("<{}@127.0.0.1>", item.id).as_str()), "{} sent but not received", item.id);
    }
    assert_eq!(ids.len(), steps.len(), "every message received is a step of the outbox");
    let resent = messages.len() - ids.len();
    assert!(resent <= KILLS, "{resent} resends after {KILLS} kills");
    eprintln!("{} steps delivered, {resent} resent after a kill", steps.len());
}

#[tokio::test]
async fn the_learned_lead_score_is_fitted_from_the_stores_own_outcomes() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let likely = "\n[[segment]]\nid = \"likely\"\nmin_buy_probability = 0.3\n\n\
                  [[segment]]\nid = \"sure\"\nmin_buy_probability = 0.99\n";
    let intents = copy_starter_pack(dir.path(), |text| {
        if text.contains("[[journey]]") { format!("{text}{likely}") } else { text.to_string() }
    });
    let server = TestServer::start_configured(dir.path(), &intents, &config(&smtp, 0));
    let cookie = login_as(&server, PASSWORD, "Maria").await;
    let segments = || async {
        let (_, _, body) = get_with(format!("{}/admin/api/segments", server.url()), &cookie).await;
        serde_json::from_str::<serde_json::Value>(&body).expect("json")
    };
    assert!(segments().await["learned"].is_null(), "no outcomes yet, no model");

    let key = api_key(&server.data);
    for i in 0..10 {
        let visitor = browser(&server, &format!("l{i}@example.com")).await;
        if i < 5 {
            let order = json!({ "order_id": format!("L-{i}"), "visitor": visitor, "value": 50.0, "currency": "EUR" });
            let url = format!("{}/api/conversions", server.url());
            assert_eq!(post(url, Some(key.clone()), "application/json", order.to_string()).await.0, 201);
        }
    }
    let mut learned = serde_json::Value::Null;
    for _ in 0..100 {
        learned = segments().await;
        // The sweep refits every second: wait for a fit that saw every order.
        if learned["learned"]["visitors"] == 10 && learned["learned"]["buyers"] == 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((learned["learned"]["visitors"].clone(), learned["learned"]["buyers"].clone()), (json!(10), json!(5)));
    let size = |id: &str| {
        learned["segments"].as_array().expect("segments").iter().find(|s| s["segment"] == id).map(|s| s["size"].clone())
    };
    // Everyone looks alike here, so everyone is about as likely to buy as the half who did.
    assert_eq!((size("likely"), size("sure")), (Some(json!(10)), Some(json!(0))));
    let (_, _, body) = get_with(format!("{}/admin/api/leads", server.url()), &cookie).await;
    let leads: serde_json::Value = serde_json::from_str(&body).expect("json");
    let p = leads["leads"][0]["buy_probability"].as_f64().expect("a probability beside the rule score");
    assert!((0.3..0.7).contains(&p), "{p}");
    let (_, _, page) = get_with(format!("{}/admin?visitors=all", server.url()), &cookie).await;
    assert!(page.contains("% to buy"), "{page}");
}

/// Follows an email's link (tracked `/l/`, or `/c/`) to the chat: the `/chat?nudge=` token.
async fn landing_token(link: &str) -> String {
    let mut url = link.to_string();
    for _ in 0..3 {
        let (status, location, _) = get(url.clone()).await;
        assert_eq!(status, 303, "{url}");
        if let Some(token) = location.strip_prefix("/chat?nudge=") {
            return token.to_string();
        }
        url = location;
    }
    panic!("{link} never lands on /chat");
}

/// Says hello with an email link's token; every frame until the socket is quiet.
async fn open_link(server: &TestServer, token: &str) -> Vec<ServerFrame> {
    let mut socket = server.connect().await;
    send(&mut socket, ClientFrame::Hello(Hello { token: Some(token.into()), ..Hello::default() })).await;
    let mut frames = Vec::new();
    while let Ok(Ok(frame)) = tokio::time::timeout(Duration::from_millis(700), nudge::client::recv(&mut socket)).await {
        frames.push(frame);
    }
    frames
}

fn texts(frames: &[ServerFrame]) -> Vec<String> {
    frames
        .iter()
        .filter_map(|f| match f {
            ServerFrame::Reply(r) => Some(r.text.clone()),
            ServerFrame::Error { message, .. } => Some(format!("error: {message}")),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_open_question_comes_by_email_and_its_buttons_answer_it() {
    let dir = tempfile::tempdir().expect("dir");
    let smtp = Receiver::smtp(free_port(), &dir.path().join("smtp"));
    let config = format!("{}unfinished_after_secs = 1\n", config(&smtp, 0));
    let mut server = TestServer::start_configured(dir.path(), Path::new("intents"), &config);
    // Ben (address and consent from an email link) leaves at the colour question.
    let ben = browser(&server, "ben@example.com").await;
    let mut socket = server.connect().await;
    let data = server.data.to_str().expect("utf-8").to_string();
    let (_, link, _) =
        run_nudge(&["link", "--email", "ben@example.com", "--data", &data, "--public-url", &server.url()]);
    let token = landing_token(link.trim()).await;
    hello(&mut socket, Hello { token: Some(token), ..Hello::default() }).await;
    let asked = say_all(&mut socket, "42").await;
    assert!(asked.last().is_some_and(|q| q.contains("Which colour")), "{asked:?}");
    drop(socket);

    let mail = smtp.wait_for(1, Duration::from_secs(20)).into_iter().next().expect("the unfinished chat email");
    assert_eq!(rcpt(&mail), "ben@example.com");
    assert_eq!(header(&mail, "subject"), "One quick question left about your boots");
    let text = mail["text"].as_str().expect("text");
    assert!(text.contains("Which colour would you like?"), "{text}");
    let button = |label: &str| {
        text.lines().find_map(|l| l.strip_prefix(&format!("{label}: "))).map(str::to_string).expect(label)
    };
    let html = mail["html"].as_str().expect("html");
    assert!(html.contains(">Black</a>") && html.contains(">White</a>"), "buttons in the HTML part: {html}");

    // Following "Black" answers the question as a tap would, and the chat asks for the budget.
    let black = landing_token(&button("Black")).await;
    let frames = open_link(&server, &black).await;
    let said = texts(&frames);
    assert!(said.last().is_some_and(|q| q.contains("budget")), "{said:?}");
    // The same link again records nothing; a button that no longer fits records nothing either.
    let again = texts(&open_link(&server, &black).await);
    assert!(again.iter().any(|t| t.contains("already used")), "{again:?}");
    let white = landing_token(&button("White")).await;
    let late = texts(&open_link(&server, &white).await);
    assert!(late.last().is_some_and(|q| q.contains("budget")), "the chat where it is: {late:?}");
    server.stop();

    let store = crate::backend::open_store(&server.data).expect("store");
    let profile = store.visitor(&nudge::ids::VisitorId::parse(&ben).expect("id")).expect("read").expect("ben");
    let colour = profile.preferences.get("colour").expect("the colour");
    assert_eq!(
        (colour.value.as_str(), colour.message.as_str()),
        ("black", "black"),
        "recorded with its source message"
    );
    let conversation = store.latest_conversation(&profile.id).expect("read").expect("conversation");
    let answers = store
        .transcript(&conversation.id)
        .expect("transcript")
        .into_iter()
        .filter(|e| e.from == nudge::domain::Speaker::Shopper && (e.text == "black" || e.text == "white"))
        .count();
    assert_eq!(answers, 1, "answered once");
}
