//! `anchor-cost`: the media anchor's own work per relayed packet, without sockets or a clock,
//! for counting instructions (issue 7: WebRTC <-> RTP relay cost).
//!
//! ```text
//! cargo build --release --example anchor-cost
//! valgrind --tool=callgrind --toggle-collect='anchor_cost::measured::*' \
//!     target/release/examples/anchor-cost --legs 20 --seconds 10
//! callgrind_annotate callgrind.out.PID | head   # total Ir / the relayed packets printed
//! ```
//!
//! `--legs` str0m peers play the browsers (as in `webrtc-load`: full ICE, the DTLS client,
//! PCMU), each with a WebRTC leg of one [`Anchor`]; after every leg is connected, virtual time
//! runs for `--seconds`: every 20 ms each browser sends a PCMU frame (SRTP, to the anchor) and
//! each leg's trunk sends one (plain RTP), the legs' frames spread over the 20 ms. The anchor
//! is driven as the engine drives it: datagrams as they come, its timeouts at
//! `Anchor::next_timeout` but at least `TIMER_LAG` apart. What the anchor sends to a browser
//! goes back to that browser (its RTCP keeps the session realistic).
//!
//! Every anchor call of the measured phase goes through the `measured` module, so that
//! callgrind's `--toggle-collect` counts the anchor (and str0m inside it) and nothing of the
//! browsers. It prints the packets relayed each way; instructions per relayed packet are the
//! collected total over their sum.

// A benchmark tool: a panic is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline::media::anchor::{Anchor, LegId, TELEPHONE_EVENT_PT, Transmit};
use lifeline::media::rtp::Rtp;
use lifeline::media::sdp::Codec;
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// As the engine's timer (src/media/engine.rs).
const TIMER_LAG: Duration = Duration::from_millis(5);

/// The anchor calls of the measured phase (callgrind: `--toggle-collect='anchor_cost::measured::*'`).
mod measured {
    use super::*;

    #[inline(never)]
    pub(crate) fn browser(anchor: &mut Anchor, now: Instant, from: SocketAddr, bytes: &[u8]) {
        anchor.handle_browser(now, from, bytes);
    }

    #[inline(never)]
    pub(crate) fn trunk(
        anchor: &mut Anchor,
        now: Instant,
        leg: LegId,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        anchor.handle_trunk(now, leg, from, bytes);
    }

    #[inline(never)]
    pub(crate) fn timeout(anchor: &mut Anchor, now: Instant) -> Option<Instant> {
        anchor.handle_timeout(now);
        anchor.next_timeout()
    }

    #[inline(never)]
    pub(crate) fn transmit(anchor: &mut Anchor) -> Option<Transmit> {
        anchor.poll_transmit()
    }

    #[inline(never)]
    pub(crate) fn recycle(anchor: &mut Anchor, bytes: Vec<u8>) {
        anchor.recycle(bytes);
    }
}

struct Browser {
    rtc: Rtc,
    mid: Mid,
    addr: SocketAddr,
    trunk: SocketAddr,
    leg: LegId,
    timeout: Instant,
    connected: bool,
    received: u64,
    seq: u64,
}

fn crypto() -> Arc<str0m::config::CryptoProvider> {
    Arc::new(str0m::crypto::from_feature_flags())
}

fn call(anchor: &mut Anchor, i: u16, now: Instant) -> Browser {
    let addr: SocketAddr = format!("127.0.0.2:{}", 20000 + i).parse().unwrap();
    let trunk: SocketAddr = format!("127.0.0.3:{}", 30000 + 2 * i).parse().unwrap();
    let mut rtc = RtcConfig::new()
        .set_crypto_provider(crypto())
        .set_rtp_mode(true)
        .clear_codecs()
        .enable_pcmu(true, false)
        .build(now);
    rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
    let mut change = rtc.sdp_api();
    let mid = change.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
    let (offer, pending) = change.apply().unwrap();
    let (leg, answer) = anchor
        .accept_offer(
            now,
            &offer.to_sdp_string(),
            Some(trunk),
            &[Codec::Pcmu],
            Some(TELEPHONE_EVENT_PT),
        )
        .unwrap();
    rtc.sdp_api().accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap()).unwrap();
    Browser { rtc, mid, addr, trunk, leg, timeout: now, connected: false, received: 0, seq: 1 }
}

/// Runs a browser's output: its datagrams to the anchor.
fn drain(b: &mut Browser, anchor: &mut Anchor, now: Instant, measure: bool) {
    loop {
        match b.rtc.poll_output().unwrap() {
            Output::Timeout(t) => {
                b.timeout = t;
                return;
            }
            Output::Transmit(t) => {
                if measure {
                    measured::browser(anchor, now, t.source, &t.contents);
                } else {
                    anchor.handle_browser(now, t.source, &t.contents);
                }
            }
            Output::Event(Event::Connected) => b.connected = true,
            Output::Event(Event::RtpPacket(_)) => b.received += 1,
            Output::Event(_) => {}
        }
    }
}

/// What the anchor sends: to its browser, or counted for the trunk.
fn deliver(anchor: &mut Anchor, browsers: &mut [Browser], now: Instant, measure: bool) -> u64 {
    let mut to_trunk = 0;
    loop {
        let t = if measure { measured::transmit(anchor) } else { anchor.poll_transmit() };
        let Some(t) = t else { return to_trunk };
        let bytes = match t {
            Transmit::Browser { to, bytes } => {
                let b = browsers.iter_mut().find(|b| b.addr == to).expect("a browser");
                let local = anchor_addr();
                let r = Receive::new(Protocol::Udp, local, to, &bytes).unwrap();
                b.rtc.handle_input(Input::Receive(now, r)).unwrap();
                bytes
            }
            Transmit::Trunk { bytes, .. } => {
                Rtp::parse(&bytes).expect("plain RTP to the trunk");
                to_trunk += 1;
                bytes
            }
            // The browsers' RTCP, relayed: not a relayed RTP packet.
            Transmit::TrunkRtcp { bytes, .. } => bytes,
        };
        if measure {
            measured::recycle(anchor, bytes);
        } else {
            anchor.recycle(bytes);
        }
    }
}

fn anchor_addr() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn main() {
    let mut legs = 20u16;
    let mut seconds = 10u64;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--legs" => legs = v.parse().expect("--legs N"),
            "--seconds" => seconds = v.parse().expect("--seconds N"),
            _ => panic!("unknown option {k}"),
        }
    }
    let start = Instant::now();
    let mut now = start;
    let mut anchor = Anchor::new(anchor_addr());
    let mut browsers: Vec<Browser> = (0..legs).map(|i| call(&mut anchor, i, now)).collect();

    // Connect every leg (ICE, DTLS), in 5 ms steps of virtual time.
    for _ in 0..4_000 {
        for b in &mut browsers {
            drain(b, &mut anchor, now, false);
        }
        deliver(&mut anchor, &mut browsers, now, false);
        if browsers.iter().all(|b| b.connected && anchor.is_connected(b.leg)) {
            break;
        }
        now += TIMER_LAG;
        for b in &mut browsers {
            b.rtc.handle_input(Input::Timeout(now)).unwrap();
        }
        anchor.handle_timeout(now);
    }
    assert!(browsers.iter().all(|b| b.connected), "every leg connects");
    let connected = now;

    // Media: each leg's frames at its own phase of the 20 ms, 1 ms steps.
    let step = Duration::from_millis(1);
    let steps = seconds * 1000;
    let mut next_anchor = now;
    let mut trunk_seq = vec![1u16; browsers.len()];
    let mut to_trunk = 0u64;
    let mut to_browser_sent = 0u64;
    let payload = [0xffu8; 160];
    for s in 0..steps {
        now += step;
        let phase = s % 20;
        for (i, b) in browsers.iter_mut().enumerate() {
            if b.timeout <= now {
                b.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            if (i as u64 * 20 / u64::from(legs)) % 20 == phase {
                let mut api = b.rtc.direct_api();
                let stream = api.stream_tx_by_mid(b.mid, None).unwrap();
                let ts = (b.seq as u32).wrapping_mul(160);
                stream.write_rtp(RtpWrite::new(
                    Pt::from(0),
                    SeqNo::from(b.seq),
                    ts,
                    now,
                    payload.to_vec(),
                ));
                b.seq += 1;
                b.rtc.handle_input(Input::Timeout(now)).unwrap();
            }
            drain(b, &mut anchor, now, true);
        }
        to_trunk += deliver(&mut anchor, &mut browsers, now, true);
        // The trunks, at the same phase (10 ms later than their browser).
        for (i, b) in browsers.iter().enumerate() {
            if ((i as u64 * 20 / u64::from(legs)) + 10) % 20 == phase {
                let seq = trunk_seq[i];
                trunk_seq[i] = seq.wrapping_add(1);
                let rtp = Rtp {
                    marker: false,
                    payload_type: 0,
                    sequence: seq,
                    timestamp: u32::from(seq).wrapping_mul(160),
                    ssrc: 0x5555_0000 + i as u32,
                    payload: &payload,
                }
                .to_bytes();
                measured::trunk(&mut anchor, now, b.leg, b.trunk, &rtp);
                to_browser_sent += 1;
            }
        }
        to_trunk += deliver(&mut anchor, &mut browsers, now, true);
        if next_anchor <= now {
            let next = measured::timeout(&mut anchor, now);
            next_anchor = next.map_or(now + Duration::from_secs(1), |t| t.max(now + TIMER_LAG));
            to_trunk += deliver(&mut anchor, &mut browsers, now, true);
        }
        for b in &mut browsers {
            drain(b, &mut anchor, now, true);
        }
        to_trunk += deliver(&mut anchor, &mut browsers, now, true);
    }
    let received: u64 = browsers.iter().map(|b| b.received).sum();
    let totals = anchor.totals();
    println!(
        "legs={legs} seconds={seconds} connect_ms={} to_trunk={to_trunk} to_browser={} \
         trunk_sent={to_browser_sent} browsers_received={received} dropped={} relayed={}",
        connected.duration_since(start).as_millis(),
        totals.to_browser,
        totals.dropped,
        to_trunk + totals.to_browser,
    );
}
