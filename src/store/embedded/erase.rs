//! Erasure and expiry, staged like every other command. An erased visitor leaves a tombstone (id
//! and time, nothing personal) so that a chat still open on that visitor cannot write it back;
//! their profile, email links, conversations, transcripts and follow-ups are removed. Orders stay
//! (the shop's records), keyed by a visitor id that no longer leads anywhere.

use super::apply::Batch;
use super::{Conversation, Result, T, decode, outbox, turns};
use crate::ids::{ConversationId, VisitorId};

pub(super) fn visitor(batch: &mut Batch, visitor: &VisitorId, at: u64) -> Result<()> {
    batch.forget_visitor(*visitor, at)?;
    for (email, owner) in batch.scan(T::Emails, &[])? {
        if owner == visitor.as_bytes() {
            batch.remove(T::Emails, email);
        }
    }
    for (key, _) in batch.scan(T::VisitorConversations, visitor.as_bytes())? {
        if let Ok(id) = ConversationId::from_bytes(&key[16..]) {
            conversation(batch, &id)?;
        }
    }
    outbox::remove_visitor(batch, visitor)
}

/// Removes a conversation, its pending question and language, its transcript and its index entry.
pub(super) fn conversation(batch: &mut Batch, id: &ConversationId) -> Result<()> {
    if let Some(raw) = batch.get(T::Conversations, id.as_bytes())? {
        let conversation: Conversation = decode("conversations", &raw)?;
        let mut index = conversation.visitor.as_bytes().to_vec();
        index.extend_from_slice(id.as_bytes());
        batch.remove(T::VisitorConversations, index);
        batch.remove(T::Conversations, id.as_bytes().to_vec());
        batch.remove(T::Pending, id.as_bytes().to_vec());
        batch.remove(T::Locales, id.as_bytes().to_vec());
    }
    for (turn, _) in batch.scan(T::Transcripts, id.as_bytes())? {
        batch.remove(T::Transcripts, turn);
    }
    // Its turns not merged yet are rewritten out of their groups' values, or the merge at the
    // next open would bring them back.
    for (seq, value) in batch.scan(T::RecentTurns, &[])? {
        let records = turns::records(&value)?;
        if records.iter().any(|r| r.conversation == id.as_bytes()) {
            let kept: Vec<_> = records.into_iter().filter(|r| r.conversation != id.as_bytes()).collect();
            match kept.is_empty() {
                true => batch.remove(T::RecentTurns, seq),
                false => batch.put(T::RecentTurns, seq, turns::encode_records(kept)),
            }
        }
    }
    batch.forget_conversation(*id);
    Ok(())
}
