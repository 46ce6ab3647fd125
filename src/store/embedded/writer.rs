//! The group commit: the writer thread stages every batch waiting in its queue, appends them to
//! the journal as one group (`store/journal.rs`), puts their writes in the overlay, syncs the
//! journal and acknowledges them all, each worker thread's sessions through that thread's relay.
//! The batches that come while it works form the next group: under load many sessions share each
//! `fdatasync`; alone, a batch waits for one sync. A second thread checkpoints what the groups
//! left in the overlay into sled (`store/overlay.rs`).
//!
//! The sync is the writer's own, not a flusher thread's that would sync one group while the
//! writer applies the next: with every store thread at `SCHED_BATCH`, handing each group to
//! another thread cost it one more wait for a core (about 290 µs a group at 100 connections,
//! `bench/cpu`) and both threads their wake-ups, more than the overlap won (BENCHMARKS.md,
//! twenty-seventh session).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;

use tokio::sync::{mpsc, oneshot};

use super::apply::{Group, Memory};
use super::{Command, Result, Stats, StoreError, Trees};

/// Batches waiting beyond this make `commit` wait for room: backpressure instead of memory growth.
const QUEUE: usize = 4096;
/// Upper bound of batches applied under one sync, so the first in line is not kept waiting.
const GROUP: usize = 1024;
/// How long writes wait in the overlay at most before a checkpoint writes them into the trees.
const CHECKPOINT: std::time::Duration = std::time::Duration::from_secs(1);

struct Job {
    commands: Vec<Command>,
    done: oneshot::Sender<Result<()>>,
    relay: Option<Relay>,
}

/// A batch's answer: the session's channel, the result to send on it, and the batch's commands.
/// The commands go back to be dropped on the thread that made them: freed on the writer's
/// thread, each of their blocks was handed back to its worker's allocator through a list both
/// threads write (BENCHMARKS.md, thirtieth session).
type Ack = (oneshot::Sender<Result<()>>, Result<()>, Vec<Command>);

/// Hands a group's answers to one runtime thread in one message; a task there sends each.
///
/// Waking a session directly from the store's thread costs each session a wake of its sleeping
/// worker thread, which preempts the store's thread for that one session and parks again: two
/// context switches per batch, and the next sync waits until the last answer is out (about
/// 0.8 ms per sync at 100 connections, BENCHMARKS.md). Through the relay the writer wakes each
/// worker thread once and that thread answers all its sessions in one go.
type Relay = mpsc::UnboundedSender<Vec<Ack>>;

thread_local! {
    static RELAY: std::cell::RefCell<Option<Relay>> = const { std::cell::RefCell::new(None) };
}

/// The calling thread's relay, started on first use. Only on a current-thread runtime (each actix
/// worker has one): there the relay task runs on this very thread, next to its sessions.
fn relay() -> Option<Relay> {
    let runtime = tokio::runtime::Handle::try_current().ok()?;
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return None;
    }
    RELAY.with_borrow_mut(|relay| {
        // A relay whose runtime is gone (tests start one after another) is closed.
        if relay.as_ref().is_none_or(|relay| relay.is_closed()) {
            let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Ack>>();
            runtime.spawn(async move {
                while let Some(acks) = rx.recv().await {
                    answer(acks);
                }
            });
            *relay = Some(tx);
        }
        relay.clone()
    })
}

fn answer(acks: Vec<Ack>) {
    for (done, result, commands) in acks {
        // A session that went away no longer waits for its acknowledgement.
        let _ = done.send(result);
        drop(commands);
    }
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
        // The queue nearly always has room. Only a batch that must wait for it builds the send's
        // future, boxed: inline it took 250 bytes of every message's future (`-Zprint-type-sizes`).
        match queue.try_send(Job { commands, done, relay: relay() }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(job)) => {
                Box::pin(queue.send(job)).await.map_err(|_| StoreError::Closed)?;
            }
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(StoreError::Closed),
        }
        wait.await.map_err(|_| StoreError::Closed)?
    }

    pub fn commit_blocking(&self, commands: Vec<Command>) -> Result<()> {
        let (done, wait) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(StoreError::Closed)?;
        queue.blocking_send(Job { commands, done, relay: None }).map_err(|_| StoreError::Closed)?;
        wait.blocking_recv().map_err(|_| StoreError::Closed)?
    }
}

pub fn spawn(db: sled::Db, trees: Trees, mut memory: Memory, stats: Arc<Stats>) -> Handle {
    let (queue, mut jobs) = mpsc::channel::<Job>(QUEUE);
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
                if trees.overlay.is_full() {
                    // Full: a checkpoint is already asked for, and it will take these too.
                    let _ = checkpoint_tx.try_send(());
                }
                let flushed = trees.journal.sync().map_err(super::io);
                stats.flushes.fetch_add(1, Ordering::Relaxed);
                metrics::histogram!(crate::metrics::name::GROUP_BATCHES).record(applied.len() as f64);
                stats.batches.fetch_add(applied.len() as u64, Ordering::Relaxed);
                acknowledge(applied, flushed);
            }
            // Dropping `checkpoint_tx` makes the last checkpoint (a clean stop leaves the journal
            // empty). Joining it keeps the lock until then.
            drop(checkpoint_tx);
            let _ = checkpointer.join();
        })
        .expect("cannot start the store writer thread");
    Handle { queue: Some(queue), writer: Some(writer) }
}

/// Puts the calling thread (writer, checkpoint) in Linux's `SCHED_BATCH` class: woken, it does
/// not preempt a running thread. A session that hands the writer its batch keeps its core and
/// goes on with the other sessions' messages, whose batches then join the same group, instead
/// of giving way to a writer that wakes for one batch at a time. On two cores shared with the
/// load generator: context switches per round trip 0.40 → 0.17, round trips per `fdatasync`
/// 43 → 66, server CPU −10 % (BENCHMARKS.md, fourteenth session).
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

/// Answers every batch of the group with its own result, or the sync's failure: one bundle per
/// relay (one per worker thread), so one wake-up for each; batches without a relay directly.
fn acknowledge(group: Applied, flushed: Result<()>) {
    let mut bundles: Vec<(Relay, Vec<Ack>)> = Vec::new();
    let mut direct = Vec::new();
    for (relay, (done, result, commands)) in group {
        let ack = (done, result.and_then(|()| flushed.clone()), commands);
        match relay {
            None => direct.push(ack),
            Some(relay) => match bundles.iter_mut().find(|(r, _)| r.same_channel(&relay)) {
                Some((_, acks)) => acks.push(ack),
                None => bundles.push((relay, vec![ack])),
            },
        }
    }
    for (relay, acks) in bundles {
        // A relay whose runtime stopped hands the answers back.
        if let Err(unsent) = relay.send(acks) {
            answer(unsent.0);
        }
    }
    answer(direct);
}

/// A group applied and waiting for its sync: who to acknowledge, and through which relay.
type Applied = Vec<(Option<Relay>, Ack)>;

/// Stages each batch (one that fails is answered with its error, the others go on) and writes
/// the staged ones; when that fails, each of them fails.
fn apply(trees: &Trees, memory: &mut Memory, seq: u64, jobs: impl Iterator<Item = Job>) -> Applied {
    let mut staged = Group::new(trees);
    let mut acks: Vec<_> = jobs
        .map(|job| {
            let staged = staged.stage(memory, &job.commands);
            (job.relay, (job.done, staged, job.commands))
        })
        .collect();
    if let Err(e) = staged.commit(memory, seq) {
        log::error!("store: a group commit failed: {e}");
        for (_, (_, result, _)) in acks.iter_mut().filter(|(_, (_, r, _))| r.is_ok()) {
            *result = Err(e.clone());
        }
    }
    acks
}
