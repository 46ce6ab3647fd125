//! The parts of a `hello` that need no session: who it resumes (one store read), what the
//! visit records, and which intent or proactive trigger the chat opens with.

use super::session::history;
use crate::domain::{Change, ConsentChange, Conversation, Engaged, Profile, Source};
use crate::ids::{ConversationId, VisitorId};
use crate::intents::IntentSet;
use crate::leads::EmailLink;
use crate::protocol::{Hello, Line, TriggerSeen};
use crate::store::{Command, Store};

/// Who a `hello` resumes, as the store knows them.
pub(super) struct Recalled {
    /// The email link, unless it was used before.
    pub link: Option<EmailLink>,
    pub found: Option<Found>,
    /// The email link was used before: it resumes nobody.
    pub spent: bool,
}

/// A visitor the `hello` resumes: their profile, their last conversation, whether that is the
/// one an email followed up on, and its last lines when this hello resumes it.
pub(super) struct Found {
    pub profile: Profile,
    pub last: Option<Conversation>,
    pub resumes: bool,
    pub said: Vec<Line>,
}

/// What a `hello` opens: the visitor (found or new), the conversation it resumes or starts, what
/// the widget is told, and what to store.
pub(super) struct Opened {
    pub profile: Profile,
    pub conversation: Conversation,
    pub returning: bool,
    /// The resumed conversation's last lines, for the widget to show again.
    pub history: Vec<Line>,
    /// A fresh resume key for a widget that did not resume with its own.
    pub key: Option<String>,
    pub commands: Vec<Command>,
}

/// The visitor `found` (or a new one) on this visit, in the conversation it resumes (an email's,
/// or its last within the resume window) or a new one; takes the attribution out of `hello`.
pub(super) fn open(
    hello: &mut Hello,
    found: Option<Found>,
    link: Option<&EmailLink>,
    now: u64,
    resume_window: u64,
) -> Opened {
    let returning = found.is_some();
    let locale = hello.locale.as_deref().map(locale_from_tag);
    let mut commands = Vec::new();
    let (mut profile, last, resumes, said) = match found {
        Some(Found { profile, last, resumes, said }) => (profile, last, resumes, said),
        None => {
            let profile = Profile::new(VisitorId::mint(now), now, locale.unwrap_or("en"));
            let create = Change::Create { at: now, locale: profile.locale.clone() };
            commands.push(Command::Visitor { visitor: profile.id, change: create });
            (profile, None, false, Vec::new())
        }
    };
    // The ad's own campaign (utm) says more than the widget's `data-campaign` on the page.
    let campaign = link
        .and_then(|l| l.campaign.clone())
        .or_else(|| hello.utm.get("campaign").cloned())
        .or_else(|| hello.campaign.clone());
    visit(&mut profile, hello, link, campaign.clone(), locale, now, &mut commands);
    let (conversation, history) = match last {
        Some(c) if resumes || now.saturating_sub(c.last_at) <= resume_window => (c, said),
        _ => {
            let conversation = Conversation {
                id: ConversationId::mint(now),
                visitor: profile.id,
                started_at: now,
                last_at: now,
                locale: profile.locale.clone(),
                source: Source {
                    campaign,
                    page: hello.page.take(),
                    referrer: hello.referrer.take(),
                    utm: std::mem::take(&mut hello.utm),
                    click_ids: std::mem::take(&mut hello.click_ids),
                },
                pending: None,
            };
            // A conversation starts with its record written in the same batch as its first turn.
            commands.push(Command::OpenConversation(Box::new(conversation.clone())));
            (conversation, Vec::new())
        }
    };
    // A widget that did not resume with its key (a new visitor, an email link, a key that no
    // longer holds) gets a fresh one.
    let resumed_by_key = hello.key.as_deref().is_some_and(|k| profile.resumes_with(k));
    let key = (!resumed_by_key).then(|| {
        let (key, hash) = crate::ids::mint_resume_key();
        commands.push(Command::change(&mut profile, Change::ResumeKey(hash)));
        key
    });
    Opened { profile, conversation, returning, history, key, commands }
}

/// `de-AT` → `de`; anything that is not German is answered in English.
fn locale_from_tag(tag: &str) -> &'static str {
    if tag.get(..2).is_some_and(|l| l.eq_ignore_ascii_case("de")) { "de" } else { "en" }
}

/// One read: the email link's visitor, else the widget's (only with its resume key).
pub(super) fn recall(
    store: &Store,
    link: Option<EmailLink>,
    requested: Option<VisitorId>,
    key: Option<String>,
    now: u64,
    resume_window: u64,
) -> crate::store::Result<Recalled> {
    // An email link proves its address once; after that the widget it opened holds
    // a resume key, and the link resumes nobody (a forwarded email, a shared device).
    let spent = match &link {
        Some(link) => store.link_spent(&link.id)?,
        None => false,
    };
    let link = link.filter(|_| !spent);
    let by_email = match &link {
        Some(link) => link.find(store)?,
        None => None,
    };
    // The public id alone resumes nothing: it is in the admin, in exports and (before
    // tokens were sealed) in links. The widget's resume key proves the chat is theirs.
    let profile = match (by_email, requested) {
        (Some(profile), _) => Some(profile),
        (None, Some(id)) => store.visitor(&id)?.filter(|p| key.as_deref().is_some_and(|k| p.resumes_with(k))),
        (None, None) => None,
    };
    let found = match profile {
        Some(profile) => {
            // A follow-up email's link resumes the conversation it followed up on.
            let followed_up = match link.as_ref().and_then(|l| l.conversation) {
                Some(id) => store.conversation(&id)?.filter(|c| c.visitor == profile.id),
                None => None,
            };
            let resumes = followed_up.is_some();
            let last = followed_up.map_or_else(|| store.latest_conversation(&profile.id), |c| Ok(Some(c)))?;
            // Read only for a conversation this hello resumes.
            let said = match &last {
                Some(c) if resumes || now.saturating_sub(c.last_at) <= resume_window => {
                    history(store.transcript(&c.id)?)
                }
                _ => Vec::new(),
            };
            Some(Found { profile, last, resumes, said })
        }
        None => None,
    };
    Ok(Recalled { link, found, spent })
}

/// What a visit records on the profile: the visit itself (language, campaign, UTM), the time
/// zone, the page's consent banner, and an email link's address and details.
pub(super) fn visit(
    profile: &mut Profile,
    hello: &Hello,
    link: Option<&EmailLink>,
    campaign: Option<String>,
    locale: Option<&str>,
    now: u64,
    commands: &mut Vec<Command>,
) {
    let utm = hello
        .utm
        .iter()
        .filter(|(k, _)| matches!(k.as_str(), "source" | "medium" | "campaign"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let visit = Change::Visit { at: now, locale: locale.map(str::to_string), campaign, utm };
    commands.push(Command::change(profile, visit));
    if let Some(zone) = hello.timezone.as_ref().filter(|z| crate::outbox::limits::known_zone(z))
        && profile.timezone.as_ref() != Some(zone)
    {
        commands.push(Command::change(profile, Change::Timezone(zone.clone())));
    }
    if let Some(consent) = hello.consent {
        commands.push(Command::change(profile, Change::Consent(ConsentChange::page(consent, "hello", now))));
    }
    if let Some(link) = link {
        for change in link.changes(now) {
            commands.push(Command::change(profile, change));
        }
        commands.push(link.link(profile.id));
        // Spent with the first message (a mail scanner that only opens the page spends
        // nothing), like everything else this hello would store.
        commands.push(Command::SpendLink { link: link.id, expires_at: link.expires_at.saturating_mul(1000) });
    }
}

/// The intent a deep link opens the chat in: only one with `start = true` (else why not, for
/// a `bad_request`).
pub(super) fn opens_in<'a>(intents: &'a IntentSet, start: Option<&'a str>) -> Result<Option<&'a str>, String> {
    match start.filter(|s| !s.is_empty()) {
        Some(id) if intents.get(id).is_some_and(|i| i.start) => Ok(Some(id)),
        Some(id) => {
            let can: Vec<&str> = intents.intents.iter().filter(|i| i.start).map(|i| i.id.as_str()).collect();
            Err(format!("`start`: `{id}` is not an intent a chat can open in (those are: {})", can.join(", ")))
        }
        None => Ok(None),
    }
}

/// The proactive trigger (and teaser variant) that opened the chat, for its funnel (else why
/// not, for a `bad_request`).
pub(super) fn triggered(intents: &IntentSet, seen: &TriggerSeen, now: u64) -> Result<Change, String> {
    match intents.triggers.iter().find(|t| t.id == seen.id) {
        Some(t) if (seen.variant as usize) < t.variants() => {
            Ok(Change::Triggered { trigger: seen.id.clone(), engaged: Engaged { variant: seen.variant, at: now } })
        }
        _ => Err(format!("`trigger`: no trigger `{}` with variant {}", seen.id, seen.variant)),
    }
}
