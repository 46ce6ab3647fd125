//! Text normalization and language guessing, shared by patterns, examples and messages so that
//! "Größe", "GRÖSSE" and "groesse" all meet the same pattern.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// A message as the matcher sees it: lowercase, German umlauts and ß spelled out (ö → oe,
/// ß → ss), other accents stripped (é → e), typographic quotes made plain, whitespace collapsed.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() { normalize_ascii(text) } else { normalize_folded(text) }
}

fn normalize_folded(text: &str) -> String {
    let lower = text.to_lowercase();
    let mut out = String::with_capacity(lower.len() + 8);
    let mut pending_space = false;
    fold_chars(&lower, |c| {
        if c.is_whitespace() || c.is_control() {
            pending_space = !out.is_empty();
            return;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    });
    out
}

/// `normalize` of an ASCII text (most messages), a byte at a time: `char`'s case, whitespace
/// and control tables and the folding's `match` cost a chat worker a twentieth of a message.
fn normalize_ascii(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for byte in text.bytes() {
        // ASCII's `char::is_whitespace` is the space and controls (tab, line feeds).
        if byte == b' ' || byte.is_ascii_control() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        // The one ASCII character `fold_chars` changes: a backtick is an apostrophe.
        out.push(if byte == b'`' { '\'' } else { char::from(byte.to_ascii_lowercase()) });
    }
    out
}

/// A message ready for routing: normalized, the language its words say (`guess_locale`), and
/// the words its writer capitalized inside a sentence (names of people, places and brands),
/// which say nothing of what it is about. German capitalizes every noun, so a German message has
/// no names.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub normalized: String,
    pub locale: Option<&'static str>,
    pub names: Vec<String>,
}

impl Message {
    pub fn new(text: &str) -> Message {
        let normalized = normalize(text);
        let locale = guess_locale(&normalized);
        let names = if locale == Some("de") { Vec::new() } else { names(text) };
        Message { normalized, locale, names }
    }
}

const TITLES: [&str; 6] = ["mr", "mrs", "ms", "dr", "prof", "st"];

/// Capitalized words that do not start a sentence, normalized. Words in capitals throughout
/// are shouting, not names.
fn names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut sentence_start = true;
    for word in text.split_whitespace() {
        let letters = word.trim_matches(|c: char| !c.is_alphanumeric());
        let mut chars = letters.chars();
        let capitalized = chars.next().is_some_and(char::is_uppercase) && chars.any(char::is_lowercase);
        if capitalized && !sentence_start {
            names.push(normalize(letters));
        }
        // "Ms. Hawkings": the full stop of a title does not end the sentence.
        sentence_start =
            word.ends_with(['.', '!', '?', ':']) && !TITLES.iter().any(|t| letters.eq_ignore_ascii_case(t));
    }
    names
}

/// A regex pattern spelled the way `normalize` spells messages. Case is left alone (patterns are
/// compiled case-insensitively) because lowercasing would turn `\W` into `\w`.
///
/// Word boundaries and the positive classes `\w`, `\d`, `\s` become their ASCII forms: messages
/// are ASCII once normalized, and Unicode word boundaries keep the regex engine from using its
/// lazy DFA, which made routing a hundred times slower (see BENCHMARKS.md).
pub fn normalize_pattern(pattern: &str) -> String {
    let mut folded = String::with_capacity(pattern.len());
    fold_chars(pattern, |c| folded.push(c));
    let mut out = String::with_capacity(folded.len() + 16);
    let mut chars = folded.chars();
    // Inside a character class `(?-u:…)` would be literal characters; classes are left alone.
    let mut class_depth = 0usize;
    while let Some(c) = chars.next() {
        if c != '\\' {
            match c {
                '[' => class_depth += 1,
                ']' => class_depth = class_depth.saturating_sub(1),
                _ => {}
            }
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(e @ ('b' | 'B' | 'w' | 'd' | 's')) if class_depth == 0 => {
                out.push_str("(?-u:\\");
                out.push(e);
                out.push(')');
            }
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Calls `f` with each character of `text` folded: umlauts and ß spelled out, typographic quotes
/// made plain, other accents stripped. (It calls rather than returns an iterator: an iterator of
/// each character's folding allocated a vector per character, most of `normalize`'s time.)
fn fold_chars(text: &str, mut f: impl FnMut(char)) {
    for c in text.chars() {
        let spelled: &'static str = match c {
            'ä' => "ae",
            'ö' => "oe",
            'ü' => "ue",
            'Ä' => "Ae",
            'Ö' => "Oe",
            'Ü' => "Ue",
            'ß' | 'ẞ' => "ss",
            '\u{2018}' | '\u{2019}' | '\u{02bc}' | '`' | '´' => "'",
            '\u{201c}' | '\u{201d}' | '\u{201e}' => "\"",
            c if c.is_ascii() => {
                f(c);
                continue;
            }
            c => {
                c.nfkd().filter(|m| !is_combining_mark(*m)).for_each(&mut f);
                continue;
            }
        };
        spelled.chars().for_each(&mut f);
    }
}

/// Whether a message declines to answer a question ("no thanks", "skip", "lieber nicht").
pub fn is_decline(normalized: &str) -> bool {
    static DECLINE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"^\W*(no|nope|nah|nein|skip|pass|no thanks?|no thank you|nein danke|lieber nicht|rather not|i'?d rather not|not now|skip (it|this|that)|ueberspringen|weiter)\W*$",
        )
        .expect("valid")
    });
    DECLINE.is_match(normalized)
}

/// The language of a message when its words say so clearly, else `None` (keep the current one).
/// Short function words decide; a shop bot only needs English and German apart.
pub fn guess_locale(normalized: &str) -> Option<&'static str> {
    // `matches!` compiles to a switch on length and bytes; `contains` on a slice compared every
    // word of the message with each of a hundred words (a fiftieth of a chat worker's time).
    #[rustfmt::skip]
    fn german(word: &str) -> bool {
        matches!(word,
            "ich" | "und" | "nicht" | "ist" | "der" | "die" | "das" | "den" | "dem" | "mein" | "meine" |
            "meiner" | "meinen" | "wie" | "was" | "wo" | "wann" | "warum" | "ihr" | "sie" | "bitte" |
            "danke" | "hallo" | "kann" | "koennen" | "nach" | "bestellung" | "ein" | "eine" | "einen" |
            "mit" | "fuer" | "auf" | "ja" | "nein" | "gibt" | "es" | "habe" | "hat" | "wir" | "moechte" |
            "wieder" | "guten" | "tag" | "tschuess" | "versand" | "lieferung" | "rueckgabe" | "schuhe" |
            "groesse" | "bei" | "mir" | "mich" | "noch" | "schon" | "auch" | "zu" | "von" | "wird" | "sind" |
            "bin" | "dauert" | "liefert" | "ihnen" | "servus" | "moin" | "vielen" | "dank" | "hilfe" |
            "mensch"
        )
    }
    #[rustfmt::skip]
    fn english(word: &str) -> bool {
        matches!(word,
            "i" | "and" | "not" | "is" | "the" | "my" | "how" | "what" | "where" | "when" | "why" | "you" |
            "please" | "thanks" | "thank" | "hello" | "hi" | "can" | "to" | "order" | "a" | "an" | "with" |
            "for" | "on" | "yes" | "no" | "there" | "have" | "has" | "we" | "want" | "would" | "like" | "do" |
            "does" | "ship" | "shipping" | "delivery" | "return" | "shoes" | "size" | "me" | "of" | "it" |
            "are" | "am" | "will" | "be" | "hey" | "bye" | "help" | "your" | "need" | "get"
        )
    }
    let (mut de, mut en) = (0, 0);
    for word in normalized.split(|c: char| !c.is_alphanumeric()) {
        if word.is_empty() {
            continue;
        }
        de += usize::from(german(word));
        en += usize::from(english(word));
    }
    match de.cmp(&en) {
        std::cmp::Ordering::Greater => Some("de"),
        std::cmp::Ordering::Less => Some("en"),
        std::cmp::Ordering::Equal => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn german_spellings_meet() {
        for (input, expected) in [
            ("Größe", "groesse"),
            ("GRÖSSE", "groesse"),
            ("groesse", "groesse"),
            ("  Café   crème\t", "cafe creme"),
            ("don’t", "don't"),
            ("Über\nuns", "ueber uns"),
        ] {
            assert_eq!(normalize(input), expected, "{input:?}");
        }
        // The ASCII path is the general one for every ASCII character, alone and in company.
        for byte in 0..=127u8 {
            let c = char::from(byte);
            for text in [format!("{c}"), format!(" A{c}b{c}{c} c{c}"), format!("{c}\tX Y`{c}")] {
                assert_eq!(normalize_ascii(&text), normalize_folded(&text), "{text:?}");
            }
        }
        assert_eq!(normalize_pattern(r"\bGröße\W"), r"(?-u:\b)Groesse\W");
        assert_eq!(normalize_pattern(r"\\b[\d.]\s"), r"\\b[\d.](?-u:\s)");
    }

    #[test]
    fn names_are_capitalized_inside_a_sentence() {
        let names = |t: &str| Message::new(t).names;
        assert_eq!(names("Where is the bill from Anna Freeman? Thanks"), ["anna", "freeman"]);
        assert_eq!(names("bills from Mr. Smith"), ["mr", "smith"]);
        assert_eq!(names("bills from Ms. Hawkings, please"), ["ms", "hawkings"]);
        assert_eq!(names("WHERE IS MY ORDER"), Vec::<String>::new());
        assert_eq!(names("Ich möchte meine Bestellung nach München"), Vec::<String>::new());
    }

    #[test]
    fn recognises_declines() {
        for (input, expected) in
            [("No thanks!", true), ("nein", true), ("skip", true), ("no, 42", false), ("42", false)]
        {
            assert_eq!(is_decline(&normalize(input)), expected, "{input:?}");
        }
    }

    #[test]
    fn guesses_locale() {
        for (input, expected) in [
            ("Hallo, wie lange dauert die Lieferung?", Some("de")),
            ("how long does delivery take", Some("en")),
            ("ok", None),
        ] {
            assert_eq!(guess_locale(&normalize(input)), expected, "{input:?}");
        }
    }
}
