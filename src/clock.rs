//! The time the shell reads, passed in: the system clock in production, a clock that only moves
//! when told to in tests (so a test can make a follow-up due without waiting an hour, or show
//! that nothing is due yet without sleeping). The pure core never reads a clock: it is given
//! `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch. Cheap to clone; every clone reads the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<Moved>>);

#[derive(Debug)]
struct Moved {
    /// Stands still (a unit test's clock) or runs with the system clock (a test server's).
    still: bool,
    /// The time it stands at, or how far ahead of the system clock it runs.
    ms: AtomicU64,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that stands at `at` (ms since the epoch) until it is moved.
    pub fn manual(at: u64) -> Clock {
        Clock(Some(Arc::new(Moved { still: true, ms: AtomicU64::new(at) })))
    }

    /// The system clock, which a test can move ahead (a follow-up due in an hour is due after
    /// `advance(1h)`), while everything that waits on real time still sees time pass.
    pub fn movable() -> Clock {
        Clock(Some(Arc::new(Moved { still: false, ms: AtomicU64::new(0) })))
    }

    pub fn now_ms(&self) -> u64 {
        match &self.0 {
            None => crate::now_ms(),
            Some(moved) if moved.still => moved.ms.load(Ordering::SeqCst),
            Some(moved) => crate::now_ms().saturating_add(moved.ms.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual or movable clock forward; the system clock is left alone.
    pub fn advance(&self, by: Duration) {
        if let Some(moved) = &self.0 {
            moved.ms.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_its_clones_follow() {
        let clock = Clock::manual(1_000);
        let copy = clock.clone();
        assert_eq!(clock.now_ms(), 1_000);
        copy.advance(Duration::from_secs(3600));
        assert_eq!(clock.now_ms(), 1_000 + 3_600_000);
        let movable = Clock::movable();
        movable.advance(Duration::from_secs(3600));
        assert!(movable.now_ms().abs_diff(crate::now_ms() + 3_600_000) < 60_000, "an hour ahead, and running");
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        assert!(system.now_ms().abs_diff(crate::now_ms()) < 60_000, "the system clock is not moved");
    }
}
