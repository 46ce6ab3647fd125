//! From parsed files to an `IntentSet`: slots first, then intents, then every cross-reference
//! (slots asked, `done` intents, template and condition names) checked against the whole set.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use regex::Regex;
use toml::Spanned;

use super::Ids;
use super::file::{self, RawChoice, RawEmail, RawIntent, RawQuestion, RawReply, RawSlot, Source};
use super::matcher::{self, Matcher};
use super::rank::Ranker;
use super::scope::{Gate, Side, Vocabulary};
use super::slots::{ConsentKind, Kind, Question, Slot};
use super::spell::{self, Speller};
use super::template::Template;
use super::{
    BUILTIN_PREFERENCES, ChoiceTemplate, DEFAULT_MARGIN, DEFAULT_SCOPE, DEFAULT_SURE_THRESHOLD, DEFAULT_THRESHOLD,
    Diagnostic, EMAIL_LINKS, Email, EmailBody, Example, FALLBACK, FollowUp, Intent, IntentSet, Location, Reply,
    WELCOME, text,
};

/// A name used somewhere that must turn out to be a known preference, slot or intent.
struct Reference {
    name: String,
    at: Location,
    what: &'static str,
}

#[derive(Default)]
struct Compiler {
    errors: Vec<Diagnostic>,
    /// Preference names used by templates and conditions, checked once everything is known.
    preferences_used: Vec<Reference>,
    /// Names used by email templates: preferences or `EMAIL_LINKS`.
    email_names_used: Vec<Reference>,
    /// The pack's words, for typo repair.
    speller: Speller,
    /// The shop's words (all but the fallback's), for the scope gate.
    vocabulary: Vocabulary,
}

pub fn compile(dir: &Path, sources: &[Source]) -> Result<IntentSet, Vec<Diagnostic>> {
    let mut c = Compiler::default();
    let mut raw_intents = Vec::new();
    let mut raw_slots = Vec::new();
    let mut raw_emails = Vec::new();
    let (mut raw_segments, mut raw_journeys, mut raw_triggers) = (Vec::new(), Vec::new(), Vec::new());
    for source in sources {
        match file::parse(source) {
            Ok(raw) => {
                raw_intents.extend(raw.intent.into_iter().map(|i| (source, i)));
                raw_slots.extend(raw.slot.into_iter().map(|s| (source, s)));
                raw_emails.extend(raw.email.into_iter().map(|e| (source, e)));
                raw_segments.extend(raw.segment.into_iter().map(|s| (source, s)));
                raw_journeys.extend(raw.journey.into_iter().map(|j| (source, j)));
                raw_triggers.extend(raw.trigger.into_iter().map(|t| (source, t)));
            }
            Err(d) => c.errors.push(d),
        }
    }

    let mut emails: Vec<Email> = Vec::new();
    for (source, raw) in raw_emails {
        if let Some(email) = c.email(source, raw) {
            if let Some(first) = emails.iter().find(|e| e.id == email.id) {
                c.errors.push(duplicate("email", &email.id, &email.at, &first.at));
                continue;
            }
            emails.push(email);
        }
    }
    let email_ids: Vec<String> = emails.iter().map(|e| e.id.clone()).collect();

    let mut slots: Vec<Slot> = Vec::new();
    let mut slot_by_id = Ids::default();
    for (source, raw) in raw_slots {
        if let Some(slot) = c.slot(source, raw) {
            if let Some(&first) = slot_by_id.get(&slot.id) {
                c.errors.push(duplicate("slot", &slot.id, &slot.at, &slots[first].at));
                continue;
            }
            slot_by_id.insert(slot.id.clone(), slots.len());
            slots.push(slot);
        }
    }

    let mut intents: Vec<Intent> = Vec::new();
    let mut by_id = Ids::default();
    let mut patterns = Vec::new();
    let mut done_refs: Vec<(usize, Reference)> = Vec::new();
    for (source, raw) in raw_intents {
        let index = intents.len();
        let done = raw.done.as_ref().map(|d| Reference {
            name: d.get_ref().clone(),
            at: source.inside(&d.span()),
            what: "intent",
        });
        let Some(intent) = c.intent(source, raw, index, &slot_by_id, &email_ids, &mut patterns) else {
            continue;
        };
        if let Some(&first) = by_id.get(&intent.id) {
            c.errors.push(duplicate("intent", &intent.id, &intent.at, &intents[first].at));
            continue;
        }
        if let Some(done) = done {
            done_refs.push((index, done));
        }
        by_id.insert(intent.id.clone(), index);
        intents.push(intent);
    }
    for (index, reference) in done_refs {
        match by_id.get(&reference.name) {
            Some(&target) => intents[index].done = Some(target),
            None => c.unknown(&reference, by_id.keys()),
        }
    }

    let mut known: BTreeSet<String> = BUILTIN_PREFERENCES.iter().map(|s| s.to_string()).collect();
    known.extend(slot_by_id.keys().cloned());
    known.extend(intents.iter().flat_map(|i| i.set.iter().map(|(name, _)| name.clone())));
    for reference in std::mem::take(&mut c.preferences_used) {
        if !known.contains(&reference.name) {
            c.unknown(&reference, known.iter());
        }
    }
    let mut intent_ids: Vec<&str> = by_id.keys().map(String::as_str).collect();
    intent_ids.sort_unstable();
    let refer = crate::journeys::Known { emails: &email_ids, preferences: &known, intents: &intent_ids };
    let journeys = crate::journeys::compile(raw_segments, raw_journeys, &refer, &mut c.errors);
    let startable: Vec<(&str, bool, std::collections::BTreeMap<String, String>)> = intents
        .iter()
        .map(|i| {
            let teaser = crate::intents::LOCALES
                .iter()
                .filter_map(|l| {
                    let first = i.reply(l).variants.first()?;
                    Some((l.to_string(), first.render(|_| None)))
                })
                .collect();
            (i.id.as_str(), i.start, teaser)
        })
        .collect();
    let segment_ids: Vec<&str> = journeys.segments.iter().map(|s| s.id.as_str()).collect();
    let triggers = crate::triggers::compile(raw_triggers, &startable, &segment_ids, &mut c.errors);
    known.extend(EMAIL_LINKS.iter().map(|s| s.to_string()));
    for reference in std::mem::take(&mut c.email_names_used) {
        if !known.contains(&reference.name) {
            c.unknown(&reference, known.iter());
        }
    }
    if c.errors.is_empty() {
        for required in [WELCOME, FALLBACK] {
            if !by_id.contains_key(required) {
                c.errors
                    .push(file::dir_diagnostic(dir, format!("no intent with id `{required}`: every pack needs one")));
            }
        }
    }
    let matcher = match Matcher::new(patterns) {
        Ok(m) => Some(m),
        Err(message) => {
            c.errors.push(file::dir_diagnostic(dir, message));
            None
        }
    };
    let (Some(matcher), true) = (matcher, c.errors.is_empty()) else {
        return Err(c.errors);
    };
    // The ranker learns every example, except those of intents that erase data: those answer
    // only their patterns, so a near miss never erases anything.
    let ranked: Vec<(usize, &Example)> = intents
        .iter()
        .enumerate()
        .filter(|(_, intent)| !intent.erase)
        .flat_map(|(i, intent)| intent.examples.iter().map(move |e| (i, e)))
        .collect();
    let examples: Vec<(usize, String)> = ranked.iter().map(|(i, e)| (*i, text::normalize(&e.text))).collect();
    let mut speller = c.speller;
    for (_, example) in &examples {
        speller.learn_text(example);
    }
    // The scope gate learns every example, those of intents that erase data too: they are
    // the shop's words all the same.
    let mut vocabulary = c.vocabulary;
    let side = |intent: usize| if intent == by_id[FALLBACK] { Side::Other } else { Side::Shop };
    let every: Vec<(Side, String)> = intents
        .iter()
        .enumerate()
        .flat_map(|(i, intent)| intent.examples.iter().map(move |e| (side(i), text::normalize(&e.text))))
        .collect();
    for (side, example) in &every {
        vocabulary.learn(example, *side);
    }
    let samples: Vec<_> = every
        .iter()
        .map(|(side, example)| (vocabulary.evidence(example, &[], Some((example, *side))), *side == Side::Shop))
        .collect();
    Ok(IntentSet {
        warnings: shared_examples(&intents, &ranked, &examples),
        welcome: by_id[WELCOME],
        fallback: by_id[FALLBACK],
        ranker: Ranker::new(&examples),
        speller,
        gate: Gate::fit(&samples),
        vocabulary,
        scope: DEFAULT_SCOPE,
        threshold: DEFAULT_THRESHOLD,
        margin: DEFAULT_MARGIN,
        sure_threshold: DEFAULT_SURE_THRESHOLD,
        intents,
        slots,
        emails,
        journeys,
        triggers,
        by_id,
        slot_by_id,
        matcher,
    })
}

impl Compiler {
    fn intent(
        &mut self,
        source: &Source,
        raw: RawIntent,
        index: usize,
        slots: &Ids,
        emails: &[String],
        patterns: &mut Vec<matcher::Pattern>,
    ) -> Option<Intent> {
        let before = self.errors.len();
        let at = source.inside(&raw.id.span());
        let id = raw.id.into_inner();
        if !is_valid_id(&id) {
            self.errors.push(Diagnostic { at: at.clone(), message: bad_id("intent", &id) });
        }
        for pattern in raw.patterns {
            let span = pattern.span();
            self.speller.learn_pattern(pattern.get_ref());
            let side = if id == FALLBACK { Side::Other } else { Side::Shop };
            self.vocabulary.learn(&text::normalize(&spell::literal(pattern.get_ref())), side);
            match matcher::Pattern::new(pattern.into_inner(), index) {
                Ok(p) => patterns.push(p),
                Err(e) => self.errors.push(Diagnostic { at: source.inside(&span), message: e }),
            }
        }
        let mut replies = [None, None];
        for (slot, raw_reply) in replies.iter_mut().zip([raw.en, raw.de]) {
            if let Some(raw_reply) = raw_reply {
                *slot = self.reply(source, raw_reply);
            }
        }
        if replies[0].is_none() && self.errors.len() == before {
            self.errors.push(Diagnostic {
                at: at.clone(),
                message: format!("intent `{id}` has no English reply: add an `[intent.en]` table with `reply = [...]`"),
            });
        }
        for name in raw.when_set.iter().chain(&raw.when_unset) {
            self.preferences_used.push(Reference {
                name: name.get_ref().clone(),
                at: source.inside(&name.span()),
                what: "preference",
            });
        }
        let set =
            raw.set.into_iter().filter_map(|(name, value)| Some((name, self.template(source, &value)?))).collect();
        let tags = raw.tags.iter().filter_map(|t| self.template(source, t)).collect();
        let capture = self.slot_refs(source, &raw.capture, slots);
        let ask = self.slot_refs(source, &raw.ask, slots);
        let follow_up = raw.follow_up.and_then(|f| self.follow_up(source, f.into_inner(), emails));
        if self.errors.len() > before {
            return None;
        }
        let examples = |list: Vec<Spanned<String>>| -> Vec<Example> {
            list.into_iter().map(|e| Example { at: source.inside(&e.span()), text: e.into_inner() }).collect()
        };
        Some(Intent {
            id,
            priority: raw.priority,
            at,
            replies,
            examples: examples(raw.examples),
            counter_examples: examples(raw.not),
            when_set: raw.when_set.into_iter().map(Spanned::into_inner).collect(),
            when_unset: raw.when_unset.into_iter().map(Spanned::into_inner).collect(),
            set,
            capture,
            ask,
            done: None,
            tags,
            score: raw.score,
            handoff: raw.handoff,
            start: raw.start,
            checkout: raw.checkout,
            erase: raw.erase,
            follow_up,
        })
    }

    fn follow_up(&mut self, source: &Source, raw: file::RawFollowUp, emails: &[String]) -> Option<FollowUp> {
        let email = raw.email.get_ref();
        if !emails.contains(email) {
            let reference = Reference { name: email.clone(), at: source.inside(&raw.email.span()), what: "email" };
            self.unknown(&reference, emails.iter());
            return None;
        }
        match humantime::parse_duration(raw.after.get_ref()) {
            Ok(after) => Some(FollowUp { email: email.clone(), after_secs: after.as_secs() }),
            Err(e) => {
                let message =
                    format!("`after` {:?}: {e} (write e.g. \"30min\", \"1h\" or \"2days\")", raw.after.get_ref());
                self.errors.push(Diagnostic { at: source.inside(&raw.after.span()), message });
                None
            }
        }
    }

    fn email(&mut self, source: &Source, raw: RawEmail) -> Option<Email> {
        let before = self.errors.len();
        let at = source.inside(&raw.id.span());
        let id = raw.id.into_inner();
        if !is_valid_id(&id) {
            self.errors.push(Diagnostic { at: at.clone(), message: bad_id("email", &id) });
        }
        let mut bodies = [None, None];
        let mut counts = Vec::new();
        for (body, raw_body) in bodies.iter_mut().zip([raw.en, raw.de]) {
            let Some(raw_body) = raw_body else { continue };
            let span = raw_body.span();
            let raw_body = raw_body.into_inner();
            let mut part = |text: &Spanned<String>| {
                let template = self.text(source, text)?;
                // Email templates may also use the links; checked apart from reply templates.
                let used = self.preferences_used.len() - template.names().count();
                self.email_names_used.extend(self.preferences_used.drain(used..));
                Some(template)
            };
            let parts = std::iter::once((raw_body.subject, raw_body.text, raw_body.html))
                .chain(raw_body.variant.into_iter().map(|v| v.into_inner()).map(|v| (v.subject, v.text, v.html)));
            let variants: Vec<Option<EmailBody>> = parts
                .map(|(subject, text, html)| {
                    let (subject, text, html) = (part(&subject), part(&text), part(&html));
                    Some(EmailBody { subject: subject?, text: text?, html: html? })
                })
                .collect();
            counts.push((variants.len(), span));
            *body = variants.into_iter().collect();
        }
        // Assigned by visitor, a variant must mean the same email in every language.
        if let [(en, _), (de, span)] = &counts[..]
            && en != de
        {
            let message =
                format!("email `{id}` has {en} variant(s) in English but {de} in German: give each language as many");
            self.errors.push(source.at(span, &message));
        }
        if bodies[0].is_none() && self.errors.len() == before {
            let message = format!("email `{id}` has no English version: add `[email.en]` with subject, text and html");
            self.errors.push(Diagnostic { at: at.clone(), message });
        }
        (self.errors.len() == before).then_some(Email { id, at, auto_winner: raw.auto_winner, bodies })
    }

    fn reply(&mut self, source: &Source, raw: Spanned<RawReply>) -> Option<Reply> {
        let span = raw.span();
        let raw = raw.into_inner();
        if raw.reply.is_empty() {
            self.errors.push(source.at(&span, "`reply` needs at least one text"));
            return None;
        }
        let variants: Vec<Template> = raw.reply.iter().filter_map(|text| self.text(source, text)).collect();
        let choices = self.choices(source, raw.choices)?;
        (variants.len() == raw.reply.len()).then_some(Reply { variants, choices })
    }

    /// A reply text: not empty, and a valid template.
    fn text(&mut self, source: &Source, text: &Spanned<String>) -> Option<Template> {
        if text.get_ref().trim().is_empty() {
            self.errors.push(Diagnostic { at: source.inside(&text.span()), message: "empty text".into() });
            return None;
        }
        self.template(source, text)
    }

    fn template(&mut self, source: &Source, text: &Spanned<String>) -> Option<Template> {
        let at = source.inside(&text.span());
        match Template::parse(text.get_ref()) {
            Ok(template) => {
                for name in template.names() {
                    self.preferences_used.push(Reference {
                        name: name.to_string(),
                        at: at.clone(),
                        what: "preference",
                    });
                }
                Some(template)
            }
            Err(message) => {
                self.errors.push(Diagnostic { at, message });
                None
            }
        }
    }

    fn choices(&mut self, source: &Source, raw: Vec<RawChoice>) -> Option<Vec<ChoiceTemplate>> {
        let mut choices = Vec::new();
        for choice in raw {
            let label = self.text(source, &choice.label);
            let value = self.text(source, &choice.value);
            choices.push(ChoiceTemplate { label: label?, value: value? });
        }
        Some(choices)
    }

    fn slot_refs(&mut self, source: &Source, names: &[Spanned<String>], slots: &Ids) -> Vec<usize> {
        let mut found = Vec::new();
        for name in names {
            match slots.get(name.get_ref()) {
                Some(&i) => found.push(i),
                None => {
                    let reference =
                        Reference { name: name.get_ref().clone(), at: source.inside(&name.span()), what: "slot" };
                    self.unknown(&reference, slots.keys());
                }
            }
        }
        found
    }

    fn slot(&mut self, source: &Source, raw: RawSlot) -> Option<Slot> {
        let before = self.errors.len();
        let at = source.inside(&raw.id.span());
        let id = raw.id.get_ref().clone();
        if !is_valid_id(&id) {
            self.errors.push(Diagnostic { at: at.clone(), message: bad_id("slot", &id) });
        }
        let kind_at = source.inside(&raw.kind.span());
        let kind = match raw.kind.get_ref().as_str() {
            "number" => match (raw.min, raw.max) {
                (Some(min), Some(max)) if min <= max => Some(Kind::Number { min, max }),
                _ => {
                    self.errors
                        .push(Diagnostic { at: kind_at, message: "a `number` slot needs `min` <= `max`".into() });
                    None
                }
            },
            "email" => Some(Kind::Email),
            "text" => Some(Kind::Text),
            "choice" if raw.values.is_empty() => {
                self.errors.push(Diagnostic { at: kind_at, message: "a `choice` slot needs `values`".into() });
                None
            }
            "choice" => self.choice_values(&raw, &kind_at),
            other => {
                let message = format!("unknown slot kind `{other}` (expected number, email, choice or text)");
                self.errors.push(Diagnostic { at: kind_at, message });
                None
            }
        };
        let pattern = raw.pattern.as_ref().and_then(|p| match matcher::compile(p.get_ref()) {
            Ok(regex) => Some(regex),
            Err(message) => {
                self.errors.push(Diagnostic { at: source.inside(&p.span()), message });
                None
            }
        });
        let consent = raw.consent.as_ref().and_then(|c| match c.get_ref().as_str() {
            "marketing" => Some(ConsentKind::Marketing),
            "ads" => Some(ConsentKind::Ads),
            other => {
                let message = format!("unknown consent `{other}` (expected marketing or ads)");
                self.errors.push(Diagnostic { at: source.inside(&c.span()), message });
                None
            }
        });
        if consent.is_some() && !(raw.values.contains_key("yes") && raw.values.contains_key("no")) {
            let message = "a consent slot is a `choice` with the values `yes` and `no`".into();
            self.errors.push(Diagnostic { at: at.clone(), message });
        }
        let mut questions = [None, None];
        for (slot, question) in questions.iter_mut().zip([raw.en, raw.de]) {
            if let Some(question) = question {
                *slot = self.question(source, question.into_inner());
            }
        }
        if questions[0].is_none() && self.errors.len() == before {
            let message = format!("slot `{id}` has no English question: add `[slot.en]` with `ask` and `retry`");
            self.errors.push(Diagnostic { at: at.clone(), message });
        }
        if self.errors.len() > before {
            return None;
        }
        for name in &raw.requires {
            let at = source.inside(&name.span());
            self.preferences_used.push(Reference { name: name.get_ref().clone(), at, what: "preference" });
        }
        let requires = raw.requires.into_iter().map(Spanned::into_inner).collect();
        let tries = raw.tries.unwrap_or(2).max(1);
        let mut slot =
            Slot { id, kind: kind?, pattern, tries, consent, requires, at, questions, names: Default::default() };
        if matches!(slot.kind, Kind::Choice(_)) {
            slot.learn_names();
        }
        Some(slot)
    }

    fn choice_values(&mut self, raw: &RawSlot, at: &Location) -> Option<Kind> {
        let mut values = Vec::new();
        for (value, words) in &raw.values {
            for word in std::iter::once(value).chain(words) {
                self.speller.learn_text(&text::normalize(word));
                self.vocabulary.learn(&text::normalize(word), Side::Shop);
            }
            let mut words: Vec<String> = words.iter().map(|w| regex::escape(&text::normalize(w))).collect();
            words.push(regex::escape(&text::normalize(value)));
            match Regex::new(&format!(r"\b(?:{})\b", words.join("|"))) {
                Ok(regex) => values.push((value.clone(), regex)),
                Err(e) => {
                    self.errors.push(Diagnostic { at: at.clone(), message: format!("value `{value}`: {e}") });
                    return None;
                }
            }
        }
        Some(Kind::Choice(values))
    }

    fn question(&mut self, source: &Source, raw: RawQuestion) -> Option<Question> {
        let ask = self.text(source, &raw.ask);
        let retry = self.text(source, &raw.retry);
        let skip = match &raw.skip {
            Some(skip) => Some(self.text(source, skip)?),
            None => None,
        };
        let choices = self.choices(source, raw.choices)?;
        Some(Question { ask: ask?, retry: retry?, skip, choices })
    }

    fn unknown<'a>(&mut self, reference: &Reference, known: impl Iterator<Item = &'a String>) {
        let mut known: Vec<&str> = known.map(String::as_str).collect();
        known.sort_unstable();
        self.errors.push(Diagnostic {
            at: reference.at.clone(),
            message: format!("unknown {} `{}` (known: {})", reference.what, reference.name, known.join(", ")),
        });
    }
}

fn duplicate(what: &str, id: &str, at: &Location, first: &Location) -> Diagnostic {
    Diagnostic { at: at.clone(), message: format!("duplicate {what} id `{id}` (first defined at {first})") }
}

fn bad_id(what: &str, id: &str) -> String {
    format!("{what} id `{id}` must be lowercase letters, digits and `_`, starting with a letter")
}

fn is_valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether two intents' conditions can never hold together.
fn exclusive(a: &Intent, b: &Intent) -> bool {
    a.when_set.iter().any(|p| b.when_unset.contains(p)) || b.when_set.iter().any(|p| a.when_unset.contains(p))
}

/// Examples that two intents both claim: the ranker cannot tell them apart. `ranked` is every
/// example the ranker learns, with its intent, and `normalized` the same examples normalized.
fn shared_examples<'a>(
    intents: &'a [Intent],
    ranked: &[(usize, &'a Example)],
    normalized: &'a [(usize, String)],
) -> Vec<Diagnostic> {
    let mut first: HashMap<&str, (&Intent, &Example)> = HashMap::new();
    let mut warnings = Vec::new();
    for (&(i, example), (_, key)) in ranked.iter().zip(normalized) {
        let intent = &intents[i];
        match first.get(key.as_str()) {
            Some((other, at)) if other.id != intent.id && !exclusive(other, intent) => warnings.push(Diagnostic {
                at: example.at.clone(),
                message: format!(
                    "warning: example {:?} is also an example of `{}` ({})",
                    example.text, other.id, at.at
                ),
            }),
            Some(_) => {}
            None => {
                first.insert(key, (intent, example));
            }
        }
    }
    warnings
}
