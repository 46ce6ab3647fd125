//! A conversation: where it came from, the question it waits on, and its transcript's entries.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, VisitorId};
use crate::intents::How;

/// The question a conversation is waiting for an answer to, and the rest of its flow.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    /// The slot asked (by id, so a reload of the intents keeps it).
    pub slot: String,
    /// Bad answers so far.
    pub tries: u32,
    /// Slots still to ask after this one.
    pub then: Vec<String>,
    /// The intent that answers when the flow is complete.
    pub done: Option<String>,
    /// The intent that asked.
    pub intent: String,
}

/// Where a conversation came from, as the widget reported it in `hello`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Source {
    pub campaign: Option<String>,
    pub page: Option<String>,
    pub referrer: Option<String>,
    #[serde(default)]
    pub utm: BTreeMap<String, String>,
    #[serde(default)]
    pub click_ids: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Conversation {
    pub id: ConversationId,
    pub visitor: VisitorId,
    pub started_at: u64,
    /// When the last turn happened: not stored with the conversation (which is written only when
    /// it changes) but read from its last transcript turn when loaded.
    #[serde(skip)]
    pub last_at: u64,
    pub locale: String,
    pub source: Source,
    #[serde(default)]
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Speaker {
    Shopper,
    Bot,
    /// A person answering from the admin after a handoff.
    Agent,
}

/// One line of a transcript: a shopper message or a bot reply.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    pub at: u64,
    pub from: Speaker,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<How>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f32>,
    /// Which reply variant was shown (for A/B comparisons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<u32>,
}

impl Entry {
    /// A line someone wrote, with nothing routed about it (a person's answer, or a shopper's
    /// message to the person who has the chat).
    pub fn said(from: Speaker, text: &str, at: u64) -> Entry {
        Entry { at, from, text: text.to_string(), intent: None, how: None, confidence: None, variant: None }
    }
}
