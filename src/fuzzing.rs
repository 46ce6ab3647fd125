//! Entry points for `cargo fuzz` (`fuzz/fuzz_targets/`) and for the regression test that replays
//! every saved crash (`fuzz/regressions/<target>/`), so a crash found once stays a test. Each
//! panics only when an invariant breaks.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use crate::intents::{IntentSet, text};
use crate::signing::Signer;

static PACK: LazyLock<IntentSet> = LazyLock::new(|| {
    IntentSet::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("intents")).expect("the starter pack compiles")
});

static SIGNER: LazyLock<Signer> =
    LazyLock::new(|| Signer::new("k", [("k".to_string(), b"fuzz-key".to_vec())].into()).expect("signer"));

/// `chat.v1` frame decoding: a frame or an error message.
pub fn frame(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::protocol::decode(text);
    }
}

/// Normalization and routing against the starter pack.
pub fn route(data: &[u8]) {
    let message = String::from_utf8_lossy(data);
    let message = text::Message::new(&message);
    assert!(PACK.route(&message, &|_| false).intent < PACK.intents.len());
    let _ = text::is_decline(&message.normalized);
}

/// Token verification: nothing this key did not sign is accepted.
pub fn token(data: &[u8]) {
    if let Ok(token) = std::str::from_utf8(data) {
        assert!(SIGNER.verify(token, 0).is_err(), "a token nobody signed was accepted");
    }
}

/// The intent file parser and compiler: a set, or errors at positions that exist.
pub fn intent_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let lines = text.lines().count() + 1;
    let files = vec![(PathBuf::from("x.toml"), text.to_string())];
    if let Err(errors) = IntentSet::from_files(Path::new("intents"), files) {
        for error in errors {
            assert!(error.at.line >= 1 && error.at.line <= lines, "{error}");
        }
    }
}

/// A fuzz target: bytes in, a panic only when an invariant breaks.
pub type Target = fn(&[u8]);

/// The targets by name, for the regression test.
pub const TARGETS: [(&str, Target); 4] =
    [("frame", frame), ("route", route), ("token", token), ("intent_file", intent_file)];
