//! Proactive triggers, written by the shop in the intent files (`[[trigger]]`): when the chat
//! reaches out on its own. The widget reads them from `/widget/triggers` and checks their
//! conditions on the page (which page, time on it, scroll depth, exit intent on desktop, idle
//! time) and on the visitor it knows (new or returning, campaign, UTM source); when all hold it
//! opens the chat in the trigger's intent, or shows the intent's message as a teaser beside the
//! bubble. A visitor sees a trigger at most once per `cooldown`, never over an open chat.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::intents::file::{Diagnostic, Location, Source};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    pub id: String,
    #[serde(skip)]
    pub at: Location,
    /// The page's path starts with this (`None`: any page).
    pub page: Option<String>,
    pub after_ms: Option<u64>,
    /// Percent of the page scrolled.
    pub scroll: Option<u32>,
    pub exit_intent: bool,
    pub idle_ms: Option<u64>,
    /// `new`, `returning` or `any`.
    pub visitor: String,
    pub campaign: Option<String>,
    pub source: Option<String>,
    /// `open` or `teaser`.
    pub action: String,
    /// The intent (with `start = true`) the chat opens in; its message is the teaser.
    pub intent: String,
    /// The teaser per language (the intent's first reply).
    pub teaser: std::collections::BTreeMap<String, String>,
    pub cooldown_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrigger {
    pub id: Spanned<String>,
    pub page: Option<String>,
    pub after: Option<Spanned<String>>,
    pub scroll: Option<Spanned<u32>>,
    #[serde(default)]
    pub exit_intent: bool,
    pub idle: Option<Spanned<String>>,
    pub visitor: Option<Spanned<String>>,
    pub campaign: Option<String>,
    pub source: Option<String>,
    pub action: Spanned<String>,
    pub intent: Spanned<String>,
    pub cooldown: Option<Spanned<String>>,
}

const DEFAULT_COOLDOWN_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Compiles every trigger; `intents` is each intent id with whether it may start a chat and its
/// first reply per language.
pub fn compile(
    raw: Vec<(&Source, RawTrigger)>,
    intents: &[(&str, bool, std::collections::BTreeMap<String, String>)],
    errors: &mut Vec<Diagnostic>,
) -> Vec<Trigger> {
    let mut out: Vec<Trigger> = Vec::new();
    for (source, raw) in raw {
        let before = errors.len();
        let at = source.inside(&raw.id.span());
        let id = raw.id.into_inner();
        if let Some(first) = out.iter().find(|t| t.id == id) {
            errors.push(Diagnostic {
                at,
                message: format!("duplicate trigger id `{id}` (first defined at {})", first.at),
            });
            continue;
        }
        let mut duration =
            |d: &Option<Spanned<String>>| d.as_ref().and_then(|d| crate::journeys::duration(source, d, errors));
        let (after_ms, idle_ms, cooldown_ms) = (duration(&raw.after), duration(&raw.idle), duration(&raw.cooldown));
        let action = raw.action.get_ref().clone();
        if !matches!(action.as_str(), "open" | "teaser") {
            let message = format!("action `{action}`: a trigger opens the chat (`open`) or shows a `teaser`");
            errors.push(Diagnostic { at: source.inside(&raw.action.span()), message });
        }
        let visitor = raw.visitor.as_ref().map_or("any".to_string(), |v| v.get_ref().clone());
        if let Some(v) = raw.visitor.as_ref().filter(|v| !matches!(v.get_ref().as_str(), "new" | "returning" | "any")) {
            let message = format!("visitor `{}`: `new`, `returning` or `any`", v.get_ref());
            errors.push(Diagnostic { at: source.inside(&v.span()), message });
        }
        if let Some(scroll) = raw.scroll.as_ref().filter(|s| *s.get_ref() > 100) {
            let message = format!("scroll {}: a percentage of the page, 0 to 100", scroll.get_ref());
            errors.push(Diagnostic { at: source.locate(scroll.span().start), message });
        }
        let intent = raw.intent.get_ref().clone();
        let teaser = match intents.iter().find(|(i, ..)| *i == intent) {
            Some((_, true, teaser)) => teaser.clone(),
            Some((_, false, _)) => {
                let message = format!("intent `{intent}` cannot open a chat: give it `start = true`");
                errors.push(Diagnostic { at: source.inside(&raw.intent.span()), message });
                Default::default()
            }
            None => {
                let known: Vec<&str> = intents.iter().filter(|(_, start, _)| *start).map(|(i, ..)| *i).collect();
                let message = format!("unknown intent `{intent}` (intents with start = true: {})", known.join(", "));
                errors.push(Diagnostic { at: source.inside(&raw.intent.span()), message });
                Default::default()
            }
        };
        if errors.len() > before {
            continue;
        }
        out.push(Trigger {
            id,
            at,
            page: raw.page,
            after_ms,
            scroll: raw.scroll.map(Spanned::into_inner),
            exit_intent: raw.exit_intent,
            idle_ms,
            visitor,
            campaign: raw.campaign,
            source: raw.source,
            action,
            intent,
            teaser,
            cooldown_ms: cooldown_ms.unwrap_or(DEFAULT_COOLDOWN_MS),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    fn pack(extra: &str) -> Result<crate::intents::IntentSet, Vec<crate::intents::file::Diagnostic>> {
        crate::intents::starter_pack_with("extra.toml", extra)
    }

    #[test]
    fn the_starter_triggers_compile_with_their_teasers() {
        let set = pack("").expect("compiles");
        let demo = set.triggers.iter().find(|t| t.id == "demo_running_shoes").expect("the demo trigger");
        assert_eq!((demo.after_ms, demo.cooldown_ms), (Some(20_000), 7 * 24 * 3600 * 1000));
        assert_eq!(demo.teaser.get("en").map(String::as_str), Some("Let's find your running shoes."));
        assert_eq!(demo.teaser.get("de").map(String::as_str), Some("Finden wir Ihre Laufschuhe."));
    }

    #[test]
    fn broken_triggers_are_reported_where_they_are() {
        let extra = "[[trigger]]\nid = \"t\"\nafter = \"soon\"\nscroll = 150\nvisitor = \"everyone\"\n\
                     action = \"shout\"\nintent = \"refund\"\n";
        let errors = pack(extra).expect_err("broken");
        let shown: Vec<String> = errors.iter().map(|d| format!("{}:{}: {}", d.at.line, d.at.col, d.message)).collect();
        for want in [
            "3:10: duration \"soon\"",
            "4:10: scroll 150",
            "5:12: visitor `everyone`",
            "6:11: action `shout`",
            "7:11: intent `refund` cannot open a chat",
        ] {
            assert!(shown.iter().any(|s| s.starts_with(want)), "{want} in {shown:?}");
        }
    }
}
