//! The compiled intent set: every intent file under `intents/`, validated and compiled into one
//! matcher. Routing is a pure function of the set and the text: no IO, no clock, no randomness.

pub mod eval;
mod file;
mod matcher;
mod rank;
pub mod text;

use std::collections::HashMap;
use std::path::Path;

pub use file::{Diagnostic, Location};
use file::{RawIntent, RawReply, Source};
use matcher::Matcher;
use rank::Ranker;

/// The intents every pack must define: the greeting sent on connect and the reply when nothing
/// matches.
pub const WELCOME: &str = "welcome";
pub const FALLBACK: &str = "fallback";

/// Chosen on `../shared/eval/dev.csv` with `nudge intents eval`; see README.
pub const DEFAULT_THRESHOLD: f32 = 0.35;
pub const DEFAULT_MARGIN: f32 = 0.02;

/// Locales a reply can be written in; the first is the default and must always be present.
pub const LOCALES: [&str; 2] = ["en", "de"];

#[derive(Debug)]
pub struct Intent {
    pub id: String,
    pub priority: i32,
    pub at: Location,
    /// Replies by locale, in `LOCALES` order; `None` where a locale falls back to English.
    replies: [Option<Reply>; 2],
    pub examples: Vec<Example>,
    pub counter_examples: Vec<Example>,
}

impl Intent {
    /// The reply in `locale`, or in English when the intent has none in that locale.
    pub fn reply(&self, locale: &str) -> &Reply {
        let i = LOCALES.iter().position(|l| *l == locale).unwrap_or(0);
        self.replies[i]
            .as_ref()
            .or(self.replies[0].as_ref())
            .expect("English reply checked at compile")
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub variants: Vec<String>,
    pub choices: Vec<Choice>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Choice {
    pub label: String,
    pub value: String,
}

#[derive(Debug)]
pub struct Example {
    pub text: String,
    pub at: Location,
}

/// How a message was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    Pattern,
    Examples,
    Fallback,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Route {
    /// Index into `IntentSet::intents`.
    pub intent: usize,
    pub how: How,
    /// 1.0 for a pattern match; the cosine similarity to the nearest example when ranked; for
    /// the fallback, the best score that was not good enough.
    pub confidence: f32,
}

#[derive(Debug)]
pub struct IntentSet {
    pub intents: Vec<Intent>,
    by_id: HashMap<String, usize>,
    matcher: Matcher,
    ranker: Ranker,
    /// A ranked intent is accepted when its score reaches `threshold` and beats the runner-up
    /// intent by `margin`.
    pub threshold: f32,
    pub margin: f32,
    welcome: usize,
    fallback: usize,
}

impl IntentSet {
    /// Reads and compiles every `*.toml` file directly under `dir` (in name order), or returns
    /// every problem found, each with its `file:line:col`.
    pub fn load(dir: &Path) -> Result<IntentSet, Vec<Diagnostic>> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| {
                vec![file::dir_diagnostic(
                    dir,
                    format!("cannot read intents directory: {e}"),
                )]
            })?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut sources = Vec::new();
        let mut errors = Vec::new();
        for path in files {
            match std::fs::read_to_string(&path) {
                Ok(text) => sources.push(Source::new(&path, text)),
                Err(e) => errors.push(file::dir_diagnostic(&path, format!("cannot read: {e}"))),
            }
        }
        match Self::compile(dir, &sources) {
            Ok(set) if errors.is_empty() => Ok(set),
            Ok(_) => Err(errors),
            Err(more) => {
                errors.extend(more);
                Err(errors)
            }
        }
    }

    /// Compiles already-read files; `dir` only names where missing intents should have been.
    pub fn compile(dir: &Path, sources: &[Source]) -> Result<IntentSet, Vec<Diagnostic>> {
        let mut errors = Vec::new();
        let mut intents: Vec<Intent> = Vec::new();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        let mut patterns = Vec::new();
        for source in sources {
            let raw = match file::parse(source) {
                Ok(raw) => raw,
                Err(d) => {
                    errors.push(d);
                    continue;
                }
            };
            for raw_intent in raw.intent {
                let index = intents.len();
                match compile_intent(source, raw_intent, index, &mut patterns, &mut errors) {
                    Some(intent) => {
                        if let Some(&first) = by_id.get(&intent.id) {
                            errors.push(file::Diagnostic {
                                at: intent.at.clone(),
                                message: format!(
                                    "duplicate intent id `{}` (first defined at {})",
                                    intent.id, intents[first].at
                                ),
                            });
                            continue;
                        }
                        by_id.insert(intent.id.clone(), index);
                        intents.push(intent);
                    }
                    None => continue,
                }
            }
        }
        for required in [WELCOME, FALLBACK] {
            if !by_id.contains_key(required) && errors.is_empty() {
                errors.push(file::dir_diagnostic(
                    dir,
                    format!("no intent with id `{required}`: every pack needs one"),
                ));
            }
        }
        let matcher = match Matcher::new(patterns) {
            Ok(m) => m,
            Err(d) => {
                errors.push(d);
                return Err(errors);
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let examples: Vec<(usize, String)> = intents
            .iter()
            .enumerate()
            .flat_map(|(i, intent)| {
                intent
                    .examples
                    .iter()
                    .map(move |e| (i, text::normalize(&e.text)))
            })
            .collect();
        Ok(IntentSet {
            welcome: by_id[WELCOME],
            fallback: by_id[FALLBACK],
            ranker: Ranker::new(&examples),
            threshold: DEFAULT_THRESHOLD,
            margin: DEFAULT_MARGIN,
            intents,
            by_id,
            matcher,
        })
    }

    pub fn get(&self, id: &str) -> Option<&Intent> {
        self.by_id.get(id).map(|&i| &self.intents[i])
    }

    pub fn welcome(&self) -> usize {
        self.welcome
    }

    /// Routes a message that `text::normalize` has already normalized.
    pub fn route(&self, normalized: &str) -> Route {
        if let Some(intent) = self.matcher.best(normalized, &self.intents) {
            return Route {
                intent,
                how: How::Pattern,
                confidence: 1.0,
            };
        }
        let fallback = |confidence| Route {
            intent: self.fallback,
            how: How::Fallback,
            confidence,
        };
        match self.ranker.rank(normalized) {
            Some(r) if r.intent == self.fallback => fallback(0.0),
            Some(r) if r.score >= self.threshold && r.score - r.runner_up >= self.margin => Route {
                intent: r.intent,
                how: How::Examples,
                confidence: r.score,
            },
            Some(r) => fallback(r.score),
            None => fallback(0.0),
        }
    }

    /// Runs every example and counter-example; each failure names the example's place.
    pub fn check_examples(&self) -> Vec<Diagnostic> {
        let mut failures = Vec::new();
        for intent in &self.intents {
            for example in &intent.examples {
                let got = &self.intents[self.route(&text::normalize(&example.text)).intent].id;
                if *got != intent.id {
                    failures.push(Diagnostic {
                        at: example.at.clone(),
                        message: format!(
                            "example {:?} routes to `{got}`, not `{}`",
                            example.text, intent.id
                        ),
                    });
                }
            }
            for example in &intent.counter_examples {
                if self.intents[self.route(&text::normalize(&example.text)).intent].id == intent.id
                {
                    failures.push(Diagnostic {
                        at: example.at.clone(),
                        message: format!(
                            "counter-example {:?} routes to `{}`",
                            example.text, intent.id
                        ),
                    });
                }
            }
        }
        failures
    }
}

fn compile_intent(
    source: &Source,
    raw: RawIntent,
    index: usize,
    patterns: &mut Vec<matcher::Pattern>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Intent> {
    let id_span = raw.id.span();
    let id = raw.id.into_inner();
    let at = source.inside(&id_span);
    let before = errors.len();
    if !is_valid_id(&id) {
        errors.push(source.at(
            &id_span,
            format!(
                "intent id `{id}` must be lowercase letters, digits and `_`, starting with a letter"
            ),
        ));
    }
    for pattern in raw.patterns {
        let span = pattern.span();
        match matcher::Pattern::new(pattern.into_inner(), index) {
            Ok(p) => patterns.push(p),
            Err(e) => errors.push(Diagnostic {
                at: source.inside(&span),
                message: e,
            }),
        }
    }
    let examples = |list: Vec<toml::Spanned<String>>| -> Vec<Example> {
        list.into_iter()
            .map(|e| Example {
                at: source.inside(&e.span()),
                text: e.into_inner(),
            })
            .collect()
    };
    let mut replies = [None, None];
    for (slot, raw_reply) in replies.iter_mut().zip([raw.en, raw.de]) {
        if let Some(raw_reply) = raw_reply {
            *slot = compile_reply(source, raw_reply, errors);
        }
    }
    if replies[0].is_none() && errors.len() == before {
        errors.push(Diagnostic {
            at: at.clone(),
            message: format!("intent `{id}` has no English reply: add an `[intent.en]` table with `reply = [...]`"),
        });
    }
    if errors.len() > before {
        return None;
    }
    Some(Intent {
        id,
        priority: raw.priority,
        at,
        replies,
        examples: examples(raw.examples),
        counter_examples: examples(raw.not),
    })
}

fn compile_reply(
    source: &Source,
    raw: toml::Spanned<RawReply>,
    errors: &mut Vec<Diagnostic>,
) -> Option<Reply> {
    let span = raw.span();
    let raw = raw.into_inner();
    if raw.reply.is_empty() {
        errors.push(source.at(&span, "`reply` needs at least one text"));
        return None;
    }
    let mut variants = Vec::new();
    for text in raw.reply {
        if text.get_ref().trim().is_empty() {
            errors.push(Diagnostic {
                at: source.inside(&text.span()),
                message: "empty reply text".into(),
            });
            return None;
        }
        variants.push(text.into_inner());
    }
    let choices = raw
        .choices
        .into_iter()
        .map(|c| Choice {
            label: c.label,
            value: c.value,
        })
        .collect();
    Some(Reply { variants, choices })
}

fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
