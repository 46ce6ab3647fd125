//! The store: the only module that touches sled. Visitor profiles, conversations and their
//! transcripts. Storage layout (tree names, keys, values) is written down in ARCHITECTURE.md.
//!
//! Writes go through one writer thread (`store/writer.rs`) that applies every batch waiting in its
//! queue, flushes once, then acknowledges them all: a group commit. A caller whose `commit`
//! returned knows its batch is on disk.

mod erase;
mod outbox;
mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::ids::{ConversationId, OutboxId, VisitorId};
use crate::intents::How;
pub use outbox::{Job, OutboxItem, OutboxState};

/// Every value starts with this version byte; a reader that meets another refuses it loudly
/// instead of misreading it.
const VALUE_VERSION: u8 = 1;

#[derive(Debug, thiserror::Error)]
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
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Profile {
    pub id: VisitorId,
    pub created_at: u64,
    pub last_seen_at: u64,
    pub locale: String,
    pub visits: u32,
    #[serde(default)]
    pub consent: Option<ConsentRecord>,
    #[serde(default)]
    pub preferences: BTreeMap<String, Preference>,
    /// Retargeting tags, e.g. `interest:sneakers`.
    #[serde(default)]
    pub tags: BTreeSet<String>,
    /// Lead score, added to by intents.
    #[serde(default)]
    pub score: i64,
    /// When the shopper last asked for a person.
    #[serde(default)]
    pub handoff_at: Option<u64>,
    /// Where the lead is in the funnel, and when it reached each status.
    #[serde(default)]
    pub status: Status,
    #[serde(default)]
    pub status_at: BTreeMap<Status, u64>,
    /// The campaign the visitor last came from.
    #[serde(default)]
    pub campaign: Option<String>,
    /// Ids of the orders attributed to this visitor.
    #[serde(default)]
    pub orders: Vec<String>,
}

/// The funnel: chatting → qualified → checkout clicked → converted. A lead only moves forward.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    #[default]
    Chatting,
    Qualified,
    CheckoutClicked,
    Converted,
}

impl Status {
    pub const ALL: [Status; 4] = [Status::Chatting, Status::Qualified, Status::CheckoutClicked, Status::Converted];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Chatting => "chatting",
            Status::Qualified => "qualified",
            Status::CheckoutClicked => "checkout_clicked",
            Status::Converted => "converted",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl Profile {
    /// Moves the lead to `status` at `now` if that is forward; returns whether it moved.
    pub fn advance(&mut self, status: Status, now: u64) -> bool {
        if status <= self.status {
            return false;
        }
        self.status = status;
        self.status_at.entry(status).or_insert(now);
        true
    }

    /// Keeps what another writer recorded in the stored profile since this copy was loaded:
    /// the further status, orders, tags, newer preferences and the newer consent. A session
    /// holds its visitor's profile for the whole connection while `/r/`, conversions and
    /// unsubscribe links write the same profile.
    pub fn merge_stored(&mut self, stored: &Profile) {
        if stored.status > self.status {
            self.status = stored.status;
        }
        for (status, at) in &stored.status_at {
            self.status_at.entry(*status).or_insert(*at);
        }
        for order in &stored.orders {
            if !self.orders.contains(order) {
                self.orders.push(order.clone());
            }
        }
        self.tags.extend(stored.tags.iter().cloned());
        for (name, preference) in &stored.preferences {
            if self.preferences.get(name).is_none_or(|mine| mine.at < preference.at) {
                self.preferences.insert(name.clone(), preference.clone());
            }
        }
        if let Some(theirs) = &stored.consent {
            if self.consent.as_ref().is_none_or(|mine| mine.at < theirs.at) {
                self.consent = Some(theirs.clone());
            }
            // An unsubscribe stays until the shopper says yes again in the chat; a page's banner
            // re-sent by a chat opened earlier does not undo it.
            if theirs.source == UNSUBSCRIBE_SOURCE
                && !theirs.marketing
                && let Some(mine) = self.consent.as_mut()
                && mine.marketing
                && mine.source != "chat"
            {
                mine.marketing = false;
                mine.source = UNSUBSCRIBE_SOURCE.into();
            }
        }
        self.handoff_at = self.handoff_at.max(stored.handoff_at);
    }

    pub fn preference(&self, name: &str) -> Option<&str> {
        self.preferences.get(name).map(|p| p.value.as_str())
    }
}

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

impl Profile {
    pub fn new(id: VisitorId, now: u64, locale: &str) -> Profile {
        Profile {
            id,
            created_at: now,
            last_seen_at: now,
            locale: locale.into(),
            visits: 0,
            consent: None,
            preferences: BTreeMap::new(),
            tags: BTreeSet::new(),
            score: 0,
            handoff_at: None,
            status: Status::Chatting,
            status_at: [(Status::Chatting, now)].into(),
            campaign: None,
            orders: Vec::new(),
        }
    }
}

/// A captured preference, with when and from which message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Preference {
    pub value: String,
    pub at: u64,
    pub message: String,
}

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

/// What the shopper agreed to, when, and through what (`hello`, `widget`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConsentRecord {
    pub marketing: bool,
    pub ads: bool,
    pub at: u64,
    pub source: String,
}

/// Where a withdrawal of marketing consent by an email's unsubscribe link is recorded from.
pub const UNSUBSCRIBE_SOURCE: &str = "unsubscribe_link";

impl ConsentRecord {
    pub fn new(consent: crate::protocol::Consent, at: u64, source: &str) -> Self {
        ConsentRecord { marketing: consent.marketing, ads: consent.ads, at, source: source.into() }
    }

    /// The consent a page reports (its consent banner, sent with every `hello`), over what was
    /// recorded before: an unsubscribe from our emails is not undone by a banner that still says
    /// yes; only the shopper saying yes again in the chat grants it back.
    pub fn from_page(consent: crate::protocol::Consent, at: u64, source: &str, before: Option<&ConsentRecord>) -> Self {
        let unsubscribed = before.is_some_and(|c| c.source == UNSUBSCRIBE_SOURCE && !c.marketing);
        let mut record = ConsentRecord::new(consent, at, source);
        if unsubscribed {
            record.marketing = false;
            record.source = UNSUBSCRIBE_SOURCE.into();
        }
        record
    }
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

/// One write of a batch.
#[derive(Debug, Clone)]
pub enum Write {
    Visitor(Profile),
    Conversation(Conversation),
    /// One turn of a conversation: the shopper's message and the bot's replies, in one value.
    Turn {
        conversation: ConversationId,
        entries: Vec<Entry>,
    },
    /// Links a (normalized) email address to a visitor.
    Email {
        email: String,
        visitor: VisitorId,
    },
    Order(Order),
    /// A new follow-up email, or the outcome of an attempt to send one.
    Outbox(OutboxItem),
    /// Cancels a visitor's pending follow-ups (they converted or unsubscribed).
    CancelFollowUps {
        visitor: VisitorId,
        reason: String,
        at: u64,
    },
    /// Removes everything about a visitor and keeps later writes from bringing it back.
    Erase {
        visitor: VisitorId,
        at: u64,
    },
    /// Removes a conversation and its transcript (retention).
    ExpireConversation(ConversationId),
}

/// How well the group commit groups: batches committed and flushes that made them durable.
#[derive(Debug, Default)]
pub struct Stats {
    pub batches: AtomicU64,
    pub flushes: AtomicU64,
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    db: sled::Db,
    trees: Trees,
    writer: writer::Handle,
    stats: Arc<Stats>,
}

#[derive(Clone)]
struct Trees {
    visitors: sled::Tree,
    conversations: sled::Tree,
    visitor_conversations: sled::Tree,
    transcripts: sled::Tree,
    emails: sled::Tree,
    /// Unique, increasing ids for transcript keys (two tabs may write the same conversation).
    ids: sled::Db,
    leads_by_status: sled::Tree,
    leads_by_campaign: sled::Tree,
    orders: sled::Tree,
    outbox: sled::Tree,
    outbox_due: sled::Tree,
    outbox_pending: sled::Tree,
    /// Erased visitor ids → when (u64 ms BE).
    erased: sled::Tree,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Sled(e.into()))?;
        let db = sled::Config::new().path(dir.join("store")).open().map_err(|e| match e {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
                StoreError::Locked(dir.display().to_string())
            }
            other => StoreError::Sled(other),
        })?;
        let trees = Trees {
            visitors: db.open_tree("visitors")?,
            conversations: db.open_tree("conversations")?,
            visitor_conversations: db.open_tree("visitor_conversations")?,
            transcripts: db.open_tree("transcripts")?,
            emails: db.open_tree("emails")?,
            ids: db.clone(),
            leads_by_status: db.open_tree("leads_by_status")?,
            leads_by_campaign: db.open_tree("leads_by_campaign")?,
            orders: db.open_tree("orders")?,
            outbox: db.open_tree("outbox")?,
            outbox_due: db.open_tree("outbox_due")?,
            outbox_pending: db.open_tree("outbox_pending")?,
            erased: db.open_tree("erased")?,
        };
        let stats = Arc::new(Stats::default());
        let writer = writer::spawn(db.clone(), trees.clone(), stats.clone());
        Ok(Store { inner: Arc::new(Inner { db, trees, writer, stats }) })
    }

    /// Applies every write and returns once they are durable on disk.
    pub async fn commit(&self, writes: Vec<Write>) -> Result<()> {
        self.inner.writer.commit(writes).await
    }

    /// `commit` for callers outside the async runtime (command line, tests).
    pub fn commit_blocking(&self, writes: Vec<Write>) -> Result<()> {
        self.inner.writer.commit_blocking(writes)
    }

    pub fn stats(&self) -> (u64, u64) {
        let s = &self.inner.stats;
        (s.batches.load(Ordering::Relaxed), s.flushes.load(Ordering::Relaxed))
    }

    pub fn visitor(&self, id: &VisitorId) -> Result<Option<Profile>> {
        get(&self.inner.trees.visitors, "visitors", id.as_bytes())
    }

    /// The visitor's most recent conversation.
    pub fn latest_conversation(&self, visitor: &VisitorId) -> Result<Option<Conversation>> {
        let Some(last) = self.inner.trees.visitor_conversations.scan_prefix(visitor.as_bytes()).next_back() else {
            return Ok(None);
        };
        let (key, _) = last?;
        self.conversation_by_key(&key[16..])
    }

    pub fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        self.conversation_by_key(id.as_bytes())
    }

    fn conversation_by_key(&self, key: &[u8]) -> Result<Option<Conversation>> {
        let Some(mut conversation) = get::<Conversation>(&self.inner.trees.conversations, "conversations", key)? else {
            return Ok(None);
        };
        conversation.last_at = conversation.started_at;
        if let Some(last) = self.inner.trees.transcripts.scan_prefix(conversation.id.as_bytes()).values().next_back() {
            let turn: Vec<Entry> = decode("transcripts", &last?)?;
            conversation.last_at = turn.last().map_or(conversation.started_at, |e| e.at);
        }
        Ok(Some(conversation))
    }

    pub fn conversations(&self) -> impl Iterator<Item = Result<Conversation>> + '_ {
        self.inner.trees.conversations.iter().keys().filter_map(move |k| match k {
            Ok(key) => self.conversation_by_key(&key).transpose(),
            Err(e) => Some(Err(e.into())),
        })
    }

    pub fn visitor_by_email(&self, email: &str) -> Result<Option<Profile>> {
        match self.inner.trees.emails.get(email.as_bytes())? {
            Some(id) => get(&self.inner.trees.visitors, "visitors", &id),
            None => Ok(None),
        }
    }

    pub fn order(&self, id: &str) -> Result<Option<Order>> {
        get(&self.inner.trees.orders, "orders", id.as_bytes())
    }

    /// Every visitor, oldest first.
    pub fn visitors(&self) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.inner.trees.visitors.iter().values().map(|v| decode("visitors", &v?))
    }

    pub fn visitor_count(&self) -> usize {
        self.inner.trees.visitors.len()
    }

    /// Visitors with a status, from the index (no scan of all visitors).
    pub fn visitors_with_status(&self, status: Status) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.indexed(&self.inner.trees.leads_by_status, vec![status as u8])
    }

    /// Visitors whose campaign is `campaign`, from the index.
    pub fn visitors_in_campaign(&self, campaign: &str) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.indexed(&self.inner.trees.leads_by_campaign, campaign_prefix(campaign))
    }

    fn indexed<'a>(&'a self, index: &sled::Tree, prefix: Vec<u8>) -> impl Iterator<Item = Result<Profile>> + 'a {
        let len = prefix.len();
        index.scan_prefix(prefix).keys().filter_map(move |key| match key {
            Ok(key) => self.visitor_by_key(&key[len..]).transpose(),
            Err(e) => Some(Err(e.into())),
        })
    }

    fn visitor_by_key(&self, key: &[u8]) -> Result<Option<Profile>> {
        get(&self.inner.trees.visitors, "visitors", key)
    }

    /// A visitor's conversations, oldest first.
    pub fn conversations_of(&self, visitor: &VisitorId) -> Result<Vec<Conversation>> {
        let mut out = Vec::new();
        for key in self.inner.trees.visitor_conversations.scan_prefix(visitor.as_bytes()).keys() {
            out.extend(self.conversation_by_key(&key?[16..])?);
        }
        Ok(out)
    }

    /// Every entry of a conversation, in order.
    pub fn transcript(&self, conversation: &ConversationId) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for turn in self.inner.trees.transcripts.scan_prefix(conversation.as_bytes()).values() {
            entries.extend(decode::<Vec<Entry>>("transcripts", &turn?)?);
        }
        Ok(entries)
    }

    /// Pending follow-ups due at `now`, earliest first, at most `limit`.
    pub fn due_follow_ups(&self, now: u64, limit: usize) -> Result<Vec<OutboxItem>> {
        let mut due = Vec::new();
        for key in self.inner.trees.outbox_due.range(..(now + 1).to_be_bytes()).keys().take(limit) {
            let key = key?;
            due.extend(get::<OutboxItem>(&self.inner.trees.outbox, "outbox", &key[8..])?);
        }
        Ok(due)
    }

    /// When the earliest pending follow-up is due.
    pub fn next_follow_up_at(&self) -> Result<Option<u64>> {
        Ok(self.inner.trees.outbox_due.first()?.map(|(key, _)| {
            let mut due = [0u8; 8];
            due.copy_from_slice(&key[..8]);
            u64::from_be_bytes(due)
        }))
    }

    pub fn follow_up(&self, id: &OutboxId) -> Result<Option<OutboxItem>> {
        get(&self.inner.trees.outbox, "outbox", id.as_bytes())
    }

    /// Every follow-up ever scheduled, oldest first.
    pub fn follow_ups(&self) -> impl Iterator<Item = Result<OutboxItem>> + '_ {
        self.inner.trees.outbox.iter().values().map(|v| decode("outbox", &v?))
    }

    /// Whether a visitor was erased (a tombstone is all that is left).
    pub fn is_erased(&self, visitor: &VisitorId) -> Result<bool> {
        erase::is_erased(&self.inner.trees, visitor)
    }

    /// Runs a blocking read on the runtime's blocking pool, so sled never stalls a session task.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(|_| StoreError::Closed)?
    }

    /// Flushes whatever is buffered; used on shutdown.
    pub fn flush(&self) -> Result<()> {
        self.inner.db.flush()?;
        Ok(())
    }
}

/// Index key prefix of a campaign: its bytes and a 0 byte, so `spring` does not match `spring2`.
fn campaign_prefix(campaign: &str) -> Vec<u8> {
    let mut key: Vec<u8> = campaign.bytes().filter(|b| *b != 0).collect();
    key.push(0);
    key
}

fn turn_key(conversation: &ConversationId, id: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[..16].copy_from_slice(conversation.as_bytes());
    key[16..].copy_from_slice(&id.to_be_bytes());
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![VALUE_VERSION];
    serde_json::to_writer(&mut out, value).expect("store values serialize");
    out
}

fn decode<T: DeserializeOwned>(tree: &'static str, raw: &[u8]) -> Result<T> {
    match raw.split_first() {
        Some((&VALUE_VERSION, json)) => {
            serde_json::from_slice(json).map_err(|e| StoreError::Corrupt { tree, reason: e.to_string() })
        }
        Some((v, _)) => Err(StoreError::Corrupt { tree, reason: format!("unknown value version {v}") }),
        None => Err(StoreError::Corrupt { tree, reason: "empty value".into() }),
    }
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, name: &'static str, key: &[u8]) -> Result<Option<T>> {
    tree.get(key)?.map(|v| decode(name, &v)).transpose()
}
