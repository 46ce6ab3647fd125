//! The dialogue engine: a pure function from (intent set, conversation state, message, time) to
//! the frames to send and the effects to apply. No IO, no clock, no randomness: the session in
//! `chat` applies the effects through `store` and only then sends the frames.
//!
//! Routing order: the answer to a pending slot question; then intent patterns; then the
//! example ranker; below its threshold, the fallback.

use std::collections::BTreeMap;

use crate::domain::{Entry, Pending, Preference, Speaker};
use crate::ids::VisitorId;
use crate::intents::slots::{ConsentKind, Slot};
use crate::intents::{Choice, ChoiceTemplate, How, Intent, IntentSet, template::Template, text};
use crate::protocol::{Reply, ServerFrame};

/// A ranked match this close to an example means the shopper changed the subject instead of
/// answering the question; weaker ones count as a bad answer.
const SURE: f32 = 0.6;

/// A `done` intent may itself ask and finish into another; this bounds such chains.
const MAX_CHAIN: usize = 4;

/// What the engine needs to know about a conversation, borrowed from the session's own state
/// (a step copies nothing it does not change).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct State<'a> {
    pub visitor: VisitorId,
    /// `en` or `de`: from `hello`, then from the language of the shopper's messages.
    pub locale: &'a str,
    /// The visitor's preferences.
    pub preferences: &'a BTreeMap<String, Preference>,
    /// The question the bot is waiting for an answer to.
    pub pending: Option<&'a Pending>,
}

#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The conversation (re)opened: send the greeting.
    Start,
    Say(&'a str),
    /// A quick-reply button; its value is routed like a typed message.
    Choose(&'a str),
    /// The chat opens in this intent (a deep link) instead of the greeting.
    Open(&'a str),
}

impl<'a> Input<'a> {
    /// What the shopper sent, if anything.
    pub fn text(&self) -> Option<&'a str> {
        match self {
            Input::Start | Input::Open(_) => None,
            Input::Say(text) | Input::Choose(text) => Some(text),
        }
    }
}

/// A change the shell must make durable before sending the frames.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Record(Entry),
    SetLocale(String),
    /// A captured preference and the message it came from.
    SetPreference {
        name: String,
        value: String,
        message: String,
    },
    AddTags(Vec<String>),
    AddScore(i64),
    SetPending(Option<Pending>),
    SetConsent {
        kind: ConsentKind,
        granted: bool,
    },
    /// The shopper asked for a person.
    Handoff,
    /// Erase everything stored about the visitor (they asked for it).
    Erase,
    /// The shopper asked to check out: offer the link if what it needs is known.
    OfferCheckout,
    /// Schedule a follow-up email (sent only if it is still wanted then).
    FollowUp {
        email: String,
        after_secs: u64,
    },
}

#[derive(Debug, Default)]
pub struct Step {
    pub frames: Vec<ServerFrame>,
    pub effects: Vec<Effect>,
}

pub fn step(intents: &IntentSet, state: &State, input: Input<'_>, now: u64) -> Step {
    let mut turn = Turn {
        intents,
        visitor: state.visitor,
        locale: state.locale.to_string(),
        known: state.preferences,
        set: BTreeMap::new(),
        now,
        // Room for what a message usually makes (the shopper's line, a reply or two, what it
        // captured): grown from nothing, these were moved three times per message.
        step: Step { frames: Vec::with_capacity(2), effects: Vec::with_capacity(8) },
    };
    let message = match input {
        Input::Start => {
            // A conversation resumed mid-flow asks its open question again instead of greeting,
            // so the shopper's next answer is read as the answer to it.
            if let Some(pending) = state.pending
                && let Some(slot) = intents.slot(&pending.slot)
            {
                let question = slot.question(&turn.locale);
                let (text, choices) = (turn.say_text(&question.ask), turn.choices(&question.choices));
                turn.say(text, &pending.intent, choices, None);
                return turn.step;
            }
            let known = |p: &str| state.preferences.contains_key(p);
            turn.answer(intents.greeting(&known), "", "", 0);
            return turn.step;
        }
        Input::Open(id) => {
            if let Some(intent) = intents.index_of(id) {
                turn.answer(intent, "", "", 0);
            }
            return turn.step;
        }
        Input::Say(message) | Input::Choose(message) => message,
    };
    let routed = text::Message::new(message);
    let normalized = routed.normalized.as_str();
    if let Some(guessed) = routed.locale.filter(|l| *l != turn.locale) {
        turn.locale = guessed.to_string();
        turn.step.effects.push(Effect::SetLocale(turn.locale.clone()));
    }
    if let Some(pending) = state.pending
        && let Some(slot) = intents.slot(&pending.slot)
        && turn.slot_answer(slot, pending, &routed, message)
    {
        turn.show_route(How::Slot, 1.0);
        return turn.step;
    }
    let known = |p: &str| state.preferences.contains_key(p);
    let route = intents.route(&routed, &known);
    turn.record_shopper(message, &intents.intents[route.intent].id, route.how, route.confidence);
    if state.pending.is_some() && intents.intents[route.intent].ask.is_empty() {
        turn.step.effects.push(Effect::SetPending(None));
    }
    turn.answer(route.intent, normalized, message, 0);
    turn.show_route(route.how, route.confidence);
    turn.step
}

/// One engine step in progress.
struct Turn<'a> {
    intents: &'a IntentSet,
    visitor: VisitorId,
    locale: String,
    /// The preferences known before this step, and those it set (for templates and the next
    /// question): see `preference`.
    known: &'a BTreeMap<String, Preference>,
    set: BTreeMap<String, String>,
    now: u64,
    step: Step,
}

impl Turn<'_> {
    fn preference(&self, name: &str) -> Option<&str> {
        self.set.get(name).or_else(|| self.known.get(name).map(|p| &p.value)).map(String::as_str)
    }

    fn knows(&self, name: &str) -> bool {
        self.preference(name).is_some()
    }

    /// Handles a message as the answer to the pending question. Returns false when the
    /// shopper clearly changed the subject (another intent matches), so normal routing goes on.
    fn slot_answer(&mut self, slot: &Slot, pending: &Pending, routed: &text::Message, message: &str) -> bool {
        let normalized = routed.normalized.as_str();
        if let Some(value) = slot.extract(normalized, message, true) {
            self.record_shopper(message, &pending.intent, How::Slot, 1.0);
            self.set_preference(slot, value, message);
            self.continue_flow(&pending.then, pending.done.as_deref(), &pending.intent, 0);
            return true;
        }
        let declined = text::is_decline(normalized);
        let known = |p: &str| self.knows(p);
        let route = self.intents.route(routed, &known);
        // "size 99" to the size question is a bad answer to it, whatever else it matches.
        let changed_subject = !slot.refuses(normalized)
            && (route.how == How::Pattern || (route.how == How::Examples && route.confidence >= SURE));
        if !declined && changed_subject {
            return false;
        }
        self.record_shopper(message, &pending.intent, How::Slot, 0.0);
        let question = slot.question(&self.locale);
        if declined || pending.tries + 1 >= slot.tries {
            let skip = question.skip.as_ref();
            if let Some(skip) = skip {
                let text = self.say_text(skip);
                self.say(text, &pending.intent, Vec::new(), None);
            }
            self.continue_flow(&pending.then, pending.done.as_deref(), &pending.intent, 0);
        } else {
            let text = self.say_text(&question.retry);
            let choices = self.choices(&question.choices);
            self.say(text, &pending.intent, choices, None);
            let retry = Pending { tries: pending.tries + 1, ..pending.clone() };
            self.step.effects.push(Effect::SetPending(Some(retry)));
        }
        true
    }

    /// Answers with `intent`: its captures, preferences, tags and score, its reply, then the
    /// next question of its flow.
    fn answer(&mut self, index: usize, normalized: &str, message: &str, depth: usize) {
        let intents = self.intents;
        let intent: &Intent = &intents.intents[index];
        let mut refused = Vec::new();
        for &slot in &intent.capture {
            let slot = &intents.slots[slot];
            if let Some(value) = slot.extract(normalized, message, false) {
                self.set_preference(slot, value, message);
            } else if slot.refuses(normalized) {
                refused.push(slot);
            }
        }
        for (name, template) in &intent.set {
            let value = self.render(template);
            match intents.slot(name) {
                // Through the slot, so that setting a consent slot records the consent.
                Some(slot) => self.set_preference(slot, value, message),
                None => {
                    self.set.insert(name.clone(), value.clone());
                    let message = message.to_string();
                    self.step.effects.push(Effect::SetPreference { name: name.clone(), value, message });
                }
            }
        }
        // A tag naming a preference that is not known yet is not added.
        let tags: Vec<String> =
            intent.tags.iter().filter(|t| t.names().all(|n| self.knows(n))).map(|t| self.render(t)).collect();
        if !tags.is_empty() {
            self.step.effects.push(Effect::AddTags(tags));
        }
        if intent.score != 0 {
            self.step.effects.push(Effect::AddScore(intent.score));
        }
        if intent.handoff {
            self.step.effects.push(Effect::Handoff);
        }
        if intent.erase {
            self.step.effects.push(Effect::Erase);
        }
        if intent.checkout {
            self.step.effects.push(Effect::OfferCheckout);
        }
        if let Some(follow_up) = &intent.follow_up {
            let (email, after_secs) = (follow_up.email.clone(), follow_up.after_secs);
            self.step.effects.push(Effect::FollowUp { email, after_secs });
        }
        let reply = intent.reply(&self.locale);
        let variant = choose_variant(&self.visitor, &intent.id, reply.variants.len());
        let text = self.say_text(&reply.variants[variant]);
        let choices = self.choices(&reply.choices);
        self.say(text, &intent.id, choices, Some(variant as u32));
        for slot in refused {
            let text = self.say_text(&slot.question(&self.locale).retry);
            self.say(text, &intent.id, Vec::new(), None);
        }
        if !intent.ask.is_empty() || intent.done.is_some() {
            let queue: Vec<String> = intent.ask.iter().map(|&s| intents.slots[s].id.clone()).collect();
            let done = intent.done.map(|d| intents.intents[d].id.as_str());
            self.continue_flow(&queue, done, &intent.id, depth);
        }
    }

    /// Asks the first slot of `queue` that is not known yet; when none is left, answers with
    /// the `done` intent.
    fn continue_flow(&mut self, queue: &[String], done: Option<&str>, asking: &str, depth: usize) {
        let intents = self.intents;
        let askable = |id: &String| {
            intents.slot(id).is_some_and(|slot| !self.knows(id) && slot.requires.iter().all(|r| self.knows(r)))
        };
        let next = queue.iter().enumerate().find(|(_, id)| askable(id));
        if let Some((i, id)) = next
            && let Some(slot) = intents.slot(id)
        {
            let question = slot.question(&self.locale);
            let text = self.say_text(&question.ask);
            let choices = self.choices(&question.choices);
            self.say(text, asking, choices, None);
            let pending = Pending {
                slot: id.clone(),
                tries: 0,
                then: queue[i + 1..].to_vec(),
                done: done.map(str::to_string),
                intent: asking.to_string(),
            };
            self.step.effects.push(Effect::SetPending(Some(pending)));
            return;
        }
        self.step.effects.push(Effect::SetPending(None));
        if let Some(done) = done.and_then(|d| intents.index_of(d))
            && depth < MAX_CHAIN
        {
            self.answer(done, "", "", depth + 1);
        }
    }

    /// Tells clients how the message was routed and what it set, on the first reply of the step.
    fn show_route(&mut self, how: How, confidence: f32) {
        let captured = self
            .step
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::SetPreference { name, value, .. } => Some((name.clone(), value.clone())),
                _ => None,
            })
            .collect();
        if let Some(ServerFrame::Reply(reply)) = self.step.frames.first_mut() {
            reply.how = Some(how);
            reply.confidence = Some(confidence);
            reply.captured = captured;
        }
    }

    fn set_preference(&mut self, slot: &Slot, value: String, message: &str) {
        if let Some(kind) = slot.consent {
            self.step.effects.push(Effect::SetConsent { kind, granted: value == "yes" });
        }
        self.set.insert(slot.id.clone(), value.clone());
        let message = message.to_string();
        self.step.effects.push(Effect::SetPreference { name: slot.id.clone(), value, message });
    }

    fn choices(&self, choices: &[ChoiceTemplate]) -> Vec<Choice> {
        choices.iter().map(|c| Choice { label: self.say_text(&c.label), value: self.render(&c.value) }).collect()
    }

    /// Fills in preferences as they are stored (for `set`, tags and quick-reply values).
    fn render(&self, template: &Template) -> String {
        template.render(|name| self.preference(name))
    }

    /// Fills in preferences the way a shopper reads them: a choice shows the words of its quick
    /// reply in the conversation's language ("Laufschuhe", not `running_shoes`).
    fn say_text(&self, template: &Template) -> String {
        template.render(|name| {
            let value = self.preference(name)?;
            Some(self.intents.slot(name).map_or(value, |slot| slot.display(&self.locale, value)))
        })
    }

    fn record_shopper(&mut self, message: &str, intent: &str, how: How, confidence: f32) {
        self.step.effects.push(Effect::Record(Entry {
            at: self.now,
            from: Speaker::Shopper,
            text: message.to_string(),
            intent: Some(intent.to_string()),
            how: Some(how),
            confidence: Some(confidence),
            variant: None,
        }));
    }

    /// A bot reply: recorded on the transcript and sent as a `reply` frame.
    fn say(&mut self, text: String, intent: &str, choices: Vec<Choice>, variant: Option<u32>) {
        self.step.effects.push(Effect::Record(Entry {
            at: self.now,
            from: Speaker::Bot,
            text: text.clone(),
            intent: Some(intent.to_string()),
            how: None,
            confidence: None,
            variant,
        }));
        self.step.frames.push(ServerFrame::Reply(Reply {
            text,
            intent: intent.to_string(),
            choices,
            how: None,
            confidence: None,
            captured: BTreeMap::new(),
            agent: None,
            locale: None,
        }));
    }
}

/// A visitor always sees the same variant of an intent's reply: FNV-1a over the visitor id and
/// the intent id, so the choice survives restarts and reloads.
pub fn choose_variant(visitor: &VisitorId, intent: &str, variants: usize) -> usize {
    if variants <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in visitor.as_bytes().iter().chain(intent.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (hash % variants as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_stable_and_spread() {
        let mut seen = [0usize; 3];
        for i in 0..300u64 {
            let visitor = VisitorId::mint(i);
            let v = choose_variant(&visitor, "greeting", 3);
            assert_eq!(v, choose_variant(&visitor, "greeting", 3));
            seen[v] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "variants spread over visitors: {seen:?}");
    }
}
