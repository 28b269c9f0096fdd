//! The WebRTC <-> plain RTP anchor, sans-IO: the browser's ICE and DTLS-SRTP end here and
//! its audio goes on to a trunk as plain RTP, and back, without transcoding.
//!
//! # Contract
//!
//! - Every WebRTC leg answers the browser's offer as an **ICE-lite** peer with one host
//!   candidate: the anchor's single UDP address ([`Anchor::new`]). All legs share it; a
//!   datagram goes to the leg whose `Rtc::accepts` it (STUN by ufrag, then the nominated
//!   address). The browser is the DTLS client (`a=setup:passive` in our answer), DTLS 1.2.
//! - Codecs: PCMU and telephone-event (RFC 4733, payload type 126). Packets are relayed as they
//!   are: payload type, sequence number, timestamp, marker and payload; toward the trunk with
//!   the browser's SSRC, toward the browser with the leg's own (the one str0m announced in its
//!   SDP). The trunk's sequence numbers are extended to 64 bits for SRTP's rollover counter.
//! - Once DTLS is up, the relayed RTP does not go through str0m: the leg encrypts and decrypts
//!   it itself ([`super::srtp`], with the keys its DTLS exported), toward the address str0m
//!   sends DTLS to (or the browser's last authentic SRTP or SRTCP came from). str0m still
//!   does ICE (consent included) and DTLS; SRTP that fails authentication, or that was taken
//!   already, is dropped and counted. Before the keys exist, str0m relays (nothing is
//!   connected then).
//! - **RTCP** of a connected leg is the anchor's too, as an SBC bridging RTP/AVP and
//!   UDP/TLS/RTP/SAVPF does (see [`super::rtcp`] for what is kept and renamed):
//!   - The browser's SRTCP (always multiplexed on the one WebRTC address, RFC 5761) is
//!     authenticated and decrypted ([`Srtp::unprotect_rtcp`]) and goes to the trunk as plain
//!     RTCP: to the port above its RTP port (RFC 3550 §11; the edge's plain SDP has no
//!     `a=rtcp-mux`), latched to the source of the trunk's first RTCP there, or multiplexed on
//!     its RTP address once the trunk multiplexes. str0m never sees it.
//!   - The trunk's RTCP ([`Anchor::handle_trunk_rtcp`], or multiplexed on the RTP port) goes
//!     to the browser as SRTCP ([`Srtp::protect_rtcp`]), from the trunk's latched RTCP source
//!     only.
//!   - While the trunk sends no RTCP (SIPp's `-rtp_echo`, many gateways), the anchor reports
//!     to the browser itself, every 2.5 to 7.5 s (5 s ± 50 %, RFC 3550 §6.2; the first after
//!     half that): an SR for the stream the browser receives (what the anchor relayed:
//!     packets, payload octets, NTP time from [`Anchor::set_wall_clock`], the RTP time
//!     advanced from the last packet's at 8 kHz; an RR instead once nothing was relayed for
//!     two intervals, RFC 3550 §6.4) with a report block for the browser's stream
//!     (loss, extended highest sequence number and jitter from the leg's reception
//!     statistics, LSR/DLSR from the browser's last SR), and SDES CNAME. Once RTCP from the
//!     trunk arrives, its reports go instead, until it has been silent for 15 s.
//!   - The anchor makes no reports toward the trunk: the browser always sends RTCP, which is
//!     relayed; what reaches the trunk is only RTP/AVP's packet types (SR, RR, SDES, BYE).
//!   - str0m's own SRTCP is dropped once the leg relays itself: it counts streams str0m no
//!     longer sees (its SR would say 0 packets sent).
//! - RTP header extensions: audio level and MID only (RFC 8285); transport-cc and
//!   abs-send-time, which only feed bandwidth estimation, are declined, so no leg exchanges
//!   transport-wide feedback.
//! - Renegotiation keeps the session (RFC 8829 §5.2.2, RFC 8843 as str0m applies them): a new
//!   offer from the browser is answered by its leg ([`Anchor::reoffer`]; an ICE restart it
//!   asks for is followed); the edge's own new offer ([`Anchor::offer_again`]) keeps the ICE
//!   credentials, fingerprint and mid, offers `a=setup:actpass`, and takes the browser's
//!   answer with [`Anchor::accept_answer`] (a refused one leaves the leg as before). The edge
//!   never starts an ICE restart. Every description after a leg's first carries an `o=`
//!   version one above the last (RFC 3264 §8; str0m always writes 2).
//! - The trunk side of a leg is one plain RTP address. It starts as the address from the
//!   trunk's SDP (or none), and **latches** to the source of the first packet from the trunk
//!   (symmetric RTP through NAT); packets from any other source are dropped after that.
//! - Drive it like str0m: feed datagrams ([`Anchor::handle_browser`],
//!   [`Anchor::handle_trunk`]) and time ([`Anchor::handle_timeout`] at
//!   [`Anchor::next_timeout`]), then send everything [`Anchor::poll_transmit`] gives. Nothing
//!   here reads a clock or touches a socket.
//! - Garbage is ignored: a datagram no leg accepts, or that str0m or the RTP reader refuses,
//!   is counted and dropped, and never harms the other legs.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::config::CryptoProvider;
use str0m::format::{Codec, FormatParams};
use str0m::media::{Direction, Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionMap, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

use super::rtcp::{self, Rename, ReportBlock, SenderInfo};
use super::rtp::{FIXED_HEADER, Reception, Rtp, RtpError, SeqExtender};
use super::sdp::{Codec as SdpCodec, Direction as SdpDirection};
use super::srtp::{self, KeySlot, Srtp};

/// The payload type of telephone-event (RFC 4733) in our answers, as Chrome offers it.
pub const TELEPHONE_EVENT_PT: u8 = 126;

/// One leg of the anchor: a browser on one side, a trunk's RTP address on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegId(u64);

/// A map by [`LegId`], hashed with one multiplication rather than SipHash: every relayed
/// packet looks its leg up, and the ids are the anchor's own counter, never a peer's choice.
pub type ByLeg<V> = HashMap<LegId, V, std::hash::BuildHasherDefault<LegHasher>>;

/// The hasher of [`ByLeg`] (Fibonacci hashing of the id).
#[derive(Debug, Clone, Copy, Default)]
pub struct LegHasher(u64);

impl std::hash::Hasher for LegHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

impl LegId {
    /// The id as a number (never 0), for storing in an atomic.
    pub fn number(self) -> u64 {
        self.0
    }

    /// The id of [`LegId::number`]; `None` for 0.
    pub fn from_number(n: u64) -> Option<LegId> {
        (n != 0).then_some(LegId(n))
    }
}

impl std::fmt::Display for LegId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "leg-{}", self.0)
    }
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// To a browser, from the anchor's shared WebRTC address (STUN, DTLS or SRTP).
    Browser { to: SocketAddr, bytes: Vec<u8> },
    /// To a trunk, from the leg's own trunk-side socket (plain RTP, or RTCP multiplexed).
    Trunk { leg: LegId, to: SocketAddr, bytes: Vec<u8> },
    /// To a trunk's RTCP address, from the leg's RTCP socket (the port above its RTP port).
    TrunkRtcp { leg: LegId, to: SocketAddr, bytes: Vec<u8> },
}

/// Why an offer could not be answered.
#[derive(Debug)]
pub enum MediaError {
    /// The browser's SDP does not parse.
    BadOffer(String),
    /// str0m could not answer it (no common codec, no audio...).
    Rejected(String),
}

impl std::fmt::Display for MediaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MediaError::BadOffer(e) => write!(f, "unreadable SDP offer: {e}"),
            MediaError::Rejected(e) => write!(f, "SDP offer not acceptable: {e}"),
        }
    }
}

impl std::error::Error for MediaError {}

/// What went through a leg, for metrics and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LegCounters {
    /// RTP packets relayed from the browser to the trunk.
    pub to_trunk: u64,
    /// RTP packets relayed from the trunk to the browser.
    pub to_browser: u64,
    /// Datagrams dropped: from the trunk side (not RTP, a stranger, not connected), or SRTP
    /// from the browser refused (not authentic, replayed, too old).
    pub dropped: u64,
    /// RTP packets from the trunk that never arrived (sequence gaps, RFC 3550 A.3).
    pub lost: u64,
    /// RTCP compound packets sent to the trunk (the browser's, relayed), and to the browser
    /// (the trunk's relayed, or the anchor's own reports).
    pub rtcp_to_trunk: u64,
    pub rtcp_to_browser: u64,
}

/// How the live legs' media fares: the worst leg on each side.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Quality {
    /// Interarrival jitter of what the trunks send (RFC 3550 A.8), worst leg.
    pub trunk_jitter: std::time::Duration,
    /// Interarrival jitter of what the browsers send, worst leg.
    pub browser_jitter: std::time::Duration,
    /// Fraction of the browsers' packets lost (sequence gaps), worst leg.
    pub browser_loss: f32,
}

impl LegCounters {
    fn add(&mut self, other: &LegCounters) {
        self.to_trunk += other.to_trunk;
        self.to_browser += other.to_browser;
        self.lost += other.lost;
        self.dropped += other.dropped;
        self.rtcp_to_trunk += other.rtcp_to_trunk;
        self.rtcp_to_browser += other.rtcp_to_browser;
    }
}

/// The anchor: every WebRTC leg behind one UDP address.
#[derive(Debug)]
pub struct Anchor {
    /// The shared WebRTC address: our ICE host candidate.
    local: SocketAddr,
    legs: ByLeg<Leg>,
    next_id: u64,
    out: VecDeque<Transmit>,
    /// Datagrams on the WebRTC address that no leg accepted, or that did not parse.
    pub stray: u64,
    /// What the legs removed so far relayed (for totals across the anchor's life).
    removed: LegCounters,
    /// The leg each browser address belongs to, once a datagram from it was accepted: a
    /// packet finds its leg without asking every leg (`Rtc::accepts` is the fallback).
    by_source: HashMap<SocketAddr, LegId>,
    /// Buffers of datagrams already sent ([`Anchor::recycle`]), for the plain RTP relayed to
    /// trunks: no allocation for those once the relay runs.
    spare: Vec<Vec<u8>>,
    /// The wall clock at an instant ([`Anchor::set_wall_clock`]), for NTP timestamps.
    wall: Option<(Instant, Duration)>,
}

/// The anchor's report interval toward a browser (RFC 3550 §6.2's 5 s minimum, each
/// interval drawn from 0.5 to 1.5 times it; the first is half).
const REPORT: Duration = Duration::from_secs(5);

/// The trunk's RTCP is relayed instead of the anchor's own reports until it has been silent
/// this long (RFC 3550 §6.3.5 times a member out after 5 intervals; 3 is enough here).
const TRUNK_QUIET: Duration = Duration::from_secs(15);

/// The most sent buffers kept for reuse.
const SPARE: usize = 256;

struct Leg {
    rtc: Rtc,
    /// Our offer to the browser, until its answer arrives ([`Anchor::create_offer`]).
    pending: Option<SdpPendingOffer>,
    /// The last sign of life for the media timeout (or the leg's creation): RTP either way,
    /// RTCP either way, the browser's consent checks once connected. A held call (no audio,
    /// RFC 3264 §8.4) stays up; one whose two sides both went silent ends.
    last_media: Instant,
    /// The leg's creation: the zero of the arrival clock for the trunk's jitter.
    epoch: Instant,
    /// Loss and jitter of the trunk's stream.
    reception: Reception,
    /// Loss and jitter of the browser's stream (after SRTP).
    browser_reception: Reception,
    /// When str0m wants [`Input::Timeout`] next.
    timeout: Instant,
    /// The audio media, once str0m reports it.
    mid: Option<Mid>,
    /// DTLS and SRTP are up: media may be written.
    connected: bool,
    /// ICE gave up, DTLS closed or str0m failed: the leg only waits to be removed.
    closed: bool,
    /// The `o=` version of the last description the edge gave the browser (str0m writes 2;
    /// each later one goes up by one, RFC 3264 §8).
    version: u64,
    /// The edge's direction before its new offer ([`Anchor::offer_again`]), until the answer.
    before_offer: Option<Direction>,
    /// Where plain RTP goes; see the module contract on latching.
    trunk: Option<SocketAddr>,
    /// The address the trunk's SDP named (latching may have moved `trunk` away from it).
    announced: Option<SocketAddr>,
    latched: bool,
    /// Sequence numbers from the trunk, extended for SRTP.
    seq: SeqExtender,
    counters: LegCounters,
    /// Where the leg's DTLS puts the SRTP keys ([`srtp::build`]).
    keys: KeySlot,
    /// The relay's own SRTP, once the leg is connected ([`Leg::relay`]).
    relay: Option<Relay>,
    /// Where the browser receives media: the destination of str0m's last DTLS datagram, or
    /// the source of the browser's last authentic SRTP or SRTCP (ICE pairs are symmetric).
    media_to: Option<SocketAddr>,
    /// The trunk's RTCP address, latched on the first RTCP from the trunk on the RTCP port;
    /// before that the port above its RTP address (RFC 3550 §11).
    trunk_rtcp: Option<SocketAddr>,
    rtcp_latched: bool,
    /// The trunk multiplexes RTCP on its RTP port (RFC 5761): ours goes there too.
    rtcp_mux: bool,
    /// The SSRC of the trunk's RTP (the last packet's).
    trunk_ssrc: Option<u32>,
    /// The CNAME str0m announced for the leg's stream (`a=ssrc:... cname:`, RFC 5576).
    cname: Option<String>,
}

/// A connected leg's RTP path without str0m: SRTP both ways with the DTLS keys, str0m's send
/// stream's SSRC, and the MID header extension when negotiated (RFC 8843 §15, RFC 8285).
struct Relay {
    srtp: Srtp,
    ssrc: u32,
    /// The fixed header (sequence number, timestamp and the rest written per packet) and the
    /// MID extension when negotiated.
    header: Vec<u8>,
    /// The anchor's RTCP toward the browser.
    reports: Reports,
}

/// What the anchor's own reports toward the browser need (see the module contract).
struct Reports {
    /// When the next one is due.
    next: Instant,
    /// The interval's jitter: xorshift64 (spreading reports out needs no secret).
    seed: u64,
    /// Packets and payload octets sent to the browser under the leg's SSRC (RFC 3550 §6.4.1:
    /// modulo 2^32).
    packets: u32,
    octets: u32,
    /// The RTP timestamp of the last packet sent, and when it went.
    last: Option<(u32, Instant)>,
    /// The SSRC of the browser's RTP, and its reception's (expected, received) at the last
    /// report, for the fraction lost (RFC 3550 A.3).
    browser_ssrc: Option<u32>,
    prior: (u64, u64),
    /// The middle 32 bits of the NTP timestamp of the browser's last SR, and its arrival.
    browser_sr: Option<(u32, Instant)>,
    /// When RTCP from the trunk last went to the browser.
    trunk_heard: Option<Instant>,
}

impl Reports {
    fn new(now: Instant, ssrc: u32) -> Reports {
        let mut r = Reports {
            next: now,
            seed: u64::from(ssrc).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1,
            packets: 0,
            octets: 0,
            last: None,
            browser_ssrc: None,
            prior: (0, 0),
            browser_sr: None,
            trunk_heard: None,
        };
        r.next = now + r.interval() / 2;
        r
    }

    /// The next interval: [`REPORT`] times a factor from 0.5 to 1.5 (RFC 3550 §6.2, §6.3.1).
    fn interval(&mut self) -> Duration {
        let s = &mut self.seed;
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        let unit = (*s >> 11) as f64 / (1u64 << 53) as f64;
        REPORT.mul_f64(0.5 + unit)
    }
}

impl std::fmt::Debug for Leg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leg")
            .field("connected", &self.connected)
            .field("closed", &self.closed)
            .field("latched", &self.latched)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// One aws-lc-rs provider for every `Rtc` (the tree keeps a single crypto library), its DTLS
/// handing the SRTP keys to the leg too ([`srtp::provider`]).
fn crypto() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(srtp::provider())).clone()
}

/// Whether a datagram from a browser is SRTP rather than SRTCP, STUN or DTLS (RFC 7983 §7:
/// first octet 128-191; RFC 5761 §4: RTCP packet types 192-223 in the second).
fn is_srtp(bytes: &[u8]) -> bool {
    bytes.len() >= FIXED_HEADER
        && (128..=191).contains(&bytes[0])
        && !(192..=223).contains(&bytes[1])
}

/// Whether a datagram is (S)RTCP rather than (S)RTP, STUN or DTLS (as [`is_srtp`]).
fn is_srtcp(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && (128..=191).contains(&bytes[0]) && (192..=223).contains(&bytes[1])
}

/// The first CNAME of an SDP's `a=ssrc:<ssrc> cname:<cname>` lines (RFC 5576 §4.1).
fn sdp_cname(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| {
        let (_, cname) = l.trim_end().strip_prefix("a=ssrc:")?.split_once(" cname:")?;
        Some(cname.to_owned())
    })
}

impl Leg {
    /// The leg's own RTP path, set up on first use once DTLS is up; `None` before (or for a
    /// leg whose keys or send stream str0m does not give).
    fn relay(&mut self, now: Instant) -> Option<&mut Relay> {
        if self.relay.is_none() && self.connected && !self.closed {
            // The cheap checks first: a leg without a send stream (or keys) asks again per packet.
            let mid = self.mid?;
            let ssrc = *self.rtc.direct_api().stream_tx_by_mid(mid, None)?.ssrc();
            let keys =
                self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()?;
            let srtp = Srtp::new(&crypto(), &keys)?;
            tracing::debug!(?keys, ssrc, "webrtc leg relays its own SRTP");
            let ext = self.rtc.media(mid).and_then(|m| m.remote_extmap().id_of(Extension::RtpMid));
            let mut header = vec![0x80, 0, 0, 0, 0, 0, 0, 0];
            header.extend_from_slice(&ssrc.to_be_bytes());
            if let Some(id) = ext.filter(|id| (1..=14).contains(id)) {
                // One-byte header extension (RFC 8285 §4.2): the mid, 1-16 octets, padded.
                let mid = mid.as_bytes();
                let len = mid.len().clamp(1, 16);
                header[0] |= 0x10;
                let words = (1 + len).div_ceil(4);
                header.extend_from_slice(&[0xbe, 0xde]);
                header.extend_from_slice(&u16::try_from(words).unwrap_or(0).to_be_bytes());
                header.push(id << 4 | u8::try_from(len - 1).unwrap_or(0));
                header.extend_from_slice(&mid[..len.min(mid.len())]);
                header.resize(FIXED_HEADER + 4 + 4 * words, 0);
            }
            self.relay = Some(Relay { srtp, ssrc, header, reports: Reports::new(now, ssrc) });
        }
        self.relay.as_mut()
    }
}

/// The RTP header extensions a leg accepts (RFC 8285): str0m's standard audio ones (ids as
/// `ExtensionMap::standard`) without those that only feed bandwidth estimation, which a relay
/// of fixed-rate voice does not do: transport-wide sequence numbers (`transport-cc`) would make
/// each leg register every packet and exchange a feedback packet every ~100 ms each way, and
/// abs-send-time serves REMB.
fn extensions() -> ExtensionMap {
    let mut map = ExtensionMap::empty();
    map.set(1, Extension::AudioLevel);
    map.set(4, Extension::RtpMid);
    map
}

/// The configuration of a WebRTC leg: ICE-lite, RTP mode, the voice codecs given and
/// telephone-event at payload type `events` (the plain side's, so that packets pass unchanged).
fn leg_config(voices: &[SdpCodec], events: Option<u8>) -> RtcConfig {
    let mut config = RtcConfig::new()
        .set_crypto_provider(crypto())
        .set_extension_map(extensions())
        .set_ice_lite(true)
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(voices.contains(&SdpCodec::Pcmu), false)
        .enable_pcma(voices.contains(&SdpCodec::Pcma), false);
    if let Some(pt) = events {
        config.codec_config().add_config(
            Pt::from(pt),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::parse_line("0-16"),
        );
    }
    config
}

impl Anchor {
    /// An anchor whose WebRTC legs all use `local` (the address its UDP socket is bound to, or
    /// the public address that reaches it).
    pub fn new(local: SocketAddr) -> Anchor {
        Anchor {
            local,
            legs: ByLeg::default(),
            next_id: 1,
            out: VecDeque::new(),
            stray: 0,
            removed: LegCounters::default(),
            by_source: HashMap::new(),
            spare: Vec::new(),
            wall: None,
        }
    }

    /// The wall clock: `since_unix` (the time since the Unix epoch) at `at`. The anchor's
    /// sender reports carry NTP timestamps from it (RFC 3550 §6.4.1); without it they count
    /// from the Unix epoch at each leg's creation.
    pub fn set_wall_clock(&mut self, at: Instant, since_unix: Duration) {
        self.wall = Some((at, since_unix));
    }

    /// Answers a browser's SDP offer with a new leg whose plain RTP goes to `trunk` (the
    /// address in the trunk's SDP, if known yet), offering only `voices` (what the plain side
    /// chose) and telephone-event at `events`. Returns the leg and the SDP answer.
    pub fn accept_offer(
        &mut self,
        now: Instant,
        offer: &str,
        trunk: Option<SocketAddr>,
        voices: &[SdpCodec],
        events: Option<u8>,
    ) -> Result<(LegId, String), MediaError> {
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        let (mut rtc, keys) = self.new_rtc(now, voices, events)?;
        let answer =
            rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Rejected(e.to_string()))?;
        let answer = answer.to_sdp_string();
        if !answer.lines().any(|l| l.starts_with("a=rtpmap:0 ") || l.starts_with("a=rtpmap:8 ")) {
            return Err(MediaError::Rejected("no common voice codec".into()));
        }
        let id = self.insert(now, (rtc, keys), None, trunk);
        if let Some(leg) = self.legs.get_mut(&id) {
            // str0m reports MediaAdded only once DTLS is up; a new offer may come before.
            leg.mid = leg.mid.or_else(|| audio_mid(&answer));
            leg.cname = sdp_cname(&answer);
        }
        Ok((id, answer))
    }

    /// An id from the legs' space for something else the engine relays (a plain pair).
    pub fn reserve_id(&mut self) -> LegId {
        let id = LegId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Offers the browser a new leg (a call from the plain side toward a browser) with
    /// `voices` and telephone-event at `events`; [`Anchor::accept_answer`] takes its answer.
    pub fn create_offer(
        &mut self,
        now: Instant,
        trunk: Option<SocketAddr>,
        voices: &[SdpCodec],
        events: Option<u8>,
    ) -> Result<(LegId, String), MediaError> {
        let (mut rtc, keys) = self.new_rtc(now, voices, events)?;
        let mut change = rtc.sdp_api();
        // str0m reports MediaAdded only for media the other side adds: ours is known now.
        let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        let (offer, pending) =
            change.apply().ok_or_else(|| MediaError::Rejected("nothing to offer".into()))?;
        let offer = offer.to_sdp_string();
        let id = self.insert(now, (rtc, keys), Some(pending), trunk);
        if let Some(leg) = self.legs.get_mut(&id) {
            leg.mid = Some(mid);
            leg.cname = sdp_cname(&offer);
        }
        Ok((id, offer))
    }

    /// The browser's answer to [`Anchor::create_offer`], at `now` (the media timeout counts
    /// from the answer, not from the offer: a browser may ring for minutes).
    pub fn accept_answer(
        &mut self,
        now: Instant,
        leg: LegId,
        answer: &str,
    ) -> Result<(), MediaError> {
        let l =
            self.legs.get_mut(&leg).ok_or_else(|| MediaError::Rejected("no such leg".into()))?;
        l.last_media = now;
        let pending =
            l.pending.take().ok_or_else(|| MediaError::Rejected("no offer pending".into()))?;
        let accepted = SdpAnswer::from_sdp_string(answer)
            .map_err(|e| MediaError::BadOffer(e.to_string()))
            .and_then(|answer| {
                l.rtc
                    .sdp_api()
                    .accept_answer(pending, answer)
                    .map_err(|e| MediaError::Rejected(e.to_string()))
            });
        if let Err(e) = accepted {
            // A refused answer to a new offer leaves the leg as it was before the offer.
            self.withdraw_offer(leg);
            return Err(e);
        }
        l.before_offer = None;
        self.drain(leg);
        Ok(())
    }

    /// A new offer from the browser in an existing leg (a re-INVITE: hold, resume, ICE
    /// restart); the leg keeps its codecs and plain side.
    pub fn reoffer(&mut self, now: Instant, leg: LegId, offer: &str) -> Result<String, MediaError> {
        let offer =
            SdpOffer::from_sdp_string(offer).map_err(|e| MediaError::BadOffer(e.to_string()))?;
        let l =
            self.legs.get_mut(&leg).ok_or_else(|| MediaError::Rejected("no such leg".into()))?;
        let answer =
            l.rtc.sdp_api().accept_offer(offer).map_err(|e| MediaError::Rejected(e.to_string()))?;
        l.last_media = now;
        // An offer of the browser's replaces one of the edge's still unanswered (glare).
        l.pending = None;
        l.before_offer = None;
        l.version += 1;
        let answer = with_version(&answer.to_sdp_string(), l.version);
        l.cname = sdp_cname(&answer).or(l.cname.take());
        self.drain(leg);
        Ok(answer)
    }

    /// A new offer from the edge to the browser in an existing leg (the plain side re-offered:
    /// hold, resume, a session refresh, or its re-INVITE without SDP), on the same ICE and
    /// DTLS session: same ICE credentials, fingerprint and mid, `a=setup:actpass` (RFC 8842
    /// §5.2), the edge's direction set to `direction`. [`Anchor::accept_answer`] takes the
    /// browser's answer; [`Anchor::withdraw_offer`] forgets it when the browser refuses it.
    ///
    /// str0m makes an offer only for a change, so an unchanged direction (a session refresh,
    /// RFC 4028) is set away and back: the offer is the session as it stands.
    pub fn offer_again(
        &mut self,
        leg: LegId,
        direction: SdpDirection,
    ) -> Result<String, MediaError> {
        let l =
            self.legs.get_mut(&leg).ok_or_else(|| MediaError::Rejected("no such leg".into()))?;
        let mid = l.mid.ok_or_else(|| MediaError::Rejected("no audio yet".into()))?;
        let before = l
            .rtc
            .media(mid)
            .map(|m| m.direction())
            .ok_or_else(|| MediaError::Rejected("no audio yet".into()))?;
        let wanted = rtc_direction(direction);
        let mut change = l.rtc.sdp_api();
        if before == wanted {
            let away = if wanted == Direction::Inactive {
                Direction::SendRecv
            } else {
                Direction::Inactive
            };
            change.set_direction(mid, away);
        }
        change.set_direction(mid, wanted);
        let (offer, pending) =
            change.apply().ok_or_else(|| MediaError::Rejected("nothing to offer".into()))?;
        l.pending = Some(pending);
        l.before_offer = Some(before);
        l.version += 1;
        let offer = with_version(&offer.to_sdp_string(), l.version);
        self.drain(leg);
        Ok(offer)
    }

    /// The browser refused the edge's new offer ([`Anchor::offer_again`]): the leg goes on as
    /// before it (RFC 3264 §8: a refused offer changes nothing).
    pub fn withdraw_offer(&mut self, leg: LegId) {
        let Some(l) = self.legs.get_mut(&leg) else { return };
        l.pending = None;
        if let (Some(mid), Some(before)) = (l.mid, l.before_offer.take()) {
            let mut change = l.rtc.sdp_api();
            change.set_direction(mid, before);
            // The session is as before; the offer this would make is never sent.
            let _ = change.apply();
        }
        self.drain(leg);
    }

    fn new_rtc(
        &self,
        now: Instant,
        voices: &[SdpCodec],
        events: Option<u8>,
    ) -> Result<(Rtc, KeySlot), MediaError> {
        if voices.is_empty() {
            return Err(MediaError::Rejected("no common voice codec".into()));
        }
        let (mut rtc, keys) = srtp::build(leg_config(voices, events), now);
        let candidate = Candidate::host(self.local, "udp")
            .map_err(|e| MediaError::Rejected(format!("local candidate: {e}")))?;
        rtc.add_local_candidate(candidate);
        Ok((rtc, keys))
    }

    fn insert(
        &mut self,
        now: Instant,
        (rtc, keys): (Rtc, KeySlot),
        pending: Option<SdpPendingOffer>,
        trunk: Option<SocketAddr>,
    ) -> LegId {
        let id = LegId(self.next_id);
        self.next_id += 1;
        let leg = Leg {
            rtc,
            pending,
            last_media: now,
            epoch: now,
            reception: Reception::default(),
            browser_reception: Reception::default(),
            timeout: now,
            mid: None,
            connected: false,
            closed: false,
            version: 2,
            before_offer: None,
            trunk,
            announced: trunk,
            latched: false,
            seq: SeqExtender::default(),
            counters: LegCounters::default(),
            keys,
            relay: None,
            media_to: None,
            trunk_rtcp: None,
            rtcp_latched: false,
            rtcp_mux: false,
            trunk_ssrc: None,
            cname: None,
        };
        self.legs.insert(id, leg);
        self.drain(id);
        id
    }

    /// The trunk's RTP address from its SDP. A new address (another trunk after failover, a
    /// re-INVITE) replaces a latched one and latching starts again; the same address leaves
    /// a latched source (symmetric RTP behind NAT) alone.
    pub fn set_trunk(&mut self, leg: LegId, addr: SocketAddr) {
        if let Some(l) = self.legs.get_mut(&leg)
            && l.trunk != Some(addr)
            && !(l.latched && l.announced == Some(addr))
        {
            l.trunk = Some(addr);
            l.announced = Some(addr);
            l.latched = false;
            l.trunk_rtcp = None;
            l.rtcp_latched = false;
            l.rtcp_mux = false;
        }
    }

    /// A datagram that arrived on the shared WebRTC address. Returns whether a leg took it.
    pub fn handle_browser(&mut self, now: Instant, source: SocketAddr, bytes: &[u8]) -> bool {
        // The browser's SRTP and SRTCP, once the leg relays its own: the anchor's, not str0m's.
        let (srtp, srtcp) = (is_srtp(bytes), is_srtcp(bytes));
        if (srtp || srtcp)
            && let Some(&id) = self.by_source.get(&source)
            && let Some(leg) = self.legs.get_mut(&id)
            && !leg.closed
            && leg.relay(now).is_some()
        {
            let relay = if srtp { relay_srtp } else { relay_srtcp };
            if let Some(t) = relay(id, leg, now, source, bytes, &mut self.spare) {
                self.out.push_back(t);
            }
            return true;
        }
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, bytes) else {
            self.stray += 1;
            return false;
        };
        let input = Input::Receive(now, receive);
        let known = self
            .by_source
            .get(&source)
            .copied()
            .filter(|id| self.legs.get(id).is_some_and(|l| !l.closed && l.rtc.accepts(&input)));
        let found = known.or_else(|| {
            self.legs.iter().find(|(_, l)| !l.closed && l.rtc.accepts(&input)).map(|(id, _)| *id)
        });
        let Some(id) = found else {
            self.stray += 1;
            return false;
        };
        if known.is_none() {
            self.by_source.insert(source, id);
        }
        if let Some(leg) = self.legs.get_mut(&id)
            && leg.connected
            && bytes.first().is_some_and(|b| *b < 4)
        {
            // The browser's consent checks (STUN, RFC 7675: every few seconds whatever the
            // media direction) keep a connected leg alive while a held call sends no audio;
            // a browser that goes away stops them and ICE closes the leg.
            leg.last_media = now;
        }
        if let Some(leg) = self.legs.get_mut(&id)
            && let Err(e) = leg.rtc.handle_input(input)
        {
            // A bad packet inside an accepted flow (e.g. SRTP that fails authentication) is
            // str0m's to judge; only a failed Rtc ends the leg, in drain.
            tracing::debug!(leg = %id, error = %e, "webrtc input refused");
        }
        self.drain(id);
        true
    }

    /// A datagram that arrived on `leg`'s trunk-side socket from `source`.
    pub fn handle_trunk(&mut self, now: Instant, leg: LegId, source: SocketAddr, bytes: &[u8]) {
        let rtp = match Rtp::parse(bytes) {
            Ok(rtp) => rtp,
            Err(RtpError::Rtcp) => return self.trunk_rtcp(now, leg, source, bytes, true),
            Err(_) => {
                if let Some(l) = self.legs.get_mut(&leg) {
                    l.counters.dropped += 1;
                }
                return;
            }
        };
        let Some(l) = self.legs.get_mut(&leg) else { return };
        if l.latched {
            if l.trunk != Some(source) {
                l.counters.dropped += 1;
                return;
            }
        } else {
            l.trunk = Some(source);
            l.latched = true;
        }
        l.trunk_ssrc = Some(rtp.ssrc);
        let ext = l.seq.extend(rtp.sequence);
        // The arrival clock in the 8 kHz units of PCMU/PCMA (and telephone-event).
        let arrival = now.saturating_duration_since(l.epoch).as_micros() * 8 / 1000;
        l.reception.packet(ext, rtp.timestamp, u64::try_from(arrival).unwrap_or(u64::MAX));
        l.counters.lost = l.reception.lost();
        let (Some(mid), true, false) = (l.mid, l.connected, l.closed) else {
            l.counters.dropped += 1;
            return;
        };
        l.last_media = now;
        if let Some(to) = l.media_to
            && let Some(relay) = l.relay(now)
        {
            let mut bytes = self.spare.pop().unwrap_or_default();
            let header = &mut relay.header;
            header[1] = u8::from(rtp.marker) << 7 | (rtp.payload_type & 0x7f);
            header[2..4].copy_from_slice(&rtp.sequence.to_be_bytes());
            header[4..8].copy_from_slice(&rtp.timestamp.to_be_bytes());
            if relay.srtp.protect(header, rtp.payload, relay.ssrc, ext, &mut bytes) {
                let r = &mut relay.reports;
                r.packets = r.packets.wrapping_add(1);
                r.octets = r.octets.wrapping_add(u32::try_from(rtp.payload.len()).unwrap_or(0));
                r.last = Some((rtp.timestamp, now));
                l.counters.to_browser += 1;
                self.out.push_back(Transmit::Browser { to, bytes });
            } else {
                // Its index was sent already (a duplicate from the trunk) or is too old.
                l.counters.dropped += 1;
                self.recycle(bytes);
            }
            return;
        }
        let seq = SeqNo::from(ext);
        // str0m keeps the payload as an `Arc<[u8]>`: one allocation and copy, made here.
        let payload = Arc::<[u8]>::from(rtp.payload);
        let write = RtpWrite::new(Pt::from(rtp.payload_type), seq, rtp.timestamp, now, payload)
            .marker(rtp.marker);
        let mut api = l.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(mid, None) else {
            l.counters.dropped += 1;
            return;
        };
        stream.write_rtp(write);
        l.counters.to_browser += 1;
        // str0m's pacer hands out only what its last timeout saw queued: run it now, so the
        // packet leaves with this call, not at the engine's next timer (milliseconds later).
        if let Err(e) = l.rtc.handle_input(Input::Timeout(now)) {
            tracing::debug!(%leg, error = %e, "webrtc timeout refused");
        }
        self.drain(leg);
    }

    /// Time has come to `now`: every leg whose timeout is due runs its timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<LegId> =
            self.legs.iter().filter(|(_, l)| l.timeout <= now).map(|(id, _)| *id).collect();
        for id in due {
            if let Some(leg) = self.legs.get_mut(&id)
                && let Err(e) = leg.rtc.handle_input(Input::Timeout(now))
            {
                tracing::debug!(leg = %id, error = %e, "webrtc timeout refused");
            }
            self.drain(id);
        }
        let reports: Vec<LegId> = self
            .legs
            .iter()
            .filter(|(_, l)| !l.closed && l.relay.as_ref().is_some_and(|r| r.reports.next <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in reports {
            self.report(id, now);
        }
    }

    /// When [`Anchor::handle_timeout`] must run next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let report = |l: &Leg| l.relay.as_ref().map_or(l.timeout, |r| r.reports.next);
        self.legs.values().filter(|l| !l.closed).map(|l| l.timeout.min(report(l))).min()
    }

    /// RTCP from the trunk on `leg`'s RTCP socket (the port above its RTP port) from
    /// `source`: relayed to the browser as SRTCP (see the module contract).
    pub fn handle_trunk_rtcp(
        &mut self,
        now: Instant,
        leg: LegId,
        source: SocketAddr,
        bytes: &[u8],
    ) {
        self.trunk_rtcp(now, leg, source, bytes, false);
    }

    /// RTCP from the trunk, on its RTCP port or multiplexed on RTP's (`muxed`).
    fn trunk_rtcp(
        &mut self,
        now: Instant,
        id: LegId,
        source: SocketAddr,
        bytes: &[u8],
        muxed: bool,
    ) {
        let Some(l) = self.legs.get_mut(&id) else { return };
        let ours = if muxed {
            // Multiplexed RTCP comes from the trunk's RTP address (RFC 5761 §5.1.3).
            l.trunk == Some(source)
        } else if l.rtcp_latched {
            l.trunk_rtcp == Some(source)
        } else {
            l.trunk_rtcp = Some(source);
            l.rtcp_latched = true;
            true
        };
        if !ours {
            l.counters.dropped += 1;
            return;
        }
        l.rtcp_mux |= muxed;
        // RTCP goes on while a call is held (RFC 3264 §8.4): the leg is alive.
        l.last_media = now;
        let (Some(to), false) = (l.media_to, l.closed) else {
            l.counters.dropped += 1;
            return;
        };
        let Some(relay) = l.relay(now) else {
            l.counters.dropped += 1;
            return;
        };
        let mut plain = self.spare.pop().unwrap_or_default();
        let mut out = self.spare.pop().unwrap_or_default();
        if rtcp::relay(bytes, Rename::Sender(relay.ssrc), &mut plain)
            && relay.srtp.protect_rtcp(&plain, &mut out)
        {
            relay.reports.trunk_heard = Some(now);
            l.counters.rtcp_to_browser += 1;
            self.out.push_back(Transmit::Browser { to, bytes: out });
        } else {
            l.counters.dropped += 1;
            self.recycle(out);
        }
        self.recycle(plain);
    }

    /// The anchor's own report toward `id`'s browser, due at `now` (see the module contract):
    /// none while the trunk's RTCP is relayed instead.
    fn report(&mut self, id: LegId, now: Instant) {
        let wall = self.wall;
        let Some(leg) = self.legs.get_mut(&id) else { return };
        let reception = leg.browser_reception;
        let epoch = leg.epoch;
        let cname = leg.cname.clone().unwrap_or_else(|| id.to_string());
        let to = leg.media_to;
        let Some(relay) = leg.relay(now) else { return };
        let r = &mut relay.reports;
        r.next = now + r.interval();
        let Some(to) = to else { return };
        if r.trunk_heard.is_some_and(|t| now.saturating_duration_since(t) < TRUNK_QUIET) {
            return;
        }
        let since_unix = match wall {
            Some((at, unix)) if now >= at => unix + (now - at),
            Some((at, unix)) => unix.saturating_sub(at - now),
            None => now.saturating_duration_since(epoch),
        };
        // An SR only while sending: after two intervals without a packet, an RR (RFC 3550
        // §6.4: a participant that has not sent since the report before the last).
        let sending = r.last.filter(|(_, at)| now.saturating_duration_since(*at) < 2 * REPORT);
        let sender = sending.map(|(timestamp, at)| {
            // The stream's timestamp now: the last packet's, advanced at 8 kHz (PCMU, PCMA and
            // telephone-event all count at 8000 Hz).
            let ticks = now.saturating_duration_since(at).as_micros() * 8 / 1000;
            SenderInfo {
                ntp: rtcp::ntp(since_unix),
                rtp: timestamp.wrapping_add(u32::try_from(ticks).unwrap_or(u32::MAX)),
                packets: r.packets,
                octets: r.octets,
            }
        });
        let block = r.browser_ssrc.zip(reception.highest()).map(|(ssrc, highest)| {
            let (expected, received) = (reception.expected(), reception.received());
            let interval = expected.saturating_sub(r.prior.0);
            let lost = interval.saturating_sub(received.saturating_sub(r.prior.1));
            r.prior = (expected, received);
            let (lsr, dlsr) = r
                .browser_sr
                .map_or((0, 0), |(lsr, at)| (lsr, rtcp::dlsr(now.saturating_duration_since(at))));
            ReportBlock {
                ssrc,
                // RFC 3550 A.3: lost in the interval over expected in it, in 256ths.
                fraction_lost: (lost << 8)
                    .checked_div(interval)
                    .map_or(0, |f| u8::try_from(f).unwrap_or(u8::MAX)),
                lost: i64::try_from(expected).unwrap_or(i64::MAX)
                    - i64::try_from(received).unwrap_or(i64::MAX),
                highest: highest as u32,
                jitter: u32::try_from(reception.jitter()).unwrap_or(u32::MAX),
                lsr,
                dlsr,
            }
        });
        let mut plain = self.spare.pop().unwrap_or_default();
        let mut out = self.spare.pop().unwrap_or_default();
        rtcp::write_report(relay.ssrc, sender, block, &cname, &mut plain);
        if relay.srtp.protect_rtcp(&plain, &mut out) {
            leg.counters.rtcp_to_browser += 1;
            self.out.push_back(Transmit::Browser { to, bytes: out });
        } else {
            self.recycle(out);
        }
        self.recycle(plain);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// A sent datagram's buffer back, for a packet to come.
    pub fn recycle(&mut self, bytes: Vec<u8>) {
        if self.spare.len() < SPARE {
            self.spare.push(bytes);
        }
    }

    /// Whether [`Anchor::poll_transmit`] has something.
    pub fn has_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// Ends a leg (the call ended).
    pub fn remove(&mut self, leg: LegId) {
        if let Some(mut l) = self.legs.remove(&leg) {
            l.rtc.disconnect();
            self.removed.add(&l.counters);
            self.by_source.retain(|_, id| *id != leg);
        }
    }

    /// Whether the leg's DTLS-SRTP is up.
    pub fn is_connected(&self, leg: LegId) -> bool {
        self.legs.get(&leg).is_some_and(|l| l.connected && !l.closed)
    }

    /// Whether the leg has failed or the browser went away (ICE disconnected, DTLS closed).
    pub fn is_closed(&self, leg: LegId) -> bool {
        self.legs.get(&leg).is_none_or(|l| l.closed)
    }

    /// What every leg, live or removed, relayed.
    pub fn totals(&self) -> LegCounters {
        let mut t = self.removed;
        for l in self.legs.values() {
            t.add(&l.counters);
        }
        t
    }

    /// The worst live leg's jitter and loss on each side.
    pub fn quality(&self) -> Quality {
        let units = |u: u64| std::time::Duration::from_micros(u * 1000 / 8);
        let mut q = Quality::default();
        for l in self.legs.values().filter(|l| !l.closed) {
            q.trunk_jitter = q.trunk_jitter.max(units(l.reception.jitter()));
            let b = &l.browser_reception;
            q.browser_jitter = q.browser_jitter.max(units(b.jitter()));
            let expected = b.expected().max(1);
            q.browser_loss = q.browser_loss.max(b.lost() as f32 / expected as f32);
        }
        q
    }

    /// When the leg last showed life (see `Leg::last_media`; its creation before any).
    pub fn last_media(&self, leg: LegId) -> Option<Instant> {
        self.legs.get(&leg).map(|l| l.last_media)
    }

    pub fn counters(&self, leg: LegId) -> Option<LegCounters> {
        self.legs.get(&leg).map(|l| l.counters)
    }

    /// Runs a leg's str0m output to its next timeout (str0m's run-loop contract).
    fn drain(&mut self, id: LegId) {
        let Some(leg) = self.legs.get_mut(&id) else { return };
        loop {
            match leg.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    leg.timeout = t;
                    break;
                }
                Ok(Output::Transmit(t)) => {
                    // str0m's RTCP describes streams it no longer sees once the leg relays its
                    // own SRTP: the anchor's RTCP replaces it.
                    // (str0m's last timeout is the clock here: it only starts the report timer.)
                    let at = leg.timeout;
                    if leg.connected && is_srtcp(&t.contents) && leg.relay(at).is_some() {
                        continue;
                    }
                    // DTLS goes to the nominated address; a STUN response (first octet 0-3,
                    // RFC 7983 §7) to whichever address asked.
                    if t.contents.first().is_some_and(|b| *b >= 20) {
                        leg.media_to = Some(t.destination);
                    }
                    self.out.push_back(Transmit::Browser {
                        to: t.destination,
                        bytes: Vec::from(t.contents),
                    });
                }
                Ok(Output::Event(event)) => match event {
                    Event::MediaAdded(m) if m.kind == MediaKind::Audio => leg.mid = Some(m.mid),
                    Event::Connected => leg.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected)
                    | Event::Closed => leg.closed = true,
                    Event::RtpPacket(packet) => {
                        leg.last_media = packet.timestamp;
                        let arrival =
                            packet.timestamp.saturating_duration_since(leg.epoch).as_micros() * 8
                                / 1000;
                        leg.browser_reception.packet(
                            *packet.seq_no,
                            packet.header.timestamp,
                            u64::try_from(arrival).unwrap_or(u64::MAX),
                        );
                        if let Some(t) = relay_to_trunk(id, leg, &packet, &mut self.spare) {
                            self.out.push_back(t);
                        }
                    }
                    _ => {}
                },
                Err(e) => {
                    tracing::warn!(leg = %id, error = %e, "webrtc leg failed");
                    leg.closed = true;
                    break;
                }
            }
        }
    }
}

/// The mid of the first audio section of `sdp` (RFC 8843 §14.1).
fn audio_mid(sdp: &str) -> Option<Mid> {
    let audio = &sdp[sdp.find("m=audio ")?..];
    let section = audio[1..].find("\nm=").map_or(audio, |end| &audio[..end + 1]);
    section.lines().find_map(|l| l.trim_end().strip_prefix("a=mid:")).map(Mid::from)
}

/// str0m's direction for the edge's own.
fn rtc_direction(d: SdpDirection) -> Direction {
    match d {
        SdpDirection::SendRecv => Direction::SendRecv,
        SdpDirection::SendOnly => Direction::SendOnly,
        SdpDirection::RecvOnly => Direction::RecvOnly,
        SdpDirection::Inactive => Direction::Inactive,
    }
}

/// `sdp` with the version of its `o=` line (its third field, RFC 8866 §5.2) set to `version`.
fn with_version(sdp: &str, version: u64) -> String {
    let mut out = String::with_capacity(sdp.len() + 4);
    for line in sdp.split_inclusive('\n') {
        if let Some(origin) = line.strip_prefix("o=") {
            let fields: Vec<&str> = origin.splitn(4, ' ').collect();
            if let [user, id, _, rest] = fields[..] {
                out.push_str(&format!("o={user} {id} {version} {rest}"));
                continue;
            }
        }
        out.push_str(line);
    }
    out
}

/// An SRTP packet from the browser at `source`, decrypted by the leg's relay, as plain RTP
/// toward the trunk (once its address is known).
fn relay_srtp(
    id: LegId,
    leg: &mut Leg,
    now: Instant,
    source: SocketAddr,
    bytes: &[u8],
    spare: &mut Vec<Vec<u8>>,
) -> Option<Transmit> {
    let mut out = spare.pop().unwrap_or_default();
    out.clear();
    // The fixed header as is, without CSRCs, extension or padding (as `Rtp::write_to`).
    out.push(0x80);
    out.extend_from_slice(bytes.get(1..FIXED_HEADER)?);
    let relay = leg.relay.as_mut()?;
    let Some(packet) = relay.srtp.unprotect(bytes, &mut out) else {
        leg.counters.dropped += 1;
        spare.push(out);
        return None;
    };
    leg.media_to = Some(source);
    leg.last_media = now;
    relay.reports.browser_ssrc = Some(packet.ssrc);
    let arrival = now.saturating_duration_since(leg.epoch).as_micros() * 8 / 1000;
    leg.browser_reception.packet(
        packet.index,
        packet.timestamp,
        u64::try_from(arrival).unwrap_or(u64::MAX),
    );
    let Some(to) = leg.trunk else {
        leg.counters.dropped += 1;
        spare.push(out);
        return None;
    };
    leg.counters.to_trunk += 1;
    Some(Transmit::Trunk { leg: id, to, bytes: out })
}

/// An SRTCP packet from the browser at `source`, authenticated and decrypted by the leg's
/// relay, as plain RTCP toward the trunk (see the module contract).
fn relay_srtcp(
    id: LegId,
    leg: &mut Leg,
    now: Instant,
    source: SocketAddr,
    bytes: &[u8],
    spare: &mut Vec<Vec<u8>>,
) -> Option<Transmit> {
    let relay = leg.relay.as_mut()?;
    let mut plain = spare.pop().unwrap_or_default();
    plain.clear();
    if !relay.srtp.unprotect_rtcp(bytes, &mut plain) {
        leg.counters.dropped += 1;
        spare.push(plain);
        return None;
    }
    leg.media_to = Some(source);
    // RTCP goes on while a call is held (RFC 3264 §8.4): the leg is alive.
    leg.last_media = now;
    if let Some((_, ntp)) = rtcp::sender_report(&plain) {
        // LSR: the middle 32 bits of the NTP timestamp (RFC 3550 §6.4.1).
        relay.reports.browser_sr = Some(((ntp >> 16) as u32, now));
    }
    // Report blocks about the leg's stream are about the trunk's toward the trunk.
    let rename = Rename::About(relay.ssrc, leg.trunk_ssrc.unwrap_or(relay.ssrc));
    let to = if leg.rtcp_mux {
        leg.trunk
    } else {
        leg.trunk_rtcp.or_else(|| {
            let rtp = leg.trunk?;
            Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
        })
    };
    let mut out = spare.pop().unwrap_or_default();
    let (Some(to), true) = (to, rtcp::relay(&plain, rename, &mut out)) else {
        leg.counters.dropped += 1;
        spare.push(plain);
        spare.push(out);
        return None;
    };
    spare.push(plain);
    leg.counters.rtcp_to_trunk += 1;
    Some(match leg.rtcp_mux {
        true => Transmit::Trunk { leg: id, to, bytes: out },
        false => Transmit::TrunkRtcp { leg: id, to, bytes: out },
    })
}

/// A packet from the browser as plain RTP toward the trunk, once its address is known.
fn relay_to_trunk(
    id: LegId,
    leg: &mut Leg,
    packet: &RtpPacket,
    spare: &mut Vec<Vec<u8>>,
) -> Option<Transmit> {
    let Some(to) = leg.trunk else {
        leg.counters.dropped += 1;
        return None;
    };
    let rtp = Rtp {
        marker: packet.header.marker,
        payload_type: *packet.header.payload_type,
        sequence: packet.header.sequence_number,
        timestamp: packet.header.timestamp,
        ssrc: *packet.header.ssrc,
        payload: &packet.payload,
    };
    leg.counters.to_trunk += 1;
    let mut bytes = spare.pop().unwrap_or_default();
    rtp.write_to(&mut bytes);
    Some(Transmit::Trunk { leg: id, to, bytes })
}

#[cfg(test)]
mod tests;
