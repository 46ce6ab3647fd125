//! Whether a message is about the shop's world at all. A pattern or a near example is evidence
//! for an intent, but "how long does it take grass seed to grow" matches the delivery-time
//! pattern word for word: what gives it away is "grass", "seed" and "grow", real words the
//! pack never uses.
//!
//! The evidence is per word, from two sides of the pack: the shop's texts (every intent's
//! examples, patterns and slot values but the fallback's) and the other side (the fallback's:
//! what the shop does not do). A word only the shop uses speaks for the shop; a word only the
//! other side uses, or a real word (in the general-language list) that neither uses, speaks
//! against it; a word both use ("how", "can", "need") is request language and says nothing,
//! and so do typos and names nobody writes down. A logistic model weighs the three, trained
//! when the pack loads on the pack's own examples, each scored as if its author had not
//! written it (leave-one-out): deterministic, and a few milliseconds.

use foldhash::HashMap;
use std::borrow::Cow;

use super::words;

/// Suffixes stripped before a word is looked up, so "orders", "ordered" and "ordering" are the
/// pack's "order", and "lieferungen" its "lieferung". Crude, but the same on both sides.
const SUFFIXES: [&str; 7] = ["ings", "ing", "ed", "es", "s", "en", "e"];

/// Words shorter than this are function words in both languages; they say nothing of topic.
const MIN_LEN: usize = 3;

/// Words at least this common (on the Zipf scale: 6 is once per thousand words: "the", "wie",
/// "take") belong to every topic and are no evidence either way.
const COMMON_ZIPF: f32 = 6.0;

/// English contractions typed without the apostrophe: as common as the words they join.
/// (`matches!`, as the next, is a switch on length and bytes; a list's `contains` compared the
/// word with every entry.)
#[rustfmt::skip]
fn contraction(word: &str) -> bool {
    matches!(word,
        "dont" | "cant" | "wont" | "didnt" | "doesnt" | "isnt" | "arent" | "wasnt" | "havent" | "hasnt" |
        "couldnt" | "shouldnt" | "wouldnt" | "ive" | "youre" | "theyre"
    )
}

/// The people a shopper buys for, orders with or writes about ("an account for my fiancee",
/// "Stiefel für meine Freundin"): they say who, not what, so like names they say nothing of
/// topic either way, however rare the word.
#[rustfmt::skip]
fn person(word: &str) -> bool {
    matches!(word,
        "wife" | "husband" | "bride" | "groom" | "fiance" | "fiancee" | "girlfriend" | "boyfriend" | "partner" |
        "spouse" | "son" | "daughter" | "mom" | "mum" | "mother" | "dad" | "father" | "parents" | "brother" |
        "sister" | "grandma" | "grandmother" | "grandpa" | "grandfather" | "aunt" | "uncle" | "niece" |
        "nephew" | "cousin" | "friend" | "colleague" | "kid" | "child" | "children" | "frau" | "mann" |
        "ehefrau" | "ehemann" | "braut" | "verlobte" | "verlobten" | "freundin" | "freund" | "sohn" |
        "tochter" | "mutter" | "mama" | "vater" | "papa" | "eltern" | "bruder" | "schwester" | "oma" | "opa" |
        "tante" | "onkel"
    )
}

/// Words rarer than this (once per hundred thousand words) name topics.
const TOPIC_ZIPF: f32 = 5.0;

/// Which side of the pack a text is from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Shop,
    Other,
}

/// A word speaks for a side when that side's texts use it this many times as often (as a
/// share of the side's texts) as the other side's do.
const RATIO: f32 = 3.0;

#[derive(Debug, Default)]
pub struct Vocabulary {
    /// Stem → in how many texts of each side (shop, other) it occurs.
    counts: HashMap<String, [u32; 2]>,
    texts: [u32; 2],
}

/// What a message's words say of its topic.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Evidence {
    /// Words only the shop's texts use.
    pub shop: f32,
    /// Words only the other side uses.
    pub other: f32,
    /// Real words neither side uses, each weighted by how rare it is in general language
    /// (from 0 for a word as common as "take" to 1 for one rarer than once per million).
    pub foreign: f32,
}

impl Evidence {
    fn add(&mut self, other: Evidence) {
        self.shop += other.shop;
        self.other += other.other;
        self.foreign += other.foreign;
    }
}

impl Vocabulary {
    /// Learns the words of one normalized text (an example or a pattern's literal words).
    pub fn learn(&mut self, normalized: &str, side: Side) {
        self.texts[side as usize] += 1;
        for stem in stems(normalized) {
            self.counts.entry(stem).or_default()[side as usize] += 1;
        }
    }

    /// The evidence of a message's words. `own`, when given, is a text the vocabulary learned
    /// that is left out again: what the evidence would be had the pack's author not written it.
    /// `names` are words that say nothing (see `text::Message`).
    pub fn evidence(&self, normalized: &str, names: &[String], own: Option<(&str, Side)>) -> Evidence {
        let own: Option<(Vec<String>, Side)> = own.map(|(text, side)| (stems(text), side));
        let mut texts = self.texts;
        if let Some((_, side)) = &own {
            texts[*side as usize] -= 1;
        }
        let share = |counts: [u32; 2], side: usize| counts[side] as f32 / texts[side].max(1) as f32;
        // What one word says; whether the pack knows it.
        let one = |word: &str, evidence: &mut Evidence| -> bool {
            let zipf = words::zipf10(word).map(|z| f32::from(z) / 10.0);
            if zipf.is_some_and(|z| z >= COMMON_ZIPF) || contraction(word) || person(word) {
                return true;
            }
            let stem = stem(word);
            let mut counts = self.counts.get(stem.as_ref()).copied().unwrap_or_default();
            if let Some((stems, side)) = &own
                && stems.iter().any(|s| *s == stem)
            {
                counts[*side as usize] -= 1;
            }
            match counts {
                [0, 0] => {
                    // Zipf 3 (once per million words) is where the list ends.
                    evidence.foreign += zipf.map_or(0.0, |z| ((COMMON_ZIPF - z) / 3.0).clamp(0.0, 1.0));
                    return false;
                }
                counts if share(counts, 0) > RATIO * share(counts, 1) => evidence.shop += 1.0,
                // The other side is a small sample of everything else: only its topic words
                // (rarer ones) tell, not the request words it happens to use more ("find").
                counts if share(counts, 1) > RATIO * share(counts, 0) && zipf.is_none_or(|z| z < TOPIC_ZIPF) => {
                    evidence.other += 1.0
                }
                _ => {}
            }
            true
        };
        let mut evidence = Evidence::default();
        for word in words(normalized).filter(|w| !names.iter().any(|n| n == w)) {
            let mut alone = Evidence::default();
            if one(word, &mut alone) {
                evidence.add(alone);
                continue;
            }
            // Joined words say what their parts say: German nouns ("Handyrechnung") and, when
            // the pack knows a part, English ones ("goodnight").
            let mut parts = Evidence::default();
            match compound(word, &|w| self.knows(w)) {
                Some((head, tail)) if one(head, &mut parts) | one(tail, &mut parts) => evidence.add(parts),
                Some(_) if words::zipf10(word).is_none() => evidence.add(parts),
                _ => evidence.add(alone),
            }
        }
        evidence
    }

    /// Whether the pack or general language has the word.
    fn knows(&self, word: &str) -> bool {
        words::zipf10(word).is_some() || self.counts.contains_key(stem(word).as_ref())
    }
}

/// The split of a long word into two known words (the head may end in a linking "s":
/// "Versandskosten"), longest head first; none for a word that is not such a compound.
fn compound<'a>(word: &'a str, known: &dyn Fn(&str) -> bool) -> Option<(&'a str, &'a str)> {
    const PART: usize = 4;
    if word.len() < 2 * PART || !word.is_ascii() {
        return None;
    }
    (PART..=word.len() - PART).rev().find_map(|at| {
        let (head, tail) = word.split_at(at);
        let head = if known(head) { head } else { head.strip_suffix('s').filter(|h| known(h))? };
        known(tail).then_some((head, tail))
    })
}

/// The distinct stems of a text.
fn stems(normalized: &str) -> Vec<String> {
    let mut stems: Vec<String> = words(normalized).map(|w| stem(w).into_owned()).collect();
    stems.sort();
    stems.dedup();
    stems
}

fn words(normalized: &str) -> impl Iterator<Item = &str> {
    normalized.split(|c: char| !c.is_ascii_alphabetic() && c != '\'').filter(|w| w.len() >= MIN_LEN)
}

/// A slice of the word, except for "-ies" → "-y": routing allocates nothing per word.
fn stem(word: &str) -> Cow<'_, str> {
    let word = word.trim_end_matches("'s").trim_matches('\'');
    if let Some(rest) = word.strip_suffix("ies") {
        return Cow::Owned(format!("{rest}y"));
    }
    Cow::Borrowed(
        SUFFIXES.iter().find_map(|s| word.strip_suffix(s).filter(|rest| rest.len() >= MIN_LEN)).unwrap_or(word),
    )
}

/// The learned half: the probability that a message is about the shop, from its evidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// The weights of `shop`, `other` and `foreign`.
    weights: [f32; 3],
}

/// L2 penalty and steps of the fit: enough for the few hundred examples of a pack to converge,
/// and a penalty that keeps one odd example from deciding a weight.
const PENALTY: f32 = 0.01;
const STEPS: usize = 2000;
const RATE: f32 = 0.5;

impl Gate {
    /// Fits the gate to evidence labelled on-topic (`true`) or not, each side weighing the same
    /// in total however many examples it has. Plain gradient descent from zero: the same pack
    /// always gives the same gate.
    pub fn fit(samples: &[(Evidence, bool)]) -> Gate {
        let positives = samples.iter().filter(|s| s.1).count().max(1) as f32;
        let negatives = samples.iter().filter(|s| !s.1).count().max(1) as f32;
        let mut w = [0.0f32; 3];
        for _ in 0..STEPS {
            let mut gradient = [0.0f32; 3];
            for (evidence, on_topic) in samples {
                let x = features(evidence);
                let p = sigmoid(dot(&w, &x));
                let (y, weight) = if *on_topic { (1.0, 0.5 / positives) } else { (0.0, 0.5 / negatives) };
                for (g, xi) in gradient.iter_mut().zip(x) {
                    *g += weight * (p - y) * xi;
                }
            }
            for (wi, g) in w.iter_mut().zip(gradient) {
                *wi -= RATE * (g + PENALTY * *wi);
            }
        }
        Gate { weights: w }
    }

    /// The probability that a message with this evidence is about the shop.
    pub fn on_topic(&self, evidence: &Evidence) -> f32 {
        sigmoid(dot(&self.weights, &features(evidence)))
    }
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [shop, other, foreign] = self.weights;
        write!(
            f,
            "scope gate (log-odds per word): a shop word {shop:+.2}, a fallback word {other:+.2}, a rare real word the pack never uses {foreign:+.2}"
        )
    }
}

fn features(e: &Evidence) -> [f32; 3] {
    [e.shop, e.other, e.foreign]
}

fn dot(a: &[f32; 3], b: &[f32; 3]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Vocabulary {
        fn evidence_of(&self, normalized: &str, own: Option<(&str, Side)>) -> Evidence {
            self.evidence(normalized, &[], own)
        }
    }

    #[test]
    fn shop_words_for_and_foreign_words_against() {
        let mut v = Vocabulary::default();
        for text in ["how long does delivery take", "where is my order", "i want to return my shoes"] {
            v.learn(text, Side::Shop);
        }
        v.learn("how is the weather", Side::Other);
        let shop = v.evidence_of("how long does the delivery of my orders take", None);
        assert_eq!((shop.foreign, shop.other), (0.0, 0.0));
        assert!(shop.shop >= 3.0, "long, delivery, orders (how is both sides')");
        let grass = v.evidence_of("how long does it take grass seed to grow", None);
        assert!(grass.foreign > 1.0, "grass, seed, grow");
        assert_eq!(v.evidence_of("weather", None).other, 1.0);
        assert_eq!(v.evidence_of("teack my ordr", None).foreign, 0.0, "typos are not evidence");
        assert!(v.evidence_of("grassamen", None).foreign > 1.0, "a compound says what its parts say");
        assert_eq!(v.evidence_of("an order for my fiancee", None).foreign, 0.0, "people say who, not what");
        let left_out = v.evidence_of("where is my order", Some(("where is my order", Side::Shop)));
        assert_eq!(left_out.shop, 0.0, "without its own example the pack never says `where` or `order`");
    }

    #[test]
    fn the_gate_learns_which_side_words_speak_for() {
        let e = |shop, other, foreign| Evidence { shop, other, foreign };
        let samples = [
            (e(2.0, 0.0, 0.0), true),
            (e(1.0, 0.0, 0.5), true),
            (e(3.0, 0.0, 1.0), true),
            (e(0.0, 1.0, 0.0), false),
            (e(0.0, 0.0, 2.0), false),
            (e(1.0, 1.0, 1.5), false),
        ];
        let gate = Gate::fit(&samples);
        assert_eq!(gate, Gate::fit(&samples), "deterministic");
        for (evidence, on_topic) in samples {
            assert_eq!(gate.on_topic(&evidence) > 0.5, on_topic, "{evidence:?}");
        }
    }
}
