//! `nudge intents eval`: routes labelled messages and reports how well the intents do.
//! A label is an intent id, or `none` for messages that must get the fallback.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::{How, IntentSet, text};

pub const NONE: &str = "none";

/// One labelled message; `source` and `lang` are optional columns, reported as groups.
#[derive(Debug, Clone)]
pub struct Row {
    pub text: String,
    pub label: String,
    pub source: String,
    pub lang: String,
}

/// How one row was routed (`--rows`).
#[derive(Debug, Serialize)]
pub struct Routed<'a> {
    pub text: &'a str,
    pub label: &'a str,
    pub got: &'a str,
    pub how: How,
    pub confidence: f32,
    pub source: &'a str,
    pub lang: &'a str,
    /// The evidence (see `scope`), the gate's probability that the message is about the shop,
    /// and the cosine to the routed intent's nearest example.
    pub shop: f32,
    pub other: f32,
    pub foreign: f32,
    pub on_topic: f32,
    pub support: f32,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    #[serde(flatten)]
    pub totals: Totals,
    pub per_intent: BTreeMap<String, Counts>,
    /// The same totals for each value of the `source` and `lang` columns.
    pub per_source: BTreeMap<String, Totals>,
    pub per_lang: BTreeMap<String, Totals>,
    /// (expected, got) pairs, most frequent first.
    pub confusions: Vec<Confusion>,
}

#[derive(Debug, Default, Clone, Serialize)]
#[serde(into = "TotalsJson")]
pub struct Totals {
    pub rows: usize,
    pub correct: usize,
    pub labelled_rows: usize,
    pub labelled_correct: usize,
    pub none_rows: usize,
    /// `none` rows that an intent claimed.
    pub false_matches: usize,
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

impl Totals {
    fn add(&mut self, label: &str, right: bool) {
        self.rows += 1;
        self.correct += usize::from(right);
        if label == NONE {
            self.none_rows += 1;
            self.false_matches += usize::from(!right);
        } else {
            self.labelled_rows += 1;
            self.labelled_correct += usize::from(right);
        }
    }
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

impl std::ops::AddAssign<&Totals> for Totals {
    fn add_assign(&mut self, t: &Totals) {
        self.rows += t.rows;
        self.correct += t.correct;
        self.labelled_rows += t.labelled_rows;
        self.labelled_correct += t.labelled_correct;
        self.none_rows += t.none_rows;
        self.false_matches += t.false_matches;
    }
}

/// Totals as JSON: the counts and the rates beside them.
#[derive(Serialize)]
struct TotalsJson {
    rows: usize,
    correct: usize,
    labelled_rows: usize,
    labelled_correct: usize,
    none_rows: usize,
    false_matches: usize,
    accuracy: f64,
    labelled_accuracy: f64,
    false_match_rate: f64,
}

impl From<Totals> for TotalsJson {
    fn from(t: Totals) -> TotalsJson {
        TotalsJson {
            accuracy: t.accuracy(),
            labelled_accuracy: t.labelled_accuracy(),
            false_match_rate: t.false_match_rate(),
            rows: t.rows,
            correct: t.correct,
            labelled_rows: t.labelled_rows,
            labelled_correct: t.labelled_correct,
            none_rows: t.none_rows,
            false_matches: t.false_matches,
        }
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

/// Reads `text,label` rows, with `source` and `lang` where the file has them.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, EvalError> {
    let name = path.display().to_string();
    let mut reader = csv::Reader::from_path(path).map_err(|e| EvalError::Csv(name.clone(), e))?;
    let headers = reader.headers().map_err(|e| EvalError::Csv(name.clone(), e))?.clone();
    let column = |n: &str| headers.iter().position(|h| h.trim() == n);
    let (Some(text), Some(label)) = (column("text"), column("label")) else {
        return Err(EvalError::Columns(name));
    };
    let (source, lang) = (column("source"), column("lang"));
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| EvalError::Csv(name.clone(), e))?;
        let get = |i: Option<usize>| i.and_then(|i| record.get(i)).unwrap_or("").trim().to_string();
        rows.push(Row {
            text: record.get(text).unwrap_or("").to_string(),
            label: get(Some(label)),
            source: get(source),
            lang: get(lang),
        });
    }
    Ok(rows)
}

/// Routes one row as a fresh visitor would be routed.
pub fn route<'a>(intents: &'a IntentSet, row: &'a Row) -> Routed<'a> {
    let explained = intents.explain(&text::Message::new(&row.text));
    let route = explained.route;
    let got = if route.intent == intents.fallback() { NONE } else { intents.intents[route.intent].id.as_str() };
    Routed {
        text: &row.text,
        label: &row.label,
        got,
        how: route.how,
        confidence: route.confidence,
        source: &row.source,
        lang: &row.lang,
        shop: explained.evidence.shop,
        other: explained.evidence.other,
        foreign: explained.evidence.foreign,
        on_topic: explained.on_topic,
        support: explained.support,
    }
}

pub fn evaluate(intents: &IntentSet, rows: &[Row]) -> Report {
    let mut report = Report::default();
    let mut confusions: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for row in rows {
        let Routed { got, label, .. } = route(intents, row);
        let right = got == label;
        report.totals.add(label, right);
        for (groups, key) in [(&mut report.per_source, &row.source), (&mut report.per_lang, &row.lang)] {
            if !key.is_empty() {
                groups.entry(key.clone()).or_default().add(label, right);
            }
        }
        if right {
            if label != NONE {
                report.per_intent.entry(label.to_string()).or_default().true_positives += 1;
            }
            continue;
        }
        if label != NONE {
            report.per_intent.entry(label.to_string()).or_default().false_negatives += 1;
        }
        if got != NONE {
            report.per_intent.entry(got.to_string()).or_default().false_positives += 1;
        }
        confusions.entry((label.to_string(), got.to_string())).or_default().push(row.text.clone());
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
        let t = &self.totals;
        writeln!(f, "rows: {}", t.rows)?;
        writeln!(f, "accuracy: {:.3} ({}/{})", t.accuracy(), t.correct, t.rows)?;
        writeln!(
            f,
            "accuracy on labelled rows: {:.3} ({}/{})",
            t.labelled_accuracy(),
            t.labelled_correct,
            t.labelled_rows
        )?;
        writeln!(f, "false matches on none: {:.3} ({}/{})", t.false_match_rate(), t.false_matches, t.none_rows)?;
        for (title, groups) in [("source", &self.per_source), ("lang", &self.per_lang)] {
            if groups.is_empty() {
                continue;
            }
            writeln!(f, "\n{title:<24} {:>6} {:>9} {:>14}", "rows", "labelled", "false matches")?;
            for (key, g) in groups {
                let labelled =
                    if g.labelled_rows == 0 { "-".to_string() } else { format!("{:.3}", g.labelled_accuracy()) };
                let false_matches =
                    if g.none_rows == 0 { "-".to_string() } else { format!("{:.3}", g.false_match_rate()) };
                writeln!(f, "{key:<24} {:>6} {labelled:>9} {false_matches:>14}", g.rows)?;
            }
        }
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

/// The knobs `--folds` tunes (the ranker's threshold and margin, its threshold for messages the
/// scope gate is sure of, the gate's cutoff); everything else about routing is fixed by the pack.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Tuning {
    pub threshold: f32,
    pub margin: f32,
    pub sure_threshold: f32,
    pub scope: f32,
}

impl Tuning {
    fn grid() -> Vec<Tuning> {
        let mut grid = Vec::new();
        const THRESHOLDS: [f32; 5] = [0.25, 0.3, 0.35, 0.4, 0.45];
        for threshold in THRESHOLDS.into_iter().skip(1) {
            for sure_threshold in THRESHOLDS.into_iter().filter(|t| *t <= threshold) {
                for margin in [0.0, 0.02, 0.05] {
                    for scope in (0..=5).map(|i| i as f32 * 0.1) {
                        grid.push(Tuning { threshold, margin, sure_threshold, scope });
                    }
                }
            }
        }
        grid
    }
    fn of(set: &IntentSet) -> Tuning {
        Tuning { threshold: set.threshold, margin: set.margin, sure_threshold: set.sure_threshold, scope: set.scope }
    }
    fn apply(self, set: &mut IntentSet) {
        set.threshold = self.threshold;
        set.margin = self.margin;
        set.sure_threshold = self.sure_threshold;
        set.scope = self.scope;
    }
}

/// `--folds K`: each row is in one of K folds (by a hash of its text, so repeated messages stay
/// together). For each fold the knobs are tuned for accuracy on the other folds and measured on
/// it; `pooled` adds up those measurements, so every row is counted once, by knobs that never
/// saw it.
#[derive(Debug, Serialize)]
pub struct CrossValidation {
    pub folds: Vec<Fold>,
    pub pooled: Totals,
    /// The knobs tuned on every row, and what they score on the rows they were tuned on.
    pub tuned_on_all: Tuning,
    pub in_sample: Totals,
    /// The pack's own knobs, untuned.
    pub pack: Tuning,
    pub pack_totals: Totals,
}

#[derive(Debug, Serialize)]
pub struct Fold {
    pub rows: usize,
    pub tuning: Tuning,
    pub totals: Totals,
}

#[derive(Debug, thiserror::Error)]
#[error("--folds needs at least 2 folds and at least as many rows as folds")]
pub struct FoldsError;

/// `false_match_cost`: how many missed messages one confident wrong answer is worth when
/// tuning (1: plain accuracy).
pub fn cross_validate(
    set: &mut IntentSet,
    rows: &[Row],
    k: usize,
    false_match_cost: u32,
) -> Result<CrossValidation, FoldsError> {
    if k < 2 || rows.len() < k {
        return Err(FoldsError);
    }
    let pack = Tuning::of(set);
    let fold_of: Vec<usize> = rows.iter().map(|r| fnv(&text::normalize(&r.text)) as usize % k).collect();
    // Route every row once per grid point; tuning and measuring are then sums over rows.
    let grid = Tuning::grid();
    let right: Vec<Vec<bool>> = grid
        .iter()
        .map(|tuning| {
            tuning.apply(set);
            rows.iter().map(|row| route(set, row).got == row.label).collect()
        })
        .collect();
    pack.apply(set);
    let totals = |g: usize, keep: &dyn Fn(usize) -> bool| {
        let mut t = Totals::default();
        for (i, row) in rows.iter().enumerate().filter(|(i, _)| keep(*i)) {
            t.add(&row.label, right[g][i]);
        }
        t
    };
    let best = |keep: &dyn Fn(usize) -> bool| {
        let score =
            |t: Totals| t.correct as i64 - i64::from(false_match_cost.saturating_sub(1)) * t.false_matches as i64;
        (0..grid.len()).max_by_key(|&g| (score(totals(g, keep)), std::cmp::Reverse(g))).unwrap_or(0)
    };
    let mut folds = Vec::new();
    let mut pooled = Totals::default();
    for fold in 0..k {
        let g = best(&|i| fold_of[i] != fold);
        let t = totals(g, &|i| fold_of[i] == fold);
        pooled += &t;
        folds.push(Fold { rows: t.rows, tuning: grid[g], totals: t });
    }
    let all = best(&|_| true);
    Ok(CrossValidation {
        folds,
        pooled,
        tuned_on_all: grid[all],
        in_sample: totals(all, &|_| true),
        pack,
        pack_totals: evaluate(set, rows).totals,
    })
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

impl std::fmt::Display for CrossValidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, name: &str, rows: usize, tuning: &Tuning, t: &Totals| {
            writeln!(
                f,
                "{name:<14} {rows:>6} {:>9.2} {:>7.2} {:>5.2} {:>6.2} {:>9.3} {:>14.3}",
                tuning.threshold,
                tuning.margin,
                tuning.sure_threshold,
                tuning.scope,
                t.labelled_accuracy(),
                t.false_match_rate()
            )
        };
        writeln!(
            f,
            "{:<14} {:>6} {:>9} {:>7} {:>5} {:>6} {:>9} {:>14}",
            "", "rows", "threshold", "margin", "sure", "scope", "labelled", "false matches"
        )?;
        for (i, fold) in self.folds.iter().enumerate() {
            line(f, &format!("fold {}", i + 1), fold.rows, &fold.tuning, &fold.totals)?;
        }
        writeln!(
            f,
            "{:<14} {:>6} {:>9} {:>7} {:>6} {:>9.3} {:>14.3}",
            "pooled",
            self.pooled.rows,
            "",
            "",
            "",
            self.pooled.labelled_accuracy(),
            self.pooled.false_match_rate()
        )?;
        line(f, "tuned on all", self.in_sample.rows, &self.tuned_on_all, &self.in_sample)?;
        line(f, "pack", self.pack_totals.rows, &self.pack, &self.pack_totals)
    }
}
