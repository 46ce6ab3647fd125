//! What the marketer's pages show, read from the store: the funnel per campaign and per reply
//! variant. Plain functions over `Store`, run on the blocking pool.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::domain::{OutboxItem, OutboxState, Speaker, Status};
use crate::ids::VisitorId;
use crate::store::{EmailEvent, Store, StoreError};
use crate::triggers::Trigger;

/// Visitors of one campaign by how far they got, and the orders attributed to it.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct CampaignRow {
    pub campaign: String,
    pub visitors: u64,
    pub qualified: u64,
    pub checkout_clicked: u64,
    pub converted: u64,
    pub orders: u64,
    pub revenue: f64,
    /// Ad spend reported for the campaign (`POST /api/spend`, `nudge spend import`).
    pub spend: f64,
    /// Revenue divided by spend (`2.0`: every unit spent brought two), spend per qualified lead
    /// and per converted visitor; absent without spend, or when spend and orders are in
    /// different currencies (Nudge converts none).
    pub roas: Option<f64>,
    pub cost_per_lead: Option<f64>,
    pub cost_per_conversion: Option<f64>,
    /// The currency of spend and revenue, when they share one.
    pub currency: Option<String>,
}

/// Visitors who were shown one variant of a reply, and how many of them bought.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VariantRow {
    pub intent: String,
    pub variant: u32,
    pub visitors: u64,
    pub converted: u64,
    /// The probability that this variant converts best among its intent's (`admin::ab`).
    pub probability_best: f64,
    /// Declared past `ab::MIN_SAMPLE` visitors per variant and `ab::WINNER`.
    pub winner: bool,
    /// The 95 % credible interval of the conversion rate.
    pub interval: (f64, f64),
}

/// One variant of a follow-up email template: how many were sent, opened (the pixel; inflated
/// by mail clients that load images ahead), clicked, and how many of their visitors bought
/// afterwards, and for an A/B test the probability that it converts best.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EmailRow {
    pub email: String,
    pub variant: u32,
    pub sent: u64,
    pub opened: u64,
    pub clicked: u64,
    pub converted: u64,
    pub revenue: f64,
    pub probability_best: f64,
    pub winner: bool,
    /// The 95 % credible interval of the conversion rate (converted / sent).
    pub interval: (f64, f64),
}

/// One teaser variant of a proactive trigger: how often the widget showed it, how many
/// shoppers chatted through it (engaged), and how many of those were qualified and converted
/// afterwards; for an A/B test of teasers, the probability that it engages best.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TriggerRow {
    pub trigger: String,
    pub variant: u32,
    /// The English teaser (or the first language's), when the trigger still exists.
    pub teaser: Option<String>,
    pub shown: u64,
    pub engaged: u64,
    pub qualified: u64,
    pub converted: u64,
    pub probability_best: f64,
    pub winner: bool,
    /// The 95 % credible interval of the engagement rate (engaged / shown).
    pub interval: (f64, f64),
}

/// Orders and revenue of one day (UTC).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DayRow {
    pub date: String,
    pub orders: u64,
    pub revenue: f64,
}

/// Days shown, the latest ones with orders.
const DAYS: usize = 60;

#[derive(Debug, Default, serde::Serialize)]
pub struct Funnel {
    pub campaigns: Vec<CampaignRow>,
    pub daily: Vec<DayRow>,
    /// Follow-up emails by template.
    pub emails: Vec<EmailRow>,
    /// Only intents whose visitors saw more than one variant (the A/B tests).
    pub variants: Vec<VariantRow>,
    /// Every trigger of the pack (and any shown before that is gone), by teaser variant.
    pub triggers: Vec<TriggerRow>,
}

pub const NO_CAMPAIGN: &str = "(none)";

/// Reads every visitor, order, spend row and transcript once; `triggers` are the pack's.
pub fn funnel(store: &Store, triggers: &[Trigger]) -> Result<Funnel, StoreError> {
    let mut campaigns: BTreeMap<String, CampaignRow> = BTreeMap::new();
    let mut currencies: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut daily: BTreeMap<String, DayRow> = BTreeMap::new();
    let mut status: HashMap<VisitorId, Status> = HashMap::new();
    let mut by_trigger = trigger_rows(store, triggers)?;
    for profile in store.visitors() {
        let profile = profile?;
        for (trigger, engaged) in &profile.triggers {
            let row = by_trigger.entry((trigger.clone(), engaged.variant)).or_insert_with(|| TriggerRow {
                trigger: trigger.clone(),
                variant: engaged.variant,
                ..Default::default()
            });
            row.engaged += 1;
            row.qualified += u64::from(profile.reached_since(Status::Qualified, engaged.at));
            row.converted += u64::from(profile.reached_since(Status::Converted, engaged.at));
        }
        let name = profile.campaign.clone().unwrap_or_else(|| NO_CAMPAIGN.into());
        let row = campaigns.entry(name.clone()).or_insert_with(|| CampaignRow { campaign: name, ..Default::default() });
        row.visitors += 1;
        row.qualified += u64::from(profile.status >= Status::Qualified);
        row.checkout_clicked += u64::from(profile.status >= Status::CheckoutClicked);
        row.converted += u64::from(profile.status == Status::Converted);
        for id in &profile.orders {
            if let Some(order) = store.order(id)? {
                // Revenue goes to the campaign the order was attributed to.
                let name = order.campaign.clone().unwrap_or_else(|| NO_CAMPAIGN.into());
                let row = campaigns
                    .entry(name.clone())
                    .or_insert_with(|| CampaignRow { campaign: name, ..Default::default() });
                row.orders += 1;
                row.revenue += order.value;
                let date = crate::export::rfc3339(order.at).get(..10).unwrap_or_default().to_string();
                let day = daily.entry(date.clone()).or_insert_with(|| DayRow { date, ..Default::default() });
                (day.orders, day.revenue) = (day.orders + 1, day.revenue + order.value);
                currencies.entry(row.campaign.clone()).or_default().insert(order.currency.clone());
            }
        }
        status.insert(profile.id, profile.status);
    }
    for spend in store.spend() {
        let spend = spend?;
        let name = spend.campaign.clone();
        let row = campaigns.entry(name.clone()).or_insert_with(|| CampaignRow { campaign: name, ..Default::default() });
        row.spend += spend.amount;
        currencies.entry(row.campaign.clone()).or_default().insert(spend.currency);
    }
    for row in campaigns.values_mut() {
        let one = currencies.get(&row.campaign).filter(|c| c.len() == 1).and_then(|c| c.first().cloned());
        row.currency = one;
        if row.spend > 0.0 && row.currency.is_some() {
            let per = |n: u64| (n > 0).then(|| row.spend / n as f64);
            row.roas = Some(row.revenue / row.spend);
            row.cost_per_lead = per(row.qualified);
            row.cost_per_conversion = per(row.converted);
        }
    }
    let mut shown: HashSet<(String, u32, VisitorId)> = HashSet::new();
    for conversation in store.conversations() {
        let conversation = conversation?;
        for entry in store.transcript(&conversation.id)? {
            if let (Speaker::Bot, Some(intent), Some(variant)) = (entry.from, entry.intent, entry.variant) {
                shown.insert((intent, variant, conversation.visitor));
            }
        }
    }
    let mut variants: BTreeMap<(String, u32), VariantRow> = BTreeMap::new();
    for (intent, variant, visitor) in shown {
        let row = variants.entry((intent.clone(), variant)).or_insert(VariantRow {
            intent,
            variant,
            visitors: 0,
            converted: 0,
            probability_best: 0.0,
            winner: false,
            interval: (0.0, 1.0),
        });
        row.visitors += 1;
        row.converted += u64::from(status.get(&visitor) == Some(&Status::Converted));
    }
    let mut per_intent: HashMap<&str, usize> = HashMap::new();
    for (intent, _) in variants.keys() {
        *per_intent.entry(intent).or_default() += 1;
    }
    let tested: HashSet<String> = per_intent.into_iter().filter(|(_, n)| *n > 1).map(|(i, _)| i.to_string()).collect();
    let mut variants: Vec<VariantRow> = variants.into_values().filter(|row| tested.contains(&row.intent)).collect();
    // Rows are sorted by intent (and email): each one's variants are one test.
    for test in variants.chunk_by_mut(|a, b| a.intent == b.intent) {
        let arms: Vec<(u64, u64)> = test.iter().map(|row| (row.converted, row.visitors)).collect();
        for (row, judged) in test.iter_mut().zip(judge(&arms)) {
            (row.probability_best, row.winner, row.interval) =
                (judged.probability_best, judged.winner, judged.interval);
        }
    }
    let mut emails = email_rows(store, None)?;
    for test in emails.chunk_by_mut(|a, b| a.email == b.email) {
        let arms: Vec<(u64, u64)> = test.iter().map(|row| (row.converted, row.sent)).collect();
        for (row, judged) in test.iter_mut().zip(judge(&arms)) {
            (row.probability_best, row.winner, row.interval) =
                (judged.probability_best, judged.winner, judged.interval);
        }
    }
    let mut triggers: Vec<TriggerRow> = by_trigger.into_values().collect();
    for test in triggers.chunk_by_mut(|a, b| a.trigger == b.trigger) {
        // Teasers are judged by engagement: a conversion is too rare to tell teasers apart.
        let arms: Vec<(u64, u64)> = test.iter().map(|row| (row.engaged.min(row.shown), row.shown)).collect();
        for (row, judged) in test.iter_mut().zip(judge(&arms)) {
            (row.probability_best, row.winner, row.interval) =
                (judged.probability_best, judged.winner, judged.interval);
        }
    }
    let mut daily: Vec<DayRow> = daily.into_values().collect();
    daily.drain(..daily.len().saturating_sub(DAYS));
    Ok(Funnel { campaigns: campaigns.into_values().collect(), daily, emails, variants, triggers })
}

/// A row for each teaser variant of the pack's triggers and each one counted as shown.
fn trigger_rows(store: &Store, triggers: &[Trigger]) -> Result<BTreeMap<(String, u32), TriggerRow>, StoreError> {
    let mut rows = BTreeMap::new();
    for t in triggers {
        let teasers = t.teaser.get("en").or_else(|| t.teaser.values().next());
        for variant in 0..t.variants() as u32 {
            let teaser = teasers.and_then(|v| v.get(variant as usize)).cloned();
            let row = TriggerRow { trigger: t.id.clone(), variant, teaser, ..Default::default() };
            rows.insert((t.id.clone(), variant), row);
        }
    }
    for ((trigger, variant), shown) in store.triggers_shown()? {
        let row = rows.entry((trigger.clone(), variant)).or_insert_with(|| TriggerRow {
            trigger,
            variant,
            ..Default::default()
        });
        row.shown = shown;
    }
    Ok(rows)
}

/// The sent follow-ups by template and variant (of `only`, when given), sorted, with what their
/// visitors did and bought afterwards.
fn email_rows(store: &Store, only: Option<&str>) -> Result<Vec<EmailRow>, StoreError> {
    let mut rows: BTreeMap<(String, u32), EmailRow> = BTreeMap::new();
    let mut orders = Orders::default();
    for item in store.follow_ups() {
        let item = item?;
        let (Some(template), OutboxState::Sent { at }) = (item.job.marketing_email(), &item.state) else { continue };
        if only.is_some_and(|t| t != template) {
            continue;
        }
        let variant = item.variant.unwrap_or(0);
        let row = rows.entry((template.to_string(), variant)).or_insert_with(|| EmailRow {
            email: template.to_string(),
            variant,
            ..Default::default()
        });
        row.count(store, &item, *at, &mut orders)?;
    }
    Ok(rows.into_values().collect())
}

/// The orders of the visitors an email went to (value and time), read once per visitor.
#[derive(Default)]
struct Orders(HashMap<VisitorId, Vec<(u64, f64)>>);

impl Orders {
    /// The values of `visitor`'s orders at or after `at`.
    fn since(&mut self, store: &Store, visitor: VisitorId, at: u64) -> Result<Vec<f64>, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.0.entry(visitor) {
            let mut orders = Vec::new();
            for id in store.visitor(&visitor)?.iter().flat_map(|p| &p.orders) {
                orders.extend(store.order(id)?.map(|o| (o.at, o.value)));
            }
            slot.insert(orders);
        }
        Ok(self.0[&visitor].iter().filter(|(when, _)| *when >= at).map(|(_, v)| *v).collect())
    }
}

impl EmailRow {
    /// Counts one email sent at `at`: its open and click, and whether its visitor bought after.
    fn count(&mut self, store: &Store, item: &OutboxItem, at: u64, orders: &mut Orders) -> Result<(), StoreError> {
        self.sent += 1;
        self.opened += u64::from(store.email_event(&item.id, EmailEvent::Opened)?);
        self.clicked += u64::from(store.email_event(&item.id, EmailEvent::Clicked)?);
        let after = orders.since(store, item.visitor, at)?;
        self.converted += u64::from(!after.is_empty());
        self.revenue += after.iter().sum::<f64>();
        Ok(())
    }
}

/// A journey as the admin shows it: who entered, who is on it now, and each step.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JourneyRow {
    pub journey: String,
    pub description: String,
    pub entered: u64,
    /// Runs waiting for their next step.
    pub active: u64,
    pub steps: Vec<StepRow>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StepRow {
    pub step: u32,
    /// `email cart_reminder`, `tag vip`.
    pub action: String,
    pub after: String,
    /// Runs that got to this step (waiting, done or ended there).
    pub reached: u64,
    /// Runs that ended at this step instead of running it (ordered, unsubscribed, ...).
    pub ended: u64,
    pub sent: u64,
    pub opened: u64,
    pub clicked: u64,
    pub converted: u64,
    pub revenue: f64,
    /// Per variant of the step's email, with the probability that it is best.
    pub variants: Vec<EmailRow>,
}

/// Every journey of `journeys`, counted from the profiles and the outbox.
pub fn journeys(store: &Store, journeys: &crate::journeys::Journeys) -> Result<Vec<JourneyRow>, StoreError> {
    let mut rows: Vec<JourneyRow> = journeys
        .journeys
        .iter()
        .map(|j| JourneyRow {
            journey: j.id.clone(),
            description: j.description.clone(),
            entered: 0,
            active: 0,
            steps: j
                .steps
                .iter()
                .zip(0..)
                .map(|(s, step)| StepRow {
                    step,
                    action: match &s.action {
                        crate::journeys::Action::Email(t) => format!("email {t}"),
                        crate::journeys::Action::Tag(t) => format!("tag {t}"),
                    },
                    after: crate::journeys::show_duration(s.after),
                    reached: 0,
                    ended: 0,
                    sent: 0,
                    opened: 0,
                    clicked: 0,
                    converted: 0,
                    revenue: 0.0,
                    variants: Vec::new(),
                })
                .collect(),
        })
        .collect();
    for profile in store.visitors() {
        let profile = profile?;
        for row in rows.iter_mut() {
            row.entered += u64::from(profile.journeys.contains_key(&row.journey));
        }
    }
    let mut orders = Orders::default();
    for item in store.follow_ups() {
        let item = item?;
        let crate::domain::Job::Journey { journey, step, email, .. } = &item.job else { continue };
        let Some(row) = rows.iter_mut().find(|r| &r.journey == journey) else { continue };
        row.active += u64::from(item.state == OutboxState::Pending);
        let Some(step_row) = row.steps.get_mut(*step as usize) else { continue };
        step_row.reached += 1;
        match (&item.state, email) {
            (OutboxState::Sent { at }, Some(template)) => {
                let variant = item.variant.unwrap_or(0);
                let arm = match step_row.variants.iter_mut().position(|v| v.variant == variant) {
                    Some(i) => &mut step_row.variants[i],
                    None => {
                        step_row.variants.push(EmailRow { email: template.clone(), variant, ..Default::default() });
                        step_row.variants.last_mut().expect("just pushed")
                    }
                };
                arm.count(store, &item, *at, &mut orders)?;
            }
            (OutboxState::Skipped { reason, .. }, _) if reason.starts_with(LEFT) => step_row.ended += 1,
            (OutboxState::Cancelled { .. }, _) => step_row.ended += 1,
            _ => {}
        }
    }
    for step in rows.iter_mut().flat_map(|r| r.steps.iter_mut()) {
        step.variants.sort_by_key(|v| v.variant);
        let arms: Vec<(u64, u64)> = step.variants.iter().map(|v| (v.converted, v.sent)).collect();
        for (variant, judged) in step.variants.iter_mut().zip(judge(&arms)) {
            (variant.probability_best, variant.winner, variant.interval) =
                (judged.probability_best, judged.winner, judged.interval);
        }
        for v in &step.variants {
            (step.sent, step.opened, step.clicked) =
                (step.sent + v.sent, step.opened + v.opened, step.clicked + v.clicked);
            (step.converted, step.revenue) = (step.converted + v.converted, step.revenue + v.revenue);
        }
    }
    Ok(rows)
}

/// How the reason of a journey step that ended its run begins (`outbox/journey.rs`).
pub const LEFT: &str = "left the journey";

/// A segment and how many visitors are in it now.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SegmentRow {
    pub segment: String,
    pub description: String,
    pub size: u64,
}

pub fn segments(
    store: &Store,
    journeys: &crate::journeys::Journeys,
    at: crate::journeys::Moment,
) -> Result<Vec<SegmentRow>, StoreError> {
    let mut rows: Vec<SegmentRow> = journeys
        .segments
        .iter()
        .map(|s| SegmentRow { segment: s.id.clone(), description: s.description.clone(), size: 0 })
        .collect();
    for profile in store.visitors() {
        let profile = profile?;
        for (row, segment) in rows.iter_mut().zip(&journeys.segments) {
            row.size += u64::from(segment.contains(&profile, at));
        }
    }
    Ok(rows)
}

pub fn email_arms(store: &Store, template: &str, variants: usize) -> Result<Vec<(u64, u64)>, StoreError> {
    let mut arms = vec![(0u64, 0u64); variants];
    for row in email_rows(store, Some(template))? {
        if let Some(arm) = arms.get_mut(row.variant as usize) {
            *arm = (row.converted, row.sent);
        }
    }
    Ok(arms)
}

/// Each arm's probability of being best, and whether it is the declared winner.
/// Each arm's probability of being best, whether it is the declared winner, and the 95 %
/// interval of its conversion rate.
fn judge(arms: &[(u64, u64)]) -> Vec<Judged> {
    let probabilities = crate::ab::probability_best(arms);
    let winner = crate::ab::winner(arms, &probabilities);
    probabilities
        .into_iter()
        .zip(arms)
        .enumerate()
        .map(|(i, (p, &(s, n)))| Judged {
            probability_best: p,
            winner: winner == Some(i),
            interval: crate::ab::interval(s, n),
        })
        .collect()
}

struct Judged {
    probability_best: f64,
    winner: bool,
    interval: (f64, f64),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, Job, Order};
    use crate::ids::ConversationId;
    use crate::store::Command;

    /// 120 visitors per variant got the email at t = 1000; `buyers[v]` of them bought after.
    fn sent(store: &Store, buyers: [u64; 2]) {
        let mut commands = Vec::new();
        for variant in 0..2u32 {
            for i in 0..120u64 {
                let now = 1 + u64::from(variant) * 1000 + i;
                let visitor = VisitorId::mint(now);
                commands.push(Command::Visitor { visitor, change: Change::Create { at: 10, locale: "en".into() } });
                let job = Job::Email { template: "your_selection".into() };
                let mut item = OutboxItem::new(visitor, ConversationId::mint(now), job, "en", 10, 1000);
                commands.push(Command::Enqueue(Box::new(item.clone())));
                (item.state, item.variant) = (OutboxState::Sent { at: 1000 }, Some(variant));
                commands.push(Command::Finish(Box::new(item)));
                if i < buyers[variant as usize] {
                    let id = format!("order-{variant}-{i}");
                    commands.push(Command::Visitor { visitor, change: Change::Order { id: id.clone(), at: 2000 } });
                    commands.push(Command::RecordOrder(Box::new(Order {
                        id,
                        visitor,
                        conversation: None,
                        campaign: None,
                        variants: Vec::new(),
                        value: 50.0,
                        currency: "EUR".into(),
                        at: 2000,
                    })));
                }
            }
        }
        store.commit_blocking(commands).expect("commit");
    }

    #[test]
    fn an_email_variant_that_converts_more_wins_its_test() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        sent(&store, [5, 30]);
        let arms = email_arms(&store, "your_selection", 2).expect("arms");
        assert_eq!(arms, [(5, 120), (30, 120)]);
        assert_eq!(crate::ab::winner(&arms, &crate::ab::probability_best(&arms)), Some(1));
        let funnel = funnel(&store, &[]).expect("funnel");
        let rows: Vec<(u32, u64, u64, bool)> =
            funnel.emails.iter().map(|r| (r.variant, r.sent, r.converted, r.winner)).collect();
        assert_eq!(rows, [(0, 120, 5, false), (1, 120, 30, true)]);
        assert!((funnel.emails[1].revenue - 1500.0).abs() < 1e-9);
    }

    #[test]
    fn a_trigger_counts_who_was_qualified_and_converted_after_chatting_through_it() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let mut commands: Vec<Command> =
            (0..3).map(|_| Command::TriggerShown { trigger: "t".into(), variant: 1 }).collect();
        // Qualified before the trigger; qualified after it; converted after it.
        for (qualified_at, converted_at) in [(Some(50), None), (Some(150), None), (Some(150), Some(300))] {
            let visitor = VisitorId::mint(0);
            let change = |change| Command::Visitor { visitor, change };
            commands.push(change(Change::Create { at: 10, locale: "en".into() }));
            let engaged = crate::domain::Engaged { variant: 1, at: 100 };
            commands.push(change(Change::Triggered { trigger: "t".into(), engaged }));
            commands.extend(qualified_at.map(|at| change(Change::Status { status: Status::Qualified, at })));
            commands.extend(converted_at.map(|at| change(Change::Status { status: Status::Converted, at })));
        }
        store.commit_blocking(commands).expect("commit");
        let funnel = funnel(&store, &[]).expect("funnel");
        let rows: Vec<(&str, u32, u64, u64, u64, u64)> = funnel
            .triggers
            .iter()
            .map(|r| (r.trigger.as_str(), r.variant, r.shown, r.engaged, r.qualified, r.converted))
            .collect();
        assert_eq!(rows, [("t", 1, 3, 3, 2, 1)]);
    }
}
