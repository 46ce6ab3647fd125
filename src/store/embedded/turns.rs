//! Transcript turns: their encoding, and where they are kept.
//!
//! A turn is postcard (value version 2), a third the size of the JSON it replaced and quicker to
//! write. Speakers and routes are stored as fixed codes, so renaming a Rust variant never changes
//! what is on disk. Turns written before (version 1, JSON) are still read.
//!
//! Every message appends a turn, and one sled insert per turn at a scattered key (conversation,
//! then turn) was half of the store writer's time. So a group's turns are one value,
//! `recent_turns` under the group's sequence number, kept in the journal and the overlay
//! (`overlay.rs`) until a checkpoint writes them into `transcripts` as chunks (`write_chunks`):
//! one value per conversation holding all the turns it gained since the last checkpoint
//! (version 3: records of conversation, turn id and the turn's value). The `recent_turns` tree
//! holds only what a crash's journal replayed, until the merge at open.
//!
//! A checkpoint writes its chunks before it lets go of the waiting values, and sled recovers a
//! prefix of its log, so a turn is in one place or both, never in neither; readers look at the
//! waiting turns first for the same reason (a checkpoint between their two reads shows them a
//! turn twice, never not at all), and every reader keys turns by their id, so a turn seen twice
//! (or appended twice by a retry) counts once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::overlay::GiveWay;
use super::{Result, StoreError, T, Trees, VALUE_VERSION};
use crate::domain::{Entry, Speaker};
use crate::intents::How;

const TURN_VERSION: u8 = 2;
/// Records: a chunk of `transcripts`, or a group's value in `recent_turns`.
const RECORDS_VERSION: u8 = 3;
/// At most this many turns per chunk (tens of KiB). sled writes a leaf of more than 128 KiB (up to
/// 17 keys) as a file of its own, so most leaves of `transcripts` are such files; chunks of 6 KiB,
/// which keep leaves in sled's log, cost the checkpoint as much CPU and wrote as many bytes
/// (BENCHMARKS.md, seventeenth session).
const CHUNK_TURNS: usize = 256;

#[derive(Serialize)]
struct Out<'a> {
    at: u64,
    from: u8,
    text: &'a str,
    intent: Option<&'a str>,
    how: Option<u8>,
    confidence: Option<f32>,
    variant: Option<u32>,
}

#[derive(Deserialize)]
struct In {
    at: u64,
    from: u8,
    text: String,
    intent: Option<String>,
    how: Option<u8>,
    confidence: Option<f32>,
    variant: Option<u32>,
}

const SPEAKERS: [Speaker; 3] = [Speaker::Shopper, Speaker::Bot, Speaker::Agent];
const HOWS: [How; 4] = [How::Slot, How::Pattern, How::Examples, How::Fallback];

fn code<T: PartialEq>(all: &[T], value: &T) -> u8 {
    all.iter().position(|v| v == value).expect("every variant has a code") as u8
}

fn lookup<T: Copy>(all: &[T], code: u8) -> Option<T> {
    all.get(code as usize).copied()
}

pub(super) fn encode(entries: &[Entry]) -> Vec<u8> {
    // Room for the texts and a little per entry, so the buffer is not grown several times.
    let mut bytes = Vec::with_capacity(1 + entries.iter().map(|e| e.text.len() + 48).sum::<usize>());
    bytes.push(TURN_VERSION);
    super::postcard_after(&Entries(entries), bytes).expect("turns serialize")
}

/// Entries as the sequence of `Out` they are stored as, without collecting one first (an
/// allocation per turn on the writer's thread).
struct Entries<'a>(&'a [Entry]);

impl Serialize for Entries<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|e| Out {
            at: e.at,
            from: code(&SPEAKERS, &e.from),
            text: &e.text,
            intent: e.intent.as_deref(),
            how: e.how.as_ref().map(|h| code(&HOWS, h)),
            confidence: e.confidence,
            variant: e.variant,
        }))
    }
}

pub(super) fn decode(raw: &[u8]) -> Result<Vec<Entry>> {
    let corrupt = |reason: String| StoreError::Corrupt { tree: "transcripts", reason };
    match raw.split_first() {
        Some((&TURN_VERSION, bytes)) => {
            let stored: Vec<In> = postcard::from_bytes(bytes).map_err(|e| corrupt(e.to_string()))?;
            stored
                .into_iter()
                .map(|e| {
                    Ok(Entry {
                        at: e.at,
                        from: lookup(&SPEAKERS, e.from).ok_or_else(|| corrupt(format!("speaker {}", e.from)))?,
                        text: e.text,
                        intent: e.intent,
                        how: e
                            .how
                            .map(|h| lookup(&HOWS, h).ok_or_else(|| corrupt(format!("route {h}"))))
                            .transpose()?,
                        confidence: e.confidence,
                        variant: e.variant,
                    })
                })
                .collect()
        }
        Some((&VALUE_VERSION, _)) => super::decode("transcripts", raw),
        Some((v, _)) => Err(corrupt(format!("unknown value version {v}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// One stored turn: its conversation's id, its key within the conversation (a turn id; an 8-byte
/// counter in stores older than turn ids) and its value (`encode`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Stored<'a> {
    pub conversation: &'a [u8],
    pub turn: &'a [u8],
    pub value: &'a [u8],
}

/// Records, each: conversation (16 bytes), turn key length (u8) and key, value length (u32 BE)
/// and value.
pub(super) fn encode_records<'a, I>(records: I) -> Vec<u8>
where
    I: IntoIterator<Item = Stored<'a>>,
    I::IntoIter: Clone,
{
    let records = records.into_iter();
    // Sized first: a group's value is tens of KiB, and growing it was a copy of it each time.
    let len = records.clone().map(|r| r.conversation.len() + 1 + r.turn.len() + 4 + r.value.len()).sum::<usize>();
    let mut out = Vec::with_capacity(1 + len);
    out.push(RECORDS_VERSION);
    for Stored { conversation, turn, value } in records {
        out.extend_from_slice(conversation);
        out.push(turn.len() as u8);
        out.extend_from_slice(turn);
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value);
    }
    out
}

/// The turns of a `recent_turns` value.
pub(super) fn records(raw: &[u8]) -> Result<Vec<Stored<'_>>> {
    let corrupt = || StoreError::Corrupt { tree: "recent_turns", reason: "truncated or unknown records".into() };
    let Some((&RECORDS_VERSION, mut rest)) = raw.split_first() else { return Err(corrupt()) };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (conversation, tail) = rest.split_at_checked(16).ok_or_else(corrupt)?;
        let (&len, tail) = tail.split_first().ok_or_else(corrupt)?;
        let (turn, tail) = tail.split_at_checked(len.into()).ok_or_else(corrupt)?;
        let (len, tail) = tail.split_first_chunk::<4>().ok_or_else(corrupt)?;
        let (value, tail) = tail.split_at_checked(u32::from_be_bytes(*len) as usize).ok_or_else(corrupt)?;
        out.push(Stored { conversation, turn, value });
        rest = tail;
    }
    Ok(out)
}

/// The turns of a `transcripts` value under `key`: a chunk's records, or the one turn the key
/// names.
pub(super) fn in_transcripts<'a>(key: &'a [u8], value: &'a [u8]) -> Result<Vec<Stored<'a>>> {
    match value.first() {
        Some(&RECORDS_VERSION) => records(value),
        _ => {
            let (conversation, turn) = key.split_at_checked(16).ok_or_else(|| StoreError::Corrupt {
                tree: "transcripts",
                reason: "a key shorter than a conversation id".into(),
            })?;
            Ok(vec![Stored { conversation, turn, value }])
        }
    }
}

/// Every turn of `conversation` as stored, in order, each once (the module's comment says why
/// `recent_turns` is read first).
pub(super) fn of_conversation(trees: &Trees, conversation: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
    let mut turns = BTreeMap::new();
    each_recent(trees, conversation, |stored| {
        turns.insert(stored.turn.to_vec(), stored.value.to_vec());
    })?;
    for entry in trees.scan_prefix(T::Transcripts, conversation) {
        let (key, value) = entry?;
        for stored in in_transcripts(&key, &value)? {
            turns.insert(stored.turn.to_vec(), stored.value.to_vec());
        }
    }
    Ok(turns)
}

/// The value of the conversation's latest turn (by id), without reading the others: the last
/// record of its last `transcripts` value, or a later one in `recent_turns`.
pub(super) fn last_of_conversation(trees: &Trees, conversation: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut last: Option<(Vec<u8>, Vec<u8>)> = None;
    let mut keep = |stored: Stored| {
        if last.as_ref().is_none_or(|(turn, _)| stored.turn > turn.as_slice()) {
            last = Some((stored.turn.to_vec(), stored.value.to_vec()));
        }
    };
    each_recent(trees, conversation, &mut keep)?;
    if let Some(entry) = trees.last_with_prefix(T::Transcripts, conversation) {
        let (key, value) = entry?;
        // A chunk's records are in turn order (`merge` writes them so).
        in_transcripts(&key, &value)?.pop().into_iter().for_each(&mut keep);
    }
    Ok(last.map(|(_, value)| value))
}

/// Calls `f` with each unmerged turn of `conversation`: those waiting in the overlay, then
/// those in `recent_turns` (left by a crash until the merge at open). Readers call this before
/// reading `transcripts` (the module's comment says why).
fn each_recent(trees: &Trees, conversation: &[u8], mut f: impl FnMut(Stored)) -> Result<()> {
    let mut of_conversation = |value: &[u8]| -> Result<()> {
        records(value)?.into_iter().filter(|s| s.conversation == conversation).for_each(&mut f);
        Ok(())
    };
    trees.overlay.recent_turns(conversation, &mut of_conversation)?;
    for value in trees[T::RecentTurns].iter().values() {
        of_conversation(&value?)?;
    }
    Ok(())
}

/// Moves every turn of `recent_turns` into `transcripts` (`write_chunks`), then removes the
/// recent values. Returns how many turns moved. Runs at open, for what the journal replayed.
pub(super) fn merge(trees: &Trees) -> Result<usize> {
    let recent: Vec<_> = trees[T::RecentTurns].iter().collect::<sled::Result<_>>()?;
    let moved = write_chunks(trees, recent.iter().map(|(_, value)| value.as_ref()), &mut GiveWay::new())?;
    for (seq, _) in recent {
        trees[T::RecentTurns].remove(seq)?;
    }
    Ok(moved)
}

/// Writes the turns of groups' `recent_turns` values into chunks of `transcripts`: one or more
/// per conversation, a chunk's key its conversation and its first turn, each turn once. Returns
/// how many turns it wrote.
pub(super) fn write_chunks<'a>(
    trees: &Trees,
    values: impl IntoIterator<Item = &'a [u8]>,
    give_way: &mut GiveWay,
) -> Result<usize> {
    let mut conversations: BTreeMap<&[u8], BTreeMap<&[u8], Stored>> = BTreeMap::new();
    for value in values {
        for stored in records(value)? {
            conversations.entry(stored.conversation).or_default().insert(stored.turn, stored);
        }
    }
    let mut written = 0;
    for (conversation, turns) in conversations {
        let turns: Vec<Stored> = turns.into_values().collect();
        for chunk in turns.chunks(CHUNK_TURNS) {
            give_way.now_and_then();
            let key = [conversation, chunk[0].turn].concat();
            trees[T::Transcripts].insert(key, encode_records(chunk.iter().copied()))?;
            written += chunk.len();
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_read_back_as_written_in_either_version() {
        let entries = vec![
            Entry {
                at: 1,
                from: Speaker::Shopper,
                text: "do you ship to \"Austria\"? ✓".into(),
                intent: None,
                how: None,
                confidence: None,
                variant: None,
            },
            Entry {
                at: 2,
                from: Speaker::Bot,
                text: "Yes.".into(),
                intent: Some("shipping_options".into()),
                how: Some(How::Examples),
                confidence: Some(0.75),
                variant: Some(1),
            },
            Entry {
                at: 3,
                from: Speaker::Agent,
                text: "Hi".into(),
                intent: None,
                how: Some(How::Fallback),
                confidence: None,
                variant: None,
            },
        ];
        let compact = encode(&entries);
        assert_eq!(decode(&compact).expect("v2"), entries);
        let json = super::super::encode(&entries);
        assert_eq!(decode(&json).expect("v1"), entries);
        assert!(compact.len() * 2 < json.len(), "{} bytes against {}", compact.len(), json.len());
        assert!(decode(&[2, 1, 0, 9]).is_err(), "an unknown speaker code");
    }

    #[test]
    fn records_read_back_as_written() {
        let (c1, c2) = ([1u8; 16], [2u8; 16]);
        let written = [
            Stored { conversation: &c1, turn: &[7; 16], value: b"first" },
            Stored { conversation: &c2, turn: &[0, 0, 0, 0, 0, 0, 0, 9], value: b"" },
        ];
        let raw = encode_records(written);
        assert_eq!(records(&raw).expect("records"), written);
        assert_eq!(in_transcripts(b"ignored", &raw).expect("a chunk"), written);
        let single = [c1.as_slice(), &[8; 16]].concat();
        assert_eq!(
            in_transcripts(&single, b"turn").expect("one turn"),
            [Stored { conversation: &c1, turn: &[8; 16], value: b"turn" }]
        );
        // Cut anywhere but before or between records, they do not read.
        let between = encode_records([written[0]]).len();
        for cut in (2..raw.len()).filter(|cut| *cut != between) {
            assert!(records(&raw[..cut]).is_err(), "cut at {cut}");
        }
    }
}
