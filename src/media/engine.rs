//! The media engine: the [`Anchor`] on sockets and a clock (tokio).
//!
//! # Contract
//!
//! - One UDP socket for every WebRTC leg (`[media] webrtc_port`), and one UDP socket per plain
//!   RTP leg, bound from `[media] rtp_ports` ([`Media::reserve`]) when the SIP side needs its
//!   port in an SDP, before the leg exists.
//! - The core calls [`Media`] synchronously while it rewrites SDP (no await, short critical
//!   sections); tasks feed datagrams and timeouts into the same anchor behind a mutex and send
//!   what it gives with `try_send_to` (a full socket buffer drops a packet, as the network
//!   would).
//! - A leg whose media stopped both ways for `[media] timeout`, or whose browser went away
//!   (ICE or DTLS closed), is reported once on the channel given to [`Media::start`]; the
//!   core ends the call and calls [`Media::close`].
//! - Dropping a [`Reservation`] or closing a leg closes its socket and stops its task.
//! - A plain pair (`[media] anchor = "always"`) reserves each side's port with the one above
//!   ([`Media::reserve_with_rtcp`]) and relays RTCP between those too (RFC 3550 §11), and RTCP
//!   multiplexed on the RTP ports as RTP (RFC 5761); the metrics count RTCP apart from RTP
//!   (`kind="rtcp"`). A WebRTC leg's plain side reserves the port above RTP too
//!   ([`Media::reserve_leg`]), which its SDP implies: what arrives there goes to the anchor,
//!   which relays it to the browser as SRTCP, and the browser's RTCP leaves from there
//!   ([`Transmit::TrunkRtcp`]); see src/media/anchor.rs for the leg's RTCP. Both count as
//!   `kind="rtcp"` (`dir="to_plain"`, `dir="to_browser"`).
//! - Sockets are read with `recvmmsg` (everything queued, in one call, without the read that
//!   finds the socket empty); what the anchor queues while the packets of one turn of the event
//!   loop are handled goes out afterwards, together (`send_task`).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use std::io::IoSliceMut;
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg};
use tokio::io::Interest;
use tokio::sync::{Notify, mpsc, oneshot};

use super::anchor::{Anchor, ByLeg, LegCounters, LegId, MediaError, Transmit};
use super::sdp::{Codec, Direction};
use crate::admin::metrics::Metrics;
use crate::config::{self, PortRange};

/// Largest datagram read (RTP over Ethernet fits well below).
const MAX_DATAGRAM: usize = 2048;

/// The most datagrams one receive call takes (`recvmmsg`) on the shared WebRTC socket, which
/// every browser sends to.
const WEBRTC_BATCH: usize = 32;

/// The same on a plain RTP port, which one peer sends to (a packet per 20 ms, so rarely more
/// than one is waiting; kept small, as every leg has its buffers).
const PLAIN_BATCH: usize = 4;

/// The most a leg's str0m timer may be late (see `timer_task`).
const TIMER_LAG: Duration = Duration::from_millis(5);

/// How often legs are checked for the media timeout.
const SWEEP: Duration = Duration::from_secs(1);

/// What the engine needs from the configuration.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The address the sockets bind to (the SIP listener's IP).
    pub bind: IpAddr,
    /// The address put in SDP (`[media] public_ip`, else `bind`).
    pub public: IpAddr,
    pub rtp_ports: PortRange,
    pub timeout: Duration,
    /// `[media] anchor = "always"`: plain-to-plain calls are relayed too.
    pub always: bool,
}

impl MediaConfig {
    pub fn new(media: &config::Media, bind: IpAddr) -> MediaConfig {
        MediaConfig {
            bind,
            public: media.public_ip.unwrap_or(bind),
            rtp_ports: media.rtp_ports,
            timeout: media.timeout,
            always: media.anchor == config::Anchoring::Always,
        }
    }
}

/// A plain RTP port bound for a call, before (and while) a leg uses it.
#[derive(Debug)]
pub struct Reservation {
    socket: Arc<UdpSocket>,
    /// The port above, for RTCP (RFC 3550 §11), when reserved with it
    /// ([`Media::reserve_with_rtcp`], [`Media::reserve_leg`]).
    rtcp: Option<Arc<UdpSocket>>,
    /// A WebRTC leg's RTCP port is read until the reservation goes ([`Media::reserve_leg`]):
    /// dropping this stops that.
    _rtcp_reader: Option<oneshot::Sender<()>>,
    /// The leg whose trunk RTCP arrives on that port, once attached (0: none yet; what
    /// arrives before is dropped).
    rtcp_leg: Arc<AtomicU64>,
    /// The address to announce in SDP.
    pub addr: SocketAddr,
}

/// Where a plain peer receives, from its SDP: RTP, and RTCP when not multiplexed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlainPeer {
    pub rtp: Option<SocketAddr>,
    pub rtcp: Option<SocketAddr>,
}

/// The engine, shared by the core and the media tasks.
#[derive(Debug)]
pub struct Media {
    inner: Mutex<Inner>,
    webrtc: Arc<UdpSocket>,
    /// The WebRTC address as announced (ICE host candidate).
    webrtc_addr: SocketAddr,
    config: MediaConfig,
    /// Wakes the timer task when a leg's timeout may have moved earlier.
    wake: Notify,
    /// Wakes the send task: the anchor has datagrams queued (see `send_task`).
    queued: Notify,
    next_port: AtomicU64,
    /// Monotonic SDP session ids and versions (RFC 8866 §5.2).
    next_session: AtomicU64,
    /// Legs whose media timed out or whose browser went away.
    ended: mpsc::UnboundedSender<LegId>,
    metrics: Arc<Metrics>,
    /// What the pairs closed so far relayed (each way: RTP, RTCP) and dropped.
    pair_totals_removed: [AtomicU64; 2],
    pair_rtcp_removed: [AtomicU64; 2],
    pair_dropped_removed: AtomicU64,
    /// The media thread's event loop: every media socket and task lives there.
    runtime: tokio::runtime::Handle,
}

#[derive(Debug)]
struct Inner {
    anchor: Anchor,
    legs: ByLeg<PlainSide>,
    /// Plain RTP relayed between two plain peers (`[media] anchor = "always"`).
    pairs: HashMap<LegId, PairHandle>,
}

/// A pair as the engine holds it: dropping it stops the pair's tasks.
#[derive(Debug)]
struct PairHandle {
    pair: Arc<Pair>,
    _stop: Vec<oneshot::Sender<()>>,
}

/// Two plain RTP ports relaying to each other: what arrives on one side goes out of the
/// other toward that side's peer. Each side latches onto the source of its first packet
/// (symmetric RTP) and then drops other sources. RTCP multiplexed on the RTP ports (RFC 5761)
/// goes the same way; RTCP on the ports above (RFC 3550 §11) goes between those, latched the
/// same way. No lock on the engine per packet: a pair's tasks share only this.
#[derive(Debug)]
struct Pair {
    sides: [PairSide; 2],
    /// The RTCP ports, when both sides have one.
    rtcp: Option<[PairSide; 2]>,
    /// Milliseconds since `epoch` of the last packet either way.
    last: std::sync::atomic::AtomicU64,
    epoch: Instant,
    /// RTP packets relayed from the caller's side to the callee's, and back.
    relayed: [AtomicU64; 2],
    /// The same for RTCP, on the RTCP ports or multiplexed on RTP's.
    relayed_rtcp: [AtomicU64; 2],
    dropped: AtomicU64,
    reported: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct PairSide {
    socket: Arc<UdpSocket>,
    /// Where this side's peer receives: from its SDP, then latched.
    peer: Mutex<Latch>,
}

/// A side's peer address: announced in SDP, then latched on the first packet's source.
#[derive(Debug, Clone, Copy, Default)]
struct Latch {
    to: Option<SocketAddr>,
    latched: bool,
    announced: Option<SocketAddr>,
}

impl Latch {
    fn new(announced: Option<SocketAddr>) -> Latch {
        Latch { to: announced, latched: false, announced }
    }

    /// New SDP: a different address than announced before starts latching again.
    fn announce(&mut self, addr: SocketAddr) {
        if self.announced != Some(addr) {
            *self = Latch::new(Some(addr));
        }
    }

    /// A packet from `source`: whether it is from this side's peer.
    fn accept(&mut self, source: SocketAddr) -> bool {
        if !self.latched {
            self.to = Some(source);
            self.latched = true;
        }
        self.to == Some(source)
    }
}

#[derive(Debug)]
struct PlainSide {
    socket: Arc<UdpSocket>,
    /// The RTCP port, which RTCP to the trunk leaves from.
    rtcp: Option<Arc<UdpSocket>>,
    /// Dropped with the leg: stops its receive task.
    _stop: oneshot::Sender<()>,
    reported: bool,
}

impl Media {
    /// Starts the engine's tasks on `socket`, the WebRTC socket (bound, non-blocking). Legs
    /// that end on their own are reported on the returned channel.
    pub fn start(
        config: MediaConfig,
        socket: StdUdpSocket,
        metrics: Arc<Metrics>,
    ) -> io::Result<(Arc<Media>, mpsc::UnboundedReceiver<LegId>)> {
        // Media has a thread and an event loop of its own: a packet wakes one thread, never
        // hops between workers, and never waits behind SIP work (or SIP behind it).
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let runtime = rt.handle().clone();
        std::thread::Builder::new().name("lifeline-media".into()).spawn(move || {
            rt.block_on(std::future::pending::<()>());
        })?;
        let webrtc = {
            let _in_media = runtime.enter();
            Arc::new(UdpSocket::new(socket)?)
        };
        let webrtc_addr = SocketAddr::new(config.public, webrtc.local_addr()?.port());
        let (ended, ended_rx) = mpsc::unbounded_channel();
        let span = u64::from(config.rtp_ports.last - config.rtp_ports.first) + 1;
        let mut anchor = Anchor::new(webrtc_addr);
        // The NTP timestamps of the anchor's sender reports (RFC 3550 §6.4.1).
        let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        anchor.set_wall_clock(Instant::now(), unix.unwrap_or_default());
        let media = Arc::new(Media {
            inner: Mutex::new(Inner { anchor, legs: ByLeg::default(), pairs: HashMap::new() }),
            webrtc,
            webrtc_addr,
            next_port: AtomicU64::new(rand_below(span)),
            next_session: AtomicU64::new(rand_below(1 << 40)),
            config,
            wake: Notify::new(),
            queued: Notify::new(),
            ended,
            metrics,
            pair_totals_removed: [AtomicU64::new(0), AtomicU64::new(0)],
            pair_rtcp_removed: [AtomicU64::new(0), AtomicU64::new(0)],
            pair_dropped_removed: AtomicU64::new(0),
            runtime,
        });
        media.runtime.spawn(webrtc_task(media.clone()));
        media.runtime.spawn(timer_task(media.clone()));
        media.runtime.spawn(send_task(media.clone()));
        tracing::info!(webrtc = %media.webrtc_addr, "media anchoring on");
        Ok((media, ended_rx))
    }

    /// Whether calls between two plain-RTP peers are relayed too.
    pub fn always(&self) -> bool {
        self.config.always
    }

    /// The shared WebRTC address (ICE host candidate).
    pub fn webrtc_addr(&self) -> SocketAddr {
        self.webrtc_addr
    }

    /// A fresh SDP session id (the `o=` line's).
    pub fn session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }

    /// Binds a plain RTP port from the range (RTP on even ports, RFC 3550 §11): the next one
    /// after the last, and after a port in use a random one (another process on the host may
    /// hold a whole block of the range: walking through it port by port would give up).
    pub fn reserve(&self) -> io::Result<Reservation> {
        self.reserve_ports(false)
    }

    fn reserve_ports(&self, with_rtcp: bool) -> io::Result<Reservation> {
        let PortRange { first, last } = self.config.rtp_ports;
        let span = u64::from(last - first) + 1;
        let tries = span.min(64);
        let mut last_error = io::Error::new(io::ErrorKind::AddrInUse, "no free RTP port");
        for attempt in 0..tries {
            if attempt > 0 {
                self.next_port.store(rand_below(span), Ordering::Relaxed);
            }
            let n = self.next_port.fetch_add(2, Ordering::Relaxed) % span;
            let port = u16::try_from(u64::from(first) + n).unwrap_or(first) & !1;
            let port = port.max(first);
            let bound =
                StdUdpSocket::bind(SocketAddr::new(self.config.bind, port)).and_then(|rtp| {
                    let rtcp = match with_rtcp {
                        true if port >= last => {
                            return Err(io::Error::new(io::ErrorKind::AddrInUse, "no RTCP port"));
                        }
                        true => {
                            Some(StdUdpSocket::bind(SocketAddr::new(self.config.bind, port + 1))?)
                        }
                        false => None,
                    };
                    Ok((rtp, rtcp))
                });
            match bound {
                Ok((rtp, rtcp)) => {
                    let _in_media = self.runtime.enter();
                    let socket = Arc::new(UdpSocket::new(rtp)?);
                    let rtcp = rtcp.map(UdpSocket::new).transpose()?.map(Arc::new);
                    let addr = SocketAddr::new(self.config.public, port);
                    let rtcp_leg = Arc::new(AtomicU64::new(0));
                    return Ok(Reservation { socket, rtcp, _rtcp_reader: None, rtcp_leg, addr });
                }
                Err(e) => last_error = e,
            }
        }
        Err(last_error)
    }

    /// [`Media::reserve`] with the port above for RTCP (RFC 3550 §11): a plain pair's ports.
    pub fn reserve_with_rtcp(&self) -> io::Result<Reservation> {
        self.reserve_ports(true)
    }

    /// The plain side of a WebRTC leg: [`Media::reserve_with_rtcp`], and the RTCP port, which
    /// the edge's SDP implies (RFC 3550 §11: the port above RTP), is read from now on: what
    /// arrives goes to the leg the reservation is attached to (the anchor relays it to the
    /// browser as SRTCP), and before that is dropped.
    pub fn reserve_leg(self: &Arc<Self>) -> io::Result<Reservation> {
        let mut reservation = self.reserve_ports(true)?;
        if let Some(rtcp) = reservation.rtcp.clone() {
            let (stop, stopped) = oneshot::channel();
            let leg = reservation.rtcp_leg.clone();
            self.runtime.spawn(rtcp_task(self.clone(), rtcp, leg, stopped));
            reservation._rtcp_reader = Some(stop);
        }
        Ok(reservation)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock would be a bug in the anchor; the state is still
        // usable (every operation leaves it consistent), so go on rather than poison the edge.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers a browser's offer; its plain RTP uses `port` toward `trunk`.
    pub fn answer_browser(
        self: &Arc<Self>,
        port: &Reservation,
        offer: &str,
        trunk: Option<SocketAddr>,
        voices: &[Codec],
        events: Option<u8>,
    ) -> Result<(LegId, String), MediaError> {
        let mut inner = self.lock();
        let (leg, answer) =
            inner.anchor.accept_offer(Instant::now(), offer, trunk, voices, events)?;
        self.attach(&mut inner, leg, port);
        drop(inner);
        self.wake.notify_one();
        Ok((leg, answer))
    }

    /// Offers a browser a leg toward `trunk`; its plain RTP port is given with the answer
    /// (forked branches each have a leg, and only the one answered uses the port).
    pub fn offer_browser(
        &self,
        trunk: Option<SocketAddr>,
        voices: &[Codec],
        events: Option<u8>,
    ) -> Result<(LegId, String), MediaError> {
        let mut inner = self.lock();
        let (leg, offer) = inner.anchor.create_offer(Instant::now(), trunk, voices, events)?;
        self.flush(&mut inner);
        drop(inner);
        self.wake.notify_one();
        Ok((leg, offer))
    }

    /// The browser's answer to [`Media::offer_browser`]; the leg's plain RTP uses `port`.
    pub fn browser_answered(
        self: &Arc<Self>,
        leg: LegId,
        answer: &str,
        port: &Reservation,
    ) -> Result<(), MediaError> {
        let mut inner = self.lock();
        inner.anchor.accept_answer(Instant::now(), leg, answer)?;
        self.attach(&mut inner, leg, port);
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// A new offer from the browser in an existing leg (re-INVITE: hold, resume).
    pub fn reoffer(&self, leg: LegId, offer: &str) -> Result<String, MediaError> {
        let mut inner = self.lock();
        let r = inner.anchor.reoffer(Instant::now(), leg, offer);
        self.flush(&mut inner);
        r
    }

    /// The edge's new offer to the browser of an existing leg, with the edge's direction
    /// `direction` (see [`Anchor::offer_again`]); [`Media::reoffer_answered`] takes the answer.
    pub fn offer_again(&self, leg: LegId, direction: Direction) -> Result<String, MediaError> {
        let mut inner = self.lock();
        let r = inner.anchor.offer_again(leg, direction);
        self.flush(&mut inner);
        r
    }

    /// The browser's answer to [`Media::offer_again`].
    pub fn reoffer_answered(&self, leg: LegId, answer: &str) -> Result<(), MediaError> {
        let mut inner = self.lock();
        let r = inner.anchor.accept_answer(Instant::now(), leg, answer);
        self.flush(&mut inner);
        r
    }

    /// Gives `leg`, whose browser's answer was taken without a port
    /// ([`Media::reoffer_answered`]), the plain RTP port `port`: a forked call whose 2xx came
    /// from another branch than the early dialog that had the port (which is closed first).
    pub fn attach_port(self: &Arc<Self>, leg: LegId, port: &Reservation) {
        let mut inner = self.lock();
        self.attach(&mut inner, leg, port);
        drop(inner);
        self.wake.notify_one();
    }

    /// The browser refused [`Media::offer_again`]'s offer: the leg goes on as before.
    pub fn withdraw_offer(&self, leg: LegId) {
        let mut inner = self.lock();
        inner.anchor.withdraw_offer(leg);
        self.flush(&mut inner);
    }

    /// The plain side's RTP address changed (its SDP), before any packet latches one.
    pub fn set_trunk(&self, leg: LegId, addr: SocketAddr) {
        self.lock().anchor.set_trunk(leg, addr);
    }

    /// Relays plain RTP between `a` (toward the peer at `a_peer`) and `b` (toward `b_peer`),
    /// and RTCP between their RTCP ports when both have one.
    pub fn pair(
        &self,
        a: &Reservation,
        a_peer: PlainPeer,
        b: &Reservation,
        b_peer: PlainPeer,
    ) -> LegId {
        let mut inner = self.lock();
        let id = inner.anchor.reserve_id();
        let epoch = Instant::now();
        let side = |socket: &Arc<UdpSocket>, peer| PairSide {
            socket: socket.clone(),
            peer: Mutex::new(Latch::new(peer)),
        };
        let rtcp = match (&a.rtcp, &b.rtcp) {
            (Some(ra), Some(rb)) => Some([side(ra, a_peer.rtcp), side(rb, b_peer.rtcp)]),
            _ => None,
        };
        let pair = Arc::new(Pair {
            sides: [side(&a.socket, a_peer.rtp), side(&b.socket, b_peer.rtp)],
            rtcp,
            last: AtomicU64::new(0),
            epoch,
            relayed: [AtomicU64::new(0), AtomicU64::new(0)],
            relayed_rtcp: [AtomicU64::new(0), AtomicU64::new(0)],
            dropped: AtomicU64::new(0),
            reported: std::sync::atomic::AtomicBool::new(false),
        });
        // A task per side, and per RTCP side.
        let channels = if pair.rtcp.is_some() { [false, true].as_slice() } else { &[false] };
        let (mut stops, mut tasks) = (Vec::new(), Vec::new());
        for &rtcp in channels {
            for from in 0..2 {
                let (stop, stopped) = oneshot::channel();
                stops.push(stop);
                tasks.push(pair_task(pair.clone(), from, rtcp, stopped));
            }
        }
        inner.pairs.insert(id, PairHandle { pair, _stop: stops });
        drop(inner);
        for task in tasks {
            self.runtime.spawn(task);
        }
        id
    }

    /// A pair side's peer from new SDP (`side` 0 is `a`); a new address starts latching
    /// again.
    pub fn set_pair_peer(&self, id: LegId, side: usize, peer: PlainPeer) {
        let Some(pair) = self.lock().pairs.get(&id).map(|h| h.pair.clone()) else { return };
        let announce = |s: Option<&PairSide>, addr: Option<SocketAddr>| {
            if let (Some(s), Some(addr)) = (s, addr) {
                s.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).announce(addr);
            }
        };
        announce(pair.sides.get(side), peer.rtp);
        announce(pair.rtcp.as_ref().and_then(|r| r.get(side)), peer.rtcp);
    }

    /// Ends a leg: its plain socket closes (with the call's [`Reservation`]) and its task
    /// stops.
    pub fn close(&self, leg: LegId) {
        let mut inner = self.lock();
        inner.anchor.remove(leg);
        inner.legs.remove(&leg);
        if let Some(PairHandle { pair, .. }) = inner.pairs.remove(&leg) {
            // Dropping the handle stops its tasks (see pair_task).
            for (total, side) in self.pair_totals_removed.iter().zip(&pair.relayed) {
                total.fetch_add(side.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            for (total, side) in self.pair_rtcp_removed.iter().zip(&pair.relayed_rtcp) {
                total.fetch_add(side.load(Ordering::Relaxed), Ordering::Relaxed);
            }
            self.pair_dropped_removed
                .fetch_add(pair.dropped.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.flush(&mut inner);
    }

    pub fn counters(&self, leg: LegId) -> Option<LegCounters> {
        self.lock().anchor.counters(leg)
    }

    fn attach(self: &Arc<Self>, inner: &mut Inner, leg: LegId, port: &Reservation) {
        let (stop, stopped) = oneshot::channel();
        let side = PlainSide {
            socket: port.socket.clone(),
            rtcp: port.rtcp.clone(),
            _stop: stop,
            reported: false,
        };
        inner.legs.insert(leg, side);
        port.rtcp_leg.store(leg.number(), Ordering::Relaxed);
        self.runtime.spawn(plain_task(self.clone(), leg, port.socket.clone(), stopped));
        self.flush(inner);
    }

    /// Sends everything the anchor has to send.
    fn flush(&self, inner: &mut Inner) {
        while let Some(t) = inner.anchor.poll_transmit() {
            let (socket, to, bytes) = match t {
                Transmit::Browser { to, bytes } => (&self.webrtc, to, bytes),
                Transmit::Trunk { leg, to, bytes } => match inner.legs.get(&leg) {
                    Some(side) => (&side.socket, to, bytes),
                    None => continue,
                },
                Transmit::TrunkRtcp { leg, to, bytes } => {
                    match inner.legs.get(&leg).and_then(|s| s.rtcp.as_ref()) {
                        Some(rtcp) => (rtcp, to, bytes),
                        None => continue,
                    }
                }
            };
            if let Err(e) = socket.send_to(&bytes, to)
                && e.kind() != io::ErrorKind::WouldBlock
            {
                tracing::debug!(%to, error = %e, "media datagram not sent");
            }
            inner.anchor.recycle(bytes);
        }
    }

    /// Legs to report: media stopped for the timeout, or the browser went away. Also brings
    /// the metrics up to date.
    fn sweep(&self, now: Instant) {
        let mut inner = self.lock();
        let Inner { anchor, legs, pairs } = &mut *inner;
        let totals = anchor.totals();
        let m = &self.metrics.media;
        let mut relayed = [
            self.pair_totals_removed[0].load(Ordering::Relaxed),
            self.pair_totals_removed[1].load(Ordering::Relaxed),
        ];
        let mut rtcp = [
            self.pair_rtcp_removed[0].load(Ordering::Relaxed),
            self.pair_rtcp_removed[1].load(Ordering::Relaxed),
        ];
        let mut dropped = self.pair_dropped_removed.load(Ordering::Relaxed);
        for (id, PairHandle { pair, .. }) in pairs.iter() {
            relayed[0] += pair.relayed[0].load(Ordering::Relaxed);
            relayed[1] += pair.relayed[1].load(Ordering::Relaxed);
            rtcp[0] += pair.relayed_rtcp[0].load(Ordering::Relaxed);
            rtcp[1] += pair.relayed_rtcp[1].load(Ordering::Relaxed);
            dropped += pair.dropped.load(Ordering::Relaxed);
            let idle_ms = u64::try_from(now.saturating_duration_since(pair.epoch).as_millis())
                .unwrap_or(u64::MAX)
                .saturating_sub(pair.last.load(Ordering::Relaxed));
            if u128::from(idle_ms) >= self.config.timeout.as_millis()
                && !pair.reported.swap(true, Ordering::Relaxed)
            {
                let _ = self.ended.send(*id);
            }
        }
        m.to_plain.store(totals.to_trunk, Ordering::Relaxed);
        m.to_browser.store(totals.to_browser, Ordering::Relaxed);
        m.rtcp_to_plain.store(totals.rtcp_to_trunk, Ordering::Relaxed);
        m.rtcp_to_browser.store(totals.rtcp_to_browser, Ordering::Relaxed);
        m.plain_to_callee.store(relayed[0], Ordering::Relaxed);
        m.plain_to_caller.store(relayed[1], Ordering::Relaxed);
        m.rtcp_to_callee.store(rtcp[0], Ordering::Relaxed);
        m.rtcp_to_caller.store(rtcp[1], Ordering::Relaxed);
        m.dropped.store(totals.dropped + dropped, Ordering::Relaxed);
        m.stray.store(anchor.stray, Ordering::Relaxed);
        m.lost_plain.store(totals.lost, Ordering::Relaxed);
        let q = anchor.quality();
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        m.jitter_plain_us.store(micros(q.trunk_jitter), Ordering::Relaxed);
        m.jitter_browser_us.store(micros(q.browser_jitter), Ordering::Relaxed);
        m.loss_browser_ppm.store((f64::from(q.browser_loss) * 1e6) as u64, Ordering::Relaxed);
        let live = legs.len() + pairs.len();
        m.legs.store(i64::try_from(live).unwrap_or(i64::MAX), Ordering::Relaxed);
        for (id, side) in legs.iter_mut().filter(|(_, s)| !s.reported) {
            let idle = anchor
                .last_media(*id)
                .is_none_or(|t| now.saturating_duration_since(t) >= self.config.timeout);
            if idle || anchor.is_closed(*id) {
                side.reported = true;
                let _ = self.ended.send(*id);
            }
        }
    }
}

/// Datagrams on the shared WebRTC socket.
async fn webrtc_task(media: Arc<Media>) {
    let mut batch = Batch::<WEBRTC_BATCH>::new();
    loop {
        let n = match media.webrtc.recv_batch(&mut batch).await {
            Ok(n) => n,
            Err(e) => {
                // ICMP port unreachable from a browser that left shows up here on Linux.
                tracing::debug!(error = %e, "webrtc socket");
                continue;
            }
        };
        let now = Instant::now();
        let queued = {
            let mut inner = media.lock();
            for (source, bytes) in batch.datagrams(n) {
                inner.anchor.handle_browser(now, source, bytes);
            }
            inner.anchor.has_transmit()
        };
        // No wake-up of the timer per packet: what a packet makes str0m send goes out with
        // this turn of the event loop (send_task), and the timer looks again within TIMER_LAG.
        if queued {
            media.queued.notify_one();
        }
    }
}

/// Datagrams on one leg's plain RTP socket, until the leg closes.
async fn plain_task(
    media: Arc<Media>,
    leg: LegId,
    socket: Arc<UdpSocket>,
    stopped: oneshot::Receiver<()>,
) {
    let handle = |anchor: &mut Anchor, now, source, bytes: &[u8]| {
        anchor.handle_trunk(now, leg, source, bytes);
    };
    trunk_socket_task(media, socket, stopped, ("rtp socket", Some(leg)), handle).await;
}

/// A WebRTC leg's RTCP port ([`Media::reserve_leg`]), until `stopped`: what arrives goes to
/// the leg in `leg` (see [`Anchor::handle_trunk_rtcp`]), dropped while there is none.
async fn rtcp_task(
    media: Arc<Media>,
    socket: Arc<UdpSocket>,
    leg: Arc<AtomicU64>,
    stopped: oneshot::Receiver<()>,
) {
    let handle = |anchor: &mut Anchor, now, source, bytes: &[u8]| {
        if let Some(id) = LegId::from_number(leg.load(Ordering::Relaxed)) {
            anchor.handle_trunk_rtcp(now, id, source, bytes);
        }
    };
    trunk_socket_task(media, socket, stopped, ("rtcp socket", None), handle).await;
}

/// Reads a trunk-side socket of a WebRTC leg in batches until `stopped`, giving every datagram
/// to `handle` with the anchor locked, and wakes the sender when the anchor queued packets.
/// `what` names the socket (and its leg, when fixed) in the log of a failed read.
async fn trunk_socket_task(
    media: Arc<Media>,
    socket: Arc<UdpSocket>,
    mut stopped: oneshot::Receiver<()>,
    (what, leg): (&'static str, Option<LegId>),
    mut handle: impl FnMut(&mut Anchor, Instant, SocketAddr, &[u8]),
) {
    let mut batch = Batch::<PLAIN_BATCH>::new();
    loop {
        let received = tokio::select! {
            r = socket.recv_batch(&mut batch) => r,
            _ = &mut stopped => return,
        };
        let n = match received {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(leg = leg.map(tracing::field::display), error = %e, "{what}");
                continue;
            }
        };
        let now = Instant::now();
        let queued = {
            let mut inner = media.lock();
            for (source, bytes) in batch.datagrams(n) {
                handle(&mut inner.anchor, now, source, bytes);
            }
            inner.anchor.has_transmit()
        };
        if queued {
            media.queued.notify_one();
        }
    }
}

/// Datagrams arriving on side `from` of a pair (its RTCP port with `rtcp`) go out of the
/// other side, until the pair is closed (`stopped`).
async fn pair_task(pair: Arc<Pair>, from: usize, rtcp: bool, mut stopped: oneshot::Receiver<()>) {
    let sides = match &pair.rtcp {
        Some(ports) if rtcp => ports,
        _ => &pair.sides,
    };
    let (this, other) = (&sides[from], &sides[1 - from]);
    let mut batch = Batch::<PLAIN_BATCH>::new();
    loop {
        let received = tokio::select! {
            r = this.socket.recv_batch(&mut batch) => r,
            _ = &mut stopped => return,
        };
        let n = match received {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "rtp socket");
                continue;
            }
        };
        for (source, bytes) in batch.datagrams(n) {
            pair.relay(from, this, other, source, bytes, rtcp);
        }
    }
}

impl Pair {
    /// One datagram that arrived on side `from` (`this`, an RTCP port with `rtcp`) from
    /// `source`: out of `other`.
    fn relay(
        &self,
        from: usize,
        this: &PairSide,
        other: &PairSide,
        source: SocketAddr,
        bytes: &[u8],
        rtcp: bool,
    ) {
        // RTP, or RTCP, on its own port or multiplexed (RFC 3550 version 2, RFC 5761 §4);
        // anything else is dropped.
        let Some(kind) = classify(bytes, rtcp) else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let ours =
            this.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).accept(source);
        if !ours {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let to = other.peer.lock().unwrap_or_else(std::sync::PoisonError::into_inner).to;
        let Some(to) = to else {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let since = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(since, Ordering::Relaxed);
        let counter = match kind {
            Kind::Rtp => &self.relayed[from],
            Kind::Rtcp => &self.relayed_rtcp[from],
        };
        match other.socket.send_to(bytes, to) {
            Ok(_) => counter.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.dropped.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// What a pair relays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Rtp,
    Rtcp,
}

/// A datagram that may be relayed, and what it is: version 2 (RFC 3550 §5.1, §6.4) and as long
/// as a fixed RTP header, or an RTCP header (8 bytes: an empty receiver report) on an RTCP port
/// or with an RTCP packet type on an RTP port (RFC 5761 §4: 192-223). `None`: dropped.
fn classify(bytes: &[u8], rtcp_port: bool) -> Option<Kind> {
    let (Some(first), Some(second)) = (bytes.first(), bytes.get(1)) else { return None };
    let kind = if rtcp_port || (192..=223).contains(second) { Kind::Rtcp } else { Kind::Rtp };
    let least = if kind == Kind::Rtcp { 8 } else { 12 };
    (first >> 6 == 2 && bytes.len() >= least).then_some(kind)
}

/// A media UDP socket (non-blocking) on the media thread's event loop, read in batches.
#[derive(Debug)]
struct UdpSocket {
    io: tokio::net::UdpSocket,
}

impl UdpSocket {
    /// Registers `socket` (non-blocking) with the current runtime's reactor.
    fn new(socket: StdUdpSocket) -> io::Result<UdpSocket> {
        socket.set_nonblocking(true)?;
        Ok(UdpSocket { io: tokio::net::UdpSocket::from_std(socket)? })
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Sends now or never: a full socket buffer drops the datagram (`WouldBlock`), as the
    /// network would.
    fn send_to(&self, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
        self.io.try_send_to(bytes, to)
    }

    /// Waits for datagrams and takes what is queued, up to `N`, in one `recvmmsg` (read them
    /// with [`Batch::datagrams`]).
    ///
    /// Fewer than `N` means the socket was emptied: the read then reports `WouldBlock`
    /// to the reactor, which clears the socket's readiness without the extra read that would
    /// return `EAGAIN` (a third system call per relayed packet otherwise). That is the
    /// socket's true state: a datagram that arrived since is a new readiness event (tokio
    /// clears only the readiness it saw before the read), so none is left behind.
    async fn recv_batch<const N: usize>(&self, batch: &mut Batch<N>) -> io::Result<usize> {
        loop {
            self.io.readable().await?;
            let mut got = 0;
            let read = self.io.try_io(Interest::READABLE, || {
                got = batch.receive(self.io.as_raw_fd())?;
                if got < N {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                Ok(())
            });
            match read {
                _ if got > 0 => return Ok(got),
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Buffers for one `recvmmsg` of up to `N` datagrams, allocated once per task.
struct Batch<const N: usize> {
    bufs: Box<[[u8; MAX_DATAGRAM]; N]>,
    /// Length and source of each datagram of the last receive.
    got: [(usize, Option<SocketAddr>); N],
}

thread_local! {
    /// The `mmsghdr` array `recvmmsg` fills: one per thread (it holds raw pointers, so it may
    /// not live in a task, which could move between threads), reused by every receive.
    static HEADERS: std::cell::RefCell<MultiHeaders<SockaddrStorage>> =
        std::cell::RefCell::new(MultiHeaders::preallocate(WEBRTC_BATCH.max(PLAIN_BATCH), None));
}

impl<const N: usize> Batch<N> {
    fn new() -> Batch<N> {
        Batch { bufs: Box::new([[0; MAX_DATAGRAM]; N]), got: [(0, None); N] }
    }

    /// One non-blocking `recvmmsg`: how many datagrams it took (`WouldBlock` for none).
    fn receive(&mut self, fd: std::os::fd::RawFd) -> io::Result<usize> {
        let Batch { bufs, got } = self;
        HEADERS.with_borrow_mut(|headers| {
            let mut iovs = bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
            let received = recvmmsg(fd, headers, iovs.iter_mut(), MsgFlags::MSG_DONTWAIT, None)
                .map_err(io::Error::from)?;
            let mut n = 0;
            for (slot, msg) in got.iter_mut().zip(received) {
                *slot = (
                    msg.bytes.min(MAX_DATAGRAM),
                    msg.address.as_ref().and_then(crate::transport::udp::socket_addr),
                );
                n += 1;
            }
            Ok(n)
        })
    }

    /// The first `n` datagrams of the last receive, with their source (those without one,
    /// which UDP never gives, are skipped).
    fn datagrams(&self, n: usize) -> impl Iterator<Item = (SocketAddr, &[u8])> {
        self.got
            .iter()
            .zip(self.bufs.iter())
            .take(n)
            .filter_map(|(&(len, source), buf)| Some((source?, &buf[..len])))
    }
}

impl<const N: usize> std::fmt::Debug for Batch<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch").finish_non_exhaustive()
    }
}

/// Sends what the packets of one turn of the event loop made the anchor queue, together.
///
/// The receive tasks that one readiness event woke run first (the current-thread scheduler
/// runs tasks in the order they were woken, and this one is woken by the first of them), so
/// the datagrams leave in a burst rather than one between every two receives: on loopback a
/// send wakes the receiving process, and a burst wakes it once rather than once per packet.
async fn send_task(media: Arc<Media>) {
    loop {
        media.queued.notified().await;
        let mut inner = media.lock();
        media.flush(&mut inner);
    }
}

/// str0m's timers (ICE, DTLS retransmissions, RTCP) and the media-timeout sweep.
async fn timer_task(media: Arc<Media>) {
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let now = Instant::now();
        let next = {
            let mut inner = media.lock();
            inner.anchor.handle_timeout(now);
            media.flush(&mut inner);
            inner.anchor.next_timeout()
        };
        if now >= next_sweep {
            media.sweep(now);
            next_sweep = now + SWEEP;
        }
        // str0m's timers (retransmissions, RTCP) tolerate a few milliseconds of lag; waking
        // for each packet's new deadline would cost more than the packet.
        let until = next.map_or(next_sweep, |t| t.max(now + TIMER_LAG).min(next_sweep));
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = media.wake.notified() => {}
        }
    }
}

/// A random start in `0..below` (ports and session ids need not be secret, only spread).
fn rand_below(below: u64) -> u64 {
    let mut bytes = [0u8; 8];
    crate::core::auth::fill_random(&mut bytes);
    u64::from_le_bytes(bytes) % below.max(1)
}
