//! Waking sleeping threads early: the outbox worker when a job is enqueued, every background
//! thread when the server stops. (They would otherwise poll.) And the stop as async tasks see it.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::sync::futures::Notified;

/// The server's stop, for async tasks: a flag read with one atomic load, and a wake-up for all
/// who wait on it.
#[derive(Debug, Default)]
pub struct Shutdown {
    raised: AtomicBool,
    waiters: Notify,
}

impl Shutdown {
    pub fn raise(&self) {
        self.raised.store(true, Ordering::SeqCst);
        self.waiters.notify_waiters();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }

    /// Resolves once raised.
    pub fn raised(&self) -> WokenWhen<'_, impl Fn() -> bool + '_> {
        woken_when(&self.waiters, || self.is_raised())
    }
}

pin_project_lite::pin_project! {
    /// Resolves once `ready` (after `notify` woke the task, or at once when it already is, or on
    /// a notification `ready` does not yet show: callers look again). A chat session waits like
    /// this between all its frames, so after the first poll, which files the task's waker with
    /// `notify`, a poll is `ready` alone: a filed `Notified` polled again takes the lock of its
    /// waiter list, for the shutdown a list every session of both workers shares. Whoever makes
    /// `ready` true does so before notifying. A struct, not an `async fn`: every idle
    /// connection's task holds two of these, and the `async fn` took 128 bytes where this takes
    /// 80 (BENCHMARKS.md).
    pub struct WokenWhen<'a, F> {
        #[pin]
        notified: Notified<'a>,
        ready: F,
        filed: bool,
    }
}

pub fn woken_when<F: Fn() -> bool>(notify: &Notify, ready: F) -> WokenWhen<'_, F> {
    WokenWhen { notified: notify.notified(), ready, filed: false }
}

impl<F: Fn() -> bool> Future for WokenWhen<'_, F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        if (this.ready)() {
            return Poll::Ready(());
        }
        if *this.filed {
            // The waker filed is the task's, which stays the same for its whole life.
            return Poll::Pending;
        }
        *this.filed = true;
        this.notified.poll(cx)
    }
}

#[derive(Debug, Default)]
pub struct Signal {
    raised: Mutex<bool>,
    cond: Condvar,
}

impl Signal {
    pub fn raise(&self) {
        *self.raised.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    /// Sleeps until the flag is raised (or already was) or `timeout` passes; returns whether it
    /// is raised. The flag stays raised: for a signal every sleeper must see (stopping).
    pub fn sleep(&self, timeout: Duration) -> bool {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let (raised, _) = self.cond.wait_timeout_while(raised, timeout, |r| !*r).unwrap_or_else(|e| e.into_inner());
        *raised
    }

    /// `sleep`, then lowers the flag: for a nudge to one sleeper (new work), who looks again.
    pub fn take(&self, timeout: Duration) -> bool {
        let raised = self.raised.lock().unwrap_or_else(|e| e.into_inner());
        let (mut raised, _) = self.cond.wait_timeout_while(raised, timeout, |r| !*r).unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *raised)
    }
}

/// Rounds of a worker that looks at its work and then sleeps: whoever asks gets a ticket, and
/// can wait until a round that began after the ask has ended with nothing left to do. (A test
/// proves that nothing is due this way, instead of sleeping and hoping the worker looked.)
#[derive(Debug, Default)]
pub struct Rounds {
    asked: std::sync::atomic::AtomicU64,
    ended: Mutex<u64>,
    cond: Condvar,
}

impl Rounds {
    /// A ticket for the next round; raise the worker's signal after taking it.
    pub fn ask(&self) -> u64 {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1
    }

    /// The worker begins a round: it serves every ticket asked so far.
    pub fn begin(&self) -> u64 {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The worker found nothing more to do in the round it began with `begin`.
    pub fn end(&self, begun: u64) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        *ended = (*ended).max(begun);
        self.cond.notify_all();
    }

    /// Waits until the round serving `ticket` has ended (or `timeout`); whether it has.
    pub fn wait(&self, ticket: u64, timeout: Duration) -> bool {
        let ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        let (ended, _) =
            self.cond.wait_timeout_while(ended, timeout, |e| *e < ticket).unwrap_or_else(|e| e.into_inner());
        *ended >= ticket
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_shutdown_wakes_a_task_that_waits_and_one_that_comes_later() {
        let shutdown = Arc::new(Shutdown::default());
        let waiter = shutdown.clone();
        let waiting = tokio::spawn(async move { waiter.raised().await });
        // Let the task file its waker and go on waiting.
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(!waiting.is_finished() && !shutdown.is_raised());
        shutdown.raise();
        tokio::time::timeout(Duration::from_secs(600), waiting).await.expect("woken").expect("join");
        assert!(shutdown.is_raised());
        tokio::time::timeout(Duration::from_secs(600), shutdown.raised()).await.expect("already raised");
    }

    #[test]
    fn a_raise_wakes_a_sleeper_at_once_and_a_take_lowers_it() {
        let signal = Arc::new(Signal::default());
        assert!(!signal.take(Duration::from_millis(1)), "nothing raised: the timeout");
        let raiser = signal.clone();
        let woken = std::thread::spawn(move || raiser.take(Duration::from_secs(600)));
        std::thread::sleep(Duration::from_millis(20));
        signal.raise();
        assert!(woken.join().expect("join"), "woken by the raise, long before 600 s");
        assert!(!signal.take(Duration::from_millis(1)), "taken: lowered again");
        signal.raise();
        assert!(
            signal.sleep(Duration::from_secs(600)) && signal.sleep(Duration::from_secs(600)),
            "sleep keeps it raised"
        );
    }

    #[test]
    fn a_ticket_is_served_only_by_a_round_that_began_after_it() {
        let rounds = Rounds::default();
        let early = rounds.begin();
        let ticket = rounds.ask();
        rounds.end(early);
        assert!(!rounds.wait(ticket, Duration::from_millis(1)), "that round began before the ask");
        let round = rounds.begin();
        rounds.end(round);
        assert!(rounds.wait(ticket, Duration::from_millis(1)));
    }
}
