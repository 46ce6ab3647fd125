//! What a step of the dialogue does, decided by one pure function: the engine's effects, the
//! visitor's profile and conversation as the session holds them, the shop's policy and the time
//! in; the commands to store, the frames to send and the new profile and conversation out. The
//! session only runs it, commits the commands and sends the frames.

use std::borrow::Cow;
use std::collections::BTreeSet;

use crate::config::Config;
use crate::dialogue::{Effect, Step};
use crate::domain::{Change, ConsentChange, Conversation, Job, OutboxItem, Profile, Speaker, Status, Undo};
use crate::ids::TurnId;
use crate::leads;
use crate::protocol::{Pixel, ServerFrame};
use crate::signing::Signer;
use crate::store::Command;

/// What the shop decided that a step's outcome depends on.
pub struct Policy<'a> {
    pub config: &'a Config,
    pub signer: &'a Signer,
    pub public_url: &'a str,
    /// Intents that enter a journey: only their answers are recorded on the profile.
    pub entry_intents: &'a BTreeSet<String>,
    /// Whether the pack has the unfinished-chat email.
    pub unfinished_email: bool,
}

/// A step's outcome. (Moved out at once, once per message: boxing `Continue` would only add
/// an allocation.)
#[derive(Debug, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// The conversation goes on, once `commands` are stored, with the conversation as this step
    /// changed it (`None`: unchanged, and not copied). The session moves the conversation's
    /// `last_at` itself.
    Continue { commands: Vec<Command>, frames: Vec<ServerFrame>, conversation: Option<Conversation> },
    /// The shopper asked to be forgotten: the session erases them after `commands` (this
    /// turn is not even written) and sends `frames` with a new visitor's `welcome`, in the
    /// conversation's language.
    Erase { commands: Vec<Command>, frames: Vec<ServerFrame>, locale: String },
}

/// Applies `step` to the session's `profile` (in place: `undo` takes it back when the commands
/// are not stored) and `conversation` as turn `turn` at `now`, after `commands` that came
/// before it (a `hello`'s).
#[allow(clippy::too_many_arguments)]
pub fn apply(
    step: Step,
    profile: &mut Profile,
    undo: &mut Undo,
    conversation: &Conversation,
    turn: TurnId,
    mut commands: Vec<Command>,
    policy: &Policy,
    now: u64,
) -> Outcome {
    let Step { mut frames, effects } = step;
    // A message makes a handful of commands (its turn, its changes, the question it leaves,
    // follow-ups): room for them at once, not grown (and moved) as they come.
    commands.reserve(COMMANDS);
    let (before, started_in) = (Before::of(profile), conversation);
    let mut conversation = Cow::Borrowed(conversation);
    let mut new_tags = Vec::new();
    let mut entries = Vec::new();
    let (mut erase, mut checkout_asked) = (false, false);
    for effect in effects {
        let change = match effect {
            Effect::Record(entry) => {
                entries.push(entry);
                continue;
            }
            Effect::SetLocale(locale) => {
                conversation.to_mut().locale.clone_from(&locale);
                commands.push(Command::ConversationLocale { conversation: conversation.id, locale: locale.clone() });
                Change::Locale(locale)
            }
            Effect::SetPreference { name, value, message } => Change::Preference { name, value, at: now, message },
            Effect::AddTags(tags) => {
                new_tags.extend(tags.iter().filter(|t| !profile.tags.contains(*t)).cloned());
                Change::Tags(tags)
            }
            Effect::AddScore(score) => Change::Score(score),
            Effect::SetPending(pending) => {
                if conversation.pending != pending {
                    conversation.to_mut().pending = pending;
                }
                continue;
            }
            Effect::SetConsent { kind, granted } => Change::Consent(ConsentChange::chat(kind, granted, now)),
            Effect::Handoff => Change::Handoff { at: now },
            Effect::Erase => {
                erase = true;
                continue;
            }
            Effect::OfferCheckout => {
                checkout_asked = true;
                continue;
            }
            Effect::FollowUp { email, after_secs } => {
                let job = Job::Email { template: email };
                commands.push(enqueue(&conversation, job, now, after(now, after_secs)));
                continue;
            }
        };
        commands.push(record(profile, undo, change));
    }
    // Only the answers of intents that enter a journey are recorded (on the profile, for the
    // journey sweep); every other message leaves the profile unwritten.
    for intent in entries.iter().filter(|e| e.from == Speaker::Bot).filter_map(|e| e.intent.as_ref()) {
        if policy.entry_intents.contains(intent) {
            commands.push(record(profile, undo, Change::Answered { intent: intent.clone(), at: now }));
        }
    }
    if erase {
        return Outcome::Erase { commands, frames, locale: conversation.locale.clone() };
    }
    if !new_tags.is_empty() {
        frames.push(tags_frame(profile, &new_tags));
        // Tag events for the shop's webhook, for visitors who allow ads.
        if policy.config.tag_webhook_url.is_some() && profile.consent.as_ref().is_some_and(|c| c.ads) {
            for tag in &new_tags {
                let job = Job::TagEvent { tag: tag.clone(), at: now };
                commands.push(enqueue(&conversation, job, now, now));
            }
        }
    }
    if let Some(job) = confirmation(policy.config, &before, profile) {
        commands.push(enqueue(&conversation, job, now, now));
    }
    if let Some(checkout) = offer_checkout(policy, profile, undo, &mut commands, &conversation, now, checkout_asked) {
        frames.push(checkout);
        let wait = policy.config.abandoned_after_secs;
        if wait > 0 {
            commands.push(enqueue(&conversation, Job::Abandoned, now, after(now, wait)));
        }
    }
    if conversation.pending != started_in.pending {
        commands.push(Command::SetPending { conversation: conversation.id, pending: conversation.pending.clone() });
    }
    // A shopper we may email who leaves a question open gets it by email, answers as buttons
    // (one job per visitor: scheduling it again while it waits changes nothing).
    let wait = policy.config.unfinished_after_secs;
    if wait > 0
        && policy.unfinished_email
        && conversation.pending.is_some()
        && profile.preference("email").is_some()
        && profile.consent.as_ref().is_some_and(|c| c.marketing)
    {
        let job = Job::Email { template: crate::intents::UNFINISHED_CHAT.into() };
        commands.push(enqueue(&conversation, job, now, after(now, wait)));
    }
    if !entries.is_empty() {
        commands.push(Command::AppendTurn { conversation: conversation.id, turn, entries });
    }
    // The widget's own labels follow the conversation's language from its first reply in it.
    if conversation.locale != started_in.locale
        && let Some(ServerFrame::Reply(reply)) = frames.iter_mut().find(|f| matches!(f, ServerFrame::Reply(_)))
    {
        reply.locale = Some(conversation.locale.clone());
    }
    let conversation = match conversation {
        Cow::Owned(changed) => Some(changed),
        Cow::Borrowed(_) => None,
    };
    Outcome::Continue { commands, frames, conversation }
}

/// Applies `change` to the session's profile, remembering how to take it back, and returns the
/// command that records it in the store.
fn record(profile: &mut Profile, undo: &mut Undo, change: Change) -> Command {
    profile.apply_undoable(&change, undo);
    Command::Visitor { visitor: profile.id, change }
}

/// What double opt-in compares with after a step: the address and marketing consent before it.
struct Before {
    email: Option<String>,
    wants_mail: bool,
}

impl Before {
    fn of(profile: &Profile) -> Before {
        Before { email: profile.preference("email").map(str::to_owned), wants_mail: wants_mail(profile) }
    }
}

fn wants_mail(profile: &Profile) -> bool {
    profile.consent.as_ref().is_some_and(|c| c.marketing)
}

/// Room for a message's commands (`apply`).
const COMMANDS: usize = 8;

/// A job for the outbox, due at `due`.
fn enqueue(conversation: &Conversation, job: Job, now: u64, due: u64) -> Command {
    Command::Enqueue(Box::new(OutboxItem::schedule(conversation, job, now, due)))
}

fn after(now: u64, secs: u64) -> u64 {
    now.saturating_add(secs.saturating_mul(1000))
}

/// Double opt-in: when this step gave an address and marketing consent that were not both
/// there before, and the address is not confirmed, its owner is asked to confirm it.
fn confirmation(config: &Config, before: &Before, after: &Profile) -> Option<Job> {
    let email = after.preference("email")?;
    let new = before.email.as_deref() != Some(email) || !before.wants_mail;
    (config.double_opt_in && new && wants_mail(after) && !after.confirmed(email))
        .then(|| Job::ConfirmEmail { email: email.to_string() })
}

/// The `checkout` frame with its signed `/r/` link: the first time a lead qualifies, or
/// whenever an intent with `checkout = true` answered (`asked`) and the link can be built.
fn offer_checkout(
    policy: &Policy,
    profile: &mut Profile,
    undo: &mut Undo,
    commands: &mut Vec<Command>,
    conversation: &Conversation,
    now: u64,
    asked: bool,
) -> Option<ServerFrame> {
    let config = policy.config;
    let offer = if asked { leads::can_check_out(profile, config) } else { leads::qualifies(profile, config) };
    if !offer {
        return None;
    }
    let target = leads::checkout_target(config, profile, conversation.source.campaign.as_deref())
        .map_err(|e| log::warn!("cannot offer a checkout link: {e}"))
        .ok()?;
    commands.push(record(profile, undo, Change::Status { status: Status::Qualified, at: now }));
    let expires = now / 1000 + config.checkout_ttl_days * 24 * 3600;
    let url = leads::checkout_link(
        policy.signer,
        policy.public_url,
        profile.id,
        conversation.id,
        target.to_string(),
        expires,
    );
    let label = if conversation.locale == "de" { "Zur Kasse" } else { "Go to checkout" };
    Some(ServerFrame::Checkout { url, label: label.into() })
}

/// The visitor's tags, and pixel events for the newly added ones when the shopper allowed ads.
fn tags_frame(profile: &Profile, new_tags: &[String]) -> ServerFrame {
    let ads = profile.consent.as_ref().is_some_and(|c| c.ads);
    let pixel = if ads {
        new_tags
            .iter()
            .map(|tag| Pixel { event: "nudge_tag".into(), params: [("tag".to_string(), tag.clone())].into() })
            .collect()
    } else {
        Vec::new()
    };
    ServerFrame::Tags { tags: profile.tags.iter().cloned().collect(), pixel }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dialogue::Effect as E;
    use crate::domain::{ConsentRecord, Entry, Pending, Preference, Source};
    use crate::ids::{ConversationId, VisitorId};
    use crate::intents::slots::ConsentKind;
    use crate::protocol::Reply;

    const NOW: u64 = 1_000_000;

    fn visitor() -> (Profile, Conversation) {
        let profile = Profile::new(VisitorId::mint(0), 0, "en");
        let conversation = Conversation {
            id: ConversationId::mint(0),
            visitor: profile.id,
            started_at: 0,
            last_at: 0,
            locale: "en".into(),
            source: Source::default(),
            pending: None,
        };
        (profile, conversation)
    }

    fn know(profile: &mut Profile, name: &str, value: &str) {
        let preference = Preference { value: value.into(), at: 0, message: String::new() };
        profile.preferences.insert(name.into(), preference);
    }

    fn consent(profile: &mut Profile, marketing: bool, ads: bool) {
        profile.consent = Some(ConsentRecord { marketing, ads, at: 0, source: "hello".into() });
    }

    fn reply(text: &str) -> ServerFrame {
        ServerFrame::Reply(Reply {
            text: text.into(),
            intent: "x".into(),
            choices: Vec::new(),
            how: None,
            confidence: None,
            captured: Default::default(),
            agent: None,
            locale: None,
        })
    }

    fn bot(intent: &str) -> Entry {
        Entry { intent: Some(intent.into()), ..Entry::said(Speaker::Bot, "hi", NOW) }
    }

    /// A command in a few words: what changed, or which job is due when.
    fn describe(command: &Command) -> String {
        match command {
            Command::Visitor { change, .. } => format!("{change:?}"),
            Command::Enqueue(item) => format!("enqueue {} at {}", item.job.key(), item.due_at),
            Command::AppendTurn { entries, .. } => format!("turn of {}", entries.len()),
            Command::SetPending { pending, .. } => format!("pending {:?}", pending.as_ref().map(|p| &p.slot)),
            Command::ConversationLocale { locale, .. } => format!("conversation in {locale}"),
            other => format!("{other:?}"),
        }
    }

    fn kind(frame: &ServerFrame) -> String {
        match frame {
            ServerFrame::Reply(r) => format!("reply {} {:?}", r.text, r.locale),
            ServerFrame::Tags { tags, pixel } => format!("tags {tags:?} pixels {}", pixel.len()),
            ServerFrame::Checkout { label, .. } => format!("checkout {label}"),
            other => format!("{other:?}"),
        }
    }

    type Setup = fn(&mut Profile, &mut Conversation, &mut Config);
    /// A case: its name, what the visitor and shop are, the effects, the commands and frames.
    type Case = (&'static str, Setup, Vec<E>, Vec<&'static str>, Vec<&'static str>);

    #[test]
    fn each_effect_becomes_its_commands_and_frames() {
        let webhook: Setup = |p, _, c| {
            consent(p, false, true);
            c.tag_webhook_url = Some("http://127.0.0.1:9/tags".into());
        };
        let subscribed: Setup = |p, _, _| {
            know(p, "email", "cara@example.com");
            consent(p, true, false);
        };
        let sized: Setup = |p, _, _| {
            know(p, "product", "sneakers");
            know(p, "size", "42");
        };
        let pending = Pending { slot: "size".into(), tries: 0, then: Vec::new(), done: None, intent: "shoes".into() };
        let table: Vec<Case> = vec![
            ("a turn", |_, _, _| {}, vec![E::Record(bot("greeting"))], vec!["turn of 1"], vec!["reply hi None"]),
            (
                "a new language",
                |_, _, _| {},
                vec![E::SetLocale("de".into())],
                vec!["conversation in de", "Locale(\"de\")"],
                vec!["reply hi Some(\"de\")"],
            ),
            (
                "a preference",
                |_, _, _| {},
                vec![E::SetPreference { name: "size".into(), value: "42".into(), message: "42".into() }],
                vec!["Preference { name: \"size\", value: \"42\", at: 1000000, message: \"42\" }"],
                vec!["reply hi None"],
            ),
            (
                "a tag, no ads consent",
                |_, _, _| {},
                vec![E::AddTags(vec!["interest:sneakers".into()])],
                vec!["Tags([\"interest:sneakers\"])"],
                vec!["reply hi None", "tags [\"interest:sneakers\"] pixels 0"],
            ),
            (
                "a tag, ads consent and a webhook",
                webhook,
                vec![E::AddTags(vec!["interest:sneakers".into()])],
                vec!["Tags([\"interest:sneakers\"])", "enqueue tag:interest:sneakers at 1000000"],
                vec!["reply hi None", "tags [\"interest:sneakers\"] pixels 1"],
            ),
            ("a score", |_, _, _| {}, vec![E::AddScore(10)], vec!["Score(10)"], vec!["reply hi None"]),
            (
                "a question",
                |_, _, _| {},
                vec![E::SetPending(Some(pending.clone()))],
                vec!["pending Some(\"size\")"],
                vec!["reply hi None"],
            ),
            (
                "a question, and the unfinished-chat email for a subscriber",
                subscribed,
                vec![E::SetPending(Some(pending.clone()))],
                vec!["pending Some(\"size\")", "enqueue email:unfinished_chat at 4600000"],
                vec!["reply hi None"],
            ),
            (
                "consent",
                |_, _, _| {},
                vec![E::SetConsent { kind: ConsentKind::Ads, granted: true }],
                vec!["Consent(ConsentChange { marketing: None, ads: Some(true), source: \"chat\", at: 1000000 })"],
                vec!["reply hi None"],
            ),
            (
                "an address and consent, to confirm",
                |p, _, _| know(p, "email", "cara@example.com"),
                vec![E::SetConsent { kind: ConsentKind::Marketing, granted: true }],
                vec!["Consent(", "enqueue confirm:cara@example.com at 1000000"],
                vec!["reply hi None"],
            ),
            ("a person", |_, _, _| {}, vec![E::Handoff], vec!["Handoff { at: 1000000 }"], vec!["reply hi None"]),
            (
                "a follow-up",
                |_, _, _| {},
                vec![E::FollowUp { email: "your_selection".into(), after_secs: 60 }],
                vec!["enqueue email:your_selection at 1060000"],
                vec!["reply hi None"],
            ),
            (
                "checkout asked, what it needs known",
                sized,
                vec![E::OfferCheckout],
                vec!["Status { status: Qualified, at: 1000000 }", "enqueue abandoned at 4600000"],
                vec!["reply hi None", "checkout Go to checkout"],
            ),
            ("checkout asked, the size unknown", |_, _, _| {}, vec![E::OfferCheckout], vec![], vec!["reply hi None"]),
            (
                "an intent that enters a journey",
                |_, _, _| {},
                vec![E::Record(bot("human"))],
                vec!["Answered { intent: \"human\", at: 1000000 }", "turn of 1"],
                vec!["reply hi None"],
            ),
        ];
        let signer = Signer::new("k", [("k".to_string(), b"test-key".to_vec())].into()).expect("signer");
        let entering: BTreeSet<String> = ["human".to_string()].into();
        for (name, setup, effects, want_commands, want_frames) in table {
            let (mut profile, mut conversation) = visitor();
            let mut config = Config::default();
            setup(&mut profile, &mut conversation, &mut config);
            let policy = Policy {
                config: &config,
                signer: &signer,
                public_url: "http://127.0.0.1:8080",
                entry_intents: &entering,
                unfinished_email: true,
            };
            let step = Step { frames: vec![reply("hi")], effects };
            let turn = TurnId::after(None, NOW);
            let (before, mut undo) = (profile.clone(), Undo::default());
            let Outcome::Continue { commands, frames, conversation: after } =
                apply(step, &mut profile, &mut undo, &conversation, turn, Vec::new(), &policy, NOW)
            else {
                panic!("{name}: erased");
            };
            // Returned only when changed: a step that writes nothing of it does not copy it.
            assert!(after.as_ref().is_none_or(|after| *after != conversation), "{name}");
            let writes_profile = commands.iter().any(|c| matches!(c, Command::Visitor { .. }));
            assert_eq!(profile != before, writes_profile, "{name}");
            // A commit that fails leaves the session's profile as it was.
            let mut taken_back = profile.clone();
            undo.restore(&mut taken_back);
            assert_eq!(taken_back, before, "{name}: undone");
            let commands: Vec<String> = commands.iter().map(describe).collect();
            assert_eq!(commands.len(), want_commands.len(), "{name}: {commands:#?}");
            for (got, want) in commands.iter().zip(&want_commands) {
                assert!(got.starts_with(want), "{name}: {got} is not {want}");
            }
            assert_eq!(frames.iter().map(kind).collect::<Vec<_>>(), want_frames, "{name}");
        }
    }

    #[test]
    fn asking_to_be_forgotten_writes_nothing_of_the_turn() {
        let (mut profile, conversation) = visitor();
        let (config, entering) = (Config::default(), BTreeSet::new());
        let signer = Signer::new("k", [("k".to_string(), b"test-key".to_vec())].into()).expect("signer");
        let policy = Policy {
            config: &config,
            signer: &signer,
            public_url: "",
            entry_intents: &entering,
            unfinished_email: true,
        };
        let effects = vec![E::SetLocale("de".into()), E::Record(bot("erase_data")), E::Erase];
        let step = Step { frames: vec![reply("Erledigt")], effects };
        let turn = TurnId::after(None, NOW);
        let outcome = apply(step, &mut profile, &mut Undo::default(), &conversation, turn, Vec::new(), &policy, NOW);
        let Outcome::Erase { commands, frames, locale } = outcome else { panic!("not erased") };
        assert_eq!(commands.iter().map(describe).collect::<Vec<_>>(), ["conversation in de", "Locale(\"de\")"]);
        assert_eq!((frames.len(), locale.as_str()), (1, "de"), "the new visitor speaks German");
    }
}
