//! The on-disk intent file format (TOML) and its positions: every error about a file names the
//! `file:line:col` it comes from.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

/// A place in an intent file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// One problem found in the intent files, printed as `file:line:col: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub at: Location,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Turns byte offsets of one file into `Location`s.
pub struct Source {
    pub file: Arc<Path>,
    pub text: String,
}

impl Source {
    pub fn new(file: &Path, text: String) -> Self {
        Self { file: file.into(), text }
    }

    pub fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let before = &self.text[..self.text.floor_char_boundary(offset)];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            file: self.file.clone(),
            line: before.matches('\n').count() + 1,
            col: before[line_start..].chars().count() + 1,
        }
    }

    pub fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { at: self.locate(span.start), message: message.into() }
    }

    /// The start of a value: inside the quotes of a string literal, so a column names its first
    /// character.
    pub fn inside(&self, span: &Range<usize>) -> Location {
        let quote = self.text[span.clone()].bytes().take_while(|b| *b == b'\'' || *b == b'"').count();
        self.locate(span.start + quote)
    }

    pub fn whole_file(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic { at: self.locate(0), message: message.into() }
    }
}

pub fn dir_diagnostic(dir: &Path, message: impl Into<String>) -> Diagnostic {
    Diagnostic { at: Location { file: PathBuf::from(dir).into(), line: 1, col: 1 }, message: message.into() }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub intent: Vec<RawIntent>,
    #[serde(default)]
    pub slot: Vec<RawSlot>,
    /// Follow-up email templates (by convention in `intents/emails/`).
    #[serde(default)]
    pub email: Vec<RawEmail>,
    /// Segments and journeys (by convention in `intents/journeys/`).
    #[serde(default)]
    pub segment: Vec<crate::journeys::RawSegment>,
    #[serde(default)]
    pub journey: Vec<crate::journeys::RawJourney>,
    /// Proactive triggers.
    #[serde(default)]
    pub trigger: Vec<crate::triggers::RawTrigger>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIntent {
    pub id: Spanned<String>,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub patterns: Vec<Spanned<String>>,
    #[serde(default)]
    pub examples: Vec<Spanned<String>>,
    /// Counter-examples: messages that must not route to this intent.
    #[serde(default)]
    pub not: Vec<Spanned<String>>,
    /// Only route here when these preferences are known ...
    #[serde(default)]
    pub when_set: Vec<Spanned<String>>,
    /// ... and these are not.
    #[serde(default)]
    pub when_unset: Vec<Spanned<String>>,
    /// Preferences this intent sets (values may use templates).
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    /// Slots whose answers are also looked for in the message that matched this intent.
    #[serde(default)]
    pub capture: Vec<Spanned<String>>,
    /// Slots to ask next, in order; the first one not yet known is asked.
    #[serde(default)]
    pub ask: Vec<Spanned<String>>,
    /// The intent that answers once every slot in `ask` is known.
    pub done: Option<Spanned<String>>,
    /// Retargeting tags (may use templates, e.g. `interest:{{ product }}`).
    #[serde(default)]
    pub tags: Vec<Spanned<String>>,
    /// Lead score added each time this intent answers.
    #[serde(default)]
    pub score: i64,
    /// Hand the conversation to a person (recorded on the transcript).
    #[serde(default)]
    pub handoff: bool,
    /// A chat may open in this intent (an ad's deep link, the widget's `data-start`).
    #[serde(default)]
    pub start: bool,
    /// Offer the checkout link now (once the required preferences are known), whatever the
    /// score.
    #[serde(default)]
    pub checkout: bool,
    /// Erase everything stored about the visitor when this intent answers (their request).
    #[serde(default)]
    pub erase: bool,
    /// Schedule a follow-up email when this intent answers.
    pub follow_up: Option<Spanned<RawFollowUp>>,
    pub en: Option<Spanned<RawReply>>,
    pub de: Option<Spanned<RawReply>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReply {
    /// Variants of one reply; a visitor always sees the same one.
    pub reply: Vec<Spanned<String>>,
    #[serde(default)]
    pub choices: Vec<RawChoice>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChoice {
    pub label: Spanned<String>,
    pub value: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFollowUp {
    /// The email template's id.
    pub email: Spanned<String>,
    /// How long after the intent answered, e.g. `"1h"` or `"2days"`.
    pub after: Spanned<String>,
}

/// An email template: subject, text and HTML body per locale.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub id: Spanned<String>,
    /// Once a variant is declared the winner, send only it.
    #[serde(default)]
    pub auto_winner: bool,
    pub en: Option<Spanned<RawEmailBody>>,
    pub de: Option<Spanned<RawEmailBody>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmailBody {
    pub subject: Spanned<String>,
    pub text: Spanned<String>,
    pub html: Spanned<String>,
    /// More versions of the email for an A/B test: `[[email.en.variant]]`, each with its own
    /// subject, text and html.
    #[serde(default)]
    pub variant: Vec<Spanned<RawEmailVariant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmailVariant {
    pub subject: Spanned<String>,
    pub text: Spanned<String>,
    pub html: Spanned<String>,
}

/// A question whose answer becomes a preference of the same name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlot {
    pub id: Spanned<String>,
    pub kind: Spanned<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// For `choice`: each value with the words that mean it.
    #[serde(default)]
    pub values: BTreeMap<String, Vec<String>>,
    /// Where the answer is in a message: capture group 1, or the whole match.
    pub pattern: Option<Spanned<String>>,
    /// Bad answers before the question is given up.
    pub tries: Option<u32>,
    /// A `yes` answer records this consent (`marketing` or `ads`); `no` withdraws it.
    pub consent: Option<Spanned<String>>,
    /// Asked in a flow only when these preferences are known.
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    pub en: Option<Spanned<RawQuestion>>,
    pub de: Option<Spanned<RawQuestion>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuestion {
    pub ask: Spanned<String>,
    pub retry: Spanned<String>,
    /// Said when the question is given up.
    pub skip: Option<Spanned<String>>,
    #[serde(default)]
    pub choices: Vec<RawChoice>,
}

/// Parses one file, or says where its TOML is wrong.
pub fn parse(source: &Source) -> Result<RawFile, Diagnostic> {
    toml::from_str(&source.text).map_err(|e| {
        let message = e.message().trim().to_string();
        match e.span() {
            Some(span) => source.at(&span, message),
            None => source.whole_file(message),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_offsets() {
        let s = Source::new(Path::new("a.toml"), "ab\ncdé\nf".to_string());
        let at = |o| {
            let l = s.locate(o);
            (l.line, l.col)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(3), (2, 1));
        assert_eq!(at(7), (2, 4));
        assert_eq!(at(8), (3, 1));
    }
}
