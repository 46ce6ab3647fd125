//! A visitor's profile and the changes that happen to it. Writers never store a copy of a
//! profile: they say what happened (`Change`), and `Profile::apply` applies it to whatever is
//! stored, so a chat session and a checkout click, an order or an unsubscribe for the same
//! visitor can never undo each other.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::VisitorId;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub id: VisitorId,
    pub created_at: u64,
    pub last_seen_at: u64,
    pub locale: String,
    pub visits: u32,
    #[serde(default)]
    pub consent: Option<ConsentRecord>,
    #[serde(default)]
    pub preferences: BTreeMap<String, Preference>,
    /// Retargeting tags, e.g. `interest:sneakers`.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Lead score, added to by intents.
    #[serde(default)]
    pub score: i64,
    /// When the shopper last asked for a person.
    #[serde(default)]
    pub handoff_at: Option<u64>,
    /// The person answering this visitor's chat from the admin, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Agent>,
    /// When a person last handed the chat back to the bot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handed_back_at: Option<u64>,
    /// Where the lead is in the funnel, and when it reached each status.
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub status_at: BTreeMap<Status, u64>,
    /// The campaign the visitor last came from (an email link's, else `utm_campaign`, else the
    /// widget's `data-campaign`).
    #[serde(default)]
    pub campaign: Option<String>,
    /// `source`, `medium` and `campaign` of the last visit that had UTM parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utm: BTreeMap<String, String>,
    /// Ids of the orders attributed to this visitor.
    #[serde(default)]
    pub orders: Vec<String>,
    /// The address the visitor proved is theirs (double opt-in), when and how.
    #[serde(default)]
    pub confirmed: Option<Confirmation>,
    /// SHA-256 (hex) of the resume keys the visitor's widgets hold, newest last: a chat resumes
    /// this profile only with one of them, never with the public visitor id alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resume_keys: Vec<String>,
    /// The shopper's time zone as the widget reported it (IANA name), for quiet hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The journeys the visitor entered, and when they last did.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub journeys: BTreeMap<String, u64>,
    /// When intents that enter a journey last answered the visitor (only those intents).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub intents: BTreeMap<String, u64>,
    /// The proactive triggers the visitor chatted through (first time each), for their funnel.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub triggers: BTreeMap<String, Engaged>,
}

/// A shopper who answered a chat a trigger opened: which teaser variant they saw, and when.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct Engaged {
    pub variant: u32,
    pub at: u64,
}

/// A person who took a visitor's chat in the admin: their admin session (who they are), the name
/// shoppers see, and when they last took or answered it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Agent {
    pub session: String,
    pub name: String,
    pub at: u64,
}

/// Where a chat that asked for a person is, for the inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff<'a> {
    /// Asked for a person, and nobody has taken it yet (or the one who did went idle).
    Waiting,
    /// A person has it: the bot is quiet.
    Taken(&'a Agent),
    /// Never asked, or handed back to the bot since it last asked.
    None,
}

/// Devices (widgets) that can resume one visitor at a time; the oldest key is forgotten first.
pub const MAX_RESUME_KEYS: usize = 5;

/// An address proven to be the visitor's: by the confirmation link sent to it, or by arriving
/// through a signed email link.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confirmation {
    pub email: String,
    pub at: u64,
    pub source: String,
}

/// The funnel: chatting → qualified → checkout clicked → converted. A lead only moves forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Chatting,
    Qualified,
    CheckoutClicked,
    Converted,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Chatting, Status::Qualified, Status::CheckoutClicked, Status::Converted];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Chatting => "chatting",
            Status::Qualified => "qualified",
            Status::CheckoutClicked => "checkout_clicked",
            Status::Converted => "converted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A captured preference, with when and from which message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Preference {
    pub value: String,
    pub at: u64,
    pub message: String,
}

/// What the shopper agreed to, when, and through what (`hello`, `widget`, `chat`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsentRecord {
    pub marketing: bool,
    pub ads: bool,
    pub at: u64,
    pub source: String,
}

/// Where a withdrawal of marketing consent by an email's unsubscribe link is recorded from.
pub const UNSUBSCRIBE_SOURCE: &str = "unsubscribe_link";
/// Consent the shopper gave in the chat itself: the only source that can undo an unsubscribe.
const CHAT_SOURCE: &str = "chat";

impl ConsentRecord {
    fn unsubscribed(&self) -> bool {
        self.source == UNSUBSCRIBE_SOURCE && !self.marketing
    }
}

/// A consent decision: the kinds it decides (`None` leaves a kind as it was), from where, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConsentChange {
    pub marketing: Option<bool>,
    pub ads: Option<bool>,
    /// `hello` and `widget` are a page's consent banner, `chat` an answer in the chat,
    /// `UNSUBSCRIBE_SOURCE` an email's unsubscribe link.
    pub source: String,
    pub at: u64,
}

impl ConsentChange {
    /// What a page's consent banner reports (both kinds).
    pub fn page(consent: crate::protocol::Consent, source: &str, at: u64) -> Self {
        ConsentChange { marketing: Some(consent.marketing), ads: Some(consent.ads), source: source.into(), at }
    }

    /// An answer in the chat about one kind.
    pub fn chat(kind: crate::intents::slots::ConsentKind, granted: bool, at: u64) -> Self {
        use crate::intents::slots::ConsentKind;
        let (marketing, ads) = match kind {
            ConsentKind::Marketing => (Some(granted), None),
            ConsentKind::Ads => (None, Some(granted)),
        };
        ConsentChange { marketing, ads, source: CHAT_SOURCE.into(), at }
    }

    /// An email's unsubscribe link.
    pub fn unsubscribe(at: u64) -> Self {
        ConsentChange { marketing: Some(false), ads: None, source: UNSUBSCRIBE_SOURCE.into(), at }
    }
}

/// What can happen to a profile. Each says what happened, never what the whole profile is now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// A new visitor: creates the profile when there is none (and changes nothing otherwise).
    /// Every other change to a visitor that is not stored is dropped.
    Create {
        at: u64,
        locale: String,
    },
    /// The visitor opened a chat (`hello`): one more visit, seen now, in this language and from
    /// this campaign and these UTM parameters (`source`, `medium`, `campaign`) when known.
    Visit {
        at: u64,
        locale: Option<String>,
        campaign: Option<String>,
        utm: BTreeMap<String, String>,
    },
    Locale(String),
    Campaign(String),
    Preference {
        name: String,
        value: String,
        at: u64,
        message: String,
    },
    /// The lead reached `status` (ignored unless it is further than where the lead is).
    Status {
        status: Status,
        at: u64,
    },
    Consent(ConsentChange),
    Tags(Vec<String>),
    Score(i64),
    Handoff {
        at: u64,
    },
    /// A person takes the chat (or, holding it, answers): applied only when nobody else holds it,
    /// or whoever does last acted before `stale_before`, so two people can never both hold it.
    Take {
        agent: Agent,
        stale_before: u64,
    },
    /// The person hands the chat back to the bot.
    HandBack {
        at: u64,
    },
    /// An order was attributed to the visitor: it counts, and the lead is converted.
    Order {
        id: String,
        at: u64,
    },
    /// The visitor proved `email` is theirs.
    ConfirmEmail {
        email: String,
        at: u64,
        source: String,
    },
    /// A widget was given a resume key (its SHA-256, hex).
    ResumeKey(String),
    /// The widget reported the shopper's time zone.
    Timezone(String),
    /// The visitor entered a journey (its first step is enqueued beside this).
    EnterJourney {
        journey: String,
        at: u64,
    },
    /// An intent that enters a journey answered the visitor.
    Answered {
        intent: String,
        at: u64,
    },
    /// The shopper chatted in a chat that a proactive trigger opened (only the first time of
    /// each trigger counts).
    Triggered {
        trigger: String,
        engaged: Engaged,
    },
}

impl Profile {
    pub fn new(id: VisitorId, now: u64, locale: &str) -> Profile {
        Profile {
            id,
            created_at: now,
            last_seen_at: now,
            locale: locale.into(),
            visits: 0,
            consent: None,
            preferences: BTreeMap::new(),
            tags: BTreeSet::new(),
            score: 0,
            handoff_at: None,
            agent: None,
            handed_back_at: None,
            status: Status::Chatting,
            status_at: [(Status::Chatting, now)].into(),
            campaign: None,
            utm: BTreeMap::new(),
            orders: Vec::new(),
            confirmed: None,
            resume_keys: Vec::new(),
            timezone: None,
            journeys: BTreeMap::new(),
            intents: BTreeMap::new(),
            triggers: BTreeMap::new(),
        }
    }

    /// Whether the lead reached `status` (or further) at `at` or later.
    pub fn reached_since(&self, status: Status, at: u64) -> bool {
        self.status_at.iter().any(|(s, when)| *s >= status && *when >= at)
    }

    /// Whether `key` is one of the visitor's resume keys.
    pub fn resumes_with(&self, key: &str) -> bool {
        let hash = crate::ids::resume_key_hash(key);
        self.resume_keys.contains(&hash)
    }

    /// Whether `email` is the address the visitor confirmed.
    pub fn confirmed(&self, email: &str) -> bool {
        self.confirmed.as_ref().is_some_and(|c| c.email == email)
    }

    /// Where the chat is for the inbox at `now`, when a person who has not acted for `idle_ms`
    /// no longer holds it.
    pub fn handoff(&self, now: u64, idle_ms: u64) -> Handoff<'_> {
        match &self.agent {
            Some(agent) if now.saturating_sub(agent.at) < idle_ms => Handoff::Taken(agent),
            _ if self.handoff_at > self.handed_back_at => Handoff::Waiting,
            _ => Handoff::None,
        }
    }

    /// Whether the visitor told us anything a marketer acts on (a preference, a consent, an
    /// interest, a step down the funnel, a wish to talk to a person), rather than only opening
    /// the chat.
    pub fn told_us_something(&self) -> bool {
        !self.preferences.is_empty()
            || self.consent.as_ref().is_some_and(|c| c.marketing || c.ads)
            || !self.tags.is_empty()
            || self.status > Status::Chatting
            || self.handoff_at.is_some()
            || !self.orders.is_empty()
    }

    pub fn preference(&self, name: &str) -> Option<&str> {
        self.preferences.get(name).map(|p| p.value.as_str())
    }

    /// Moves the lead to `status` at `now` if that is forward; returns whether it moved.
    pub fn advance(&mut self, status: Status, now: u64) -> bool {
        if status <= self.status {
            return false;
        }
        self.status = status;
        self.status_at.entry(status).or_insert(now);
        true
    }

    /// Applies what happened. The rules hold whatever order changes from different writers
    /// arrive in: a status only moves forward, tags and orders only accumulate, and a page's
    /// consent banner cannot grant marketing back after an unsubscribe (only a yes in the chat).
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::Create { .. } => {}
            Change::Visit { at, locale, campaign, utm } => {
                self.visits += 1;
                self.last_seen_at = self.last_seen_at.max(*at);
                if let Some(locale) = locale {
                    self.locale.clone_from(locale);
                }
                if campaign.is_some() {
                    self.campaign.clone_from(campaign);
                }
                if !utm.is_empty() {
                    self.utm.clone_from(utm);
                }
            }
            Change::Locale(locale) => self.locale.clone_from(locale),
            Change::Campaign(campaign) => self.campaign = Some(campaign.clone()),
            Change::Preference { name, value, at, message } => {
                let preference = Preference { value: value.clone(), at: *at, message: message.clone() };
                self.preferences.insert(name.clone(), preference);
            }
            Change::Status { status, at } => {
                self.advance(*status, *at);
            }
            Change::Consent(change) => self.consent = Some(consented(self.consent.as_ref(), change)),
            Change::Tags(tags) => self.tags.extend(tags.iter().cloned()),
            Change::Score(score) => self.score = self.score.saturating_add(*score),
            Change::Handoff { at } => self.handoff_at = self.handoff_at.max(Some(*at)),
            Change::Take { agent, stale_before } => {
                let free = self.agent.as_ref().is_none_or(|a| a.session == agent.session || a.at < *stale_before);
                if free {
                    self.agent = Some(agent.clone());
                }
            }
            Change::HandBack { at } => {
                self.agent = None;
                self.handed_back_at = self.handed_back_at.max(Some(*at));
            }
            Change::Order { id, at } => {
                if !self.orders.contains(id) {
                    self.orders.push(id.clone());
                }
                self.advance(Status::Converted, *at);
            }
            Change::ConfirmEmail { email, at, source } => {
                self.confirmed = Some(Confirmation { email: email.clone(), at: *at, source: source.clone() });
            }
            Change::Timezone(zone) => self.timezone = Some(zone.clone()),
            Change::EnterJourney { journey, at } => {
                self.journeys.insert(journey.clone(), *at);
            }
            Change::Triggered { trigger, engaged } => {
                self.triggers.entry(trigger.clone()).or_insert(*engaged);
            }
            Change::Answered { intent, at } => {
                let last = self.intents.entry(intent.clone()).or_insert(*at);
                *last = (*last).max(*at);
            }
            Change::ResumeKey(hash) => {
                self.resume_keys.retain(|k| k != hash);
                self.resume_keys.push(hash.clone());
                let excess = self.resume_keys.len().saturating_sub(MAX_RESUME_KEYS);
                self.resume_keys.drain(..excess);
            }
        }
    }
}

/// How to take back changes a session applied to its own copy of a profile when their commit
/// failed, so that its copy stays what the store holds. The changes a chat message makes keep
/// only what they replaced; the rest keep the whole profile as it was (a copy per message was
/// most of a step's cost with a thousand chats' profiles out of the caches).
#[derive(Debug, Default)]
pub struct Undo(Vec<Restore>);

#[derive(Debug)]
enum Restore {
    Preference(String, Option<Preference>),
    /// The tags that were new.
    Tags(Vec<String>),
    Score(i64),
    Locale(String),
    Answered(String, Option<u64>),
    /// The status before, and the time recorded for the status the change named.
    Status(Status, Status, Option<u64>),
    Whole(Box<Profile>),
}

impl Profile {
    /// `apply`, remembering in `undo` how to take it back.
    pub fn apply_undoable(&mut self, change: &Change, undo: &mut Undo) {
        let restore = match change {
            Change::Preference { name, .. } => Restore::Preference(name.clone(), self.preferences.get(name).cloned()),
            Change::Tags(tags) => Restore::Tags(tags.iter().filter(|t| !self.tags.contains(*t)).cloned().collect()),
            Change::Score(_) => Restore::Score(self.score),
            Change::Locale(_) => Restore::Locale(self.locale.clone()),
            Change::Answered { intent, .. } => Restore::Answered(intent.clone(), self.intents.get(intent).copied()),
            Change::Status { status, .. } => Restore::Status(self.status, *status, self.status_at.get(status).copied()),
            _ => Restore::Whole(Box::new(self.clone())),
        };
        undo.0.push(restore);
        self.apply(change);
    }
}

impl Undo {
    /// Takes back every change remembered, newest first.
    pub fn restore(self, profile: &mut Profile) {
        for restore in self.0.into_iter().rev() {
            match restore {
                Restore::Preference(name, old) => restore_entry(&mut profile.preferences, name, old),
                Restore::Tags(new) => profile.tags.retain(|t| !new.contains(t)),
                Restore::Score(score) => profile.score = score,
                Restore::Locale(locale) => profile.locale = locale,
                Restore::Answered(intent, old) => restore_entry(&mut profile.intents, intent, old),
                Restore::Status(was, named, at) => {
                    restore_entry(&mut profile.status_at, named, at);
                    profile.status = was;
                }
                Restore::Whole(whole) => *profile = *whole,
            }
        }
    }
}

/// Puts back what `map` held under `key` (`None`: nothing).
fn restore_entry<K: Ord, V>(map: &mut BTreeMap<K, V>, key: K, old: Option<V>) {
    match old {
        Some(old) => {
            map.insert(key, old);
        }
        None => {
            map.remove(&key);
        }
    }
}

fn consented(before: Option<&ConsentRecord>, change: &ConsentChange) -> ConsentRecord {
    let mut record =
        before.cloned().unwrap_or(ConsentRecord { marketing: false, ads: false, at: 0, source: "".into() });
    let unsubscribed = record.unsubscribed();
    if let Some(ads) = change.ads {
        record.ads = ads;
    }
    let keeps_unsubscribe = unsubscribed && change.source != CHAT_SOURCE;
    match change.marketing {
        Some(marketing) if !keeps_unsubscribe => {
            record.marketing = marketing;
            record.source.clone_from(&change.source);
        }
        // A decision about ads alone keeps the mark of an unsubscribe.
        None if !unsubscribed => record.source.clone_from(&change.source),
        _ => {}
    }
    record.at = record.at.max(change.at);
    record
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intents::slots::ConsentKind;
    use crate::protocol::Consent;

    fn consent_after(changes: &[ConsentChange]) -> (bool, bool, String) {
        let mut profile = Profile::new(VisitorId::mint(1), 1, "en");
        for change in changes {
            profile.apply(&Change::Consent(change.clone()));
        }
        let c = profile.consent.expect("recorded");
        (c.marketing, c.ads, c.source)
    }

    #[test]
    fn consent_rules() {
        let yes = Consent { marketing: true, ads: true };
        let banner = |at| ConsentChange::page(yes, "hello", at);
        type Case = (&'static str, Vec<ConsentChange>, (bool, bool, &'static str));
        let cases: Vec<Case> = vec![
            ("a banner grants both", vec![banner(1)], (true, true, "hello")),
            (
                "an unsubscribe withdraws marketing only",
                vec![banner(1), ConsentChange::unsubscribe(2)],
                (false, true, UNSUBSCRIBE_SOURCE),
            ),
            (
                "a banner after an unsubscribe keeps it",
                vec![banner(1), ConsentChange::unsubscribe(2), banner(3)],
                (false, true, UNSUBSCRIBE_SOURCE),
            ),
            (
                "a banner sent before the unsubscribe but applied after keeps it",
                vec![ConsentChange::unsubscribe(2), banner(1)],
                (false, true, UNSUBSCRIBE_SOURCE),
            ),
            (
                "a yes in the chat grants it back",
                vec![ConsentChange::unsubscribe(2), ConsentChange::chat(ConsentKind::Marketing, true, 3)],
                (true, false, "chat"),
            ),
            (
                "an ads answer in the chat keeps an unsubscribe",
                vec![ConsentChange::unsubscribe(1), ConsentChange::chat(ConsentKind::Ads, true, 2), banner(3)],
                (false, true, UNSUBSCRIBE_SOURCE),
            ),
            (
                "an ads answer in the chat leaves marketing",
                vec![banner(1), ConsentChange::chat(ConsentKind::Ads, false, 2)],
                (true, false, "chat"),
            ),
        ];
        for (name, changes, (marketing, ads, source)) in cases {
            assert_eq!(consent_after(&changes), (marketing, ads, source.to_string()), "{name}");
        }
    }

    #[test]
    fn a_status_only_moves_forward_and_orders_count_once() {
        let mut profile = Profile::new(VisitorId::mint(1), 1, "en");
        for change in [
            Change::Status { status: Status::CheckoutClicked, at: 2 },
            Change::Status { status: Status::Qualified, at: 3 },
            Change::Order { id: "A-1".into(), at: 4 },
            Change::Order { id: "A-1".into(), at: 5 },
            Change::Status { status: Status::Qualified, at: 6 },
        ] {
            profile.apply(&change);
        }
        assert_eq!(profile.status, Status::Converted);
        assert_eq!(profile.orders, ["A-1"]);
        assert_eq!(profile.status_at.get(&Status::Converted), Some(&4));
        assert_eq!(profile.status_at.get(&Status::Qualified), None, "skipped over, never reached after");
    }

    #[test]
    fn every_change_is_taken_back_by_its_undo() {
        let mut profile = Profile::new(VisitorId::mint(1), 1, "en");
        for change in [
            Change::Preference { name: "size".into(), value: "41".into(), at: 2, message: "41".into() },
            Change::Tags(vec!["interest:sneakers".into()]),
            Change::Score(5),
            Change::Answered { intent: "human".into(), at: 2 },
            Change::Status { status: Status::Qualified, at: 2 },
        ] {
            profile.apply(&change);
        }
        let agent = Agent { session: "s".into(), name: "Ada".into(), at: 3 };
        // Each change alone, then all of them in one step (as a message makes several).
        let changes = vec![
            Change::Preference { name: "size".into(), value: "42".into(), at: 4, message: "42".into() },
            Change::Preference { name: "color".into(), value: "black".into(), at: 4, message: "black".into() },
            Change::Tags(vec!["interest:sneakers".into(), "interest:boots".into()]),
            Change::Score(3),
            Change::Locale("de".into()),
            Change::Answered { intent: "human".into(), at: 4 },
            Change::Answered { intent: "returns".into(), at: 4 },
            Change::Status { status: Status::CheckoutClicked, at: 4 },
            Change::Status { status: Status::Converted, at: 4 },
            Change::Consent(ConsentChange::chat(ConsentKind::Marketing, true, 4)),
            Change::Handoff { at: 4 },
            Change::Take { agent, stale_before: 0 },
            Change::HandBack { at: 5 },
            Change::Order { id: "A-1".into(), at: 4 },
            Change::Campaign("spring".into()),
            Change::Timezone("Europe/Vienna".into()),
            Change::ResumeKey("ab".into()),
            Change::EnterJourney { journey: "welcome".into(), at: 4 },
        ];
        let mut steps: Vec<Vec<Change>> = changes.iter().map(|c| vec![c.clone()]).collect();
        steps.push(changes);
        for step in steps {
            let (mut changed, mut undo) = (profile.clone(), Undo::default());
            for change in &step {
                changed.apply_undoable(change, &mut undo);
            }
            assert_ne!(changed, profile, "{step:?} changes the profile");
            undo.restore(&mut changed);
            assert_eq!(changed, profile, "{step:?} taken back");
        }
    }
}
