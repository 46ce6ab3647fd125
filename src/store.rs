//! The store: the seam every reader and writer of Nudge's data goes through (the session, `/c/`,
//! `/r/`, conversions, `/u/`, the admin, the exports, the outbox worker, the retention sweep),
//! over one of two backends: sled in the data directory (`embedded`, the default, one process)
//! or PostgreSQL (`pg`, shared by several nodes). ARCHITECTURE.md has both layouts side by side.
//!
//! Writes are `Command`s that say what happened, never snapshots: the backend applies each to
//! what is stored, so two writers touching one visitor cannot undo each other. A batch of
//! commands is all or nothing, and a caller whose `commit` returned knows its batch is durable.
//!
//! Reads are methods that answer one question each (a visitor, a page of leads, a transcript);
//! PostgreSQL answers each with a query.

mod embedded;
mod pg;
mod readers;

/// The PostgreSQL schema version this binary migrates to.
pub use pg::SCHEMA_VERSION;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::{Change, Conversation, Entry, Order, OutboxItem, Pending, Profile, Spend, Status};
use crate::ids::{AdminSessionId, ConversationId, OutboxId, TurnId, VisitorId};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the data directory {0} is in use by another nudge process (sled allows one process per directory); stop it or point --data elsewhere"
    )]
    Locked(String),
    #[error("store error: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value under {tree} is unreadable: {reason}")]
    Corrupt { tree: &'static str, reason: String },
    #[error("the store is shutting down")]
    Closed,
    /// The database refused or could not be reached; the message says which (never the password).
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    /// The database holds a schema this binary does not know (a newer Nudge migrated it).
    #[error("{0}")]
    Schema(String),
    /// What was asked of the store cannot be: a `--store` that is no database URL, a call the
    /// backend has no use for.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One thing that happened, for the store to record. Commands about a visitor or conversation
/// that is not stored (never created, erased, expired) are dropped, so a chat still open on an
/// erased visitor cannot bring it back.
///
/// The large records are boxed: every message reserves room for a handful of commands and moves
/// them to the writer, which frees them on its own thread, so each is as large as the largest
/// variant (a conversation unboxed made it 296 bytes, 120 now; the test below holds it near that).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Command {
    /// Something happened to a visitor's profile (`Change::Create` creates it).
    Visitor { visitor: VisitorId, change: Change },
    /// Links a (normalized) email address to a visitor.
    LinkEmail { email: String, visitor: VisitorId },
    /// An order the shop reported; a second order with the same id changes nothing.
    RecordOrder(Box<Order>),
    /// A new conversation (its record and its place in the visitor's list); opening one that
    /// exists changes nothing.
    OpenConversation(Box<Conversation>),
    /// One turn of a conversation (the shopper's message and the replies). Idempotent: the
    /// session's turn id is the key, so a retry after a failed commit stores it once.
    AppendTurn { conversation: ConversationId, turn: TurnId, entries: Vec<Entry> },
    /// Sets or clears the question the conversation waits on.
    SetPending { conversation: ConversationId, pending: Option<Pending> },
    /// The language the conversation continues in.
    ConversationLocale { conversation: ConversationId, locale: String },
    /// A new outbox job; dropped while the visitor has the same job pending.
    Enqueue(Box<OutboxItem>),
    /// The outcome of running a job (sent, skipped, dead, or due again later). An ended job only
    /// ever changes to sent, so a cancel is never undone by a late retry.
    Finish(Box<OutboxItem>),
    /// Cancels a visitor's pending follow-ups (they converted or unsubscribed).
    CancelFollowUps { visitor: VisitorId, reason: String, at: u64 },
    /// Removes everything about a visitor and keeps later commands from bringing it back.
    Erase { visitor: VisitorId, at: u64 },
    /// Removes a conversation and its transcript (retention).
    ExpireConversation(ConversationId),
    /// A marketer logged in; sessions that have expired by `at` are removed.
    OpenAdminSession { id: AdminSessionId, at: u64, expires_at: u64 },
    /// A marketer logged out: the session's cookie stops working, wherever it was copied.
    EndAdminSession(AdminSessionId),
    /// An email link proved its address once (`link` is a hash of the token); it resumes
    /// nobody again. Kept until the token would have expired anyway.
    SpendLink { link: [u8; 16], expires_at: u64 },
    /// Forgets spent links whose tokens have expired by `at` (retention).
    ForgetSpentLinks { at: u64 },
    /// A day's ad spend of a campaign on a platform; reported again, it replaces the first.
    RecordSpend(Spend),
    /// A sent email was opened (its pixel loaded) or a link in it clicked; only the first time
    /// of each counts.
    EmailEvent { item: OutboxId, event: EmailEvent, at: u64 },
    /// The widget showed a proactive trigger (variant `variant` of its teaser) to someone: one
    /// more on its count.
    TriggerShown { trigger: String, variant: u32 },
}

/// What a shopper did with a sent email.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum EmailEvent {
    Opened = 0,
    Clicked = 1,
}

impl Command {
    /// Applies `change` to a writer's own copy of the profile (a session's, which it routes
    /// by) and returns the command that records it in the store.
    pub fn change(profile: &mut Profile, change: Change) -> Command {
        profile.apply(&change);
        Command::Visitor { visitor: profile.id, change }
    }
}

/// When the earliest job a batch puts in the outbox is due, if it puts one: the worker may have
/// to run it before what it waits for now.
fn schedules_jobs(commands: &[Command]) -> Option<u64> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Enqueue(item) => Some(item.due_at),
            Command::Finish(item) if item.state == crate::domain::OutboxState::Pending => Some(item.due_at),
            _ => None,
        })
        .min()
}

/// How well the group commit groups: batches committed and flushes that made them durable.
#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub flushes: AtomicU64,
}

/// Where a visitor stands in the newest-first order: when last seen, and who. Written as
/// `<ms>-<visitor>` in the admin's `after` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub at: u64,
    pub visitor: VisitorId,
}

impl Seen {
    fn key(&self) -> [u8; 24] {
        let mut key = [0u8; 24];
        key[..8].copy_from_slice(&self.at.to_be_bytes());
        key[8..].copy_from_slice(self.visitor.as_bytes());
        key
    }

    fn from_key(key: &[u8]) -> Option<Seen> {
        let at = u64::from_be_bytes(key.get(..8)?.try_into().ok()?);
        Some(Seen { at, visitor: VisitorId::from_bytes(key.get(8..)?).ok()? })
    }

    pub fn parse(s: &str) -> Option<Seen> {
        let (at, visitor) = s.split_once('-')?;
        Some(Seen { at: at.parse().ok()?, visitor: VisitorId::parse(visitor).ok()? })
    }
}

impl std::fmt::Display for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.at, self.visitor)
    }
}

/// Where the store lives: `--store` (a `postgres://` URL) or, without it, the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// sled in `<dir>/store`.
    Dir(PathBuf),
    /// A PostgreSQL database, shared by every node given the same URL.
    Postgres(String),
}

impl Location {
    /// `postgres://…` or `postgresql://…` is a database; anything else is refused with a reason.
    pub fn new(store: Option<&str>, data: &Path) -> std::result::Result<Location, String> {
        match store {
            None => Ok(Location::Dir(data.to_path_buf())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_string()))
            }
            Some(other) => Err(format!(
                "store `{}`: expected a postgres://USER@HOST:PORT/DB URL (or no --store for the embedded store in --data)",
                pg::redact(other)
            )),
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "{}", dir.display()),
            Location::Postgres(url) => f.write_str(&pg::redact(url)),
        }
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    readers: readers::Readers,
    /// Raised by a commit that enqueues or reschedules a job due before `outbox_wakes_at`, for
    /// the outbox worker.
    outbox: crate::signal::Signal,
    /// When the outbox worker will look again by itself (ms; `u64::MAX` while it is looking).
    outbox_wakes_at: AtomicU64,
}

enum Backend {
    Embedded(embedded::Embedded),
    Postgres(pg::Pg),
}

/// Calls the same method on whichever backend the store has.
macro_rules! each {
    ($store:expr, $method:ident($($arg:expr),*)) => {
        match &$store.inner.backend {
            Backend::Embedded(b) => b.$method($($arg),*),
            Backend::Postgres(b) => b.$method($($arg),*),
        }
    };
}

/// `each!` for reads that list: both backends' iterators, boxed.
macro_rules! each_iter {
    ($store:expr, $method:ident($($arg:expr),*)) => {
        match &$store.inner.backend {
            Backend::Embedded(b) => Box::new(b.$method($($arg),*)),
            Backend::Postgres(b) => Box::new(b.$method($($arg),*)),
        }
    };
}

/// A listing read: rows one at a time, whichever backend (PostgreSQL fetches them in pages).
pub type Rows<'a, T> = Box<dyn Iterator<Item = Result<T>> + 'a>;

impl Store {
    /// The embedded store in the data directory `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::with(Backend::Embedded(embedded::Embedded::open(dir)?))
    }

    /// The store at `location`; a PostgreSQL database is connected to and migrated first.
    pub fn open_at(location: &Location) -> Result<Store> {
        match location {
            Location::Dir(dir) => Store::open(dir),
            Location::Postgres(url) => Store::with(Backend::Postgres(pg::Pg::connect(url)?)),
        }
    }

    fn with(backend: Backend) -> Result<Store> {
        let readers = readers::Readers::spawn().map_err(|e| StoreError::Sled(e.into()))?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                readers,
                outbox: Default::default(),
                outbox_wakes_at: AtomicU64::new(u64::MAX),
            }),
        })
    }

    /// Whether this store is shared with other nodes (PostgreSQL), so that what one node must
    /// agree on with the others (secrets, leases) lives in it.
    pub fn is_shared(&self) -> bool {
        matches!(self.inner.backend, Backend::Postgres(_))
    }

    /// Applies every command, all or nothing, and returns once they are durable.
    pub async fn commit(&self, commands: Vec<Command>) -> Result<()> {
        let started = std::time::Instant::now();
        let due = schedules_jobs(&commands);
        let result = match &self.inner.backend {
            Backend::Embedded(b) => b.commit(commands).await,
            Backend::Postgres(b) => b.commit(commands).await,
        };
        crate::metrics::hot::COMMIT_SECONDS.record(started.elapsed());
        self.committed(due, result)
    }

    /// `commit` for callers outside the async runtime (command line, outbox worker, tests).
    pub fn commit_blocking(&self, commands: Vec<Command>) -> Result<()> {
        let due = schedules_jobs(&commands);
        let result = each!(self, commit_blocking(commands));
        self.committed(due, result)
    }

    /// Wakes the outbox worker when a durable batch scheduled a job.
    /// Wakes the outbox worker for a job due before it would wake anyway (under load nearly
    /// every message schedules a follow-up, due hours later: a wake-up and a look at the due
    /// index each was 2 % of the server's time).
    fn committed(&self, due: Option<u64>, result: Result<()>) -> Result<()> {
        if let (Some(due), Ok(())) = (due, &result)
            && due < self.inner.outbox_wakes_at.load(Ordering::SeqCst)
        {
            self.inner.outbox.raise();
        }
        result
    }

    /// The outbox worker is looking at its jobs (a job enqueued now must wake it when it sleeps).
    pub fn outbox_awake(&self) {
        self.inner.outbox_wakes_at.store(u64::MAX, Ordering::SeqCst);
    }

    /// The outbox worker found its next job due at `at` and sleeps until then: commits wake it
    /// only for a job due earlier.
    pub fn outbox_sleeps_until(&self, at: u64) {
        self.inner.outbox_wakes_at.store(at, Ordering::SeqCst);
    }

    /// What the outbox worker sleeps on: raised when this process enqueued or rescheduled a job
    /// (other nodes' jobs are not seen; the worker looks again at least every second on a
    /// shared store), and at shutdown.
    pub fn outbox_signal(&self) -> &crate::signal::Signal {
        &self.inner.outbox
    }

    /// Batches committed, and the flushes (sled) or transactions (PostgreSQL) that made them durable.
    pub fn stats(&self) -> (u64, u64) {
        each!(self, stats())
    }

    pub fn visitor(&self, id: &VisitorId) -> Result<Option<Profile>> {
        each!(self, visitor(id))
    }

    /// The visitor's most recent conversation.
    pub fn latest_conversation(&self, visitor: &VisitorId) -> Result<Option<Conversation>> {
        each!(self, latest_conversation(visitor))
    }

    pub fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        each!(self, conversation(id))
    }

    /// Every conversation.
    pub fn conversations(&self) -> Rows<'_, Conversation> {
        each_iter!(self, conversations())
    }

    pub fn visitor_by_email(&self, email: &str) -> Result<Option<Profile>> {
        each!(self, visitor_by_email(email))
    }

    pub fn order(&self, id: &str) -> Result<Option<Order>> {
        each!(self, order(id))
    }

    /// Every visitor, oldest first.
    pub fn visitors(&self) -> Rows<'_, Profile> {
        each_iter!(self, visitors())
    }

    pub fn visitor_count(&self) -> usize {
        each!(self, visitor_count())
    }

    /// Visitors seen last first, starting after `after` (the last of the page before): a
    /// cursor, so a page costs what it shows, however many leads there are.
    pub fn visitors_by_last_seen(&self, after: Option<Seen>) -> Rows<'_, (Seen, Profile)> {
        each_iter!(self, visitors_by_last_seen(after))
    }

    /// How many visitors have `status`, counted in the index.
    pub fn count_with_status(&self, status: Status) -> usize {
        each!(self, count_with_status(status))
    }

    /// How many visitors came last from `campaign`, counted in the index.
    pub fn count_in_campaign(&self, campaign: &str) -> usize {
        each!(self, count_in_campaign(campaign))
    }

    /// Visitors with a status, from the index (no scan of all visitors).
    pub fn visitors_with_status(&self, status: Status) -> Rows<'_, Profile> {
        each_iter!(self, visitors_with_status(status))
    }

    /// Visitors whose campaign is `campaign`, from the index.
    pub fn visitors_in_campaign(&self, campaign: &str) -> Rows<'_, Profile> {
        each_iter!(self, visitors_in_campaign(campaign))
    }

    /// A visitor's conversations, oldest first.
    pub fn conversations_of(&self, visitor: &VisitorId) -> Result<Vec<Conversation>> {
        each!(self, conversations_of(visitor))
    }

    /// Every entry of a conversation, in order.
    pub fn transcript(&self, conversation: &ConversationId) -> Result<Vec<Entry>> {
        each!(self, transcript(conversation))
    }

    /// Pending follow-ups due at `now`, earliest first, at most `limit`, for this node to run:
    /// on PostgreSQL each is leased to this node for `lease_ms` (no other node runs it meanwhile,
    /// and a node that dies holding it loses it when the lease runs out).
    pub fn claim_due(&self, now: u64, limit: usize, lease_ms: u64) -> Result<Vec<OutboxItem>> {
        match &self.inner.backend {
            Backend::Embedded(b) => b.due_follow_ups(now, limit),
            Backend::Postgres(b) => b.claim_due(now, limit, lease_ms),
        }
    }

    /// When the earliest pending follow-up is due.
    pub fn next_follow_up_at(&self) -> Result<Option<u64>> {
        each!(self, next_follow_up_at())
    }

    pub fn follow_up(&self, id: &OutboxId) -> Result<Option<OutboxItem>> {
        each!(self, follow_up(id))
    }

    /// Every follow-up ever scheduled, oldest first.
    pub fn follow_ups(&self) -> Rows<'_, OutboxItem> {
        each_iter!(self, follow_ups())
    }

    /// Whether the admin session `id` exists and has not expired at `now`.
    pub fn admin_session_live(&self, id: &AdminSessionId, now: u64) -> Result<bool> {
        each!(self, admin_session_live(id, now))
    }

    /// Whether `event` happened to the sent email `item`.
    pub fn email_event(&self, item: &OutboxId, event: EmailEvent) -> Result<bool> {
        each!(self, email_event(item, event))
    }

    /// When each marketing email (follow-up) to the visitor was sent (ms).
    pub fn marketing_sent_to(&self, visitor: &VisitorId) -> Result<Vec<u64>> {
        each!(self, marketing_sent_to(visitor))
    }

    /// How often each proactive trigger was shown, by trigger and teaser variant.
    pub fn triggers_shown(&self) -> Result<BTreeMap<(String, u32), u64>> {
        each!(self, triggers_shown())
    }

    /// Every ad spend row, by date.
    pub fn spend(&self) -> Rows<'_, Spend> {
        each_iter!(self, spend())
    }

    /// Whether the email link with this hash was already used.
    pub fn link_spent(&self, link: &[u8; 16]) -> Result<bool> {
        each!(self, link_spent(link))
    }

    /// Whether a visitor was erased (a tombstone is all that is left).
    pub fn is_erased(&self, visitor: &VisitorId) -> Result<bool> {
        each!(self, is_erased(visitor))
    }

    /// A secret every node shares, by name (PostgreSQL only: the embedded store's are in
    /// `secrets.toml`): the value stored, or `create`'s, stored for every node. Two nodes
    /// starting at once agree on whichever value was stored first.
    pub fn shared_secret(&self, name: &str, create: impl FnOnce() -> String) -> Result<String> {
        match &self.inner.backend {
            Backend::Embedded(_) => Ok(create()),
            Backend::Postgres(b) => b.shared_secret(name, create),
        }
    }

    /// Replaces a shared secret (PostgreSQL only).
    pub fn set_shared_secret(&self, name: &str, value: &str) -> Result<()> {
        match &self.inner.backend {
            Backend::Embedded(_) => Ok(()),
            Backend::Postgres(b) => b.set_shared_secret(name, value),
        }
    }

    /// Joins the nodes sharing the database (PostgreSQL; nothing on sled): a heartbeat, and a
    /// listener that hands a person's answers written on other nodes to `deliver`.
    pub fn join_cluster(&self, deliver: impl Fn(VisitorId, String) + Send + Sync + 'static) {
        if let Backend::Postgres(b) = &self.inner.backend {
            b.join(Arc::new(deliver));
        }
    }

    /// Records that this node now holds (or no longer holds) a chat of `visitor`, for the
    /// other nodes (PostgreSQL; nothing on sled).
    pub fn set_connected(&self, visitor: VisitorId, connected: bool) {
        if let Backend::Postgres(b) = &self.inner.backend {
            b.set_connected(visitor, connected);
        }
    }

    /// Whether another live node holds a chat of `visitor` (never, on sled).
    pub fn connected_elsewhere(&self, visitor: &VisitorId) -> Result<bool> {
        match &self.inner.backend {
            Backend::Embedded(_) => Ok(false),
            Backend::Postgres(b) => b.connected_elsewhere(visitor),
        }
    }

    /// Sends what a person did (an answer, taking or handing back the chat, as the sessions'
    /// JSON) to the node that holds the visitor's chat (PostgreSQL only; on sled every chat is
    /// on this node).
    pub fn post_agent_message(&self, visitor: &VisitorId, text: &str) -> Result<()> {
        match &self.inner.backend {
            Backend::Embedded(_) => Err(StoreError::Invalid("one node: there is no other node to send to".into())),
            Backend::Postgres(b) => b.post_agent_message(visitor, text),
        }
    }

    /// Runs `work` unless another node runs work of the same `name` right now: on PostgreSQL a
    /// session advisory lock (`None`: another node holds it), on sled always (one process).
    pub fn exclusive<T>(&self, name: &str, work: impl FnOnce() -> T) -> Result<Option<T>> {
        match &self.inner.backend {
            Backend::Embedded(_) => Ok(Some(work())),
            Backend::Postgres(b) => b.exclusive(name, work),
        }
    }

    /// Runs a blocking read on the store's reader threads, so a read never stalls a session task.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let (done, wait) = tokio::sync::oneshot::channel();
        let store = self.clone();
        if !self.inner.readers.run(Box::new(move || drop(done.send(f(&store))))) {
            return Err(StoreError::Closed);
        }
        wait.await.map_err(|_| StoreError::Closed)?
    }

    /// Flushes whatever is buffered; used on shutdown.
    pub fn flush(&self) -> Result<()> {
        each!(self, flush())
    }
}

#[cfg(test)]
#[test]
fn a_command_stays_small() {
    assert!(std::mem::size_of::<Command>() <= 128, "{} bytes", std::mem::size_of::<Command>());
}

#[cfg(test)]
impl Store {
    /// The sled backend, for tests that look at its trees.
    fn embedded(&self) -> &embedded::Embedded {
        match &self.inner.backend {
            Backend::Embedded(b) => b,
            Backend::Postgres(_) => panic!("not the embedded store"),
        }
    }
}

/// Creates `dir` (and its parents) readable by this user only, and makes an existing one so:
/// it holds personal data. (Files inside are created under the process's umask, which `main`
/// sets to owner-only.)
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}
