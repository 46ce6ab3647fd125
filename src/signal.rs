//! Waking sleeping threads early: the outbox worker when a job is enqueued, every background
//! thread when the server stops. (They would otherwise poll.)

use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// A flag that threads sleep on until it is raised or their timeout passes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

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
}
