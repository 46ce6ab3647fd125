//! Proactive triggers, written by the shop in the intent files (`[[trigger]]`): when the chat
//! reaches out on its own. The widget reads them from `/widget/triggers` and checks their
//! conditions on the page (which page, time on it, scroll depth, exit intent on desktop, idle
//! time) and on the visitor it knows (new or returning, campaign, UTM source); the server answers
//! for what only it knows (a segment, tags: `POST /widget/triggers` with the visitor's resume
//! key). When all hold it opens the chat in the trigger's intent, or shows a teaser beside the
//! bubble: the trigger's own variants (an A/B test) or the intent's message. A visitor sees a
//! trigger at most once per `cooldown`, never over an open chat. The widget reports each trigger
//! it shows (`/widget/triggers/shown`) and the `hello` it opens the chat with names it, for the
//! funnel per trigger and variant (shown, engaged, qualified, converted).

mod routes;

pub use routes::routes;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::intents::file::{Diagnostic, Location, Source};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    pub id: String,
    #[serde(skip)]
    pub at: Location,
    /// The page's path starts with this, or with `*` in it, matches it whole (`*` any
    /// characters); `None`: any page.
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
    /// The visitor is in this segment now (checked by the server).
    pub segment: Option<String>,
    /// The visitor has every one of these tags (checked by the server).
    pub tags: Vec<String>,
    /// `open` or `teaser`.
    pub action: String,
    /// The intent (with `start = true`) the chat opens in; its message is the teaser.
    pub intent: String,
    /// The teaser's variants per language (the trigger's own, else the intent's first reply);
    /// every language has as many, and a visitor keeps the variant first shown.
    pub teaser: BTreeMap<String, Vec<String>>,
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
    pub segment: Option<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub action: Spanned<String>,
    pub intent: Spanned<String>,
    pub cooldown: Option<Spanned<String>>,
    /// `[trigger.en] teaser = ["...", "..."]`: the teaser's variants in that language.
    pub en: Option<Spanned<RawTeaser>>,
    pub de: Option<Spanned<RawTeaser>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTeaser {
    pub teaser: Vec<String>,
}

impl Trigger {
    /// Whether the server-side conditions (segment, tags) hold for `p`; `None`: the visitor is
    /// not known, which fails any such condition.
    pub fn holds_for(
        &self,
        p: Option<&crate::domain::Profile>,
        segment: impl Fn(&str, &crate::domain::Profile) -> bool,
    ) -> bool {
        if self.segment.is_none() && self.tags.is_empty() {
            return true;
        }
        p.is_some_and(|p| {
            self.segment.as_deref().is_none_or(|s| segment(s, p)) && self.tags.iter().all(|t| p.tags.contains(t))
        })
    }

    /// How many teaser variants the trigger has (1 for an `open`).
    pub fn variants(&self) -> usize {
        self.teaser.values().map(Vec::len).max().unwrap_or(1).max(1)
    }
}

const DEFAULT_COOLDOWN_MS: u64 = 7 * 24 * 60 * 60 * 1000;

/// Compiles every trigger; `intents` is each intent id with whether it may start a chat and its
/// first reply per language, `segments` the segment ids.
pub fn compile(
    raw: Vec<(&Source, RawTrigger)>,
    intents: &[(&str, bool, BTreeMap<String, String>)],
    segments: &[&str],
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
        if let Some(segment) = raw.segment.as_ref().filter(|s| !segments.contains(&s.get_ref().as_str())) {
            let message = format!("unknown segment `{}` (known: {})", segment.get_ref(), segments.join(", "));
            errors.push(Diagnostic { at: source.inside(&segment.span()), message });
        }
        let intent = raw.intent.get_ref().clone();
        let own = teasers(source, (&raw.en, &raw.de), errors);
        let teaser = match intents.iter().find(|(i, ..)| *i == intent) {
            Some((_, true, _)) if !own.is_empty() => own,
            Some((_, true, teaser)) => teaser.iter().map(|(l, t)| (l.clone(), vec![t.clone()])).collect(),
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
            segment: raw.segment.map(Spanned::into_inner),
            tags: raw.tags,
            action,
            intent,
            teaser,
            cooldown_ms: cooldown_ms.unwrap_or(DEFAULT_COOLDOWN_MS),
        });
    }
    out
}

/// The trigger's own teaser variants per language: none, or the same number in each, never empty.
fn teasers(
    source: &Source,
    raw: (&Option<Spanned<RawTeaser>>, &Option<Spanned<RawTeaser>>),
    errors: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Vec<String>> {
    let given = [("en", raw.0), ("de", raw.1)];
    let mut out = BTreeMap::new();
    for (locale, teaser) in given.iter().filter_map(|(l, t)| Some((*l, t.as_ref()?))) {
        let variants = &teaser.get_ref().teaser;
        if variants.is_empty() || variants.iter().any(|v| v.trim().is_empty()) {
            let message = format!("`[trigger.{locale}] teaser`: give one or more texts, none empty");
            errors.push(Diagnostic { at: source.inside(&teaser.span()), message });
        }
        out.insert(locale.to_string(), variants.clone());
    }
    let counts: Vec<usize> = out.values().map(Vec::len).collect();
    if counts.windows(2).any(|w| w[0] != w[1])
        && let Some(de) = raw.1
    {
        let message = format!("every language needs as many teaser variants as English ({})", counts[0]);
        errors.push(Diagnostic { at: source.inside(&de.span()), message });
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
        assert_eq!(demo.teaser["en"], ["Let's find your running shoes."]);
        assert_eq!(demo.teaser["de"], ["Finden wir Ihre Laufschuhe."]);
        assert_eq!(demo.variants(), 1);
    }

    #[test]
    fn a_trigger_s_own_teasers_are_its_a_b_variants() {
        let extra = "[[trigger]]\nid = \"ab\"\nsegment = \"subscribers\"\ntags = [\"interest:running\"]\n\
                     action = \"teaser\"\nintent = \"discount\"\n\
                     [trigger.en]\nteaser = [\"10 % off today?\", \"Before you go: a discount\"]\n\
                     [trigger.de]\nteaser = [\"Heute 10 % Rabatt?\", \"Bevor Sie gehen: ein Rabatt\"]\n";
        let set = pack(extra).expect("compiles");
        let ab = set.triggers.iter().find(|t| t.id == "ab").expect("the trigger");
        assert_eq!(ab.variants(), 2);
        assert_eq!(ab.teaser["de"][1], "Bevor Sie gehen: ein Rabatt");
        let mut profile = crate::domain::Profile::new(crate::ids::VisitorId::mint(0), 0, "en");
        let in_segment = |s: &str, _: &crate::domain::Profile| s == "subscribers";
        assert!(!ab.holds_for(None, in_segment), "an unknown visitor has no tags");
        assert!(!ab.holds_for(Some(&profile), in_segment), "without the tag");
        profile.tags.insert("interest:running".into());
        assert!(ab.holds_for(Some(&profile), in_segment));
        assert!(!ab.holds_for(Some(&profile), |_, _| false), "outside the segment");
    }

    #[test]
    fn broken_triggers_are_reported_where_they_are() {
        let extra = "[[trigger]]\nid = \"t\"\nafter = \"soon\"\nscroll = 150\nvisitor = \"everyone\"\n\
                     action = \"shout\"\nintent = \"refund\"\nsegment = \"nobody\"\n\
                     [trigger.en]\nteaser = [\"a\", \"b\"]\n[trigger.de]\nteaser = [\"a\"]\n";
        let errors = pack(extra).expect_err("broken");
        let shown: Vec<String> = errors.iter().map(|d| format!("{}:{}: {}", d.at.line, d.at.col, d.message)).collect();
        for want in [
            "3:10: duration \"soon\"",
            "4:10: scroll 150",
            "5:12: visitor `everyone`",
            "6:11: action `shout`",
            "7:11: intent `refund` cannot open a chat",
            "8:12: unknown segment `nobody`",
            "11:1: every language needs as many teaser variants",
        ] {
            assert!(shown.iter().any(|s| s.starts_with(want)), "{want} in {shown:?}");
        }
    }
}
