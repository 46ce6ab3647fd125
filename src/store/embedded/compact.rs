//! Erased means gone from disk. sled removes a value from its trees at once, but the bytes stay
//! in its log segments until they are reused, so an erased shopper's address could still be read
//! from `store/db` with a text search. At open, when a visitor was erased (or expired) since the
//! last compaction, the store is copied tree by tree into a fresh sled directory, which replaces
//! the old one; the old files are deleted. Crash-safe: the copy is only swapped in once it is
//! flushed and marked complete, and an interrupted swap is finished (or undone) at the next open.

use std::path::{Path, PathBuf};

use super::{Result, T, io};

struct Paths {
    store: PathBuf,
    copy: PathBuf,
    /// Written once the copy is flushed: the copy is whole and may replace the store.
    copied: PathBuf,
    old: PathBuf,
    /// The newest erasure (ms) the store was last compacted after.
    marker: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            store: dir.join("store"),
            copy: dir.join("store.compacting"),
            copied: dir.join("store.compacting.done"),
            old: dir.join("store.old"),
            marker: dir.join("store.compacted"),
        }
    }
}

/// Opens the store in `dir`, first finishing a compaction a crash interrupted, and compacting it
/// when a visitor was erased since the last compaction (then it is opened a second time).
/// `replay` runs on the store first (the journal's erasures count too).
pub fn open<R>(dir: &Path, replay: impl FnOnce(&sled::Db) -> Result<R>) -> Result<(sled::Db, R)> {
    let paths = Paths::new(dir);
    finish_interrupted(&paths)?;
    let db = super::open_db(dir, &paths.store)?;
    let replayed = replay(&db)?;
    let newest = newest_erasure(&db)?;
    let compacted = std::fs::read_to_string(&paths.marker).ok().and_then(|t| t.trim().parse::<u64>().ok());
    let Some(newest) = newest.filter(|n| compacted.is_none_or(|c| c < *n)) else { return Ok((db, replayed)) };
    copy(&db, &paths.copy)?;
    drop(db);
    std::fs::write(&paths.copied, b"").map_err(io)?;
    swap(&paths)?;
    std::fs::write(&paths.marker, newest.to_string()).map_err(io)?;
    log::info!("store: compacted after an erasure, so erased data is gone from disk");
    Ok((super::open_db(dir, &paths.store)?, replayed))
}

fn newest_erasure(db: &sled::Db) -> Result<Option<u64>> {
    let erased = db.open_tree(T::Erased.name())?;
    let mut newest = None;
    for entry in erased.iter() {
        let (_, at) = entry?;
        let at = <[u8; 8]>::try_from(at.as_ref()).map(u64::from_be_bytes).unwrap_or(0);
        newest = newest.max(Some(at));
    }
    Ok(newest)
}

/// Every tree (and the default one), key by key, into a fresh database at `to`.
fn copy(db: &sled::Db, to: &Path) -> Result<()> {
    if to.exists() {
        std::fs::remove_dir_all(to).map_err(io)?;
    }
    // No background flusher (it is flushed below): its thread would keep the directory locked
    // for a moment after the drop, and the store is opened again right after the swap.
    let fresh = sled::Config::new().path(to).flush_every_ms(None).open()?;
    for name in db.tree_names() {
        let (from, into) = if name == db.name() {
            (sled::Tree::clone(db), sled::Tree::clone(&fresh))
        } else {
            (db.open_tree(&name)?, fresh.open_tree(&name)?)
        };
        for entry in from.iter() {
            let (key, value) = entry?;
            into.insert(key, value)?;
        }
    }
    fresh.flush()?;
    Ok(())
}

/// The old store out of the way, the copy in, the old one deleted.
fn swap(paths: &Paths) -> Result<()> {
    std::fs::rename(&paths.store, &paths.old).map_err(io)?;
    std::fs::rename(&paths.copy, &paths.store).map_err(io)?;
    std::fs::remove_file(&paths.copied).map_err(io)?;
    std::fs::remove_dir_all(&paths.old).map_err(io)
}

/// After a crash during a compaction: a whole copy is swapped in, a partial one dropped.
fn finish_interrupted(paths: &Paths) -> Result<()> {
    let whole = paths.copied.exists() && paths.copy.exists();
    if !paths.store.exists() && paths.old.exists() {
        match whole {
            true => std::fs::rename(&paths.copy, &paths.store).map_err(io)?,
            false => std::fs::rename(&paths.old, &paths.store).map_err(io)?,
        }
    } else if whole && paths.store.exists() {
        return swap(paths);
    }
    for leftover in [&paths.copy, &paths.old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(io)?;
        }
    }
    if paths.copied.exists() {
        std::fs::remove_file(&paths.copied).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_with(path: &Path, value: &[u8]) {
        // No flusher thread, which would hold the lock for a moment after the drop.
        let db = sled::Config::new().path(path).flush_every_ms(None).open().expect("open");
        db.insert(b"k", value).expect("insert");
        db.flush().expect("flush");
    }

    fn value(path: &Path) -> Vec<u8> {
        let db = sled::Config::new().path(path).flush_every_ms(None).open().expect("open");
        db.get(b"k").expect("read").expect("value").to_vec()
    }

    #[test]
    fn an_interrupted_swap_is_finished_or_undone() {
        // Killed between the two renames, with a whole copy: the copy becomes the store.
        let dir = tempfile::tempdir().expect("dir");
        let p = Paths::new(dir.path());
        db_with(&p.old, b"old");
        db_with(&p.copy, b"copy");
        std::fs::write(&p.copied, b"").expect("marker");
        finish_interrupted(&p).expect("recover");
        assert_eq!(value(&p.store), b"copy");
        assert!(!p.old.exists() && !p.copy.exists() && !p.copied.exists());

        // Killed while copying: the partial copy is dropped, the store kept.
        let dir = tempfile::tempdir().expect("dir");
        let p = Paths::new(dir.path());
        db_with(&p.store, b"store");
        db_with(&p.copy, b"partial");
        finish_interrupted(&p).expect("recover");
        assert_eq!(value(&p.store), b"store");
        assert!(!p.copy.exists());

        // Killed after the first rename, before the copy was marked whole: the old store returns.
        let dir = tempfile::tempdir().expect("dir");
        let p = Paths::new(dir.path());
        db_with(&p.old, b"old");
        db_with(&p.copy, b"partial");
        finish_interrupted(&p).expect("recover");
        assert_eq!(value(&p.store), b"old");
    }
}
