//! Typo repair for messages that would otherwise fall back. Shoppers type fast on phones
//! ("reimbvurse", "teack my order", "prfoile"); a word of five or more letters that the pack
//! never uses is replaced by the one word the pack does use that is a single edit away (an
//! inserted, missing, changed or swapped letter). The pack's words come from its patterns,
//! examples and slot values, so the repair only ever moves a message towards what the intents
//! were written for. Pure, like the rest of routing.

use std::collections::HashMap;

/// Shorter words have too many neighbours to guess.
const MIN_LEN: usize = 5;

#[derive(Debug, Default)]
pub struct Speller {
    /// Known word → how often the pack uses it (the tie-breaker).
    words: HashMap<String, u32>,
    /// The known words by length, so a repair only looks at words one letter longer or shorter.
    by_len: HashMap<usize, Vec<String>>,
}

impl Speller {
    /// Learns words from normalized texts (examples, slot values).
    pub fn learn_text(&mut self, text: &str) {
        for word in words(text) {
            let count = self.words.entry(word.to_string()).or_default();
            if *count == 0 {
                self.by_len.entry(word.len()).or_default().push(word.to_string());
            }
            *count += 1;
        }
    }

    /// Learns the literal words of a regex pattern: escapes (`\b`, `\w`, `\d`) and group syntax
    /// are dropped first, so `\bdeliver\w*` teaches `deliver`.
    pub fn learn_pattern(&mut self, pattern: &str) {
        self.learn_text(&super::text::normalize(&literal(pattern)));
    }

    /// The message with its unknown words repaired, or `None` when no word changed.
    pub fn correct(&self, normalized: &str) -> Option<String> {
        let mut out = String::with_capacity(normalized.len());
        let mut changed = false;
        let mut rest = normalized;
        while !rest.is_empty() {
            let letters = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            if letters == 0 {
                let c = rest.chars().next().expect("not empty");
                out.push(c);
                rest = &rest[c.len_utf8()..];
                continue;
            }
            let word = &rest[..letters];
            match self.repair(word) {
                Some(known) => {
                    out.push_str(known);
                    changed = true;
                }
                None => out.push_str(word),
            }
            rest = &rest[letters..];
        }
        changed.then_some(out)
    }

    fn repair(&self, word: &str) -> Option<&str> {
        // A word of general language is no typo, however near a pack word it is ("breach" is
        // not "reach").
        if word.len() < MIN_LEN || self.words.contains_key(word) || super::words::zipf10(word).is_some() {
            return None;
        }
        let mut best: Option<(&str, u32)> = None;
        let mut tied = false;
        let near = (word.len() - 1..=word.len() + 1).filter_map(|len| self.by_len.get(&len)).flatten();
        for known in near {
            let count = self.words[known];
            match edit(word, known) {
                // A changed letter is how one real word becomes another ("shots" / "shoes",
                // "mailed" / "failed"): trusted only past the first letter of a longer word.
                Some(Edit::Change(at)) if at == 0 || word.len() < 6 => continue,
                Some(_) => {}
                None => continue,
            }
            match best {
                Some((_, c)) if c > count => {}
                Some((_, c)) if c == count => tied = true,
                _ => {
                    best = Some((known.as_str(), count));
                    tied = false;
                }
            }
        }
        best.filter(|_| !tied).map(|(known, _)| known)
    }
}

/// The literal words of a regex pattern, space-separated: escapes (`\b`, `\w`, `\d`) and group
/// syntax are dropped.
pub fn literal(pattern: &str) -> String {
    let mut literal = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
                literal.push(' ');
            }
            c if c.is_alphabetic() => literal.push(c),
            _ => literal.push(' '),
        }
    }
    literal
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_ascii_alphabetic()).filter(|w| w.len() >= MIN_LEN - 1)
}

/// One typo, and where it is.
#[derive(Debug, PartialEq)]
enum Edit {
    /// A letter too many ...
    Extra(usize),
    /// ... one missing ...
    Missing(usize),
    /// ... a wrong one ...
    Change(usize),
    /// ... or two neighbours swapped.
    Swap(usize),
}

/// How `a` becomes `b` with one edit (ASCII), if it can.
fn edit(a: &str, b: &str) -> Option<Edit> {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a == b {
        return None;
    }
    let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let (a, b) = (&a[at..], &b[at..]);
    match a.len() as isize - b.len() as isize {
        0 if a[1..] == b[1..] => Some(Edit::Change(at)),
        0 if a.len() >= 2 && a[0] == b[1] && a[1] == b[0] && a[2..] == b[2..] => Some(Edit::Swap(at)),
        1 if a[1..] == *b => Some(Edit::Extra(at)),
        -1 if *a == b[1..] => Some(Edit::Missing(at)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_of_the_four_kinds() {
        assert_eq!(edit("reimbvurse", "reimburse"), Some(Edit::Extra(5)));
        assert_eq!(edit("asistant", "assistant"), Some(Edit::Missing(2)));
        assert_eq!(edit("teack", "track"), Some(Edit::Change(1)));
        assert_eq!(edit("prfoile", "profile"), Some(Edit::Swap(2)));
        assert_eq!(edit("track", "track"), None);
        assert_eq!(edit("trakc", "trcak"), None);
        assert_eq!(edit("delivery", "deliver me"), None);
    }

    #[test]
    fn repairs_only_unknown_long_words_towards_the_pack() {
        let mut speller = Speller::default();
        speller.learn_pattern(r"\b(reimburse|refund)\w*\b");
        speller.learn_text("i want to track my order and my shoes, deliver them");
        assert_eq!(
            speller.correct("pls reimbvurse me, trakc ordeer 42").as_deref(),
            Some("pls reimburse me, track order 42")
        );
        speller.learn_text("how can i reach a person");
        assert_eq!(speller.correct("how can i breach a network"), None, "a real word is no typo");
        assert_eq!(speller.correct("track my order"), None, "known words stay");
        assert_eq!(speller.correct("trek"), None, "short words stay");
        assert_eq!(speller.correct("weather"), None, "nothing near");
        assert_eq!(speller.correct("shots"), None, "a changed letter in a short word may be another word");
        assert_eq!(speller.correct("beliver"), None, "nor a changed first letter");
    }
}
