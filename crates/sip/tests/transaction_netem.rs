//! Two transaction layers talking over an emulated lossy, jittery, reordering, duplicating
//! network, on a virtual clock: a scripted UAC core on one side, a scripted UAS core on the
//! other. Every random decision comes from the seed, so a failure replays exactly.

// Test code: helpers outside #[test] functions may unwrap too (a panic is a failed test).
#![allow(clippy::unwrap_used)]

mod transaction_support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::transaction::{
    CancelStatus, ClientKey, Event, Peer, ServerKey, Timer, TxnConfig, TxnLayer, TxnState,
};
use sip::{Framing, HeaderName, Message, Method, Response};
use testkit::msg::{Ids, RequestText};
use testkit::{Netem, NetemConfig, Rng, VirtualClock};
use transaction_support::{ms, request, secs};

const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMEOUT: Duration = Duration::from_secs(32);

fn uac_addr() -> SocketAddr {
    "192.0.2.1:5060".parse().unwrap()
}

fn uas_addr() -> SocketAddr {
    "192.0.2.2:5060".parse().unwrap()
}

/// What the UAC asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An INVITE the UAS answers with this final status (after a 180); 0: it rings until
    /// cancelled (the UAS gives up with a 480 after 90 s).
    Invite(u16),
    /// A MESSAGE the UAS answers 200.
    Message,
    /// The CANCEL of an INVITE still unanswered `cancel_after` its start (the UAC core's
    /// stand-in for Timer C).
    Cancel,
}

/// What the UAC core saw of one client transaction.
#[derive(Debug)]
struct Record {
    kind: Kind,
    started: Instant,
    request: String,
    responses: Vec<(Instant, Response)>,
    timeout: Option<(Instant, Timer)>,
    terminated: Option<Instant>,
    /// When the UAC core cancelled this INVITE.
    cancelled: Option<Instant>,
}

/// The UAC core: starts transactions on schedule, ACKs every 2xx (RFC 3261 §13.2.2.4).
#[derive(Debug, Default)]
struct Uac {
    ids: Ids,
    schedule: BTreeMap<Instant, Vec<Kind>>,
    records: HashMap<ClientKey, Record>,
    strays: usize,
    /// Cancel INVITEs still in Proceeding this long after their start.
    cancel_after: Option<Duration>,
    cancel_checks: BTreeMap<Instant, Vec<ClientKey>>,
}

/// A 2xx the UAS core retransmits until its ACK (RFC 3261 §13.3.1.4).
#[derive(Debug)]
struct Pending2xx {
    key: ServerKey,
    response: Response,
    first_sent: Instant,
    next: Instant,
    interval: Duration,
}

/// The UAS core: 180 at once then the final 300 ms later for INVITE, 200 at once otherwise.
#[derive(Debug, Default)]
struct Uas {
    /// Finals to send: (when, key, response).
    finals: Vec<(Instant, ServerKey, Response)>,
    /// By Call-ID.
    pending_2xx: HashMap<String, Pending2xx>,
    /// Every request the TU saw, by (Call-ID, CSeq method): must be one each.
    seen: HashMap<(String, Method), usize>,
    h_timeouts: usize,
}

struct World {
    clock: VirtualClock,
    net: Netem<Bytes>,
    uac_layer: TxnLayer,
    uas_layer: TxnLayer,
    uac: Uac,
    uas: Uas,
}

impl World {
    fn new(net: NetemConfig) -> World {
        World {
            clock: VirtualClock::new(),
            net: Netem::new(net),
            uac_layer: TxnLayer::new(TxnConfig::default()),
            uas_layer: TxnLayer::new(TxnConfig::default()),
            uac: Uac::default(),
            uas: Uas::default(),
        }
    }

    /// Drains both layers until nothing moves (the run-loop contract, both sides).
    fn settle(&mut self) {
        let now = self.clock.now();
        loop {
            let mut moved = false;
            while let Some(t) = self.uac_layer.poll_transmit() {
                self.net.send(now, uac_addr(), t.to.addr, t.message);
                moved = true;
            }
            while let Some(t) = self.uas_layer.poll_transmit() {
                self.net.send(now, uas_addr(), t.to.addr, t.message);
                moved = true;
            }
            while let Some(e) = self.uac_layer.poll_event() {
                self.uac_event(now, e);
                moved = true;
            }
            while let Some(e) = self.uas_layer.poll_event() {
                self.uas_event(now, e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn uac_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Response { key, response } => {
                let rec = self.uac.records.get_mut(&key).expect("a known transaction");
                assert!(rec.terminated.is_none(), "response after Terminated");
                let is_invite_2xx =
                    matches!(rec.kind, Kind::Invite(_)) && (200..300).contains(&response.status());
                if is_invite_2xx {
                    let ack = ack_for_2xx(&mut self.uac.ids, &rec.request, &response);
                    self.uac_layer.send_stateless(Peer::udp(uas_addr()), ack);
                }
                rec.responses.push((now, response));
            }
            Event::Timeout { key, timer } => {
                let sip::transaction::TxnKey::Client(key) = key else {
                    panic!("server timeout on the UAC side")
                };
                self.uac.records.get_mut(&key).unwrap().timeout = Some((now, timer));
            }
            Event::Terminated { key } => {
                let sip::transaction::TxnKey::Client(key) = key else {
                    panic!("server transaction on the UAC side")
                };
                let rec = self.uac.records.get_mut(&key).unwrap();
                assert!(rec.terminated.is_none(), "terminated twice");
                rec.terminated = Some(now);
            }
            Event::StrayResponse { .. } => {
                // A 2xx retransmitted after Timer M, or a final after the transaction gave up
                // (Timer B after a CANCEL): nothing to match any more.
                self.uac.strays += 1;
            }
            other => panic!("UAC got {other:?}"),
        }
    }

    fn uas_event(&mut self, now: Instant, e: Event) {
        match e {
            Event::Request { key, request, .. } => {
                let h = request.headers();
                let id = (h.call_id().unwrap().to_owned(), request.method().clone());
                *self.uas.seen.entry(id).or_default() += 1;
                if *request.method() == Method::Invite {
                    let answer: u16 = std::str::from_utf8(h.get_named("X-Answer").unwrap())
                        .unwrap()
                        .parse()
                        .unwrap();
                    let mut ringing = Response::for_request(&request, 180, "Ringing");
                    ringing.set_to_tag("uas");
                    self.uas_layer.send_response(now, key, ringing).unwrap();
                    let (answer, after) = match answer {
                        0 => (480, secs(90)),
                        n => (n, ms(300)),
                    };
                    let mut fin = Response::for_request(&request, answer, "Final");
                    fin.set_to_tag("uas");
                    self.uas.finals.push((now + after, key, fin));
                } else {
                    let ok = Response::for_request(&request, 200, "OK");
                    self.uas_layer.send_response(now, key, ok).unwrap();
                }
            }
            Event::Cancel { key, invite, request, .. } => {
                let id = (request.headers().call_id().unwrap().to_owned(), Method::Cancel);
                *self.uas.seen.entry(id).or_default() += 1;
                let ok = Response::for_request(&request, 200, "OK");
                self.uas_layer.send_response(now, key, ok).unwrap();
                if let Some(invite) = invite
                    && !self.uas_layer.is_answered(invite)
                {
                    self.uas.finals.retain(|(_, k, _)| *k != invite);
                    let mut terminated = Response::for_request(&request, 487, "Terminated");
                    terminated.headers_mut().set(HeaderName::CSeq, "1 INVITE");
                    terminated.set_to_tag("uas");
                    self.uas_layer.send_response(now, invite, terminated).unwrap();
                }
            }
            Event::Ack { request, .. } => {
                let call_id = request.headers().call_id().unwrap().to_owned();
                self.uas.pending_2xx.remove(&call_id);
            }
            Event::Timeout { timer, .. } => {
                assert_eq!(timer, Timer::H);
                self.uas.h_timeouts += 1;
            }
            Event::Terminated { .. } => {}
            other => panic!("UAS got {other:?}"),
        }
    }

    fn start_due(&mut self, now: Instant) {
        let due: Vec<Instant> = self.uac.schedule.range(..=now).map(|(t, _)| *t).collect();
        for t in due {
            for kind in self.uac.schedule.remove(&t).unwrap() {
                let ids = &mut self.uac.ids;
                let text = match kind {
                    Kind::Invite(answer) => {
                        RequestText::invite(ids, "sip:bob@uas.invalid", "UDP", "192.0.2.1:5060")
                            .header("X-Answer", &answer.to_string())
                            .build()
                    }
                    Kind::Message | Kind::Cancel => RequestText::fresh(
                        ids,
                        "MESSAGE",
                        "sip:bob@uas.invalid",
                        "UDP",
                        "192.0.2.1:5060",
                    )
                    .build(),
                };
                let key = self
                    .uac_layer
                    .send_request(now, Peer::udp(uas_addr()), request(&text))
                    .unwrap();
                self.uac.records.insert(
                    key,
                    Record {
                        kind,
                        started: now,
                        request: text,
                        responses: Vec::new(),
                        timeout: None,
                        terminated: None,
                        cancelled: None,
                    },
                );
                if let (Kind::Invite(_), Some(after)) = (kind, self.uac.cancel_after) {
                    self.uac.cancel_checks.entry(now + after).or_default().push(key);
                }
            }
        }
    }

    fn uac_timers(&mut self, now: Instant) {
        let due: Vec<Instant> = self.uac.cancel_checks.range(..=now).map(|(t, _)| *t).collect();
        for t in due {
            for invite in self.uac.cancel_checks.remove(&t).unwrap() {
                if self.uac_layer.state(invite) != Some(TxnState::Proceeding) {
                    continue;
                }
                let Ok(CancelStatus::Sent(cancel)) = self.uac_layer.cancel(now, invite) else {
                    panic!("a CANCEL in Proceeding goes out at once");
                };
                let rec = self.uac.records.get_mut(&invite).unwrap();
                rec.cancelled = Some(now);
                let request = rec.request.clone();
                self.uac.records.insert(
                    cancel,
                    Record {
                        kind: Kind::Cancel,
                        started: now,
                        request,
                        responses: Vec::new(),
                        timeout: None,
                        terminated: None,
                        cancelled: None,
                    },
                );
            }
        }
    }

    fn uas_timers(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.uas.finals).into_iter().partition(|(t, _, _)| *t <= now);
        self.uas.finals = later;
        for (_, key, fin) in due {
            let call_id = fin.headers().call_id().unwrap().to_owned();
            let is_2xx = fin.status() < 300;
            self.uas_layer.send_response(now, key, fin.clone()).unwrap();
            if is_2xx {
                self.uas.pending_2xx.insert(
                    call_id,
                    Pending2xx {
                        key,
                        response: fin,
                        first_sent: now,
                        next: now + T1,
                        interval: T1,
                    },
                );
            }
        }
        let layer = &mut self.uas_layer;
        self.uas.pending_2xx.retain(|_, p| {
            if p.next > now {
                return true;
            }
            if now >= p.first_sent + TIMEOUT {
                // No ACK in 64*T1: the UAS core gives up (and would send a BYE).
                return false;
            }
            // The transaction may have ended with Timer L at this very instant.
            let _ = layer.send_response(now, p.key, p.response.clone());
            p.interval = (p.interval * 2).min(T2);
            p.next = now + p.interval;
            true
        });
    }

    fn next_instant(&self) -> Option<Instant> {
        [
            self.net.next_delivery(),
            self.uac_layer.poll_timeout(),
            self.uas_layer.poll_timeout(),
            self.uac.schedule.keys().next().copied(),
            self.uac.cancel_checks.keys().next().copied(),
            self.uas.finals.iter().map(|(t, _, _)| *t).min(),
            self.uas.pending_2xx.values().map(|p| p.next).min(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One step of the world: moves the clock to the next instant anything happens and does
    /// all of it. `false` when nothing is left to happen before `limit`.
    fn step(&mut self, limit: Instant) -> bool {
        self.settle();
        let Some(t) = self.next_instant() else {
            return false;
        };
        assert!(t >= self.clock.now(), "time went backwards");
        if t > limit {
            return false;
        }
        let now = self.clock.advance_to(t);
        while let Some(d) = self.net.poll_deliver(now) {
            let message = Message::parse(d.data, Framing::Datagram).unwrap();
            let from = Peer::udp(d.from);
            let layer = if d.to == uac_addr() { &mut self.uac_layer } else { &mut self.uas_layer };
            match message {
                Message::Request(r) => layer.handle_request(now, from, r),
                Message::Response(r) => layer.handle_response(now, from, r),
            }
            self.settle();
        }
        self.start_due(now);
        self.uac_timers(now);
        self.uas_timers(now);
        self.settle();
        if self.uac_layer.poll_timeout().is_some_and(|d| d <= now) {
            self.uac_layer.handle_timeout(now);
        }
        if self.uas_layer.poll_timeout().is_some_and(|d| d <= now) {
            self.uas_layer.handle_timeout(now);
        }
        self.settle();
        true
    }

    /// Runs until nothing is left to happen, or `limit` of virtual time has passed.
    fn run(&mut self, limit: Duration) {
        let end = self.clock.at(limit);
        while self.step(end) {}
    }
}

/// The ACK for a 2xx: a new transaction (new branch), To from the 2xx (RFC 3261 §13.2.2.4).
fn ack_for_2xx(ids: &mut Ids, invite: &str, ok: &Response) -> Bytes {
    let inv = request(invite);
    let h = inv.headers();
    let to = std::str::from_utf8(ok.headers().get(HeaderName::To).unwrap()).unwrap();
    let from = std::str::from_utf8(h.get(HeaderName::From).unwrap()).unwrap();
    let text = RequestText::new("ACK", inv.uri_str())
        .via("UDP", "192.0.2.1:5060", &ids.branch())
        .from(from)
        .to(to)
        .call_id(h.call_id().unwrap())
        .cseq(h.cseq().unwrap().seq)
        .build();
    Bytes::from(text)
}

fn finals(rec: &Record) -> Vec<&Response> {
    rec.responses.iter().map(|(_, r)| r).filter(|r| r.status() >= 200).collect()
}

/// Checks every client transaction against what the RFC allows, and returns how many timed
/// out.
fn check_outcomes(w: &World, seed: u64) -> usize {
    let mut timeouts = 0;
    for (key, rec) in &w.uac.records {
        let ctx = format!("seed {seed}, {key}, {:?}", rec.kind);
        let terminated = rec.terminated.unwrap_or_else(|| panic!("{ctx}: never ended"));
        let finals = finals(rec);
        if let Some((at, timer)) = rec.timeout {
            // A timeout comes exactly 64*T1 after the request (or after the CANCEL, §9.1),
            // and only when no final came.
            timeouts += 1;
            assert_eq!(terminated, at, "{ctx}");
            assert!(finals.is_empty(), "{ctx}");
            match (rec.kind, rec.cancelled) {
                (Kind::Invite(_), Some(cancelled)) => {
                    assert_eq!(timer, Timer::B, "{ctx}");
                    assert_eq!(at, cancelled + TIMEOUT, "{ctx}: 64*T1 after the CANCEL");
                }
                (Kind::Invite(_), None) => {
                    // Timer B only runs in Calling: nothing was heard.
                    assert_eq!(timer, Timer::B, "{ctx}");
                    assert_eq!(at, rec.started + TIMEOUT, "{ctx}: Timer B");
                    assert!(rec.responses.is_empty(), "{ctx}");
                }
                (Kind::Message | Kind::Cancel, _) => {
                    assert_eq!(timer, Timer::F, "{ctx}");
                    assert_eq!(at, rec.started + TIMEOUT, "{ctx}: Timer F");
                }
            }
            continue;
        }
        let first_final = rec
            .responses
            .iter()
            .find(|(_, r)| r.status() >= 200)
            .unwrap_or_else(|| panic!("{ctx}: neither a final nor a timeout"))
            .0;
        match rec.kind {
            Kind::Invite(_) if finals[0].status() < 300 => {
                // Every 2xx goes up (RFC 6026): retransmissions of one and the same answer.
                assert!(
                    finals.iter().all(
                        |r| r.status() == 200 && r.headers().to().unwrap().tag() == Some("uas")
                    ),
                    "{ctx}"
                );
                assert_eq!(terminated, first_final + TIMEOUT, "{ctx}: Timer M");
            }
            Kind::Invite(answer) => {
                assert_eq!(finals.len(), 1, "{ctx}: duplicate non-2xx final reached the TU");
                let status = finals[0].status();
                assert!(
                    status == answer || (rec.cancelled.is_some() && status == 487),
                    "{ctx}: {status}"
                );
                assert_eq!(terminated, first_final + TIMEOUT, "{ctx}: Timer D");
            }
            Kind::Message | Kind::Cancel => {
                assert_eq!(finals.len(), 1, "{ctx}: duplicate final reached the TU");
                assert_eq!(finals[0].status(), 200, "{ctx}");
                assert_eq!(terminated, first_final + secs(5), "{ctx}: Timer K");
            }
        }
    }
    for (id, n) in &w.uas.seen {
        assert_eq!(*n, 1, "seed {seed}: {id:?} reached the UAS core {n} times");
    }
    timeouts
}

const KINDS: [Kind; 3] = [Kind::Invite(200), Kind::Invite(486), Kind::Message];

fn schedule_calls(w: &mut World, rng: &mut Rng, count: usize, kinds: &[Kind]) {
    let start = w.clock.now();
    for _ in 0..count {
        let at = start + Duration::from_millis(rng.below(20_000));
        let kind = kinds[rng.below(kinds.len() as u64) as usize];
        w.uac.schedule.entry(at).or_default().push(kind);
    }
}

#[test]
fn lossy_reordering_network_transactions_complete_or_time_out_on_time() {
    let mut total_timeouts = 0;
    let mut total = 0;
    for seed in 1..=8 {
        let net = NetemConfig::new(seed)
            .loss(0.3)
            .delay(ms(20))
            .jitter(ms(150))
            .reorder(0.05)
            .duplicate(0.05);
        let mut w = World::new(net);
        let mut rng = Rng::new(seed ^ 0xC0FFEE);
        schedule_calls(&mut w, &mut rng, 40, &KINDS);
        w.run(Duration::from_secs(600));

        total += w.uac.records.len();
        total_timeouts += check_outcomes(&w, seed);
        assert_eq!(w.uac.records.len(), 40);
        assert_eq!(w.uac_layer.len(), 0, "seed {seed}: UAC transactions left");
        assert_eq!(w.uas_layer.len(), 0, "seed {seed}: UAS transactions left");
        assert_eq!(w.uac_layer.poll_timeout(), None);
        assert_eq!(w.uas_layer.poll_timeout(), None);
        let stats = w.net.stats();
        assert!(stats.lost > 0 && stats.duplicated > 0 && stats.reordered > 0, "{stats:?}");
    }
    // 30% loss each way: a transaction fails only if every retransmission or every answer is
    // lost, which is rare.
    assert!(total_timeouts * 20 < total, "{total_timeouts} of {total} timed out");
}

#[test]
fn very_lossy_network_timeouts_and_cancels_happen_exactly_when_the_rfc_says() {
    let mut outcomes = [0usize; 3];
    for seed in 100..=105 {
        let net = NetemConfig::new(seed)
            .loss(0.6)
            .delay(ms(20))
            .jitter(ms(150))
            .reorder(0.05)
            .duplicate(0.05);
        let mut w = World::new(net);
        w.uac.cancel_after = Some(secs(40));
        let mut rng = Rng::new(seed);
        let kinds = [KINDS[0], KINDS[1], KINDS[2], Kind::Invite(0), Kind::Invite(0)];
        schedule_calls(&mut w, &mut rng, 40, &kinds);
        w.run(Duration::from_secs(600));
        let timeouts = check_outcomes(&w, seed);
        let cancels = w.uac.records.values().filter(|r| r.kind == Kind::Cancel).count();
        outcomes[0] += timeouts;
        outcomes[1] += cancels;
        outcomes[2] += w.uas.h_timeouts;
        assert_eq!(w.uac_layer.len(), 0, "seed {seed}: UAC transactions left");
        assert_eq!(w.uas_layer.len(), 0, "seed {seed}: UAS transactions left");
    }
    // The run went through the rare paths too.
    assert!(outcomes.iter().all(|n| *n > 0), "timeouts, cancels, Timer H: {outcomes:?}");
}

#[test]
fn dead_network_every_transaction_times_out_exactly_at_64_t1() {
    let net = NetemConfig::new(3).loss(1.0);
    let mut w = World::new(net);
    let mut rng = Rng::new(3);
    schedule_calls(&mut w, &mut rng, 30, &KINDS);
    w.run(Duration::from_secs(600));
    assert_eq!(check_outcomes(&w, 3), 30);
    assert_eq!(w.uac_layer.len() + w.uas_layer.len(), 0);
    // Each INVITE was sent 7 times (0, T1, 3T1, ... 63T1), each MESSAGE 11 times.
    let invites =
        w.uac.records.values().filter(|r| matches!(r.kind, Kind::Invite(_))).count() as u64;
    let messages = 30 - invites;
    assert_eq!(w.net.stats().sent, invites * 7 + messages * 11);
}

#[test]
fn perfect_network_many_transactions_layers_drain_to_zero() {
    let mut w = World::new(NetemConfig::new(5).delay(ms(5)));
    let mut rng = Rng::new(5);
    schedule_calls(&mut w, &mut rng, 2000, &KINDS);
    // Watch poll_timeout on the way: after handle_timeout(t) nothing due is left, and a
    // handle_timeout before the deadline does nothing.
    let mut peak = 0;
    let end = w.clock.at(Duration::from_secs(600));
    loop {
        peak = peak.max(w.uac_layer.len() + w.uas_layer.len());
        for layer in [&mut w.uac_layer, &mut w.uas_layer] {
            let Some(d) = layer.poll_timeout() else {
                continue;
            };
            assert!(d > w.clock.now(), "a due timer was left unfired");
            layer.handle_timeout(d - Duration::from_nanos(1));
            assert!(layer.poll_transmit().is_none(), "fired early");
            assert!(layer.poll_event().is_none(), "fired early");
            assert_eq!(layer.poll_timeout(), Some(d));
        }
        if !w.step(end) {
            break;
        }
    }
    assert!(peak > 1000, "peak {peak}");
    assert_eq!(check_outcomes(&w, 5), 0);
    assert_eq!(w.uac_layer.len(), 0);
    assert_eq!(w.uas_layer.len(), 0);
}
