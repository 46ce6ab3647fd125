//! What the marketer's pages show, read from the store: the funnel per campaign and per reply
//! variant. Plain functions over `Store`, run on the blocking pool.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::domain::{Job, OutboxState, Speaker, Status};
use crate::ids::VisitorId;
use crate::store::{EmailEvent, Store, StoreError};

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
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Funnel {
    pub campaigns: Vec<CampaignRow>,
    /// Follow-up emails by template.
    pub emails: Vec<EmailRow>,
    /// Only intents whose visitors saw more than one variant (the A/B tests).
    pub variants: Vec<VariantRow>,
}

pub const NO_CAMPAIGN: &str = "(none)";

/// Reads every visitor, order, spend row and transcript once.
pub fn funnel(store: &Store) -> Result<Funnel, StoreError> {
    let mut campaigns: BTreeMap<String, CampaignRow> = BTreeMap::new();
    let mut currencies: HashMap<String, BTreeSet<String>> = HashMap::new();
    let mut status: HashMap<VisitorId, Status> = HashMap::new();
    for profile in store.visitors() {
        let profile = profile?;
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
        for (row, (p, winner)) in test.iter_mut().zip(judge(&arms)) {
            (row.probability_best, row.winner) = (p, winner);
        }
    }
    let mut emails = email_rows(store, None)?;
    for test in emails.chunk_by_mut(|a, b| a.email == b.email) {
        let arms: Vec<(u64, u64)> = test.iter().map(|row| (row.converted, row.sent)).collect();
        for (row, (p, winner)) in test.iter_mut().zip(judge(&arms)) {
            (row.probability_best, row.winner) = (p, winner);
        }
    }
    Ok(Funnel { campaigns: campaigns.into_values().collect(), emails, variants })
}

/// The sent follow-ups by template and variant (of `only`, when given), sorted, with what their
/// visitors did and bought afterwards.
fn email_rows(store: &Store, only: Option<&str>) -> Result<Vec<EmailRow>, StoreError> {
    let mut rows: BTreeMap<(String, u32), EmailRow> = BTreeMap::new();
    // Each emailed visitor's orders, (when, value), read once.
    let mut bought: HashMap<VisitorId, Vec<(u64, f64)>> = HashMap::new();
    for item in store.follow_ups() {
        let item = item?;
        let (Job::Email { template }, OutboxState::Sent { at }) = (&item.job, &item.state) else { continue };
        if only.is_some_and(|t| t != template) {
            continue;
        }
        let variant = item.variant.unwrap_or(0);
        let row = rows.entry((template.clone(), variant)).or_insert_with(|| EmailRow {
            email: template.clone(),
            variant,
            ..Default::default()
        });
        row.sent += 1;
        row.opened += u64::from(store.email_event(&item.id, EmailEvent::Opened)?);
        row.clicked += u64::from(store.email_event(&item.id, EmailEvent::Clicked)?);
        if let std::collections::hash_map::Entry::Vacant(slot) = bought.entry(item.visitor) {
            let mut orders = Vec::new();
            for id in store.visitor(&item.visitor)?.iter().flat_map(|p| &p.orders) {
                orders.extend(store.order(id)?.map(|o| (o.at, o.value)));
            }
            slot.insert(orders);
        }
        let after: Vec<f64> = bought[&item.visitor].iter().filter(|(when, _)| when >= at).map(|(_, v)| *v).collect();
        row.converted += u64::from(!after.is_empty());
        row.revenue += after.iter().sum::<f64>();
    }
    Ok(rows.into_values().collect())
}

/// For `auto_winner`: per variant of the email `template`, (visitors who bought after it, sent).
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
fn judge(arms: &[(u64, u64)]) -> Vec<(f64, bool)> {
    let probabilities = crate::ab::probability_best(arms);
    let winner = crate::ab::winner(arms, &probabilities);
    probabilities.into_iter().enumerate().map(|(i, p)| (p, winner == Some(i))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Change, Order, OutboxItem};
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
                commands.push(Command::Enqueue(item.clone()));
                (item.state, item.variant) = (OutboxState::Sent { at: 1000 }, Some(variant));
                commands.push(Command::Finish(item));
                if i < buyers[variant as usize] {
                    let id = format!("order-{variant}-{i}");
                    commands.push(Command::Visitor { visitor, change: Change::Order { id: id.clone(), at: 2000 } });
                    commands.push(Command::RecordOrder(Order {
                        id,
                        visitor,
                        conversation: None,
                        campaign: None,
                        variants: Vec::new(),
                        value: 50.0,
                        currency: "EUR".into(),
                        at: 2000,
                    }));
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
        let funnel = funnel(&store).expect("funnel");
        let rows: Vec<(u32, u64, u64, bool)> =
            funnel.emails.iter().map(|r| (r.variant, r.sent, r.converted, r.winner)).collect();
        assert_eq!(rows, [(0, 120, 5, false), (1, 120, 30, true)]);
        assert!((funnel.emails[1].revenue - 1500.0).abs() < 1e-9);
    }
}
