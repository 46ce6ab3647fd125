//! The outbox worker: one thread that runs the jobs the store's outbox holds when they are due:
//! follow-up emails (`outbox/mail.rs`), tag events for the retargeting webhook
//! (`outbox/webhook.rs`), journey steps (`outbox/journey.rs`) and the cart-abandonment check. Each job is checked again when it runs
//! (an email is not sent when the shopper converted, unsubscribed, has no marketing consent or no
//! address; a tag event needs ads consent). Temporary failures are retried with doubling waits;
//! permanent ones are dead-lettered. Jobs run one at a time and each outcome is committed right
//! after the receiver's answer, so a crash can repeat at most the one job in flight.

mod journey;
pub mod limits;
mod mail;
mod webhook;

use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub use mail::{Mailer, erase_mail, expire_mail, mail_dir};
pub use webhook::{Webhook, sign};

use crate::app::App;
use crate::domain::{Change, Job, OutboxItem, OutboxState, Profile, Status};
use crate::metrics::name;
use crate::store::Command;

/// The tag a shopper gets who was offered a checkout link and did not buy in time.
pub const CART_ABANDONER: &str = "cart_abandoner";
/// The longest wait between two attempts.
const MAX_BACKOFF_MS: u64 = 6 * 60 * 60 * 1000;
/// How long the worker waits after a failure before it looks again.
const POLL: Duration = Duration::from_millis(200);
/// The longest the worker sleeps without being woken: on a shared store other nodes enqueue
/// jobs this one hears nothing of; alone, a safety net.
const LOOK_AGAIN: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

/// Why a job did not run to the end.
enum Failure {
    /// Try again later.
    Temporary(String),
    /// It will never work: dead-letter it.
    Permanent(String),
    /// Not wanted any more (converted, no consent, ...): skip it.
    Unwanted(String),
    /// Wanted, but not now (quiet hours, the daily cap): due again at `until` (ms), no attempt
    /// spent.
    Later { until: u64, reason: String },
}

/// Where the jobs go.
pub struct Receivers {
    pub mailer: Mailer,
    pub webhook: Option<Webhook>,
}

/// Starts the worker; it stops soon after `App::shutdown` is set. It is supervised: a job that
/// panics is dead-lettered with the panic's message and the worker goes on, and a panic outside a
/// job restarts the loop, so one bad job can never stop every later email. `/healthz` reports
/// the worker through `Metrics::outbox_running`.
pub fn spawn(app: Arc<App>, receivers: Receivers) -> std::io::Result<std::thread::JoinHandle<()>> {
    // Set before the thread starts, so `/healthz` is right from the first request.
    app.metrics.outbox_running.store(true, Ordering::Relaxed);
    metrics::gauge!(name::OUTBOX_RUNNING).set(1.0);
    std::thread::Builder::new().name("nudge-outbox".into()).spawn(move || {
        let _running = Running(&app.metrics);
        while !app.shutdown.is_raised() {
            if let Err(panic) = panic::catch_unwind(AssertUnwindSafe(|| work(&app, &receivers))) {
                crate::metrics::count(name::OUTBOX_PANICS);
                log::error!("outbox: the worker panicked and restarts: {}", panic_message(&panic));
                std::thread::sleep(POLL);
            }
        }
    })
}

/// Clears `outbox_running` when the worker ends, however it ends.
struct Running<'a>(&'a crate::metrics::Metrics);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.outbox_running.store(false, Ordering::Relaxed);
        metrics::gauge!(name::OUTBOX_RUNNING).set(0.0);
    }
}

/// The worker's loop: runs what is due, then sleeps until the next job is due or a commit
/// enqueues one (`Store::outbox_signal`), or the server stops.
fn work(app: &App, receivers: &Receivers) {
    while !app.shutdown.is_raised() {
        app.store.outbox_awake();
        let round = app.outbox_rounds.begin();
        let now = app.now_ms();
        // On a shared store each job is leased as it is taken, so that a lease only ever covers
        // the job in flight: a node that dies can leave no more than that one to be run again.
        let claim = if app.store.is_shared() { 1 } else { 64 };
        match app.store.claim_due(now, claim, app.config.outbox_lease_secs.saturating_mul(1000)) {
            Ok(due) if !due.is_empty() => {
                metrics::gauge!(name::OUTBOX_DUE).set(due.len() as f64);
                for item in due {
                    let late = now.saturating_sub(item.due_at) as f64 / 1000.0;
                    metrics::histogram!(name::OUTBOX_LAG_SECONDS).record(late);
                    let writes = run_supervised(app, receivers, item);
                    if let Err(e) = app.store.commit_blocking(writes) {
                        log::error!("outbox: cannot record an outcome: {e}");
                        std::thread::sleep(POLL);
                    }
                }
                continue;
            }
            Ok(_) => metrics::gauge!(name::OUTBOX_DUE).set(0.0),
            Err(e) => log::error!("outbox: cannot read due jobs: {e}"),
        }
        app.outbox_rounds.end(round);
        let next = app.store.next_follow_up_at().ok().flatten().unwrap_or(u64::MAX);
        let most = if app.store.is_shared() { LOOK_AGAIN.0 } else { LOOK_AGAIN.1 };
        let now = app.now_ms();
        // Due already, yet nothing to claim: another node holds it; look again a little later.
        let wait = match next.saturating_sub(now) {
            0 => POLL,
            ms => Duration::from_millis(ms).min(most),
        };
        app.store.outbox_sleeps_until(now.saturating_add(wait.as_millis() as u64));
        app.store.outbox_signal().take(wait);
    }
}

/// `run`, with a panic turned into the job's dead letter: it would panic again on every retry.
fn run_supervised(app: &App, receivers: &Receivers, item: OutboxItem) -> Vec<Command> {
    // Every log line of the job names it (at error level: on whatever the filter lets through).
    let _span = tracing::error_span!("outbox", job = %item.job.key(), visitor = %item.visitor, id = %item.id).entered();
    let mut dead_letter = item.clone();
    panic::catch_unwind(AssertUnwindSafe(|| run(app, receivers, item, app.now_ms()))).unwrap_or_else(|panic| {
        crate::metrics::count(name::OUTBOX_PANICS);
        dead(&mut dead_letter, app.now_ms(), format!("the job panicked: {}", panic_message(&panic)));
        vec![Command::Finish(Box::new(dead_letter))]
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs one due job; returns what to commit, the item with its new state last.
fn run(app: &App, receivers: &Receivers, mut item: OutboxItem, now: u64) -> Vec<Command> {
    // Written before the item's outcome, and after it (a journey's next step: the item must end
    // before another step of its journey can be pending).
    let (mut writes, mut then) = (Vec::new(), Vec::new());
    let result = match item.job.clone() {
        Job::Email { template } => {
            receivers.mailer.deliver(app, &item, &template, now, mail::Buyers::Skip).map(|variant| {
                item.variant = Some(variant);
            })
        }
        Job::Journey { .. } => journey::run(app, receivers, &mut item, now, &mut then),
        Job::ConfirmEmail { email } => receivers.mailer.confirm(app, &item, &email, now),
        Job::TagEvent { tag, at } => match &receivers.webhook {
            Some(webhook) => webhook.deliver(app, &item, &tag, at, now),
            None => Err(Failure::Unwanted("no tag_webhook_url configured".into())),
        },
        Job::Abandoned => abandoned(app, &item, now, receivers.webhook.is_some(), &mut writes),
    };
    match result {
        Ok(()) => {
            crate::metrics::count(name::OUTBOX_DONE);
            item.state = OutboxState::Sent { at: app.now_ms() };
        }
        Err(Failure::Unwanted(reason)) => {
            crate::metrics::count(name::OUTBOX_SKIPPED);
            item.state = OutboxState::Skipped { at: now, reason };
        }
        Err(Failure::Permanent(error)) => dead(&mut item, now, error),
        Err(Failure::Later { until, reason }) => {
            log::info!("outbox: {} ({}) waits: {reason}", item.job.describe(), item.id);
            item.due_at = until.max(now + 1000);
            item.last_error = Some(format!("waiting: {reason}"));
        }
        Err(Failure::Temporary(error)) => {
            item.attempts += 1;
            if item.attempts >= app.config.mail_max_attempts {
                let error = format!("gave up after {} attempts: {error}", item.attempts);
                dead(&mut item, now, error);
            } else {
                crate::metrics::count(name::OUTBOX_RETRIES);
                log::warn!("outbox: {} ({}) will be retried: {error}", item.job.describe(), item.id);
                let backoff =
                    app.config.mail_retry_secs.saturating_mul(1000).saturating_mul(1 << (item.attempts - 1).min(20));
                item.due_at = now + backoff.min(MAX_BACKOFF_MS);
                item.last_error = Some(error);
            }
        }
    }
    writes.push(Command::Finish(Box::new(item)));
    writes.extend(then);
    writes
}

fn dead(item: &mut OutboxItem, now: u64, error: String) {
    crate::metrics::count(name::OUTBOX_DEAD);
    log::error!("outbox: {} ({}) dead-lettered: {error}", item.job.describe(), item.id);
    item.last_error = Some(error.clone());
    item.state = OutboxState::Dead { at: now, error };
}

/// The abandonment check: a shopper who has not bought since the checkout link was offered is
/// tagged `cart_abandoner` (and the tag event queued for the webhook).
fn abandoned(app: &App, item: &OutboxItem, now: u64, webhook: bool, writes: &mut Vec<Command>) -> Result<(), Failure> {
    let profile = app.store.visitor(&item.visitor).map_err(|e| Failure::Temporary(e.to_string()))?;
    let profile: Profile = profile.ok_or_else(|| Failure::Unwanted("the visitor is gone".into()))?;
    if profile.status == Status::Converted {
        return Err(Failure::Unwanted("converted".into()));
    }
    writes.extend(tag(&profile, item, CART_ABANDONER, now, webhook));
    Ok(())
}

/// What adds `tag` to a visitor who lacks it (and queues its event for the webhook, with ads
/// consent).
fn tag(profile: &Profile, item: &OutboxItem, tag: &str, now: u64, webhook: bool) -> Vec<Command> {
    let mut writes = Vec::new();
    if !profile.tags.contains(tag) {
        if webhook && profile.consent.as_ref().is_some_and(|c| c.ads) {
            let job = Job::TagEvent { tag: tag.into(), at: now };
            writes.push(Command::Enqueue(Box::new(OutboxItem::new(
                profile.id,
                item.conversation,
                job,
                &item.locale,
                now,
                now,
            ))));
        }
        writes.push(Command::Visitor { visitor: profile.id, change: Change::Tags(vec![tag.into()]) });
    }
    writes
}
