//! An emulated datagram network between socket addresses (after str0m's `crates/netem` and
//! Linux netem): loss, delay with jitter, reordering and duplication, all decided by a seeded
//! [`Rng`], so that a run is reproducible from its seed. Sans-IO like the code it tests: time
//! is an argument, datagrams come out when the caller asks.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::rng::Rng;

/// What the network does to each datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetemConfig {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// The base one-way delay.
    pub delay: Duration,
    /// Extra delay, uniformly in `[0, jitter]`, drawn per datagram: datagrams sent close
    /// together may arrive out of order.
    pub jitter: Duration,
    /// Probability that a datagram skips the delay altogether and overtakes those in flight
    /// (Linux netem's `reorder`).
    pub reorder: f64,
    /// Probability that a datagram arrives twice (each copy with its own delay).
    pub duplicate: f64,
    pub seed: u64,
}

impl NetemConfig {
    /// A perfect link: no loss, 10 ms delay, no jitter, no reordering, no duplicates.
    pub fn new(seed: u64) -> NetemConfig {
        NetemConfig {
            loss: 0.0,
            delay: Duration::from_millis(10),
            jitter: Duration::ZERO,
            reorder: 0.0,
            duplicate: 0.0,
            seed,
        }
    }

    pub fn loss(mut self, p: f64) -> NetemConfig {
        self.loss = p;
        self
    }

    pub fn delay(mut self, d: Duration) -> NetemConfig {
        self.delay = d;
        self
    }

    pub fn jitter(mut self, d: Duration) -> NetemConfig {
        self.jitter = d;
        self
    }

    pub fn reorder(mut self, p: f64) -> NetemConfig {
        self.reorder = p;
        self
    }

    pub fn duplicate(mut self, p: f64) -> NetemConfig {
        self.duplicate = p;
        self
    }
}

/// A datagram in flight or delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram<T> {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub data: T,
    pub sent_at: Instant,
    pub deliver_at: Instant,
}

/// Counters, for assertions that the network really was hostile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetemStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub delivered: u64,
}

/// The emulated network. `T` is the payload (`bytes::Bytes`, `Vec<u8>`...).
#[derive(Debug)]
pub struct Netem<T> {
    config: NetemConfig,
    rng: Rng,
    queue: BinaryHeap<Reverse<Queued<T>>>,
    /// Breaks ties between datagrams due at the same instant: first sent, first delivered.
    seq: u64,
    stats: NetemStats,
}

#[derive(Debug)]
struct Queued<T> {
    seq: u64,
    datagram: Datagram<T>,
}

impl<T> Queued<T> {
    fn order(&self) -> (Instant, u64) {
        (self.datagram.deliver_at, self.seq)
    }
}

impl<T> PartialEq for Queued<T> {
    fn eq(&self, other: &Self) -> bool {
        self.order() == other.order()
    }
}

impl<T> Eq for Queued<T> {}

impl<T> PartialOrd for Queued<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Queued<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.order().cmp(&other.order())
    }
}

impl<T: Clone> Netem<T> {
    pub fn new(config: NetemConfig) -> Netem<T> {
        Netem {
            config,
            rng: Rng::new(config.seed),
            queue: BinaryHeap::new(),
            seq: 0,
            stats: NetemStats::default(),
        }
    }

    /// Changes the link behaviour for datagrams sent from now on (those in flight keep their
    /// fate). The random sequence continues; it is not reseeded.
    pub fn set_config(&mut self, config: NetemConfig) {
        self.config = config;
    }

    pub fn config(&self) -> &NetemConfig {
        &self.config
    }

    /// Puts a datagram on the wire at `now`.
    pub fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: T) {
        self.stats.sent += 1;
        if self.rng.chance(self.config.loss) {
            self.stats.lost += 1;
            return;
        }
        if self.rng.chance(self.config.duplicate) {
            self.stats.duplicated += 1;
            self.enqueue(now, from, to, data.clone());
        }
        self.enqueue(now, from, to, data);
    }

    fn enqueue(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, data: T) {
        let delay = if self.rng.chance(self.config.reorder) {
            self.stats.reordered += 1;
            Duration::ZERO
        } else {
            let jitter = self.rng.duration_between(Duration::ZERO, self.config.jitter);
            self.config.delay + jitter
        };
        self.seq += 1;
        self.queue.push(Reverse(Queued {
            seq: self.seq,
            datagram: Datagram { from, to, data, sent_at: now, deliver_at: now + delay },
        }));
    }

    /// The next datagram due at `now`, earliest first.
    pub fn poll_deliver(&mut self, now: Instant) -> Option<Datagram<T>> {
        let Reverse(head) = self.queue.peek()?;
        if head.datagram.deliver_at > now {
            return None;
        }
        let Reverse(q) = self.queue.pop()?;
        self.stats.delivered += 1;
        Some(q.datagram)
    }

    /// When the next datagram arrives; `None` when nothing is in flight.
    pub fn next_delivery(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(q)| q.datagram.deliver_at)
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    pub fn stats(&self) -> NetemStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VirtualClock;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn perfect_link_delivers_in_order_after_the_delay() {
        let mut clock = VirtualClock::new();
        let mut net: Netem<u32> = Netem::new(NetemConfig::new(1));
        for i in 0..5 {
            net.send(clock.now(), addr(1), addr(2), i);
        }
        assert_eq!(net.poll_deliver(clock.now()), None);
        assert_eq!(net.next_delivery(), Some(clock.at(Duration::from_millis(10))));
        clock.advance_to(net.next_delivery().unwrap());
        let got: Vec<u32> =
            std::iter::from_fn(|| net.poll_deliver(clock.now())).map(|d| d.data).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert_eq!(net.next_delivery(), None);
    }

    #[test]
    fn hostile_link_is_hostile_and_reproducible() {
        let run = |seed| {
            let clock = VirtualClock::new();
            let config = NetemConfig::new(seed)
                .loss(0.3)
                .jitter(Duration::from_millis(50))
                .reorder(0.1)
                .duplicate(0.05);
            let mut net: Netem<u32> = Netem::new(config);
            for i in 0..1000 {
                net.send(clock.now() + Duration::from_millis(i.into()), addr(1), addr(2), i);
            }
            let end = clock.now() + Duration::from_secs(10);
            let got: Vec<u32> =
                std::iter::from_fn(|| net.poll_deliver(end)).map(|d| d.data).collect();
            (got, net.stats())
        };
        let (a, stats) = run(9);
        let (b, _) = run(9);
        assert_eq!(a, b, "same seed, same run");
        assert_ne!(a, run(10).0, "another seed, another run");
        assert!((250..350).contains(&stats.lost), "{stats:?}");
        assert!(stats.duplicated > 10 && stats.reordered > 30, "{stats:?}");
        assert!(a.windows(2).any(|w| w[0] > w[1]), "some reordering");
        assert_eq!(stats.delivered as usize, a.len());
    }
}
