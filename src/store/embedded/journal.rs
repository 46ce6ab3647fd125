//! The journal: what keeps a group of batches all or nothing across a crash, without a sled
//! transaction (each of which rolls sled's IO buffer twice: a third of the throughput here).
//!
//! Before the writer applies a group that writes more than one key, or one key of a deferred
//! tree, it inserts the group's every staged write as one value under the next sequence number;
//! one insert is atomic in sled. Then it applies the writes (those to deferred trees into the
//! overlay: `overlay.rs`). sled recovers a prefix of its log, so after a crash any write of the
//! group that survived was preceded by its journal entry. At open, every entry left is applied
//! again, in order (the writes are physical, key and value, so applying one twice is harmless),
//! then removed. A checkpoint removes the entries up to the last group it wrote into the trees,
//! after flushing them, so the entries left are always the latest groups, and replaying them
//! never undoes an acknowledged write. A group of one write to a tree that is not deferred
//! needs no entry.

use super::{Result, StoreError, T, Trees};

/// The journal's key for sequence number `seq`: big-endian, so entries replay in order.
pub(super) fn key(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

/// One value: for each write, the tree's name, the key, and the value (absent: a removal).
pub(super) fn encode<'a>(writes: impl Iterator<Item = (T, &'a [u8], Option<&'a [u8]>)>) -> Vec<u8> {
    let mut out = vec![super::VALUE_VERSION];
    let mut bytes = |b: &[u8]| {
        out.extend_from_slice(&(b.len() as u32).to_be_bytes());
        out.extend_from_slice(b);
    };
    for (tree, key, value) in writes {
        bytes(tree.name().as_bytes());
        bytes(key);
        match value {
            Some(value) => {
                bytes(&[1]);
                bytes(value);
            }
            None => bytes(&[0]),
        }
    }
    out
}

type Write = (T, Vec<u8>, Option<Vec<u8>>);

fn decode(raw: &[u8]) -> Result<Vec<Write>> {
    let corrupt = |reason: &str| StoreError::Corrupt { tree: "journal", reason: reason.into() };
    let Some((&super::VALUE_VERSION, rest)) = raw.split_first() else {
        return Err(corrupt("unknown value version"));
    };
    let mut reader = Reader(rest);
    let mut writes = Vec::new();
    while !reader.0.is_empty() {
        let name = reader.next().ok_or_else(|| corrupt("truncated"))?;
        let tree = T::ALL.into_iter().find(|t| t.name().as_bytes() == name).ok_or_else(|| corrupt("unknown tree"))?;
        let key = reader.next().ok_or_else(|| corrupt("truncated"))?.to_vec();
        let value = match reader.next() {
            Some([1]) => Some(reader.next().ok_or_else(|| corrupt("truncated"))?.to_vec()),
            Some([0]) => None,
            _ => return Err(corrupt("bad write kind")),
        };
        writes.push((tree, key, value));
    }
    Ok(writes)
}

/// Length-prefixed byte strings, one after the other.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Option<&'a [u8]> {
        let (len, tail) = self.0.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if tail.len() < len {
            return None;
        }
        let (bytes, tail) = tail.split_at(len);
        self.0 = tail;
        Some(bytes)
    }
}

/// Applies and removes every entry a crash left; returns how many. Runs at open, before the
/// writer starts.
pub(super) fn replay(trees: &Trees) -> Result<usize> {
    let entries: Vec<_> = trees[T::Journal].iter().collect::<sled::Result<_>>()?;
    for (seq, raw) in &entries {
        for (tree, key, value) in decode(raw)? {
            match value {
                Some(value) => trees[tree].insert(key, value)?,
                None => trees[tree].remove(key)?,
            };
        }
        trees[T::Journal].remove(seq)?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Borrowed<'a> = (T, &'a [u8], Option<&'a [u8]>);

    #[test]
    fn entries_decode_to_what_was_encoded() {
        let writes: Vec<Borrowed> =
            vec![(T::Transcripts, b"k1", Some(b"v1")), (T::LeadsByStatus, b"k2", None), (T::Visitors, b"", Some(b""))];
        let decoded = decode(&encode(writes.iter().copied())).expect("decode");
        let back: Vec<Borrowed> = decoded.iter().map(|(t, k, v)| (*t, k.as_slice(), v.as_deref())).collect();
        assert_eq!(back, writes);
        assert!(decode(&[9]).is_err(), "another version");
        let mut truncated = encode(writes.iter().copied());
        truncated.truncate(truncated.len() - 1);
        assert!(decode(&truncated).is_err(), "a truncated entry");
    }
}
