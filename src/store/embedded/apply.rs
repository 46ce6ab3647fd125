//! Applying commands, all or nothing. The writer thread stages each batch of a group in memory
//! (`Batch`: its reads see what is stored plus what the group and the batch staged before, its
//! writes go to the overlay only), so a command that fails leaves nothing of its batch behind.
//! The staged writes of every batch that succeeded are then appended to the journal as one
//! record (`store/journal.rs`), so a crash cannot leave part of a group either, and wait in the
//! overlay (`store/overlay.rs`) for a checkpoint to write them into the trees.
//!
//! Being the only writer, the writer thread also keeps what the hot path would otherwise read
//! (`Memory`): which visitors were erased, which conversations exist and which are gone, and
//! the profiles it wrote last (a chat message that records a preference would otherwise read
//! and decode the profile's JSON first: a tenth of the writer's time). A batch takes its
//! profile out of `Memory` rather than copying it (a copy per message was a tenth of the
//! writer's time again): a batch that fails leaves the profile out, and it is read from the
//! trees next time.

use std::collections::BTreeMap;

// foldhash: the writer looks ids up several times per command.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{Command, Result, T, Trees, campaign_prefix, encode, erase, outbox, profiles, turns};
use crate::domain::{Change, Profile, Status};
use crate::ids::{ConversationId, TurnId, VisitorId};

/// Staged writes: `Some` inserts, `None` removes. Ordered, so prefix scans can merge them.
type Staged = super::overlay::Writes;

/// A turn staged for the group's `recent_turns` value: conversation, turn, `turns::encode`.
type Turn = (ConversationId, TurnId, Vec<u8>);

/// What the writer thread knows without reading the store.
pub(super) struct Memory {
    /// Every tombstone (loaded at open: erasures are few).
    erased: HashSet<VisitorId>,
    /// Conversations expired or erased since the store was opened: a session still open on one
    /// must not write turns into it. (Sessions do not outlive the process, so earlier ones
    /// cannot be written to.)
    gone: HashSet<ConversationId>,
    /// Conversations the writer opened or found stored, at most `CONVERSATIONS` (then it starts
    /// again): the pending question and the language, written every few messages, are only
    /// stored for a conversation that exists, and this answers without reading a tree.
    conversations: HashSet<ConversationId>,
    /// Profiles as the writer last stored them, at most `PROFILES` (then it starts again).
    /// Boxed, here and wherever a batch moves one: a `Profile` is 520 bytes, and a message that
    /// changed one moved it five times, copies of memory long out of the caches.
    profiles: HashMap<VisitorId, Box<Profile>>,
}

/// How many written profiles `Memory` keeps: a few thousand chats' worth.
const PROFILES: usize = 4096;
/// How many conversations `Memory` knows exist (16 bytes each).
const CONVERSATIONS: usize = 65_536;

impl Memory {
    pub(super) fn load(trees: &Trees) -> Result<Memory> {
        let mut erased = HashSet::new();
        for key in trees[T::Erased].iter().keys() {
            if let Ok(id) = VisitorId::from_bytes(&key?) {
                erased.insert(id);
            }
        }
        Ok(Memory { erased, gone: HashSet::new(), conversations: HashSet::new(), profiles: HashMap::new() })
    }
}

/// The batches of one group commit, staged over the trees.
pub(super) struct Group<'a> {
    trees: &'a Trees,
    staged: Staged,
    erased: HashSet<VisitorId>,
    gone: HashSet<ConversationId>,
    /// Conversations the staged batches opened or found stored.
    known: Vec<ConversationId>,
    /// The profiles the staged batches leave (`None`: erased).
    profiles: HashMap<VisitorId, Option<Box<Profile>>>,
    turns: Vec<Turn>,
}

impl<'a> Group<'a> {
    pub(super) fn new(trees: &'a Trees) -> Self {
        Group {
            trees,
            staged: Staged::new(),
            erased: HashSet::new(),
            gone: HashSet::new(),
            known: Vec::new(),
            profiles: HashMap::new(),
            turns: Vec::new(),
        }
    }

    /// Stages one batch; when a command fails, nothing of the batch is staged.
    pub(super) fn stage(&mut self, memory: &mut Memory, commands: &[Command]) -> Result<()> {
        let mut batch = Batch {
            group: self,
            memory,
            own: Staged::new(),
            profiles: BTreeMap::new(),
            erased: HashSet::new(),
            gone: HashSet::new(),
            known: Vec::new(),
            written: Vec::new(),
            turns: Vec::new(),
        };
        for command in commands {
            batch.apply(command)?;
        }
        batch.finish_profiles();
        let Batch { own, erased, gone, known, written, turns, .. } = batch;
        self.staged.extend(own);
        self.erased.extend(erased);
        self.gone.extend(gone);
        self.known.extend(known);
        self.profiles.extend(written);
        self.turns.extend(turns);
        Ok(())
    }

    /// Writes everything staged and the group's turns as one `recent_turns` value under `seq`:
    /// the journal record, then every write into the overlay, for the checkpoint to write into
    /// the trees. Then remembers what was erased and expired.
    pub(super) fn commit(mut self, memory: &mut Memory, seq: u64) -> Result<()> {
        let trees = self.trees;
        // A conversation erased or expired later in the group takes its turns with it.
        self.turns.retain(|(conversation, ..)| !self.gone.contains(conversation));
        if !self.turns.is_empty() {
            let records = self.turns.iter().map(|(conversation, turn, value)| turns::Stored {
                conversation: conversation.as_bytes(),
                turn: turn.as_bytes(),
                value,
            });
            self.staged.insert((T::RecentTurns, seq.to_be_bytes().to_vec()), Some(turns::encode_records(records)));
        }
        if !self.staged.is_empty() {
            let writes = self.staged.iter().map(|((tree, key), value)| (*tree, key.as_slice(), value.as_deref()));
            // Nothing of the group is anywhere yet when this fails: the group fails whole.
            trees.journal.append(seq, writes).map_err(super::io)?;
        }
        trees.overlay.add(seq, self.staged);
        memory.erased.extend(self.erased);
        if memory.conversations.len() + self.known.len() > CONVERSATIONS {
            memory.conversations.clear();
        }
        memory.conversations.extend(self.known);
        for gone in &self.gone {
            memory.conversations.remove(gone);
        }
        memory.gone.extend(self.gone);
        if memory.profiles.len() + self.profiles.len() > PROFILES {
            memory.profiles.clear();
        }
        for (visitor, profile) in self.profiles {
            match profile {
                Some(profile) => memory.profiles.insert(visitor, profile),
                None => memory.profiles.remove(&visitor),
            };
        }
        Ok(())
    }
}

/// What the leads indexes held of a profile before the batch, and the profile as the batch's
/// commands left it.
struct Cached {
    before: Option<Indexed>,
    after: Option<Box<Profile>>,
}

/// What the leads indexes key a profile by (`index_keys`), compared before and after a batch so
/// that keys are built only for a batch that moves them (`finish_profiles`).
#[derive(PartialEq)]
struct Indexed {
    seen: u64,
    status: Status,
    campaign: Option<String>,
}

impl Indexed {
    fn of(profile: Option<&Profile>) -> Option<Indexed> {
        profile.map(|p| Indexed { seen: p.last_seen_at, status: p.status, campaign: p.campaign.clone() })
    }
}

/// One batch being staged: reads see the trees, then the group's staged writes, then its own.
pub(super) struct Batch<'g, 'a> {
    group: &'g Group<'a>,
    memory: &'g mut Memory,
    own: Staged,
    /// Profiles are decoded once per batch and encoded once at its end, however many changes.
    profiles: BTreeMap<VisitorId, Cached>,
    erased: HashSet<VisitorId>,
    gone: HashSet<ConversationId>,
    known: Vec<ConversationId>,
    /// The profiles `finish_profiles` staged, for the group and then `Memory`.
    written: Vec<(VisitorId, Option<Box<Profile>>)>,
    turns: Vec<Turn>,
}

impl Batch<'_, '_> {
    fn apply(&mut self, command: &Command) -> Result<()> {
        match command {
            Command::Visitor { visitor, .. } if self.is_erased(visitor) => {}
            &Command::Visitor { visitor, ref change } => {
                let cached = self.profile(visitor)?;
                match (&mut cached.after, &change) {
                    (None, Change::Create { at, locale }) => {
                        cached.after = Some(Box::new(Profile::new(visitor, *at, locale)))
                    }
                    (None, _) => {}
                    (Some(profile), change) => profile.apply(change),
                }
            }
            Command::LinkEmail { visitor, .. } if self.is_erased(visitor) => {}
            Command::LinkEmail { email, visitor } => {
                self.put(T::Emails, email.as_bytes().to_vec(), visitor.as_bytes().to_vec())
            }
            Command::RecordOrder(order) => {
                if self.get(T::Orders, order.id.as_bytes())?.is_none() {
                    self.put(T::Orders, order.id.as_bytes().to_vec(), encode(order));
                }
            }
            Command::OpenConversation(conversation) if self.is_erased(&conversation.visitor) => {}
            Command::OpenConversation(conversation) => {
                if !self.conversation_exists(&conversation.id)? {
                    self.known.push(conversation.id);
                    let mut index = conversation.visitor.as_bytes().to_vec();
                    index.extend_from_slice(conversation.id.as_bytes());
                    self.put(T::VisitorConversations, index, Vec::new());
                    self.put(T::Conversations, conversation.id.as_bytes().to_vec(), encode(conversation));
                }
            }
            Command::AppendTurn { conversation, .. } if self.is_gone(conversation) => {}
            &Command::AppendTurn { conversation, turn, ref entries } => {
                self.turns.push((conversation, turn, turns::encode(entries)));
            }
            // Small values of their own: the conversation is neither read nor written again.
            Command::SetPending { conversation, pending } => {
                if self.conversation_exists(conversation)? {
                    self.put(T::Pending, conversation.as_bytes().to_vec(), encode(pending));
                }
            }
            Command::ConversationLocale { conversation, locale } => {
                if self.conversation_exists(conversation)? {
                    self.put(T::Locales, conversation.as_bytes().to_vec(), encode(locale));
                }
            }
            Command::Enqueue(item) if self.is_erased(&item.visitor) => {}
            Command::Enqueue(item) => outbox::enqueue(self, item)?,
            Command::Finish(item) => outbox::finish(self, item)?,
            Command::CancelFollowUps { visitor, reason, at } => outbox::cancel(self, visitor, reason, *at)?,
            Command::Erase { visitor, at } => erase::visitor(self, visitor, *at)?,
            Command::ExpireConversation(id) => erase::conversation(self, id)?,
            &Command::OpenAdminSession { id, at, expires_at } => {
                for (old, expires) in self.scan(T::AdminSessions, &[])? {
                    if super::ms_be(&expires).is_some_and(|expires| expires <= at) {
                        self.remove(T::AdminSessions, old);
                    }
                }
                self.put(T::AdminSessions, id.as_bytes().to_vec(), expires_at.to_be_bytes().to_vec());
            }
            Command::EndAdminSession(id) => self.remove(T::AdminSessions, id.as_bytes().to_vec()),
            Command::EmailEvent { item, event, at } => {
                let key = super::event_key(item, *event);
                if self.get(T::EmailEvents, &key)?.is_none() && self.get(T::Outbox, item.as_bytes())?.is_some() {
                    self.put(T::EmailEvents, key, at.to_be_bytes().to_vec());
                }
            }
            Command::TriggerShown { trigger, variant } => {
                let key = super::trigger_key(trigger, *variant);
                let shown = self.get(T::TriggersShown, &key)?.as_deref().and_then(super::ms_be).unwrap_or(0);
                self.put(T::TriggersShown, key, (shown + 1).to_be_bytes().to_vec());
            }
            Command::RecordSpend(spend) => {
                let key = [spend.date.as_bytes(), spend.campaign.as_bytes(), spend.platform.as_bytes()].join(&0u8);
                self.put(T::Spend, key, encode(spend));
            }
            Command::SpendLink { link, expires_at } => {
                self.put(T::SpentLinks, link.to_vec(), expires_at.to_be_bytes().to_vec());
            }
            &Command::ForgetSpentLinks { at } => {
                for (link, expires) in self.scan(T::SpentLinks, &[])? {
                    if super::ms_be(&expires).is_some_and(|expires| expires <= at) {
                        self.remove(T::SpentLinks, link);
                    }
                }
            }
        }
        Ok(())
    }

    /// What the batch or the group staged for `key`: `Some(None)` is a staged removal.
    fn staged(&self, tree: T, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        let staged = (tree, key.to_vec());
        self.own.get(&staged).or_else(|| self.group.staged.get(&staged))
    }

    pub(super) fn get(&self, tree: T, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.staged(tree, key) {
            Some(value) => Ok(value.clone()),
            None => Ok(self.group.trees.get(tree, key)?.map(|v| v.to_vec())),
        }
    }

    pub(super) fn contains(&self, tree: T, key: &[u8]) -> Result<bool> {
        match self.staged(tree, key) {
            Some(value) => Ok(value.is_some()),
            None => self.group.trees.contains(tree, key),
        }
    }

    pub(super) fn put(&mut self, tree: T, key: Vec<u8>, value: Vec<u8>) {
        self.own.insert((tree, key), Some(value));
    }

    pub(super) fn remove(&mut self, tree: T, key: Vec<u8>) {
        self.own.insert((tree, key), None);
    }

    /// Every key and value under `prefix`, as the batch would leave them.
    pub(super) fn scan(&self, tree: T, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut found = BTreeMap::new();
        for entry in self.group.trees.scan_prefix(tree, prefix) {
            let (key, value) = entry?;
            found.insert(key.to_vec(), Some(value.to_vec()));
        }
        for staged in [&self.group.staged, &self.own] {
            let within = staged
                .range((tree, prefix.to_vec())..)
                .take_while(|((t, key), _)| *t == tree && key.starts_with(prefix));
            for ((_, key), value) in within {
                found.insert(key.clone(), value.clone());
            }
        }
        Ok(found.into_iter().filter_map(|(key, value)| Some((key, value?))).collect())
    }

    pub(super) fn is_erased(&self, visitor: &VisitorId) -> bool {
        self.memory.erased.contains(visitor) || self.group.erased.contains(visitor) || self.erased.contains(visitor)
    }

    fn is_gone(&self, conversation: &ConversationId) -> bool {
        self.memory.gone.contains(conversation)
            || self.group.gone.contains(conversation)
            || self.gone.contains(conversation)
    }

    fn profile(&mut self, visitor: VisitorId) -> Result<&mut Cached> {
        if !self.profiles.contains_key(&visitor) {
            // The group's staged profiles and `Memory` are what the trees would say, decoded.
            // (The group's are copied: a batch that fails must leave the group's as they were.)
            let before = match (self.group.profiles.get(&visitor), self.memory.profiles.remove(&visitor)) {
                (Some(staged), _) => staged.clone(),
                (None, Some(stored)) => Some(stored),
                (None, None) => self
                    .get(T::Visitors, visitor.as_bytes())?
                    .map(|raw| profiles::decode(&raw).map(Box::new))
                    .transpose()?,
            };
            self.profiles.insert(visitor, Cached { before: Indexed::of(before.as_deref()), after: before });
        }
        Ok(self.profiles.get_mut(&visitor).expect("inserted above"))
    }

    /// Erasure: the profile is removed with the batch, and every later command for the
    /// visitor is dropped.
    pub(super) fn forget_visitor(&mut self, visitor: VisitorId, at: u64) -> Result<()> {
        self.put(T::Erased, visitor.as_bytes().to_vec(), at.to_be_bytes().to_vec());
        self.profile(visitor)?.after = None;
        self.erased.insert(visitor);
        Ok(())
    }

    pub(super) fn forget_conversation(&mut self, conversation: ConversationId) {
        self.gone.insert(conversation);
    }

    /// Whether the conversation is stored, and neither erased nor expired: from `Memory` when
    /// the writer opened or found it before, otherwise from the trees (and learned).
    fn conversation_exists(&mut self, id: &ConversationId) -> Result<bool> {
        if self.is_gone(id) {
            return Ok(false);
        }
        if self.memory.conversations.contains(id) {
            return Ok(true);
        }
        let stored = self.contains(T::Conversations, id.as_bytes())?;
        if stored {
            self.known.push(*id);
        }
        Ok(stored)
    }

    /// Writes the profiles the batch's commands touched, and keeps the seen, status and campaign
    /// indexes in step: only an index key that changed is written (most changes, a preference
    /// or a tag, move none of them).
    fn finish_profiles(&mut self) {
        for (visitor, Cached { before, after }) in std::mem::take(&mut self.profiles) {
            let indexed = Indexed::of(after.as_deref());
            if indexed != before {
                let (old, new) = (index_keys(&visitor, before.as_ref()), index_keys(&visitor, indexed.as_ref()));
                for (tree, key) in old.iter().filter(|k| !new.contains(k)) {
                    self.remove(*tree, key.clone());
                }
                for (tree, key) in new.into_iter().filter(|k| !old.contains(k)) {
                    self.put(tree, key, Vec::new());
                }
            }
            match &after {
                Some(after) => self.put(T::Visitors, visitor.as_bytes().to_vec(), profiles::encode(after)),
                None => self.remove(T::Visitors, visitor.as_bytes().to_vec()),
            }
            self.written.push((visitor, after));
        }
    }
}

/// The leads index keys of a profile.
fn index_keys(visitor: &VisitorId, indexed: Option<&Indexed>) -> Vec<(T, Vec<u8>)> {
    let Some(p) = indexed else { return Vec::new() };
    let mut keys = vec![
        (T::LeadsBySeen, super::Seen { at: p.seen, visitor: *visitor }.key().to_vec()),
        (T::LeadsByStatus, status_key(p.status, visitor)),
    ];
    keys.extend(p.campaign.as_ref().map(|c| (T::LeadsByCampaign, campaign_key(c, visitor))));
    keys
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
