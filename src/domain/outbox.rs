//! Outbox jobs: what waits for its time (follow-up emails, the cart-abandonment check, tag
//! events for the webhook), and the state each is in.

use serde::{Deserialize, Serialize};

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
    /// For a sent email: which of its template's variants went out (A/B tests).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<u32>,
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
    /// Double opt-in: asks the owner of an address typed in the chat to confirm it.
    ConfirmEmail { email: String },
    /// The next step of a visitor's run of a journey (`intents/journeys/`), entered at
    /// `entered_at` with `orders` orders so far; `email` is the template the step sent.
    Journey {
        journey: String,
        step: u32,
        entered_at: u64,
        orders: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        email: Option<String>,
    },
}

impl Job {
    /// One pending job per visitor and key: scheduling the same again while it waits is a no-op.
    pub fn key(&self) -> String {
        match self {
            Job::Email { template } => format!("email:{template}"),
            Job::Abandoned => "abandoned".into(),
            Job::TagEvent { tag, .. } => format!("tag:{tag}"),
            Job::ConfirmEmail { email } => format!("confirm:{email}"),
            // One run per visitor and journey at a time: every step has the journey's key.
            Job::Journey { journey, .. } => format!("journey:{journey}"),
        }
    }

    /// The template of a marketing email this job sends (or sent): what the daily cap counts and
    /// the email statistics are about.
    pub fn marketing_email(&self) -> Option<&str> {
        match self {
            Job::Email { template } | Job::Journey { email: Some(template), .. } => Some(template),
            _ => None,
        }
    }

    /// What the admin's queue shows.
    pub fn describe(&self) -> String {
        match self {
            Job::Email { template } => format!("email {template}"),
            Job::Abandoned => "cart abandonment check".into(),
            Job::TagEvent { tag, .. } => format!("webhook: tag {tag}"),
            Job::ConfirmEmail { .. } => "email: please confirm your address".into(),
            Job::Journey { journey, step, email, .. } => match email {
                Some(email) => format!("journey {journey}, step {}: email {email}", step + 1),
                None => format!("journey {journey}, step {}", step + 1),
            },
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
            variant: None,
        }
    }
}
