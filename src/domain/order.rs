//! An order the shop reported.

use serde::{Deserialize, Serialize};

use crate::ids::{ConversationId, VisitorId};

/// An order the shop reported, attributed to a visitor, conversation, campaign and the reply
/// variants the visitor was shown.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Order {
    pub id: String,
    pub visitor: VisitorId,
    pub conversation: Option<ConversationId>,
    pub campaign: Option<String>,
    /// (intent, variant) pairs shown in the conversation.
    pub variants: Vec<(String, u32)>,
    pub value: f64,
    pub currency: String,
    pub at: u64,
}
