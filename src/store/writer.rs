//! The group commit: the writer thread applies every batch waiting in its queue and hands the
//! group to the flusher thread, which flushes sled once for every group handed over before it
//! started, then acknowledges them all. Under load many sessions share each `fsync`, and the
//! next group is applied while the last one is flushed; alone, a batch waits for one flush.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};

use super::{
    Profile, Result, Stats, Status, StoreError, Trees, Write, campaign_prefix, decode, encode, erase, outbox, turn_key,
};
use crate::ids::VisitorId;

/// Batches waiting beyond this make `commit` wait for room: backpressure instead of memory growth.
const QUEUE: usize = 4096;
/// Upper bound of batches applied under one flush, so the first in line is not kept waiting.
const GROUP: usize = 1024;

struct Job {
    writes: Vec<Write>,
    done: oneshot::Sender<Result<()>>,
}

pub struct Handle {
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Handle {
    /// Closes the queue and joins the writer, so that the store's directory lock is released
    /// when `Store` is gone.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Handle {
    pub async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.send(Job { writes, done }).await.map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    pub fn commit_blocking(&self, writes: Vec<Write>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.blocking_send(Job { writes, done }).map_err(|_| StoreError::Closed)?;
        wait.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}

pub fn spawn(db: sled::Db, trees: Trees, stats: Arc<Stats>) -> Handle {
    let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
    // Applied groups wait here for the flusher, so the next group is applied while the last
    // one is being flushed (the `fsync` is most of a commit's time).
    let (applied_tx, applied_rx) = std::sync::mpsc::channel::<Vec<(oneshot::Sender<Result<()>>, Result<()>)>>();
    let flusher = std::thread::Builder::new()
        .name("nudge-store-flush".into())
        .spawn(move || {
            while let Ok(mut groups) = applied_rx.recv() {
                // Everything received was applied before this flush starts, so it covers all.
                while let Ok(more) = applied_rx.try_recv() {
                    groups.extend(more);
                }
                let flushed = db.flush().map(drop);
                stats.flushes.fetch_add(1, Ordering::Relaxed);
                stats.batches.fetch_add(groups.len() as u64, Ordering::Relaxed);
                for (done, result) in groups {
                    let result = result.and_then(|()| flushed.clone().map_err(StoreError::Sled));
                    // A session that went away no longer waits for its acknowledgement.
                    let _ = done.send(result);
                }
            }
        })
        .expect("cannot start the store flush thread");
    let writer = std::thread::Builder::new()
        .name("nudge-store-writer".into())
        .spawn(move || {
            let mut group = Vec::with_capacity(GROUP);
            while let Some(first) = jobs.blocking_recv() {
                group.push(first);
                while group.len() < GROUP {
                    match jobs.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                let applied = group.drain(..).map(|job| (job.done, apply(&trees, job.writes))).collect();
                if applied_tx.send(applied).is_err() {
                    return;
                }
            }
            // Dropping `applied_tx` lets the flusher finish; joining it keeps the lock until then.
            drop(applied_tx);
            let _ = flusher.join();
        })
        .expect("cannot start the store writer thread");
    Handle { queue: Some(queue), writer: Some(writer) }
}

fn apply(trees: &Trees, writes: Vec<Write>) -> Result<()> {
    for write in writes {
        match write {
            // A chat still open on an erased visitor must not write it back.
            Write::Visitor(profile) if erase::is_erased(trees, &profile.id)? => {}
            Write::Conversation(conversation) if erase::is_erased(trees, &conversation.visitor)? => {}
            Write::Email { visitor, .. } if erase::is_erased(trees, &visitor)? => {}
            Write::Outbox(item) if erase::is_erased(trees, &item.visitor)? => {}
            Write::Turn { conversation, .. } if !trees.conversations.contains_key(conversation.as_bytes())? => {}
            Write::Visitor(mut profile) => {
                let id = profile.id.as_bytes();
                // One writer, so reading the old value here cannot race another update.
                let old = trees.visitors.get(id)?.map(|old| decode::<Profile>("visitors", &old)).transpose()?;
                if let Some(old) = &old {
                    // Sessions write the copy they loaded; what others recorded meanwhile (a
                    // checkout click, an order, an unsubscribe) must survive that.
                    profile.merge_stored(old);
                }
                trees.visitors.insert(profile.id.as_bytes(), encode(&profile))?;
                if let Some(old) = old {
                    unindex(trees, &old)?;
                }
                trees.leads_by_status.insert(status_key(profile.status, &profile.id), &[])?;
                if let Some(campaign) = &profile.campaign {
                    trees.leads_by_campaign.insert(campaign_key(campaign, &profile.id), &[])?;
                }
            }
            Write::Email { email, visitor } => {
                trees.emails.insert(email.as_bytes(), visitor.as_bytes())?;
            }
            Write::Order(order) => {
                trees.orders.insert(order.id.as_bytes(), encode(&order))?;
            }
            Write::Conversation(conversation) => {
                let mut index = [0u8; 32];
                index[..16].copy_from_slice(conversation.visitor.as_bytes());
                index[16..].copy_from_slice(conversation.id.as_bytes());
                trees.visitor_conversations.insert(index, &[])?;
                trees.conversations.insert(conversation.id.as_bytes(), encode(&conversation))?;
            }
            Write::Turn { conversation, entries } => {
                let key = turn_key(&conversation, trees.ids.generate_id()?);
                trees.transcripts.insert(key, encode(&entries))?;
            }
            Write::Outbox(item) => outbox::apply(trees, &item)?,
            Write::CancelFollowUps { visitor, reason, at } => outbox::cancel(trees, &visitor, &reason, at)?,
            Write::Erase { visitor, at } => erase::visitor(trees, &visitor, at)?,
            Write::ExpireConversation(id) => erase::conversation(trees, &id)?,
        }
    }
    Ok(())
}

/// Removes a profile's entries from the status and campaign indexes.
pub(super) fn unindex(trees: &Trees, old: &Profile) -> Result<()> {
    trees.leads_by_status.remove(status_key(old.status, &old.id))?;
    if let Some(campaign) = &old.campaign {
        trees.leads_by_campaign.remove(campaign_key(campaign, &old.id))?;
    }
    Ok(())
}

fn status_key(status: Status, visitor: &VisitorId) -> Vec<u8> {
    let mut key = vec![status as u8];
    key.extend_from_slice(visitor.as_bytes());
    key
}

fn campaign_key(campaign: &str, visitor: &VisitorId) -> Vec<u8> {
    let mut key = campaign_prefix(campaign);
    key.extend_from_slice(visitor.as_bytes());
    key
}
