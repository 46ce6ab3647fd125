//! The journal: every group's writes, in files of their own beside sled, synced before the
//! group is acknowledged. It makes a group all or nothing across a crash, and it is what lets
//! every write wait in the overlay (`overlay.rs`) instead of going into sled's trees at once:
//! the hot path appends to a file and syncs it, and sled is written by checkpoints only.
//!
//! The writer appends each group as one record (`append`), syncs the files (`sync`, an
//! `fdatasync`) and then acknowledges the group. A
//! checkpoint starts a new file (`rotate`), syncs, writes what waits into sled and flushes it,
//! then lets go of the files whose groups the trees now hold (`release`): files go oldest first,
//! so those left always hold the latest groups. A released file waits as a spare, renamed, and
//! becomes a later file, written over in place: an `fdatasync` then writes no inode. At open
//! (`replay`) the records of the files left are applied to the trees in order, each file up to
//! its first record that does not read whole; a file's first record says how long the file
//! before it ended, so a file whose end the crash lost stops the replay there (no group after it
//! was acknowledged, since a sync covers everything appended before it). Then sled is flushed
//! and the files deleted. The writes are physical (key and value), so applying one that had
//! reached the trees again is harmless.
//!
//! A file is `<data>/journal/<number>.log`, numbers rising; a record is the length of what
//! follows the checksum (u32 LE), a CRC-32 of the file's number and what follows (u32 LE; what a
//! spare held before does not read as the new file's), the group's sequence (u64 LE; 0 for the
//! first record, whose body is the number and length of the file before) and its writes
//! (`encode`). That a released file cannot come back while a later one stays relies on the file
//! system ordering its metadata changes (ext4's and XFS's journals do).
//!
//! Stores from before kept their journal in sled (tree `journal`); its entries replay first.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Result, StoreError, T, io};

/// Length and checksum.
const HEADER: usize = 8;
/// Released files kept to be used again: a file written over in place, within its size, is
/// synced without writing its inode (most of an `fdatasync` of a growing file, measured).
const SPARES: usize = 2;

pub(super) struct Journal {
    dir: PathBuf,
    files: Mutex<Files>,
    /// Set once a sync failed: what the file holds is then unknown, so nothing more is
    /// appended (every commit fails) until the store is opened again.
    broken: AtomicBool,
}

struct Files {
    /// Closed files, oldest first, then the one appended to.
    segments: Vec<Segment>,
    /// Released files (`<number>.spare`), for `rotate` to use again.
    spares: Vec<(u64, Arc<File>)>,
    /// The number of the next file.
    next: u64,
    /// Where `append` builds a record, kept: a group's record is tens of KiB, and growing a new
    /// one each time was a twentieth of the writer's time in reallocations.
    buffer: Vec<u8>,
}

struct Segment {
    number: u64,
    file: Arc<File>,
    /// The last group appended to it (0: none yet).
    last: u64,
    /// Bytes written (where the next record goes), and how many of them a sync covered.
    len: u64,
    synced: u64,
}

impl Journal {
    /// Starts a journal in `dir`, after `replay` emptied it: its files are numbered on from
    /// `next` (what `replay` returned), so a name is never used twice.
    pub(super) fn create(dir: &Path, next: u64) -> Result<Journal> {
        super::private_dir(dir).map_err(io)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            files: Mutex::new(Files { segments: Vec::new(), spares: Vec::new(), next, buffer: Vec::new() }),
            broken: AtomicBool::new(false),
        };
        journal.rotate()?;
        Ok(journal)
    }

    fn lock(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn usable(&self) -> std::io::Result<()> {
        match self.broken.load(Ordering::Acquire) {
            true => Err(std::io::Error::other("a journal sync failed earlier; open the store again")),
            false => Ok(()),
        }
    }

    /// Appends group `seq`'s writes to the newest file (not yet durable: see `sync`).
    pub(super) fn append<'a>(
        &self,
        seq: u64,
        writes: impl Iterator<Item = (T, &'a [u8], Option<&'a [u8]>)>,
    ) -> std::io::Result<()> {
        self.usable()?;
        let mut files = self.lock();
        let Files { segments, buffer, .. } = &mut *files;
        let Some(segment) = segments.last_mut() else { return Err(std::io::Error::other("no journal file")) };
        record(buffer, segment.number, seq, |out| encode(out, writes))?;
        let record = buffer.as_slice();
        // At the end of what was written: a write that failed part way is written over by the
        // next, so no torn record ever sits between two whole ones.
        segment.file.write_all_at(record, segment.len)?;
        segment.len += record.len() as u64;
        segment.last = seq;
        // One rare huge group (an erasure of a long chat) does not keep its size for good.
        if buffer.capacity() > 1 << 22 {
            *buffer = Vec::new();
        }
        Ok(())
    }

    /// Makes every group appended before the call durable.
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.usable()?;
        let unsynced: Vec<_> = {
            let files = self.lock();
            files.segments.iter().filter(|s| s.synced < s.len).map(|s| (s.number, s.file.clone(), s.len)).collect()
        };
        for (number, file, len) in unsynced {
            if let Err(e) = file.sync_data() {
                // After a failed sync the kernel may have dropped the pages: never trust the file again.
                self.broken.store(true, Ordering::Release);
                return Err(e);
            }
            if let Some(segment) = self.lock().segments.iter_mut().find(|s| s.number == number) {
                segment.synced = segment.synced.max(len);
            }
        }
        Ok(())
    }

    /// Starts a new file (a spare when there is one); the groups appended from now on go there.
    /// Its first record names the file before and how long it ended, so that a replay can tell
    /// that file whole from one whose end a crash lost.
    pub(super) fn rotate(&self) -> Result<()> {
        let (number, spare) = {
            let mut files = self.lock();
            if files.segments.last().is_some_and(|s| s.last == 0) {
                return Ok(());
            }
            files.next += 1;
            (files.next - 1, files.spares.pop())
        };
        let file = match spare {
            Some((old, file)) => {
                std::fs::rename(spare_path(&self.dir, old), self.path(number)).map_err(io)?;
                file
            }
            None => Arc::new(OpenOptions::new().create_new(true).write(true).open(self.path(number)).map_err(io)?),
        };
        // The new name must survive a crash before a record in it is acknowledged.
        File::open(&self.dir).and_then(|dir| dir.sync_all()).map_err(io)?;
        let mut files = self.lock();
        let mut before = [0; 16];
        if let Some(last) = files.segments.last() {
            before[..8].copy_from_slice(&last.number.to_le_bytes());
            before[8..].copy_from_slice(&last.len.to_le_bytes());
        }
        let mut first = Vec::new();
        record(&mut first, number, 0, |out| out.extend_from_slice(&before)).map_err(io)?;
        file.write_all_at(&first, 0).map_err(io)?;
        let len = first.len() as u64;
        files.segments.push(Segment { number, file, last: 0, len, synced: 0 });
        Ok(())
    }

    /// Lets go of the closed files whose groups are all at most `seq` (in the trees, flushed),
    /// oldest first: kept as spares (renamed, so a replay never reads them) or deleted. A file
    /// leaves the list only once that is done, so after an error the files left are still the
    /// newest ones and a later release starts again from the oldest.
    pub(super) fn release(&self, seq: u64) -> Result<()> {
        loop {
            let (number, keep) = {
                let files = self.lock();
                let closed = &files.segments[..files.segments.len().saturating_sub(1)];
                match closed.first() {
                    Some(s) if s.last <= seq && s.synced == s.len => (s.number, files.spares.len() < SPARES),
                    _ => return Ok(()),
                }
            };
            match keep {
                true => std::fs::rename(self.path(number), spare_path(&self.dir, number)).map_err(io)?,
                false => std::fs::remove_file(self.path(number)).map_err(io)?,
            }
            // Only the checkpoint thread releases and rotates: the oldest is still this one.
            let mut files = self.lock();
            let segment = files.segments.remove(0);
            if keep {
                files.spares.push((number, segment.file));
            }
        }
    }

    fn path(&self, number: u64) -> PathBuf {
        file_path(&self.dir, number)
    }

    /// How many records the files hold (tests look between checkpoints).
    #[cfg(test)]
    pub(super) fn records(&self) -> usize {
        let numbers: Vec<u64> = self.lock().segments.iter().map(|s| s.number).collect();
        let mut count = 0;
        for number in numbers {
            let raw = std::fs::read(self.path(number)).expect("journal file");
            // Less the first record, which names the file before.
            count += Records { rest: &raw, number }.count().saturating_sub(1);
        }
        count
    }
}

fn file_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.log"))
}

fn spare_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016}.spare"))
}

/// One record of file `number` into `record` (what it held is dropped): length, checksum,
/// sequence, then what `body` writes. The checksum covers the file's number too, so what a spare
/// held before reads as no record.
fn record(record: &mut Vec<u8>, number: u64, seq: u64, body: impl FnOnce(&mut Vec<u8>)) -> std::io::Result<()> {
    record.clear();
    record.extend_from_slice(&[0; HEADER]);
    record.extend_from_slice(&seq.to_le_bytes());
    body(record);
    let len = u32::try_from(record.len() - HEADER).map_err(|_| std::io::Error::other("a group over 4 GiB"))?;
    let crc = checksum(number, &record[HEADER..]);
    record[..4].copy_from_slice(&len.to_le_bytes());
    record[4..HEADER].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

fn checksum(number: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&number.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// The numbers of the files in `dir` named `<number>.<extension>`, in order.
fn numbers(dir: &Path, extension: &str) -> Result<Vec<u64>> {
    let mut numbers = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(numbers),
        Err(e) => return Err(io(e)),
    };
    for entry in entries {
        let path = entry.map_err(io)?.path();
        if path.extension().is_some_and(|e| e == extension)
            && let Some(number) = path.file_stem().and_then(|n| n.to_str()).and_then(|n| n.parse().ok())
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The records of file `number` that read whole, in order, as (sequence, body): up to the first
/// that does not (the end of what was written, or a write a crash tore).
struct Records<'a> {
    rest: &'a [u8],
    number: u64,
}

impl<'a> Iterator for Records<'a> {
    type Item = (u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let (crc, rest) = rest.split_first_chunk::<4>()?;
        let body = rest.get(..u32::from_le_bytes(*len) as usize)?;
        let (seq, writes) = body.split_first_chunk::<8>()?;
        if checksum(self.number, body) != u32::from_le_bytes(*crc) {
            return None;
        }
        self.rest = &rest[body.len()..];
        Some((u64::from_le_bytes(*seq), writes))
    }
}

/// For each write, the tree's name, the key, and the value (absent: a removal).
pub(super) fn encode<'a>(out: &mut Vec<u8>, writes: impl Iterator<Item = (T, &'a [u8], Option<&'a [u8]>)>) {
    out.push(super::VALUE_VERSION);
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

/// What `replay` did.
pub(super) struct Replayed {
    pub(super) groups: usize,
    /// The number for the journal's next file.
    pub(super) next: u64,
}

/// Applies every group a crash left in the journal `dir` (and in the tree of stores from
/// before) to the trees, flushes them, and deletes what it applied. Runs at open, before
/// anything else reads the trees.
pub(super) fn replay(db: &sled::Db, dir: &Path) -> Result<Replayed> {
    let trees: Vec<sled::Tree> = T::ALL.iter().map(|t| db.open_tree(t.name())).collect::<sled::Result<_>>()?;
    let apply = |raw: &[u8]| -> Result<()> {
        for (t, key, value) in decode(raw)? {
            match value {
                Some(value) => trees[t as usize].insert(key, value)?,
                None => trees[t as usize].remove(key)?,
            };
        }
        Ok(())
    };
    let legacy: Vec<_> = trees[T::Journal as usize].iter().collect::<sled::Result<_>>()?;
    for (_, raw) in &legacy {
        apply(raw)?;
    }
    let mut replayed = legacy.len();
    let logs = numbers(dir, "log")?;
    // The file read last: its number and how far its records read whole.
    let mut before: Option<(u64, u64)> = None;
    for number in &logs {
        let raw = std::fs::read(file_path(dir, *number)).map_err(io)?;
        let mut records = Records { rest: &raw, number: *number };
        let lost = match records.next() {
            Some((0, first)) if first.len() == 16 => {
                let (file, len) = (u64_at(first, 0), u64_at(first, 8));
                before.filter(|(read, whole)| *read == file && *whole < len)
            }
            // Created, but its first record never reached the disk: nothing of it reads, and a
            // file after it finds it short.
            _ => None,
        };
        if let Some((file, whole)) = lost {
            let path = file_path(dir, file);
            log::warn!(
                "store: the end of the journal file {} was lost after byte {whole}; the groups from there on were never acknowledged and are dropped",
                path.display()
            );
            break;
        }
        for (_, writes) in records.by_ref() {
            apply(writes)?;
            replayed += 1;
        }
        before = Some((*number, (raw.len() - records.rest.len()) as u64));
    }
    let next = logs.last().map_or(1, |n| n + 1);
    if replayed > 0 || !logs.is_empty() {
        for (seq, _) in legacy {
            trees[T::Journal as usize].remove(seq)?;
        }
        db.flush()?;
        for number in logs {
            std::fs::remove_file(file_path(dir, number)).map_err(io)?;
        }
    }
    for spare in numbers(dir, "spare")? {
        std::fs::remove_file(spare_path(dir, spare)).map_err(io)?;
    }
    Ok(Replayed { groups: replayed, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    type Borrowed<'a> = (T, &'a [u8], Option<&'a [u8]>);

    #[test]
    fn entries_decode_to_what_was_encoded() {
        let writes: Vec<Borrowed> =
            vec![(T::Transcripts, b"k1", Some(b"v1")), (T::LeadsByStatus, b"k2", None), (T::Visitors, b"", Some(b""))];
        let mut encoded = Vec::new();
        encode(&mut encoded, writes.iter().copied());
        let decoded = decode(&encoded).expect("decode");
        let back: Vec<Borrowed> = decoded.iter().map(|(t, k, v)| (*t, k.as_slice(), v.as_deref())).collect();
        assert_eq!(back, writes);
        assert!(decode(&[9]).is_err(), "another version");
        encoded.truncate(encoded.len() - 1);
        assert!(decode(&encoded).is_err(), "a truncated entry");
    }

    #[test]
    fn a_file_reads_up_to_its_first_torn_record() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = Journal::create(dir.path(), 1).expect("journal");
        for seq in 1..=3 {
            journal.append(seq, [(T::Visitors, &b"k"[..], Some(&[seq as u8][..]))].into_iter()).expect("append");
        }
        journal.sync().expect("sync");
        let raw = std::fs::read(journal.path(1)).expect("read");
        let seqs = |raw: &[u8], number| Records { rest: raw, number }.map(|(seq, _)| seq).collect::<Vec<_>>();
        assert_eq!(seqs(&raw, 1), [0, 1, 2, 3], "the first record names the file before");
        for cut in 0..raw.len() {
            assert!(seqs(&raw[..cut], 1).len() < 4, "cut at {cut}");
        }
        let mut flipped = raw.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(seqs(&flipped, 1), [0, 1, 2], "a checksum that does not match ends the file");
        assert_eq!(seqs(&raw, 2), Vec::<u64>::new(), "under another file's number nothing reads");
        // Released, the file waits as a spare; the next file is that one, written over.
        journal.rotate().expect("rotate");
        journal.append(4, [(T::Visitors, &b"k"[..], Some(&b"4"[..]))].into_iter()).expect("append");
        journal.sync().expect("sync");
        journal.release(3).expect("release");
        assert_eq!(numbers(dir.path(), "spare").expect("list"), [1]);
        journal.rotate().expect("rotate");
        assert_eq!(numbers(dir.path(), "spare").expect("list"), Vec::<u64>::new());
        assert_eq!(numbers(dir.path(), "log").expect("list"), [2, 3]);
        assert_eq!(journal.records(), 1, "the spare's old records do not read as the new file's");
        assert!(std::fs::metadata(journal.path(3)).expect("stat").len() >= raw.len() as u64);
    }

    #[test]
    fn replay_applies_the_groups_before_a_torn_record_and_drops_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let journal_dir = dir.path().join("journal");
        let db = sled::Config::new().path(dir.path().join("store")).open().expect("sled");
        let journal = Journal::create(&journal_dir, 1).expect("journal");
        const VALUES: [[u8; 1]; 5] = [[0], [1], [2], [3], [4]];
        let put = |seq: u64| [(T::Visitors, &b"k"[..], Some(&VALUES[seq as usize][..]))].into_iter();
        for seq in 1..=3 {
            journal.append(seq, put(seq)).expect("append");
        }
        journal.rotate().expect("rotate");
        journal.append(4, put(4)).expect("append");
        journal.sync().expect("sync");
        // The crash tore the third group's record (the fourth, in the next file, was written).
        let first = journal.path(1);
        let len = std::fs::metadata(&first).expect("stat").len();
        OpenOptions::new().write(true).open(&first).expect("open").set_len(len - 3).expect("cut");
        drop(journal);
        let replayed = replay(&db, &journal_dir).expect("replay");
        assert_eq!((replayed.groups, replayed.next), (2, 3));
        let visitors = db.open_tree(T::Visitors.name()).expect("tree");
        assert_eq!(visitors.get(b"k").expect("read").as_deref(), Some(&[2u8][..]), "the second group's write");
        assert_eq!(numbers(&journal_dir, "log").expect("list"), Vec::<u64>::new(), "the files are gone");
        let journal = Journal::create(&journal_dir, replayed.next).expect("journal");
        journal.append(1, put(1)).expect("append");
        assert_eq!(numbers(&journal_dir, "log").expect("list"), [3], "numbered on");
    }
}
