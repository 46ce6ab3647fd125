//! Live chats a person can join. A shopper who asked for a human waits in the admin's inbox;
//! what the person there does (takes the chat, answers, hands it back) goes to every connection
//! the visitor has open, through each session, which records an answer in the transcript before
//! sending it (the same durability as the bot's replies). With several nodes, where a visitor's
//! chats are is told to the store (`on_presence`), and what a person does on another node
//! arrives through it, as the JSON of `FromPerson`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::domain::Agent;
use crate::ids::VisitorId;

/// What a person did in the admin that the shopper's open chats must know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FromPerson {
    /// Took the chat: the bot is quiet from now on.
    Took { agent: Agent },
    /// Wrote to the shopper (holding the chat).
    Answered { agent: Agent, text: String },
    /// Gave the chat back to the bot.
    HandedBack { at: u64 },
}

/// What people did, waiting for a session that is busy answering its shopper.
const QUEUE: usize = 16;

/// Each open session of a visitor: its key and where its agent messages go.
type Sessions = HashMap<VisitorId, Vec<(u64, Arc<Mailbox>)>>;

/// Where a person's actions wait for one session. Empty, it holds no room for them: a channel
/// would reserve a block of 32 in every idle connection (2.5 KiB each), for events that reach
/// few chats.
#[derive(Default)]
pub struct Mailbox {
    queue: Mutex<VecDeque<FromPerson>>,
    /// Whether `queue` holds anything, read without its lock: the session looks at every frame.
    posted: AtomicBool,
    ready: Notify,
}

impl Mailbox {
    /// Leaves `event` for the session; false when `QUEUE` events already wait.
    fn post(&self, event: FromPerson) -> bool {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if queue.len() >= QUEUE {
            return false;
        }
        queue.push_back(event);
        self.posted.store(true, Ordering::Release);
        drop(queue);
        self.ready.notify_one();
        true
    }

    /// The next event, once there is one. Cancel-safe: an event is taken only when returned.
    pub async fn next(&self) -> FromPerson {
        loop {
            if self.posted.load(Ordering::Acquire) {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                let event = queue.pop_front();
                self.posted.store(!queue.is_empty(), Ordering::Release);
                if let Some(event) = event {
                    return event;
                }
            }
            crate::signal::woken_when(&self.ready, || self.posted.load(Ordering::Acquire)).await;
        }
    }
}

/// Told when a visitor's first chat on this node opens (true) and its last one closes (false).
type Presence = Box<dyn Fn(VisitorId, bool) + Send + Sync>;

#[derive(Default)]
pub struct Live {
    next: AtomicU64,
    sessions: Mutex<Sessions>,
    presence: std::sync::OnceLock<Presence>,
}

/// A session's place in `Live`; dropping it takes the session out.
pub struct Registration {
    live: Arc<Live>,
    key: u64,
    visitor: Option<VisitorId>,
    /// What a person did for this session's shopper.
    pub inbox: Arc<Mailbox>,
}

impl Live {
    pub fn register(self: &Arc<Self>) -> Registration {
        let key = self.next.fetch_add(1, Ordering::Relaxed);
        Registration { live: self.clone(), key, visitor: None, inbox: Arc::default() }
    }

    /// Has `presence` told when a visitor's chats on this node begin and end (set once).
    pub fn on_presence(&self, presence: impl Fn(VisitorId, bool) + Send + Sync + 'static) {
        let _ = self.presence.set(Box::new(presence));
    }

    fn tell(&self, visitor: VisitorId, here: bool) {
        if let Some(presence) = self.presence.get() {
            presence(visitor, here);
        }
    }

    pub fn is_connected(&self, visitor: &VisitorId) -> bool {
        self.lock().get(visitor).is_some_and(|s| !s.is_empty())
    }

    /// Hands `event` to every open session of `visitor`; returns how many took it.
    pub fn send(&self, visitor: &VisitorId, event: &FromPerson) -> usize {
        let sessions = self.lock();
        let open = sessions.get(visitor).map(Vec::as_slice).unwrap_or_default();
        open.iter().filter(|(_, inbox)| inbox.post(event.clone())).count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn remove(&self, visitor: &VisitorId, key: u64) {
        let mut sessions = self.lock();
        if let Some(open) = sessions.get_mut(visitor) {
            open.retain(|(k, _)| *k != key);
            if open.is_empty() {
                sessions.remove(visitor);
                drop(sessions);
                self.tell(*visitor, false);
            }
        }
    }
}

impl Registration {
    /// Files the session under the visitor it now carries (after `hello`, or a new visitor
    /// after an erasure).
    pub fn carry(&mut self, visitor: VisitorId) {
        if self.visitor == Some(visitor) {
            return;
        }
        if let Some(old) = self.visitor.replace(visitor) {
            self.live.remove(&old, self.key);
        }
        let first = {
            let mut sessions = self.live.lock();
            let open = sessions.entry(visitor).or_default();
            open.push((self.key, self.inbox.clone()));
            open.len() == 1
        };
        if first {
            self.live.tell(visitor, true);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(visitor) = self.visitor {
            self.live.remove(&visitor, self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_mailbox_keeps_order_holds_at_most_queue_and_loses_nothing_to_a_dropped_wait() {
        let mailbox = Mailbox::default();
        let answered = |n: u64| FromPerson::HandedBack { at: n };
        // A wait given up before anything came (another branch of the session's select won).
        assert!(tokio::time::timeout(std::time::Duration::from_millis(5), mailbox.next()).await.is_err());
        for n in 0..QUEUE as u64 {
            assert!(mailbox.post(answered(n)));
        }
        assert!(!mailbox.post(answered(99)), "full: the person's action is refused, not queued");
        for n in 0..QUEUE as u64 {
            assert_eq!(mailbox.next().await, answered(n));
        }
        let mailbox = std::sync::Arc::new(mailbox);
        let waiter = mailbox.clone();
        let later = tokio::spawn(async move { waiter.next().await });
        tokio::task::yield_now().await;
        assert!(mailbox.post(answered(7)));
        assert_eq!(later.await.expect("join"), answered(7), "a waiting session is woken");
    }
}
