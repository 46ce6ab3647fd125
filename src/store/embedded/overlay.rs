//! Write-behind for every tree.
//!
//! A group's journal record (`journal.rs`) is its durable copy: once the sync that covers it
//! returns, the group is acknowledged, and its writes wait here, in memory, where every read
//! looks first. A checkpoint (`checkpoint`, on its own thread, once a second or when `FULL`
//! writes wait) writes them into sled's trees, a key written many times once, the turns
//! straight into transcript chunks; after a flush it releases the journal files it covered.
//! This is a write-ahead log with lazily written pages, as a database keeps them: a chat
//! message costs an append to a file and a share of one `fdatasync`, and a chat that records a
//! preference at every message writes its profile into sled a few times a second instead of at
//! every message.
//!
//! Journal files are released oldest first, and only once the trees hold what they say (the
//! checkpoint's writes, flushed), so after a crash the records left are a suffix of the groups,
//! replayed in order at open over trees that hold at least everything before it: each key ends
//! as the last group wrote it.
//!
//! A checkpoint in progress writes a frozen copy of the writes (`frozen`), while groups go on
//! adding to `active`; reads look at `active`, then `frozen`, then the trees, and `frozen` is
//! emptied only after the trees have it, so no read ever falls between the two.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::{Result, T, Trees, turns};

/// Writes by tree and key: `Some` inserts, `None` removes.
pub(super) type Writes = BTreeMap<(T, Vec<u8>), Option<Vec<u8>>>;

/// A range of keys.
pub(super) type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The keys that start with `prefix`.
pub(super) fn prefix_bounds(prefix: &[u8]) -> Bounds {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return (Bound::Included(prefix.to_vec()), Bound::Excluded(end));
        }
    }
    (Bound::Included(prefix.to_vec()), Bound::Unbounded)
}

/// Writes waiting past this many ask for a checkpoint before the second is up.
pub(super) const FULL: usize = 4096;

#[derive(Default)]
pub(super) struct Overlay {
    layers: RwLock<Layers>,
    /// Held by a checkpoint, and by a group that erases from its staging to its writing: a
    /// checkpoint must not move turns the erasure is taking out.
    exclusive: Mutex<()>,
    /// Set by tests that look at the trees and the journal between checkpoints: the checkpoint
    /// thread then waits (for a call of `checkpoint`, or the store's close).
    #[cfg(test)]
    pub(super) paused: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Layers {
    /// What groups wrote since the last checkpoint began.
    active: Layer,
    /// What the checkpoint in progress is writing into the trees (empty between checkpoints).
    frozen: Arc<Layer>,
    /// The last group whose writes are in the trees or here.
    seq: u64,
    /// The last group a checkpoint wrote into the trees (its journal file released).
    released: u64,
}

#[derive(Default, Clone)]
struct Layer {
    writes: Writes,
    /// Which `recent_turns` values (their keys, a group's sequence) hold turns of a
    /// conversation. A reader of one conversation's turns decodes only those values, not a second
    /// of every chat's. Hashed by conversation: the writer adds a turn at every message, and an
    /// ordered set of (conversation, key) pairs cost it a tenth of its time in comparisons.
    turns: foldhash::HashMap<[u8; 16], Vec<[u8; 8]>>,
}

impl Layer {
    fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    fn insert(&mut self, key: (T, Vec<u8>), value: Option<Vec<u8>>) {
        if let (T::RecentTurns, Some(value)) = (key.0, &value) {
            // A value that does not read is refused by every reader of it; no entry needed.
            // So is a key that is not a sequence (the writer makes none).
            if let Ok(seq) = <[u8; 8]>::try_from(key.1.as_slice()) {
                for stored in turns::records(value).unwrap_or_default() {
                    let Ok(conversation) = stored.conversation.try_into() else { continue };
                    let values = self.turns.entry(conversation).or_default();
                    // Values are filed in sequence order, so only the last entry can be this
                    // one. (An erasure's rewrite of an older value may file it twice;
                    // `recent_turns` reads each key once.) Searching the whole list, hundreds of
                    // values a second long, was most of this call.
                    if values.last() != Some(&seq) {
                        values.push(seq);
                    }
                }
            }
        }
        self.writes.insert(key, value);
    }
}

impl Overlay {
    fn read(&self) -> RwLockReadGuard<'_, Layers> {
        self.layers.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Layers> {
        self.layers.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keeps checkpoints out while the guard lives.
    pub(super) fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.exclusive.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The writes of group `seq`, after its journal record.
    pub(super) fn add(&self, seq: u64, writes: impl IntoIterator<Item = ((T, Vec<u8>), Option<Vec<u8>>)>) {
        let mut layers = self.write();
        for (key, value) in writes {
            layers.active.insert(key, value);
        }
        layers.seq = seq;
    }

    /// Whether the checkpoint thread is to leave what waits alone (only tests pause it).
    pub(super) fn paused(&self) -> bool {
        #[cfg(test)]
        return self.paused.load(std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(test))]
        false
    }

    pub(super) fn is_full(&self) -> bool {
        self.read().active.writes.len() >= FULL
    }

    /// The write waiting for `key`, if one is: `Some(None)` is a removal.
    pub(super) fn get(&self, tree: T, key: &[u8]) -> Option<Option<Vec<u8>>> {
        self.find(tree, key, |value| value.map(<[u8]>::to_vec))
    }

    /// Whether the write waiting for `key`, if one is, leaves it there (without copying it).
    pub(super) fn contains(&self, tree: T, key: &[u8]) -> Option<bool> {
        self.find(tree, key, |value| value.is_some())
    }

    fn find<R>(&self, tree: T, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Option<R> {
        let layers = self.read();
        let key = (tree, key.to_vec());
        let waiting = layers.active.writes.get(&key).or_else(|| layers.frozen.writes.get(&key))?;
        Some(f(waiting.as_deref()))
    }

    /// The writes waiting under `prefix` in `tree`, in key order, each key once.
    pub(super) fn range(&self, tree: T, prefix: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        self.within(tree, &prefix_bounds(prefix))
    }

    /// The writes waiting in `tree` within `bounds`, in key order, each key once.
    pub(super) fn within(&self, tree: T, (low, high): &Bounds) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let start = match low {
            Bound::Included(key) => Bound::Included((tree, key.clone())),
            Bound::Excluded(key) => Bound::Excluded((tree, key.clone())),
            Bound::Unbounded => Bound::Included((tree, Vec::new())),
        };
        let below = |key: &[u8]| match high {
            Bound::Included(high) => key <= high.as_slice(),
            Bound::Excluded(high) => key < high.as_slice(),
            Bound::Unbounded => true,
        };
        let layers = self.read();
        let mut merged = BTreeMap::new();
        // `active` last: it is the newer.
        for layer in [&*layers.frozen, &layers.active] {
            let within = layer
                .writes
                .range((start.clone(), Bound::Unbounded))
                .take_while(|((t, key), _)| *t == tree && below(key));
            for ((_, key), value) in within {
                merged.insert(key.as_slice(), value.as_deref());
            }
        }
        merged.into_iter().map(|(key, value)| (key.to_vec(), value.map(<[u8]>::to_vec))).collect()
    }

    /// Calls `f` with each waiting `recent_turns` value that holds turns of `conversation`.
    pub(super) fn recent_turns<E>(
        &self,
        conversation: &[u8],
        mut f: impl FnMut(&[u8]) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        let layers = self.read();
        let Ok(conversation) = <&[u8; 16]>::try_from(conversation) else { return Ok(()) };
        let mut keys: BTreeSet<[u8; 8]> = BTreeSet::new();
        for layer in [&*layers.frozen, &layers.active] {
            keys.extend(layer.turns.get(conversation).into_iter().flatten().copied());
        }
        for key in keys {
            let key = (T::RecentTurns, key.to_vec());
            if let Some(Some(value)) = layers.active.writes.get(&key).or_else(|| layers.frozen.writes.get(&key)) {
                f(value)?;
            }
        }
        Ok(())
    }

    /// Starts a checkpoint: what is waiting becomes `frozen`. `None` when nothing waits and
    /// every group is in the trees.
    fn freeze(&self) -> Option<(Arc<Layer>, u64)> {
        let mut layers = self.write();
        if layers.active.is_empty() && layers.seq == layers.released {
            return None;
        }
        layers.frozen = Arc::new(std::mem::take(&mut layers.active));
        Some((layers.frozen.clone(), layers.seq))
    }

    /// Ends a checkpoint. One that failed puts its writes back under the newer ones, for the next.
    fn thaw(&self, written: bool) {
        let mut layers = self.write();
        let frozen = std::mem::take(&mut layers.frozen);
        if !written {
            let frozen = Arc::unwrap_or_clone(frozen);
            for (key, value) in frozen.writes {
                if !layers.active.writes.contains_key(&key) {
                    layers.active.insert(key, value);
                }
            }
        }
    }
}

/// How long a checkpoint computes before it gives way (`GiveWay`).
const SLICE: std::time::Duration = std::time::Duration::from_micros(200);

/// A checkpoint's writes take tens of milliseconds of CPU (at 5,000 messages a second, about
/// 4,000 sled inserts and 1,000 transcript chunks: 30–50 ms). The writer wakes many times
/// meanwhile, and woken on the checkpoint's core it waited out its scheduler slice
/// (`SCHED_BATCH` does not preempt), 4 ms each time and several times per sync: every commit
/// in flight stalled for the length of the checkpoint. So the checkpoint yields its core every
/// `SLICE`; with nobody else waiting for it, a yield returns at once.
pub(super) struct GiveWay {
    since: std::time::Instant,
}

impl GiveWay {
    pub(super) fn new() -> Self {
        GiveWay { since: std::time::Instant::now() }
    }

    pub(super) fn now_and_then(&mut self) {
        if self.since.elapsed() >= SLICE {
            std::thread::yield_now();
            self.since = std::time::Instant::now();
        }
    }
}

/// Writes what waits into the trees, flushes, and releases the journal files it covered.
pub(super) fn checkpoint(db: &sled::Db, trees: &Trees) -> Result<()> {
    let overlay = &trees.overlay;
    let _exclusive = overlay.exclusive();
    let Some((frozen, seq)) = overlay.freeze() else { return Ok(()) };
    let written = (|| {
        // The groups from here on go to a file of their own, which this checkpoint keeps.
        trees.journal.rotate()?;
        // sled may write a tree's pages to disk at any time: a write must not get there before
        // its group's journal record, or a crash could keep part of a group.
        trees.journal.sync().map_err(super::io)?;
        let mut give_way = GiveWay::new();
        let mut recent = Vec::new();
        for ((tree, key), value) in frozen.writes.iter() {
            give_way.now_and_then();
            match (tree, value) {
                (T::RecentTurns, Some(value)) => recent.push(value.as_slice()),
                (tree, Some(value)) => drop(trees[*tree].insert(key.as_slice(), value.as_slice())?),
                (tree, None) => drop(trees[*tree].remove(key.as_slice())?),
            }
        }
        turns::write_chunks(trees, recent, &mut give_way)?;
        db.flush()?;
        Ok::<_, super::StoreError>(())
    })();
    overlay.thaw(written.is_ok());
    written?;
    trees.journal.release(seq)?;
    overlay.write().released = seq;
    Ok(())
}

/// Two key-ordered streams as one: `newer` (writes, `None` a removal) over `older` (a tree),
/// both in ascending key order, or both descending (`descending`).
pub(super) struct Union<N: Iterator, O: Iterator> {
    newer: std::iter::Peekable<N>,
    older: std::iter::Peekable<O>,
    descending: bool,
}

impl<N: Iterator, O: Iterator> Union<N, O> {
    pub(super) fn new(newer: N, older: O, descending: bool) -> Self {
        Union { newer: newer.peekable(), older: older.peekable(), descending }
    }
}

impl<K: AsRef<[u8]>, V, E, N, O> Iterator for Union<N, O>
where
    N: Iterator<Item = (K, Option<V>)>,
    O: Iterator<Item = std::result::Result<(K, V), E>>,
{
    type Item = std::result::Result<(K, V), E>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            // `Less`: the newer stream's key comes first.
            let order = match (self.newer.peek(), self.older.peek()) {
                (None, _) | (_, Some(Err(_))) => return self.older.next(),
                (Some(_), None) => std::cmp::Ordering::Less,
                (Some((newer, _)), Some(Ok((older, _)))) => match self.descending {
                    false => newer.as_ref().cmp(older.as_ref()),
                    true => older.as_ref().cmp(newer.as_ref()),
                },
            };
            match order {
                std::cmp::Ordering::Greater => return self.older.next(),
                std::cmp::Ordering::Equal => drop(self.older.next()),
                std::cmp::Ordering::Less => {}
            }
            if let Some((key, Some(value))) = self.newer.next() {
                return Some(Ok((key, value)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_union_shows_the_newer_write_and_hides_what_it_removed() {
        let older: Vec<std::result::Result<(&[u8], u8), ()>> = vec![Ok((b"a", 1)), Ok((b"b", 2)), Ok((b"d", 4))];
        let newer: Vec<(&[u8], Option<u8>)> = vec![(b"b", Some(20)), (b"c", Some(30)), (b"d", None), (b"e", Some(50))];
        let union: Vec<_> = Union::new(newer.clone().into_iter(), older.clone().into_iter(), false)
            .map(|r| r.expect("no error"))
            .collect();
        assert_eq!(union, [(&b"a"[..], 1), (b"b", 20), (b"c", 30), (b"e", 50)]);
        let union: Vec<_> =
            Union::new(newer.into_iter().rev(), older.into_iter().rev(), true).map(|r| r.expect("no error")).collect();
        assert_eq!(union, [(&b"e"[..], 50), (b"c", 30), (b"b", 20), (b"a", 1)], "from the last key");
    }

    #[test]
    fn a_reader_of_one_conversation_finds_the_waiting_values_with_its_turns_and_only_those() {
        let overlay = Overlay::default();
        let value = |conversations: &[[u8; 16]]| {
            let records = conversations.iter().map(|c| turns::Stored { conversation: c, turn: b"t", value: b"v" });
            turns::encode_records(records)
        };
        let (c1, c2, c3) = ([1u8; 16], [2u8; 16], [3u8; 16]);
        let recent = |seq: u64, value: Vec<u8>| ((T::RecentTurns, seq.to_be_bytes().to_vec()), Some(value));
        let found = |c: &[u8]| {
            let mut values = Vec::new();
            overlay
                .recent_turns(c, |v| {
                    values.push(v.to_vec());
                    Ok::<_, ()>(())
                })
                .expect("no error");
            values
        };
        overlay.add(1, [recent(1, value(&[c1, c2]))]);
        overlay.add(2, [recent(2, value(&[c2]))]);
        let _frozen = overlay.freeze().expect("something waits");
        overlay.add(3, [recent(3, value(&[c1]))]);
        assert_eq!(found(&c1), [value(&[c1, c2]), value(&[c1])], "frozen and active, in order");
        assert_eq!(found(&c2), [value(&[c1, c2]), value(&[c2])]);
        assert!(found(&c3).is_empty());
        // An erasure rewrites a waiting value without the conversation's turns.
        overlay.add(4, [recent(3, value(&[])), ((T::RecentTurns, 2u64.to_be_bytes().to_vec()), None)]);
        assert_eq!(found(&c1), [value(&[c1, c2]), value(&[])], "the rewritten value, which the reader filters");
        assert_eq!(found(&c2), [value(&[c1, c2])], "a removed value is not read");
        overlay.thaw(true);
        assert_eq!(found(&c2), Vec::<Vec<u8>>::new(), "checkpointed: in the trees now");
    }

    #[test]
    fn reads_see_active_over_frozen_and_a_failed_checkpoint_keeps_its_writes() {
        let overlay = Overlay::default();
        let put = |k: &[u8], v: &[u8]| ((T::Visitors, k.to_vec()), Some(v.to_vec()));
        overlay.add(1, vec![put(b"a", b"1"), put(b"b", b"1")]);
        let (frozen, seq) = overlay.freeze().expect("something waits");
        assert_eq!((frozen.writes.len(), seq), (2, 1));
        overlay.add(2, vec![put(b"b", b"2"), ((T::Visitors, b"c".to_vec()), None)]);
        assert_eq!(overlay.get(T::Visitors, b"a"), Some(Some(b"1".to_vec())), "from frozen");
        assert_eq!(overlay.get(T::Visitors, b"b"), Some(Some(b"2".to_vec())), "active over frozen");
        assert_eq!(overlay.get(T::Visitors, b"c"), Some(None), "a removal");
        assert_eq!(overlay.get(T::Pending, b"a"), None, "another tree");
        let keys: Vec<_> = overlay.range(T::Visitors, b"").into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        overlay.thaw(false);
        assert_eq!(overlay.get(T::Visitors, b"a"), Some(Some(b"1".to_vec())), "put back");
        assert_eq!(overlay.get(T::Visitors, b"b"), Some(Some(b"2".to_vec())), "under the newer write");
        let (frozen, _) = overlay.freeze().expect("still waits");
        assert_eq!(frozen.writes.len(), 3);
        overlay.thaw(true);
        assert_eq!(overlay.get(T::Visitors, b"a"), None, "written: the trees answer");
    }
}
