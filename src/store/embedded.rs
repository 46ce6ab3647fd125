//! The embedded backend: sled in `<data>/store`, one process per directory. Storage layout (tree
//! names, keys, values) is written down in ARCHITECTURE.md.
//!
//! A batch of commands is all or nothing (`apply.rs` stages it, `journal.rs` makes its writes
//! survive a crash whole or not at all), and commits go through one writer thread (`writer.rs`)
//! that applies every batch waiting in its queue, syncs the journal once, then acknowledges them
//! all: a group commit. A caller whose `commit` returned knows its batch is on disk.

mod apply;
pub(super) mod compact;
mod erase;
mod journal;
mod outbox;
mod overlay;
mod profiles;
#[cfg(test)]
mod tests;
mod turns;
mod writer;

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Serialize, de::DeserializeOwned};

use super::{Command, EmailEvent, Result, Seen, Stats, StoreError, private_dir};
use crate::domain::{Conversation, Entry, Order, OutboxItem, Profile, Spend, Status};
use crate::ids::{AdminSessionId, ConversationId, OutboxId, VisitorId};

/// Every value starts with this version byte; a reader that meets another refuses it loudly
/// instead of misreading it.
const VALUE_VERSION: u8 = 1;

/// Serializes `value` with postcard after what `bytes` holds. Postcard's own `to_extend` copies
/// a byte at a time (through `Extend`); this copies slices: a quarter fewer instructions for
/// each profile and turn the writer encodes (BENCHMARKS.md, twenty-fifth session).
fn postcard_after<T: Serialize + ?Sized>(value: &T, bytes: Vec<u8>) -> postcard::Result<Vec<u8>> {
    struct Slices(Vec<u8>);
    impl postcard::ser_flavors::Flavor for Slices {
        type Output = Vec<u8>;
        fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
            self.0.extend_from_slice(data);
            Ok(())
        }
        fn try_push(&mut self, data: u8) -> postcard::Result<()> {
            self.0.push(data);
            Ok(())
        }
        fn finalize(self) -> postcard::Result<Vec<u8>> {
            Ok(self.0)
        }
    }
    postcard::serialize_with_flavor(value, Slices(bytes))
}

pub(super) struct Embedded {
    db: sled::Db,
    trees: Trees,
    writer: writer::Handle,
    stats: Arc<Stats>,
}

/// The sled trees, by name (ARCHITECTURE.md describes each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum T {
    Visitors,
    Conversations,
    VisitorConversations,
    Transcripts,
    Emails,
    LeadsByStatus,
    LeadsByCampaign,
    Orders,
    Outbox,
    OutboxDue,
    OutboxPending,
    /// Erased visitor ids → when (u64 ms BE).
    Erased,
    /// Groups being applied (`store/journal.rs`).
    Journal,
    /// Live admin sessions → when they expire (u64 ms BE).
    AdminSessions,
    /// Last seen (u64 ms BE) ++ visitor id: the admin's newest-first pages.
    LeadsBySeen,
    /// Hashes of email links that were used → when their tokens expire (u64 ms BE).
    SpentLinks,
    /// Date ++ 0x00 ++ campaign ++ 0x00 ++ platform → `Spend`.
    Spend,
    /// Outbox id ++ event (0 opened, 1 clicked) → when it first happened (u64 ms BE).
    EmailEvents,
    /// Trigger id ++ 0x00 ++ teaser variant (u32 BE) → times shown (u64 BE).
    TriggersShown,
    /// Group sequence → the group's turns, until merged into `transcripts` (`store/turns.rs`).
    RecentTurns,
    /// Conversation id → its pending question (`Option<Pending>`), once it was set.
    Pending,
    /// Conversation id → its language (`String`), once it changed.
    Locales,
}

impl T {
    const ALL: [T; 22] = [
        T::Visitors,
        T::Conversations,
        T::VisitorConversations,
        T::Transcripts,
        T::Emails,
        T::LeadsByStatus,
        T::LeadsByCampaign,
        T::Orders,
        T::Outbox,
        T::OutboxDue,
        T::OutboxPending,
        T::Erased,
        T::Journal,
        T::AdminSessions,
        T::LeadsBySeen,
        T::SpentLinks,
        T::Spend,
        T::EmailEvents,
        T::TriggersShown,
        T::RecentTurns,
        T::Pending,
        T::Locales,
    ];

    fn name(self) -> &'static str {
        match self {
            T::Visitors => "visitors",
            T::Conversations => "conversations",
            T::VisitorConversations => "visitor_conversations",
            T::Transcripts => "transcripts",
            T::Emails => "emails",
            T::LeadsByStatus => "leads_by_status",
            T::LeadsByCampaign => "leads_by_campaign",
            T::Orders => "orders",
            T::Outbox => "outbox",
            T::OutboxDue => "outbox_due",
            T::OutboxPending => "outbox_pending",
            T::Erased => "erased",
            T::Journal => "journal",
            T::AdminSessions => "admin_sessions",
            T::LeadsBySeen => "leads_by_seen",
            T::SpentLinks => "spent_links",
            T::Spend => "spend",
            T::EmailEvents => "email_events",
            T::TriggersShown => "triggers_shown",
            T::RecentTurns => "recent_turns",
            T::Pending => "pending",
            T::Locales => "conversation_locales",
        }
    }
}

type KeyValue = sled::Result<(sled::IVec, sled::IVec)>;
type Scan = Box<dyn Iterator<Item = KeyValue> + Send>;

/// The sled trees, the writes that wait for a checkpoint, and the journal that keeps those.
/// Indexing gives a tree as sled has it; the methods answer as the store has it.
#[derive(Clone)]
struct Trees {
    trees: [sled::Tree; T::ALL.len()],
    overlay: Arc<overlay::Overlay>,
    journal: Arc<journal::Journal>,
}

impl std::ops::Index<T> for Trees {
    type Output = sled::Tree;

    fn index(&self, tree: T) -> &sled::Tree {
        &self.trees[tree as usize]
    }
}

impl Trees {
    fn get(&self, tree: T, key: &[u8]) -> Result<Option<sled::IVec>> {
        match self.overlay.get(tree, key) {
            Some(waiting) => Ok(waiting.map(sled::IVec::from)),
            None => Ok(self[tree].get(key)?),
        }
    }

    fn contains(&self, tree: T, key: &[u8]) -> Result<bool> {
        match self.overlay.contains(tree, key) {
            Some(waiting) => Ok(waiting),
            None => Ok(self[tree].contains_key(key)?),
        }
    }

    /// Every key and value of `tree`, in key order.
    fn iter(&self, tree: T) -> Scan {
        self.within(tree, (Bound::Unbounded, Bound::Unbounded), false)
    }

    /// The keys and values of `tree` that start with `prefix`, in key order.
    fn scan_prefix(&self, tree: T, prefix: &[u8]) -> Scan {
        self.within(tree, overlay::prefix_bounds(prefix), false)
    }

    /// The last key and value of `tree` that start with `prefix`.
    fn last_with_prefix(&self, tree: T, prefix: &[u8]) -> Option<KeyValue> {
        self.within(tree, overlay::prefix_bounds(prefix), true).next()
    }

    /// The keys and values of `tree` within `bounds`, in key order or from the last (`descending`).
    fn within(&self, tree: T, bounds: overlay::Bounds, descending: bool) -> Scan {
        let mut waiting = self.overlay.within(tree, &bounds);
        if descending {
            waiting.reverse();
        }
        let waiting = waiting.into_iter().map(|(key, value)| (sled::IVec::from(key), value.map(sled::IVec::from)));
        let stored = self[tree].range(bounds);
        match descending {
            false => Box::new(overlay::Union::new(waiting, stored, false)),
            true => Box::new(overlay::Union::new(waiting, stored.rev(), true)),
        }
    }

    /// How many keys `tree` has (a count to show: a key sled cannot read counts as absent).
    fn len(&self, tree: T) -> usize {
        let mut len = self[tree].len();
        for (key, value) in self.overlay.range(tree, &[]) {
            match (self[tree].contains_key(&key).unwrap_or(false), value.is_some()) {
                (false, true) => len += 1,
                (true, false) => len = len.saturating_sub(1),
                _ => {}
            }
        }
        len
    }
}

fn trigger_key(trigger: &str, variant: u32) -> Vec<u8> {
    [trigger.as_bytes(), &[0], &variant.to_be_bytes()].concat()
}

fn trigger_key_parts(key: &[u8]) -> Option<(String, u32)> {
    let (trigger, variant) = key.split_at_checked(key.len().checked_sub(5)?)?;
    let variant = u32::from_be_bytes(variant.get(1..)?.try_into().ok()?);
    Some((String::from_utf8(trigger.to_vec()).ok()?, variant))
}

fn event_key(item: &OutboxId, event: EmailEvent) -> Vec<u8> {
    let mut key = item.as_bytes().to_vec();
    key.push(event as u8);
    key
}

/// Opens the sled database at `path` in the data directory `dir`; another process holding it is
/// `Locked`.
fn open_db(dir: &Path, path: &Path) -> Result<sled::Db> {
    sled::Config::new().path(path).open().map_err(|e| match e {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock || io.to_string().contains("lock") => {
            StoreError::Locked(dir.display().to_string())
        }
        other => StoreError::Sled(other),
    })
}

impl Embedded {
    pub(super) fn open(dir: &Path) -> Result<Embedded> {
        private_dir(dir).map_err(io)?;
        let journal_dir = dir.join("journal");
        let (db, replayed) = compact::open(dir, |db| journal::replay(db, &journal_dir))?;
        let mut trees = Vec::with_capacity(T::ALL.len());
        for tree in T::ALL {
            trees.push(db.open_tree(tree.name())?);
        }
        if replayed.groups > 0 {
            log::warn!(
                "store: replayed {} group(s) of writes from the journal: the last stop was not clean",
                replayed.groups
            );
        }
        let trees = Trees {
            trees: trees.try_into().expect("one tree per name in T::ALL"),
            overlay: Default::default(),
            journal: Arc::new(journal::Journal::create(&journal_dir, replayed.next)?),
        };
        let stats = Arc::new(Stats::default());
        index_last_seen(&trees)?;
        turns::merge(&trees)?;
        let memory = apply::Memory::load(&trees)?;
        let writer = writer::spawn(db.clone(), trees.clone(), memory, stats.clone());
        Ok(Embedded { db, trees, writer, stats })
    }

    /// Applies every command, all or nothing, and returns once they are durable on disk.
    pub(super) async fn commit(&self, commands: Vec<Command>) -> Result<()> {
        self.writer.commit(commands).await
    }

    /// `commit` for callers outside the async runtime (command line, tests).
    pub(super) fn commit_blocking(&self, commands: Vec<Command>) -> Result<()> {
        self.writer.commit_blocking(commands)
    }

    pub(super) fn stats(&self) -> (u64, u64) {
        let s = &self.stats;
        (s.batches.load(Ordering::Relaxed), s.flushes.load(Ordering::Relaxed))
    }

    pub(super) fn visitor(&self, id: &VisitorId) -> Result<Option<Profile>> {
        self.visitor_by_key(id.as_bytes())
    }

    /// The visitor's most recent conversation.
    pub(super) fn latest_conversation(&self, visitor: &VisitorId) -> Result<Option<Conversation>> {
        let Some(last) = self.trees.last_with_prefix(T::VisitorConversations, visitor.as_bytes()) else {
            return Ok(None);
        };
        let (key, _) = last?;
        self.conversation_by_key(&key[16..])
    }

    pub(super) fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        self.conversation_by_key(id.as_bytes())
    }

    fn conversation_by_key(&self, key: &[u8]) -> Result<Option<Conversation>> {
        let Some(mut conversation) = get::<Conversation>(&self.trees, T::Conversations, key)? else {
            return Ok(None);
        };
        // Set apart since they change every few messages, and so are written without reading
        // or rewriting the conversation (stores from before keep them in the body).
        if let Some(pending) = get(&self.trees, T::Pending, key)? {
            conversation.pending = pending;
        }
        if let Some(locale) = get(&self.trees, T::Locales, key)? {
            conversation.locale = locale;
        }
        conversation.last_at = conversation.started_at;
        if let Some(last) = turns::last_of_conversation(&self.trees, conversation.id.as_bytes())? {
            conversation.last_at = turns::decode(&last)?.last().map_or(conversation.started_at, |e| e.at);
        }
        Ok(Some(conversation))
    }

    pub(super) fn conversations(&self) -> impl Iterator<Item = Result<Conversation>> + '_ {
        self.trees.iter(T::Conversations).filter_map(move |entry| match entry {
            Ok((key, _)) => self.conversation_by_key(&key).transpose(),
            Err(e) => Some(Err(e.into())),
        })
    }

    pub(super) fn visitor_by_email(&self, email: &str) -> Result<Option<Profile>> {
        match self.trees.get(T::Emails, email.as_bytes())? {
            Some(id) => self.visitor_by_key(&id),
            None => Ok(None),
        }
    }

    pub(super) fn order(&self, id: &str) -> Result<Option<Order>> {
        get(&self.trees, T::Orders, id.as_bytes())
    }

    /// Every visitor, oldest first.
    pub(super) fn visitors(&self) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.trees.iter(T::Visitors).map(|entry| profiles::decode(&entry?.1))
    }

    pub(super) fn visitor_count(&self) -> usize {
        self.trees.len(T::Visitors)
    }

    /// Visitors seen last first, from the index, starting after `after` (the last of the page
    /// before): a cursor, so a page costs what it shows, however many leads there are.
    pub(super) fn visitors_by_last_seen(
        &self,
        after: Option<Seen>,
    ) -> impl Iterator<Item = Result<(Seen, Profile)>> + '_ {
        let before = match after {
            Some(after) => Bound::Excluded(after.key().to_vec()),
            None => Bound::Unbounded,
        };
        self.trees.within(T::LeadsBySeen, (Bound::Unbounded, before), true).filter_map(move |entry| {
            let key = match entry {
                Ok((key, _)) => key,
                Err(e) => return Some(Err(e.into())),
            };
            let seen = Seen::from_key(&key)?;
            self.visitor_by_key(&key[8..]).map(|p| p.map(|p| (seen, p))).transpose()
        })
    }

    /// How many visitors have `status`, counted in the index.
    pub(super) fn count_with_status(&self, status: Status) -> usize {
        self.trees.scan_prefix(T::LeadsByStatus, &[status as u8]).count()
    }

    /// How many visitors came last from `campaign`, counted in the index.
    pub(super) fn count_in_campaign(&self, campaign: &str) -> usize {
        self.trees.scan_prefix(T::LeadsByCampaign, &campaign_prefix(campaign)).count()
    }

    /// Visitors with a status, from the index (no scan of all visitors).
    pub(super) fn visitors_with_status(&self, status: Status) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.indexed(T::LeadsByStatus, vec![status as u8])
    }

    /// Visitors whose campaign is `campaign`, from the index.
    pub(super) fn visitors_in_campaign(&self, campaign: &str) -> impl Iterator<Item = Result<Profile>> + '_ {
        self.indexed(T::LeadsByCampaign, campaign_prefix(campaign))
    }

    fn indexed(&self, index: T, prefix: Vec<u8>) -> impl Iterator<Item = Result<Profile>> + '_ {
        let len = prefix.len();
        self.trees.scan_prefix(index, &prefix).filter_map(move |entry| match entry {
            Ok((key, _)) => self.visitor_by_key(&key[len..]).transpose(),
            Err(e) => Some(Err(e.into())),
        })
    }

    fn visitor_by_key(&self, key: &[u8]) -> Result<Option<Profile>> {
        self.trees.get(T::Visitors, key)?.map(|v| profiles::decode(&v)).transpose()
    }

    /// A visitor's conversations, oldest first.
    pub(super) fn conversations_of(&self, visitor: &VisitorId) -> Result<Vec<Conversation>> {
        let mut out = Vec::new();
        for entry in self.trees.scan_prefix(T::VisitorConversations, visitor.as_bytes()) {
            out.extend(self.conversation_by_key(&entry?.0[16..])?);
        }
        Ok(out)
    }

    /// Every entry of a conversation, in order.
    pub(super) fn transcript(&self, conversation: &ConversationId) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for turn in turns::of_conversation(&self.trees, conversation.as_bytes())?.values() {
            entries.extend(turns::decode(turn)?);
        }
        Ok(entries)
    }

    /// Pending follow-ups due at `now`, earliest first, at most `limit`.
    pub(super) fn due_follow_ups(&self, now: u64, limit: usize) -> Result<Vec<OutboxItem>> {
        let mut due = Vec::new();
        let before = Bound::Excluded((now + 1).to_be_bytes().to_vec());
        for entry in self.trees.within(T::OutboxDue, (Bound::Unbounded, before), false).take(limit) {
            let (key, _) = entry?;
            due.extend(get::<OutboxItem>(&self.trees, T::Outbox, &key[8..])?);
        }
        Ok(due)
    }

    /// When the earliest pending follow-up is due.
    pub(super) fn next_follow_up_at(&self) -> Result<Option<u64>> {
        Ok(self.trees.iter(T::OutboxDue).next().transpose()?.map(|(key, _)| {
            let mut due = [0u8; 8];
            due.copy_from_slice(&key[..8]);
            u64::from_be_bytes(due)
        }))
    }

    pub(super) fn follow_up(&self, id: &OutboxId) -> Result<Option<OutboxItem>> {
        get(&self.trees, T::Outbox, id.as_bytes())
    }

    /// Every follow-up ever scheduled, oldest first.
    pub(super) fn follow_ups(&self) -> impl Iterator<Item = Result<OutboxItem>> + '_ {
        self.trees.iter(T::Outbox).map(|entry| decode("outbox", &entry?.1))
    }

    /// Whether the admin session `id` exists and has not expired at `now`.
    pub(super) fn admin_session_live(&self, id: &AdminSessionId, now: u64) -> Result<bool> {
        let expires = self.trees.get(T::AdminSessions, id.as_bytes())?;
        Ok(expires.and_then(|e| ms_be(&e)).is_some_and(|expires| expires > now))
    }

    /// Whether `event` happened to the sent email `item`.
    pub(super) fn email_event(&self, item: &OutboxId, event: EmailEvent) -> Result<bool> {
        self.trees.contains(T::EmailEvents, &event_key(item, event))
    }

    /// When each marketing email (follow-up) to the visitor was sent (ms). Reads the whole
    /// outbox: fine for the outbox's size today, an index once it grows large.
    pub(super) fn marketing_sent_to(&self, visitor: &VisitorId) -> Result<Vec<u64>> {
        let mut sent = Vec::new();
        for item in self.follow_ups() {
            let item = item?;
            if let (true, Some(_), crate::domain::OutboxState::Sent { at }) =
                (item.visitor == *visitor, item.job.marketing_email(), &item.state)
            {
                sent.push(*at);
            }
        }
        Ok(sent)
    }

    pub(super) fn triggers_shown(&self) -> Result<std::collections::BTreeMap<(String, u32), u64>> {
        let mut out = std::collections::BTreeMap::new();
        for row in self.trees.iter(T::TriggersShown) {
            let (key, count) = row?;
            let corrupt = || StoreError::Corrupt { tree: "triggers_shown", reason: "bad key or count".into() };
            let (trigger, variant) = trigger_key_parts(&key).ok_or_else(corrupt)?;
            out.insert((trigger, variant), ms_be(&count).ok_or_else(corrupt)?);
        }
        Ok(out)
    }

    /// Every ad spend row, by date.
    pub(super) fn spend(&self) -> impl Iterator<Item = Result<Spend>> + '_ {
        self.trees.iter(T::Spend).map(|entry| decode("spend", &entry?.1))
    }

    /// Whether the email link with this hash was already used.
    pub(super) fn link_spent(&self, link: &[u8; 16]) -> Result<bool> {
        self.trees.contains(T::SpentLinks, link)
    }

    /// Whether a visitor was erased (a tombstone is all that is left).
    pub(super) fn is_erased(&self, visitor: &VisitorId) -> Result<bool> {
        self.trees.contains(T::Erased, visitor.as_bytes())
    }

    /// Writes what waits in the overlay into the trees now, as the checkpoint thread does.
    fn checkpoint(&self) -> Result<()> {
        overlay::checkpoint(&self.db, &self.trees)
    }

    /// Flushes whatever is buffered; used on shutdown, which also checkpoints, so that the next
    /// open has no journal to replay.
    pub(super) fn flush(&self) -> Result<()> {
        self.checkpoint()?;
        self.db.flush()?;
        Ok(())
    }
}

/// Stores made before `leads_by_seen` existed get it built once, at open.
fn index_last_seen(trees: &Trees) -> Result<()> {
    if !trees[T::LeadsBySeen].is_empty() || trees[T::Visitors].is_empty() {
        return Ok(());
    }
    for value in trees[T::Visitors].iter().values() {
        let profile = profiles::decode(&value?)?;
        let seen = Seen { at: profile.last_seen_at, visitor: profile.id };
        trees[T::LeadsBySeen].insert(seen.key(), &[])?;
    }
    Ok(())
}

/// A file system error, as the store reports it.
fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(e.into())
}

/// A stored time: milliseconds, big-endian (an admin session's expiry).
fn ms_be(raw: &[u8]) -> Option<u64> {
    raw.try_into().ok().map(u64::from_be_bytes)
}

/// Index key prefix of a campaign: its bytes and a 0 byte, so `spring` does not match `spring2`.
fn campaign_prefix(campaign: &str) -> Vec<u8> {
    let mut key: Vec<u8> = campaign.bytes().filter(|b| *b != 0).collect();
    key.push(0);
    key
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // About a profile's size: growing from a few bytes would copy it several times.
    let mut out = Vec::with_capacity(512);
    out.push(VALUE_VERSION);
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

fn get<V: DeserializeOwned>(trees: &Trees, tree: T, key: &[u8]) -> Result<Option<V>> {
    trees.get(tree, key)?.map(|v| decode(tree.name(), &v)).transpose()
}
