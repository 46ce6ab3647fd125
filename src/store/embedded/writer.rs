//! The group commit: the writer thread stages every batch waiting in its queue, appends them to
//! the journal as one group (`store/journal.rs`), puts their writes in the overlay and hands the
//! group to the flusher thread, which syncs the journal once for every group handed over before
//! it started, then acknowledges them all. Under load many sessions share each `fdatasync`, and
//! the next group is applied while the last one is synced; alone, a batch waits for one sync. A
//! third thread checkpoints what the groups left in the overlay into sled (`store/overlay.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;

use tokio::sync::{mpsc, oneshot};

use super::apply::{Group, Memory};
use super::{Command, Result, Stats, StoreError, Trees};

/// Batches waiting beyond this make `commit` wait for room: backpressure instead of memory growth.
const QUEUE: usize = 4096;
/// Upper bound of batches applied under one flush, so the first in line is not kept waiting.
const GROUP: usize = 1024;
/// How long writes wait in the overlay at most before a checkpoint writes them into the trees.
const CHECKPOINT: std::time::Duration = std::time::Duration::from_secs(1);

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
    let flusher = std::thread::Builder::new()
        .name("nudge-store-flush".into())
        .spawn({
            let journal = trees.journal.clone();
            move || {
                batch_scheduling();
                while let Ok(first) = applied_rx.recv() {
                    // Everything received was applied before this flush starts, so it covers all.
                    let mut groups = vec![first];
                    while let Ok(more) = applied_rx.try_recv() {
                        groups.push(more);
                    }
                    let flushed = journal.sync().map_err(super::io);
                    stats.flushes.fetch_add(1, Ordering::Relaxed);
                    let made_durable: usize = groups.iter().map(|g| g.acks.len()).sum();
                    metrics::histogram!(crate::metrics::name::GROUP_BATCHES).record(made_durable as f64);
                    for group in groups {
                        stats.batches.fetch_add(group.acks.len() as u64, Ordering::Relaxed);
                        for (done, result) in group.acks {
                            let result = result.and_then(|()| flushed.clone());
                            // A session that went away no longer waits for its acknowledgement.
                            let _ = done.send(result);
                        }
                    }
                }
            }
        })
        .expect("cannot start the store flush thread");
    // Checkpoints run on their own thread, so the writer never stops for one (one after a second
    // of a thousand chats writes a thousand profiles and chunks), once a second or when the
    // writer finds the overlay full.
    let (checkpoint_tx, checkpoint_rx) = std::sync::mpsc::sync_channel::<()>(1);
    let checkpointer = {
        let trees = trees.clone();
        std::thread::Builder::new()
            .name("nudge-store-checkpoint".into())
            .spawn(move || {
                batch_scheduling();
                loop {
                    let last = matches!(checkpoint_rx.recv_timeout(CHECKPOINT), Err(RecvTimeoutError::Disconnected));
                    // A failed checkpoint is tried again at the next: until then its writes wait
                    // in the overlay, readable, and the journal keeps them.
                    if (last || !trees.overlay.paused())
                        && let Err(e) = super::overlay::checkpoint(&db, &trees)
                    {
                        log::error!("store: cannot checkpoint the overlay into the trees: {e}");
                    }
                    if last {
                        return;
                    }
                }
            })
            .expect("cannot start the store checkpoint thread")
    };
    let writer = std::thread::Builder::new()
        .name("nudge-store-writer".into())
        .spawn(move || {
            batch_scheduling();
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
                // A checkpoint must not move turns the erasure is taking out.
                let no_checkpoint = erases.then(|| trees.overlay.exclusive());
                let applied = apply(&trees, &mut memory, seq, group.drain(..));
                drop(no_checkpoint);
                if applied_tx.send(applied).is_err() {
                    return;
                }
                if trees.overlay.is_full() {
                    // Full: a checkpoint is already asked for, and it will take these too.
                    let _ = checkpoint_tx.try_send(());
                }
            }
            // Dropping `applied_tx` lets the flusher finish; dropping `checkpoint_tx` then makes
            // the last checkpoint (a clean stop leaves the journal empty). Joining them keeps the
            // lock until then.
            drop(applied_tx);
            let _ = flusher.join();
            drop(checkpoint_tx);
            let _ = checkpointer.join();
        })
        .expect("cannot start the store writer thread");
    Handle { queue: Some(queue), writer: Some(writer) }
}

/// Puts the calling thread (writer, flusher, checkpoint) in Linux's `SCHED_BATCH` class: woken,
/// it does not preempt a running thread. A session that hands the writer its batch keeps its
/// core and goes on with the other sessions' messages, whose batches then join the same group,
/// instead of giving way to a writer that wakes for one batch at a time; the same for the
/// flusher and the groups it syncs. On two cores shared with the load generator: context
/// switches per round trip 0.40 → 0.17, round trips per `fdatasync` 43 → 66, server CPU −10 %
/// (BENCHMARKS.md, fourteenth session).
fn batch_scheduling() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: changes only the calling thread's scheduling class; `param` outlives the call.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            log::debug!("store: SCHED_BATCH refused: {}", std::io::Error::last_os_error());
        }
    }
}

/// A group applied and waiting for its flush: who to acknowledge.
struct Applied {
    acks: Vec<(oneshot::Sender<Result<()>>, Result<()>)>,
}

/// Stages each batch (one that fails is answered with its error, the others go on) and writes
/// the staged ones; when that fails, each of them fails.
fn apply(trees: &Trees, memory: &mut Memory, seq: u64, jobs: impl Iterator<Item = Job>) -> Applied {
    let mut staged = Group::new(trees);
    let mut acks: Vec<_> = jobs.map(|job| (job.done, staged.stage(memory, job.commands))).collect();
    if let Err(e) = staged.commit(memory, seq) {
        log::error!("store: a group commit failed: {e}");
        for (_, result) in acks.iter_mut().filter(|(_, r)| r.is_ok()) {
            *result = Err(e.clone());
        }
    }
    Applied { acks }
}
