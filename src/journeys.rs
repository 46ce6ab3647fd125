//! Segments and journeys, written by the shop in `intents/journeys/*.toml` and loaded with the
//! intents (checked by `nudge intents check`, reloaded on save).
//!
//! A segment is a named rule over what the store knows of a visitor. A journey is entered when a
//! visitor comes into its segment (or gets its tag), then runs its steps one after the other on
//! the durable outbox (`Job::Journey`, one pending step per visitor and journey): wait `after`,
//! then send an email template or add a tag, each step optionally only `when` (or `unless`) the
//! visitor is in another segment. A run ends after its last step, or when the visitor orders,
//! unsubscribes, leaves the segment or reaches the journey's goal. `sweep` enters visitors.

pub mod sweep;

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::domain::{Profile, Status, UNSUBSCRIBE_SOURCE};
use crate::intents::file::{Diagnostic, Location, Source};
use crate::leads::learned::Model;

/// What a segment is judged with besides the profile: the time, and the learned lead model
/// (`None` until the store has enough outcomes to fit one).
#[derive(Clone, Copy)]
pub struct Moment<'a> {
    pub now: u64,
    pub model: Option<&'a Model>,
}

/// A named rule over a visitor's profile: every condition given must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub id: String,
    pub description: String,
    pub at: Location,
    /// One of these statuses.
    pub status: Vec<Status>,
    pub tags: Vec<String>,
    pub without_tags: Vec<String>,
    /// Known preferences.
    pub preferences: Vec<String>,
    pub marketing: Option<bool>,
    pub ads: Option<bool>,
    /// Has an email address.
    pub email: Option<bool>,
    pub bought: Option<bool>,
    pub campaign: Option<String>,
    pub source: Option<String>,
    pub medium: Option<String>,
    pub min_score: Option<i64>,
    /// The learned probability to buy (`leads::learned`) at least this.
    pub min_buy_probability: Option<f64>,
    pub first_seen_within: Option<u64>,
    pub last_seen_within: Option<u64>,
    pub not_seen_for: Option<u64>,
}

impl Segment {
    /// Whether `p` is in the segment at `at`.
    pub fn contains(&self, p: &Profile, at: Moment) -> bool {
        let age = |then: u64| at.now.saturating_sub(then);
        let likely = |min: f64| at.model.is_some_and(|m| m.probability(p) >= min);
        let consent = |kind: fn(&crate::domain::ConsentRecord) -> bool| p.consent.as_ref().is_some_and(kind);
        let utm = |key: &str, want: &Option<String>| want.as_ref().is_none_or(|w| p.utm.get(key) == Some(w));
        (self.status.is_empty() || self.status.contains(&p.status))
            && self.tags.iter().all(|t| p.tags.contains(t))
            && !self.without_tags.iter().any(|t| p.tags.contains(t))
            && self.preferences.iter().all(|name| p.preferences.contains_key(name))
            && self.marketing.is_none_or(|want| consent(|c| c.marketing) == want)
            && self.ads.is_none_or(|want| consent(|c| c.ads) == want)
            && self.email.is_none_or(|want| p.preference("email").is_some() == want)
            && self.bought.is_none_or(|want| p.orders.is_empty() != want)
            && self.campaign.as_ref().is_none_or(|c| p.campaign.as_ref() == Some(c))
            && utm("source", &self.source)
            && utm("medium", &self.medium)
            && self.min_score.is_none_or(|min| p.score >= min)
            && self.min_buy_probability.is_none_or(likely)
            && self.first_seen_within.is_none_or(|d| age(p.created_at) <= d)
            && self.last_seen_within.is_none_or(|d| age(p.last_seen_at) <= d)
            && self.not_seen_for.is_none_or(|d| age(p.last_seen_at) >= d)
    }
}

/// What puts a visitor into a journey.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// Coming into this segment (an index into `Journeys::segments`).
    Segment(usize),
    /// Getting this tag (an intent's `tags`, the cart-abandonment check).
    Tag(String),
    /// This intent answering the visitor (again, since they last entered).
    Intent(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Email(String),
    Tag(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Wait after entering (the first step) or after the step before, in ms.
    pub after: u64,
    pub action: Action,
    /// Runs only when the visitor is in this segment (`when`), or is not (`unless`); otherwise
    /// the run goes on with the next step.
    pub condition: Option<(usize, bool)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Journey {
    pub id: String,
    pub description: String,
    pub at: Location,
    pub entry: Entry,
    /// Leaving the entry segment ends the run (segment entries only).
    pub exit_when_left: bool,
    /// Coming into this segment ends the run.
    pub goal: Option<usize>,
    /// A visitor who ran it may enter again this long (ms) after they last entered; never when
    /// `None`.
    pub reenter_after: Option<u64>,
    pub steps: Vec<Step>,
}

/// Every segment and journey of the intent directory.
#[derive(Debug, Clone, Default)]
pub struct Journeys {
    pub segments: Vec<Segment>,
    pub journeys: Vec<Journey>,
    /// The intents some journey is entered by: only their answers are recorded on the profile.
    pub entry_intents: std::collections::BTreeSet<String>,
}

impl Journeys {
    pub fn segment(&self, id: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.id == id)
    }

    pub fn journey(&self, id: &str) -> Option<&Journey> {
        self.journeys.iter().find(|j| j.id == id)
    }

    /// Whether `p` meets the journey's entry.
    pub fn enters(&self, journey: &Journey, p: &Profile, at: Moment) -> bool {
        match &journey.entry {
            Entry::Segment(i) => self.segments[*i].contains(p, at),
            Entry::Tag(tag) => p.tags.contains(tag),
            Entry::Intent(intent) => p
                .intents
                .get(intent)
                .is_some_and(|answered| p.journeys.get(&journey.id).is_none_or(|entered| answered > entered)),
        }
    }

    /// Whether `p` may start a run of `journey` now: meets the entry, and never entered or
    /// entered long enough ago to enter again.
    pub fn may_enter(&self, journey: &Journey, p: &Profile, at: Moment) -> bool {
        let again = match p.journeys.get(&journey.id) {
            None => true,
            Some(entered) => journey.reenter_after.is_some_and(|wait| at.now.saturating_sub(*entered) >= wait),
        };
        again && self.enters(journey, p, at)
    }

    /// Why a run of `journey`, entered with `orders` orders, ends before its next step; `None`
    /// while it goes on.
    pub fn exit(&self, journey: &Journey, p: &Profile, orders: u32, at: Moment) -> Option<&'static str> {
        if p.orders.len() > orders as usize {
            return Some("ordered");
        }
        if p.consent.as_ref().is_some_and(|c| c.source == UNSUBSCRIBE_SOURCE && !c.marketing) {
            return Some("unsubscribed");
        }
        if journey.exit_when_left && matches!(journey.entry, Entry::Segment(_)) && !self.enters(journey, p, at) {
            return Some("left the segment");
        }
        if journey.goal.is_some_and(|g| self.segments[g].contains(p, at)) {
            return Some("reached the goal");
        }
        None
    }

    /// Whether a step's condition lets it run for `p`.
    pub fn runs(&self, step: &Step, p: &Profile, at: Moment) -> bool {
        step.condition.is_none_or(|(segment, wanted)| self.segments[segment].contains(p, at) == wanted)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegment {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub status: Vec<Spanned<String>>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub without_tags: Vec<String>,
    #[serde(default)]
    pub preferences: Vec<Spanned<String>>,
    pub marketing: Option<bool>,
    pub ads: Option<bool>,
    pub email: Option<bool>,
    pub bought: Option<bool>,
    pub campaign: Option<String>,
    pub source: Option<String>,
    pub medium: Option<String>,
    pub min_score: Option<i64>,
    pub min_buy_probability: Option<f64>,
    pub first_seen_within: Option<Spanned<String>>,
    pub last_seen_within: Option<Spanned<String>>,
    pub not_seen_for: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJourney {
    pub id: Spanned<String>,
    #[serde(default)]
    pub description: String,
    /// Entered by coming into this segment ...
    pub segment: Option<Spanned<String>>,
    /// ... or by getting this tag ...
    pub tag: Option<Spanned<String>>,
    /// ... or by this intent answering.
    pub intent: Option<Spanned<String>>,
    #[serde(default = "yes")]
    pub exit_when_left: bool,
    pub goal: Option<Spanned<String>>,
    pub reenter_after: Option<Spanned<String>>,
    #[serde(default)]
    pub step: Vec<Spanned<RawStep>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub after: Spanned<String>,
    pub email: Option<Spanned<String>>,
    pub tag: Option<String>,
    pub when: Option<Spanned<String>>,
    pub unless: Option<Spanned<String>>,
}

/// Compiles the segments and journeys of every file; problems go to `errors` with their
/// `file:line:col`. `known` names the emails steps may send, the preferences a segment may ask
/// about and the intents a journey may be entered by.
pub fn compile(
    segments: Vec<(&Source, RawSegment)>,
    journeys: Vec<(&Source, RawJourney)>,
    known: &Known,
    errors: &mut Vec<Diagnostic>,
) -> Journeys {
    let preferences = known.preferences;
    let mut out = Journeys::default();
    for (source, raw) in segments {
        let at = source.inside(&raw.id.span());
        let id = raw.id.into_inner();
        if let Some(first) = out.segment(&id) {
            errors.push(Diagnostic {
                at,
                message: format!("duplicate segment id `{id}` (first defined at {})", first.at),
            });
            continue;
        }
        let mut status = Vec::new();
        for s in &raw.status {
            match Status::parse(s.get_ref()) {
                Some(found) => status.push(found),
                None => errors.push(Diagnostic {
                    at: source.inside(&s.span()),
                    message: format!(
                        "unknown status `{}` (chatting, qualified, checkout_clicked, converted)",
                        s.get_ref()
                    ),
                }),
            }
        }
        for name in &raw.preferences {
            if !preferences.contains(name.get_ref()) {
                let known: Vec<&str> = preferences.iter().map(String::as_str).collect();
                errors.push(Diagnostic {
                    at: source.inside(&name.span()),
                    message: format!("unknown preference `{}` (known: {})", name.get_ref(), known.join(", ")),
                });
            }
        }
        let mut duration = |raw: &Option<Spanned<String>>| raw.as_ref().and_then(|d| parse_duration(source, d, errors));
        let segment = Segment {
            first_seen_within: duration(&raw.first_seen_within),
            last_seen_within: duration(&raw.last_seen_within),
            not_seen_for: duration(&raw.not_seen_for),
            id,
            description: raw.description,
            at,
            status,
            tags: raw.tags,
            without_tags: raw.without_tags,
            preferences: raw.preferences.into_iter().map(Spanned::into_inner).collect(),
            marketing: raw.marketing,
            ads: raw.ads,
            email: raw.email,
            bought: raw.bought,
            campaign: raw.campaign,
            source: raw.source,
            medium: raw.medium,
            min_score: raw.min_score,
            min_buy_probability: raw.min_buy_probability,
        };
        out.segments.push(segment);
    }
    for (source, raw) in journeys {
        if let Some(journey) = journey(source, raw, &out, known, errors) {
            if let Entry::Intent(intent) = &journey.entry {
                out.entry_intents.insert(intent.clone());
            }
            if let Some(first) = out.journey(&journey.id) {
                let message = format!("duplicate journey id `{}` (first defined at {})", journey.id, first.at);
                errors.push(Diagnostic { at: journey.at.clone(), message });
                continue;
            }
            out.journeys.push(journey);
        }
    }
    out
}

/// What journey files may refer to.
pub struct Known<'a> {
    pub emails: &'a [String],
    pub preferences: &'a std::collections::BTreeSet<String>,
    pub intents: &'a [&'a str],
}

fn journey(
    source: &Source,
    raw: RawJourney,
    compiled: &Journeys,
    known: &Known,
    errors: &mut Vec<Diagnostic>,
) -> Option<Journey> {
    let (emails, known) = (known.emails, (compiled, known.intents));
    let at = source.inside(&raw.id.span());
    let before = errors.len();
    let segment = |name: &Spanned<String>, errors: &mut Vec<Diagnostic>| {
        let found = known.0.segments.iter().position(|s| &s.id == name.get_ref());
        if found.is_none() {
            let ids: Vec<&str> = known.0.segments.iter().map(|s| s.id.as_str()).collect();
            errors.push(Diagnostic {
                at: source.inside(&name.span()),
                message: format!("unknown segment `{}` (known: {})", name.get_ref(), ids.join(", ")),
            });
        }
        found
    };
    let entry = match (&raw.segment, &raw.tag, &raw.intent) {
        (Some(name), None, None) => segment(name, errors).map(Entry::Segment),
        (None, Some(tag), None) => Some(Entry::Tag(tag.get_ref().clone())),
        (None, None, Some(intent)) => {
            if !known.1.contains(&intent.get_ref().as_str()) {
                errors.push(Diagnostic {
                    at: source.inside(&intent.span()),
                    message: format!("unknown intent `{}` (known: {})", intent.get_ref(), known.1.join(", ")),
                });
            }
            Some(Entry::Intent(intent.get_ref().clone()))
        }
        _ => {
            let message = "a journey is entered by one `segment = \"...\"`, `tag = \"...\"` or `intent = \"...\"`";
            errors.push(Diagnostic { at: at.clone(), message: message.into() });
            None
        }
    };
    let goal = raw.goal.as_ref().and_then(|g| segment(g, errors));
    let reenter_after = raw.reenter_after.as_ref().and_then(|d| parse_duration(source, d, errors));
    if raw.step.is_empty() {
        errors.push(Diagnostic { at: at.clone(), message: "a journey needs at least one `[[journey.step]]`".into() });
    }
    let mut steps = Vec::new();
    for step in raw.step {
        let step_at = step.span();
        let step = step.into_inner();
        let after = parse_duration(source, &step.after, errors);
        let action = match (step.email, step.tag) {
            (Some(email), None) => {
                if !emails.contains(email.get_ref()) {
                    errors.push(Diagnostic {
                        at: source.inside(&email.span()),
                        message: format!("unknown email `{}` (known: {})", email.get_ref(), emails.join(", ")),
                    });
                }
                Some(Action::Email(email.into_inner()))
            }
            (None, Some(tag)) => Some(Action::Tag(tag)),
            _ => {
                let message = "a step sends one `email = \"...\"` or adds one `tag = \"...\"`";
                errors.push(source.at(&step_at, message));
                None
            }
        };
        let condition = match (&step.when, &step.unless) {
            (None, None) => None,
            (Some(name), None) => segment(name, errors).map(|s| (s, true)),
            (None, Some(name)) => segment(name, errors).map(|s| (s, false)),
            (Some(_), Some(_)) => {
                errors.push(source.at(&step_at, "a step has `when` or `unless`, not both"));
                None
            }
        };
        if let (Some(after), Some(action)) = (after, action) {
            steps.push(Step { after, action, condition });
        }
    }
    let entry = entry?;
    (errors.len() == before).then(|| Journey {
        id: raw.id.into_inner(),
        description: raw.description,
        at,
        entry,
        exit_when_left: raw.exit_when_left,
        goal,
        reenter_after,
        steps,
    })
}

/// `"1h"`, `"2days"`, `"60d"` in ms, or an error at the value (also for triggers).
pub(crate) fn duration(source: &Source, raw: &Spanned<String>, errors: &mut Vec<Diagnostic>) -> Option<u64> {
    parse_duration(source, raw, errors)
}

fn parse_duration(source: &Source, raw: &Spanned<String>, errors: &mut Vec<Diagnostic>) -> Option<u64> {
    match humantime::parse_duration(raw.get_ref()) {
        Ok(d) => Some(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        Err(e) => {
            let message = format!("duration {:?}: {e} (write e.g. \"30min\", \"1h\" or \"60days\")", raw.get_ref());
            errors.push(Diagnostic { at: source.inside(&raw.span()), message });
            None
        }
    }
}

/// A duration for people: `1h`, `23h`, `60d`.
pub fn show_duration(ms: u64) -> String {
    humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, ConsentChange};
    use crate::ids::VisitorId;

    const DAY: u64 = 24 * 60 * 60 * 1000;

    fn at(now: u64) -> Moment<'static> {
        Moment { now, model: None }
    }

    fn pack(extra: &str) -> Result<crate::intents::IntentSet, Vec<Diagnostic>> {
        crate::intents::starter_pack_with("journeys/extra.toml", extra)
    }

    fn shopper(changes: &[Change]) -> Profile {
        let mut p = Profile::new(VisitorId::mint(1), 0, "en");
        for change in changes {
            p.apply(change);
        }
        p
    }

    fn subscribed() -> Vec<Change> {
        let consent = crate::protocol::Consent { marketing: true, ads: false };
        vec![
            Change::Preference { name: "email".into(), value: "a@example.com".into(), at: 1, message: "a".into() },
            Change::Consent(ConsentChange::page(consent, "widget", 1)),
        ]
    }

    #[test]
    fn the_starter_segments_hold_for_whom_they_say() {
        let set = pack("").expect("the starter pack compiles");
        let journeys = &set.journeys;
        let now = 100 * DAY;
        let at = Moment { now, model: None };
        let is_in = |id: &str, p: &Profile| journeys.segment(id).expect(id).contains(p, at);
        let product = Change::Preference { name: "product".into(), value: "boots".into(), at: 1, message: "m".into() };
        let seen = |at| Change::Visit { at, locale: None, campaign: None, utm: Default::default() };
        let qualified = Change::Status { status: Status::Qualified, at: 2 };
        let order = Change::Order { id: "o-1".into(), at: 3 };

        let browsing = shopper(&[subscribed(), vec![product.clone(), seen(now)]].concat());
        assert!(is_in("browsers", &browsing) && is_in("subscribers", &browsing));
        assert!(!is_in("cart_abandoners", &browsing));
        let offered = shopper(&[subscribed(), vec![product.clone(), qualified, seen(now)]].concat());
        assert!(is_in("cart_abandoners", &offered) && !is_in("browsers", &offered));
        let bought = shopper(&[subscribed(), vec![order.clone(), seen(now - 61 * DAY)]].concat());
        assert!(is_in("lapsed_buyers", &bought) && !is_in("cart_abandoners", &bought));
        let recent = shopper(&[subscribed(), vec![order, seen(now - DAY / 2)]].concat());
        assert!(!is_in("lapsed_buyers", &recent) && is_in("back_recently", &recent));
        assert!(!is_in("subscribers", &shopper(&[product])), "no address, no consent");
    }

    #[test]
    fn runs_end_on_an_order_an_unsubscribe_leaving_or_the_goal() {
        let set = pack("").expect("compiles");
        let journeys = &set.journeys;
        let now = 100 * DAY;
        let cart = journeys.journey("cart_abandonment").expect("cart");
        let qualified = Change::Status { status: Status::Qualified, at: 2 };
        let offered = shopper(&[subscribed(), vec![qualified.clone()]].concat());
        assert!(journeys.may_enter(cart, &offered, at(now)));
        assert_eq!(journeys.exit(cart, &offered, 0, at(now)), None);
        let mut entered = offered.clone();
        entered.apply(&Change::EnterJourney { journey: cart.id.clone(), at: now });
        assert!(!journeys.may_enter(cart, &entered, at(now)), "once, without reenter_after");
        let mut bought = offered.clone();
        bought.apply(&Change::Order { id: "o".into(), at: now });
        assert_eq!(journeys.exit(cart, &bought, 0, at(now)), Some("ordered"));
        let mut gone = offered.clone();
        gone.apply(&Change::Consent(ConsentChange::unsubscribe(now)));
        assert_eq!(journeys.exit(cart, &gone, 0, at(now)), Some("unsubscribed"));
        let win_back = journeys.journey("win_back").expect("win back");
        let lapsed = shopper(&[subscribed(), vec![Change::Order { id: "o".into(), at: 1 }]].concat());
        assert_eq!(journeys.exit(win_back, &lapsed, 1, at(now)), None);
        let mut back = lapsed.clone();
        back.apply(&Change::Visit { at: now, locale: None, campaign: None, utm: Default::default() });
        assert_eq!(journeys.exit(win_back, &back, 1, at(now)), Some("left the segment"), "seen again");
        let mut again = lapsed.clone();
        again.apply(&Change::EnterJourney { journey: "win_back".into(), at: now - 91 * DAY });
        assert!(journeys.may_enter(win_back, &again, at(now)), "reenter_after 90d");
    }

    #[test]
    fn an_intent_enters_each_time_it_answers_again() {
        let extra = "[[journey]]\nid = \"asked\"\nintent = \"human\"\nreenter_after = \"0s\"\n\n\
                     [[journey.step]]\nafter = \"1h\"\ntag = \"wanted_a_person\"\n";
        let set = pack(extra).expect("compiles");
        let journeys = &set.journeys;
        assert!(journeys.entry_intents.contains("human"), "the session records only these intents");
        let asked = journeys.journey("asked").expect("journey");
        let mut p = shopper(&[]);
        assert!(!journeys.may_enter(asked, &p, at(10)));
        p.apply(&Change::Answered { intent: "human".into(), at: 10 });
        assert!(journeys.may_enter(asked, &p, at(11)));
        p.apply(&Change::EnterJourney { journey: "asked".into(), at: 11 });
        assert!(!journeys.may_enter(asked, &p, at(12)), "not again for the same answer");
        p.apply(&Change::Answered { intent: "human".into(), at: 20 });
        assert!(journeys.may_enter(asked, &p, at(21)), "a new answer enters again");
        let unknown = "[[journey]]\nid = \"x\"\nintent = \"nobody\"\n\n[[journey.step]]\nafter = \"1h\"\ntag = \"t\"\n";
        let errors = pack(unknown).expect_err("unknown intent");
        assert!(errors.iter().any(|d| d.message.starts_with("unknown intent `nobody`")), "{errors:?}");
    }

    #[test]
    fn broken_segments_and_journeys_are_reported_where_they_are() {
        let extra = "[[segment]]\nid = \"vip\"\nstatus = [\"gold\"]\n\n[[journey]]\nid = \"j\"\nsegment = \"nobody\"\n\n\
                     [[journey.step]]\nafter = \"soon\"\nemail = \"welcome\"\n";
        let errors = pack(extra).expect_err("broken");
        let shown: Vec<String> = errors.iter().map(|d| format!("{}:{}: {}", d.at.line, d.at.col, d.message)).collect();
        let expected = ["3:12: unknown status `gold`", "7:12: unknown segment `nobody`", "10:10: duration \"soon\""];
        for want in expected {
            assert!(shown.iter().any(|s| s.starts_with(want)), "{want} in {shown:?}");
        }
        assert!(errors.iter().all(|d| d.at.file.ends_with("extra.toml")), "{errors:?}");
    }
}
