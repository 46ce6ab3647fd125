//! The time the shell reads, passed in: the system clock in production, and in tests the system
//! clock moved ahead as far as the test says (so a test can make a follow-up due without waiting an
//! hour, or show that nothing is due yet without sleeping). The pure core never reads a clock: it
//! is given `now`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Milliseconds since the Unix epoch. Cheap to clone; every clone reads the same time.
#[derive(Clone, Debug, Default)]
pub struct Clock(Option<Arc<AtomicU64>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// The system clock, which a test can move ahead (a follow-up due in an hour is due after
    /// `advance(1h)`), while everything that waits on real time still sees time pass.
    pub fn movable() -> Clock {
        Clock(Some(Arc::default()))
    }

    pub fn now_ms(&self) -> u64 {
        let ahead = self.0.as_ref().map_or(0, |ahead| ahead.load(Ordering::SeqCst));
        crate::now_ms().saturating_add(ahead)
    }

    /// Moves a movable clock forward; the system clock is left alone.
    pub fn advance(&self, by: Duration) {
        if let Some(ahead) = &self.0 {
            ahead.fetch_add(u64::try_from(by.as_millis()).unwrap_or(u64::MAX), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_movable_clock_and_its_clones_run_ahead_by_what_it_was_moved() {
        let movable = Clock::movable();
        let copy = movable.clone();
        copy.advance(Duration::from_secs(3600));
        assert!(movable.now_ms().abs_diff(crate::now_ms() + 3_600_000) < 60_000, "an hour ahead, and running");
        let system = Clock::system();
        system.advance(Duration::from_secs(3600));
        assert!(system.now_ms().abs_diff(crate::now_ms()) < 60_000, "the system clock is not moved");
    }
}
