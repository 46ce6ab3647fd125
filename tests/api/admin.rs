//! `/admin` over real HTTP and in a real browser: the login and its cookie, the headers, and
//! what a marketer sees of a lead who chatted, was mailed and bought.

use std::path::Path;

use nudge::protocol::{ClientFrame, Consent, Hello, ServerFrame};
use serde_json::json;

use crate::helpers::*;
use crate::webdriver::Browser;

#[tokio::test]
async fn the_first_password_is_written_to_a_private_file_and_never_printed() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data", data.to_str().expect("utf-8")])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("nudge serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut printed = String::new();
    let mut addr = String::new();
    while let Some(Ok(line)) = lines.next() {
        printed.push_str(&line);
        printed.push('\n');
        if let Some(rest) = line.strip_prefix("nudge listening on http://") {
            addr = rest.to_string();
        }
        if line.starts_with("log in to") {
            break;
        }
    }
    let file = data.join("admin-password.txt");
    assert!(printed.contains(file.to_str().expect("utf-8")), "{printed}");
    for secret in ["link signing keys", "API key for POST /api/conversions", "webhook signing secret"] {
        assert!(printed.contains(secret), "the start-up message names every secret it made: {printed}");
    }
    let password = std::fs::read_to_string(&file).expect("the password file").trim().to_string();
    assert!(password.len() >= 12);
    assert!(!printed.contains(&password), "the password itself is not printed:\n{printed}");
    let mode = std::fs::metadata(&file).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let url = format!("http://{addr}/admin/login");
    let login = tokio::task::spawn_blocking(move || {
        let form = format!("password={password}").replace('+', "%2B").replace('/', "%2F");
        let request = http().post(&url).header("content-type", "application/x-www-form-urlencoded");
        let request = request.header("origin", &format!("http://{addr}"));
        request.send(form.as_bytes()).expect("POST").status().as_u16()
    });
    assert_eq!(login.await.expect("join"), 303, "the password in the file logs in");
    let _ = child.kill();
    let _ = child.wait();
    assert!(set_password(&data, PASSWORD).0);
    assert!(!file.exists(), "a new password removes the generated one's file");
}

#[tokio::test]
async fn admin_needs_a_login_and_its_session_cookie_is_locked_down() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    assert_eq!(
        set_password(&data, "eleven char"),
        (false, "error: the admin password needs at least 12 characters\n".into())
    );
    assert!(set_password(&data, PASSWORD).0);
    let config = "public_url = \"https://chat.shop.example\"\n";
    let mut server = TestServer::start_configured(dir.path(), Path::new("intents"), config);

    // Nothing without a session.
    let (status, location, _) = get(format!("{}/admin", server.url())).await;
    assert_eq!((status, location.as_str()), (303, "/admin/login"));
    for path in [
        "/admin/api/leads",
        "/admin/api/funnel",
        "/admin/export/leads.csv",
        "/admin/export/audience.csv?platform=google",
    ] {
        let (status, _, body) = get(format!("{}{path}", server.url())).await;
        assert_eq!(status, 401, "{path}");
        assert!(body.contains("log in at /admin/login"), "{path}: {body}");
    }
    assert_eq!(login(&server, "wrong password", None).await.0, 401);
    assert_eq!(login(&server, PASSWORD, Some("https://evil.example")).await.0, 403, "a login posted from another site");
    let form = "password=correct+horse+battery".to_string();
    let login_url = format!("{}/admin/login", server.url());
    let urlencoded = "application/x-www-form-urlencoded";
    assert_eq!(
        post(login_url.clone(), None, urlencoded, form.clone()).await.0,
        403,
        "a POST without Origin or Referer"
    );
    let referred = tokio::task::spawn_blocking(move || {
        let request = http().post(&login_url).header("content-type", urlencoded);
        let request = request.header("referer", "https://chat.shop.example/admin/login");
        request.send("password=wrong".as_bytes()).expect("POST").status().as_u16()
    });
    assert_eq!(referred.await.expect("join"), 401, "our own page named by Referer passes the origin check");

    let (status, set_cookie) = login(&server, PASSWORD, Some("https://chat.shop.example")).await;
    assert_eq!(status, 303);
    for flag in ["Path=/admin", "HttpOnly", "SameSite=Strict", "Secure", "Max-Age=43200"] {
        assert!(set_cookie.contains(flag), "{flag} in {set_cookie}");
    }
    let cookie = session(&set_cookie);
    let (status, headers, body) = get_with(format!("{}/admin", server.url()), &cookie).await;
    assert_eq!(status, 200);
    assert!(body.contains("<h1>Leads</h1>"), "{body}");
    for header in [
        "x-frame-options: DENY",
        "x-content-type-options: nosniff",
        "cache-control: no-store",
        "referrer-policy: same-origin",
        "frame-ancestors 'none'",
    ] {
        assert!(headers.contains(header), "{header} in\n{headers}");
    }
    assert!(!headers.contains("script-src"), "no scripts on admin pages:\n{headers}");
    let tampered = format!("{}x", cookie);
    assert_eq!(get_with(format!("{}/admin", server.url()), &tampered).await.0, 303, "a tampered cookie");

    // Logging out ends the session itself: the same cookie, copied before, is refused.
    let (_, fresh) = login(&server, PASSWORD, None).await;
    let copied = session(&fresh);
    assert_eq!(get_with(format!("{}/admin", server.url()), &copied).await.0, 200);
    assert_eq!(post_with(format!("{}/admin/logout", server.url()), &copied, "").await.0, 303);
    assert_eq!(get_with(format!("{}/admin", server.url()), &copied).await.0, 303, "a copied cookie after logout");
    assert_eq!(get_with(format!("{}/admin", server.url()), &cookie).await.0, 200, "other sessions go on");

    // Guessing is slowed down: a burst of attempts, then 429.
    let mut limited = false;
    for _ in 0..12 {
        limited |= login(&server, "guess guess guess", None).await.0 == 429;
    }
    assert!(limited, "a burst of wrong passwords is rate-limited");

    // A new password ends every session.
    server.stop();
    assert!(set_password(&data, "another long password").0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), config);
    assert_eq!(get_with(format!("{}/admin", server.url()), &cookie).await.0, 303, "the old session is over");
}

/// A lead who came from an email link, chatted through the flow with consent, and bought.
async fn converted_lead(server: &TestServer) -> String {
    let data = server.data.to_str().expect("utf-8").to_string();
    let (code, link, err) = run_nudge(&[
        "link",
        "--email",
        "ana@example.com",
        "--name",
        "<b>Ana</b>",
        "--campaign",
        "spring",
        "--data",
        &data,
        "--public-url",
        &server.url(),
    ]);
    assert_eq!(code, 0, "{err}");
    let (_, location, _) = get(link.trim().to_string()).await;
    let token = location.strip_prefix("/chat?nudge=").expect("token").to_string();
    let mut socket = server.connect().await;
    let consent = Some(Consent { marketing: true, ads: true });
    let (visitor, ..) = hello(&mut socket, Hello { token: Some(token), consent, ..Hello::default() }).await;
    for text in ["I'm looking for sneakers", "42", "black", "120", "yes"] {
        say_all(&mut socket, text).await;
    }
    let order = json!({ "order_id": "A-7", "visitor": visitor, "value": 99.5, "currency": "EUR" }).to_string();
    let key = api_key(&server.data);
    let (status, body) = post(format!("{}/api/conversions", server.url()), Some(key), "application/json", order).await;
    assert_eq!(status, 201, "{body}");
    visitor
}

#[tokio::test]
async fn admin_shows_what_the_shopper_told_us_and_exports_it() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let visitor = converted_lead(&server).await;
    let cookie = session(&login(&server, PASSWORD, None).await.1);
    let page = |path: &str| get_with(format!("{}{path}", server.url()), &cookie);

    let (_, _, leads) = page("/admin").await;
    assert!(leads.contains("ana@example.com") && leads.contains("size: <strong>42</strong>"), "{leads}");
    assert!(leads.contains("interest:sneakers") && leads.contains("converted"), "{leads}");
    assert!(
        page("/admin?status=converted&campaign=spring&tag=interest%3Asneakers").await.2.contains("ana@example.com")
    );
    for filter in ["status=chatting", "campaign=autumn", "tag=cart_abandoner"] {
        assert!(!page(&format!("/admin?{filter}")).await.2.contains("ana@example.com"), "{filter}");
    }
    assert_eq!(page("/admin?status=happy").await.0, 400);

    let (_, _, lead) = page(&format!("/admin/leads/{visitor}")).await;
    assert!(lead.contains("&lt;b&gt;Ana&lt;/b&gt;") && !lead.contains("<b>Ana</b>"), "names are text, not markup");
    assert!(lead.contains("I'm looking for sneakers") && lead.contains("lead_summary"), "the transcript: {lead}");
    assert!(lead.contains("your_selection") && lead.contains("cancelled: converted"), "the follow-up: {lead}");
    assert_eq!(page("/admin/leads/00000000000000000000000000000000").await.0, 404);

    let (_, _, funnel) = page("/admin/api/funnel").await;
    let funnel: serde_json::Value = serde_json::from_str(&funnel).expect("json");
    let spring =
        funnel["campaigns"].as_array().expect("campaigns").iter().find(|c| c["campaign"] == "spring").expect("spring");
    assert_eq!(
        (spring["visitors"].as_u64(), spring["converted"].as_u64(), spring["revenue"].as_f64()),
        (Some(1), Some(1), Some(99.5))
    );
    let today = nudge::export::rfc3339(nudge::now_ms())[..10].to_string();
    assert_eq!(funnel["daily"], json!([{ "date": today, "orders": 1, "revenue": 99.5 }]), "conversions by day");
    let page_html = page("/admin/funnel").await.2;
    assert!(page_html.contains("<td>spring</td>") && page_html.contains("Orders by day"), "{page_html}");

    // Ad spend: reported twice (the second time with a corrected figure), it counts once.
    let spend = format!("{}/api/spend", server.url());
    let key = Some(api_key(&server.data));
    let rows = |meta: f64| {
        serde_json::json!([
            { "date": "2026-11-30", "campaign": "spring", "platform": "meta", "amount": meta, "currency": "EUR" },
            { "date": "2026-11-30", "campaign": "spring", "platform": "google", "amount": 14.75, "currency": "EUR" },
        ])
        .to_string()
    };
    assert_eq!(post(spend.clone(), key.clone(), "application/json", rows(40.0)).await.0, 200);
    let (status, body) = post(spend.clone(), key.clone(), "application/json", rows(35.0)).await;
    assert_eq!((status, body["rows"].as_u64()), (200, Some(2)), "{body}");
    for (bad, reason) in [
        (
            r#"[{"date":"2026-11-31","campaign":"spring","platform":"meta","amount":1,"currency":"EUR"}]"#,
            "row 1: `date`",
        ),
        (
            r#"[{"date":"2026-11-30","campaign":"spring","platform":"meta","amount":1,"currency":"EUR"},
             {"date":"2026-11-30","campaign":"spring","platform":"meta","amount":-5,"currency":"EUR"}]"#,
            "row 2: `amount`",
        ),
        (
            r#"[{"date":"2026-11-30","campaign":"spring","platform":"meta","amount":1,"currency":"XYZ"}]"#,
            "row 1: `currency`",
        ),
        (r#"[{"date":"2026-11-30","campaign":"spring"}]"#, "row 1: missing field"),
        (r#"{"date":"2026-11-30"}"#, "JSON array"),
    ] {
        let (status, body) = post(spend.clone(), key.clone(), "application/json", bad.to_string()).await;
        assert_eq!(status, 400, "{bad}");
        assert!(body["error"].as_str().is_some_and(|e| e.contains(reason)), "{bad}: {body}");
    }
    assert_eq!(post(spend.clone(), None, "application/json", rows(1.0)).await.0, 401);
    let (_, _, funnel) = page("/admin/api/funnel").await;
    let funnel: serde_json::Value = serde_json::from_str(&funnel).expect("json");
    let spring =
        funnel["campaigns"].as_array().expect("campaigns").iter().find(|c| c["campaign"] == "spring").expect("spring");
    assert_eq!(spring["spend"].as_f64(), Some(49.75), "the corrected row replaced the first; bad rows stored nothing");
    assert_eq!(spring["roas"].as_f64(), Some(99.5 / 49.75), "revenue over spend: 2.0");
    assert_eq!(spring["cost_per_conversion"].as_f64(), Some(49.75));
    assert_eq!(spring["currency"].as_str(), Some("EUR"));
    assert!(page("/admin/funnel").await.2.contains("<td>2.00</td>"), "ROAS on the page");
    assert!(page("/admin/emails").await.2.contains("cancelled: converted"));
    let (_, _, tried) = page("/admin/try?q=do+you+ship+to+Austria%3F").await;
    assert!(tried.contains("<strong>shipping_options</strong>"), "{tried}");

    let (status, headers, csv) = page("/admin/export/leads.csv?campaign=spring").await;
    assert_eq!(status, 200);
    assert!(headers.contains("attachment; filename=\"leads.csv\""), "{headers}");
    assert!(csv.lines().nth(1).is_some_and(|row| row.contains("ana@example.com") && row.contains("A-7")), "{csv}");
    // SHA-256 of "ana@example.com" (`echo -n ana@example.com | sha256sum`).
    let hashed = "8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11";
    let (_, headers, google) = page("/admin/export/audience.csv?platform=google").await;
    assert_eq!(google.lines().collect::<Vec<_>>(), ["Email", hashed]);
    assert!(headers.contains("filename=\"audience-google-all.csv\""), "named by platform: {headers}");
    let (_, headers, meta) = page("/admin/export/audience.csv?platform=meta&tag=interest%3Asneakers").await;
    assert_eq!(meta.lines().collect::<Vec<_>>(), ["email", hashed]);
    assert!(headers.contains("filename=\"audience-meta-interest_sneakers.csv\""), "and filter: {headers}");
    let (status, headers, empty) = page("/admin/export/audience.csv?platform=meta&campaign=winter").await;
    assert_eq!(status, 200);
    assert!(!headers.contains("attachment") && empty.contains("consent to ads"), "says why it is empty: {empty}");
    assert_eq!(page("/admin/export/audience.csv?platform=tiktok").await.0, 400);
}

/// A server with a converted lead, and a browser `width` × `height` on its login page.
fn admin_in_browser(width: u32, height: u32) -> (tempfile::TempDir, TestServer, String, Browser) {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let visitor = tokio::runtime::Runtime::new().expect("runtime").block_on(converted_lead(&server));
    let browser = Browser::start(width, height);
    browser.goto(&format!("{}/admin", server.url()));
    browser.wait_for("the login form", "return document.querySelector('input[name=password]') !== null;");
    (dir, server, visitor, browser)
}

/// Logs in from the login page the browser shows, as a person would (Enter in the field).
fn log_in(browser: &Browser) {
    let password = browser.find("input[name=password]");
    browser.type_into(&password, &format!("{PASSWORD}\u{E007}"));
    browser.wait_for(
        "the leads",
        "return document.querySelector('h1') && document.querySelector('h1').textContent === 'Leads';",
    );
}

#[test]
fn a_marketer_logs_in_and_reads_a_transcript_in_the_browser() {
    let (_dir, server, _, browser) = admin_in_browser(1280, 900);
    log_in(&browser);
    let lead = browser.find("tbody a");
    assert_eq!(browser.js("return document.querySelector('tbody a').textContent;"), "ana@example.com");
    browser.click(&lead);
    browser.wait_for("the transcript", "return document.body.textContent.includes(\"I'm looking for sneakers\");");
    assert_eq!(browser.js("return document.title;"), "ana@example.com · Nudge admin");
    assert_eq!(browser.js("return document.querySelectorAll('b').length;"), 0, "no markup from the shopper's name");
    // The cookie is not readable by scripts.
    assert_eq!(browser.js("return document.cookie;"), "");

    // The funnel is drawn as well as tabled: an SVG chart with a title and a description, whose
    // bars (one per stage of the lead's campaign) the browser lays out within the chart.
    browser.goto(&format!("{}/admin/funnel", server.url()));
    browser.wait_for("the funnel chart", "return document.querySelector('svg[role=img] title') !== null;");
    assert_eq!(browser.js("return document.querySelector('svg title').textContent;"), "Funnel by campaign");
    assert!(
        browser
            .js("return document.querySelector('svg desc').textContent;")
            .as_str()
            .is_some_and(|d| d.contains("table"))
    );
    let widths = browser.js(
        "return [...document.querySelectorAll('svg rect')].slice(4).map(r => r.getBBox().width).filter(w => w > 1);",
    );
    let widths: Vec<f64> = widths.as_array().expect("bar widths").iter().filter_map(|w| w.as_f64()).collect();
    assert!(widths.len() >= 4 && widths.iter().all(|w| *w <= 460.0), "{widths:?}");

    // Each journey's steps are charted too, beside their table.
    browser.goto(&format!("{}/admin/journeys", server.url()));
    browser.wait_for("the journey charts", "return document.querySelectorAll('svg[role=img]').length >= 4;");
    let titles = browser.js("return [...document.querySelectorAll('svg title')].map(t => t.textContent);");
    assert!(titles.as_array().is_some_and(|t| t.iter().any(|t| t == "Steps of cart_abandonment")), "{titles}");
    assert!(browser.js("return document.querySelector('svg + table') !== null;").as_bool() == Some(true));
}

#[tokio::test]
async fn a_person_takes_a_chat_the_bot_is_quiet_until_they_hand_it_back() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let mut socket = server.connect().await;
    let Welcomed { visitor, key, .. } = welcome(&mut socket, Hello::default()).await;
    assert_eq!(say(&mut socket, "I want to talk to a human").await.intent, "human");
    let zoe = login_as(&server, PASSWORD, "Zoë Brandt").await;

    // The chat waits in the inbox, with a button to take it.
    let (_, _, inbox) = get_with(format!("{}/admin/handoffs", server.url()), &zoe).await;
    assert!(inbox.contains(&format!("/admin/leads/{visitor}/take")) && inbox.contains("<td>yes</td>"), "{inbox}");
    let lead_url = format!("{}/admin/leads/{visitor}", server.url());
    let (status, body) = post_with(format!("{lead_url}/take"), &zoe, "").await;
    assert_eq!(status, 303, "{body}");
    assert_eq!(recv(&mut socket).await, ServerFrame::Handoff { agent: Some("Zoë Brandt".into()) });
    let (_, _, inbox) = get_with(format!("{}/admin/handoffs", server.url()), &zoe).await;
    assert!(inbox.contains("<td>Zoë Brandt</td>") && !inbox.contains("/take"), "taken: {inbox}");

    // While Zoë Brandt has the chat, what the shopper writes reaches her and the bot says nothing.
    send(&mut socket, ClientFrame::Say { text: "do you have the Pegasus in 42?".into() }).await;
    assert_eq!(recv(&mut socket).await, ServerFrame::Received { agent: "Zoë Brandt".into() });
    let (status, body) =
        post_with(format!("{lead_url}/reply"), &zoe, "text=Hi%2C+Zoë Brandt+here.+Size+42+is+in+stock.").await;
    assert_eq!(status, 303, "{body}");
    let answer = reply(&mut socket).await;
    assert_eq!(
        (answer.intent.as_str(), answer.text.as_str(), answer.agent.as_deref()),
        ("agent", "Hi, Zoë Brandt here. Size 42 is in stock.", Some("Zoë Brandt"))
    );
    send(&mut socket, ClientFrame::Say { text: "Great, thanks Zoë Brandt!".into() }).await;
    assert_eq!(
        recv(&mut socket).await,
        ServerFrame::Received { agent: "Zoë Brandt".into() },
        "no \"happy to help\" from the bot"
    );
    let (_, _, live) = get_with(format!("{lead_url}/live"), &zoe).await;
    assert!(live.contains("<td>shopper</td><td>Great, thanks Zoë Brandt!</td>"), "{live}");
    assert!(live.contains("<td>agent</td><td>Hi, Zoë Brandt here. Size 42 is in stock.</td>"), "{live}");
    assert!(live.contains("Zoë Brandt has this chat"), "{live}");
    let (_, headers, page) = get_with(format!("{lead_url}?sent=1"), &zoe).await;
    assert!(page.contains("<strong>Sent.</strong>") && page.contains("src=\"/admin/live.js\""), "{page}");
    assert!(headers.contains("script-src 'self'"), "only the lead page may run our own script: {headers}");
    assert_eq!(post_with(format!("{lead_url}/reply"), &zoe, "text=").await.0, 400, "an empty message");

    // A reload while Zoë Brandt has the chat: she is still there, and no bot greeting.
    let mut again = server.connect().await;
    send(&mut again, ClientFrame::Hello(resume(&visitor, &key))).await;
    assert!(matches!(recv(&mut again).await, ServerFrame::Welcome { returning: true, .. }));
    assert_eq!(recv(&mut again).await, ServerFrame::Handoff { agent: Some("Zoë Brandt".into()) });
    drop(again);

    // Handed back, the bot answers again.
    assert_eq!(post_with(format!("{lead_url}/hand-back"), &zoe, "").await.0, 303);
    assert_eq!(recv(&mut socket).await, ServerFrame::Handoff { agent: None });
    assert_eq!(say(&mut socket, "thanks!").await.intent, "thanks");
    let (_, _, inbox) = get_with(format!("{}/admin/handoffs", server.url()), &zoe).await;
    assert!(!inbox.contains(&format!("/admin/leads/{visitor}")), "no longer waiting: {inbox}");

    drop(socket);
    let status = post_until(&format!("{lead_url}/reply"), &zoe, "text=still+there%3F", 409).await;
    assert_eq!(status, 409, "the shopper left: nothing is sent");
    let (_, _, leads) = get_with(format!("{}/admin/api/leads", server.url()), &zoe).await;
    let leads: serde_json::Value = serde_json::from_str(&leads).expect("json");
    let lead = leads["leads"].as_array().expect("leads").iter().find(|l| l["id"] == visitor.as_str()).cloned();
    assert_eq!(lead.expect("the lead")["agent"], serde_json::Value::Null, "and the chat was not taken");
}

#[test]
fn a_lead_page_shows_the_shoppers_messages_as_they_come() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (mut socket, visitor) = runtime.block_on(async {
        let mut socket = server.connect().await;
        let (visitor, ..) = hello(&mut socket, Hello::default()).await;
        assert_eq!(say(&mut socket, "I want to talk to a human").await.intent, "human");
        (socket, visitor)
    });
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("{}/admin", server.url()));
    let name = browser.find("input[name=name]");
    browser.type_into(&name, "Maria");
    log_in(&browser);
    browser.goto(&format!("{}/admin/leads/{visitor}", server.url()));
    browser.click(&browser.find("form[action$='/take'] button"));
    browser.wait_for("the chat taken", "return document.body.textContent.includes('Maria has this chat');");
    runtime.block_on(async {
        assert_eq!(recv(&mut socket).await, ServerFrame::Handoff { agent: Some("Maria".into()) });
        send(&mut socket, ClientFrame::Say { text: "are you there?".into() }).await;
        assert_eq!(recv(&mut socket).await, ServerFrame::Received { agent: "Maria".into() });
    });
    // No reload: live.js brings the message in.
    browser
        .wait_for("the new message", "return document.getElementById('live').textContent.includes('are you there?');");
    let text = browser.find("input[name=text]");
    browser.type_into(&text, "Yes, Maria here!\u{E007}");
    browser.wait_for("the confirmation", "return document.body.textContent.includes('Sent.');");
    let answer = runtime.block_on(reply(&mut socket));
    assert_eq!((answer.text.as_str(), answer.agent.as_deref()), ("Yes, Maria here!", Some("Maria")));
}

#[tokio::test]
async fn two_people_racing_to_take_one_chat_one_gets_it() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let mut socket = server.connect().await;
    let (visitor, ..) = hello(&mut socket, Hello::default()).await;
    assert_eq!(say(&mut socket, "can I speak to a person please").await.intent, "human");
    let (maria, jonas) = (login_as(&server, PASSWORD, "Maria").await, login_as(&server, PASSWORD, "Jonas").await);
    let take = format!("{}/admin/leads/{visitor}/take", server.url());
    // Taking, answering and handing back are POSTs behind the same-origin check.
    for action in ["take", "hand-back", "reply"] {
        let (url, cookie) = (format!("{}/admin/leads/{visitor}/{action}", server.url()), maria.clone());
        let status = tokio::task::spawn_blocking(move || {
            let request = http().post(&url).header("cookie", &cookie).header("origin", "https://evil.example");
            let request = request.header("content-type", "application/x-www-form-urlencoded");
            request.send("text=hi".as_bytes()).expect("POST").status().as_u16()
        });
        assert_eq!(status.await.expect("join"), 403, "{action} from another site");
    }
    let (status, _, _) = get(format!("{}/admin/leads/{visitor}/live", server.url())).await;
    assert_eq!(status, 401, "the live part needs a session too");
    let ((a, a_body), (b, b_body)) =
        tokio::join!(post_with(take.clone(), &maria, ""), post_with(take.clone(), &jonas, ""));
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [303, 409], "{a_body} {b_body}");
    let (winner, loser, loser_body) = if a == 303 { ("Maria", &jonas, b_body) } else { ("Jonas", &maria, a_body) };
    assert!(loser_body.contains(&format!("{winner} has this chat")), "{loser_body}");
    assert_eq!(recv(&mut socket).await, ServerFrame::Handoff { agent: Some(winner.into()) });
    // The loser cannot answer over the winner either; the winner can.
    let reply_url = format!("{}/admin/leads/{visitor}/reply", server.url());
    assert_eq!(post_with(reply_url.clone(), loser, "text=me+too").await.0, 409);
    let winner_cookie = if winner == "Maria" { &maria } else { &jonas };
    assert_eq!(post_with(reply_url, winner_cookie, "text=Hello!").await.0, 303);
    let answer = reply(&mut socket).await;
    assert_eq!((answer.text.as_str(), answer.agent.as_deref()), ("Hello!", Some(winner)), "only the winner's answer");
}

#[tokio::test]
async fn a_person_who_goes_quiet_no_longer_holds_the_chat() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "handoff_idle_secs = 900\n");
    let mut socket = server.connect().await;
    let (visitor, ..) = hello(&mut socket, Hello::default()).await;
    assert_eq!(say(&mut socket, "I want to talk to a human").await.intent, "human");
    let maria = login_as(&server, PASSWORD, "Maria").await;
    assert_eq!(post_with(format!("{}/admin/leads/{visitor}/take", server.url()), &maria, "").await.0, 303);
    assert_eq!(recv(&mut socket).await, ServerFrame::Handoff { agent: Some("Maria".into()) });
    server.clock().advance(std::time::Duration::from_secs(901));
    assert_eq!(say(&mut socket, "thanks!").await.intent, "thanks", "the bot answers again after handoff_idle_secs");
    let (_, _, inbox) = get_with(format!("{}/admin/handoffs", server.url()), &maria).await;
    assert!(inbox.contains(&format!("/admin/leads/{visitor}/take")), "waiting again: {inbox}");
}

#[tokio::test]
async fn leads_page_through_a_cursor_newest_first() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    assert!(set_password(&data, PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let mut visitors = Vec::new();
    for _ in 0..3 {
        let mut socket = server.connect().await;
        let (visitor, ..) = hello(&mut socket, nudge::protocol::Hello::default()).await;
        say(&mut socket, "do you ship to Austria?").await;
        visitors.push(visitor);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let cookie = session(&login(&server, PASSWORD, None).await.1);
    let api = |query: &str| get_with(format!("{}/admin/api/leads?{query}", server.url()), &cookie);
    let (status, _, body) = api("limit=2").await;
    assert_eq!(status, 200, "{body}");
    let first: serde_json::Value = serde_json::from_str(&body).expect("json");
    let ids = |page: &serde_json::Value| -> Vec<String> {
        page["leads"].as_array().expect("leads").iter().map(|l| l["id"].as_str().expect("id").to_string()).collect()
    };
    assert_eq!(ids(&first), [visitors[2].clone(), visitors[1].clone()], "seen last first");
    assert_eq!(first["total"], 3);
    let lead = &first["leads"][0];
    assert_eq!(
        (lead["status"].as_str(), lead["visits"].as_u64(), lead["locale"].as_str()),
        (Some("chatting"), Some(1), Some("en"))
    );
    assert!(lead["status_at"]["chatting"].is_u64() && lead["confirmed_email"].is_null(), "{lead}");
    let next = first["next"].as_str().expect("a next page").to_string();
    let (_, _, body) = api(&format!("limit=2&after={next}")).await;
    let second: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(ids(&second), [visitors[0].clone()]);
    assert!(second["next"].is_null(), "the last page");
    assert_eq!(api("after=yesterday").await.0, 400, "a cursor that is not one");
    let (_, _, page) = get_with(format!("{}/admin?limit=1&visitors=all", server.url()), &cookie).await;
    assert!(page.contains("Older leads") && page.contains("visitors=all"), "the next page keeps the toggle: {page}");
}

#[tokio::test]
async fn the_leads_list_counts_who_told_us_nothing_and_filters_by_where_leads_came_from() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "timezone = \"Europe/Berlin\"\n");
    let utm = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let from_ad = Hello {
        campaign: Some("demo".into()),
        utm: utm(&[("source", "newsletter"), ("medium", "email"), ("campaign", "spring")]),
        ..Hello::default()
    };
    let mut socket = server.connect().await;
    let (lead, ..) = hello(&mut socket, from_ad).await;
    say(&mut socket, "I'm looking for running shoes").await;
    let mut socket = server.connect().await;
    let (browser, ..) = hello(&mut socket, Hello { campaign: Some("demo".into()), ..Hello::default() }).await;
    say(&mut socket, "do you ship to Austria?").await;
    let cookie = login_as(&server, PASSWORD, "Maria").await;
    let page = |query: &str| get_with(format!("{}/admin?{query}", server.url()), &cookie);

    let (_, _, listed) = page("").await;
    assert!(listed.contains(&format!("/admin/leads/{lead}")), "{listed}");
    assert!(!listed.contains(&format!("/admin/leads/{browser}")), "only opened the chat: counted, not listed");
    assert!(listed.contains("1 visitor who only opened the chat is not listed"), "{listed}");
    // Campaign is the ad's (utm), beside source and medium; the preference in the shopper's
    // words; times in the shop's zone.
    assert!(listed.contains("<td>spring</td><td>newsletter / email</td>"), "{listed}");
    assert!(listed.contains("product: <strong>running shoes</strong>"), "{listed}");
    assert!(listed.contains(" CET</time>"), "{listed}");
    let (_, _, everyone) = page("visitors=all").await;
    assert!(everyone.contains(&format!("/admin/leads/{browser}")) && everyone.contains("visitor …"), "{everyone}");

    for (query, expected) in [
        ("campaign=spring", true),
        ("source=newsletter", true),
        ("medium=email", true),
        ("source=ads", false),
        ("campaign=demo", false),
    ] {
        let (status, _, body) = page(query).await;
        assert_eq!((status, body.contains(&format!("/admin/leads/{lead}"))), (200, expected), "{query}");
    }
    let (status, _, body) = page("sort=score&visitors=all").await;
    assert_eq!(status, 200);
    let (first, second) = (body.find(&format!("/admin/leads/{lead}")), body.find(&format!("/admin/leads/{browser}")));
    assert!(first < second, "the lead with a score first");
    let (status, _, body) = page("sort=loudest").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("use last_seen, score or status"), "{body}");
}

/// axe-core (the accessibility engine browsers' audits use), from npm into `tests/.axe` the
/// first time.
pub(crate) fn axe_source() -> String {
    let file = Path::new("tests/.axe/node_modules/axe-core/axe.min.js");
    if !file.exists() {
        let status = std::process::Command::new("npm")
            .args([
                "install",
                "--silent",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
                "tests/.axe",
                "axe-core@4.14.1",
            ])
            .status()
            .expect("npm (Node comes with the machine)");
        assert!(status.success(), "npm install axe-core");
    }
    std::fs::read_to_string(file).expect("axe.min.js")
}

/// The WCAG 2.1 AA violations axe finds on the page the browser shows, as `rule: where`.
pub(crate) fn violations(browser: &Browser, axe: &str) -> Vec<String> {
    // Run as the script itself, not through eval: the admin's CSP forbids eval, not WebDriver.
    browser.js(&format!("{axe}\nreturn true;"));
    browser.js(
        "window.__axe = null; axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] })\
         .then(r => window.__axe = r.violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', ')));\
         return true;",
    );
    let found = browser.wait_for("axe", "return window.__axe && JSON.stringify(window.__axe);");
    serde_json::from_str(found.as_str().expect("json")).expect("violations")
}

#[test]
fn axe_finds_no_violations_on_any_admin_page() {
    let axe = axe_source();
    let (_dir, server, visitor, browser) = admin_in_browser(1280, 900);
    let mut found = Vec::new();
    found.extend(violations(&browser, &axe).into_iter().map(|v| format!("login: {v}")));
    log_in(&browser);
    for page in [
        "/admin".to_string(),
        format!("/admin/leads/{visitor}"),
        "/admin/funnel".into(),
        "/admin/handoffs".into(),
        "/admin/journeys".into(),
        "/admin/segments".into(),
        "/admin/emails".into(),
        "/admin/try?q=do+you+ship+to+Austria%3F".into(),
        "/admin/leads/00000000000000000000000000000000".into(),
    ] {
        browser.goto(&format!("{}{page}", server.url()));
        browser.wait_for(
            "the page",
            "return document.readyState === 'complete' && document.querySelector('h1') !== null;",
        );
        found.extend(violations(&browser, &axe).into_iter().map(|v| format!("{page}: {v}")));
    }
    assert!(found.is_empty(), "axe-core found:\n{}", found.join("\n"));
}

#[test]
fn admin_pages_fit_a_phone() {
    let (_dir, server, visitor, browser) = admin_in_browser(360, 740);
    log_in(&browser);
    let mut wide = Vec::new();
    for page in [
        "/admin".to_string(),
        format!("/admin/leads/{visitor}"),
        "/admin/funnel".into(),
        "/admin/journeys".into(),
        "/admin/segments".into(),
        "/admin/emails".into(),
    ] {
        browser.goto(&format!("{}{page}", server.url()));
        browser.wait_for(
            "the page",
            "return document.readyState === 'complete' && document.querySelector('h1') !== null;",
        );
        // A phone lays a page out as wide as its widest content and zooms out: that width is
        // what must not exceed the phone's.
        let width = browser.js("return document.documentElement.scrollWidth;").as_u64().expect("width");
        if width > 360 {
            wide.push(format!("{page}: laid out {width} px wide on a 360 px phone"));
        }
    }
    assert!(wide.is_empty(), "no sideways scrolling on a phone:\n{}", wide.join("\n"));
}

/// Every route the admin's router knows, walked without a session (turned away) and with one
/// (answered by its handler).
#[tokio::test]
async fn every_admin_route_is_behind_the_login() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(set_password(&dir.path().join("data"), PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), Path::new("intents"), "");
    let mut socket = server.connect().await;
    let (visitor, ..) = hello(&mut socket, nudge::protocol::Hello::default()).await;
    say_all(&mut socket, "I'm looking for sneakers").await;
    let cookie = login_as(&server, PASSWORD, "Maria").await;
    let call = |method: &str, path: &str, cookie: &str| {
        let (method, cookie) = (method.to_string(), cookie.to_string());
        let url = format!("{}{}", server.url(), path.replace("{visitor}", &visitor));
        let origin = server.url();
        tokio::task::spawn_blocking(move || {
            let response = if method == "get" {
                http().get(&url).header("cookie", &cookie).call()
            } else {
                let request = http().post(&url).header("cookie", &cookie).header("origin", &origin);
                request.header("content-type", "application/x-www-form-urlencoded").send("".as_bytes())
            };
            let response = response.expect("request");
            let location = response.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("");
            (response.status().as_u16(), location.to_string())
        })
    };
    let open = ["/admin/login", "/admin/logout", "/admin/live.js"];
    assert!(nudge::admin::ROUTES.len() > 20, "{:?}", nudge::admin::ROUTES);
    for &(method, path) in nudge::admin::ROUTES.iter().filter(|(_, p)| !open.contains(p)) {
        let (status, location) = call(method, path, "").await.expect("join");
        let api = path.starts_with("/admin/api/") || path.starts_with("/admin/export/") || path.ends_with("/live");
        let want = if api { (401, String::new()) } else { (303, "/admin/login".to_string()) };
        assert_eq!((status, location), want, "{method} {path} without a session");
        let (status, location) = call(method, path, &cookie).await.expect("join");
        assert!(
            ![401, 404, 405].contains(&status) && location != "/admin/login",
            "{method} {path} with a session: {status} {location}"
        );
    }
}
