//! One step of a visitor's run of a journey. The run is checked first (a new order, an
//! unsubscribe, leaving the segment or reaching the goal ends it); a step whose condition does
//! not hold is skipped and the run goes on; an email step goes through the same checks, cap,
//! quiet hours, variants and link tracking as a follow-up. The next step is enqueued with this
//! step's outcome, so a crash between them is impossible: both are one batch.

use super::{Failure, Receivers, mail::Buyers};
use crate::app::App;
use crate::domain::{Job, OutboxItem};
use crate::journeys::Action;
use crate::store::Command;

pub(super) fn run(
    app: &App,
    receivers: &Receivers,
    item: &mut OutboxItem,
    now: u64,
    then: &mut Vec<Command>,
) -> Result<(), Failure> {
    let Job::Journey { journey: id, step: index, entered_at, orders, .. } = item.job.clone() else {
        return Err(Failure::Permanent("not a journey step".into()));
    };
    let intents = app.intents();
    let journeys = &intents.journeys;
    let journey = journeys.journey(&id).ok_or_else(|| Failure::Unwanted(format!("journey `{id}` was removed")))?;
    let step = journey
        .steps
        .get(index as usize)
        .ok_or_else(|| Failure::Unwanted(format!("journey `{id}` has no step {} any more", index + 1)))?;
    let profile = app.store.visitor(&item.visitor).map_err(|e| Failure::Temporary(e.to_string()))?;
    let profile = profile.ok_or_else(|| Failure::Unwanted("the visitor is gone".into()))?;
    let model = app.learned();
    let at = crate::journeys::Moment { now, model: model.as_deref() };
    if let Some(why) = journeys.exit(journey, &profile, orders, at) {
        return Err(Failure::Unwanted(format!("{}: {why}", crate::admin::report::LEFT)));
    }
    let outcome = if !journeys.runs(step, &profile, at) {
        Err(Failure::Unwanted("its condition does not hold; the journey goes on".into()))
    } else {
        match &step.action {
            Action::Email(template) => {
                item.variant = Some(receivers.mailer.deliver(app, item, template, now, Buyers::Send)?);
                if let Job::Journey { email, .. } = &mut item.job {
                    *email = Some(template.clone());
                }
                Ok(())
            }
            Action::Tag(tag) => {
                then.extend(super::tag(&profile, item, tag, now, receivers.webhook.is_some()));
                Ok(())
            }
        }
    };
    if let Some(next) = journey.steps.get(index as usize + 1) {
        let job = Job::Journey { journey: id, step: index + 1, entered_at, orders, email: None };
        let due = now.saturating_add(next.after);
        then.push(Command::Enqueue(Box::new(OutboxItem::new(
            item.visitor,
            item.conversation,
            job,
            &item.locale,
            now,
            due,
        ))));
    }
    outcome
}
