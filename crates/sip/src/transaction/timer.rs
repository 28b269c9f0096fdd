//! The transaction timers of RFC 3261 §17 (Table 4) and RFC 6026, as named variants kept in
//! one table per transaction (after quinn-proto's `connection/timer.rs`).

use std::time::{Duration, Instant};

/// The base timer values (RFC 3261 §17.1.1.1, Table 4). Every transaction timer is derived
/// from these three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; the first retransmission interval (default 500 ms).
    pub t1: Duration,
    /// The longest retransmission interval for non-INVITE requests and INVITE responses
    /// (default 4 s).
    pub t2: Duration,
    /// The longest time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> TimerConfig {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

/// Every retransmission interval is at least this long, so that a zero T1 cannot make a
/// timer fire again at the instant it fired.
const MIN_INTERVAL: Duration = Duration::from_millis(1);

impl TimerConfig {
    /// 64*T1: the transaction timeout (Timers B, F, H, and J on UDP; L and M).
    pub fn timeout(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The first retransmission interval (Timers A, E, G start at T1).
    pub(crate) fn first_interval(&self) -> Duration {
        self.t1.max(MIN_INTERVAL)
    }

    /// T2: the interval of Timer E once a provisional came (RFC 3261 §17.1.2.2).
    pub(crate) fn longest_interval(&self) -> Duration {
        self.t2.max(MIN_INTERVAL)
    }

    /// The interval after `interval` for an INVITE request (Timer A doubles without bound,
    /// RFC 3261 §17.1.1.2).
    pub(crate) fn double(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2).max(MIN_INTERVAL)
    }

    /// The interval after `interval` for a non-INVITE request or an INVITE response
    /// (Timers E and G double up to T2, RFC 3261 §17.1.2.2, §17.2.1).
    pub(crate) fn double_capped(&self, interval: Duration) -> Duration {
        interval.saturating_mul(2).min(self.t2).max(MIN_INTERVAL)
    }

    /// The duration of a timer that is not a retransmission interval, on a reliable
    /// transport or not. For A, E and G (intervals) this is their first value, T1.
    pub fn duration(&self, timer: Timer, reliable: bool) -> Duration {
        let zero_if_reliable = |d: Duration| if reliable { Duration::ZERO } else { d };
        match timer {
            Timer::A | Timer::E | Timer::G => self.first_interval(),
            Timer::B | Timer::F | Timer::H | Timer::L | Timer::M => self.timeout(),
            Timer::D => zero_if_reliable(Duration::from_secs(32).max(self.timeout())),
            Timer::I | Timer::K => zero_if_reliable(self.t4),
            Timer::J => zero_if_reliable(self.timeout()),
        }
    }
}

/// The transaction timers. Timer C (RFC 3261 §16.6 step 11, the proxy's INVITE timeout of more
/// than three minutes) belongs to the proxy core, not to a transaction, and is not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    /// INVITE request retransmission, UDP only: T1, then doubling (RFC 3261 §17.1.1.2).
    A = 0,
    /// INVITE client transaction timeout in Calling: 64*T1 (RFC 3261 §17.1.1.2). Also the
    /// wait for a final response after a CANCEL was sent in Proceeding: 64*T1 (RFC 3261 §9.1).
    B,
    /// Wait for retransmitted non-2xx finals in Completed: max(32 s, 64*T1) on UDP, 0 on
    /// reliable transports (RFC 3261 §17.1.1.2; a MUST since RFC 6026 §8.4).
    D,
    /// Non-INVITE request retransmission, UDP only: T1, doubling up to T2; T2 once a
    /// provisional response arrived (RFC 3261 §17.1.2.2).
    E,
    /// Non-INVITE client transaction timeout: 64*T1 (RFC 3261 §17.1.2.2).
    F,
    /// INVITE non-2xx final response retransmission, UDP only: T1, doubling up to T2
    /// (RFC 3261 §17.2.1).
    G,
    /// Wait for the ACK of a non-2xx final: 64*T1 (RFC 3261 §17.2.1).
    H,
    /// Absorb ACK retransmissions in Confirmed: T4 on UDP, 0 on reliable (RFC 3261 §17.2.1).
    I,
    /// Absorb non-INVITE request retransmissions in Completed: 64*T1 on UDP, 0 on reliable
    /// (RFC 3261 §17.2.2).
    J,
    /// Absorb response retransmissions in Completed: T4 on UDP, 0 on reliable
    /// (RFC 3261 §17.1.2.2).
    K,
    /// Absorb INVITE retransmissions after a 2xx in Accepted: 64*T1 (RFC 6026 §8.7).
    L,
    /// Accept 2xx retransmissions and 2xx from other forks in Accepted: 64*T1
    /// (RFC 6026 §8.4).
    M,
}

impl Timer {
    /// Every timer, in table order.
    pub const ALL: [Timer; 12] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];

    /// The timer's name as the RFC writes it (`"Timer B"`).
    pub fn name(self) -> &'static str {
        match self {
            Timer::A => "Timer A",
            Timer::B => "Timer B",
            Timer::D => "Timer D",
            Timer::E => "Timer E",
            Timer::F => "Timer F",
            Timer::G => "Timer G",
            Timer::H => "Timer H",
            Timer::I => "Timer I",
            Timer::J => "Timer J",
            Timer::K => "Timer K",
            Timer::L => "Timer L",
            Timer::M => "Timer M",
        }
    }
}

/// The running timers of one transaction. No state of the four machines runs more than two
/// at once (A and B, E and F, G and H; every other state one), so the table has three slots
/// rather than one per [`Timer`]: transactions live 32 s after their final response, and at
/// thousands of calls a second the 12-slot table was a fifth of what one kept.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    slots: [Option<(Instant, Timer)>; 3],
}

impl TimerTable {
    /// Starts (or restarts) `timer` to fire `d` after `now`. A deadline past what `Instant` can
    /// hold (only with an absurd [`TimerConfig`]) never fires, rather than panicking.
    pub(crate) fn set_after(&mut self, timer: Timer, now: Instant, d: Duration) {
        self.stop(timer);
        let Some(at) = now.checked_add(d) else { return };
        if let Some(free) = self.slots.iter_mut().find(|s| s.is_none()) {
            *free = Some((at, timer));
            return;
        }
        // A fourth timer at once would be a bug in a machine (see the type's docs): the one
        // due last gives way, so that the transaction still ends.
        debug_assert!(false, "more than three transaction timers at once");
        if let Some(last) = self.slots.iter_mut().max_by_key(|s| s.map(|(at, _)| at)) {
            *last = Some((at, timer));
        }
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        for slot in &mut self.slots {
            if slot.is_some_and(|(_, t)| t == timer) {
                *slot = None;
            }
        }
    }

    pub(crate) fn stop_all(&mut self) {
        self.slots = Default::default();
    }

    #[cfg(test)]
    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.slots.iter().flatten().find(|(_, t)| *t == timer).map(|(at, _)| *at)
    }

    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.slots.iter().flatten().map(|(at, _)| *at).min()
    }

    /// The timer that expires first among those due at `now`, stopped; `None` when none is
    /// due. Ties go to table order, which puts retransmissions before timeouts.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (_, timer) = self.slots.iter().flatten().filter(|(at, _)| *at <= now).min().copied()?;
        self.stop(timer);
        Some(timer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_table_4() {
        let c = TimerConfig::default();
        let s = Duration::from_secs;
        assert_eq!(c.duration(Timer::B, false), s(32));
        assert_eq!(c.duration(Timer::B, true), s(32));
        assert_eq!(c.duration(Timer::D, false), s(32));
        assert_eq!(c.duration(Timer::D, true), s(0));
        assert_eq!(c.duration(Timer::I, false), s(5));
        assert_eq!(c.duration(Timer::I, true), s(0));
        assert_eq!(c.duration(Timer::J, false), s(32));
        assert_eq!(c.duration(Timer::J, true), s(0));
        assert_eq!(c.duration(Timer::K, false), s(5));
        assert_eq!(c.duration(Timer::K, true), s(0));
        assert_eq!(c.duration(Timer::L, true), s(32));
        assert_eq!(c.duration(Timer::M, false), s(32));
        // A larger T1 stretches D beyond 32 s.
        let slow = TimerConfig { t1: s(1), ..c };
        assert_eq!(slow.duration(Timer::D, false), s(64));
        assert_eq!(c.double_capped(s(2)), s(4));
        assert_eq!(c.double_capped(s(4)), s(4));
        assert_eq!(c.double(s(16)), s(32));
    }

    #[test]
    fn absurd_durations_do_not_panic() {
        let t0 = testkit::VirtualClock::new().now();
        let mut t = TimerTable::default();
        t.set_after(Timer::B, t0, Duration::MAX);
        assert_eq!(t.next_timeout(), None);
        let huge = TimerConfig { t1: Duration::MAX, ..TimerConfig::default() };
        assert_eq!(huge.timeout(), Duration::MAX);
        assert_eq!(huge.double(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn table_pops_earliest_first() {
        let t0 = testkit::VirtualClock::new().now();
        let mut t = TimerTable::default();
        assert_eq!(t.next_timeout(), None);
        t.set_after(Timer::B, t0, Duration::from_secs(32));
        t.set_after(Timer::A, t0, Duration::from_millis(500));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(500)));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(40)), Some(Timer::A));
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(40)), Some(Timer::B));
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(40)), None);
    }

    #[test]
    fn table_restarts_and_ties_go_to_table_order() {
        let t0 = testkit::VirtualClock::new().now();
        let mut t = TimerTable::default();
        t.set_after(Timer::H, t0, Duration::from_secs(32));
        t.set_after(Timer::G, t0, Duration::from_secs(1));
        // Restarting a timer moves it; it does not take a second slot.
        t.set_after(Timer::G, t0, Duration::from_secs(32));
        t.set_after(Timer::L, t0, Duration::from_secs(40));
        assert_eq!(t.get(Timer::G), Some(t0 + Duration::from_secs(32)));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(32)));
        // G and H are due at the same instant: G (a retransmission) first.
        let later = t0 + Duration::from_secs(50);
        assert_eq!(t.pop_expired(later), Some(Timer::G));
        assert_eq!(t.pop_expired(later), Some(Timer::H));
        assert_eq!(t.pop_expired(later), Some(Timer::L));
        assert_eq!(t.get(Timer::L), None);
        t.set_after(Timer::K, t0, Duration::from_secs(5));
        t.stop_all();
        assert_eq!(t.next_timeout(), None);
    }
}
