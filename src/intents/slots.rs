//! Slots: questions whose answers become preferences (size, colour, budget, email, consent).
//! Extraction is typed: a number in a range, an email address, one of a list, or free text.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;

use super::template::Template;
use super::{ChoiceTemplate, LOCALES, Location};

static NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\d+(?:[.,]\d+)?").expect("valid"));
static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"[a-z0-9._%+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}").expect("valid"));

#[derive(Debug)]
pub enum Kind {
    Number {
        min: f64,
        max: f64,
    },
    Email,
    /// Canonical values, each with one regex over the words that mean it.
    Choice(Vec<(String, Regex)>),
    Text,
}

/// What a `yes` to a slot agrees to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentKind {
    Marketing,
    Ads,
}

#[derive(Debug)]
pub struct Question {
    pub ask: Template,
    pub retry: Template,
    pub skip: Option<Template>,
    pub choices: Vec<ChoiceTemplate>,
}

#[derive(Debug)]
pub struct Slot {
    pub id: String,
    pub kind: Kind,
    pub pattern: Option<Regex>,
    pub tries: u32,
    pub consent: Option<ConsentKind>,
    /// Preferences that must be known before a flow asks this slot.
    pub requires: Vec<String>,
    pub at: Location,
    /// Questions by locale in `LOCALES` order; English is always there.
    pub questions: [Option<Question>; 2],
    /// For choice slots, by locale: canonical value → the words of the quick reply that means it
    /// (its `value`, what the shopper "says" by tapping it), so replies say "running shoes" or
    /// "Laufschuhe" where the preference is `running_shoes`.
    pub names: [HashMap<String, String>; 2],
}

impl Slot {
    pub fn question(&self, locale: &str) -> &Question {
        let i = LOCALES.iter().position(|l| *l == locale).unwrap_or(0);
        self.questions[i].as_ref().or(self.questions[0].as_ref()).expect("English question checked at compile")
    }

    /// How to show a value of this slot to a shopper in `locale`: the words of the quick reply
    /// that means it (in that language, else in English), or the value itself.
    pub fn display<'a>(&'a self, locale: &str, value: &'a str) -> &'a str {
        let i = LOCALES.iter().position(|l| *l == locale).unwrap_or(0);
        self.names[i].get(value).or_else(|| self.names[0].get(value)).map_or(value, String::as_str)
    }

    /// Learns the display names from each language's quick replies (see `names`).
    pub fn learn_names(&mut self) {
        let mut names: [HashMap<String, String>; 2] = Default::default();
        for (i, question) in self.questions.iter().enumerate() {
            for choice in question.iter().flat_map(|q| &q.choices) {
                let value = choice.value.render(|_| None);
                if let Some(canonical) = self.extract(&super::text::normalize(&value), &value, true) {
                    names[i].entry(canonical).or_insert(value);
                }
            }
        }
        self.names = names;
    }

    /// Whether a message names a value for this slot that the slot refuses ("size 99"): its
    /// pattern finds the value, but the value is out of range. The shopper is told, instead of
    /// the value being dropped without a word.
    pub fn refuses(&self, normalized: &str) -> bool {
        let Some(pattern) = &self.pattern else { return false };
        pattern.is_match(normalized) && self.extract(normalized, normalized, false).is_none()
    }

    /// The answer in a message, if it holds a valid one. `asked` means the message answers
    /// this slot's question, so the whole message may be the answer; otherwise (capturing from
    /// a message that matched an intent) the slot's pattern must find it first.
    pub fn extract(&self, normalized: &str, original: &str, asked: bool) -> Option<String> {
        let found = self.pattern.as_ref().and_then(|p| {
            p.captures(normalized).map(|c| c.iter().skip(1).flatten().next().or(c.get(0)).map_or("", |m| m.as_str()))
        });
        let region = match found {
            Some(region) => region,
            None if asked || self.pattern.is_none() => normalized,
            None => return None,
        };
        match &self.kind {
            Kind::Number { min, max } => NUMBER.find_iter(region).find_map(|m| {
                let value: f64 = m.as_str().replace(',', ".").parse().ok()?;
                (value >= *min && value <= *max).then(|| format_number(value))
            }),
            Kind::Email => EMAIL.find(region).map(|m| m.as_str().to_string()),
            Kind::Choice(values) => values
                .iter()
                .filter_map(|(value, words)| words.find(region).map(|m| (m.start(), value)))
                .min_by_key(|(start, _)| *start)
                .map(|(_, value)| value.clone()),
            Kind::Text if asked => {
                let text = original.trim();
                (!text.is_empty() && text.chars().count() <= 80).then(|| text.to_string())
            }
            Kind::Text => found.map(str::to_string),
        }
    }
}

fn format_number(value: f64) -> String {
    if value.fract() == 0.0 { format!("{value:.0}") } else { format!("{value}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(kind: Kind, pattern: Option<&str>) -> Slot {
        Slot {
            id: "s".into(),
            kind,
            pattern: pattern.map(|p| Regex::new(p).expect("valid")),
            tries: 2,
            consent: None,
            requires: Vec::new(),
            at: Location { file: std::path::Path::new("x").into(), line: 1, col: 1 },
            questions: [None, None],
            names: Default::default(),
        }
    }

    #[test]
    fn extracts_typed_answers() {
        let size = slot(Kind::Number { min: 35.0, max: 48.0 }, Some(r"\b(?:size|groesse|eu) ?(\d+(?:[.,]5)?)"));
        let colour =
            slot(Kind::Choice(vec![("black".into(), Regex::new(r"\b(black|schwarz)\b").expect("valid"))]), None);
        let email = slot(Kind::Email, None);
        for (slot, text, asked, expected) in [
            (&size, "42", true, Some("42")),
            (&size, "i wear 42,5", true, Some("42.5")),
            (&size, "12", true, None),
            (&size, "sneakers in size 43", false, Some("43")),
            (&size, "sneakers for 90 euros", false, None),
            (&colour, "schwarz bitte", true, Some("black")),
            (&colour, "green", true, None),
            (&email, "it's ana@example.com thanks", true, Some("ana@example.com")),
            (&email, "ana at example", true, None),
        ] {
            assert_eq!(slot.extract(text, text, asked).as_deref(), expected, "{text}");
        }
        assert!(size.refuses("size 99"));
        assert!(!size.refuses("size 42") && !size.refuses("99 problems") && !colour.refuses("green"));
    }
}
