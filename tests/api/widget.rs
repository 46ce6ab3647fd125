//! The widget in a real browser (headless Chromium): installed by one script tag on the demo
//! landing page, keyboard accessible, text never inserted as HTML, attribution sent in `hello`,
//! and a dropped connection picked up again.

use crate::helpers::TestServer;
use crate::webdriver::Browser;

const SHADOW: &str = "const root = document.querySelector('#nudge-chat').shadowRoot;";

fn bot_messages(browser: &Browser) -> Vec<String> {
    let v = browser.js(&format!("{SHADOW} return [...root.querySelectorAll('.msg.bot')].map(m => m.textContent);"));
    v.as_array().expect("array").iter().map(|m| m.as_str().unwrap_or_default().to_string()).collect()
}

fn wait_for_bot(browser: &Browser, count: usize) -> String {
    browser.wait_for(
        "a bot reply",
        &format!("{SHADOW} const m = root.querySelectorAll('.msg.bot'); return m.length >= {count} && m[{count} - 1].textContent;"),
    );
    bot_messages(browser)[count - 1].clone()
}

/// Opens the demo page's chat and goes through the shoe finder to the colour question, whose
/// quick replies are on screen.
fn to_the_colour_question(browser: &Browser, server: &TestServer) {
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    wait_for_bot(browser, 1);
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "I'm looking for sneakers\u{E007}");
    wait_for_bot(browser, 3);
    browser.type_into(&input, "42\u{E007}");
    browser.wait_for("quick replies", &format!("{SHADOW} return root.querySelector('.choices button') !== null;"));
}

#[test]
fn the_widget_chats_on_a_phone_sized_landing_page() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let intents = std::path::Path::new("intents");
    let mut server = TestServer::start_on(&data, intents, &[]);
    let browser = Browser::start(360, 740);
    browser.goto(&format!("http://{}/demo?utm_source=newsletter&utm_campaign=spring&gclid=G-123", server.addr));

    // Installed by the script tag, closed until the shopper opens it.
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    let bubble = browser.in_shadow("#nudge-chat", ".bubble");
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('.panel').hidden;")), true);
    browser.click(&bubble);
    assert_eq!(
        browser.js(&format!("{SHADOW} return root.activeElement && root.activeElement.id;")),
        "nudge-input",
        "focus moves into the panel"
    );
    let width = browser.js(&format!("{SHADOW} return root.querySelector('.panel').getBoundingClientRect().width;"));
    assert!(width.as_f64().expect("width") <= 360.0, "fits a 360 px phone: {width}");
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('.log').getAttribute('aria-live');")), "polite");
    wait_for_bot(&browser, 1);

    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "do you ship to Austria?\u{E007}");
    assert!(wait_for_bot(&browser, 2).contains("We ship"), "{:?}", bot_messages(&browser));

    // Markup typed by a shopper is shown as text, never parsed.
    browser.type_into(&input, "<img src=x onerror=\"window.pwned=1\">\u{E007}");
    wait_for_bot(&browser, 3);
    assert_eq!(
        browser.js(&format!("{SHADOW} return root.querySelectorAll('img').length + (window.pwned ? 100 : 0);")),
        0
    );
    assert_eq!(
        browser.js(&format!("{SHADOW} return [...root.querySelectorAll('.msg.me')].pop().textContent;")),
        "<img src=x onerror=\"window.pwned=1\">"
    );

    // The host page's hostile `button { background: red }` does not reach the widget.
    let colour =
        browser.js(&format!("{SHADOW} return getComputedStyle(root.querySelector('form button')).backgroundColor;"));
    assert_ne!(colour, "rgb(255, 0, 0)");

    // With ads consent from the page's banner, a new retargeting tag fires the page's own pixel.
    browser.js("window.dataLayer = []; window.Nudge.consent({ marketing: false, ads: true });");
    browser.type_into(&input, "I'm looking for boots\u{E007}");
    let pushed = browser.wait_for(
        "a pixel event in dataLayer",
        "return window.dataLayer.length > 0 && JSON.stringify(window.dataLayer);",
    );
    assert!(pushed.as_str().is_some_and(|p| p.contains("nudge_tag") && p.contains("interest:boots")), "{pushed}");

    // Escape closes and gives focus back to the bubble.
    browser.type_into(&input, "\u{E00C}");
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('.panel').hidden;")), true);
    assert_eq!(browser.js(&format!("{SHADOW} return root.activeElement && root.activeElement.className;")), "bubble");
    let visitor = browser.js("return localStorage.getItem('nudge.visitor');");
    let visitor = visitor.as_str().expect("visitor id remembered").to_string();
    let key = browser.js("return localStorage.getItem('nudge.key');");
    assert!(key.as_str().is_some_and(|k| k.len() == 32), "the resume key is kept beside the id: {key}");

    // The server goes away and comes back on the same port: the widget reconnects by itself
    // as the same visitor.
    let addr = server.addr.clone();
    server.stop();
    let server = TestServer::start_on(&data, intents, &["--listen", &addr]);
    browser.click(&bubble);
    browser.type_into(&input, "how long does delivery take?\u{E007}");
    browser.wait_for(
        "a reply after reconnecting",
        &format!(
            "{SHADOW} return [...root.querySelectorAll('.msg.bot')].some(m => m.textContent.includes('working days'));"
        ),
    );
    assert_eq!(browser.js("return localStorage.getItem('nudge.visitor');"), visitor.as_str());
    drop(browser);
    drop(server);

    // The landing page's attribution arrived with `hello` and is stored with the conversation.
    let store = crate::backend::open_store(&data).expect("store");
    let conversation = store.conversations().next().expect("a conversation").expect("readable");
    assert_eq!(conversation.visitor.to_string(), visitor);
    assert_eq!(conversation.source.campaign.as_deref(), Some("spring"), "the ad's utm_campaign over data-campaign");
    assert_eq!(conversation.source.utm.get("source").map(String::as_str), Some("newsletter"));
    assert_eq!(conversation.source.click_ids.get("gclid").map(String::as_str), Some("G-123"));
    assert!(conversation.source.page.as_deref().is_some_and(|p| p.contains("/demo")));
}

#[test]
fn the_widget_forgets_an_erased_visitor_and_shows_a_person_s_answer() {
    let dir = tempfile::tempdir().expect("dir");
    assert!(crate::helpers::set_password(&dir.path().join("data"), crate::helpers::PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), std::path::Path::new("intents"), "");
    let browser = Browser::start(360, 740);
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    wait_for_bot(&browser, 1);
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");

    // Asking for a person: a person answers from the admin, and the widget shows it under their
    // name; handed back, the bot answers again.
    browser.type_into(&input, "I want to talk to a human\u{E007}");
    wait_for_bot(&browser, 2);
    let visitor = browser.js("return localStorage.getItem('nudge.visitor');").as_str().expect("visitor").to_string();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // The panel is closed when the answer comes: the bubble counts it.
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    let lead = format!("{}/admin/leads/{visitor}", server.url());
    let cookie = runtime.block_on(async {
        let cookie = crate::helpers::login_as(&server, crate::helpers::PASSWORD, "Maria").await;
        assert_eq!(
            crate::helpers::post_with(format!("{lead}/reply"), &cookie, "text=Hello%2C+this+is+Maria.").await.0,
            303
        );
        cookie
    });
    assert_eq!(wait_for_bot(&browser, 3), "MariaHello, this is Maria.");
    browser.wait_for("the unread badge", &format!("{SHADOW} return root.querySelector('.badge').textContent === '1';"));
    let label = browser.js(&format!("{SHADOW} return root.querySelector('.bubble').getAttribute('aria-label');"));
    assert_eq!(label, "Open chat, 1 new message(s)");
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('.badge').hidden;")), true, "read once opened");
    let times = browser.js(&format!(
        "{SHADOW} return [...root.querySelectorAll('.msg.bot, .msg.me')].every(m => /\\d/.test(m.dataset.time));"
    ));
    assert_eq!(times, true, "every message has its time");
    let who =
        browser.js(&format!("{SHADOW} return [...root.querySelectorAll('.msg.bot .who')].map(w => w.textContent);"));
    assert_eq!(who, serde_json::json!(["Maria"]), "the person's name, on the person's message only");
    runtime.block_on(async {
        assert_eq!(crate::helpers::post_with(format!("{lead}/hand-back"), &cookie, "").await.0, 303);
    });
    browser.wait_for(
        "the note that the bot is back",
        &format!(
            "{SHADOW} return root.querySelector('.log').textContent.includes('chatting with our assistant again');"
        ),
    );

    // Asking to be forgotten: the widget takes the new visitor id the server gives it.
    browser.type_into(&input, "Please delete all my personal data\u{E007}");
    assert!(wait_for_bot(&browser, 4).starts_with("Done: everything we stored about you is erased"));
    browser.wait_for(
        "a new visitor id",
        &format!(
            "return localStorage.getItem('nudge.visitor') !== '{visitor}' && localStorage.getItem('nudge.visitor');"
        ),
    );
    browser.type_into(&input, "do you ship to Austria?\u{E007}");
    assert!(wait_for_bot(&browser, 5).contains("We ship"));
}

#[test]
fn a_reload_mid_flow_shows_the_conversation_and_asks_the_open_question_again() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    wait_for_bot(&browser, 1);
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "I'm looking for sneakers\u{E007}");
    let asked = wait_for_bot(&browser, 3);
    assert!(asked.contains("size"), "the flow asks for the size: {:?}", bot_messages(&browser));
    browser.type_into(&input, "42\u{E007}");
    browser
        .wait_for("the colour question", &format!("{SHADOW} return root.querySelector('.choices button') !== null;"));
    // A quick reply leaves the focus in the input, not on the page.
    let shown = bot_messages(&browser).len();
    browser.click(&browser.in_shadow("#nudge-chat", ".choices button"));
    wait_for_bot(&browser, shown + 1);
    assert_eq!(browser.js(&format!("{SHADOW} return root.activeElement && root.activeElement.id;")), "nudge-input");
    let before = bot_messages(&browser);
    assert!(before.last().is_some_and(|q| q.contains("budget")), "{before:?}");

    browser.goto(&format!("http://{}/demo", server.addr));
    // Open again without a click, with the conversation so far and the open question once.
    browser.wait_for(
        "the history",
        &format!("{SHADOW} return root.querySelectorAll('.msg.bot').length >= {};", before.len()),
    );
    assert_eq!(
        browser.js(&format!("{SHADOW} return root.querySelector('.panel').hidden;")),
        false,
        "the panel stays open"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    let after = bot_messages(&browser);
    assert_eq!(after, before, "the same lines, the colour question last and not twice");
    let me = browser.js(&format!("{SHADOW} return [...root.querySelectorAll('.msg.me')].map(m => m.textContent);"));
    assert_eq!(me[0], "I'm looking for sneakers", "{me}");
    // The next answer is taken as the answer to the open question.
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "200 euros\u{E007}");
    let next = wait_for_bot(&browser, after.len() + 1);
    assert!(next.contains("email"), "the budget is taken and the flow asks for the address: {next}");
}

#[test]
fn a_hostile_page_cannot_restyle_the_widget() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    // The page adds CSS that sets inherited properties on everything (the fixture).
    let css = std::fs::read_to_string("tests/fixtures/hostile.css").expect("fixture");
    let inject = format!(
        "const s = document.createElement('style'); s.textContent = {}; document.head.append(s); return true;",
        serde_json::json!(css)
    );
    browser.js(&inject);
    assert_eq!(
        browser.js("return getComputedStyle(document.querySelector('main')).wordSpacing;"),
        "12px",
        "the page is hostile"
    );
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    wait_for_bot(&browser, 1);
    let computed = browser.js(&format!(
        "{SHADOW} return ['h2', '.msg.bot', '.bubble', 'form button', 'input'].map(sel => {{ \
           const s = getComputedStyle(root.querySelector(sel)); \
           return [sel, s.letterSpacing, s.wordSpacing, s.textTransform, s.fontStyle, s.textShadow, s.fontFamily.includes('Comic'), s.direction]; }});"
    ));
    for row in computed.as_array().expect("rows") {
        let row = row.as_array().expect("row");
        let clean = [
            serde_json::json!("normal"),
            serde_json::json!("0px"),
            serde_json::json!("none"),
            serde_json::json!("normal"),
            serde_json::json!("none"),
            serde_json::json!(false),
            serde_json::json!("ltr"),
        ];
        assert_eq!(&row[1..], &clean[..], "{row:?}");
    }
    let background =
        browser.js(&format!("{SHADOW} return getComputedStyle(root.querySelector('form button')).backgroundColor;"));
    assert_eq!(background, "rgb(31, 79, 209)", "the page's !important button rule stays outside");
    let colour = browser.js(&format!("{SHADOW} return getComputedStyle(root.querySelector('.msg.bot')).color;"));
    assert_eq!(colour, "rgb(26, 26, 26)");
}

#[test]
fn the_open_widget_passes_axe_and_reads_well_by_keyboard_and_screen_reader() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let axe = crate::admin::axe_source();
    let browser = Browser::start(1280, 900);
    to_the_colour_question(&browser, &server);
    let found = crate::admin::violations(&browser, &axe);
    assert!(found.is_empty(), "axe-core in the open widget:\n{}", found.join("\n"));

    // Who said what, for screen readers; the quick replies are a named group.
    let cues = browser.js(&format!("{SHADOW} return [...root.querySelectorAll('.msg')].map(m => m.dataset.cue);"));
    let cues: Vec<&str> = cues.as_array().expect("cues").iter().filter_map(|c| c.as_str()).collect();
    assert!(cues.contains(&"You") && cues.contains(&"Stride Shoes"), "{cues:?}");
    let group = browser.js(&format!("{SHADOW} return root.querySelector('.choices').getAttribute('aria-label');"));
    assert_eq!(group, "Quick replies");
    // The focus ring: 3 px of #1a1a1a on the white panel (17:1).
    browser.js(&format!("{SHADOW} root.querySelector('#nudge-input').focus(); return true;"));
    let ring = browser.js(&format!(
        "{SHADOW} const s = getComputedStyle(root.querySelector('#nudge-input')); return [s.outlineStyle, s.outlineWidth, s.outlineColor];"
    ));
    assert_eq!(ring, serde_json::json!(["solid", "3px", "rgb(26, 26, 26)"]));

    // "typing…" from the moment a message is sent (no answer can come within this script) until
    // the answer is in.
    let typing = browser.js(&format!(
        "{SHADOW} root.querySelector('#nudge-input').value = 'black'; root.querySelector('form').requestSubmit(); \
         const t = root.querySelector('.typing'); return [t.hidden, t.getAttribute('role'), t.textContent];"
    ));
    assert_eq!(typing, serde_json::json!([false, "status", "typing…"]));
    browser.wait_for("the answer, and no typing", &format!("{SHADOW} return root.querySelector('.typing').hidden;"));
}

#[test]
fn at_400_percent_zoom_the_input_and_send_stay_in_view() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    // 1280 × 1024 at 400 % is a 320 × 256 CSS-pixel viewport.
    let browser = Browser::start(320, 256);
    to_the_colour_question(&browser, &server);
    let boxes = browser.js(&format!(
        "{SHADOW} return ['#nudge-input', 'form button'].map(sel => {{ const r = root.querySelector(sel).getBoundingClientRect(); \
           return [r.top >= 0, r.bottom <= innerHeight, r.left >= 0, r.right <= innerWidth]; }});"
    ));
    assert_eq!(
        boxes,
        serde_json::json!([[true, true, true, true], [true, true, true, true]]),
        "input and Send in view"
    );
}

#[test]
fn an_ad_s_deep_link_opens_the_widget_in_its_flow() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("http://{}/demo?nudge_start=find_running_shoes", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    // Open without a click, already asking for the size.
    let asked = wait_for_bot(&browser, 2);
    assert!(asked.contains("What size"), "{:?}", bot_messages(&browser));
    assert_eq!(bot_messages(&browser)[0], "Let's find your running shoes.");
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('.panel').hidden;")), false);
}

#[test]
fn triggers_reach_out_after_their_time_or_on_exit_intent_and_not_again_within_their_cooldown() {
    let dir = tempfile::tempdir().expect("dir");
    let triggers = "[[trigger]]\nid = \"soon\"\npage = \"/demo\"\nafter = \"1s\"\nsource = \"ad\"\ncooldown = \"1h\"\n\
                    action = \"teaser\"\nintent = \"find_running_shoes\"\n\n\
                    [[trigger]]\nid = \"leaving\"\nexit_intent = true\nsource = \"mail\"\naction = \"open\"\nintent = \"discount\"\n";
    let intents = crate::helpers::copy_starter_pack(dir.path(), |text| {
        if text.contains("[[trigger]]") { triggers.to_string() } else { text.to_string() }
    });
    let server = TestServer::start_on(&dir.path().join("data"), &intents, &[]);
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("http://{}/demo?utm_source=ad", server.addr));
    // After a second on the page, the intent's message beside the bubble; the panel stays shut.
    browser.wait_for("the teaser", &format!("{SHADOW} return root.querySelector('.teaser') !== null;"));
    assert_eq!(
        browser.js(&format!("{SHADOW} return root.querySelector('.teaser').textContent;")),
        "Let's find your running shoes."
    );
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('.panel').hidden;")), true);
    assert_eq!(browser.js("return document.activeElement === document.body;"), true, "focus is not taken");
    browser.click(&browser.in_shadow("#nudge-chat", ".teaser"));
    let asked = wait_for_bot(&browser, 2);
    assert!(asked.contains("What size"), "the chat opens in the trigger's flow: {:?}", bot_messages(&browser));
    // Not again within its cooldown.
    browser.js(&format!("{SHADOW} root.querySelector('.x').click(); sessionStorage.clear(); return true;"));
    browser.goto(&format!("http://{}/demo?utm_source=ad", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        browser.js(&format!("{SHADOW} return root.querySelector('.teaser') === null;")),
        true,
        "within the cooldown"
    );

    // Exit intent on a desktop: the pointer leaves through the top, and the chat opens.
    browser.goto(&format!("http://{}/demo?utm_source=mail", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    std::thread::sleep(std::time::Duration::from_millis(800));
    browser
        .js("document.dispatchEvent(new MouseEvent('mouseout', { clientY: -1, relatedTarget: null })); return true;");
    browser.wait_for("the chat opened", &format!("{SHADOW} return root.querySelector('.panel').hidden === false;"));
}

#[test]
fn the_widget_speaks_the_conversation_s_language_at_once_and_after_a_reload() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for("the widget", "return document.querySelector('#nudge-chat') !== null;");
    browser.click(&browser.in_shadow("#nudge-chat", ".bubble"));
    wait_for_bot(&browser, 1);
    assert_eq!(browser.js(&format!("{SHADOW} return root.querySelector('form button').textContent;")), "Send");
    // The browser is English; the shopper writes German, and the conversation goes on in German.
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "Ich suche Laufschuhe\u{E007}");
    assert!(wait_for_bot(&browser, 3).contains("Größe"), "{:?}", bot_messages(&browser));
    // At once, with the first German reply: the widget's own words follow.
    browser.wait_for(
        "German labels in the chat",
        &format!("{SHADOW} return root.querySelector('form button').textContent === 'Senden';"),
    );
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for(
        "German labels",
        &format!("{SHADOW} return root.querySelector('form button').textContent === 'Senden';"),
    );
    let placeholder = browser.js(&format!("{SHADOW} return root.querySelector('#nudge-input').placeholder;"));
    assert_eq!(placeholder, "Ihre Nachricht");
}

#[test]
fn a_teaser_a_b_test_is_counted_shown_and_engaged_per_variant() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    assert!(crate::helpers::set_password(&data, crate::helpers::PASSWORD).0);
    let server = TestServer::start_configured(dir.path(), &crate::triggers::pack(dir.path()), "");
    let browser = Browser::start(1280, 900);
    browser.goto(&format!("http://{}/demo", server.addr));
    browser.wait_for("the teaser", &format!("{SHADOW} return root.querySelector('.teaser') !== null;"));
    let variant = browser.js("return Number(localStorage.getItem('nudge.t.ab.v'));").as_u64().expect("a variant");
    let teasers = ["Running shoes in 30 seconds?", "Need a hand choosing shoes?"];
    assert_eq!(
        browser.js(&format!("{SHADOW} return root.querySelector('.teaser').textContent;")),
        teasers[variant as usize]
    );
    browser.click(&browser.in_shadow("#nudge-chat", ".teaser"));
    assert!(wait_for_bot(&browser, 2).contains("What size"), "{:?}", bot_messages(&browser));
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "42\u{E007}");
    wait_for_bot(&browser, 3);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (funnel, page) = runtime.block_on(async {
        let cookie = crate::helpers::login_as(&server, crate::helpers::PASSWORD, "Maria").await;
        let (_, _, funnel) = crate::helpers::get_with(format!("{}/admin/api/funnel", server.url()), &cookie).await;
        let (_, _, page) = crate::helpers::get_with(format!("{}/admin/funnel", server.url()), &cookie).await;
        (serde_json::from_str::<serde_json::Value>(&funnel).expect("json"), page)
    });
    let rows: Vec<(String, u64, u64, u64)> = funnel["triggers"]
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["trigger"] == "ab")
        .map(|r| {
            (
                r["teaser"].as_str().unwrap_or_default().to_string(),
                r["variant"].as_u64().unwrap_or(9),
                r["shown"].as_u64().unwrap_or(9),
                r["engaged"].as_u64().unwrap_or(9),
            )
        })
        .collect();
    let want: Vec<(String, u64, u64, u64)> = (0..2)
        .map(|v| (teasers[v as usize].to_string(), v, u64::from(v == variant), u64::from(v == variant)))
        .collect();
    assert_eq!(rows, want, "one shown and engaged, on the variant the shopper saw");
    assert!(page.contains("Proactive triggers") && page.contains(teasers[variant as usize]), "{page}");
}

#[test]
fn an_email_link_shows_the_conversation_so_far_and_asks_the_open_question_again() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let server = TestServer::start_on(&data, std::path::Path::new("intents"), &[]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // What a shopper's mail client opens: `/c/…`, which lands on `/chat?nudge=…`.
    let landing = || {
        let data = data.to_str().expect("utf-8");
        let args = ["link", "--email", "cara@example.com", "--data", data, "--public-url", &server.url()];
        let (code, link, err) = crate::helpers::run_nudge(&args);
        assert_eq!(code, 0, "{err}");
        let (status, location, _) = runtime.block_on(crate::helpers::get(link.trim().to_string()));
        assert_eq!(status, 303);
        format!("{}{location}", server.url())
    };
    let browser = Browser::start(1280, 900);
    browser.goto(&landing());
    wait_for_bot(&browser, 1);
    let input = browser.in_shadow("#nudge-chat", "#nudge-input");
    browser.type_into(&input, "I'm looking for sneakers\u{E007}");
    assert!(wait_for_bot(&browser, 3).contains("size"), "{:?}", bot_messages(&browser));
    browser.type_into(&input, "42\u{E007}");
    browser
        .wait_for("the colour question", &format!("{SHADOW} return root.querySelector('.choices button') !== null;"));
    let before = bot_messages(&browser);

    // The next email's link, in a new tab of the same browser: the conversation so far, the
    // colour question once, its quick replies again.
    browser.goto(&landing());
    browser.wait_for(
        "the history",
        &format!("{SHADOW} return root.querySelectorAll('.msg.bot').length >= {};", before.len()),
    );
    browser.wait_for("the quick replies", &format!("{SHADOW} return root.querySelector('.choices button') !== null;"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(bot_messages(&browser), before, "the same lines, the colour question last and not twice");
    let me = browser.js(&format!("{SHADOW} return [...root.querySelectorAll('.msg.me')].map(m => m.textContent);"));
    assert_eq!(me, serde_json::json!(["I'm looking for sneakers", "42"]));
    browser.click(&browser.in_shadow("#nudge-chat", ".choices button"));
    assert!(wait_for_bot(&browser, before.len() + 1).contains("budget"), "{:?}", bot_messages(&browser));
}

#[test]
fn in_dark_mode_the_widget_is_dark_and_still_passes_axe() {
    let dir = tempfile::tempdir().expect("dir");
    let server = TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &[]);
    let axe = crate::admin::axe_source();
    let browser = Browser::start(1280, 900);
    browser.dark();
    to_the_colour_question(&browser, &server);
    let colours = browser.js(&format!(
        "{SHADOW} return ['.panel', '.msg.bot', 'input'].map(sel => getComputedStyle(root.querySelector(sel)).backgroundColor);"
    ));
    assert_eq!(colours, serde_json::json!(["rgb(27, 29, 34)", "rgb(44, 50, 64)", "rgb(17, 19, 24)"]));
    let found = crate::admin::violations(&browser, &axe);
    assert!(found.is_empty(), "axe-core in the dark widget:\n{}", found.join("\n"));
}
