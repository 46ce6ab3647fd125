//! `nudge intents eval`: routes labelled messages and reports how well the intents do.
//! A label is an intent id, or `none` for messages that must get the fallback.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{IntentSet, text};

pub const NONE: &str = "none";

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub rows: usize,
    pub correct: usize,
    pub labelled_rows: usize,
    pub labelled_correct: usize,
    pub none_rows: usize,
    /// `none` rows that an intent claimed.
    pub false_matches: usize,
    pub per_intent: BTreeMap<String, Counts>,
    /// (expected, got) pairs, most frequent first.
    pub confusions: Vec<Confusion>,
}

#[derive(Debug, Default, Serialize)]
pub struct Counts {
    pub true_positives: usize,
    pub false_positives: usize,
    pub false_negatives: usize,
}

#[derive(Debug, Serialize)]
pub struct Confusion {
    pub expected: String,
    pub got: String,
    pub count: usize,
    pub examples: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{0}: {1}")]
    Csv(String, csv::Error),
    #[error("{0}: needs the columns `text` and `label`")]
    Columns(String),
}

impl Report {
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.rows)
    }
    pub fn labelled_accuracy(&self) -> f64 {
        ratio(self.labelled_correct, self.labelled_rows)
    }
    pub fn false_match_rate(&self) -> f64 {
        ratio(self.false_matches, self.none_rows)
    }
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Reads `text,label` rows (other columns are ignored).
pub fn read_rows(path: &Path) -> Result<Vec<(String, String)>, EvalError> {
    let name = path.display().to_string();
    let mut reader = csv::Reader::from_path(path).map_err(|e| EvalError::Csv(name.clone(), e))?;
    let headers = reader.headers().map_err(|e| EvalError::Csv(name.clone(), e))?.clone();
    let column = |n: &str| headers.iter().position(|h| h.trim() == n);
    let (Some(text), Some(label)) = (column("text"), column("label")) else {
        return Err(EvalError::Columns(name));
    };
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| EvalError::Csv(name.clone(), e))?;
        rows.push((record.get(text).unwrap_or("").to_string(), record.get(label).unwrap_or("").trim().to_string()));
    }
    Ok(rows)
}

pub fn evaluate(intents: &IntentSet, rows: &[(String, String)]) -> Report {
    let mut report = Report::default();
    let mut confusions: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (message, label) in rows {
        let route = intents.route(&text::normalize(message), &|_| false);
        let got = if route.intent == intents.fallback() { NONE } else { intents.intents[route.intent].id.as_str() };
        let right = got == label;
        report.rows += 1;
        report.correct += usize::from(right);
        if label == NONE {
            report.none_rows += 1;
            report.false_matches += usize::from(!right);
        } else {
            report.labelled_rows += 1;
            report.labelled_correct += usize::from(right);
        }
        if right {
            if label != NONE {
                report.per_intent.entry(label.clone()).or_default().true_positives += 1;
            }
            continue;
        }
        if label != NONE {
            report.per_intent.entry(label.clone()).or_default().false_negatives += 1;
        }
        if got != NONE {
            report.per_intent.entry(got.to_string()).or_default().false_positives += 1;
        }
        confusions.entry((label.clone(), got.to_string())).or_default().push(message.clone());
    }
    let mut confusions: Vec<Confusion> = confusions
        .into_iter()
        .map(|((expected, got), messages)| Confusion {
            expected,
            got,
            count: messages.len(),
            examples: messages.into_iter().take(3).collect(),
        })
        .collect();
    confusions.sort_by_key(|c| std::cmp::Reverse(c.count));
    report.confusions = confusions;
    report
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "rows: {}", self.rows)?;
        writeln!(f, "accuracy: {:.3} ({}/{})", self.accuracy(), self.correct, self.rows)?;
        writeln!(
            f,
            "accuracy on labelled rows: {:.3} ({}/{})",
            self.labelled_accuracy(),
            self.labelled_correct,
            self.labelled_rows
        )?;
        writeln!(
            f,
            "false matches on none: {:.3} ({}/{})",
            self.false_match_rate(),
            self.false_matches,
            self.none_rows
        )?;
        writeln!(f, "\n{:<24} {:>9} {:>7} {:>6}", "intent", "precision", "recall", "rows")?;
        for (intent, c) in &self.per_intent {
            let rows = c.true_positives + c.false_negatives;
            writeln!(f, "{intent:<24} {:>9.3} {:>7.3} {rows:>6}", c.precision(), c.recall())?;
        }
        writeln!(f, "\nworst confusions (expected -> got):")?;
        for c in self.confusions.iter().take(15) {
            writeln!(f, "{:>5}  {} -> {}", c.count, c.expected, c.got)?;
            for example in &c.examples {
                writeln!(f, "         {example:?}")?;
            }
        }
        Ok(())
    }
}
