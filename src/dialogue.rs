//! The dialogue engine: a pure function from (intent set, conversation state, message, time) to
//! the frames to send and the effects to apply. No IO, no clock, no randomness: the session in
//! `chat` applies the effects through `store` and only then sends the frames.

use crate::ids::VisitorId;
use crate::intents::{IntentSet, Route, text};
use crate::protocol::{Reply, ServerFrame};
use crate::store::{Entry, Speaker};

/// What the engine needs to know about a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub visitor: VisitorId,
    /// `en` or `de`: from `hello`, then from the language of the shopper's messages.
    pub locale: String,
}

#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// The conversation (re)opened: send the greeting.
    Start,
    Say(&'a str),
    /// A quick-reply button; its value is routed like a typed message.
    Choose(&'a str),
}

/// A change the shell must make durable before sending the frames.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Record(Entry),
    SetLocale(String),
}

#[derive(Debug)]
pub struct Step {
    pub frames: Vec<ServerFrame>,
    pub effects: Vec<Effect>,
}

pub fn step(intents: &IntentSet, state: &State, input: Input<'_>, now: u64) -> Step {
    let mut effects = Vec::new();
    let mut locale = state.locale.as_str();
    let route = match input {
        Input::Start => Route {
            intent: intents.welcome(),
            how: crate::intents::How::Pattern,
            confidence: 1.0,
        },
        Input::Say(message) | Input::Choose(message) => {
            let normalized = text::normalize(message);
            if let Some(guessed) = text::guess_locale(&normalized).filter(|l| *l != locale) {
                locale = guessed;
                effects.push(Effect::SetLocale(guessed.to_string()));
            }
            let route = intents.route(&normalized);
            effects.push(Effect::Record(Entry {
                at: now,
                from: Speaker::Shopper,
                text: message.to_string(),
                intent: Some(intents.intents[route.intent].id.clone()),
                how: Some(route.how),
                confidence: Some(route.confidence),
                variant: None,
            }));
            route
        }
    };
    let intent = &intents.intents[route.intent];
    let reply = intent.reply(locale);
    let variant = choose_variant(&state.visitor, &intent.id, reply.variants.len());
    let text = reply.variants[variant].clone();
    effects.push(Effect::Record(Entry {
        at: now,
        from: Speaker::Bot,
        text: text.clone(),
        intent: Some(intent.id.clone()),
        how: None,
        confidence: None,
        variant: Some(variant as u32),
    }));
    let shown_route = !matches!(input, Input::Start);
    let frames = vec![ServerFrame::Reply(Reply {
        text,
        intent: intent.id.clone(),
        choices: reply.choices.clone(),
        how: shown_route.then_some(route.how),
        confidence: shown_route.then_some(route.confidence),
    })];
    Step { frames, effects }
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
        assert!(
            seen.iter().all(|&n| n > 50),
            "variants spread over visitors: {seen:?}"
        );
    }
}
