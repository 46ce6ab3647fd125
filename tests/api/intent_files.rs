//! Intent files test themselves: every example in `intents/` routes where it says, and broken
//! files are reported at the right `file:line:col`.

use std::path::Path;

use nudge::intents::IntentSet;

#[test]
fn starter_pack_examples_pass() {
    let set = IntentSet::load(Path::new("intents")).unwrap_or_else(|errors| {
        panic!(
            "starter pack does not compile:\n{}",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        )
    });
    let failures: Vec<String> = set.check_examples().iter().map(|f| f.to_string()).collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for id in [
        "greeting",
        "goodbye",
        "thanks",
        "help",
        "human",
        "shipping_options",
        "delivery_time",
        "return_policy",
        "order_status",
    ] {
        assert!(set.get(id).is_some_and(|i| !i.examples.is_empty()), "{id} with examples");
    }
}

/// A shop question in new words shares fewer words with any one example; when the scope gate
/// is sure the words are about the shop, the ranker's lower bar (`sure_threshold`) applies.
#[test]
fn the_examples_need_to_say_less_when_the_words_are_about_the_shop() {
    use nudge::intents::{How, text::Message};
    let mut set = IntentSet::load(Path::new("intents")).expect("starter pack");
    let message = Message::new("the checkout won't accept my card");
    let explained = set.explain(&message);
    assert!(explained.on_topic >= nudge::intents::SURE_SCOPE, "{explained:?}");
    let route = set.route(&message, &|_| false);
    assert_eq!((set.intents[route.intent].id.as_str(), route.how), ("payment_problem", How::Examples));
    assert!(route.confidence < set.threshold && route.confidence >= set.sure_threshold, "{route:?}");
    set.sure_threshold = set.threshold;
    assert_eq!(set.route(&message, &|_| false).intent, set.fallback(), "one bar for all");
}

const BASE: &str = r#"
[[intent]]
id = "welcome"
[intent.en]
reply = ["hi"]

[[intent]]
id = "fallback"
[intent.en]
reply = ["sorry"]
"#;

/// Writes `BASE` plus one broken file and returns the first error, as printed.
fn first_error(broken: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("base.toml"), BASE).expect("write");
    std::fs::write(dir.path().join("x.toml"), broken).expect("write");
    let errors = IntentSet::load(dir.path()).expect_err("must not compile");
    let prefix = format!("{}/", dir.path().display());
    errors[0].to_string().replace(&prefix, "")
}

#[test]
fn broken_files_point_at_the_mistake() {
    for (broken, expected) in [
        ("[[intent]]\nid = \"a\"\npatterns = ['''x''',\n", "x.toml:3:21: unclosed array"),
        (
            "[[intent]]\nid = \"a\"\npatterns = ['''ok''', '''(unclosed''']\n[intent.en]\nreply = [\"r\"]\n",
            "x.toml:3:26: bad regex: unclosed group",
        ),
        (
            "[[intent]]\nid = \"welcome\"\n[intent.en]\nreply = [\"again\"]\n",
            "x.toml:2:7: duplicate intent id `welcome` (first defined at ",
        ),
        ("[[intent]]\nid = \"a\"\npattern = ['''x''']\n", "x.toml:3:1: unknown field `pattern`"),
        ("[[intent]]\nid = \"a\"\npatterns = ['''x''']\n", "x.toml:2:7: intent `a` has no English reply"),
        ("[[intent]]\nid = \"Bad-Id\"\n[intent.en]\nreply = [\"r\"]\n", "x.toml:2:7: intent id `Bad-Id` must be"),
        (
            "[[intent]]\nid = \"a\"\npatterns = ['''.*''']\n[intent.en]\nreply = [\"r\"]\n",
            "x.toml:3:16: pattern matches the empty message",
        ),
        ("[[intent]]\nid = \"a\"\n[intent.en]\nreply = []\n", "x.toml:3:1: `reply` needs at least one text"),
    ] {
        let got = first_error(broken);
        assert!(got.starts_with(expected), "{broken:?}\n  got:      {got}\n  expected: {expected}");
    }
}

#[test]
fn a_pack_without_fallback_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("only.toml"), "[[intent]]\nid = \"welcome\"\n[intent.en]\nreply = [\"hi\"]\n")
        .expect("write");
    let errors = IntentSet::load(dir.path()).expect_err("must not compile");
    assert!(errors[0].to_string().contains("no intent with id `fallback`"), "{}", errors[0]);
    assert!(IntentSet::load(Path::new("no-such-dir")).is_err());
}

const EMAIL: &str =
    "[[email]]\nid = \"later\"\n[email.en]\nsubject = \"Hi\"\ntext = \"{{ resume_url }}\"\nhtml = \"<p>hi</p>\"\n";

#[test]
fn broken_follow_ups_and_emails_point_at_the_mistake() {
    let intent = |follow_up: &str| {
        format!("{EMAIL}[[intent]]\nid = \"a\"\nfollow_up = {follow_up}\n[intent.en]\nreply = [\"r\"]\n")
    };
    for (broken, expected) in [
        (intent("{ email = \"nope\", after = \"1h\" }"), "x.toml:9:24: unknown email `nope` (known: later)"),
        (intent("{ email = \"later\", after = \"soon\" }"), "x.toml:9:41: `after` \"soon\": "),
        (intent("{ email = \"later\" }"), "x.toml:9:13: missing field `after`"),
        (EMAIL.replace("{{ resume_url }}", "{{ coupon }}"), "x.toml:5:9: unknown preference `coupon`"),
        (EMAIL.replace("html = \"<p>hi</p>\"\n", ""), "x.toml:3:1: missing field `html`"),
        (EMAIL.replace("[email.en]", "[email.de]"), "x.toml:2:7: email `later` has no English version"),
        (format!("{EMAIL}{EMAIL}"), "x.toml:8:7: duplicate email id `later` (first defined at "),
        (
            format!(
                "{EMAIL}[[email.en.variant]]\nsubject = \"B\"\ntext = \"b\"\nhtml = \"b\"\n[email.de]\nsubject = \"Hallo\"\ntext = \"x\"\nhtml = \"x\"\n"
            ),
            "x.toml:11:1: email `later` has 2 variant(s) in English but 1 in German",
        ),
    ] {
        let got = first_error(&broken);
        assert!(got.starts_with(expected), "{broken:?}\n  got:      {got}\n  expected: {expected}");
    }
}

#[test]
fn emails_live_in_their_own_directory() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("base.toml"), BASE).expect("write");
    std::fs::create_dir(dir.path().join("emails")).expect("mkdir");
    std::fs::write(dir.path().join("emails/later.toml"), EMAIL).expect("write");
    let set = IntentSet::load(dir.path()).expect("compiles");
    assert_eq!(set.email("later").map(|e| e.body("de", 0).subject.render(|_| None)), Some("Hi".to_string()));
}
