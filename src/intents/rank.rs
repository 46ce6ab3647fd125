//! Example-based routing: TF-IDF over words, word pairs and character n-grams, and the cosine
//! similarity of a message to every intent's examples. Used when no pattern matches; the best
//! intent is accepted only above a confidence threshold and with a margin over the runner-up.

use std::collections::HashMap;

/// Character n-gram sizes, taken inside each word padded with spaces (` shoe ` → ` sh`, `sho`, ...),
/// so that misspellings and inflections still share most features.
const CHAR_NGRAMS: std::ops::RangeInclusive<usize> = 3..=5;
/// Words weigh more than their n-grams: a shared word is stronger evidence than a shared stem.
const WORD_WEIGHT: f32 = 2.0;
const PAIR_WEIGHT: f32 = 1.5;
/// Share of examples above which a feature is treated as a stop word ...
const MAX_DF: f32 = 0.3;
/// ... once a pack has enough examples for that share to mean something.
const MIN_EXAMPLES_TO_PRUNE: usize = 200;

#[derive(Debug)]
pub struct Ranker {
    vocabulary: Vocabulary,
    idf: Vec<f32>,
    /// idf of a feature no example has: unknown words still lengthen a message's vector, so a
    /// message that is mostly about something else scores low.
    unseen_idf: f32,
    /// For each feature, the examples that have it and its weight there.
    postings: Vec<Vec<(u32, f32)>>,
    /// The intent each example belongs to.
    owners: Vec<usize>,
    /// One more than the largest intent index an example belongs to.
    intents: usize,
}

/// The best intent for a message and how sure the ranker is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    pub intent: usize,
    pub score: f32,
    /// The best score of any other intent.
    pub runner_up: f32,
}

impl Ranker {
    /// `examples` are (intent index, normalized text).
    pub fn new(examples: &[(usize, String)]) -> Ranker {
        let mut vocabulary = Vocabulary::default();
        let mut document_frequency: Vec<u32> = Vec::new();
        let featured: Vec<Vec<(u32, f32)>> = examples
            .iter()
            .map(|(_, text)| {
                let counts = features(text);
                counts
                    .into_iter()
                    .map(|(feature, weight)| {
                        let next = vocabulary.len() as u32;
                        let id = *vocabulary.entry(feature).or_insert(next);
                        if id as usize == document_frequency.len() {
                            document_frequency.push(0);
                        }
                        document_frequency[id as usize] += 1;
                        (id, weight)
                    })
                    .collect()
            })
            .collect();
        let n = examples.len() as f32;
        // Features in most examples ("i", "my", " th") tell intents apart least and cost the
        // most (a posting for nearly every example): in a large pack they are left out, like
        // stop words. Their idf of 0 removes them from both sides of the cosine.
        let common = |df: u32| examples.len() >= MIN_EXAMPLES_TO_PRUNE && df as f32 > MAX_DF * n;
        let idf: Vec<f32> = document_frequency
            .iter()
            .map(|&df| if common(df) { 0.0 } else { ((n + 1.0) / (df as f32 + 1.0)).ln() + 1.0 })
            .collect();
        let mut postings = vec![Vec::new(); idf.len()];
        for (example, features) in featured.iter().enumerate() {
            let norm = features.iter().map(|(id, w)| (w * idf[*id as usize]).powi(2)).sum::<f32>().sqrt();
            for (id, w) in features.iter().filter(|(id, _)| idf[*id as usize] > 0.0) {
                postings[*id as usize].push((example as u32, w * idf[*id as usize] / norm.max(f32::EPSILON)));
            }
        }
        Ranker {
            vocabulary,
            idf,
            unseen_idf: (n + 1.0).ln() + 1.0,
            postings,
            owners: examples.iter().map(|(owner, _)| *owner).collect(),
            intents: examples.iter().map(|(owner, _)| owner + 1).max().unwrap_or(0),
        }
    }

    /// The intent whose examples are nearest to the message, or `None` when it shares nothing.
    pub fn rank(&self, normalized: &str, eligible: &dyn Fn(usize) -> bool) -> Option<Ranked> {
        let ranked = self.scores(normalized, eligible, None);
        let &(intent, score) = ranked.first()?;
        Some(Ranked { intent, score, runner_up: ranked.get(1).map_or(0.0, |r| r.1) })
    }

    /// Every intent that shares something with the message, nearest first, with the cosine of
    /// its nearest example. `skip` leaves one example out (scoring the pack's own examples).
    pub fn scores(&self, normalized: &str, eligible: &dyn Fn(usize) -> bool, skip: Option<usize>) -> Vec<(usize, f32)> {
        let mut query = Vec::new();
        let mut norm = 0.0f32;
        for (feature, weight) in features(normalized) {
            match self.vocabulary.get(&feature) {
                Some(&id) if self.idf[id as usize] == 0.0 => {}
                Some(&id) => {
                    let w = weight * self.idf[id as usize];
                    norm += w * w;
                    query.push((id, w));
                }
                None => norm += (weight * self.unseen_idf).powi(2),
            }
        }
        if query.is_empty() {
            return Vec::new();
        }
        let norm = norm.sqrt();
        let mut best = vec![0.0f32; self.intents];
        SCRATCH.with_borrow_mut(|Scratch { scores, touched }| {
            // Each example's dot product with the message, in a dense accumulator that only the
            // examples sharing a feature touch: a message shares features with few of them.
            scores.resize(scores.len().max(self.owners.len()), 0.0);
            for (id, w) in query {
                let w = w / norm;
                for &(example, weight) in &self.postings[id as usize] {
                    let score = &mut scores[example as usize];
                    // Weights are positive, so a touched example is never back at 0.
                    if *score == 0.0 {
                        touched.push(example);
                    }
                    *score += w * weight;
                }
            }
            // Each intent's nearest example, leaving the accumulator zeroed for the next message.
            for example in touched.drain(..) {
                let score = std::mem::take(&mut scores[example as usize]);
                if skip != Some(example as usize) {
                    let owner = self.owners[example as usize];
                    best[owner] = best[owner].max(score);
                }
            }
        });
        // Whether the intent may answer is asked once per intent.
        let mut ranked: Vec<(usize, f32)> =
            best.into_iter().enumerate().filter(|&(intent, score)| score > 0.0 && eligible(intent)).collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        ranked
    }
}

/// A thread's accumulator for `Ranker::scores`, kept between messages.
#[derive(Default)]
struct Scratch {
    /// One score per example of the largest pack seen, all 0 between calls.
    scores: Vec<f32>,
    /// The examples whose score is not 0.
    touched: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// Words (digits collapsed to one token, so order numbers do not look like anything), word
/// pairs and character n-grams, with their counts times their kind's weight.
fn features(normalized: &str) -> Vec<(u64, f32)> {
    let words: Vec<&str> = normalized
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| if w.chars().all(|c| c.is_ascii_digit()) { "#" } else { w })
        .collect();
    let mut features = Vec::with_capacity(words.len() * 16);
    let mut padded: Vec<char> = Vec::new();
    for word in &words {
        features.push((hash(b'w', word.chars()), WORD_WEIGHT));
        padded.clear();
        padded.push(' ');
        padded.extend(word.chars());
        padded.push(' ');
        for n in CHAR_NGRAMS {
            for gram in padded.windows(n) {
                features.push((hash(b'c', gram.iter().copied()), 1.0));
            }
        }
    }
    for pair in words.windows(2) {
        features.push((hash(b'p', pair[0].chars().chain([' ']).chain(pair[1].chars())), PAIR_WEIGHT));
    }
    // Merge repeats: a feature's weight is its count times its kind's weight.
    features.sort_unstable_by_key(|f| f.0);
    features.dedup_by(|next, kept| {
        let same = next.0 == kept.0;
        if same {
            kept.1 += next.1;
        }
        same
    });
    features
}

/// FNV-1a over a kind tag and the characters: features are ids, not strings, so a message
/// costs no allocation per n-gram. 64 bits make collisions irrelevant at this size.
fn hash(kind: u8, chars: impl Iterator<Item = char>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(kind);
    for c in chars {
        h ^= u64::from(c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Feature ids are already hashes; hashing them again would only cost time.
#[derive(Default, Clone, Copy)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Vocabulary = HashMap<u64, u32, std::hash::BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_examples_win() {
        let ranker = Ranker::new(&[
            (0, "where is my parcel".into()),
            (0, "track my order".into()),
            (1, "how do i return shoes".into()),
            (1, "refund policy".into()),
        ]);
        let top = ranker.rank("tracking my orders", &|_| true).expect("ranked");
        assert_eq!(top.intent, 0);
        assert!(top.score > top.runner_up);
        assert_eq!(ranker.rank("returning the shoes", &|_| true).map(|r| r.intent), Some(1));
        assert_eq!(ranker.rank("xyzzy", &|_| true), None);
    }
}
