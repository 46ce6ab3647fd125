//! `nudge intents check` and `nudge intents eval` on small fixture packs with known outcomes.

use std::process::Command;

fn nudge(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nudge")).args(args).output().expect("run nudge");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_passes_a_good_pack_and_points_at_a_failing_example() {
    let (code, out) = nudge(&["intents", "check", "tests/fixtures/small"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("4 intents, 3 examples: all pass"), "{out}");

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

    let (code, out) = nudge(&["intents", "eval", "no-such.csv", "--intents", "tests/fixtures/small"]);
    assert_eq!(code, 1);
    assert!(out.contains("no-such.csv"), "{out}");
}
