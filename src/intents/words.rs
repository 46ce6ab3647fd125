//! How common a word is in general English and German, from `words.txt` (the wordfreq
//! package's data, written by `words.py`): what tells a word of the shop's world from a word
//! of everybody's.

use foldhash::{HashMap, HashMapExt};
use std::sync::LazyLock;

static FREQUENCIES: LazyLock<HashMap<&'static str, u8>> = LazyLock::new(|| {
    let mut words = HashMap::with_capacity(64 * 1024);
    for line in include_str!("words.txt").lines().filter(|l| !l.starts_with('#')) {
        let mut fields = line.split(' ');
        let Some(zipf) = fields.next().and_then(|z| z.parse::<u8>().ok()) else { continue };
        for word in fields {
            words.insert(word, zipf);
        }
    }
    words
});

/// The word's frequency on the Zipf scale times ten (30: once per million words, 70: "the"),
/// or `None` for a word rarer than once per million (or a typo).
pub fn zipf10(word: &str) -> Option<u8> {
    FREQUENCIES.get(word).copied()
}

#[cfg(test)]
mod tests {
    #[test]
    fn common_words_are_common_and_typos_unknown() {
        assert!(super::zipf10("the").is_some_and(|z| z >= 70));
        assert!(super::zipf10("bestellung").is_some_and(|z| (35..=50).contains(&z)));
        assert!(super::zipf10("architect").is_some_and(|z| (35..=45).contains(&z)));
        assert_eq!(super::zipf10("teack"), None);
    }
}
