//! A clock that moves only when the test moves it.

use std::time::{Duration, Instant};

/// A virtual clock: it starts from one real [`Instant`] captured at creation (so its instants
/// mix with ordinary ones) and advances only when told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualClock {
    start: Instant,
    now: Instant,
}

impl Default for VirtualClock {
    fn default() -> VirtualClock {
        VirtualClock::new()
    }
}

impl VirtualClock {
    /// A clock reading the real time once, now.
    pub fn new() -> VirtualClock {
        VirtualClock::starting_at(Instant::now())
    }

    /// A clock starting at `start`.
    pub fn starting_at(start: Instant) -> VirtualClock {
        VirtualClock { start, now: start }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// The instant the clock started at.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Virtual time elapsed since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// The instant `d` after the start: how tests name expected instants.
    pub fn at(&self, d: Duration) -> Instant {
        self.start + d
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: Duration) -> Instant {
        self.now += d;
        self.now
    }

    /// Moves the clock to `t`; an instant in the past leaves the clock where it is (time never
    /// goes backwards).
    pub fn advance_to(&mut self, t: Instant) -> Instant {
        if t > self.now {
            self.now = t;
        }
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_only_forward_and_only_when_told() {
        let mut c = VirtualClock::new();
        let t0 = c.now();
        assert_eq!(c.now(), t0);
        c.advance(Duration::from_millis(500));
        assert_eq!(c.elapsed(), Duration::from_millis(500));
        c.advance_to(t0);
        assert_eq!(c.now(), t0 + Duration::from_millis(500));
        c.advance_to(c.at(Duration::from_secs(32)));
        assert_eq!(c.elapsed(), Duration::from_secs(32));
    }
}
