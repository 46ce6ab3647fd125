//! Every intent pattern compiled into one regex set, so a message is scanned once however many
//! intents there are.

use regex::{Regex, RegexBuilder};
use regex_automata::{Input, MatchKind, PatternSet, meta, nfa::thompson::WhichCaptures, util::syntax};

use super::{Intent, text};

/// Compiled regexes are allowed more room than the default, because case-insensitive Unicode
/// classes grow quickly once hundreds of patterns share one set.
const SIZE_LIMIT: usize = 64 << 20;

#[derive(Debug)]
pub struct Pattern {
    regex: Regex,
    owner: usize,
}

impl Pattern {
    /// Compiles one pattern alone, so that a bad one is reported at its own place.
    pub fn new(source: String, owner: usize) -> Result<Pattern, String> {
        let regex = compile(&source)?;
        if regex.is_match("") {
            return Err("pattern matches the empty message, so it would match everything".into());
        }
        Ok(Pattern { regex, owner })
    }
}

/// A pattern as written in an intent or slot, compiled the way messages are normalized.
pub fn compile(source: &str) -> Result<Regex, String> {
    RegexBuilder::new(&text::normalize_pattern(source))
        .case_insensitive(true)
        .size_limit(SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad regex: {}", regex_reason(&e)))
}

#[derive(Debug)]
pub struct Matcher {
    /// What `regex::RegexSet` is inside, used directly because its matches come back as a set
    /// to scan whole (one flag per pattern of the pack) where this one says how many matched.
    set: meta::Regex,
    patterns: Vec<Pattern>,
}

impl Matcher {
    pub fn new(patterns: Vec<Pattern>) -> Result<Matcher, String> {
        // `RegexSetBuilder`'s configuration, with its `case_insensitive`, `size_limit` and
        // `dfa_size_limit`.
        let config = meta::Config::new()
            .match_kind(MatchKind::All)
            .utf8_empty(true)
            .which_captures(WhichCaptures::None)
            .nfa_size_limit(Some(SIZE_LIMIT * 4))
            // Room for the lazy DFA's states, so it does not give up and fall back to the
            // (much slower) PikeVM on a large pack.
            .hybrid_cache_capacity(SIZE_LIMIT);
        let sources: Vec<&str> = patterns.iter().map(|p| p.regex.as_str()).collect();
        let set = meta::Builder::new()
            .configure(config)
            .syntax(syntax::Config::new().case_insensitive(true).utf8(true))
            .build_many(&sources)
            .map_err(|e| format!("patterns too large to compile together: {}", one_line(&e.to_string())))?;
        Ok(Matcher { set, patterns })
    }

    /// The intent whose pattern matches: highest priority first, then the longest match (the
    /// most specific pattern), then the earliest intent.
    pub fn best(&self, normalized: &str, intents: &[Intent], eligible: &dyn Fn(usize) -> bool) -> Option<usize> {
        let mut set = PatternSet::new(self.patterns.len());
        self.set.which_overlapping_matches(&Input::new(normalized), &mut set);
        // The set's flags are scanned only up to the last pattern that matched.
        let matched: Vec<&Pattern> = set.iter().take(set.len()).map(|i| &self.patterns[i]).collect();
        let mut candidates = matched.iter().filter(|p| eligible(p.owner)).peekable();
        let first = candidates.peek()?.owner;
        if matched.iter().all(|p| p.owner == first) {
            return Some(first);
        }
        let mut best: Option<(i32, usize, usize)> = None;
        for pattern in candidates {
            let len = pattern.regex.find(normalized).map_or(0, |m| m.len());
            let key = (intents[pattern.owner].priority, len, usize::MAX - pattern.owner);
            if best.is_none_or(|b| key > b) {
                best = Some(key);
            }
        }
        best.map(|(_, _, owner)| usize::MAX - owner)
    }
}

/// The regex crate's syntax errors draw the pattern with a caret; the position is already in our
/// `file:line:col`, so keep only the reason.
fn regex_reason(error: &regex::Error) -> String {
    let text = error.to_string();
    text.lines().find_map(|l| l.trim().strip_prefix("error: ")).map_or_else(|| one_line(&text), str::to_string)
}

fn one_line(s: &str) -> String {
    s.lines().map(str::trim_end).filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" | ")
}
