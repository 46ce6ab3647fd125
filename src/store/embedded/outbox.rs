//! The outbox: jobs waiting for their time (follow-up emails, the cart-abandonment check, tag
//! events for the webhook), kept durably so that none is lost while a receiver is down and none
//! runs after it was cancelled. The worker (`crate::outbox`) reads due items and writes their
//! outcome back as commands; these functions stage them and keep the indexes in step.

use super::apply::Batch;
use super::{Result, T, decode, encode};
use crate::domain::{Job, OutboxItem, OutboxState};
use crate::ids::VisitorId;

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

/// A new job, unless the visitor already has the same job pending (scheduling it again while it
/// waits changes nothing) or the job is stored already (a retried batch).
pub(super) fn enqueue(batch: &mut Batch, item: &OutboxItem) -> Result<()> {
    let pending = pending_key(&item.visitor, &item.job);
    // The pending job first: in a chat it is the usual answer (every message of a flow asks for
    // the unfinished-chat email again), and the id, minted anew each time, is then not looked up.
    if batch.contains(T::OutboxPending, &pending)? || batch.contains(T::Outbox, item.id.as_bytes())? {
        return Ok(());
    }
    store(batch, item, pending);
    Ok(())
}

/// The outcome of a run. An ended item (sent, skipped, cancelled, dead) only changes to `sent`
/// (the worker may finish a delivery that a cancel raced with), so nothing cancelled comes back;
/// an item that is gone (its visitor was erased) stays gone.
pub(super) fn finish(batch: &mut Batch, item: &OutboxItem) -> Result<()> {
    let Some(old) = batch.get(T::Outbox, item.id.as_bytes())? else { return Ok(()) };
    let old: OutboxItem = decode("outbox", &old)?;
    if old.state != OutboxState::Pending && !matches!(item.state, OutboxState::Sent { .. }) {
        return Ok(());
    }
    batch.remove(T::OutboxDue, due_key(&old).to_vec());
    store(batch, item, pending_key(&item.visitor, &item.job));
    Ok(())
}

/// Writes the item and keeps `outbox_due` and `outbox_pending` in step with its state.
fn store(batch: &mut Batch, item: &OutboxItem, pending: Vec<u8>) {
    if item.state == OutboxState::Pending {
        batch.put(T::OutboxDue, due_key(item).to_vec(), Vec::new());
        batch.put(T::OutboxPending, pending, item.id.as_bytes().to_vec());
    } else {
        batch.remove(T::OutboxPending, pending);
    }
    batch.put(T::Outbox, item.id.as_bytes().to_vec(), encode(item));
}

/// Cancels a visitor's pending follow-ups: emails and the abandonment check. Tag events record
/// what already happened and still go out.
pub(super) fn cancel(batch: &mut Batch, visitor: &VisitorId, reason: &str, now: u64) -> Result<()> {
    for (_, id) in batch.scan(T::OutboxPending, visitor.as_bytes())? {
        if let Some(raw) = batch.get(T::Outbox, &id)? {
            let mut item: OutboxItem = decode("outbox", &raw)?;
            if matches!(item.job, Job::TagEvent { .. }) || item.state != OutboxState::Pending {
                continue;
            }
            item.state = OutboxState::Cancelled { at: now, reason: reason.into() };
            finish(batch, &item)?;
        }
    }
    Ok(())
}

/// Removes every follow-up of a visitor, whatever its state (erasure).
pub(super) fn remove_visitor(batch: &mut Batch, visitor: &VisitorId) -> Result<()> {
    for (id, raw) in batch.scan(T::Outbox, &[])? {
        let item: OutboxItem = decode("outbox", &raw)?;
        if item.visitor == *visitor {
            batch.remove(T::OutboxDue, due_key(&item).to_vec());
            batch.remove(T::OutboxPending, pending_key(&item.visitor, &item.job));
            for event in [super::EmailEvent::Opened, super::EmailEvent::Clicked] {
                batch.remove(T::EmailEvents, super::event_key(&item.id, event));
            }
            batch.remove(T::Outbox, id);
        }
    }
    Ok(())
}
