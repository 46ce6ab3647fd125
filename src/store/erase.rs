//! Erasure and expiry, applied on the writer thread. An erased visitor leaves a tombstone (id and
//! time, nothing personal) so that a chat still open on that visitor cannot write it back; their
//! profile, email links, conversations, transcripts and follow-ups are removed. Orders stay (the
//! shop's records), keyed by a visitor id that no longer leads anywhere.

use super::{Profile, Result, Trees, decode, outbox};
use crate::ids::{ConversationId, VisitorId};

pub(super) fn visitor(trees: &Trees, visitor: &VisitorId, at: u64) -> Result<()> {
    trees.erased.insert(visitor.as_bytes(), &at.to_be_bytes())?;
    if let Some(old) = trees.visitors.remove(visitor.as_bytes())? {
        let old: Profile = decode("visitors", &old)?;
        super::writer::unindex(trees, &old)?;
    }
    let emails: Vec<_> = trees
        .emails
        .iter()
        .filter_map(|entry| entry.ok().filter(|(_, v)| v.as_ref() == visitor.as_bytes()).map(|(k, _)| k))
        .collect();
    for email in emails {
        trees.emails.remove(email)?;
    }
    let conversations: Vec<_> =
        trees.visitor_conversations.scan_prefix(visitor.as_bytes()).keys().collect::<sled::Result<_>>()?;
    for key in conversations {
        if let Ok(id) = ConversationId::from_bytes(&key[16..]) {
            conversation(trees, &id)?;
        }
    }
    outbox::remove_visitor(trees, visitor)
}

/// Removes a conversation, its transcript and its index entry.
pub(super) fn conversation(trees: &Trees, id: &ConversationId) -> Result<()> {
    if let Some(raw) = trees.conversations.remove(id.as_bytes())? {
        let conversation: super::Conversation = decode("conversations", &raw)?;
        let mut index = [0u8; 32];
        index[..16].copy_from_slice(conversation.visitor.as_bytes());
        index[16..].copy_from_slice(id.as_bytes());
        trees.visitor_conversations.remove(index)?;
    }
    let turns: Vec<_> = trees.transcripts.scan_prefix(id.as_bytes()).keys().collect::<sled::Result<_>>()?;
    for turn in turns {
        trees.transcripts.remove(turn)?;
    }
    Ok(())
}

pub(super) fn is_erased(trees: &Trees, visitor: &VisitorId) -> Result<bool> {
    Ok(trees.erased.contains_key(visitor.as_bytes())?)
}
