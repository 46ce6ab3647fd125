//! The outbox: jobs waiting for their time (follow-up emails, the cart-abandonment check, tag
//! events for the webhook), kept durably so that none is lost while a receiver is down and none
//! runs after it was cancelled. The worker (`crate::outbox`) reads due items and writes their
//! outcome back through the writer thread, which keeps the indexes in step.

use serde::{Deserialize, Serialize};

use super::{Result, Trees, decode, encode};
use crate::ids::{ConversationId, OutboxId, VisitorId};

/// One job for one visitor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OutboxItem {
    pub id: OutboxId,
    pub visitor: VisitorId,
    pub conversation: ConversationId,
    pub job: Job,
    pub locale: String,
    pub created_at: u64,
    /// When it is (next) due; for a sent or ended item, when it was last due.
    pub due_at: u64,
    /// Delivery attempts that failed.
    pub attempts: u32,
    pub state: OutboxState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Job {
    /// A follow-up email from the template with this id.
    Email { template: String },
    /// When due: a shopper who was offered a checkout link and has not bought is tagged
    /// `cart_abandoner`.
    Abandoned,
    /// A tag event for the retargeting webhook.
    TagEvent { tag: String, at: u64 },
}

impl Job {
    /// One pending job per visitor and key: scheduling the same again while it waits is a no-op.
    fn key(&self) -> String {
        match self {
            Job::Email { template } => format!("email:{template}"),
            Job::Abandoned => "abandoned".into(),
            Job::TagEvent { tag, .. } => format!("tag:{tag}"),
        }
    }

    /// What the admin's queue shows.
    pub fn describe(&self) -> String {
        match self {
            Job::Email { template } => format!("email {template}"),
            Job::Abandoned => "cart abandonment check".into(),
            Job::TagEvent { tag, .. } => format!("webhook: tag {tag}"),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum OutboxState {
    Pending,
    Sent {
        at: u64,
    },
    /// Not wanted any more at send time (converted, unsubscribed, no consent, no address).
    Skipped {
        at: u64,
        reason: String,
    },
    /// Cancelled before it was due (conversion, unsubscribe).
    Cancelled {
        at: u64,
        reason: String,
    },
    /// A permanent SMTP error, or too many temporary ones.
    Dead {
        at: u64,
        error: String,
    },
}

impl OutboxState {
    pub fn name(&self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent { .. } => "sent",
            OutboxState::Skipped { .. } => "skipped",
            OutboxState::Cancelled { .. } => "cancelled",
            OutboxState::Dead { .. } => "dead",
        }
    }
}

impl OutboxItem {
    /// A job for the visitor of `conversation`, in its language, due at `due`.
    pub fn schedule(conversation: &super::Conversation, job: Job, now: u64, due: u64) -> Self {
        OutboxItem::new(conversation.visitor, conversation.id, job, &conversation.locale, now, due)
    }

    pub fn new(
        visitor: VisitorId,
        conversation: ConversationId,
        job: Job,
        locale: &str,
        now: u64,
        due_at: u64,
    ) -> Self {
        OutboxItem {
            id: OutboxId::mint(now),
            visitor,
            conversation,
            job,
            locale: locale.into(),
            created_at: now,
            due_at,
            attempts: 0,
            state: OutboxState::Pending,
            last_error: None,
        }
    }
}

/// `outbox_due` key: due time (ms, big-endian) then id, so a range scan finds what is due.
pub(super) fn due_key(item: &OutboxItem) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..8].copy_from_slice(&item.due_at.to_be_bytes());
    key[8..].copy_from_slice(item.id.as_bytes());
    key
}

/// `outbox_pending` key: one pending job per visitor and `Job::key`.
fn pending_key(visitor: &VisitorId, job: &Job) -> Vec<u8> {
    let mut key = visitor.as_bytes().to_vec();
    key.extend_from_slice(job.key().as_bytes());
    key
}

/// Applies one outbox write (on the writer thread, the only writer, so the read of the old
/// value cannot race). A new item is dropped when the visitor already has the same follow-up
/// pending; an ended item (sent, skipped, cancelled, dead) only changes to `sent` (the mail
/// worker may finish a delivery that a cancel raced with), so nothing cancelled comes back.
pub(super) fn apply(trees: &Trees, item: &OutboxItem) -> Result<()> {
    let pending = pending_key(&item.visitor, &item.job);
    match trees.outbox.get(item.id.as_bytes())? {
        None if item.state == OutboxState::Pending && trees.outbox_pending.contains_key(&pending)? => return Ok(()),
        None => {}
        Some(old) => {
            let old: OutboxItem = decode("outbox", &old)?;
            if old.state != OutboxState::Pending && !matches!(item.state, OutboxState::Sent { .. }) {
                return Ok(());
            }
            trees.outbox_due.remove(due_key(&old))?;
        }
    }
    if item.state == OutboxState::Pending {
        trees.outbox_due.insert(due_key(item), &[])?;
        trees.outbox_pending.insert(pending, item.id.as_bytes())?;
    } else if trees.outbox_pending.get(&pending)?.is_some_and(|id| id == item.id.as_bytes()) {
        trees.outbox_pending.remove(pending)?;
    }
    trees.outbox.insert(item.id.as_bytes(), encode(item))?;
    Ok(())
}

/// Cancels a visitor's pending follow-ups: emails and the abandonment check. Tag events record
/// what already happened and still go out.
pub(super) fn cancel(trees: &Trees, visitor: &VisitorId, reason: &str, now: u64) -> Result<()> {
    let ids: Vec<_> = trees.outbox_pending.scan_prefix(visitor.as_bytes()).values().collect::<sled::Result<_>>()?;
    for id in ids {
        if let Some(raw) = trees.outbox.get(&id)? {
            let mut item: OutboxItem = decode("outbox", &raw)?;
            if matches!(item.job, Job::TagEvent { .. }) {
                continue;
            }
            item.state = OutboxState::Cancelled { at: now, reason: reason.into() };
            apply(trees, &item)?;
        }
    }
    Ok(())
}

/// Removes every follow-up of a visitor, whatever its state (erasure).
pub(super) fn remove_visitor(trees: &Trees, visitor: &VisitorId) -> Result<()> {
    let mut items = Vec::new();
    for raw in trees.outbox.iter().values() {
        let item: OutboxItem = decode("outbox", &raw?)?;
        if item.visitor == *visitor {
            items.push(item);
        }
    }
    for item in items {
        trees.outbox_due.remove(due_key(&item))?;
        trees.outbox_pending.remove(pending_key(&item.visitor, &item.job))?;
        trees.outbox.remove(item.id.as_bytes())?;
    }
    Ok(())
}
