//! The group commit. A committing session applies its writes to sled itself (in memory, on its
//! own worker thread, so both cores share that work), takes a ticket, and waits until the
//! flusher thread has flushed past its ticket. The flusher takes every ticket issued before it
//! starts a flush, so under load many sessions share one `fsync`; alone, a batch waits for one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Profile, Result, Stats, Status, Trees, Write, campaign_prefix, decode, encode, turn_key};
use crate::ids::VisitorId;

struct Shared {
    /// Tickets handed out: each is issued after its writes were applied.
    issued: AtomicU64,
    /// Every ticket up to this one is durable.
    flushed: Mutex<u64>,
    /// Wakes the flusher, and blocking waiters after a flush.
    changed: Condvar,
    /// Wakes async waiters after a flush.
    flushed_async: Notify,
    /// Profile writes read the old profile to update the indexes; one at a time keeps them true.
    profiles: Mutex<()>,
    /// Set when the store is dropped: the flusher finishes what was issued and stops.
    closed: std::sync::atomic::AtomicBool,
}

pub struct Handle {
    shared: Arc<Shared>,
    trees: Trees,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Handle {
    /// Joins the flusher, so that the store's directory lock is released when `Store` is gone.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        drop(lock(&self.shared.flushed));
        self.shared.changed.notify_all();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
    }
}

impl Handle {
    pub async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        let ticket = self.apply(&writes)?;
        loop {
            let notified = self.shared.flushed_async.notified();
            if *lock(&self.shared.flushed) >= ticket {
                return Ok(());
            }
            notified.await;
        }
    }

    pub fn commit_blocking(&self, writes: Vec<Write>) -> Result<()> {
        let ticket = self.apply(&writes)?;
        let mut flushed = lock(&self.shared.flushed);
        while *flushed < ticket {
            flushed = self.shared.changed.wait(flushed).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// Applies the writes and returns the ticket that covers them.
    fn apply(&self, writes: &[Write]) -> Result<u64> {
        apply(&self.trees, &self.shared.profiles, writes)?;
        let ticket = self.shared.issued.fetch_add(1, Ordering::SeqCst) + 1;
        // Taking the lock orders this wake-up after the flusher's check, so it is never lost.
        drop(lock(&self.shared.flushed));
        self.shared.changed.notify_all();
        Ok(ticket)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn spawn(db: sled::Db, trees: Trees, stats: Arc<Stats>) -> Handle {
    let shared = Arc::new(Shared {
        issued: AtomicU64::new(0),
        flushed: Mutex::new(0),
        changed: Condvar::new(),
        flushed_async: Notify::new(),
        profiles: Mutex::new(()),
        closed: std::sync::atomic::AtomicBool::new(false),
    });
    let flusher = shared.clone();
    let thread = std::thread::Builder::new()
        .name("nudge-store-flush".into())
        .spawn(move || {
            loop {
                let target = {
                    let mut flushed = lock(&flusher.flushed);
                    loop {
                        let issued = flusher.issued.load(Ordering::SeqCst);
                        if issued > *flushed {
                            break issued;
                        }
                        if flusher.closed.load(Ordering::SeqCst) {
                            return;
                        }
                        flushed = flusher.changed.wait(flushed).unwrap_or_else(|e| e.into_inner());
                    }
                };
                // Every ticket up to `target` was issued after its writes were applied, so
                // this flush makes all of them durable.
                if let Err(e) = db.flush() {
                    // Nothing is acknowledged until a flush succeeds.
                    log::error!("store flush failed, retrying: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
                let done = {
                    let mut flushed = lock(&flusher.flushed);
                    let done = target - *flushed;
                    *flushed = target;
                    done
                };
                stats.flushes.fetch_add(1, Ordering::Relaxed);
                stats.batches.fetch_add(done, Ordering::Relaxed);
                flusher.changed.notify_all();
                flusher.flushed_async.notify_waiters();
            }
        })
        .expect("cannot start the store flush thread");
    Handle { shared, trees, flusher: Some(thread) }
}

fn apply(trees: &Trees, profiles: &Mutex<()>, writes: &[Write]) -> Result<()> {
    for write in writes {
        match write {
            Write::Visitor(profile) => {
                let _one_at_a_time = lock(profiles);
                let id = profile.id.as_bytes();
                if let Some(old) = trees.visitors.insert(id, encode(profile))? {
                    let old: Profile = decode("visitors", &old)?;
                    trees.leads_by_status.remove(status_key(old.status, &profile.id))?;
                    if let Some(campaign) = &old.campaign {
                        trees.leads_by_campaign.remove(campaign_key(campaign, &profile.id))?;
                    }
                }
                trees.leads_by_status.insert(status_key(profile.status, &profile.id), &[])?;
                if let Some(campaign) = &profile.campaign {
                    trees.leads_by_campaign.insert(campaign_key(campaign, &profile.id), &[])?;
                }
            }
            Write::Conversation(conversation) => {
                let mut index = [0u8; 32];
                index[..16].copy_from_slice(conversation.visitor.as_bytes());
                index[16..].copy_from_slice(conversation.id.as_bytes());
                trees.visitor_conversations.insert(index, &[])?;
                trees.conversations.insert(conversation.id.as_bytes(), encode(conversation))?;
            }
            Write::Turn { conversation, entries } => {
                let key = turn_key(conversation, trees.ids.generate_id()?);
                trees.transcripts.insert(key, encode(entries))?;
            }
            Write::Email { email, visitor } => {
                trees.emails.insert(email.as_bytes(), visitor.as_bytes())?;
            }
            Write::Order(order) => {
                trees.orders.insert(order.id.as_bytes(), encode(order))?;
            }
        }
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
