//! The group commit: the writer thread stages every batch waiting in its queue, writes them
//! (through the journal: `store/journal.rs`) and hands the group to the flusher thread, which
//! flushes sled once for every group handed over before it started, then acknowledges them all. Under load many sessions share each `fsync`, and the
//! next group is applied while the last one is flushed; alone, a batch waits for one flush.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::apply::{Group, Memory};
use super::{Command, Result, Stats, StoreError, T, Trees};

/// Batches waiting beyond this make `commit` wait for room: backpressure instead of memory growth.
const QUEUE: usize = 4096;
/// Upper bound of batches applied under one flush, so the first in line is not kept waiting.
const GROUP: usize = 1024;

struct Job {
    commands: Vec<Command>,
    done: oneshot::Sender<Result<()>>,
}

pub struct Handle {
    queue: Option<mpsc::Sender<Job>>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Handle {
    /// Closes the queue and joins the writer, so that the store's directory lock is released
    /// when `Store` is gone.
    fn drop(&mut self) {
        self.queue.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Handle {
    pub async fn commit(&self, commands: Vec<Command>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.send(Job { commands, done }).await.map_err(|_| StoreError::Closed)?;
        wait.await.map_err(|_| StoreError::Closed)?
    }

    pub fn commit_blocking(&self, commands: Vec<Command>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.blocking_send(Job { commands, done }).map_err(|_| StoreError::Closed)?;
        wait.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}

pub fn spawn(db: sled::Db, trees: Trees, mut memory: Memory, stats: Arc<Stats>) -> Handle {
    let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
    // Applied groups wait here for the flusher, so the next group is applied while the last
    // one is being flushed (the `fsync` is most of a commit's time).
    let (applied_tx, applied_rx) = std::sync::mpsc::channel::<Applied>();
    let journal = trees[T::Journal].clone();
    let flusher = std::thread::Builder::new()
        .name("nudge-store-flush".into())
        .spawn(move || {
            while let Ok(first) = applied_rx.recv() {
                // Everything received was applied before this flush starts, so it covers all.
                let mut groups = vec![first];
                while let Ok(more) = applied_rx.try_recv() {
                    groups.push(more);
                }
                let flushed = db.flush().map(drop);
                stats.flushes.fetch_add(1, Ordering::Relaxed);
                let made_durable: usize = groups.iter().map(|g| g.acks.len()).sum();
                metrics::histogram!(crate::metrics::name::GROUP_BATCHES).record(made_durable as f64);
                for group in groups {
                    stats.batches.fetch_add(group.acks.len() as u64, Ordering::Relaxed);
                    for (done, result) in group.acks {
                        let result = result.and_then(|()| flushed.clone().map_err(StoreError::Sled));
                        // A session that went away no longer waits for its acknowledgement.
                        let _ = done.send(result);
                    }
                    // The group is on disk: its journal entry has done its work. The removal is
                    // durable with the next flush, before any later group is acknowledged.
                    if let (Some(seq), Ok(())) = (group.journal, &flushed)
                        && let Err(e) = journal.remove(super::journal::key(seq))
                    {
                        log::error!("store: cannot remove journal entry {seq}: {e}");
                    }
                }
            }
        })
        .expect("cannot start the store flush thread");
    // Merges run on their own thread, so the writer never stops for one (a merge after a second
    // of a thousand chats writes a thousand chunks). A group that erases holds `merging` from
    // staging to writing: the merge must not move turns the erasure is taking out.
    let merging = Arc::new(Mutex::new(()));
    let (merge_tx, merge_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let merger = {
        let (trees, merging) = (trees.clone(), merging.clone());
        std::thread::Builder::new()
            .name("nudge-store-merge".into())
            .spawn(move || {
                while merge_rx.recv().is_ok() {
                    let _merging = merging.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    // A failed merge is tried again when the next is due: until then the recent
                    // turns stay readable where they are.
                    if let Err(e) = super::turns::merge(&trees) {
                        log::error!("store: cannot merge recent turns into transcripts: {e}");
                    }
                }
            })
            .expect("cannot start the store merge thread")
    };
    let writer = std::thread::Builder::new()
        .name("nudge-store-writer".into())
        .spawn(move || {
            let mut group = Vec::with_capacity(GROUP);
            let mut seq = 0u64;
            while let Some(first) = jobs.blocking_recv() {
                group.push(first);
                while group.len() < GROUP {
                    match jobs.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                seq += 1;
                let erases = group
                    .iter()
                    .flat_map(|job| &job.commands)
                    .any(|command| matches!(command, Command::Erase { .. } | Command::ExpireConversation(_)));
                let no_merge = erases.then(|| merging.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
                let applied = apply(&trees, &mut memory, seq, group.drain(..));
                drop(no_merge);
                if applied_tx.send(applied).is_err() {
                    return;
                }
                if memory.merge_due() {
                    // Full: a merge is already asked for, and it will take these turns too.
                    let _ = merge_tx.try_send(());
                    memory.merged();
                }
            }
            // Dropping `applied_tx` and `merge_tx` lets the flusher and the merger finish;
            // joining them keeps the lock until then.
            drop(applied_tx);
            drop(merge_tx);
            let _ = flusher.join();
            let _ = merger.join();
        })
        .expect("cannot start the store writer thread");
    Handle { queue: Some(queue), writer: Some(writer) }
}

/// A group applied and waiting for its flush: who to acknowledge, and its journal entry.
struct Applied {
    acks: Vec<(oneshot::Sender<Result<()>>, Result<()>)>,
    journal: Option<u64>,
}

/// Stages each batch (one that fails is answered with its error, the others go on) and writes
/// the staged ones; when that fails, each of them fails.
fn apply(trees: &Trees, memory: &mut Memory, seq: u64, jobs: impl Iterator<Item = Job>) -> Applied {
    let mut staged = Group::new(trees);
    let mut acks: Vec<_> = jobs.map(|job| (job.done, staged.stage(memory, job.commands))).collect();
    match staged.commit(memory, seq) {
        Ok(journal) => Applied { acks, journal },
        Err(e) => {
            log::error!("store: a group commit failed: {e}");
            for (_, result) in acks.iter_mut().filter(|(_, r)| r.is_ok()) {
                *result = Err(e.clone());
            }
            Applied { acks, journal: None }
        }
    }
}
