//! Random input through every parser, as a bounded stand-in for fuzzing (the machine's stable
//! toolchain cannot run `cargo fuzz`): frames, messages, tokens and intent files built from a
//! printed seed must give errors, never panics, and positions that exist.

use std::path::Path;

use nudge::intents::{IntentSet, text};
use nudge::protocol;
use nudge::signing::Signer;

struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A string mixing JSON and TOML syntax, scripts, emoji, controls and combining marks.
    fn string(&mut self, max: usize) -> String {
        const PIECES: &[&str] = &[
            "{",
            "}",
            "[",
            "]",
            "\"",
            "'''",
            ":",
            ",",
            "=",
            "\\",
            "\\u0000",
            "type",
            "say",
            "hello",
            "text",
            "id",
            "[[intent]]",
            "[[slot]]",
            "patterns",
            "(",
            ")",
            "*",
            "+",
            "?",
            "{{",
            "}}",
            "ß",
            "Größe",
            "é",
            "\u{301}",
            "日本語",
            "🙂",
            "\u{200b}",
            "\n",
            "\t",
            "\r",
            " ",
            "0",
            "9999999999999999999999",
            "-1",
            "null",
            "true",
            "\u{7f}",
            "\u{10ffff}",
            "a",
            "Z",
            ".",
            "k1",
            "@",
        ];
        let len = self.below(max + 1);
        (0..len).map(|_| PIECES[self.below(PIECES.len())]).collect()
    }
}

fn seed() -> u64 {
    crate::helpers::seed("garbage")
}

#[test]
fn frames_messages_and_tokens_never_panic() {
    let mut random = Random(seed());
    let pack = IntentSet::load(Path::new("intents")).expect("starter pack");
    let signer = Signer::new("k", [("k".to_string(), b"key".to_vec())].into()).expect("signer");
    for _ in 0..5_000 {
        let input = random.string(40);
        let _ = protocol::decode(&input);
        let _ = protocol::decode(&format!(r#"{{"type":"say","text":{}}}"#, serde_json::json!(input)));
        let route = pack.route(&text::Message::new(&input), &|_| false);
        assert!(route.intent < pack.intents.len());
        assert!(signer.verify(&input, 0).is_err());
    }
}

#[test]
fn random_intent_files_give_positions_inside_the_file() {
    let mut random = Random(seed());
    let dir = tempfile::tempdir().expect("dir");
    let base = std::fs::read_to_string("intents/core.toml").expect("core pack");
    for _ in 0..300 {
        // A real file with a random splice, so parsing gets deep before it breaks.
        let at = base.floor_char_boundary(random.below(base.len()));
        let file = format!("{}{}{}", &base[..at], random.string(12), &base[at..]);
        let path = dir.path().join("x.toml");
        std::fs::write(&path, &file).expect("write");
        if let Err(errors) = IntentSet::load(dir.path()) {
            let lines = file.lines().count().max(1) + 1;
            for error in errors {
                assert!(error.at.line >= 1 && error.at.line <= lines, "{error} in a {lines}-line file");
                assert!(error.at.col >= 1, "{error}");
            }
        }
    }
}
