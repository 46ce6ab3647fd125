//! Entering visitors into journeys: a sweep over every visitor, at start and every
//! `journey_sweep_secs`, on its own thread, after refitting the learned lead score
//! (`leads::learned`) that segments may ask about. A visitor who meets a journey's entry and may enter
//! gets `Change::EnterJourney` and the journey's first step in the outbox, in one batch. Only the
//! sweep enters (on one node at a time, `Store::exclusive`), so two entries of one visitor
//! cannot race; the outbox's one pending job per visitor and journey keeps one run at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Journeys;
use crate::app::App;
use crate::domain::{Change, Job, OutboxItem, Profile};
use crate::ids::ConversationId;
use crate::store::{Command, Result, Store};

/// Visitors entered per batch: each batch is one transaction on PostgreSQL.
const BATCH: usize = 200;

/// Enters every visitor who may enter a journey at `at`; returns how many runs started.
pub fn sweep(store: &Store, journeys: &Journeys, at: super::Moment) -> Result<usize> {
    let now = at.now;
    if journeys.journeys.is_empty() {
        return Ok(0);
    }
    let mut writes = Vec::new();
    let mut started = 0;
    for profile in store.visitors() {
        let profile = profile?;
        for journey in &journeys.journeys {
            if !journeys.may_enter(journey, &profile, at) {
                continue;
            }
            // The run belongs to the visitor's last conversation (the resume link goes there).
            let Some(conversation) = store.latest_conversation(&profile.id)? else { continue };
            writes.extend(enter(&profile, journey, conversation.id, &conversation.locale, now));
            started += 1;
        }
        if writes.len() >= BATCH * 2 {
            store.commit_blocking(std::mem::take(&mut writes))?;
        }
    }
    store.commit_blocking(writes)?;
    Ok(started)
}

/// The batch that enters `profile` into `journey`: the mark on the profile and the first step.
fn enter(
    profile: &Profile,
    journey: &super::Journey,
    conversation: ConversationId,
    locale: &str,
    now: u64,
) -> [Command; 2] {
    let orders = u32::try_from(profile.orders.len()).unwrap_or(u32::MAX);
    let job = Job::Journey { journey: journey.id.clone(), step: 0, entered_at: now, orders, email: None };
    let due = now.saturating_add(journey.steps.first().map_or(0, |s| s.after));
    [
        Command::Visitor { visitor: profile.id, change: Change::EnterJourney { journey: journey.id.clone(), at: now } },
        Command::Enqueue(Box::new(OutboxItem::new(profile.id, conversation, job, locale, now, due))),
    ]
}

/// Starts the sweep thread; it stops soon after `App::shutdown` is set.
pub fn spawn(app: Arc<App>) -> std::io::Result<std::thread::JoinHandle<()>> {
    let every = Duration::from_secs(app.config.journey_sweep_secs.max(1));
    std::thread::Builder::new().name("nudge-journeys".into()).spawn(move || {
        let mut next = Instant::now();
        while !app.shutdown.is_raised() {
            if Instant::now() >= next {
                let intents = app.intents();
                // The lead model first: segments may ask for its probability.
                match crate::leads::learned::Model::fit_store(&app.store) {
                    Ok(model) => app.set_learned(model),
                    Err(e) => log::error!("learned lead score: {e}"),
                }
                let model = app.learned();
                let at = super::Moment { now: app.now_ms(), model: model.as_deref() };
                match app.store.exclusive("journeys", || sweep(&app.store, &intents.journeys, at)) {
                    Ok(Some(Ok(0))) | Ok(None) => {}
                    Ok(Some(Ok(started))) => log::info!("journeys: {started} visitor(s) entered a journey"),
                    Ok(Some(Err(e))) | Err(e) => log::error!("journeys: {e}"),
                }
                next = Instant::now() + every;
            }
            app.stopping.sleep(next.saturating_duration_since(Instant::now()));
        }
    })
}
